"""The discrete-event schedule of a run, computed as numpy arrays.

The order of events does not depend on model values, so it is simulated
first, from the delay model and a seed, and handed to the executors as data.
Tasks (one client dispatch each) are numbered in dispatch order; arrivals are
listed in the order the server processes them.

Arrival processes: closed-loop concurrency ``C`` (a new client is dispatched
whenever one arrives or is lost, as in FedScale, arXiv:2105.11367) and
open-loop Poisson dispatches (as in FLSim); synchronous rounds with a
cohort, a barrier, an optional deadline and over-selection (Bonawitz et al.
2019, "Towards Federated Learning at Scale", arXiv:1902.01046). Client
selection is a member of ``selection.SELECTIONS`` (re-exported here):
uniform with replacement, uniform without replacement (a fresh permutation
of the population per pass), or weighted by data size; a client in flight
is never dispatched again until it returns (the AFL paper,
arXiv:2508.01675, Section 2.2, analyses both sampling schemes).

Versions advance by the rule: one per applied arrival (FedAsync, AFL), one
per ``K`` applied arrivals (FedBuff), one per round (FedAvg). Staleness is
``version at arrival - version at dispatch``; arrivals older than the rule's
``max_staleness`` are dropped and do not advance the version.

Schedules built from given staleness values rather than from delays are
in ``prescribed``.

Example:
  >>> import numpy as np
  >>> from fedasync_jax import delays
  >>> m = delays.delay_model(np.ones(5), np.ones(5))
  >>> s = asynchronous(m, num_updates=20, concurrency=2, seed=0)
  >>> s.num_arrivals, int(s.staleness.max()) <= 20
  (20, True)
"""

from __future__ import annotations

import heapq
from typing import Callable, NamedTuple, Optional

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.sim.delays import DelayModel, sample_durations
from fedasync_jax.sim.selection import SELECTIONS, Selector  # noqa: F401

DISPATCH, ARRIVAL, LOST = 0, 1, 2


class Schedule(NamedTuple):
  """A run's events as arrays.

  Per task (dispatch order): ``client``, ``dispatch_time``, ``arrival_time``,
  ``dispatch_version``, ``lost`` (the update never reaches the server: a
  dropout, or a straggler past a round's deadline or beyond the cohort).

  Per arrival (processing order): ``arrival_task``, ``staleness``,
  ``dropped`` (discarded by the staleness cutoff), ``ends_round`` (the arrival
  that closes a synchronous round), ``version_after`` (server version after
  the arrival).

  ``events``: ``(E, 2)`` int array of ``(kind, task)`` in processing order
  (kind 0 dispatch, 1 arrival, 2 lost), what the reference simulator walks.
  ``stats``: realised concurrency and other numbers about the schedule.
  """
  client: np.ndarray
  dispatch_time: np.ndarray
  arrival_time: np.ndarray
  dispatch_version: np.ndarray
  lost: np.ndarray
  arrival_task: np.ndarray
  staleness: np.ndarray
  dropped: np.ndarray
  ends_round: np.ndarray
  version_after: np.ndarray
  events: np.ndarray
  num_clients: int
  synchronous: bool
  stats: dict

  @property
  def num_tasks(self) -> int:
    return int(self.client.shape[0])

  @property
  def num_arrivals(self) -> int:
    return int(self.arrival_task.shape[0])

  @property
  def arrival_client(self) -> np.ndarray:
    return self.client[self.arrival_task]

  def participation(self) -> np.ndarray:
    """Applied updates per client."""
    ok = self.arrival_task[~self.dropped]
    return np.bincount(self.client[ok], minlength=self.num_clients)


MAX_EVENTS = 10**9  # more would not fit in memory as arrays anyway


