"""The simulator as a JAX function: jit, vmap, jacfwd and grad through a run
(sim.pure), compile once per shape in process, and seed sweeps whose
members equal their own runs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import lsq_loss, make_lsq_data
from fedasync_jax import (client, delays, executor, rules, scheduler,
                          staleness, sweep)
from fedasync_jax.sim import program, pure

N = 30


def setup(num_updates=40, seed=0, fixed_steps=False, cutoff=None):
  ds, w_true = make_lsq_data(num_clients=N, dtype=np.float64, max_size=8)
  upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                            max_examples=ds.max_count,
                            fixed_steps=fixed_steps)
  dm = delays.delay_model(delays.device_speeds("lognormal", N, sigma=1.0,
                                               seed=1),
                          ds.counts.astype(float))
  s = scheduler.asynchronous(dm, num_updates=num_updates, concurrency=6,
                             seed=seed, max_staleness=cutoff)
  return ds, w_true, upd, s


def make_rule(hp):
  return rules.fedasync(hp["alpha"], staleness.polynomial(hp["a"]))


def make_cutoff_rule(hp):
  """``make_rule`` dropping updates staler than 4 (``setup(cutoff=4)``)."""
  return rules.fedasync(hp["alpha"],
                        staleness.cutoff(staleness.polynomial(hp["a"]), 4))


def final_loss_fn(ds, upd, s, w0, key, rule=make_rule):
  prep = pure.prepare(s)
  x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)

  def f(alpha, a):
    state, _ = pure.run(rule, upd, w0, prep, key=key, data=ds,
                        rule_hp={"alpha": alpha, "a": a})
    return jnp.mean((x @ state.params - y) ** 2)
  return f


def test_jit_and_vmap_equal_simulate():
  with jax.enable_x64(True):
    ds, _, upd, s = setup()
    w0, key = jnp.zeros(5), jax.random.key(3)
    prep = pure.prepare(s)

    def final(alpha, a):
      return pure.run(make_rule, upd, w0, prep, key=key, data=ds,
                      rule_hp={"alpha": alpha, "a": a})[0].params
    alphas = jnp.array([0.2, 0.5, 0.9])
    batched = jax.jit(jax.vmap(final, in_axes=(0, None)))(alphas, 0.5)
    for i, al in enumerate([0.2, 0.5, 0.9]):
      ref = executor.simulate(make_rule({"alpha": al, "a": 0.5}), upd, w0,
                              ds, s, key=key).state.params
      np.testing.assert_allclose(batched[i], ref, rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(jax.jit(final)(al, 0.5), ref, rtol=1e-10,
                                 atol=1e-12)


def test_vmap_over_stacked_plans_equals_each_seed():
  with jax.enable_x64(True):
    ds, _, upd, _ = setup()
    scheds = [setup(seed=k)[3] for k in range(3)]
    st = pure.stack(scheds)
    keys = jax.random.split(jax.random.key(0), 3)
    w0 = jnp.zeros(5)
    hp = {"alpha": 0.6, "a": 0.5}

    def one(steps, hparams, snap, key):
      return pure.run(make_rule, upd, w0, st, key=key, data=ds, rule_hp=hp,
                      steps=steps, hparams=hparams, init_snap=snap,
                      masked_writes=True)[0].params
    out = jax.jit(jax.vmap(one))(st.steps, st.hparams, st.plan.init_snap,
                                 keys)
    for k, s in enumerate(scheds):
      ref = executor.simulate(make_rule(hp), upd, w0, ds, s,
                              key=keys[k]).state.params
      np.testing.assert_allclose(out[k], ref, rtol=1e-10, atol=1e-12)


def _bad_run_inputs():
  """(name, build kwargs of pure.run from the good ones, error match)."""
  ds, _, upd, s = setup(num_updates=12)
  small_ds, _ = make_lsq_data(num_clients=N - 5, dtype=np.float64, max_size=8)
  dm = delays.delay_model(np.ones(N), np.ones(N))
  cut = scheduler.asynchronous(dm, num_updates=12, concurrency=6, seed=0,
                               max_staleness=0)
  st = pure.stack([s, setup(num_updates=12, seed=1)[3]])
  short = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                              max_examples=ds.max_count - 1)
  hp = {"alpha": 0.6, "a": 0.5}
  return [
      ("a rule the schedule was not drawn for",
       dict(make_rule=lambda h: rules.fedbuff(3)), "arrivals_per_version"),
      ("a schedule with a cutoff the rule lacks",
       dict(prepared=pure.prepare(cut)), "max_staleness"),
      ("data of another client count", dict(data=small_ds),
       f"schedule has {N} clients but data has {N - 5}"),
      ("a client update that holds fewer examples", dict(client=short),
       "max_examples"),
      ("a key that is no PRNG key", dict(key=0), "key must be one PRNG key"),
      ("a schedule, not a plan", dict(prepared=s),
       "prepared must be what pure.prepare"),
      ("stacked plans without one member's", dict(prepared=st),
       "prepared stacks 2 schedules"),
      ("an eval_fn never called", dict(eval_fn=lambda p: {"n": p.sum()}),
       "evaluates nowhere"),
      ("a rule function without rule_hp", dict(rule_hp=None), "rule_hp="),
  ], dict(make_rule=make_rule, client=upd, params=jnp.zeros(5),
          prepared=pure.prepare(s), key=jax.random.key(0), data=ds,
          rule_hp=hp)


def test_bad_inputs_are_refused_when_the_run_is_traced():
  """pure.run refuses what simulate refuses (it ran them before, silently
  wrong: FedBuff on a one-arrival schedule ended at version 10 of 30),
  under jit too, naming the argument."""
  cases, good = _bad_run_inputs()
  for name, bad, match in cases:
    kw = {**good, **bad}
    with pytest.raises(ValueError, match=match):
      jax.jit(lambda p, kw=kw: pure.run(
          kw["make_rule"], kw["client"], p, kw["prepared"], key=kw["key"],
          data=kw["data"], rule_hp=kw["rule_hp"],
          eval_fn=kw.get("eval_fn"))[0].params)(kw["params"])
  # A built ServerRule is taken, as simulate takes it; the same run.
  rule = make_rule(good["rule_hp"])
  a = pure.run(rule, good["client"], good["params"], good["prepared"],
               key=good["key"], data=good["data"])[0].params
  b = pure.run(make_rule, good["client"], good["params"], good["prepared"],
               key=good["key"], data=good["data"],
               rule_hp=good["rule_hp"])[0].params
  np.testing.assert_array_equal(a, b)
  # A ClientDataset passed through jit is traced: named, with the way out.
  with pytest.raises(ValueError, match=r"^data is a ClientDataset traced .*"
                     r"pass program.device_data\(data\)"):
    jax.jit(lambda d: pure.run(rule, good["client"], good["params"],
                               good["prepared"], key=good["key"],
                               data=d)[0].params)(good["data"])
  # Per-task client hyperparameters of the wrong shape name the field.
  with pytest.raises(ValueError, match=r"hparams.lr_scale must hold one "
                     r"value per task"):
    pure.prepare(good["prepared"].schedules[0],
                 hparams=client.ClientHParams(np.float64(0.5),
                                              np.float64(0.0)))


def finite_difference(f, x, h=1e-5):
  return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("fixed_steps", [False, True])
def test_forward_mode_derivatives_equal_finite_differences(fixed_steps):
  with jax.enable_x64(True):
    ds, _, upd, s = setup(fixed_steps=fixed_steps)
    f = final_loss_fn(ds, upd, s, jnp.zeros(5), jax.random.key(3))
    f = jax.jit(f)
    d_alpha = jax.jacfwd(f, argnums=0)(0.6, 0.5)
    d_a = jax.jacfwd(f, argnums=1)(0.6, 0.5)
    fd_alpha = finite_difference(lambda al: f(al, 0.5), 0.6)
    fd_a = finite_difference(lambda a: f(0.6, a), 0.5)
    assert abs(float(d_alpha)) > 1e-6 and abs(float(d_a)) > 1e-8
    np.testing.assert_allclose(d_alpha, fd_alpha, rtol=1e-4)
    np.testing.assert_allclose(d_a, fd_a, rtol=1e-4)


@pytest.mark.parametrize("fixed_steps", [False, True])
def test_reverse_mode_equals_forward_mode(fixed_steps):
  """The default client's loop has a dynamic length, which reverse mode
  cannot transpose; it differentiates as its fixed-length form (jax.grad
  used to fail with JAX's while-loop error unless fixed_steps=True)."""
  with jax.enable_x64(True):
    ds, _, upd, s = setup(fixed_steps=fixed_steps, cutoff=4)
    f = jax.jit(final_loss_fn(ds, upd, s, jnp.zeros(5), jax.random.key(3),
                              rule=make_cutoff_rule))
    g_alpha, g_a = jax.grad(f, argnums=(0, 1))(0.6, 0.5)
    np.testing.assert_allclose(g_alpha, jax.jacfwd(f, argnums=0)(0.6, 0.5),
                               rtol=1e-8)
    np.testing.assert_allclose(g_a, jax.jacfwd(f, argnums=1)(0.6, 0.5),
                               rtol=1e-8)
    np.testing.assert_allclose(
        g_alpha, finite_difference(lambda al: f(al, 0.5), 0.6), rtol=1e-4)


def test_reverse_mode_through_vmap_waves_with_masked_writes():
  """A vmap wave applies its step's arrivals in a loop to their count,
  which reverse mode cannot transpose (JAX's while-loop error);
  ``masked_writes=True`` loops over every position, padding masked, and
  gives the direct path's gradient."""
  with jax.enable_x64(True):
    ds, _, upd, s = setup(cutoff=4)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)

    def loss_fn(batching, width=4, **kw):
      prep = pure.prepare(s, batching=batching, width=width)

      def f(alpha):
        state, _ = pure.run(make_cutoff_rule, upd, jnp.zeros(5), prep,
                            key=jax.random.key(3), data=ds,
                            rule_hp={"alpha": alpha, "a": 0.5}, **kw)
        return jnp.mean((x @ state.params - y) ** 2)
      return f
    want = jax.grad(loss_fn("map", width=1))(0.6)  # the direct path
    got = jax.grad(loss_fn("vmap", masked_writes=True))(0.6)
    assert abs(float(want)) > 1e-4
    np.testing.assert_allclose(got, want, rtol=1e-10)
    with pytest.raises(ValueError, match="Reverse-mode"):
      jax.grad(loss_fn("vmap"))(0.6)


