"""The execution plan: which clients train together, computed in numpy.

A client dispatched at version ``v`` can be trained as soon as the server
has produced ``w_v``. The plan walks the arrivals in order and cuts the run
into fixed-shape steps. Each step

1. trains a *wave* of up to ``width`` clients whose start version already
   exists (earliest arrival first), reading their start parameters from a
   snapshot slot and writing their results to a result slot, then
2. applies up to ``arrivals_per_step`` arrivals in order, stopping at the
   first arrival whose client is not trained yet; an arrival that creates a
   version some later client starts from writes the new parameters into a
   snapshot slot.

Slots are recycled: the result buffer holds the trained-but-not-arrived
clients (about the concurrency ``C`` plus one wave) and the snapshot buffer
the versions still waiting for a client to be trained, so memory is
``O((C + width) x params)``, independent of the population. Clients whose
update never arrives, or is dropped by the staleness cutoff, are not
trained at all. Unused positions of a step are padding (``valid = False``).

Example:
  >>> import numpy as np
  >>> from fedasync_jax import delays, scheduler
  >>> m = delays.delay_model(np.ones(50), np.ones(50))
  >>> s = scheduler.asynchronous(m, num_updates=200, concurrency=10, seed=0)
  >>> p = make_plan(s, width=4, arrivals_per_step=8)
  >>> int(p.wave_valid.sum()) == 200, p.num_steps >= 50
  (True, True)
"""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple, Optional

import numpy as np

from fedasync_jax.sim.scheduler import Schedule


class Plan(NamedTuple):
  """Static-shape step arrays (``(num_steps, width)`` and
  ``(num_steps, arrivals_per_step)``) plus buffer sizes.

  Wave arrays: ``wave_task`` (task id, for the PRNG key and
  hyperparameters), ``wave_client``, ``wave_snap`` (snapshot slot to read),
  ``wave_slot`` (result slot to write), ``wave_valid``.
  Arrival arrays: ``arr_index`` (position in the schedule's arrival list),
  ``arr_slot`` (result slot to read), ``arr_staleness``, ``arr_ends_round``,
  ``arr_snap`` (snapshot slot to write after the arrival, or the trash slot),
  ``arr_valid``. ``init_snap``: slot of version 0. Trash slots are
  ``num_slots`` and ``num_snaps`` (one past the last real slot).
  ``direct``: a ``make_direct_plan`` (one arrival per step, trained and
  applied in the same step, no result slots). ``lane_done``: only in a
  refill plan (``make_plan(steps_of_client=...)``), ``(num_steps, width)``
  the task whose last local step its lane runs in that step, or -1; the
  wave arrays there say which lanes *start* a task.
  """
  wave_task: np.ndarray
  wave_client: np.ndarray
  wave_snap: np.ndarray
  wave_slot: np.ndarray
  wave_valid: np.ndarray
  arr_index: np.ndarray
  arr_slot: np.ndarray
  arr_staleness: np.ndarray
  arr_ends_round: np.ndarray
  arr_snap: np.ndarray
  arr_valid: np.ndarray
  init_snap: int
  num_slots: int
  num_snaps: int
  direct: bool = False
  lane_done: Optional[np.ndarray] = None

  @property
  def num_steps(self) -> int:
    return int(self.wave_task.shape[0])

  @property
  def width(self) -> int:
    return int(self.wave_task.shape[1])

  @property
  def arrivals_per_step(self) -> int:
    return int(self.arr_index.shape[1])

  @property
  def padding_waste(self) -> float:
    """Fraction of client slots in the waves that are padding."""
    total = self.wave_valid.size
    return float(1.0 - self.wave_valid.sum() / total) if total else 0.0

  def pad_steps(self, num_steps: int) -> "Plan":
    """Appends all-padding steps up to ``num_steps``."""
    extra = num_steps - self.num_steps
    if extra < 0:
      raise ValueError(f"num_steps must be >= {self.num_steps}, got "
                       f"{num_steps}")
    if extra == 0:
      return self
    fill = {"wave_task": 0, "wave_client": 0, "wave_snap": self.num_snaps,
            "wave_slot": self.num_slots, "wave_valid": False,
            "arr_index": 0, "arr_slot": self.num_slots, "arr_staleness": 0,
            "arr_ends_round": False, "arr_snap": self.num_snaps,
            "arr_valid": False}
    if self.lane_done is not None:
      fill["lane_done"] = -1
    out = {}
    for name, value in fill.items():
      a = getattr(self, name)
      pad = np.full((extra,) + a.shape[1:], value, a.dtype)
      out[name] = np.concatenate([a, pad])
    return self._replace(**out)