def in_flight(dispatch_time, arrival_time, t_end: float) -> float:
  """The tasks in flight averaged over ``[0, t_end]``, each from its
  dispatch to its end (or ``t_end``): a schedule's
  ``realised_concurrency`` (``t_end`` its end), or that of the part of it
  a stopped run got through.

  Example:
    >>> in_flight([0.0, 0.0, 5.0], [10.0, 4.0, 20.0], 10.0)
    1.9
  """
  t0 = np.asarray(dispatch_time, np.float64)
  t1 = np.minimum(np.asarray(arrival_time, np.float64), t_end)
  busy = float(np.sum(np.maximum(t1 - t0, 0.0)))
  return busy / t_end if t_end > 0 else 0.0


class _Builder:
  """Accumulates tasks, arrivals and events."""

  def __init__(self):
    self.client, self.t0, self.t1, self.v0, self.lost = [], [], [], [], []
    self.a_task, self.a_tau, self.a_drop, self.a_end, self.a_ver = (
        [], [], [], [], [])
    self.events = []

  def dispatch(self, c, t, dur, lost, version):
    k = len(self.client)
    self.client.append(c)
    self.t0.append(t)
    self.t1.append(t + dur)
    self.v0.append(version)
    self.lost.append(bool(lost))
    self.events.append((DISPATCH, k))
    return k

  def in_flight(self, t_end: float) -> float:
    return in_flight(self.t0, self.t1, t_end)

  def arrive(self, k, tau, dropped, version_after, ends_round=False):
    self.a_task.append(k)
    self.a_tau.append(tau)
    self.a_drop.append(bool(dropped))
    self.a_end.append(bool(ends_round))
    self.a_ver.append(version_after)
    self.events.append((ARRIVAL, k))

  def build(self, num_clients, synchronous, stats, keep_tasks=None):
    client = np.asarray(self.client, np.int64)
    t0 = np.asarray(self.t0, np.float64)
    t1 = np.asarray(self.t1, np.float64)
    v0 = np.asarray(self.v0, np.int64)
    lost = np.asarray(self.lost, bool)
    a_task = np.asarray(self.a_task, np.int64)
    events = np.asarray(self.events, np.int64).reshape(-1, 2)
    if keep_tasks is not None:
      # Drop tasks still in flight when the run ended: renumber the rest.
      new_id = np.full(client.shape[0], -1, np.int64)
      new_id[keep_tasks] = np.arange(keep_tasks.size)
      client, t0, t1, v0, lost = (a[keep_tasks] for a in
                                  (client, t0, t1, v0, lost))
      a_task = new_id[a_task]
      events = events[new_id[events[:, 1]] >= 0]
      events[:, 1] = new_id[events[:, 1]]
    return Schedule(
        client=client, dispatch_time=t0, arrival_time=t1, dispatch_version=v0,
        lost=lost, arrival_task=a_task,
        staleness=np.asarray(self.a_tau, np.int64).reshape(-1),
        dropped=np.asarray(self.a_drop, bool).reshape(-1),
        ends_round=np.asarray(self.a_end, bool).reshape(-1),
        version_after=np.asarray(self.a_ver, np.int64).reshape(-1),
        events=events, num_clients=num_clients, synchronous=synchronous,
        stats=stats)