def test_grad_with_respect_to_the_client_learning_rate():
  """Through the per-task rates (docs/design.md), against finite
  differences."""
  with jax.enable_x64(True):
    ds, _, upd, s = setup(num_updates=12)
    prep = pure.prepare(s)

    def f(scale):
      hp = prep.hparams._replace(lr_scale=prep.hparams.lr_scale * scale)
      state, _ = pure.run(make_rule, upd, jnp.zeros(5), prep, hparams=hp,
                          key=jax.random.key(0), data=ds,
                          rule_hp={"alpha": 0.6, "a": 0.5})
      return jnp.sum(state.params ** 2)
    g = jax.jit(jax.grad(f))(1.0)
    assert abs(float(g)) > 1e-3
    np.testing.assert_allclose(g, finite_difference(f, 1.0), rtol=1e-6)


def test_grad_of_the_default_client_equals_the_fixed_length_ones():
  """Through several epochs, early stopping and Adam, with respect to the
  initial parameters (the fixed-length client's grad is checked against
  jacfwd and finite differences above)."""
  with jax.enable_x64(True):
    ds, _, _, s = setup(num_updates=12, cutoff=4)
    prep = pure.prepare(s)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    for kw in ({"epochs": 3, "patience": 1}, {"steps": 3}):
      grads = []
      for fixed in (False, True):
        upd = client.local_update(lsq_loss, optax.adam(0.05), batch_size=3,
                                  max_examples=ds.max_count,
                                  fixed_steps=fixed, **kw)

        def f(w0):
          state, _ = pure.run(make_cutoff_rule, upd, w0, prep,
                              key=jax.random.key(0), data=ds,
                              rule_hp={"alpha": 0.6, "a": 0.5})
          return jnp.mean((x @ state.params - y) ** 2)
        grads.append(jax.jit(jax.grad(f))(jnp.full(5, 0.1)))
      assert float(jnp.max(jnp.abs(grads[0]))) > 1e-3
      np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_fixed_steps_client_equals_default_client():
  with jax.enable_x64(True):
    ds, _, upd, s = setup()
    _, _, fixed, _ = setup(fixed_steps=True)
    hp = {"alpha": 0.6, "a": 0.5}
    a = executor.simulate(make_rule(hp), upd, jnp.zeros(5), ds, s,
                          key=jax.random.key(1))
    b = executor.simulate(make_rule(hp), fixed, jnp.zeros(5), ds, s,
                          key=jax.random.key(1))
    np.testing.assert_allclose(a.state.params, b.state.params, rtol=1e-12,
                               atol=1e-14)


