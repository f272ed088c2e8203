"""Scheduler invariants: time order, exclusivity, staleness, concurrency."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import entry_points
from fedasync_jax import delays, scheduler
from fedasync_jax.sim import contract
from fedasync_jax.sim.scheduler import ARRIVAL, DISPATCH, LOST


def model(n=50, kind="lognormal", seed=0, **kw):
  return delays.delay_model(delays.device_speeds(kind, n, seed=seed),
                            np.random.default_rng(seed).integers(1, 30, n)
                            .astype(float), **kw)


def check_invariants(s):
  # Arrivals in time order.
  t = s.arrival_time[s.arrival_task]
  assert np.all(np.diff(t) >= 0)
  # No client twice in flight.
  for c in np.unique(s.client):
    k = np.flatnonzero(s.client == c)
    order = np.argsort(s.dispatch_time[k])
    t0, t1 = s.dispatch_time[k][order], s.arrival_time[k][order]
    assert np.all(t0[1:] >= t1[:-1] - 1e-12), f"client {c} twice in flight"
  # Staleness is the version difference, versions as recorded at dispatch.
  version = 0
  seen = 0
  for kind, k in s.events:
    if kind == DISPATCH:
      assert s.dispatch_version[k] == version
    elif kind == ARRIVAL:
      assert s.arrival_task[seen] == k
      assert s.staleness[seen] == version - s.dispatch_version[k]
      version = s.version_after[seen]
      seen += 1
  assert seen == s.num_arrivals


@pytest.mark.parametrize("kind", ["constant", "uniform", "exponential",
                                  "lognormal", "pareto"])
@pytest.mark.parametrize("selection", ["uniform", "without_replacement",
                                       "weighted"])
def test_closed_loop_invariants(kind, selection):
  m = model(kind=kind)
  s = scheduler.asynchronous(
      m, num_updates=400, concurrency=9, selection=selection,
      weights=m.work + 1 if selection == "weighted" else None, seed=3)
  check_invariants(s)
  assert s.num_arrivals == 400
  np.testing.assert_allclose(s.stats["realised_concurrency"], 9.0,
                             rtol=1e-9)
  # FedAsync: one version per applied arrival.
  np.testing.assert_array_equal(s.version_after, np.arange(1, 401))


def test_same_seed_same_schedule_and_seeds_differ():
  m = model()
  a = scheduler.asynchronous(m, num_updates=200, concurrency=5, seed=7)
  b = scheduler.asynchronous(m, num_updates=200, concurrency=5, seed=7)
  c = scheduler.asynchronous(m, num_updates=200, concurrency=5, seed=8)
  for f in a._fields:
    if f != "stats":
      np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
  assert not np.array_equal(a.client, c.client)


def test_without_replacement_covers_population_before_repeating():
  n = 60
  m = model(n=n, kind="constant")
  s = scheduler.asynchronous(m, num_updates=300, concurrency=4,
                             selection="without_replacement", seed=0)
  first = s.client[:n]
  assert len(np.unique(first)) == n
  second = s.client[n:2 * n]
  assert len(np.unique(second)) == n


def test_without_replacement_gives_the_first_idle_online_client_of_a_pass():
  """Against the rule written one client at a time: each pick is the
  first client of the pass's order that is idle and online; when none of
  the pass's rest is, the next pass starts behind that rest. (The
  selection scans its pass in numpy chunks: checking clients one by one
  took 29 s to schedule 20,000 updates among 10,000 clients with
  availability windows.)"""
  from fedasync_jax.sim.selection import Selector
  n = 40
  av = delays.availability(n, period=10.0, on_fraction=0.3, seed=1)
  sel = Selector("without_replacement", n, np.random.default_rng(3), None,
                 av)
  rng, busy, queue = np.random.default_rng(3), np.zeros(n, bool), []

  def spec(t):
    ok = lambda c: not busy[c] and bool(av.available(c, t))
    for _ in range(2):
      if not queue:
        queue.extend(rng.permutation(n).tolist())
      for i, c in enumerate(queue):
        if ok(c):
          return queue.pop(i)
      if len(queue) == n:
        return None
      rest = list(queue)
      queue[:] = rest + [c for c in rng.permutation(n) if c not in rest]
    return None

  draws = np.random.default_rng(0)
  picked = set()
  for _ in range(600):
    t = float(draws.uniform(0, 100))
    flip = draws.integers(n, size=2)
    busy[flip] = ~busy[flip]
    sel.busy[:] = busy
    got, want = sel.pick(t), spec(t)
    assert got == want
    if got is not None:
      assert bool(av.available(got, t)) and not busy[got]
      busy[got] = True
      picked.add(got)
  assert len(picked) == n


def _sparse_availability(kind, n):
  """Few clients online at a time: periodic windows, or a trace."""
  from fedasync_jax.sim import traces
  if kind == "periodic":
    return delays.availability(n, period=50.0, on_fraction=0.02, seed=2)
  start = (np.random.default_rng(4).uniform(0, 29, (n, 3))
           + [0.0, 30.0, 60.0]).ravel()  # three short windows per period
  trace = traces.intervals(np.repeat(np.arange(n), 3), start, start + 0.5,
                           period=100.0)
  return traces.availability_of(trace, np.arange(n))


@pytest.mark.parametrize("avail", ["periodic", "trace"])
@pytest.mark.parametrize("kind", ["uniform", "weighted",
                                  "without_replacement"])
def test_selections_with_few_clients_online_pick_as_the_plain_rule(kind,
                                                                   avail):
  """The selector remembers when an offline client comes back and looks
  it up only then (each dispatch of uniform with few clients online
  looked up the whole population: 38 s to schedule 20,000 updates among
  100,000 clients online 0.1% of the time, now 4.8 s). Against the
  selection with every client looked up at every step: the same picks and
  the same next availability, as time goes forward."""
  from fedasync_jax.sim import selection
  n = 60
  av = _sparse_availability(avail, n)
  w = np.arange(1, n + 1, dtype=float) if kind == "weighted" else None

  fast = selection.Selector(kind, n, np.random.default_rng(5), w, av)
  plain = selection.LookupEveryTime(kind, n, np.random.default_rng(5), w,
                                    av)
  draws, t, picked = np.random.default_rng(0), 0.0, set()
  for _ in range(400):
    t += float(draws.exponential(2.0))
    done = draws.integers(n, size=3)
    fast.busy[done] = plain.busy[done] = False
    assert fast.next_available(t) == plain.next_available(t)
    got, want = fast.pick(t), plain.pick(t)
    assert got == want
    if got is not None:
      assert bool(av.available(got, t))
      fast.busy[got] = plain.busy[got] = True
      picked.add(got)
  assert len(picked) > n // 2


def test_uniform_with_replacement_repeats_early():
  n = 60
  s = scheduler.asynchronous(model(n=n), num_updates=300, concurrency=4,
                             selection="uniform", seed=0)
  assert len(np.unique(s.client[:n])) < n


def test_fedbuff_versions_and_cutoff_drops():
  s = scheduler.asynchronous(model(), num_updates=500, concurrency=20,
                             arrivals_per_version=5, max_staleness=2, seed=1)
  check_invariants(s)
  assert s.dropped.any() and not s.dropped.all()
  np.testing.assert_array_equal(s.dropped, s.staleness > 2)
  kept = np.cumsum(~s.dropped)
  np.testing.assert_array_equal(s.version_after, kept // 5)


def test_dropout_refills_slot_and_never_arrives():
  m = model(dropout=0.3)
  s = scheduler.asynchronous(m, num_updates=300, concurrency=6, seed=2)
  check_invariants(s)
  assert s.stats["lost_updates"] > 30
  assert not np.any(s.lost[s.arrival_task])
  lost_events = s.events[s.events[:, 0] == LOST, 1]
  assert np.all(s.lost[lost_events])
  np.testing.assert_allclose(s.stats["realised_concurrency"], 6.0, rtol=1e-9)


def test_poisson_open_loop_littles_law():
  n = 2000
  m = delays.delay_model(np.ones(n), np.ones(n), jitter="exponential")
  s = scheduler.asynchronous(m, num_updates=4000, poisson_rate=5.0, seed=0)
  check_invariants(s)
  # Little's law: mean number in flight = rate x mean duration = 5.
  assert abs(s.stats["realised_concurrency"] - 5.0) < 0.5
  gaps = np.diff(s.dispatch_time)
  assert abs(gaps.mean() - 0.2) < 0.02


def test_availability_windows_respected():
  n = 40
  av = delays.availability(n, period=10.0, on_fraction=0.3, seed=0)
  m = delays.delay_model(np.ones(n), np.ones(n), availability=av)
  s = scheduler.asynchronous(m, num_updates=200, concurrency=5, seed=0)
  check_invariants(s)
  assert np.all(av.available(s.client, s.dispatch_time))


def test_synchronous_rounds_barrier_and_deadline():
  m = model(n=30)
  s = scheduler.synchronous(m, num_rounds=10, cohort_size=5,
                            over_selection=2, seed=0)
  check_invariants(s)
  assert s.ends_round.sum() == 10
  assert np.all(s.staleness == 0)
  for r in range(10):
    tasks = np.flatnonzero(s.dispatch_version == r)
    assert len(tasks) == 7 and len(np.unique(s.client[tasks])) == 7
    assert (~s.lost[tasks]).sum() == 5
    # The used ones are the first five to arrive.
    used = tasks[~s.lost[tasks]]
    assert s.arrival_time[used].max() <= s.arrival_time[tasks[s.lost[tasks]]
                                                        ].min()
  # Tasks in flight over time, as for asynchronous schedules (it said the
  # 7 dispatched): stragglers still compute into the next round, and
  # without them fast clients wait at the barrier, below the cohort.
  end = s.stats["end_time"]
  busy = np.minimum(s.arrival_time, end) - s.dispatch_time
  np.testing.assert_allclose(s.stats["realised_concurrency"],
                             busy.sum() / end, rtol=1e-9)
  e = scheduler.synchronous(m, num_rounds=10, cohort_size=5, seed=0)
  assert 1.0 < e.stats["realised_concurrency"] < 5.0
  d = scheduler.synchronous(m, num_rounds=10, cohort_size=5, deadline=15.0,
                            seed=0)
  check_invariants(d)
  used = d.arrival_task
  assert np.all(d.arrival_time[used] - d.dispatch_time[used] <= 15.0)
  assert d.lost.any()


@pytest.mark.parametrize("call, match", [
    (lambda m: scheduler.asynchronous(m, num_updates=10, concurrency=51),
     "concurrency"),
    (lambda m: scheduler.asynchronous(m, num_updates=0, concurrency=2),
     "num_updates"),
    (lambda m: scheduler.asynchronous(m, num_updates=5), "exactly one"),
    (lambda m: scheduler.asynchronous(m, num_updates=5, poisson_rate=-1.0),
     "poisson_rate"),
    # Gaps of 1/rate would overflow the clock to inf (and the schedule's
    # statistics to NaN) instead of failing.
    (lambda m: scheduler.asynchronous(m, num_updates=5,
                                      poisson_rate=5e-324),
     r"poisson_rate must be >= 1e-18"),
    (lambda m: scheduler.asynchronous(m, num_updates=5, poisson_rate=1e19),
     r"poisson_rate must be <= 1e\+18"),
    (lambda m: scheduler.asynchronous(m, num_updates=5, concurrency=2,
                                      selection="best"), "selection"),
    (lambda m: scheduler.synchronous(m, num_rounds=1, cohort_size=60),
     "cohort_size"),
])
def test_invalid_input(call, match):
  with pytest.raises(ValueError, match=match):
    call(model())


def test_weights_are_refused_where_the_selection_ignores_them():
  """``selection="uniform"`` with weights picked every client alike."""
  for sel in ("uniform", "without_replacement"):
    with pytest.raises(ValueError, match=rf"selection='{sel}' takes no "
                       r"weights \(they would be ignored\); weights are for "
                       r"selection='weighted'"):
      scheduler.asynchronous(model(), num_updates=5, concurrency=2,
                             selection=sel, weights=np.ones(4), seed=0)
    with pytest.raises(ValueError, match="takes no weights"):
      scheduler.synchronous(model(), num_rounds=2, cohort_size=2,
                            selection=sel, weights=np.ones(4), seed=0)


@pytest.mark.parametrize("call, match", [
    (lambda: delays.device_speeds("normal", 3), "kind"),
    (lambda: delays.device_speeds("lognormal", 0), "num_clients"),
    (lambda: delays.device_speeds("exponential", 3, mean=-1.0), "mean"),
    (lambda: delays.delay_model(np.ones(2), np.ones(3)), "work"),
    (lambda: delays.delay_model(np.array([]), np.array([])), "speed"),
    (lambda: delays.delay_model(np.ones(2), np.ones(2), dropout=1.0),
     "dropout"),
])
def test_invalid_delays(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_device_speeds_refuses_a_parameter_no_distribution_takes():
  """A misspelt keyword used to be dropped silently (sigmaa=3 drew with
  the default sigma=1)."""
  with pytest.raises(ValueError, match=r"device_speeds takes no parameter "
                     r"'sigmaa'; 'lognormal' takes \['mean', 'sigma'\] "
                     r"\(did you mean 'sigma'\?\)"):
    delays.device_speeds("lognormal", 4, sigmaa=3.0)
  np.testing.assert_array_equal(
      delays.device_speeds("lognormal", 4, sigma=3.0, seed=1),
      delays.device_speeds("lognormal", 4, sigma=3.0, seed=1, shape=9.0))


def _seeded_calls(folder="."):
  """Every public function that draws from a numpy seed, called with
  ``seed`` (each otherwise valid; files go to ``folder``)."""
  from fedasync_jax.data import partition, synthetic
  from fedasync_jax.sim import prescribed, trace_files, traces
  from fedasync_jax.theory import fits, problems, sampling
  m = delays.delay_model(np.ones(4), np.ones(4))
  labels = np.arange(40) % 4
  T, vals = np.array([1.0, 2.0, 4.0]), np.array([[1.0, 0.5, 0.25]] * 2)
  return {
      "asynchronous": lambda s: scheduler.asynchronous(
          m, num_updates=5, concurrency=2, seed=s),
      "synchronous": lambda s: scheduler.synchronous(
          m, num_rounds=2, cohort_size=2, seed=s),
      "device_speeds": lambda s: delays.device_speeds("lognormal", 4, seed=s),
      "availability": lambda s: delays.availability(
          4, period=10.0, on_fraction=0.5, seed=s),
      "uniform_staleness": lambda s: prescribed.uniform_staleness(5, 2,
                                                                  seed=s),
      "from_staleness": lambda s: prescribed.from_staleness(
          [0, 1, 1], num_clients=3, seed=s),
      "map_clients": lambda s: traces.map_clients(5, 2, rule="random",
                                                  seed=s),
      "write_synthetic": lambda s: trace_files.write_synthetic(
          folder, num_devices=2, days=1, seed=s),
      "client_sizes": lambda s: synthetic.client_sizes(
          3, mean_examples=30, min_examples=5, seed=s),
      "synthetic": lambda s: synthetic.synthetic(num_clients=3, seed=s),
      "iid": lambda s: partition.iid(labels, 4, seed=s),
      "dirichlet": lambda s: partition.dirichlet(labels, 4, alpha=0.5,
                                                 seed=s),
      "shards": lambda s: partition.shards(labels, 4, seed=s),
      "power_law": lambda s: partition.power_law(labels, 4, seed=s),
      "empirical_sampling_variance": lambda s: (
          sampling.empirical_sampling_variance(
              np.eye(4), 2, replace=True, num_trials=3, seed=s)),
      "least_squares": lambda s: problems.least_squares(
          num_clients=2, examples_per_client=3, dim=2, seed=s),
      "loglog_slope": lambda s: fits.loglog_slope(T, vals, num_boot=5,
                                                  seed=s),
      "rate_fit": lambda s: fits.rate_fit(T, vals, num_boot=5, seed=s),
  }


@pytest.mark.parametrize("name", sorted(_seeded_calls()))
@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_every_numpy_seed_is_an_integer_from_zero(name, seed, tmp_path):
  """A seed of -1 used to fail with numpy's message, which names no
  parameter; ``None`` drew an irreproducible schedule or data set."""
  call = _seeded_calls(tmp_path)[name]
  call(0)
  call(np.int64(3))
  with pytest.raises(ValueError) as e:
    call(seed)
  assert str(e.value) == (f"seed must be an integer >= 0, got "
                          f"{seed!r}")


def _schedules_of_every_kind():
  from fedasync_jax.sim import prescribed
  n = 12
  speeds = delays.device_speeds("lognormal", n, seed=1)
  plain = delays.delay_model(speeds, np.arange(1, n + 1, dtype=float))
  lossy = delays.delay_model(speeds, np.ones(n), dropout=0.3,
                             jitter_sigma=0.5)
  return {
      "closed loop": scheduler.asynchronous(plain, num_updates=60,
                                            concurrency=4, seed=0),
      "dropouts, cutoff": scheduler.asynchronous(
          lossy, num_updates=60, concurrency=5, max_staleness=2, seed=1),
      "buffered": scheduler.asynchronous(plain, num_updates=60,
                                         concurrency=6,
                                         arrivals_per_version=3, seed=2),
      "open loop": scheduler.asynchronous(plain, num_updates=60,
                                          poisson_rate=3.0, seed=3),
      "rounds": scheduler.synchronous(lossy, num_rounds=6, cohort_size=3,
                                      over_selection=2, deadline=4.0,
                                      seed=4),
      "prescribed": prescribed.from_staleness([0, 1, 2, 1, 0, 3, 2],
                                              num_clients=n, seed=5)}


def test_schedules_of_every_kind_agree_with_themselves():
  for name, s in _schedules_of_every_kind().items():
    contract.check_schedule_consistent(s)  # raises naming the fault


def test_an_edited_schedule_is_refused_by_every_simulator(lsq, lsq_update):
  """Its arrays are read by different simulators: with the staleness
  overwritten, the executor weighted by the new values, the reference
  measured its own and the tracker trained from other versions, three
  results without an error."""
  from fedasync_jax import rules
  ds, _ = lsq
  s = scheduler.asynchronous(
      delays.delay_model(np.ones(ds.num_clients), np.arange(
          1.0, ds.num_clients + 1)), num_updates=10, concurrency=4, seed=0)
  assert s.staleness.any()
  dv = s.dispatch_version.copy()
  dv[-1] += 1
  ev = s.events.copy()
  arrivals = np.flatnonzero(ev[:, 0] == 1)
  ev[arrivals[[1, 2]]] = ev[arrivals[[2, 1]]]
  after = s.version_after.copy()
  after[3:] += 1
  edits = [
      (s._replace(staleness=np.zeros_like(s.staleness)), "staleness is "
       r"not the version before the arrival less its task's "
       r"dispatch_version at arrival \d+"),
      (s._replace(dispatch_version=dv), r"dispatch_version is not the "
       r"version its dispatch event saw at task \d+"),
      (s._replace(events=ev), r"events' arrivals are not arrival_task at "
       r"arrival 1"),
      (s._replace(version_after=after), r"version_after advances by other "
       r"than 0 or 1 at arrival 3"),
      (s._replace(dropped=s.dropped[:-1]), r"per-arrival arrays must all "
       r"have 10 entries")]
  for edited, match in edits:
    with pytest.raises(ValueError, match=match):
      contract.check_schedule_consistent(edited)
  edited, match = edits[0]
  calls = entry_points(rules.fedasync(0.5), lsq_update, jnp.zeros(5), ds,
                       edited, key=jax.random.key(0))
  for name in ("simulate", "reference", "track", "pure", "sweep"):
    with pytest.raises(ValueError, match="does not agree with itself"):
      calls[name]()


def test_rounds_wait_for_stragglers_when_every_client_is_busy():
  """With over-selection or a deadline, a round's stragglers stay busy;
  when the next round needs them it waits until they come back (it raised
  "no client can be selected for the round", also from the command line
  with 10 clients, concurrency 8 and over-selection 2)."""
  dm = delays.delay_model(np.array([1, 1, 1, 1, 10.0]), np.ones(5),
                          jitter="none")
  s = scheduler.synchronous(dm, num_rounds=3, cohort_size=4,
                            over_selection=1, seed=0)
  np.testing.assert_array_equal(np.unique(s.dispatch_time), [0, 10, 20])
  assert s.stats["rounds_with_updates"] == 3 and s.stats["end_time"] == 21
  d = scheduler.synchronous(dm, num_rounds=3, cohort_size=5, deadline=2.0,
                            seed=0)
  np.testing.assert_array_equal(np.unique(d.dispatch_time), [0, 10, 20])
  assert int(d.lost.sum()) == 3  # the slow client misses every deadline
  for sched in (s, d):
    check_invariants(sched)
    contract.check_schedule_consistent(sched)


def test_a_long_draw_reports_how_far_it_got():
  """Drawing 1e7 updates among 1e6 clients printed nothing for over 100 s
  after 'drawing the schedule' (the run looked hung): the scheduler calls
  ``progress(arrived, num_updates)`` every 4,096 arrivals, and the
  command's bar prints it at most every ``every_s`` seconds."""
  import io
  from fedasync_jax.run import progress
  seen = []
  m = model(n=50, kind="constant")
  s = scheduler.asynchronous(m, num_updates=10_000, concurrency=5, seed=0,
                             progress=lambda a, n: seen.append((a, n)))
  assert seen == [(4096, 10_000), (8192, 10_000)]
  plain = scheduler.asynchronous(m, num_updates=10_000, concurrency=5,
                                 seed=0)
  np.testing.assert_array_equal(s.client, plain.client)
  bar = progress.ProgressBar(stream=io.StringIO(), every_s=0.0)
  for a, n in seen:
    bar.drawing(a, n)
  lines = bar.stream.getvalue().splitlines()
  assert [ln[:61] for ln in lines] == [
      "fedasync-jax: drawing the schedule: 4,096 of 10,000 updates (",
      "fedasync-jax: drawing the schedule: 8,192 of 10,000 updates ("]
  quiet = progress.ProgressBar(stream=io.StringIO(), every_s=60.0)
  quiet.drawing(4096, 10_000)
  assert quiet.stream.getvalue() == ""
