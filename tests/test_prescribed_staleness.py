"""Schedules with prescribed staleness (``prescribed.from_staleness``).

FedAsync's experiments draw each update's staleness uniformly on
``[0, max]`` (Xie, Koyejo, Gupta, "Asynchronous Federated Optimization",
arXiv:1903.03934); these schedules realise given staleness values exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import lsq_loss, make_lsq_data
from fedasync_jax import (client, executor, models, prescribed, reference,
                          rules, scheduler, staleness, tasks)
from fedasync_jax.sim import contract


def walk(s):
  """Walks the events as the server sees them; returns, per task, the
  server version at its dispatch and the arrival index just before it
  (-1: none yet), and checks that no client is dispatched while in
  flight."""
  version, arrivals = 0, 0
  busy = set()
  v_at, prev_arrival, order = {}, {}, []
  for kind, k in s.events:
    c = int(s.client[k])
    if kind == scheduler.DISPATCH:
      assert c not in busy, f"client {c} dispatched twice"
      busy.add(c)
      v_at[k], prev_arrival[k] = version, arrivals - 1
      order.append(int(k))
    else:
      assert kind == scheduler.ARRIVAL
      busy.remove(c)
      arrivals += 1
      version += 1
  return v_at, prev_arrival, order


@pytest.mark.parametrize("mx, n, seed", [(4, 100, 0), (16, 100, 1),
                                         (16, 17, 2), (0, 1, 3)])
def test_realised_staleness_is_prescribed(mx, n, seed):
  T = 400
  want = prescribed.uniform_staleness(T, mx, seed=seed)
  s = prescribed.from_staleness(want, num_clients=n, seed=seed)
  clipped = np.minimum(want, np.arange(T))
  np.testing.assert_array_equal(s.staleness, clipped)
  assert s.num_arrivals == s.num_tasks == T
  assert not s.dropped.any() and not s.lost.any()
  np.testing.assert_array_equal(s.version_after, np.arange(1, T + 1))
  d = np.arange(T) - clipped
  np.testing.assert_array_equal(s.dispatch_version[s.arrival_task], d)
  v_at, prev_arrival, order = walk(s)
  # Tasks are numbered in dispatch order; each is dispatched right after
  # arrival d_t - 1, at server version d_t.
  assert order == list(range(T))
  for t in range(T):
    k = int(s.arrival_task[t])
    assert v_at[k] == d[t] and prev_arrival[k] == d[t] - 1
  # Staleness as the server measures it: version at arrival - at dispatch.
  np.testing.assert_array_equal(
      np.arange(T) - s.dispatch_version[s.arrival_task], s.staleness)
  # Times follow the events; concurrency is mean(s) + 1.
  assert np.all(s.arrival_time[s.arrival_task] == np.arange(1, T + 1))
  assert np.all(s.dispatch_time == s.dispatch_version)
  assert s.stats["realised_concurrency"] == pytest.approx(
      clipped.mean() + 1.0)
  assert s.stats["num_versions"] == T
  assert s.stats["max_in_flight"] <= min(mx + 1, n)


def test_constant_staleness_keeps_max_plus_one_in_flight():
  # Every update 16 stale with 17 clients: after the start all 17 are in
  # flight, so each arrival's client is the only idle one and is
  # dispatched again at once (a cycle of period 17).
  T, mx = 120, 16
  s = prescribed.from_staleness(np.full(T, mx), num_clients=mx + 1, seed=0)
  assert s.stats["max_in_flight"] == mx + 1
  c = s.arrival_client
  assert sorted(c[:mx + 1].tolist()) == list(range(mx + 1))
  np.testing.assert_array_equal(c[mx + 1:], c[:-(mx + 1)])
  walk(s)


def test_large_staleness_is_clipped_at_the_start():
  s = prescribed.from_staleness([5, 5, 5, 1, 0, 3], num_clients=6)
  assert s.staleness.tolist() == [0, 1, 2, 1, 0, 3]


def test_clients_are_drawn_among_idle_ones_by_seed():
  st = prescribed.uniform_staleness(3000, 16, seed=0)
  a = prescribed.from_staleness(st, num_clients=50, seed=0)
  b = prescribed.from_staleness(st, num_clients=50, seed=0)
  c = prescribed.from_staleness(st, num_clients=50, seed=1)
  np.testing.assert_array_equal(a.client, b.client)
  assert not np.array_equal(a.client, c.client)
  counts = np.bincount(a.client, minlength=50)
  assert counts.min() > 0
  # Uniform over the idle clients: about 60 tasks each (3000 / 50).
  assert 30 < counts.min() and counts.max() < 95, counts


def test_uniform_staleness_draws():
  a = prescribed.uniform_staleness(20000, 16, seed=4)
  np.testing.assert_array_equal(a, prescribed.uniform_staleness(20000, 16,
                                                               seed=4))
  assert not np.array_equal(a, prescribed.uniform_staleness(20000, 16, seed=5))
  assert a.dtype == np.int64 and a.min() == 0 and a.max() == 16
  counts = np.bincount(a, minlength=17)
  expected = 20000 / 17
  # Chi-square with 16 degrees of freedom: 99.9% quantile 39.25.
  assert np.sum((counts - expected) ** 2 / expected) < 39.25
  assert set(prescribed.uniform_staleness(50, 0).tolist()) == {0}


@pytest.mark.parametrize("bad, match", [
    ([0, 1, -1, 2], "staleness must be >= 0, got -1 at arrival 2"),
    ([], "staleness must be a non-empty 1-D"),
    ([[0, 1]], "staleness must be a non-empty 1-D"),
    ([0, 1.5], "staleness must hold integers"),
    ([True, False], "staleness must hold integers"),
])
def test_bad_staleness_is_refused(bad, match):
  with pytest.raises(ValueError, match=match):
    prescribed.from_staleness(bad, num_clients=10)


def test_too_few_clients_is_refused():
  st = [0, 1, 2, 3, 4, 4, 4]
  prescribed.from_staleness(st, num_clients=5)  # max staleness 4: enough
  with pytest.raises(ValueError, match=r"num_clients must be >= max "
                     r"staleness \+ 1 = 5 .* got 4"):
    prescribed.from_staleness(st, num_clients=4)
  with pytest.raises(ValueError, match="num_clients"):
    prescribed.from_staleness(st, num_clients=0)


def test_bad_uniform_staleness_arguments_are_refused():
  with pytest.raises(ValueError, match="max_staleness"):
    prescribed.uniform_staleness(10, -1)
  with pytest.raises(ValueError, match="num_updates"):
    prescribed.uniform_staleness(0, 4)


def rel_diff(a, b):
  num = max(float(jnp.max(jnp.abs(x - y))) for x, y in
            zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  den = max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(b))
  return num / den


def lsq_problem():
  ds, w_true = make_lsq_data(num_clients=40, dtype=np.float64)
  upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                            max_examples=ds.max_count)
  return ds, upd, jnp.zeros(5, jnp.float64), (
      lambda p: {"dist": jnp.linalg.norm(p - w_true)})


def mlp_problem():
  rng = np.random.default_rng(0)
  sizes = rng.integers(1, 12, size=40)
  w = rng.normal(size=(6, 3))
  xs = [rng.normal(size=(int(n), 6)) for n in sizes]
  ys = [np.argmax(x @ w + rng.normal(size=(len(x), 3)), 1).astype(np.int32)
        for x in xs]
  from fedasync_jax import data
  ds = data.from_client_arrays(xs, ys)
  model = models.mlp(hidden=(8,), num_classes=3, input_dim=6)
  upd = client.local_update(model.loss, optax.sgd(0.1), batch_size=4,
                            max_examples=ds.max_count, epochs=2)
  params = jax.tree.map(lambda a: a.astype(np.float64),
                        model.init(jax.random.key(1)))
  return ds, upd, params, models.make_evaluator(model, ds.x[:100],
                                                ds.y[:100], batch_size=32)


@pytest.mark.parametrize("width", [1, 5])
@pytest.mark.parametrize("problem", ["lsq", "mlp"])
def test_executor_matches_reference_float64_with_prox(problem, width):
  with jax.enable_x64(True):
    ds, upd, params, ev = (lsq_problem if problem == "lsq"
                           else mlp_problem)()
    st = prescribed.uniform_staleness(240, 16, seed=2)
    s = prescribed.from_staleness(st, num_clients=ds.num_clients, seed=2)
    hp = tasks.task_hparams(s, prox_rho=0.5)
    rule = rules.fedasync(0.9, staleness.polynomial(0.5))
    key = jax.random.key(3)
    r = reference.run(rule, upd, params, ds, s, key=key, hparams=hp,
                      eval_fn=ev, eval_every=40)
    e = executor.simulate(rule, upd, params, ds, s, key=key, hparams=hp,
                          eval_fn=ev, eval_every=40, width=width,
                          chunk_steps=16)
    assert e.stats["direct"] == (width == 1)
    np.testing.assert_array_equal(r.arrivals["staleness"],
                                  np.minimum(st, np.arange(240)))
    for k in ("client", "staleness", "applied", "version"):
      np.testing.assert_array_equal(e.arrivals[k], r.arrivals[k], err_msg=k)
    assert int(e.state.version) == int(r.state.version) == 240
    assert rel_diff(e.state.params, r.state.params) <= 1e-8
    assert [x["version"] for x in e.evals] == [x["version"] for x in r.evals]
    for a, b in zip(e.evals, r.evals):
      for k in a:
        if k not in ("version", "client_updates", "simulated_time"):
          np.testing.assert_allclose(a[k], b[k], rtol=1e-8, atol=1e-12)
    # The proximal term is on: without it the run ends elsewhere.
    r0 = reference.run(rule, upd, params, ds, s, key=key,
                       hparams=tasks.task_hparams(s, prox_rho=0.0))
    assert rel_diff(r0.state.params, r.state.params) > 1e-4


@pytest.mark.parametrize("rule, match", [
    (rules.fedbuff(3, optax.sgd(1.0), staleness.polynomial(1.0)),
     r"arrivals_per_version=1 but the rule applies a version every 3 "
     r"arrivals.*prescribed\.from_staleness schedule applies every arrival"),
    (rules.fedasync(0.5, staleness.cutoff(staleness.constant(), 2)),
     r"max_staleness=None but the rule drops updates staler than 2"),
])
def test_a_rule_that_would_not_realise_the_staleness_is_refused(rule,
                                                                 match):
  """A prescribed schedule advances one version per arrival: a buffered
  rule, or a cutoff that drops an arrival, counts versions differently,
  and the executor and the reference would disagree (they did, silently,
  by 0.25 in parameters). Both refuse it; a cutoff that drops none of the
  prescribed arrivals fits."""
  with jax.enable_x64(True):
    ds, upd, params, _ = lsq_problem()
    s = prescribed.from_staleness(
        prescribed.uniform_staleness(30, 4, seed=0),
        num_clients=ds.num_clients)
    for run in (reference.run, executor.simulate):
      with pytest.raises(ValueError, match=match):
        run(rule, upd, params, ds, s, key=jax.random.key(0))
  loose = rules.fedasync(0.5, staleness.cutoff(staleness.constant(), 4))
  contract.check_rule_fits(loose, [s])