def count_traces(monkeypatch) -> list:
  """Empties the program cache and returns a list that grows by one each
  time ``simulate`` traces its chunk program."""
  program.clear_cache()
  traces = []
  real = executor.make_program

  def counted(*args, **kw):
    prog = real(*args, **kw)

    def run_chunk(*a, **k):
      traces.append(1)
      return prog.run_chunk(*a, **k)
    return prog._replace(run_chunk=run_chunk)
  monkeypatch.setattr(executor, "make_program", counted)
  return traces


def test_second_simulate_call_does_not_compile(monkeypatch):
  """Equal shapes reuse the compiled chunk: a new schedule (another seed),
  new initial parameters and a new key trace nothing."""
  traces = count_traces(monkeypatch)
  ds, _, upd, s0 = setup(num_updates=60)
  rule = rules.fedasync(0.6, staleness.polynomial(0.5))
  first = executor.simulate(rule, upd, jnp.zeros(5, jnp.float32), ds, s0,
                            key=jax.random.key(0), chunk_steps=16)
  assert len(traces) == 1
  for seed in (1, 2):
    s = setup(num_updates=60, seed=seed)[3]
    out = executor.simulate(rule, upd, jnp.ones(5, jnp.float32), ds, s,
                            key=jax.random.key(seed), chunk_steps=16)
    assert int(out.state.version) == 60
  assert len(traces) == 1
  # A different shape (float64 parameters) is a new program.
  with jax.enable_x64(True):
    executor.simulate(rule, upd, jnp.zeros(5), ds, s0,
                      key=jax.random.key(0), chunk_steps=16)
  assert len(traces) == 2
  assert int(first.state.version) == 60


