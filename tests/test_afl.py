"""The AFL paper's rule (arXiv:2508.01675, Section 3, Algorithm 1).

A round's ``M`` returned models are averaged with weights ``n_k s(tau_k)``
(checked against a hand computation of three clients), the executor equals
the one-client-at-a-time reference in float64, the delay-aware client rate
uses the delay known at dispatch, and the old per-arrival rule lives on as
``size_weighted_mix`` with a capped weight.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import lsq_loss, make_lsq_data
from fedasync_jax import (cli, client, config, delays, executor, reference,
                          rules, scheduler, staleness, tasks)
from fedasync_jax.run import members


def _res(params, start, n):
  return rules.ClientResult(params, params - start, jnp.asarray(n))


# Three clients: example counts, staleness (in rounds), trained params and
# the params each started from (its stale download).
N_K = np.array([10.0, 30.0, 20.0])
TAU = np.array([0, 2, 1])
W_K = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]])
START = np.array([[0.0, 0.0], [0.5, -0.5], [0.2, 0.1]])
W0 = np.array([0.3, -0.7])


def _hand_weights(a=1.0):
  # n_k * s(tau_k) with s = polynomial(a): (1 + tau)^-a, not normalised.
  return N_K * (1.0 + TAU) ** (-a)


def _three_clients(rule):
  state = rule.init(jnp.asarray(W0))
  apply = jax.jit(rule.apply)
  for k in range(3):
    before = state
    state = apply(state, _res(jnp.asarray(W_K[k]), jnp.asarray(START[k]),
                                   N_K[k]), int(TAU[k]))
    if k < 2:  # the round is still open: nothing changes but the buffer
      np.testing.assert_array_equal(state.params, before.params)
      assert int(state.version) == 0 and int(state.count) == k + 1
  return state


@pytest.mark.parametrize("lr", [1.0, 0.4])
def test_three_clients_params_average_by_hand(lr):
  with jax.enable_x64(True):
    rule = rules.afl(clients_per_round=3, lr=lr,
                     staleness_fn=staleness.polynomial(1.0))
    state = _three_clients(rule)
    lam = _hand_weights(1.0)
    avg = (lam[0] * W_K[0] + lam[1] * W_K[1] + lam[2] * W_K[2]) / lam.sum()
    np.testing.assert_allclose(state.params, (1 - lr) * W0 + lr * avg,
                               rtol=1e-12, atol=1e-12)
    assert int(state.version) == 1 and int(state.applied) == 3
    assert int(state.count) == 0 and float(state.weight) == 0.0
    np.testing.assert_array_equal(state.buffer, 0.0)


def test_three_clients_delta_average_by_hand():
  with jax.enable_x64(True):
    rule = rules.afl(clients_per_round=3, lr=0.5, average="deltas",
                     staleness_fn=staleness.polynomial(0.5))
    assert rule.result_fields == ("delta",)
    state = _three_clients(rule)
    lam = _hand_weights(0.5)
    d = W_K - START
    mean = (lam[:, None] * d).sum(0) / lam.sum()
    np.testing.assert_allclose(state.params, W0 + 0.5 * mean, rtol=1e-12,
                               atol=1e-12)
    # Averaging params instead gives another answer (the starts differ).
    other = _three_clients(rules.afl(clients_per_round=3, lr=0.5,
                                     staleness_fn=staleness.polynomial(0.5)))
    assert not np.allclose(other.params, state.params)


def test_cutoff_drops_do_not_count_toward_the_round():
  with jax.enable_x64(True):
    s = staleness.cutoff(staleness.constant(), 1)
    rule = rules.afl(clients_per_round=2, staleness_fn=s)
    assert rule.max_staleness == 1 and rule.arrivals_per_version == 2
    st = rule.init(jnp.zeros(1))
    apply = jax.jit(rule.apply)
    st = apply(st, _res(jnp.ones(1), jnp.zeros(1), 2.0), 0)
    st = apply(st, _res(100 * jnp.ones(1), jnp.zeros(1), 50.0), 3)
    assert int(st.dropped) == 1 and int(st.version) == 0
    st = apply(st, _res(4 * jnp.ones(1), jnp.zeros(1), 6.0), 1)
    np.testing.assert_allclose(st.params, [(2 * 1 + 6 * 4) / 8.0])
    assert int(st.version) == 1 and int(st.applied) == 2


def test_zero_weight_round_keeps_the_model():
  rule = rules.afl(clients_per_round=2, staleness_fn=staleness.constant())
  st = rule.init(jnp.full(2, 3.0))
  apply = jax.jit(rule.apply)
  for _ in range(2):
    st = apply(st, _res(jnp.ones(2), jnp.zeros(2), 0.0), 0)
  np.testing.assert_array_equal(st.params, 3.0)
  assert int(st.version) == 1


def test_size_weighted_mix_is_the_old_rule_and_capped_by_default():
  s = staleness.polynomial(1.0)
  old = rules.size_weighted_mix(lr=1.0, max_weight=1.0, mean_examples=10.0,
                                staleness_fn=s)
  new = rules.size_weighted_mix(mean_examples=10.0, staleness_fn=s)
  for n, tau in [(20.0, 0), (5.0, 0), (20.0, 1), (400.0, 0)]:
    a_old = min(1.0, 1.0 * n / 10.0 / (1 + tau))
    a_new = min(0.5, 0.5 * n / 10.0 / (1 + tau))
    st = old.apply(old.init(jnp.zeros(1)), _res(jnp.ones(1), jnp.zeros(1),
                                                n), tau)
    np.testing.assert_allclose(st.params, [a_old], rtol=1e-6)
    st = new.apply(new.init(jnp.zeros(1)), _res(jnp.ones(1), jnp.zeros(1),
                                                n), tau)
    np.testing.assert_allclose(st.params, [a_new], rtol=1e-6)
    assert float(st.params[0]) <= 0.5  # never replaces the global model
  assert "size_weighted_mix" in rules.RULES and "afl" in rules.RULES


@pytest.mark.parametrize("make, match", [
    (lambda: rules.afl(clients_per_round=0), "clients_per_round"),
    (lambda: rules.afl(lr=-1.0), "lr"),
    (lambda: rules.afl(average="median"), "average"),
    (lambda: rules.size_weighted_mix(mean_examples=0.0), "mean_examples"),
    (lambda: rules.size_weighted_mix(max_weight=1.5, mean_examples=1.0),
     "max_weight"),
])
def test_invalid(make, match):
  with pytest.raises(ValueError, match=match):
    make()


# ---------------------------------------------------------------------------
# Executor against the reference, float64.

NUM_CLIENTS, ARRIVALS = 30, 90
SCHEDULES = {
    # name: (rule kwargs, staleness, concurrency, speeds, width)
    "M3-polynomial-direct": (dict(clients_per_round=3), "poly", 5,
                             "lognormal", 1),
    "M4-cutoff-waves": (dict(clients_per_round=4, lr=0.7), "cutoff", 12,
                        "pareto", 4),
    "M5-deltas-waves": (dict(clients_per_round=5, average="deltas"), "poly",
                        8, "lognormal", 3),
}


def _staleness(kind):
  if kind == "cutoff":
    return staleness.cutoff(staleness.polynomial(1.0), 2)
  return staleness.polynomial(0.5)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_executor_matches_reference_float64(name):
  kw, skind, C, sp, width = SCHEDULES[name]
  with jax.enable_x64(True):
    ds, _ = make_lsq_data(num_clients=NUM_CLIENTS, dtype=np.float64)
    upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                              max_examples=ds.max_count, epochs=2,
                              epoch_decay=True, patience=1)
    rule = rules.afl(staleness_fn=_staleness(skind), **kw)
    dm = delays.delay_model(
        delays.device_speeds(sp, NUM_CLIENTS, seed=2, sigma=1.0, shape=1.5),
        ds.counts.astype(float))
    s = scheduler.asynchronous(
        dm, num_updates=ARRIVALS, concurrency=C, seed=1,
        arrivals_per_version=rule.arrivals_per_version,
        max_staleness=rule.max_staleness)
    hp = tasks.task_hparams(s, delay_beta=0.3, delay=dm)
    key = jax.random.key(3)
    params = jnp.zeros(5, jnp.float64)
    r = reference.run(rule, upd, params, ds, s, key=key, hparams=hp)
    e = executor.simulate(rule, upd, params, ds, s, key=key, hparams=hp,
                          width=width, chunk_steps=16)
    num = float(jnp.max(jnp.abs(e.state.params - r.state.params)))
    assert num <= 1e-8 * float(jnp.max(jnp.abs(r.state.params)))
    assert float(jnp.max(jnp.abs(r.state.params))) > 0.1  # it did train
    for k in ("client", "staleness", "applied", "version"):
      np.testing.assert_array_equal(e.arrivals[k], r.arrivals[k], err_msg=k)
    # One version per M kept arrivals, as the schedule counted them.
    M = kw["clients_per_round"]
    applied = r.arrivals["applied"]
    assert int(r.state.version) == applied.sum() // M
    np.testing.assert_array_equal(r.arrivals["version"], s.version_after)
    assert r.arrivals["staleness"].max() > 0
    if skind == "cutoff":
      assert (~applied).sum() > 0


# ---------------------------------------------------------------------------
# The delay-aware client rate, fixed at dispatch.


def test_delay_aware_rate_by_hand():
  """Full-batch SGD over 3 epochs: step e is lr0 / (sqrt(e+1) (1+beta d))
  with d the client's expected duration speed * work + comm_time."""
  with jax.enable_x64(True):
    ds, _ = make_lsq_data(num_clients=4, dtype=np.float64, max_size=6)
    lr0, beta = 0.05, 0.7
    upd = client.local_update(lsq_loss, optax.sgd(lr0), batch_size=8,
                              max_examples=ds.max_count, epochs=3,
                              epoch_decay=True)
    speed = np.array([0.5, 1.0, 2.0, 4.0])
    dm = delays.delay_model(speed, ds.counts.astype(float), comm_time=0.25)
    s = scheduler.asynchronous(dm, num_updates=8, concurrency=2, seed=0)
    hp = tasks.task_hparams(s, delay_beta=beta, delay=dm)
    update = jax.jit(upd.update)
    for k in range(3):
      c = int(s.client[k])
      d = speed[c] * ds.counts[c] + 0.25
      lo, n = int(ds.offsets[c]), int(ds.counts[c])
      x, y = np.asarray(ds.x[lo:lo + n]), np.asarray(ds.y[lo:lo + n])
      w = np.zeros(5)
      for e in range(3):
        grad = 2 * x.T @ (x @ w - y) / n
        w = w - lr0 / (np.sqrt(e + 1) * (1 + beta * d)) * grad
      res, _ = update(jnp.zeros(5), client.ClientRef(
          jnp.asarray(ds.x), jnp.asarray(ds.y), ds.offsets[c], n),
          jax.random.key(k), jax.tree.map(lambda a: a[k], hp))
      np.testing.assert_allclose(res.params, w, rtol=1e-5, atol=1e-7)


