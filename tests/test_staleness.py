"""Staleness functions: s(0) = 1, non-increasing, in [0, 1], vectorized."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

from conftest import entry_points
from fedasync_jax import rules, staleness

FAMILIES = {
    "constant": lambda p: staleness.constant(),
    "polynomial": lambda p: staleness.polynomial(p["a"]),
    "hinge": lambda p: staleness.hinge(p["a"], p["b"]),
    "exponential": lambda p: staleness.exponential(p["a"]),
    "koloskova": lambda p: staleness.koloskova(
        tau_c=p["b"], lipschitz=p["a"] + 0.1, lr=0.5),
    "mishchenko": lambda p: staleness.mishchenko(p["b"] + 1.0),
    "cutoff": lambda p: staleness.cutoff(staleness.polynomial(p["a"]),
                                         int(p["b"])),
}

params = st.fixed_dictionaries({
    "a": st.floats(0.0, 20.0), "b": st.floats(0.0, 30.0)})
taus = st.lists(st.integers(0, 10_000), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(params=params, tau=taus, name=st.sampled_from(sorted(FAMILIES)))
def test_properties(params, tau, name):
  s = FAMILIES[name](params)
  assert float(s(0)) == 1.0
  t = np.sort(np.asarray(tau))
  vals = np.asarray(s(jnp.asarray(t)))
  assert np.all(vals >= 0.0) and np.all(vals <= 1.0)
  assert np.all(np.diff(vals) <= 1e-7), "must be non-increasing"
  scalar = np.array([float(s(int(x))) for x in t])
  np.testing.assert_allclose(vals, scalar, rtol=1e-6)
  jitted = np.asarray(jax.jit(s)(jnp.asarray(t)))
  np.testing.assert_allclose(jitted, vals, rtol=1e-6)


def test_formulas():
  np.testing.assert_allclose(staleness.polynomial(0.5)(3), 0.5)
  np.testing.assert_allclose(staleness.hinge(10.0, 4.0)(4), 1.0)
  np.testing.assert_allclose(staleness.hinge(10.0, 4.0)(6), 1 / 21)
  np.testing.assert_allclose(staleness.exponential(0.5)(2), np.exp(-1.0),
                             rtol=1e-6)
  k = staleness.koloskova(tau_c=3, lipschitz=2.0, lr=0.25)
  np.testing.assert_allclose(k(3), 1.0)
  np.testing.assert_allclose(k(8), 1 / (4 * 2.0 * 0.25 * 8))
  np.testing.assert_allclose(staleness.mishchenko(4)(10), 0.4)


def test_cutoff_marks_drops():
  c = staleness.cutoff(staleness.constant(), 4)
  tau = jnp.arange(8)
  np.testing.assert_array_equal(staleness.keep(c, tau), np.arange(8) <= 4)
  np.testing.assert_array_equal(c(tau), (np.arange(8) <= 4).astype(float))
  assert staleness.max_staleness(c) == 4
  assert staleness.max_staleness(staleness.constant()) is None
  assert bool(jnp.all(staleness.keep(staleness.constant(), tau)))


@pytest.mark.parametrize("make, param", [
    (lambda: staleness.polynomial(-1.0), "a"),
    (lambda: staleness.hinge(1.0, -2.0), "b"),
    (lambda: staleness.hinge(-1.0, 2.0), "a"),
    (lambda: staleness.exponential(float("nan")), "a"),
    (lambda: staleness.cutoff(staleness.constant(), -1), "max_staleness"),
    (lambda: staleness.cutoff(staleness.constant(), 1.5), "max_staleness"),
    (lambda: staleness.koloskova(tau_c=1, lipschitz=0.0, lr=0.1),
     "lipschitz"),
    (lambda: staleness.mishchenko(0), "n"),
    (lambda: staleness.get("nope"), "staleness name"),
])
def test_invalid_parameters_name_the_parameter(make, param):
  with pytest.raises(ValueError, match=param):
    make()


def test_get_by_name():
  s = staleness.get("polynomial", a=1.0, max_staleness=2)
  assert isinstance(s, staleness.Cutoff)
  np.testing.assert_allclose(s(1), 0.5)
  assert float(s(3)) == 0.0


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("tau", [-1, [0, 3, -2], np.array([-0.5])])
def test_a_negative_staleness_is_refused_where_it_is_known(name, tau):
  """``polynomial(0.5)(-1)`` used to return inf; under ``jit`` the value
  is unknown and the function stays a pure formula."""
  fn = FAMILIES[name]({"a": 0.5, "b": 2.0})
  low = np.min(tau).item()
  with pytest.raises(ValueError) as e:
    fn(tau)
  assert str(e.value) == f"staleness tau must be >= 0, got {low!r}"
  with pytest.raises(ValueError):
    staleness.keep(staleness.cutoff(fn, 4), tau)
  assert np.all(np.isfinite(fn(np.array([0, 1, 30]))))
  assert jax.jit(fn)(jnp.array(-1)).shape == ()


@pytest.mark.parametrize("fn, match", [
    (lambda t: 2.0 * jnp.ones_like(t, jnp.float32),
     r"staleness_fn\(tau\) must be in \[0, 1\], got 2\.0 at tau = 0"),
    (lambda t: -jnp.ones_like(t, jnp.float32), r"got -1\.0 at tau = 0"),
    (lambda t: jnp.where(t < 5, 1.0, jnp.nan), r"got nan at tau = 5"),
    (lambda t: 1.0 + t, r"got 2\.0 at tau = 1"),
    (lambda t: jnp.ones(3) * jnp.exp(-t),
     r"staleness_fn\(tau\) failed on tau = \[0, 1, \.\.\., 64\] "
     r"\(TypeError: .*\); a staleness function maps an array"),
    (lambda t: 1.0 if t < 3 else 0.5, r"must be jit-traceable"),
    (lambda t: jnp.ones((65, 2)), r"must return one weight per staleness "
                                   r"value \(shape \(65,\) .*got shape "
                                   r"\(65, 2\)"),
    (3, r"staleness_fn must be callable, got 3"),
])
@pytest.mark.parametrize("make", [
    lambda s: rules.fedasync(0.5, s),
    lambda s: rules.fedbuff(2, optax.sgd(1.0), s),
    lambda s: rules.afl(clients_per_round=2, staleness_fn=s)])
def test_a_staleness_function_that_cannot_serve_is_refused(make, fn, match):
  """Weights outside [0, 1] or not finite made runs diverge or turn NaN
  with no error; a function that is not vectorized or traceable failed
  deep in the compiled loop. Each rule refuses them when it is built."""
  with pytest.raises(ValueError, match=match):
    make(fn)


def test_functions_within_the_contract_are_accepted_also_under_jit():
  """The built-ins, a scalar weight, s(0) < 1 and a weight that grows
  with tau (allowed, not the built-ins' convention); under jit, with a
  traced parameter, a rule is built without its values being checked."""
  for fn in (staleness.get("polynomial", a=0.5, max_staleness=4),
             lambda t: 0.5, lambda t: jnp.minimum(1.0, 0.1 * (1.0 + t)),
             staleness.get("constant"), staleness.get("exponential", a=0.3)):
    rules.fedasync(0.5, fn)

  @jax.jit
  def mix(a):
    rule = rules.fedasync(0.5, staleness.polynomial(a))
    return rule.apply(rule.init(jnp.zeros(2)), rules.ClientResult(
        jnp.ones(2), jnp.ones(2), 1.0), 3).params
  np.testing.assert_allclose(mix(1.0), 0.5 / 4 * np.ones(2), rtol=1e-6)


def test_weights_beyond_the_probe_are_checked_at_the_schedules_staleness(
    lsq, lsq_update):
  """A rule checks its staleness function at tau = 0..64 when it is built;
  the simulators check it at the staleness values their schedule holds.
  With the probe shortened to 0..30, a weight going negative past 35 is
  caught only there (at concurrency 90, 1 - tau / 80 ran to parameters of
  9006 and a NaN weight to NaN, without an error). A cutoff's dropped
  staleness values are not read."""
  from fedasync_jax import delays, executor, scheduler
  ds, _ = lsq
  n = ds.num_clients
  model = delays.delay_model(np.ones(n), np.ones(n))
  sched = scheduler.asynchronous(model, num_updates=120, concurrency=n - 1,
                                 seed=0)
  first = int(min(t for t in np.unique(sched.staleness) if t > 35))
  monkey = staleness
  old = monkey.PROBE
  try:
    monkey.PROBE = 30  # the probe ends below this schedule's staleness
    late = lambda t: 1.0 - t / 35.0  # noqa: E731 (negative from tau 36)
    rule = rules.fedasync(0.5, late)
    w0, key = jnp.zeros(5), jax.random.key(0)
    match = (rf"the rule's staleness_fn\(tau\) must be in \[0, 1\], got "
             rf"{str(1 - first / 35)[:6]}.* at tau = {first} \(a staleness this "
             rf"schedule holds; checked at 0\.\.30 when the rule was "
             rf"built\)")
    calls = entry_points(
        rule, lsq_update, w0, ds, sched, key=key,
        make_rule=lambda h: rules.fedasync(h["a"], late),
        hparams={"a": jnp.array([0.3, 0.6])})
    for name in ("simulate", "reference", "track", "pure", "sweep"):
      with pytest.raises(ValueError, match=match):
        calls[name]()
    cut = scheduler.asynchronous(model, num_updates=120, concurrency=n - 1,
                                 max_staleness=34, seed=0)
    assert (cut.staleness > 30).any() and (cut.staleness > 35).any()
    executor.simulate(rules.fedasync(0.5, staleness.cutoff(late, 34)),
                      lsq_update, w0, ds, cut, key=key)  # all dropped: runs
  finally:
    monkey.PROBE = old


def test_a_sweeps_members_share_one_cutoff(lsq, lsq_update):
  """Members whose schedules were each drawn with their own cutoff were
  refused with advice to redraw one for the other's cutoff."""
  from fedasync_jax import delays, scheduler, sweep
  ds, _ = lsq
  n = ds.num_clients
  model = delays.delay_model(delays.device_speeds("lognormal", n, seed=0),
                             np.ones(n))
  scheds = [scheduler.asynchronous(model, num_updates=40, concurrency=6,
                                   max_staleness=k, seed=0) for k in (2, 4)]
  with pytest.raises(ValueError, match=r"the members' rules differ in "
                     r"max_staleness 2 \(member 0\) and 4 \(member 1\): a "
                     r"staleness cutoff, a buffer size and the kind of rule "
                     r"are fixed in one compiled sweep; run one sweep per "
                     r"value"):
    sweep.sweep(lambda h: rules.fedasync(0.5, staleness.cutoff(
        staleness.constant(), int(h["m"]))), {"m": jnp.array([2, 4])},
        lsq_update, jnp.zeros(5), ds, scheds,
        keys=jax.random.split(jax.random.key(0), 2))


def test_defaults_and_nested_cutoffs():
  """``get`` fills the declared defaults (``get("polynomial")`` raised a
  TypeError for ``a``); a cutoff of a cutoff drops what either drops
  (``cutoff(cutoff(constant(), 2), 4)`` reported 4 while zeroing 3 and 4,
  which then counted as applied)."""
  np.testing.assert_allclose(staleness.get("polynomial")(3), 4 ** -0.5)
  np.testing.assert_allclose(staleness.get("hinge", a=1.0)(6), 1 / 3)
  with pytest.raises(ValueError, match=r"missing parameter\(s\) \['n'\]"):
    staleness.get("mishchenko")
  for inner, outer in ((2, 4), (4, 2)):
    s = staleness.cutoff(staleness.cutoff(staleness.constant(), inner),
                         outer)
    assert s.max_staleness == 2
    assert staleness.keep(s, 2) and not staleness.keep(s, 3)
    np.testing.assert_array_equal(s(np.arange(5)), [1, 1, 1, 0, 0])


def test_a_sweeps_traced_parameters_give_the_runs_weights_bit_for_bit():
  """A sweep passes a member's staleness parameters as traced arrays of
  the default float dtype, a run as Python numbers: every sweepable
  parameter of every family must give the same weights to the last bit
  (``koloskova`` computed ``4 L gamma`` in Python's float64 before
  rounding it to float32, the sweep in float32 step by step: 8,174 of
  14,000 weights differed)."""
  tau = jnp.arange(0, 2000)
  values = (0.01, 0.3, 0.7, 1.7, 3.1, 0.003, 11.0)
  checked = 0
  for m in staleness.STALENESS.members():
    names = [p.name for p in m.params if p.sweepable]
    if not names:
      continue
    for i in range(len(values)):
      kw = {n: values[(i + 2 * j) % len(values)] for j, n in
            enumerate(names)}
      # both inside jit, as in the simulator (tau traced there)
      run = np.asarray(jax.jit(lambda t, name=m.name, kw=kw: staleness.get(
          name, **kw)(t))(tau))
      swept = np.asarray(jax.jit(lambda v, t, name=m.name: staleness.get(
          name, **v)(t))({n: jnp.asarray(x, jnp.result_type(float))
                          for n, x in kw.items()}, tau))
      np.testing.assert_array_equal(swept, run, err_msg=f"{m.name} {kw}")
      checked += 1
  assert checked >= 5 * len(values)