def default_width(concurrency: float) -> int:
  """A step width from the concurrency ``C``: twice the mean wave.

  Measured on simulated schedules with exponential task jitter, the mean
  wave is about sqrt(C) (3.6 clients at C=10, 12 at 100, 40 at 1000), and
  shorter with heavy-tailed speeds (7.5 on W1's lognormal speeds at
  C=100), so ``2 sqrt(C)`` covers most waves whole (docs/design.md).

  Example:
    >>> default_width(100)
    20
  """
  return int(max(1, min(256, math.ceil(2 * math.sqrt(max(concurrency, 1))))))


def make_plan(schedule: Schedule, *, width: int,
              arrivals_per_step: Optional[int] = None,
              steps_of_client=None) -> Plan:
  """Cuts a schedule into fixed-shape steps.

  Two kinds of plan. Waves (the default): a step trains up to ``width``
  clients from start to end. Refill (``steps_of_client`` given): ``width``
  lanes each run one local step per plan step; a lane whose client is done
  takes the earliest-arriving client whose start version exists, so no
  lane waits for a longer client (``lanes.critical_path`` bounds how busy
  they can be). In both, a client's result slot is taken when it starts
  and freed by its arrival.

  Args:
    schedule: the events.
    width: clients trained per step (waves) or lanes (refill), ``>= 1``.
    arrivals_per_step: arrivals applied per step (default ``2 * width``).
    steps_of_client: ``(num_clients,)`` local steps of each client's task
      (``ClientUpdate.lane.steps_of`` of the example counts): makes a
      refill plan. A client that stops early only idles its lane.

  Returns:
    A ``Plan``.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> m = delays.delay_model(np.ones(6), np.ones(6))
    >>> s = scheduler.asynchronous(m, num_updates=30, concurrency=4, seed=0)
    >>> p = make_plan(s, width=2, steps_of_client=np.full(6, 3))
    >>> int(p.wave_valid.sum()), int((p.lane_done >= 0).sum())
    (30, 30)
  """
  if int(width) != width or width < 1:
    raise ValueError(f"width must be an integer >= 1, got {width!r}")
  W = int(width)
  A = int(arrivals_per_step) if arrivals_per_step is not None else 2 * W
  if A < 1:
    raise ValueError(f"arrivals_per_step must be >= 1, got {A}")
  steps = None
  if steps_of_client is not None:
    steps = np.asarray(steps_of_client, np.int64)
    if steps.shape != (schedule.num_clients,) or (steps < 0).any():
      raise ValueError(f"steps_of_client must be {schedule.num_clients} "
                       f"counts >= 0, got shape {steps.shape}")
  waves, arrs, dones, init_snap, n_slots, n_snaps = _walk(schedule, W, A,
                                                          steps)
  p = _plan_arrays(waves, arrs, W, A, init_snap, n_slots, n_snaps)
  if steps is None:
    return p
  lane_done = np.full((p.num_steps, W), -1, np.int32)
  for i, done in enumerate(dones):
    for lane, k in done:
      lane_done[i, lane] = k
  return p._replace(lane_done=lane_done)