@pytest.mark.parametrize("members, batching", [("map", None),
                                               ("vmap", None),
                                               ("vmap", "vmap")])
@pytest.mark.parametrize("cutoff", [None, 3])
def test_seed_sweep_members_equal_their_own_runs(cutoff, members, batching):
  """Different schedules per member share their evaluation points; each
  member's parameters and evaluations equal its own run's (with a cutoff
  the members' evaluation points differ). With waves (``batching="vmap"``)
  under a vmap over members, every member's arrival loop runs over all
  of a step's positions with the padding masked: a member whose step has
  fewer arrivals than another's changes nothing at the rest."""
  with jax.enable_x64(True):
    ds, w_true, upd, _ = setup()
    scheds = [setup(seed=k, cutoff=cutoff, num_updates=60)[3]
              for k in range(3)]
    keys = jax.random.split(jax.random.key(0), 3)
    ev = lambda p: {"dist": jnp.linalg.norm(p - w_true)}  # noqa: E731

    def rule_of(hp):
      s = staleness.polynomial(hp["a"])
      return rules.fedasync(hp["alpha"], s if cutoff is None else
                            staleness.cutoff(s, cutoff))
    outs = sweep.sweep(rule_of, {"alpha": jnp.full(3, 0.6),
                                   "a": jnp.full(3, 0.5)},
                       upd, jnp.zeros(5), ds, scheds, keys=keys,
                       eval_fn=ev, eval_every=7, chunk_steps=16,
                       members=members, batching=batching,
                       width=None if batching is None else 3)
    assert all(o.stats["members_as"] == members for o in outs)
    if batching is not None:
      assert all(o.stats["batching"] == batching for o in outs)
    for k, s in enumerate(scheds):
      own = executor.simulate(rule_of({"alpha": 0.6, "a": 0.5}), upd,
                              jnp.zeros(5), ds, s, key=keys[k], eval_fn=ev,
                              eval_every=7, chunk_steps=16)
      chex.assert_trees_all_close(outs[k].state.params, own.state.params,
                                  rtol=1e-10, atol=1e-12)
      assert [e["version"] for e in outs[k].evals] == [
          e["version"] for e in own.evals]
      np.testing.assert_allclose([e["test_dist"] for e in outs[k].evals],
                                 [e["test_dist"] for e in own.evals],
                                 rtol=1e-10)
    if cutoff is not None:
      assert any((~o.arrivals["applied"]).any() for o in outs)


