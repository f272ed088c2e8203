"""Quarantine of non-finite updates, norm bounding, client-level noise."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import lsq_loss, make_lsq_data
from fedasync_jax import (client, delays, executor, faults, reference, robust,
                          rules, scheduler, staleness)

N = 30


def setup(dtype=np.float64, updates=200, C=5, **sched_kw):
  ds, _ = make_lsq_data(num_clients=N, noise=0.0, dtype=dtype)
  w_star = np.linalg.lstsq(ds.x, ds.y, rcond=None)[0]
  upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                            max_examples=ds.max_count)
  dm = delays.delay_model(delays.device_speeds("lognormal", N, seed=1),
                          ds.counts.astype(float))
  s = scheduler.asynchronous(dm, num_updates=updates, concurrency=C, seed=0,
                             **sched_kw)
  return ds, w_star, upd, s


def dist(out, w_star):
  return float(np.linalg.norm(np.asarray(out.state.params) - w_star))


def test_nan_client_is_quarantined_and_model_survives():
  with jax.enable_x64(True):
    ds, w_star, upd, s = setup()
    bad = faults.nan_clients(upd, faults.offsets_of(ds, [3]))
    n_bad = int(np.sum(s.arrival_client == 3))
    assert n_bad > 0
    plain = reference.run(rules.fedasync(0.6), bad, jnp.zeros(5), ds, s,
                          key=jax.random.key(0))
    assert not np.all(np.isfinite(np.asarray(plain.state.params)))
    rule = robust.guard(rules.fedasync(0.6))
    ref = reference.run(rule, bad, jnp.zeros(5), ds, s, key=jax.random.key(0))
    ex = executor.simulate(rule, bad, jnp.zeros(5), ds, s,
                           key=jax.random.key(0))
    for out in (ref, ex):
      assert np.all(np.isfinite(np.asarray(out.state.params)))
      assert int(out.state.quarantined) == n_bad
      assert int(out.state.version) == s.num_arrivals  # versions as planned
      quarantined = out.arrivals["client"] == 3
      assert not out.arrivals["applied"][quarantined].any()
      assert out.arrivals["applied"][~quarantined].all()
    np.testing.assert_allclose(ex.state.params, ref.state.params, rtol=1e-10)
    assert dist(ex, w_star) < 0.1 * np.linalg.norm(w_star)


@pytest.mark.parametrize("make_rule, kw", [
    (lambda: rules.fedbuff(4, optax.sgd(1.0)), {"arrivals_per_version": 4}),
    (lambda: rules.fedasync(0.9, staleness.cutoff(staleness.constant(), 3)),
     {"max_staleness": 3}),
])
def test_guard_keeps_executor_equal_to_reference(make_rule, kw):
  with jax.enable_x64(True):
    ds, _, upd, s = setup(C=8, **kw)
    bad = faults.nan_clients(upd, faults.offsets_of(ds, [1, 2]))
    rule = robust.guard(make_rule(), max_norm=0.5)
    ref = reference.run(rule, bad, jnp.zeros(5), ds, s, key=jax.random.key(1))
    ex = executor.simulate(rule, bad, jnp.zeros(5), ds, s,
                           key=jax.random.key(1))
    np.testing.assert_allclose(ex.state.params, ref.state.params, rtol=1e-10)
    np.testing.assert_array_equal(ex.arrivals["applied"],
                                  ref.arrivals["applied"])
    assert int(ex.state.quarantined) > 0 and int(ex.state.clipped) > 0
    assert int(ex.state.dropped) == int((~ex.arrivals["applied"]).sum())


def test_fedavg_round_with_nan_client():
  with jax.enable_x64(True):
    ds, _, upd, _ = setup()
    dm = delays.delay_model(np.ones(N), np.ones(N))
    s = scheduler.synchronous(dm, num_rounds=10, cohort_size=6, seed=0)
    bad = faults.nan_clients(upd, faults.offsets_of(ds, [0]))
    rule = robust.guard(rules.fedavg())
    ref = reference.run(rule, bad, jnp.zeros(5), ds, s, key=jax.random.key(0))
    ex = executor.simulate(rule, bad, jnp.zeros(5), ds, s,
                           key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(ex.state.params)))
    assert int(ex.state.version) == 10
    np.testing.assert_allclose(ex.state.params, ref.state.params, rtol=1e-10)


def test_norm_bound_survives_adversarial_client():
  with jax.enable_x64(True):
    ds, w_star, upd, s = setup(updates=300)
    evil = faults.scaled_clients(upd, faults.offsets_of(ds, [7]), 1e3)
    assert int(np.sum(s.arrival_client == 7)) > 0
    clean = executor.simulate(rules.fedasync(0.6), upd, jnp.zeros(5), ds, s,
                              key=jax.random.key(0))
    attacked = executor.simulate(rules.fedasync(0.6), evil, jnp.zeros(5), ds,
                                 s, key=jax.random.key(0))
    bounded = executor.simulate(robust.guard(rules.fedasync(0.6),
                                             max_norm=1.0), evil,
                                jnp.zeros(5), ds, s, key=jax.random.key(0))
    d_clean, d_att, d_bnd = (dist(o, w_star) for o in (clean, attacked,
                                                         bounded))
    assert d_att > 100 * d_clean, (d_clean, d_att)
    assert d_bnd < 0.1 * np.linalg.norm(w_star), (d_clean, d_bnd)
    assert int(bounded.state.clipped) > 0


def test_gaussian_noise_scale_and_reproducibility():
  dim = 4000
  rule = robust.guard(rules.fedasync(1.0), max_norm=2.0,
                      noise_multiplier=0.5, key=jax.random.key(3))
  st = rule.init(jnp.zeros(dim))
  d = jnp.full(dim, 1.0)  # norm sqrt(4000) > 2: clipped to norm 2
  res = rules.ClientResult(d, d, 1.0)
  a = rule.apply(st, res, 0)
  b = rule.apply(st, res, 0)
  np.testing.assert_array_equal(a.params, b.params)
  noise = np.asarray(a.params) - 2.0 / np.sqrt(dim)
  assert abs(noise.std() - 0.5 * 2.0) < 0.05
  assert abs(noise.mean()) < 0.05
  c = rule.apply(a, res, 0)  # next arrival: fresh noise
  assert not np.allclose(np.asarray(c.params) - np.asarray(a.params),
                         np.asarray(a.params))
  other = robust.guard(rules.fedasync(1.0), max_norm=2.0,
                       noise_multiplier=0.5, key=jax.random.key(4))
  assert not np.allclose(other.apply(other.init(jnp.zeros(dim)), res,
                                     0).params, a.params)


@pytest.mark.parametrize("opt", [optax.sgd(1.0, momentum=0.9),
                                 optax.adam(0.1)])
@pytest.mark.parametrize("name", ["fedavg", "fedbuff"])
def test_a_round_of_quarantined_updates_takes_no_step(opt, name):
  """Every update of a FedAvg round or a FedBuff buffer has zero weight:
  the model and the server optimizer's state stay as they were (with
  momentum the model moved 0.9, with Adam 0.067), and the version advances
  as the schedule says."""
  inner = rules.fedavg(opt) if name == "fedavg" else rules.fedbuff(1, opt)

  def step(rule, st, res):  # one round (FedAvg) or one flush (K = 1)
    st = rule.apply(st, res, 0)
    return rule.end_round(st) if name == "fedavg" else st
  rule = robust.guard(inner)
  st = step(rule, rule.init(jnp.zeros(2)), rules.ClientResult(
      jnp.ones(2), jnp.ones(2), 5.0))
  nan = jnp.full(2, jnp.nan)
  after = step(rule, st, rules.ClientResult(nan, nan, 5.0))
  for a, b in zip(jax.tree.leaves(after.inner.opt_state),
                  jax.tree.leaves(st.inner.opt_state)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(after.params, st.params)
  assert int(after.version) == 2 and int(after.quarantined) == 1
  moved = step(rule, after, rules.ClientResult(
      jnp.ones(2), jnp.ones(2), 5.0))  # a real round steps again
  assert not np.allclose(moved.params, after.params)


def test_float32_noise_is_the_same_with_and_without_x64():
  rule = robust.guard(rules.fedasync(1.0), max_norm=2.0,
                      noise_multiplier=0.5, key=jax.random.key(3))
  d = jnp.full(50, 1.0, jnp.float32)

  def noisy():
    st = rule.init(jnp.zeros(50, jnp.float32))
    return np.asarray(rule.apply(st, rules.ClientResult(d, d, 1.0),
                                 0).params)
  plain = noisy()
  with jax.enable_x64(True):
    wide = noisy()
  assert plain.dtype == wide.dtype == np.float32
  np.testing.assert_array_equal(plain, wide)


@pytest.mark.parametrize("kw, match", [
    ({"max_norm": 0.0}, "max_norm"),
    ({"noise_multiplier": 1.0}, "max_norm"),
    ({"max_norm": 1.0, "noise_multiplier": 1.0}, "key"),
    ({"max_norm": 1.0, "noise_multiplier": -1.0, "key": jax.random.key(0)},
     "noise_multiplier"),
])
def test_invalid(kw, match):
  with pytest.raises(ValueError, match=match):
    robust.guard(rules.fedasync(0.5), **kw)