def _walk(schedule: Schedule, W: int, A: int, steps=None):
  """The host walk of ``make_plan``: per step, the clients started
  ``[(lane, task, client, snap, slot)]``, the arrivals ``[(index, slot, tau,
  ends_round, snap_written)]`` and (refill) the lanes' finished clients
  ``[(lane, task)]``; plus the initial snapshot slot and the slot
  counts."""
  n_arr = schedule.num_arrivals
  a_task = schedule.arrival_task
  trainable = ~schedule.dropped
  v0 = schedule.dispatch_version
  # Arrival index after which each version exists (-1 for version 0).
  num_versions = int(schedule.version_after.max()) + 1 if n_arr else 1
  created = np.full(num_versions + 1, n_arr, np.int64)
  created[0] = -1
  prev = 0
  for a, v in enumerate(schedule.version_after):
    if v != prev:
      created[v] = a
      prev = v
  # Tasks to train, and how many of them start from each version.
  train_tasks = a_task[trainable]
  arr_pos = np.full(schedule.num_tasks, -1, np.int64)
  arr_pos[a_task] = np.arange(n_arr)
  pending = np.bincount(v0[train_tasks], minlength=num_versions + 1)
  order = train_tasks[np.argsort(created[v0[train_tasks]], kind="stable")]
  ready_at = created[v0[order]]

  free_slots, n_slots = [], 0
  free_snaps, n_snaps = [], 0
  snap_of = {}

  def alloc(free, n):
    return (free.pop(), n) if free else (n, n + 1)

  if pending[0] > 0:
    s, n_snaps = alloc(free_snaps, n_snaps)
    snap_of[0] = s
  init_snap = snap_of.get(0, 0)

  slot_of_task = np.full(schedule.num_tasks, -1, np.int64)
  trained = np.zeros(schedule.num_tasks, bool)
  waves, arrs, dones = [], [], []
  heap = []
  # Refill: each lane's task and its steps left (a task of 0 steps holds
  # its lane for one step, as the lane machine writes it at that step).
  lane_task, lane_left = [-1] * W, [0] * W
  r = 0
  p = 0
  while p < n_arr:
    while r < order.size and ready_at[r] < p:
      heapq.heappush(heap, (arr_pos[order[r]], int(order[r])))
      r += 1
    wave, done = [], []
    freed_snaps = []
    idle = range(W) if steps is None else [
        lane for lane in range(W) if lane_task[lane] < 0]
    for lane in idle:
      if not heap:
        break
      _, k = heapq.heappop(heap)
      slot, n_slots = alloc(free_slots, n_slots)
      v = int(v0[k])
      wave.append((lane, k, int(schedule.client[k]), snap_of[v], slot))
      slot_of_task[k] = slot
      if steps is None:
        trained[k] = True
      else:
        lane_task[lane] = k
        lane_left[lane] = max(1, int(steps[schedule.client[k]]))
      pending[v] -= 1
      if pending[v] == 0:
        freed_snaps.append(snap_of.pop(v))
    free_snaps.extend(freed_snaps)
    if steps is not None:
      for lane in range(W):
        if lane_task[lane] >= 0:
          lane_left[lane] -= 1
          if lane_left[lane] == 0:
            trained[lane_task[lane]] = True
            done.append((lane, lane_task[lane]))
            lane_task[lane] = -1
    applied = []
    while len(applied) < A and p < n_arr:
      k = int(a_task[p])
      if trainable[p] and not trained[k]:
        break
      slot = int(slot_of_task[k]) if trainable[p] else -1
      v_new = int(schedule.version_after[p])
      write = -1
      if created[v_new] == p and pending[v_new] > 0:
        write, n_snaps = alloc(free_snaps, n_snaps)
        snap_of[v_new] = write
      applied.append((p, slot, int(schedule.staleness[p]),
                      bool(schedule.ends_round[p]), write))
      if slot >= 0:
        free_slots.append(slot)
      p += 1
    if not wave and not applied and not any(t >= 0 for t in lane_task):
      raise RuntimeError("plan made no progress (inconsistent schedule)")
    waves.append(wave)
    arrs.append(applied)
    dones.append(done)
  return waves, arrs, dones, init_snap, n_slots, n_snaps


def _plan_arrays(waves, arrs, W, A, init_snap, n_slots, n_snaps) -> Plan:
  """The walk's steps as a ``Plan`` of padded arrays."""
  S = len(waves)
  wave_task = np.zeros((S, W), np.int32)
  wave_client = np.zeros((S, W), np.int32)
  wave_snap = np.full((S, W), n_snaps, np.int32)
  wave_slot = np.full((S, W), n_slots, np.int32)
  wave_valid = np.zeros((S, W), bool)
  arr_index = np.zeros((S, A), np.int32)
  arr_slot = np.full((S, A), n_slots, np.int32)
  arr_tau = np.zeros((S, A), np.int32)
  arr_end = np.zeros((S, A), bool)
  arr_snap = np.full((S, A), n_snaps, np.int32)
  arr_valid = np.zeros((S, A), bool)
  for i, (wave, applied) in enumerate(zip(waves, arrs)):
    for j, k, c, snap, slot in wave:
      wave_task[i, j], wave_client[i, j] = k, c
      wave_snap[i, j], wave_slot[i, j], wave_valid[i, j] = snap, slot, True
    for j, (a, slot, tau, end, write) in enumerate(applied):
      arr_index[i, j] = a
      arr_slot[i, j] = slot if slot >= 0 else n_slots
      arr_tau[i, j], arr_end[i, j] = tau, end
      arr_snap[i, j] = write if write >= 0 else n_snaps
      arr_valid[i, j] = True
  return Plan(wave_task, wave_client, wave_snap, wave_slot, wave_valid,
              arr_index, arr_slot, arr_tau, arr_end, arr_snap, arr_valid,
              init_snap, n_slots, n_snaps)


