"""The reference simulator against hand-written algorithms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from conftest import lsq_loss, make_lsq_data
from fedasync_jax import client, delays, reference, rules, scheduler
from fedasync_jax import staleness


def test_fedasync_alpha1_c1_is_sequential_sgd(lsq, lsq_update):
  ds, _ = lsq
  with jax.enable_x64(True):
    m = delays.delay_model(delays.device_speeds("lognormal", ds.num_clients),
                           ds.counts.astype(float))
    s = scheduler.asynchronous(m, num_updates=60, concurrency=1, seed=0)
    key = jax.random.key(5)
    out = reference.run(rules.fedasync(1.0, staleness.constant()),
                        lsq_update, jnp.zeros(5), ds, s, key=key)
    w = jnp.zeros(5)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    train = jax.jit(lsq_update.update)
    for k in range(s.num_tasks):  # dispatch order
      c = int(s.client[k])
      res, _ = train(w, client.ClientRef(
          x, y, ds.offsets[c], ds.counts[c]), jax.random.fold_in(key, k),
          client.ClientHParams())
      w = res.params
    assert np.all(out.arrivals["staleness"] == 0)
    np.testing.assert_allclose(out.state.params, w, rtol=1e-12)


def test_fedavg_one_full_batch_step_is_gradient_descent():
  with jax.enable_x64(True):
    ds, _ = make_lsq_data(num_clients=12)
    n = ds.num_clients
    lr = 0.1
    upd = client.local_update(lsq_loss, optax.sgd(lr), batch_size=ds.max_count,
                              max_examples=ds.max_count, steps=1)
    m = delays.delay_model(delays.device_speeds("pareto", n), np.ones(n))
    s = scheduler.synchronous(m, num_rounds=8, cohort_size=n, seed=0)
    out = reference.run(rules.fedavg(), upd, jnp.zeros(5), ds, s,
                        key=jax.random.key(0))
    w = np.zeros(5)
    x, y = ds.x, ds.y
    for _ in range(8):
      # Example-weighted objective: mean squared error over all examples
      # weighted per client by n_k / n, i.e. sum_k n_k F_k / sum_k n_k.
      g = np.zeros(5)
      for c in range(n):
        xc, yc = ds.client(c)
        g += len(yc) * 2 * xc.T @ (xc @ w - yc) / len(yc)
      w = w - lr * g / len(y)
    np.testing.assert_allclose(out.state.params, w, rtol=1e-10)
    assert int(out.state.version) == 8


def test_reference_drives_least_squares_to_optimum():
  with jax.enable_x64(True):
    ds, _ = make_lsq_data(num_clients=30, noise=0.0)
    w_star = np.linalg.lstsq(ds.x, ds.y, rcond=None)[0]
    upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                              max_examples=ds.max_count)
    m = delays.delay_model(delays.device_speeds("lognormal", 30, seed=2),
                           ds.counts.astype(float))
    s = scheduler.asynchronous(m, num_updates=400, concurrency=5, seed=0)
    out = reference.run(
        rules.fedasync(0.6, staleness.polynomial(0.5)), upd, jnp.zeros(5),
        ds, s, key=jax.random.key(0),
        eval_fn=lambda p: {"dist": jnp.linalg.norm(p - w_star)},
        eval_every=100)
    d0 = np.linalg.norm(w_star)
    d1 = out.evals[-1]["test_dist"]
    # Noise-free consistent system: the distance shrinks by at least 100x.
    assert d1 < d0 / 100, (d0, d1)
    assert [e["version"] for e in out.evals] == [0, 100, 200, 300, 400]
    assert out.participation.sum() == 400


def test_history_records_staleness_and_drops(lsq, lsq_update):
  ds, _ = lsq
  m = delays.delay_model(delays.device_speeds("pareto", ds.num_clients),
                         ds.counts.astype(float))
  s = scheduler.asynchronous(m, num_updates=200, concurrency=10,
                             max_staleness=3, seed=0)
  out = reference.run(
      rules.fedasync(0.5, staleness.cutoff(staleness.constant(), 3)),
      lsq_update, jnp.zeros(5, jnp.float32), ds, s, key=jax.random.key(0))
  np.testing.assert_array_equal(out.arrivals["staleness"], s.staleness)
  np.testing.assert_array_equal(out.arrivals["applied"], ~s.dropped)
  np.testing.assert_array_equal(out.arrivals["version"], s.version_after)
  assert int(out.state.dropped) == int(s.dropped.sum()) > 0