def test_delay_is_known_at_dispatch_not_at_arrival():
  m = delays.delay_model(np.array([1.0, 2.0, 3.0]), np.ones(3))
  a = scheduler.asynchronous(m, num_updates=20, concurrency=2, seed=0)
  b = scheduler.asynchronous(m, num_updates=20, concurrency=2, seed=5)
  ha = tasks.task_hparams(a, delay_beta=1.0, delay=m)
  hb = tasks.task_hparams(b, delay_beta=1.0, delay=m)
  # The realised durations differ (exponential jitter), the rates do not.
  assert not np.allclose(a.arrival_time - a.dispatch_time,
                         m.speed[a.client])
  expect = 1.0 / (1.0 + np.array([1.0, 2.0, 3.0]))  # float64, as computed
  np.testing.assert_array_equal(ha.lr_scale, expect[a.client])
  np.testing.assert_array_equal(hb.lr_scale, expect[b.client])
  per_client = tasks.task_hparams(a, delay_beta=1.0,
                                  delay=np.array([1.0, 2.0, 3.0]))
  np.testing.assert_array_equal(per_client.lr_scale, ha.lr_scale)
  per_comm = delays.delay_model(np.array([1.0, 2.0]), np.array([3.0, 1.0]),
                                comm_time=np.array([0.5, 0.0]))
  np.testing.assert_array_equal(tasks.known_delays(per_comm), [3.5, 2.0])
  with pytest.raises(ValueError, match="known at dispatch"):
    tasks.task_hparams(a, delay_beta=1.0)
  with pytest.raises(ValueError, match="one finite delay"):
    tasks.task_hparams(a, delay_beta=1.0, delay=np.ones(2))