def asynchronous(delays: DelayModel, *, num_updates: int,
                 concurrency: Optional[int] = None,
                 poisson_rate: Optional[float] = None,
                 selection: str = "uniform", weights=None,
                 arrivals_per_version: int = 1,
                 max_staleness: Optional[int] = None,
                 seed: int = 0,
                 progress: Optional[Callable[[int, int], None]] = None
                 ) -> Schedule:
  """Simulates an asynchronous run's events.

  Args:
    delays: the delay model (its ``num_clients`` is the population).
    num_updates: arrivals to simulate (applied plus dropped), ``>= 1``.
    concurrency: closed loop: ``C`` clients in flight at all times (a
      replacement is dispatched at every arrival or loss).
    poisson_rate: open loop: dispatches per unit time (Poisson process),
      in ``[1e-18, 1e18]``; a dispatch finding no idle, available client
      is skipped and counted.
    selection: a member of ``SELECTIONS``: ``uniform`` (with
      replacement), ``without_replacement`` or ``weighted`` (by
      ``weights``, e.g. example counts).
    weights: selection weights for ``weighted``.
    arrivals_per_version: applied arrivals per server version (``K`` of
      FedBuff, 1 for FedAsync).
    max_staleness: arrivals with larger staleness are dropped.
    seed: the random seed; the same seed gives the same schedule.
    progress: optional ``progress(arrived, num_updates)``, called every
      4,096 arrivals (a long draw can report how far it got).

  Returns:
    A ``Schedule``; ``stats["realised_concurrency"]`` is the time-averaged
    number of tasks in flight.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays
    >>> m = delays.delay_model(np.ones(4), np.ones(4))
    >>> s = asynchronous(m, num_updates=8, concurrency=4, seed=1)
    >>> bool(np.all(np.diff(s.arrival_time[s.arrival_task]) >= 0))
    True
  """
  n = delays.num_clients
  num_updates = checks.integer("num_updates", num_updates, low=1,
                               high=MAX_EVENTS)
  K = checks.integer("arrivals_per_version", arrivals_per_version, low=1)
  if max_staleness is not None:
    max_staleness = checks.integer("max_staleness", max_staleness, low=0)
  if (concurrency is None) == (poisson_rate is None):
    raise ValueError("give exactly one of concurrency (closed loop) and "
                     "poisson_rate (open loop)")
  if concurrency is not None:
    concurrency = checks.integer("concurrency", concurrency, low=1)
    if concurrency > n:
      raise ValueError(f"concurrency must be <= the population size {n}, got "
                       f"{concurrency}")
  else:
    # limits: rates below 1e-18 make gaps that overflow the clock to inf.
    poisson_rate = float(checks.limits(
        "poisson_rate", checks.number("poisson_rate", poisson_rate, low=0,
                                      low_open=True), low=0, low_open=True))
  rng = checks.rng(seed)
  loop = _AsyncLoop(delays, Selector(selection, n, rng, weights,
                                      delays.availability), rng,
                    concurrency=concurrency, poisson_rate=poisson_rate,
                    per_version=K, max_staleness=max_staleness)
  return loop.run(num_updates, progress)


class Stuck(ValueError):
  """No client can ever be dispatched again: every client is offline for
  good (an availability trace whose windows end) before the schedule has
  its arrivals."""


_STUCK = ("the schedule cannot make progress: no client can ever be "
          "dispatched (check availability)")


