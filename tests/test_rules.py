"""Server rules: FedAsync mix, FedBuff flush, FedAvg round, AFL, drops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

from conftest import entry_points
from fedasync_jax import rules, staleness


def result(p, start=None, n=1.0):
  start = jnp.zeros_like(p) if start is None else start
  return rules.ClientResult(p, p - start, jnp.asarray(n))


@settings(max_examples=30, deadline=None)
@given(alpha=st.floats(0.0, 1.0), tau=st.integers(0, 50),
       a=st.floats(0.0, 3.0), seed=st.integers(0, 100))
def test_fedasync_mix_is_convex_combination(alpha, tau, a, seed):
  rng = np.random.default_rng(seed)
  w, wk = rng.normal(size=(2, 6))
  s = staleness.polynomial(a)
  p, v = rules.fedasync_mix(jnp.asarray(w), 10 + tau, jnp.asarray(wk), 10,
                            alpha=alpha, staleness_fn=s)
  lam = alpha * (1 + tau) ** (-a)
  np.testing.assert_allclose(p, (1 - lam) * w + lam * wk, rtol=1e-5,
                             atol=1e-6)
  lo, hi = np.minimum(w, wk) - 1e-6, np.maximum(w, wk) + 1e-6
  assert np.all((np.asarray(p) >= lo) & (np.asarray(p) <= hi))
  assert int(v) == 11 + tau


def test_fedasync_rule_and_cutoff_drop():
  rule = rules.fedasync(0.5, staleness.cutoff(staleness.constant(), 2))
  st0 = rule.init(jnp.zeros(3))
  st1 = rule.apply(st0, result(jnp.ones(3)), 0)
  np.testing.assert_allclose(st1.params, 0.5)
  assert int(st1.version) == 1 and int(st1.applied) == 1
  st2 = rule.apply(st1, result(10 * jnp.ones(3)), 3)  # too stale: dropped
  np.testing.assert_array_equal(st2.params, st1.params)
  assert int(st2.version) == 1 and int(st2.dropped) == 1
  assert rule.max_staleness == 2


def test_fedbuff_flush_equals_hand_computation():
  K = 3
  opt = optax.sgd(0.5, momentum=0.9)
  s = staleness.polynomial(1.0)
  rule = rules.fedbuff(K, opt, s)
  w0 = jnp.array([1.0, -2.0])
  st0 = rule.init(w0)
  rng = np.random.default_rng(0)
  deltas = rng.normal(size=(6, 2))
  taus = [0, 1, 3, 0, 2, 1]
  state = st0
  # Hand computation: two flushes of SGD with momentum on -mean(s * delta).
  w, mom = np.asarray(w0), np.zeros(2)
  for i, (d, t) in enumerate(zip(deltas, taus)):
    state = rule.apply(state, rules.ClientResult(
        jnp.asarray(d), jnp.asarray(d), 1.0), t)
    if (i + 1) % K == 0:
      block = range(i + 1 - K, i + 1)
      g = -np.mean([deltas[j] / (1 + taus[j]) for j in block], axis=0)
      mom = g + 0.9 * mom
      w = w - 0.5 * mom
      np.testing.assert_allclose(state.params, w, rtol=1e-5)
      assert int(state.version) == (i + 1) // K
    else:
      assert int(state.count) == (i + 1) % K
  np.testing.assert_allclose(state.buffer, 0.0)


def test_fedbuff_adam_server_optimizer_runs_jitted():
  rule = rules.fedbuff(2, optax.adam(0.1))
  apply = jax.jit(rule.apply)
  state = rule.init({"w": jnp.zeros(4)})
  for t in range(4):
    p = {"w": jnp.full(4, 1.0 + t)}
    state = apply(state, rules.ClientResult(p, p, 1.0), t % 2)
  assert int(state.version) == 2
  assert np.all(np.asarray(state.params["w"]) > 0)


def test_fedavg_weighted_average():
  rule = rules.fedavg()
  w0 = jnp.array([1.0, 1.0])
  state = rule.init(w0)
  clients = [(jnp.array([3.0, 0.0]), 2.0), (jnp.array([0.0, 3.0]), 1.0)]
  for p, n in clients:
    state = rule.apply(state, rules.ClientResult(p, p - w0, n), 0)
  assert int(state.version) == 0
  state = rule.end_round(state)
  np.testing.assert_allclose(state.params, [2.0, 1.0], rtol=1e-6)
  assert int(state.version) == 1 and float(state.sum_weight) == 0.0


def test_size_weighted_mix_weights_by_size_and_staleness():
  # The per-arrival rule once called ``afl``; max_weight=1 is the old cap.
  rule = rules.size_weighted_mix(lr=0.5, max_weight=1.0, mean_examples=10.0,
                                 staleness_fn=staleness.polynomial(1.0))
  state = rule.init(jnp.zeros(1))
  big = rule.apply(state, result(jnp.ones(1), n=20.0), 0)
  small = rule.apply(state, result(jnp.ones(1), n=5.0), 0)
  stale = rule.apply(state, result(jnp.ones(1), n=20.0), 1)
  np.testing.assert_allclose(big.params, [1.0])     # min(1, 0.5 * 2)
  np.testing.assert_allclose(small.params, [0.25])
  np.testing.assert_allclose(stale.params, [0.5])
  capped = rules.size_weighted_mix(lr=0.5, mean_examples=10.0,
                                   staleness_fn=staleness.polynomial(1.0))
  np.testing.assert_allclose(
      capped.apply(state, result(jnp.ones(1), n=20.0), 0).params, [0.5])


def test_afl_averages_a_round():
  rule = rules.afl(clients_per_round=2,
                   staleness_fn=staleness.polynomial(1.0))
  state = rule.init(jnp.zeros(1))
  state = rule.apply(state, result(jnp.ones(1), n=20.0), 0)
  np.testing.assert_allclose(state.params, [0.0])   # the round is open
  state = rule.apply(state, result(4 * jnp.ones(1), n=20.0), 1)
  # weights 20 * 1 and 20 / 2: (20 * 1 + 10 * 4) / 30
  np.testing.assert_allclose(state.params, [2.0], rtol=1e-6)
  assert int(state.version) == 1


@pytest.mark.parametrize("make, param", [
    (lambda: rules.fedasync(1.5), "alpha"),
    (lambda: rules.fedasync(-0.1), "alpha"),
    (lambda: rules.fedbuff(0), "buffer_size"),
    (lambda: rules.size_weighted_mix(mean_examples=0.0), "mean_examples"),
    (lambda: rules.afl(clients_per_round=0), "clients_per_round"),
])
def test_invalid(make, param):
  with pytest.raises(ValueError, match=param):
    make()


@pytest.mark.parametrize("make, name", [
    (lambda: rules.fedavg("sgd"), "server_optimizer must be an optax"),
    (lambda: rules.fedbuff(2, "adam"), "server_optimizer must be an optax"),
    (lambda: rules.fedasync(0.5, staleness_fn=3),
     "staleness_fn must be callable, got 3"),
    (lambda: rules.fedbuff(2, staleness_fn="polynomial"),
     "staleness_fn must be callable"),
    (lambda: rules.afl(staleness_fn=0.5), "staleness_fn must be callable"),
    (lambda: rules.size_weighted_mix(mean_examples=5.0, staleness_fn=1),
     "staleness_fn must be callable"),
])
def test_rule_inputs_of_the_wrong_kind_are_refused_at_construction(make,
                                                                    name):
  with pytest.raises(ValueError, match=name):
    make()


@pytest.mark.parametrize("dtype", [np.int32, np.float16])
def test_simulate_refuses_parameters_that_are_not_float(lsq, lsq_update,
                                                         dtype):
  from fedasync_jax import delays, executor, scheduler
  ds, _ = lsq
  sched = scheduler.asynchronous(
      delays.delay_model(np.ones(ds.num_clients), np.ones(ds.num_clients)),
      num_updates=4, concurrency=2, seed=0)
  with pytest.raises(ValueError, match=(
      rf"params must hold float32 or float64 arrays; params\['w'\] is "
      rf"{np.dtype(dtype).name}")):
    executor.simulate(rules.fedasync(0.5), lsq_update,
                      {"w": np.zeros(5, dtype)}, ds, sched,
                      key=jax.random.key(0))


def _custom_rules():
  """Custom rules that break the contract (core/rules.py): a state without
  the counters, an apply reading a field its result_fields leaves out, and
  an apply that changes a state array's dtype (a float32 state in a
  float64 run demoted the study in the executor and failed with a
  while_loop error in the reference), and an apply with a bug of its own
  (it was blamed on result_fields)."""
  from typing import NamedTuple

  class Bare(NamedTuple):
    params: jax.Array
    version: jax.Array

  bare = rules.ServerRule(
      init=lambda p: Bare(p, jnp.int32(0)),
      apply=lambda st, r, tau: Bare(0.5 * (st.params + r.params),
                                    st.version + 1))
  reads_params = rules.fedasync(0.5)._replace(result_fields=("delta",))
  plain = rules.fedasync(0.5)
  demotes = plain._replace(apply=lambda st, r, tau: plain.apply(
      st, r, tau)._replace(params=r.params.astype(jnp.bfloat16)))

  def cond_bug(st, r, tau):  # a bug of apply's own, not of its fields
    jax.lax.cond(tau > 0, lambda: jnp.float32(1), lambda: jnp.int32(0))
    return plain.apply(st, r, tau)
  return [(bare, r"must return a state with the fields params, version, "
                 r"applied, dropped .*Bare lacks applied, dropped"),
          (reads_params, r"rule.apply fails on a ClientResult holding only "
                         r"its result_fields \('delta',\)"),
          (demotes, r"rule.apply\(state, result, staleness\) must keep every "
                    r"state array's shape and dtype; state\.params is "
                    r"float32\[5\] from rule.init\(params\) but "
                    r"bfloat16\[5\] after it"),
          (plain._replace(apply=cond_bug),
           r"^rule.apply\(state, result, staleness\) fails: TypeError: "
           r"cond branches must have equal output types")]


@pytest.mark.parametrize("case", range(4))
def test_custom_rules_that_break_the_contract_are_refused(lsq, lsq_update,
                                                          case):
  """By every entry point, naming what is missing (they failed with an
  AttributeError, or a TypeError about None, deep in the run)."""
  from fedasync_jax import delays, scheduler
  ds, _ = lsq
  sched = scheduler.asynchronous(
      delays.delay_model(np.ones(ds.num_clients), np.ones(ds.num_clients)),
      num_updates=4, concurrency=2, seed=0)
  rule, match = _custom_rules()[case]
  calls = entry_points(rule, lsq_update, jnp.zeros(5), ds, sched,
                       key=jax.random.key(0))
  for name in ("simulate", "reference", "track", "pure", "sweep"):
    with pytest.raises(ValueError, match=match):
      calls[name]()


def test_a_rule_whose_versions_do_not_follow_the_schedule_is_refused(
    lsq, lsq_update):
  """A rule that advances a version every second arrival while declaring
  one per arrival ran in the executor, the reference and the tracker to
  three different results without an error; each now names the first
  arrival whose version differs from the schedule's."""
  from typing import Any, NamedTuple
  from fedasync_jax import delays, executor, scheduler

  class St(NamedTuple):
    params: Any
    version: Any
    applied: Any
    dropped: Any

  def make(every):
    def init(w):
      return St(w, *(jnp.zeros((), jnp.int32),) * 3)

    def apply(st, r, tau):
      inc = ((st.applied + 1) % every == 0).astype(jnp.int32)
      return St(st.params + 0.5 * (r.params - st.params),
                st.version + inc, st.applied + 1, st.dropped)
    return rules.ServerRule(init, apply, None, None, 1, ("params",))
  ds, _ = lsq
  n = ds.num_clients
  sched = scheduler.asynchronous(delays.delay_model(
      delays.device_speeds("exponential", n, seed=0), np.ones(n)),
      num_updates=12, concurrency=3, seed=0)
  w0, key = jnp.zeros(5), jax.random.key(0)
  good = executor.simulate(make(1), lsq_update, w0, ds, sched, key=key)
  np.testing.assert_array_equal(good.arrivals["version"],
                                sched.version_after)
  match = (r"the rule did not follow the schedule: at arrival 0 the server "
           r"version after it is 0 but the schedule has 1; a rule's "
           r"versions must advance as its arrivals_per_version says")
  calls = entry_points(make(2), lsq_update, w0, ds, sched, key=key)
  for name in ("simulate", "reference", "track"):  # (sweeps: as simulate)
    with pytest.raises(ValueError, match=match):
      calls[name]()
  from fedasync_jax.sim import contract
  with pytest.raises(ValueError, match="member 3: " + match):
    contract.check_followed(sched, {"version": sched.version_after - 1},
                            where="member 3: ")