# ---------------------------------------------------------------------------
# Configuration: the registry is the only list.


def test_afl_from_a_config():
  cfg = config.from_dict({"rule": {"name": "afl", "afl_lr": 0.5, "params": {
      "clients_per_round": 4, "average": "deltas"}}})
  rule = members.build_rule(cfg)
  assert rule.arrivals_per_version == 4 and rule.result_fields == ("delta",)
  cfg = config.from_dict({"rule": {"name": "size_weighted_mix",
                                   "params": {"max_weight": 0.2}}})
  assert members.build_rule(cfg).arrivals_per_version == 1


@pytest.mark.parametrize("params, message", [
    ({"clients_per_round": 100},
     "rule.params.clients_per_round=100 client updates per server version "
     "is more than run.num_updates (50): no version would be applied; lower "
     "it or raise run.num_updates"),
    ({"average": "foo"},
     "rule.params.average must be one of params, deltas; got 'foo'"),
])
def test_config_errors_name_the_rule_params_entry(params, message):
  """An AFL parameter without a field of its own is named by its entry of
  ``rule.params``, from ``--set`` and from a file alike."""
  with pytest.raises(config.ConfigError) as e:
    config.apply_overrides(config.Config(), [
        "rule.name=afl", "run.num_updates=50",
        *(f"rule.params.{k}={v}" for k, v in params.items())])
  assert str(e.value) == message
  with pytest.raises(config.ConfigError) as e:
    config.from_dict({"rule": {"name": "afl", "params": params},
                      "run": {"num_updates": 50}})
  assert str(e.value) == message