def test_sweep_stopped_and_resumed_equals_uninterrupted():
  ds, w_true, upd, _ = setup()
  scheds = [setup(seed=k, num_updates=60)[3] for k in range(2)]
  keys = jax.random.split(jax.random.key(0), 2)
  ev = lambda p: {"dist": jnp.linalg.norm(p - w_true)}  # noqa: E731
  grid = {"alpha": jnp.array([0.3, 0.8]), "a": jnp.full(2, 0.5)}
  kw = dict(keys=keys, eval_fn=ev, eval_every=5, chunk_steps=8)
  full = sweep.sweep(make_rule, grid, upd, jnp.zeros(5, jnp.float32), ds,
                     scheds, **kw)
  saved = []

  def stop_after_two(ck):
    saved.append(ck.to_bytes())
    return len(saved) == 2
  part = sweep.sweep(make_rule, grid, upd, jnp.zeros(5, jnp.float32), ds,
                     scheds, checkpoint=stop_after_two, **kw)
  assert all(p.stats["stopped_early"] for p in part)
  assert len(part[0].arrivals["client"]) == 16
  resumed = sweep.sweep(make_rule, grid, upd, jnp.zeros(5, jnp.float32), ds,
                        scheds, resume=sweep.driver.Checkpoint.from_bytes(
                            saved[-1]), **kw)
  for a, b in zip(full, resumed):
    np.testing.assert_array_equal(a.state.params, b.state.params)
    np.testing.assert_equal(a.evals, b.evals)  # NaN equals NaN here
    for k in a.arrivals:
      np.testing.assert_array_equal(a.arrivals[k], b.arrivals[k])
  # Resumed with another chunk_steps it failed with an IndexError; now
  # the run digest refuses it, and a checkpoint without one (written
  # before it was recorded) is refused by its step count.
  with pytest.raises(ValueError, match=r"resume: the checkpoint is of "
                     r"another run: .*chunk_steps differ"):
    sweep.sweep(make_rule, grid, upd, jnp.zeros(5, jnp.float32), ds, scheds,
                resume=sweep.driver.Checkpoint.from_bytes(saved[-1]),
                **{**kw, "chunk_steps": 4})
  undigested = sweep.driver.Checkpoint.from_bytes(saved[-1])._replace(
      run_digest="")
  with pytest.raises(ValueError, match=r"resume: the checkpoint holds 16 "
                     r"plan steps, not the 8 of its chunks at chunk_steps=4"):
    sweep.sweep(make_rule, grid, upd, jnp.zeros(5, jnp.float32), ds, scheds,
                resume=undigested, **{**kw, "chunk_steps": 4})