def _classifier_run(y_train, y_test, num_classes=3):
  """A 3-class logistic regression with the given labels: its pieces."""
  from fedasync_jax import data, delays, models, scheduler
  from fedasync_jax.core import client
  rng = np.random.default_rng(0)
  xs = [rng.normal(size=(len(y), 4)).astype(np.float32) for y in y_train]
  ds = data.from_client_arrays(xs, [np.asarray(y, np.int32)
                                    for y in y_train])
  model = models.logistic_regression(input_dim=4, num_classes=num_classes)
  upd = client.local_update(model.loss, optax.sgd(0.1), batch_size=2,
                            max_examples=ds.max_count)
  ev = models.make_evaluator(model, np.ones((len(y_test), 4), np.float32),
                             np.asarray(y_test, np.int32))
  sched = scheduler.asynchronous(
      delays.delay_model(np.ones(ds.num_clients), np.ones(ds.num_clients)),
      num_updates=4, concurrency=2, seed=0)
  return model, upd, ds, ev, sched


@pytest.mark.parametrize("y_train, y_test, name, top", [
    ([[0, 1], [2, 5]], [0, 1], "y_train", 5),
    ([[0, 1], [2, 1]], [0, 3], "y_test", 3),
])
def test_simulate_refuses_labels_beyond_the_models_classes(y_train, y_test,
                                                           name, top):
  """Such labels trained to NaN losses with no error on the library path
  (only run/setup.py:make_model checked them)."""
  from fedasync_jax import executor
  model, upd, ds, ev, sched = _classifier_run(y_train, y_test)
  params = model.init(jax.random.key(0))
  with pytest.raises(ValueError, match=(
      rf"{name} holds labels up to {top}, but the model has 3 classes")):
    executor.simulate(rules.fedasync(0.5), upd, params, ds, sched,
                      key=jax.random.key(0), eval_fn=ev, eval_every=1,
                      num_classes=model.num_classes)
  ev.num_classes = 3  # an evaluator that knows its model's classes
  with pytest.raises(ValueError, match=rf"{name} holds labels up to {top}"):
    executor.simulate(rules.fedasync(0.5), upd, params, ds, sched,
                      key=jax.random.key(0), eval_fn=ev, eval_every=1)