class _AsyncLoop:
  """The event loop of ``asynchronous``.

  ``heap`` holds ``(time, kind, seq, task)``: arrivals and losses of tasks
  (``task >= 0``) and dispatch opportunities (``task < 0``: a Poisson tick
  or an availability retry); ``seq`` breaks ties in push order.
  """

  def __init__(self, delays, sel, rng, *, concurrency, poisson_rate,
               per_version, max_staleness):
    self.delays, self.sel, self.rng = delays, sel, rng
    self.concurrency, self.rate = concurrency, poisson_rate
    self.per_version, self.max_staleness = per_version, max_staleness
    self.b = _Builder()
    self.heap, self.seq = [], 0
    self.version, self.kept = 0, 0
    self.skip_times, self.skip_counts = [], []  # (each failed tick's)

  def push(self, t, kind, task):
    heapq.heappush(self.heap, (t, kind, self.seq, task))
    self.seq += 1

  def dispatch(self, t) -> bool:
    c = self.sel.pick(t)
    if c is None:
      return False
    dur, lost = sample_durations(self.delays, np.array([c]), self.rng, t=t)
    k = self.b.dispatch(c, t, float(dur[0]), bool(lost[0]), self.version)
    self.sel.busy[c] = True
    self.push(t + float(dur[0]), 0, k)
    return True

  def dispatch_or_retry(self, t) -> None:
    if not self.dispatch(t):
      t_next = self.sel.next_available(t)
      if np.isfinite(t_next):
        self.push(max(t_next, t), 1, -1)

  def tick(self, t) -> None:
    """A Poisson tick: dispatch, else skip every tick until a client can
    be dispatched (by memorylessness, their number is one Poisson draw)."""
    t_next = t
    if not self.dispatch(t):
      t_avail = self.sel.next_available(t)
      t_next = min(self.heap[0][0] if self.heap else np.inf,
                   t_avail if t_avail > t else np.inf)
      if not np.isfinite(t_next):
        raise Stuck(_STUCK)
      n = 1 + int(min(self.rng.poisson(min(self.rate * (t_next - t), 1e15)),
                      1e15))
      self.skip_times.append(t)
      self.skip_counts.append(n)
    self.push(t_next + self.rng.exponential(1.0 / self.rate), 1, -1)

  def arrive(self, k) -> bool:
    """Task ``k`` comes back; returns whether it counts as an arrival."""
    b = self.b
    self.sel.busy[b.client[k]] = False
    if b.lost[k]:
      b.events.append((LOST, k))
      return False
    tau = self.version - b.v0[k]
    dropped = self.max_staleness is not None and tau > self.max_staleness
    if not dropped:
      self.kept += 1
      if self.kept == self.per_version:
        self.version += 1
        self.kept = 0
    b.arrive(k, tau, dropped, self.version)
    return True

  def run(self, num_updates: int, progress=None) -> Schedule:
    if self.concurrency is not None:
      for _ in range(self.concurrency):
        self.dispatch_or_retry(0.0)
    else:
      self.push(self.rng.exponential(1.0 / self.rate), 1, -1)
    arrived, t, lost_run = 0, 0.0, 0
    # By dropout alone a run of losses this long has probability ~exp(-50).
    max_lost_run = 2_000 + int(50 / max(1.0 - self.delays.dropout, 1e-9))
    while arrived < num_updates:
      if not self.heap:
        raise Stuck(_STUCK)
      t, _, _, k = heapq.heappop(self.heap)
      if k < 0:
        if self.concurrency is None:
          self.tick(t)
        else:
          self.dispatch_or_retry(t)
        continue
      came = self.arrive(k)
      arrived += came
      if progress is not None and came and arrived % 4096 == 0:
        progress(arrived, num_updates)
      lost_run = 0 if came else lost_run + 1
      if lost_run > max_lost_run:
        raise ValueError(
            f"{lost_run} tasks in a row were lost and none arrived: every "
            f"client goes offline before its task ends (lose_offline) or "
            f"dropout ({self.delays.dropout}) loses them all")
      if self.concurrency is not None and arrived < num_updates:
        self.dispatch_or_retry(t)
    return self.build(t)

  def build(self, t_end: float) -> Schedule:
    b = self.b
    done = np.zeros(len(b.client), bool)
    done[[k for kind, k in b.events if kind != DISPATCH]] = True
    stats = {
        "realised_concurrency": b.in_flight(t_end),
        "end_time": t_end,
        "num_versions": self.version,
        # (Python ints: up to 1e15 skipped per tick, past int64 summed)
        "skipped_dispatches": sum(self.skip_counts),
        # when ticks found no client, and how many were skipped from each
        "skip_times": np.asarray(self.skip_times, np.float64),
        "skip_counts": np.asarray(self.skip_counts, np.int64),
        "lost_updates": int(np.sum(np.asarray(b.lost)[done])),
        # What the schedule was drawn for (``contract.check_rule_fits``).
        "arrivals_per_version": self.per_version,
        "max_staleness": self.max_staleness,
        "selection": self.sel.kind,
    }
    return b.build(self.delays.num_clients, False, stats,
                   keep_tasks=np.flatnonzero(done))