def test_a_checkpoint_resumed_with_another_run_of_equal_shapes_is_refused():
  """A library checkpoint resumed with another schedule of the same
  shapes, or another key, continued silently: a run that was neither."""
  ds, w_true, upd, _ = setup()
  s0, s1 = [setup(seed=k, num_updates=60)[3] for k in range(2)]
  ev = lambda p: {"dist": jnp.linalg.norm(p - w_true)}  # noqa: E731
  w0 = jnp.zeros(5, jnp.float32)
  rule = make_rule({"alpha": 0.6, "a": 0.5})
  kw = dict(eval_fn=ev, eval_every=5, chunk_steps=8)
  saved = []

  def stop_after_two(ck):
    saved.append(ck)
    return len(saved) == 2
  executor.simulate(rule, upd, w0, ds, s0, key=jax.random.key(0),
                    checkpoint=stop_after_two, **kw)
  ck = executor.Checkpoint.from_bytes(saved[-1].to_bytes())
  assert ck.run_digest == saved[-1].run_digest and len(ck.run_digest) == 64
  # The two schedules plan to the same shapes: only the digest tells.
  own = executor.simulate(rule, upd, w0, ds, s0, key=jax.random.key(0),
                          resume=ck, **kw)
  full = executor.simulate(rule, upd, w0, ds, s0, key=jax.random.key(0),
                           **kw)
  np.testing.assert_array_equal(own.state.params, full.state.params)
  for other in ({"schedule": s1}, {"key": jax.random.key(1)}):
    args = {"schedule": s0, "key": jax.random.key(0), **other}
    with pytest.raises(ValueError, match="resume: the checkpoint is of "
                       "another run"):
      executor.simulate(rule, upd, w0, ds, args["schedule"],
                        key=args["key"], resume=ck, **kw)
  saved.clear()
  grid = {"alpha": jnp.array([0.3, 0.8]), "a": jnp.full(2, 0.5)}
  keys = jax.random.split(jax.random.key(0), 2)
  sweep.sweep(make_rule, grid, upd, w0, ds, [s0, s1], keys=keys,
              checkpoint=stop_after_two, **kw)
  with pytest.raises(ValueError, match="resume: the checkpoint is of "
                     "another run"):
    sweep.sweep(make_rule, grid, upd, w0, ds, [s1, s0], keys=keys,
                resume=saved[-1], **kw)