def test_run_help_separates_each_rule_from_its_description():
  from fedasync_jax.run import cli_args
  text = cli_args.families_text()
  for m in rules.RULES.members():
    line = next(l for l in text.splitlines() if l.strip().startswith(m.name))
    assert line.strip().startswith(f"{m.name} "), line
  assert "size_weighted_mixFedAsync" not in text


def test_a_fedavg_run_whose_rounds_all_miss_their_deadline(lsq, lsq_update):
  """No update arrives: the executor's history assembly indexed an empty
  array (an IndexError traceback from the command line, leaving a folder
  without results); now the run ends with the initial model evaluated."""
  from fedasync_jax import delays, executor, reference, scheduler
  ds, _ = lsq
  n = ds.num_clients
  s = scheduler.synchronous(delays.delay_model(np.ones(n), np.ones(n)),
                            num_rounds=3, cohort_size=4, deadline=1e-3,
                            seed=0)
  assert s.num_arrivals == 0
  w0, key = jnp.ones(5), jax.random.key(0)

  def ev(p):
    return {"loss": jnp.sum(p)}
  for run in (executor.simulate, reference.run):
    out = run(rules.fedavg(), lsq_update, w0, ds, s, key=key, eval_fn=ev,
              eval_every=1)
    np.testing.assert_array_equal(out.state.params, w0)
    assert len(out.arrivals["client"]) == 0 and int(out.state.version) == 0
    assert [e["client_updates"] for e in out.evals] == [0]


