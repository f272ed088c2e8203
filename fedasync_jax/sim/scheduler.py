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
selection is uniform with replacement, uniform without replacement (a fresh
permutation of the population per pass), or weighted by data size; a client
in flight is never dispatched again until it returns (the AFL paper,
arXiv:2508.01675, Section 2.2, analyses both sampling schemes).

Versions advance by the rule: one per applied arrival (FedAsync, AFL), one
per ``K`` applied arrivals (FedBuff), one per round (FedAvg). Staleness is
``version at arrival - version at dispatch``; arrivals older than the rule's
``max_staleness`` are dropped and do not advance the version.

Example:
  >>> import numpy as np
  >>> from fedasync_jax import delays
  >>> m = delays.delay_model(np.ones(5), np.ones(5))
  >>> s = asynchronous(m, num_updates=20, concurrency=2, seed=0)
  >>> s.num_arrivals, int(s.staleness.max()) <= 20
  (20, True)
"""

from __future__ import annotations

import collections
import heapq
import math
from typing import NamedTuple, Optional

import numpy as np

from fedasync_jax.sim.delays import DelayModel

SELECTIONS = ("uniform", "without_replacement", "weighted")

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


def _int(name, value, low, high=None):
  try:
    ok = (not isinstance(value, bool) and math.isfinite(value)
          and int(value) == value and value >= low
          and (high is None or value <= high))
  except (TypeError, ValueError, OverflowError):
    ok = False
  if not ok:
    rng = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
  return int(value)


class _Selector:
  """Picks idle clients: uniform, without replacement, or weighted."""

  def __init__(self, kind, n, rng, weights, avail):
    if kind not in SELECTIONS:
      raise ValueError(f"selection must be one of {SELECTIONS}, got {kind!r}")
    self.kind, self.n, self.rng, self.avail = kind, n, rng, avail
    self.busy = np.zeros(n, dtype=bool)
    self.queue = collections.deque()
    if kind == "weighted":
      if weights is None:
        raise ValueError("selection='weighted' needs weights (e.g. the "
                         "clients' example counts)")
      w = np.asarray(weights, dtype=np.float64)
      if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)) \
          or w.sum() <= 0:
        raise ValueError(f"weights must be ({n},) finite, >= 0, not all 0")
      self.cdf = np.cumsum(w) / w.sum()

  def _ok(self, c, t):
    return not self.busy[c] and (self.avail is None
                                 or bool(self.avail.available(c, t)))

  def _eligible(self, t):
    idle = np.flatnonzero(~self.busy)
    if self.avail is not None and idle.size:
      idle = idle[self.avail.available(idle, t)]
    return idle

  def pick(self, t) -> Optional[int]:
    """A client that is idle and available at ``t``, or None."""
    if self.kind == "without_replacement":
      for _ in range(2):
        if not self.queue:
          self.queue.extend(self.rng.permutation(self.n).tolist())
        for i, c in enumerate(self.queue):
          if self._ok(c, t):
            del self.queue[i]
            return c
        if len(self.queue) < self.n:
          # Every client left in this pass is busy: start the next pass so
          # the dispatch is not refused while idle clients exist.
          rest = list(self.queue)
          in_rest = set(rest)
          self.queue.clear()
          self.queue.extend(rest + [c for c in self.rng.permutation(self.n)
                                    if c not in in_rest])
        else:
          return None
      return None
    for _ in range(64):
      if self.kind == "uniform":
        c = int(self.rng.integers(self.n))
      else:
        c = int(np.searchsorted(self.cdf, self.rng.random(), side="right"))
        c = min(c, self.n - 1)
      if self._ok(c, t):
        return c
    cand = self._eligible(t)
    if cand.size == 0:
      return None
    if self.kind == "uniform":
      return int(cand[self.rng.integers(cand.size)])
    w = np.diff(np.concatenate([[0.0], self.cdf]))[cand]
    if w.sum() <= 0:
      return None
    return int(cand[np.searchsorted(np.cumsum(w) / w.sum(), self.rng.random(),
                                    side="right").clip(0, cand.size - 1)])

  def next_available(self, t):
    """The earliest time an idle client becomes available (inf if none)."""
    idle = np.flatnonzero(~self.busy)
    if idle.size == 0:
      return np.inf
    if self.avail is None:
      return t
    return float(self.avail.next_start(idle, t).min())


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
                 seed: int = 0) -> Schedule:
  """Simulates an asynchronous run's events.

  Args:
    delays: the delay model (its ``num_clients`` is the population).
    num_updates: arrivals to simulate (applied plus dropped), ``>= 1``.
    concurrency: closed loop: ``C`` clients in flight at all times (a
      replacement is dispatched at every arrival or loss).
    poisson_rate: open loop: dispatches per unit time (Poisson process); a
      dispatch finding no idle, available client is skipped and counted.
    selection: ``uniform`` (with replacement), ``without_replacement`` or
      ``weighted`` (by ``weights``, e.g. example counts).
    weights: selection weights for ``weighted``.
    arrivals_per_version: applied arrivals per server version (``K`` of
      FedBuff, 1 for FedAsync).
    max_staleness: arrivals with larger staleness are dropped.
    seed: the random seed; the same seed gives the same schedule.

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
  num_updates = _int("num_updates", num_updates, 1, MAX_EVENTS)
  K = _int("arrivals_per_version", arrivals_per_version, 1)
  if max_staleness is not None:
    max_staleness = _int("max_staleness", max_staleness, 0)
  if (concurrency is None) == (poisson_rate is None):
    raise ValueError("give exactly one of concurrency (closed loop) and "
                     "poisson_rate (open loop)")
  if concurrency is not None:
    concurrency = _int("concurrency", concurrency, 1)
    if concurrency > n:
      raise ValueError(f"concurrency must be <= the population size {n}, got "
                       f"{concurrency}")
  else:
    try:
      rate = float(poisson_rate)
    except (TypeError, ValueError, OverflowError):
      rate = float("nan")
    if not math.isfinite(rate) or rate <= 0 or isinstance(poisson_rate,
                                                           bool):
      raise ValueError(f"poisson_rate must be finite and > 0, got "
                       f"{poisson_rate!r}")
    poisson_rate = rate
  rng = np.random.default_rng(seed)
  sel = _Selector(selection, n, rng, weights, delays.availability)
  b = _Builder()
  heap = []  # (time, kind, seq, task): arrival/lost events and retries
  seq = 0
  version, kept = 0, 0
  skipped = 0
  from fedasync_jax.sim.delays import sample_durations

  def dispatch(t):
    nonlocal seq
    c = sel.pick(t)
    if c is None:
      return False
    dur, lost = sample_durations(delays, np.array([c]), rng)
    k = b.dispatch(c, t, float(dur[0]), bool(lost[0]), version)
    sel.busy[c] = True
    heapq.heappush(heap, (t + float(dur[0]), 0, seq, k))
    seq += 1
    return True

  def schedule_retry(t):
    nonlocal seq
    t_next = sel.next_available(t)
    if np.isfinite(t_next):
      heapq.heappush(heap, (max(t_next, t), 1, seq, -1))
      seq += 1

  if concurrency is not None:
    for _ in range(concurrency):
      if not dispatch(0.0):
        schedule_retry(0.0)
  else:
    heapq.heappush(heap, (rng.exponential(1.0 / poisson_rate), 1, seq, -1))
    seq += 1

  arrived = 0
  t = 0.0
  while arrived < num_updates:
    if not heap:
      raise ValueError("the schedule cannot make progress: no client can "
                       "ever be dispatched (check availability)")
    t, kind, _, k = heapq.heappop(heap)
    if k < 0:  # a dispatch opportunity (Poisson tick or availability retry)
      if concurrency is None:
        t_next = t
        if not dispatch(t):
          # No idle, available client until the next arrival (or window):
          # the ticks in between are all skipped. By memorylessness the next
          # tick after that is an exponential gap later; draw the number
          # skipped instead of simulating each one.
          t_avail = sel.next_available(t)
          t_next = min(heap[0][0] if heap else np.inf,
                       t_avail if t_avail > t else np.inf)
          if not np.isfinite(t_next):
            raise ValueError("the schedule cannot make progress: no client "
                             "can ever be dispatched (check availability)")
          skipped += 1 + int(min(rng.poisson(min(poisson_rate
                                                 * (t_next - t), 1e15)),
                                 1e15))
        heapq.heappush(heap, (t_next + rng.exponential(1.0 / poisson_rate),
                              1, seq, -1))
        seq += 1
      elif not dispatch(t):
        schedule_retry(t)
      continue
    sel.busy[b.client[k]] = False
    if b.lost[k]:
      b.events.append((LOST, k))
    else:
      tau = version - b.v0[k]
      dropped = max_staleness is not None and tau > max_staleness
      if not dropped:
        kept += 1
        if kept == K:
          version += 1
          kept = 0
      b.arrive(k, tau, dropped, version)
      arrived += 1
    if concurrency is not None and arrived < num_updates:
      if not dispatch(t):
        schedule_retry(t)

  t_end = t
  done = np.zeros(len(b.client), bool)
  done[[k for kind, k in b.events if kind != DISPATCH]] = True
  t0 = np.asarray(b.t0)
  t1 = np.minimum(np.asarray(b.t1), t_end)
  busy_time = float(np.sum(np.maximum(t1 - t0, 0.0)))
  stats = {
      "realised_concurrency": busy_time / t_end if t_end > 0 else 0.0,
      "end_time": t_end,
      "num_versions": version,
      "skipped_dispatches": skipped,
      "lost_updates": int(np.sum(np.asarray(b.lost)[done])),
  }
  return b.build(n, False, stats, keep_tasks=np.flatnonzero(done))


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
  num_rounds = _int("num_rounds", num_rounds, 1, MAX_EVENTS)
  cohort_size = _int("cohort_size", cohort_size, 1)
  over_selection = _int("over_selection", over_selection, 0)
  if cohort_size + over_selection > n:
    raise ValueError(f"cohort_size + over_selection must be <= the population "
                     f"size {n}, got {cohort_size + over_selection}")
  if deadline is not None and not (np.isfinite(deadline) and deadline > 0):
    raise ValueError(f"deadline must be finite and > 0, got {deadline!r}")
  from fedasync_jax.sim.delays import sample_durations
  rng = np.random.default_rng(seed)
  sel = _Selector(selection, n, rng, weights, delays.availability)
  busy_until = np.zeros(n)
  b = _Builder()
  version = 0
  t = 0.0
  rounds_used = 0
  for _ in range(num_rounds):
    sel.busy = busy_until > t
    picked = []
    while len(picked) < cohort_size + over_selection:
      c = sel.pick(t)
      if c is None:
        # Wait until an idle client becomes available or a straggler of an
        # earlier round comes back.
        t_avail = sel.next_available(t)
        later = busy_until[busy_until > t]
        t_back = float(later.min()) if later.size else np.inf
        t_next = t_avail if t_avail > t else t_back
        if not np.isfinite(t_next):
          raise ValueError("no client can be selected for the round")
        t = t_next
        sel.busy = busy_until > t
        sel.busy[picked] = True
        continue
      sel.busy[c] = True
      picked.append(c)
    picked = np.asarray(picked)
    dur, lost = sample_durations(delays, picked, rng)
    tasks = [b.dispatch(int(c), t, float(d), bool(l), version)
             for c, d, l in zip(picked, dur, lost)]
    busy_until[picked] = t + dur
    order = np.argsort(t + dur, kind="stable")
    used = []
    for i in order:
      if lost[i]:
        continue
      if deadline is not None and dur[i] > deadline:
        continue
      if len(used) == cohort_size:
        break
      used.append(i)
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
    else:
      t_end = t + float(deadline)
    if deadline is not None and len(used) < cohort_size:
      t_end = t + float(deadline)
    t = t_end
  stats = {
      "realised_concurrency": float(cohort_size + over_selection),
      "end_time": t,
      "num_versions": version,
      "rounds_with_updates": rounds_used,
      "lost_updates": int(np.sum(b.lost)),
  }
  return b.build(n, True, stats)