def test_the_first_progress_after_a_resume_shows_the_last_evaluation():
  """After a resume the progress showed the initial evaluation (simulate)
  or none (sweep) until the run evaluated again; a killed run's bar read
  the starting accuracy."""
  ds, w_true, upd, _ = setup()
  s = setup(seed=0, num_updates=60)[3]
  ev = lambda p: {"dist": jnp.linalg.norm(p - w_true)}  # noqa: E731
  w0, key = jnp.zeros(5, jnp.float32), jax.random.key(0)
  hp = {"alpha": 0.8, "a": 0.5}
  calls = {
      "simulate": lambda **kw: [executor.simulate(
          make_rule(hp), upd, w0, ds, s, key=key, **kw)],
      "sweep": lambda **kw: sweep.sweep(
          make_rule, {k: jnp.full(2, v) for k, v in hp.items()}, upd, w0, ds,
          [s, s], keys=jax.random.split(key, 2), **kw)}
  for name, call in calls.items():
    saved = []

    def stop_after_three(ck):
      saved.append(ck.to_bytes())
      return len(saved) == 3
    part = call(eval_fn=ev, eval_every=12, chunk_steps=4,
                checkpoint=stop_after_three)
    before = part[0].evals[-1]
    assert before["client_updates"] > 0, before
    seen = []
    call(eval_fn=ev, eval_every=12, chunk_steps=4, progress=seen.append,
         resume=sweep.driver.Checkpoint.from_bytes(saved[-1]))
    # Chunk 4 (versions 13-16) evaluates nothing: the last evaluation is
    # the one at version 12, before the stop.
    assert seen[0]["version"] < 24 and before["version"] == 12, name
    first = seen[0]["last_eval"]
    assert first is not None, name
    np.testing.assert_allclose(first["test_dist"], before["test_dist"],
                               rtol=1e-6, err_msg=name)
    assert first["client_updates"] == before["client_updates"], name


def test_progress_names_the_updates_each_evaluation_follows():
  """Each progress report's last evaluation says after how many of its
  member's updates it was made: the last evaluation point so far (a run,
  a sweep of members with their own schedules, and members sharing one)."""
  from fedasync_jax.sim import tasks
  ds, w_true, upd, _ = setup()
  scheds = [setup(seed=k, num_updates=40)[3] for k in (0, 1)]
  ev = lambda p: {"dist": jnp.linalg.norm(p - w_true)}  # noqa: E731
  w0, key = jnp.zeros(5, jnp.float32), jax.random.key(0)
  hp = {"alpha": 0.8, "a": 0.5}

  def expected(sched, done):
    points = np.flatnonzero(tasks.eval_points(
        np.asarray(sched.version_after), 6))
    return int(points[points < done].max()) + 1
  runs = {
      "simulate": ([scheds[0]], lambda **kw: executor.simulate(
          make_rule(hp), upd, w0, ds, scheds[0], key=key, **kw)),
      "sweep": (scheds, lambda **kw: sweep.sweep(
          make_rule, {k: jnp.full(2, v) for k, v in hp.items()}, upd, w0,
          ds, scheds, keys=jax.random.split(key, 2), **kw)),
      "shared": ([scheds[1]] * 2, lambda **kw: sweep.sweep(
          make_rule, {k: jnp.full(2, v) for k, v in hp.items()}, upd, w0,
          ds, scheds[1], keys=jax.random.split(key, 2), **kw))}
  for name, (member_scheds, call) in runs.items():
    seen = []
    call(eval_fn=ev, eval_every=6, chunk_steps=5, progress=seen.append)
    checked = 0
    for info in seen:
      members = info.get("members") or [info]
      for sched, m in zip(member_scheds, members):
        done = m["arrivals_done"]
        if done >= 6:
          assert m["last_eval"]["client_updates"] == expected(sched, done), (
              name, done)
          checked += 1
    assert checked >= 5, name


def test_simulate_with_rule_function_compiles_once_for_all_values(
    monkeypatch):
  traces = count_traces(monkeypatch)
  ds, _, upd, s = setup()
  w0 = jnp.zeros(5, jnp.float32)
  # Values of every kind a user passes: a Python float (weakly typed to
  # JAX), a numpy scalar, a JAX array; one program serves them all.
  for a in (0.25, np.float64(0.5), jnp.asarray(1.0)):
    out = executor.simulate(make_rule, upd, w0, ds, s, key=jax.random.key(0),
                            rule_hp={"alpha": 0.6, "a": a})
    ref = executor.simulate(rules.fedasync(0.6, staleness.polynomial(a)),
                            upd, w0, ds, s, key=jax.random.key(0))
    np.testing.assert_allclose(out.state.params, ref.state.params,
                               rtol=1e-6, atol=1e-7)
  # One trace for the rule function, one per rule object.
  assert len(traces) == 1 + 3