def _algorithm_2(kind, deltas, K, lr, b1, b2, tau):
  """Reddi et al.'s Algorithm 2 (arXiv:2003.00295), written out in numpy:
  Delta the mean of each K deltas, x <- x + lr m / (sqrt(v) + tau)."""
  x, m = np.zeros(3), np.zeros(3)
  v = np.full(3, tau * tau)
  for t in range(len(deltas) // K):
    d = np.mean(deltas[t * K:(t + 1) * K], axis=0)
    m = b1 * m + (1 - b1) * d
    if kind == "adagrad":
      v = v + d * d
    elif kind == "yogi":
      v = v - (1 - b2) * d * d * np.sign(v - d * d)
    else:
      v = b2 * v + (1 - b2) * d * d
    x = x + lr * m / (np.sqrt(v) + tau)
  return x


def _optimizer_names():
  from fedasync_jax.core.optimizers import OPTIMIZERS
  return OPTIMIZERS.names()


@pytest.mark.parametrize("name", _optimizer_names())
def test_every_optimizers_rate_multiplies_its_step_last(name):
  """A sweep over client.lr scales one client update built at rate 1 by
  each member's rate; that equals a run at that rate bit for bit only if
  the optimizer's rate multiplies its step last (fedopt's step divided
  after multiplying by the rate, a rounding apart)."""
  from fedasync_jax.core.optimizers import OPTIMIZERS
  rng = np.random.default_rng(0)
  extra = {"momentum": 0.9} if name == "sgd" else {}
  at = {lr: OPTIMIZERS.build(name, lr=lr, **extra) for lr in (1.0, 0.037)}
  states = {lr: o.init(jnp.zeros(64, jnp.float32)) for lr, o in at.items()}
  for _ in range(3):
    g = jnp.asarray(rng.normal(size=64) * 1e-2, jnp.float32)
    step = {}
    for lr, o in at.items():
      step[lr], states[lr] = o.update(g, states[lr], jnp.zeros(64))
    np.testing.assert_array_equal(step[0.037],
                                  jnp.float32(0.037) * step[1.0])


@pytest.mark.parametrize("kind", ["adam", "yogi", "adagrad"])
def test_fedopt_server_optimizers_are_algorithm_2(kind):
  """FedBuff's server optimizers fedadam / fedyogi / fedadagrad equal the
  paper's Algorithm 2 in float64; optax's adam / yogi / adagrad, which the
  docs called FedOpt's, differ by factors of up to 260 on pseudo-gradients
  of size 1e-3 (bias correction, eps 1e-8, Adagrad's 0.1 start)."""
  from fedasync_jax.core import optimizers
  rng = np.random.default_rng(0)
  deltas = rng.normal(scale=1e-3, size=(6, 3))
  with jax.enable_x64(True):
    def run(opt):
      rule = rules.fedbuff(2, opt)
      st = rule.init(jnp.zeros(3, jnp.float64))
      for d in deltas:
        st = rule.apply(st, rules.ClientResult(jnp.asarray(d), jnp.asarray(d),
                                               1.0), 0)
      return np.asarray(st.params)
    hp = dict(lr=0.01, b1=0.9, tau=1e-3)
    if kind != "adagrad":
      hp["b2"] = 0.99
    ours = run(optimizers.OPTIMIZERS.build(f"fed{kind}", **hp))
    want = _algorithm_2(kind, deltas, 2, 0.01, 0.9, 0.99, 1e-3)
    np.testing.assert_allclose(ours, want, rtol=1e-12)
    optax_kind = run(optimizers.OPTIMIZERS.build(kind, lr=0.01))
    assert not np.allclose(optax_kind, want, rtol=0.1)


def test_fedopt_parameters_come_from_the_configuration():
  """``rule.server_params`` sets tau and the decays (they could not be
  set: rule.params.b1 was refused as a parameter of fedbuff)."""
  from fedasync_jax import config
  from fedasync_jax.run import members
  from fedasync_jax.run.schema import ConfigError
  cfg = config.from_dict({"rule": {
      "name": "fedbuff", "buffer_size": 2, "server_optimizer": "fedyogi",
      "server_lr": 0.05, "server_params": {"tau": 0.01, "b2": 0.9}}})
  m, params = config.schema.member_values(cfg.rule, "rule",
                                          "server_optimizer")
  assert (m.name, params) == ("fedyogi", {"lr": 0.05, "b1": 0.9, "b2": 0.9,
                                          "tau": 0.01})
  members.make_optimizer(cfg.rule, "rule", "server_optimizer")
  with pytest.raises(ConfigError, match=r"rule\.server_params.*b2"):
    bad = config.from_dict({"rule": {"server_optimizer": "fedadagrad",
                                     "server_params": {"b2": 0.9}}})
    members.make_optimizer(bad.rule, "rule", "server_optimizer")
  with pytest.raises(ValueError, match=r"tau"):
    config.from_dict({"rule": {"server_optimizer": "fedadam",
                               "server_params": {"tau": -1.0}}})