def synchronous(delays: DelayModel, *, num_rounds: int, cohort_size: int,
                over_selection: int = 0, deadline: Optional[float] = None,
                selection: str = "without_replacement", weights=None,
                seed: int = 0) -> Schedule:
  """Simulates synchronous rounds (FedAvg).

  Each round dispatches ``cohort_size + over_selection`` distinct idle
  clients at the version of the round; the first ``cohort_size`` updates to
  arrive (before ``deadline`` after the round's start, if given) are used;
  the round ends with the last of them (or at the deadline), and the
  version advances by one if any update was used. The others are stragglers
  (``lost``). Selection ``without_replacement`` covers the population before
  repeating a client.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays
    >>> m = delays.delay_model(np.ones(10), np.ones(10))
    >>> s = synchronous(m, num_rounds=3, cohort_size=4, seed=0)
    >>> int(s.ends_round.sum()), int(s.version_after[-1])
    (3, 3)
  """
  n = delays.num_clients
  num_rounds = checks.integer("num_rounds", num_rounds, low=1,
                              high=MAX_EVENTS)
  cohort_size = checks.integer("cohort_size", cohort_size, low=1)
  over_selection = checks.integer("over_selection", over_selection, low=0)
  if cohort_size + over_selection > n:
    raise ValueError(f"cohort_size + over_selection must be <= the population "
                     f"size {n}, got {cohort_size + over_selection}")
  if deadline is not None:
    checks.number("deadline", deadline, low=0, low_open=True)
  rng = checks.rng(seed)
  sel = Selector(selection, n, rng, weights, delays.availability)
  busy_until = np.zeros(n)
  b = _Builder()
  version, t, rounds_used = 0, 0.0, 0
  for _ in range(num_rounds):
    picked, t = _pick_cohort(sel, busy_until, t,
                             cohort_size + over_selection)
    dur, lost = sample_durations(delays, picked, rng, t=t)
    tasks = [b.dispatch(int(c), t, float(d), bool(l), version)
             for c, d, l in zip(picked, dur, lost)]
    busy_until[picked] = t + dur
    used = _first_back(t, dur, lost, deadline, cohort_size)
    for i in range(len(tasks)):
      if i not in used:
        b.lost[tasks[i]] = True
    for j, i in enumerate(used):
      last = j == len(used) - 1
      b.arrive(tasks[i], 0, False, version + int(last), ends_round=last)
    if used:
      version += 1
      rounds_used += 1
      t_end = t + float(dur[used[-1]])
    else:  # nothing came back: the round ends at its deadline, or when
      # the last of its tasks would have (the server learns they are lost)
      t_end = t + (float(deadline) if deadline is not None
                   else float(dur.max()))
    if deadline is not None and len(used) < cohort_size:
      t_end = t + float(deadline)
    t = t_end
  stats = {
      # (below the cohort: fast clients wait at the barrier)
      "realised_concurrency": b.in_flight(t),
      "end_time": t,
      "num_versions": version,
      "rounds_with_updates": rounds_used,
      "lost_updates": int(np.sum(b.lost)),
      "selection": sel.kind,
  }
  return b.build(n, True, stats)


def _pick_cohort(sel, busy_until, t, size):
  """``size`` distinct idle clients, waiting (advancing ``t``) until an
  idle client becomes available or a straggler of an earlier round comes
  back; returns ``(clients, t)``."""
  sel.busy = busy_until > t
  picked = []
  while len(picked) < size:
    c = sel.pick(t)
    if c is None:
      t_avail = sel.next_available(t)
      later = busy_until[busy_until > t]
      t_back = float(later.min()) if later.size else np.inf
      # the sooner of an idle client coming online and a straggler coming
      # back (with every client busy, no idle one is ever available: inf)
      t_next = min(t_avail if t_avail > t else np.inf, t_back)
      if not np.isfinite(t_next):
        raise ValueError("no client can be selected for the round")
      t = t_next
      sel.busy = busy_until > t
      sel.busy[picked] = True
      continue
    sel.busy[c] = True
    picked.append(c)
  return np.asarray(picked), t


def _first_back(t, dur, lost, deadline, cohort_size) -> list:
  """Indices of the first ``cohort_size`` updates back (before the
  deadline), in order of arrival time ``t + dur``."""
  used = []
  for i in np.argsort(t + dur, kind="stable"):
    if lost[i]:
      continue
    if deadline is not None and dur[i] > deadline:
      continue
    if len(used) == cohort_size:
      break
    used.append(i)
  return used