def test_cli_names_clients_per_round(tmp_path, capsys):
  out = tmp_path / "never"
  assert cli.main(["run", "--out", str(out), "--set", "rule.name=afl",
                   "--set", "rule.params.clients_per_round=100", "--set",
                   "run.num_updates=50"]) == 2
  assert ("fedasync-jax: error: rule.params.clients_per_round=100 client "
          "updates per server version" in capsys.readouterr().err)
  assert not out.exists()


def test_delay_aware_rate_from_the_configuration():
  """``client.delay_beta`` through ``setup``: every task's rate factor is
  ``1 / (1 + beta d)`` with ``d`` its client's expected duration."""
  from fedasync_jax import config as config_lib
  from fedasync_jax.run import setup as setup_lib
  from fedasync_jax.sim import tasks as tasks_lib
  cfg = config_lib.from_dict({
      "data": {"num_clients": 10}, "client": {"delay_beta": 0.3},
      "run": {"num_updates": 20, "concurrency": 3}})
  s = setup_lib.setup(cfg)
  d = tasks_lib.known_delays(setup_lib.make_delays(cfg, s.fed))
  np.testing.assert_allclose(np.asarray(s.hparams.lr_scale),
                             1.0 / (1.0 + 0.3 * d[s.schedule.client]),
                             rtol=1e-6)