def make_direct_plan(schedule: Schedule) -> Plan:
  """The one-arrival-per-step plan: step ``s`` trains the client of arrival
  ``s`` (unless the staleness cutoff drops it) and applies it.

  The executor's direct path runs this plan without result slots: it trains
  and applies in the same step (``num_slots`` is 0). Snapshot slots hold
  the versions that a later arrival's client starts from; a slot is freed
  by the step that reads it for the last time and may be written again by
  the same step (the read comes first).

  Args:
    schedule: the events.

  Returns:
    A ``Plan`` of width 1 with one step per arrival.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> m = delays.delay_model(np.ones(20), np.ones(20))
    >>> s = scheduler.asynchronous(m, num_updates=50, concurrency=5, seed=0)
    >>> p = make_direct_plan(s)
    >>> p.num_steps, p.num_slots, int(p.wave_valid.sum())
    (50, 0, 50)
  """
  n = schedule.num_arrivals
  a_task = np.asarray(schedule.arrival_task, np.int64)
  trained = ~np.asarray(schedule.dropped, bool)
  v0 = np.asarray(schedule.dispatch_version, np.int64)[a_task]
  v_after = np.asarray(schedule.version_after, np.int64)
  num_versions = int(v_after.max()) + 1 if n else 1
  # Last arrival that reads each version (-1: none reads it).
  last_read = np.full(num_versions + 1, -1, np.int64)
  np.maximum.at(last_read, v0[trained], np.nonzero(trained)[0])
  snap_of = {}
  free, n_snaps = [], 0

  def alloc():
    nonlocal n_snaps
    if free:
      return free.pop()
    n_snaps += 1
    return n_snaps - 1

  if last_read[0] >= 0:
    snap_of[0] = alloc()
  init_snap = snap_of.get(0, 0)
  wave_snap = np.zeros(n, np.int64)
  arr_snap = np.zeros(n, np.int64)
  prev = 0
  for a in range(n):
    read = -1
    if trained[a]:
      v = int(v0[a])
      read = snap_of[v]
      if last_read[v] == a:
        free.append(snap_of.pop(v))
    wave_snap[a] = read
    v = int(v_after[a])
    write = -1
    if v != prev:
      prev = v
      if last_read[v] > a:
        write = snap_of[v] = alloc()
    arr_snap[a] = write
  wave_snap[wave_snap < 0] = n_snaps
  arr_snap[arr_snap < 0] = n_snaps
  col = lambda x, dt: np.asarray(x, dt).reshape(n, 1)
  client = np.asarray(schedule.client)[a_task]
  return Plan(
      wave_task=col(np.where(trained, a_task, 0), np.int32),
      wave_client=col(np.where(trained, client, 0), np.int32),
      wave_snap=col(wave_snap, np.int32),
      wave_slot=np.zeros((n, 1), np.int32), wave_valid=col(trained, bool),
      arr_index=col(np.arange(n), np.int32),
      arr_slot=np.zeros((n, 1), np.int32),
      arr_staleness=col(schedule.staleness, np.int32),
      arr_ends_round=col(schedule.ends_round, bool),
      arr_snap=col(arr_snap, np.int32), arr_valid=np.ones((n, 1), bool),
      init_snap=init_snap, num_slots=0, num_snaps=n_snaps, direct=True)


class Steps(NamedTuple):
  """The plan's per-step arrays as the compiled program reads them.

  The fields are those of ``Plan`` that the program needs (see there),
  plus ``arr_eval``: whether an evaluation runs after the arrival. Leading
  axis: steps (a sweep over different schedules adds a member axis first).
  """
  wave_task: np.ndarray
  wave_client: np.ndarray
  wave_snap: np.ndarray
  wave_slot: np.ndarray
  wave_valid: np.ndarray
  arr_slot: np.ndarray
  arr_staleness: np.ndarray
  arr_ends_round: np.ndarray
  arr_snap: np.ndarray
  arr_valid: np.ndarray
  arr_eval: np.ndarray


def steps_of(p: Plan, eval_flags: np.ndarray) -> Steps:
  """The program's ``Steps`` of plan ``p``; ``eval_flags[a]`` says whether
  an evaluation follows arrival ``a`` (``tasks.eval_points``).

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(4), np.ones(4)),
    ...                            num_updates=6, concurrency=2, seed=0)
    >>> st = steps_of(make_direct_plan(s), np.ones(6, bool))
    >>> st.arr_eval.shape, bool(st.arr_eval.all())
    ((6, 1), True)
  """
  flags = np.asarray(eval_flags, bool)
  arr_eval = (flags[p.arr_index] & p.arr_valid if flags.size
              else np.zeros_like(p.arr_valid))
  return Steps(p.wave_task, p.wave_client, p.wave_snap, p.wave_slot,
               p.wave_valid, p.arr_slot, p.arr_staleness, p.arr_ends_round,
               p.arr_snap, p.arr_valid, arr_eval)
