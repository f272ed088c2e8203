"""Lane utilisation of a plan, against a count done wave by wave."""

import numpy as np
import pytest

from fedasync_jax import delays, plan, scheduler
from fedasync_jax.sim import lanes


@pytest.mark.parametrize("width", [1, 3, 8])
def test_utilisation_counts_every_wave(width):
  rng = np.random.default_rng(width)
  n = 30
  counts = rng.integers(1, 60, n)
  steps = lanes.client_steps(counts, batch_size=7, epochs=2)
  assert steps.tolist() == [2 * -(-int(c) // 7) for c in counts]
  m = delays.delay_model(rng.lognormal(0, 1, n), counts * 1.0)
  s = scheduler.asynchronous(m, num_updates=150, concurrency=9, seed=1)
  p = plan.make_plan(s, width=width)
  useful = executed = 0
  for row_c, row_v in zip(p.wave_client, p.wave_valid):
    lane_steps = [int(steps[c]) for c, v in zip(row_c, row_v) if v]
    useful += sum(lane_steps)
    executed += width * max(lane_steps, default=0)
  u = lanes.utilisation(p, steps)
  assert (u["useful_steps"], u["executed_lane_steps"]) == (useful, executed)
  # Every applied arrival's client is trained exactly once.
  assert useful == int(steps[s.arrival_client[~s.dropped]].sum())
  assert 0 < u["utilisation"] <= 1
  if width == 1:
    assert u["utilisation"] == 1.0
  with pytest.raises(ValueError, match="direct"):
    lanes.utilisation(plan.make_direct_plan(s), steps)


@pytest.mark.parametrize("batching", ["vmap", "map_batched"])
def test_padding_lanes_train_no_step(batching):
  """A batched wave's padding lanes (client 0 by convention) get an
  example count of 0, so that the wave's loop runs as long as its longest
  real client only; real lanes get their client's count."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax.sim import program, strategies
  counts = jnp.array([50, 3, 4, 5], jnp.int32)  # client 0 is the largest
  dev = program.DeviceData(x=None, y=None, offsets=jnp.arange(4) * 50,
                           counts=counts)

  def train_one(start, offset, count, key, hp):  # reports the count it got
    del offset, key, hp
    return start, {"loss": count.astype(jnp.float32)}
  ctx = strategies.Context(rule=None, train_one=train_one,
                           key=jax.random.key(0),
                           hp_table=jnp.zeros(8), dev=dev, evaluate=None,
                           eval_zeros=None)
  W = 4
  row = plan.Steps(
      wave_task=jnp.array([1, 2, 0, 0]), wave_client=jnp.array([2, 3, 0, 0]),
      wave_snap=jnp.zeros(W, jnp.int32), wave_slot=jnp.array([0, 1, 2, 2]),
      wave_valid=jnp.array([True, True, False, False]),
      arr_slot=None, arr_staleness=None, arr_ends_round=None, arr_snap=None,
      arr_valid=None, arr_eval=None)
  strategy, _ = strategies.choose(batching, width=W, arrivals_per_step=None,
                                  concurrency=4.0, map_batch_size=2)
  snaps = jnp.zeros((1, 3))
  results = jnp.zeros((3, 3))
  _, seen = strategy.train(ctx, results, snaps, row)
  assert seen.tolist() == [4, 5, 0, 0]


def _lockstep_rounds(s, steps):
  """Rounds of local steps that unlimited lockstep lanes need: every round
  starts each client whose start version exists, advances every busy
  lane by one step, then applies arrivals in order while trained."""
  a_task = s.arrival_task
  version_at = {}  # version -> arrivals applied when it exists
  applied, rounds, left, trained = 0, 0, {}, set()
  for p, v in enumerate(s.version_after):
    version_at.setdefault(int(v), p + 1)
  version_at[0] = 0
  started = set()
  while applied < s.num_arrivals:
    for p in range(s.num_arrivals):
      k = int(a_task[p])
      if (not s.dropped[p] and k not in started
              and version_at[int(s.dispatch_version[k])] <= applied):
        started.add(k)
        left[k] = int(steps[s.client[k]])
    if left:
      rounds += 1
      for k in list(left):
        left[k] -= 1
        if left[k] == 0:
          trained.add(k)
          del left[k]
    while applied < s.num_arrivals and (
        s.dropped[applied] or int(a_task[applied]) in trained):
      applied += 1
  return rounds


@pytest.mark.parametrize("kind", ["async", "sync", "cutoff"])
def test_critical_path_is_what_unlimited_lanes_need(kind):
  rng = np.random.default_rng(3)
  n = 25
  counts = rng.integers(1, 40, n)
  steps = lanes.client_steps(counts, batch_size=6)
  m = delays.delay_model(rng.lognormal(0, 1, n), counts * 1.0)
  if kind == "sync":
    s = scheduler.synchronous(m, num_rounds=6, cohort_size=5, seed=2)
  else:
    s = scheduler.asynchronous(m, num_updates=120, concurrency=8, seed=2,
                               **({"max_staleness": 4} if kind == "cutoff"
                                  else {}))
  cp = lanes.critical_path(s, steps)
  assert cp["critical_path_steps"] == _lockstep_rounds(s, steps)
  assert cp["useful_steps"] == int(steps[s.arrival_client[~s.dropped]].sum())
  # A lockstep plan of any width cannot beat the bound.
  for width in (1, 4, 16):
    u = lanes.utilisation(plan.make_plan(s, width=width), steps)
    assert u["utilisation"] <= min(1.0, cp["parallelism"] / width) + 1e-12


LANE_CASES = {
    "one epoch": {},
    "epochs, decay, prox": {"epochs": 3, "epoch_decay": True},
    "patience": {"epochs": 6, "patience": 1, "min_delta": 0.05},
    "fixed steps": {"steps": 5},
    "adam": {"epochs": 2, "opt": "adam"},
}


@pytest.mark.parametrize("case", sorted(LANE_CASES))
def test_lane_machine_equals_update(case):
  """``Lane.start``, ``step`` until done, ``finish`` give ``update``'s
  result and metrics in float64, for every client size from empty to the
  largest, and ``steps_of`` counts at least the steps run."""
  import jax
  import jax.numpy as jnp
  import optax
  from conftest import lsq_loss
  from fedasync_jax import client
  opts = dict(LANE_CASES[case])
  opt = optax.adam(0.05) if opts.pop("opt", None) == "adam" else \
      optax.sgd(0.1)
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    upd = client.local_update(lsq_loss, opt, batch_size=3, max_examples=11,
                              **opts)
    lane = upd.lane
    run_update = jax.jit(upd.update)
    start = jax.jit(lane.start)
    step = jax.jit(lambda st: lane.step(st, x, y, jax.random.key_impl(
        jax.random.key(0))))
    finish = jax.jit(lane.finish)
    w0 = jnp.asarray([0.3, -0.2, 0.1])
    hp = client.ClientHParams(0.7, 0.4 if "prox" in case else 0.0)
    planned = lane.steps_of(np.arange(12))
    stopped_early = 0
    for count in range(12):
      key = jax.random.key(count)
      ref = client.ClientRef(jnp.asarray(x), jnp.asarray(y), 3 * count, count)
      want, want_met = run_update(w0, ref, key, hp)
      st = start(w0, ref, key, hp)
      n = 0
      while not bool(st.done):
        st = step(st)
        n += 1
      got, got_met = finish(st)
      np.testing.assert_allclose(got.params, want.params, rtol=0, atol=1e-12)
      np.testing.assert_allclose(got.delta, want.delta, rtol=0, atol=1e-12)
      assert float(got.num_examples) == float(want.num_examples) == count
      assert int(got_met["steps"]) == int(want_met["steps"]) == n
      assert int(got_met["epochs"]) == int(want_met["epochs"])
      np.testing.assert_allclose(got_met["loss"], want_met["loss"],
                                 rtol=1e-12)
      assert n <= planned[count]
      stopped_early += n < planned[count]
    # Early stopping is exercised (and only where it is on).
    assert (stopped_early > 0) == ("patience" in case)


@pytest.mark.parametrize("name", ["fedasync-constant", "fedasync-polynomial",
                                  "fedasync-cutoff", "fedbuff-adam", "afl",
                                  "size-weighted-mix-mlp"])
def test_refill_matches_reference_float64(name):
  """The refill executor (lanes stepping one local step at a time) equals
  the one-client-at-a-time reference, history and train losses too."""
  import jax
  from test_executor import assert_same_history, rel_diff, run_both
  with jax.enable_x64(True):
    e, r, s = run_both(name, np.float64, batching="refill", width=6)
    assert e.stats["batching"] == "refill" and e.stats["width"] == 6
    assert rel_diff(e.state.params, r.state.params) <= 1e-8
    assert int(e.state.version) == int(r.state.version)
    assert_same_history(e, r)
    # (clients dropped by the staleness cutoff are not trained here)
    trained = e.arrivals["applied"] & ~np.isnan(r.arrivals["train_loss"])
    assert trained.sum() > 0.5 * s.num_arrivals
    np.testing.assert_allclose(e.arrivals["train_loss"][trained],
                               r.arrivals["train_loss"][trained], rtol=1e-8)
    for a, b in zip(e.evals, r.evals):
      for k in a:
        if k not in ("version", "client_updates", "simulated_time"):
          np.testing.assert_allclose(a[k], b[k], rtol=1e-8, atol=1e-12)


def test_refill_plan_keeps_lanes_busy_and_its_utilisation_is_counted():
  """A refill plan starts a client only in an idle lane, ends it after
  its steps, and its utilisation (busy lane-steps only) reaches the
  critical-path bound where the wave plan does not."""
  rng = np.random.default_rng(5)
  n = 40
  counts = rng.integers(1, 80, n)
  steps = lanes.client_steps(counts, batch_size=8)
  m = delays.delay_model(rng.lognormal(0, 1, n), counts * 1.0)
  s = scheduler.asynchronous(m, num_updates=400, concurrency=30, seed=4)
  W = 4
  p = plan.make_plan(s, width=W, steps_of_client=steps)
  busy_until = np.full(W, -1)
  for i in range(p.num_steps):
    for lane in np.nonzero(p.wave_valid[i])[0]:
      assert busy_until[lane] < i  # the lane was idle
      k = p.wave_task[i, lane]
      busy_until[lane] = i + max(1, steps[s.client[k]]) - 1
    for lane in np.nonzero(p.lane_done[i] >= 0)[0]:
      assert busy_until[lane] == i
  assert sorted(p.lane_done[p.lane_done >= 0]) == sorted(
      p.wave_task[p.wave_valid])
  u = lanes.utilisation(p, steps)
  cp = lanes.critical_path(s, steps)
  assert u["useful_steps"] == cp["useful_steps"]
  bound = min(1.0, cp["parallelism"] / W)
  assert u["utilisation"] <= bound + 1e-12
  waves = lanes.utilisation(plan.make_plan(s, width=W), steps)["utilisation"]
  assert u["utilisation"] > max(0.9 * bound, waves)


def test_refill_sweep_and_resume_equal_separate_runs():
  """Members with different schedules (padded refill plans, lanes batched
  over members) equal their separate runs; a run stopped after a chunk in
  the middle of its lanes' clients and resumed ends bit-identical."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax import executor, rules, staleness, sweep, tasks
  from test_executor import (assert_same_history, problem, rel_diff,
                             speeds)
  ds, upd, params, ev = problem("lsq", np.float32)
  dm = delays.delay_model(speeds("lognormal", 100), ds.counts.astype(float))
  scheds = [scheduler.asynchronous(dm, num_updates=150, concurrency=c,
                                   seed=c) for c in (5, 12)]
  grid = {"alpha": jnp.array([0.4, 0.8])}

  def make_rule(hp):
    return rules.fedasync(hp["alpha"], staleness.polynomial(0.5))
  keys = jax.random.split(jax.random.key(0), 2)
  kw = dict(batching="refill", width=4, chunk_steps=16)
  outs = sweep.sweep(make_rule, grid, upd, params, ds, scheds, keys=keys,
                     eval_fn=ev, eval_every=50, **kw)
  saved = []

  def stop_after_third(ck):
    saved.append(ck)
    return len(saved) == 3
  for m in range(2):
    args = (make_rule({"alpha": float(grid["alpha"][m])}), upd, params, ds,
            scheds[m])
    run = dict(key=keys[m], hparams=tasks.task_hparams(scheds[m]),
               eval_fn=ev, eval_every=50, **kw)
    single = executor.simulate(*args, **run)
    assert single.stats["batching"] == "refill"
    assert rel_diff(outs[m].state.params, single.state.params) <= 1e-6
    assert_same_history(outs[m], single)
    if m == 1:
      cut = executor.simulate(*args, checkpoint=stop_after_third, **run)
      assert cut.stats["stopped_early"]
      resumed = executor.simulate(*args, resume=saved[-1], **run)
      for a, b in zip(jax.tree.leaves(resumed.state.params),
                      jax.tree.leaves(single.state.params)):
        np.testing.assert_array_equal(a, b)
      assert_same_history(resumed, single)


def test_refill_default_width_is_the_schedules_parallelism():
  import jax
  from fedasync_jax import executor, rules
  from test_executor import problem, speeds
  ds, upd, params, _ = problem("lsq", np.float32)
  dm = delays.delay_model(speeds("lognormal", 100), ds.counts.astype(float))
  s = scheduler.asynchronous(dm, num_updates=150, concurrency=20, seed=1)
  out = executor.simulate(rules.fedasync(0.5), upd, params, ds, s,
                          key=jax.random.key(0), batching="refill")
  par = lanes.critical_path(s, upd.lane.steps_of(ds.counts))["parallelism"]
  assert out.stats["width"] == int(np.ceil(par)) > 1
  with pytest.raises(ValueError, match="refill"):
    executor.simulate(rules.fedasync(0.5), upd._replace(lane=None), params,
                      ds, s, key=jax.random.key(0), batching="refill")


def test_devices_with_batched_lanes_equal_the_reference(tmp_path):
  """The accelerator layout (a wave's lanes over the devices, batched with
  vmap within each: ``Devices(inner="vmap")``) equals the reference in
  float64, here on two CPU devices (a subprocess: the device count is
  fixed when JAX starts); the layout ``batching=None`` picks."""
  import subprocess
  import sys
  import textwrap
  from pathlib import Path
  script = tmp_path / "lanes.py"
  script.write_text(textwrap.dedent("""
      import sys
      import jax
      jax.config.update("jax_num_cpu_devices", 2)
      jax.config.update("jax_enable_x64", True)
      import numpy as np, optax
      sys.path.insert(0, sys.argv[1])
      from conftest import lsq_loss, make_lsq_data
      from fedasync_jax import (client, delays, executor, reference, rules,
                                scheduler)
      from fedasync_jax.sim import strategies
      assert strategies.default_batching("cpu") == "map"
      assert strategies.default_batching("gpu") == "devices"
      ds, _ = make_lsq_data(num_clients=30, dtype=np.float64)
      upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                                max_examples=ds.max_count, epochs=2)
      dm = delays.delay_model(delays.device_speeds("lognormal", 30, seed=0),
                              ds.counts * 1.0)
      s = scheduler.asynchronous(dm, num_updates=120, concurrency=8, seed=0)
      rule = rules.fedasync(0.6)
      key = jax.random.key(1)
      ref = reference.run(rule, upd, np.zeros(5), ds, s, key=key)
      worst = 0.0
      for inner in ("vmap", "map"):
        orig = strategies.Devices.__init__
        strategies.Devices.__init__ = (
            lambda self, num_devices=None, inner=inner:
            orig(self, num_devices, inner))
        out = executor.simulate(rule, upd, np.zeros(5), ds, s, key=key,
                                batching="devices", width=4)
        strategies.Devices.__init__ = orig
        worst = max(worst, float(np.max(np.abs(
            np.asarray(out.state.params) - np.asarray(ref.state.params)))))
      print("WORST", worst)
  """))
  tests_dir = Path(__file__).parent
  r = subprocess.run([sys.executable, str(script), str(tests_dir)],
                     capture_output=True, text=True, timeout=300,
                     cwd=tests_dir.parent)
  assert r.returncode == 0, r.stderr[-2000:]
  worst = float(r.stdout.split("WORST")[-1])
  assert worst <= 1e-8


@pytest.mark.parametrize("width,devices", [(6, 2), (8, 2), (12, 3), (8, 4),
                                           (5, 1)])
def test_deal_lanes_balances_the_devices(width, devices):
  """``deal_lanes`` is a permutation whose blocks are the devices' lanes;
  dealt in a snake over the lanes sorted by count, any two devices' loads
  differ by at most the largest count (round-robin dealing does not bound
  it), and padding lanes (count 0) go last."""
  import jax.numpy as jnp
  from fedasync_jax.sim import strategies
  rng = np.random.default_rng(width * 10 + devices)
  for _ in range(20):
    counts = rng.integers(0, 100, width)
    deal = np.asarray(strategies.deal_lanes(jnp.asarray(counts), devices))
    assert sorted(deal.tolist()) == list(range(width))
    loads = counts[deal].reshape(devices, -1).sum(axis=1)
    assert loads.max() - loads.min() <= counts.max()
    # Within a device, its lanes by decreasing count (zeros last).
    per = counts[deal].reshape(devices, -1)
    assert (np.diff(per, axis=1) <= 0).all()
  # A wave round-robin dealing leaves unbalanced: 28 against 41 steps.
  counts = np.array([5, 19, 0, 12, 15, 10, 8, 0])
  rr = counts.reshape(-1, 2).T.sum(axis=1)
  assert sorted(rr.tolist()) == [28, 41]
  deal = np.asarray(strategies.deal_lanes(jnp.asarray(counts), 2))
  assert sorted(counts[deal].reshape(2, -1).sum(axis=1).tolist()) == [32, 37]
  with pytest.raises(ValueError, match=r"width \(8\) must be a multiple "
                     r"of the number of devices \(3\)"):
    strategies.deal_lanes(jnp.asarray(counts), 3)


def test_devices_strategy_deals_its_lanes_with_deal_lanes(lsq, lsq_update,
                                                          monkeypatch):
  """``batching="devices"`` orders its lanes by ``deal_lanes`` (on this
  process's one device too) and still ends at the direct path's
  parameters."""
  import jax
  from fedasync_jax import executor, rules
  from fedasync_jax.sim import program, strategies
  ds, _ = lsq
  dm = delays.delay_model(np.ones(ds.num_clients), ds.counts * 1.0)
  s = scheduler.asynchronous(dm, num_updates=40, concurrency=6, seed=3)
  calls = []
  real = strategies.deal_lanes

  def spy(counts, num_devices):
    calls.append(num_devices)
    return real(counts, num_devices)
  monkeypatch.setattr(strategies, "deal_lanes", spy)
  program.clear_cache()  # trace anew: a cached program would not call it
  args = (rules.fedasync(0.5), lsq_update, np.zeros(5), ds, s)
  out = executor.simulate(*args, key=jax.random.key(0), batching="devices",
                          width=4)
  assert calls == [len(jax.devices())]  # traced once
  direct = executor.simulate(*args, key=jax.random.key(0))
  np.testing.assert_allclose(np.asarray(out.state.params),
                             np.asarray(direct.state.params), rtol=0,
                             atol=1e-12)


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_device_balance_counts_the_deal_of_the_strategy(devices):
  """``lanes.device_balance`` equals a wave-by-wave count of the busiest
  device's steps under ``strategies.deal_lanes`` (dealt by example count)
  and under round-robin dealing; dealt by size it is better in total
  here."""
  import jax.numpy as jnp
  from fedasync_jax.sim import strategies
  rng = np.random.default_rng(devices)
  n = 40
  counts = rng.integers(1, 120, n)
  steps = lanes.client_steps(counts, batch_size=10)
  m = delays.delay_model(rng.lognormal(0, 1, n), counts * 1.0)
  s = scheduler.asynchronous(m, num_updates=200, concurrency=12, seed=2)
  p = plan.make_plan(s, width=8)
  want = {"size": 0, "round_robin": 0}
  useful = 0
  for row_c, row_v in zip(p.wave_client, p.wave_valid):
    c = np.where(row_v, counts[row_c], 0)
    st = np.where(row_v, steps[row_c], 0)
    useful += int(st.sum())
    deal = np.asarray(strategies.deal_lanes(jnp.asarray(c), devices))
    want["size"] += int(st[deal].reshape(devices, -1).sum(axis=1).max())
    want["round_robin"] += int(max(st[d::devices].sum()
                                   for d in range(devices)))
  got = {d: lanes.device_balance(p, steps, devices, deal=d)
         for d in want}
  for d in want:
    assert got[d]["device_steps"] == want[d], d
    assert got[d]["useful_steps"] == useful
    assert 1.0 <= got[d]["speedup"] <= devices
  if devices == 1:
    assert got["size"]["speedup"] == got["round_robin"]["speedup"] == 1.0
  else:
    assert got["size"]["device_steps"] < got["round_robin"]["device_steps"]
  with pytest.raises(ValueError, match=r"width \(8\) must be a multiple "
                     r"of the number of devices \(3\)"):
    lanes.device_balance(p, steps, 3)
  with pytest.raises(ValueError, match="deal must be"):
    lanes.device_balance(p, steps, 2, deal="greedy")
  with pytest.raises(ValueError, match="wave plan"):
    lanes.device_balance(plan.make_direct_plan(s), steps, 2)


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_keys_whose_bits_vmap_changes_are_refused_where_clients_batch(impl):
  """An ``rbg`` key's random bits change under ``jax.vmap`` (JAX draws
  once for the whole batch), so a batched run would not equal the
  reference: every entry point whose clients run under ``vmap`` refuses
  it, naming the key and the batching; one client at a time, it equals
  the reference."""
  import jax
  from fedasync_jax import executor, pure, reference, rules, sweep
  from test_executor import problem, rel_diff, speeds
  ds, upd, params, _ = problem("lsq", np.float32)
  dm = delays.delay_model(speeds("lognormal", 100), ds.counts.astype(float))
  s = scheduler.asynchronous(dm, num_updates=40, concurrency=6, seed=1)
  key = jax.random.key(3, impl=impl)
  rule = rules.fedasync(0.5)
  for batching in ("vmap", "refill", "map_batched"):
    with pytest.raises(ValueError, match=f"key is a key of kind '{impl}'.*"
                       f"batching='{batching}'"):
      executor.simulate(rule, upd, params, ds, s, key=key,
                        batching=batching, width=3, map_batch_size=2)
    with pytest.raises(ValueError, match=f"batching='{batching}'"):
      pure.run(rule, upd, params, pure.prepare(
          s, batching=batching, width=3), key=key, data=ds)
  with pytest.raises(ValueError, match="keys is a key.*members='vmap'"):
    sweep.sweep(lambda hp: rules.fedasync(hp), np.array([0.5, 0.6]), upd,
                params, ds, s, keys=jax.random.split(key, 2),
                members="vmap")
  one = executor.simulate(rule, upd, params, ds, s, key=key, batching="map")
  ref = reference.run(rule, upd, params, ds, s, key=key)
  assert rel_diff(one.state.params, ref.state.params) <= 1e-6
