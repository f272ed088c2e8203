"""How much of a batched wave's work is useful: lane utilisation of a plan.

Under ``vmap`` (the wave strategy used on accelerators), the ``width``
lanes of a wave run one loop of local steps together, so the wave costs
``width x`` the longest client's steps, whatever the other lanes need.
Lane utilisation is the useful client steps over the executed lane-steps:

    sum over waves of sum of the wave's clients' steps
    / sum over waves of width x max step count in the wave

Padding (lanes without a client) and short clients waiting for the
longest both lower it. It is computed from the plan on the host, so it
needs no accelerator.

``device_balance`` counts, the same way, what a wave plan gains when its
waves are dealt over several devices that each run their lanes one after
the other (``batching="devices"`` on a CPU split into one-core devices).

No executor that keeps the exact arrival order can do better than the
schedule allows: a client's local steps run one after the other, and it
starts only once its start version exists, which needs the arrivals
before that version applied, which need their clients trained. The
longest such chain, in local steps, is the schedule's ``critical_path``;
lanes stepping in lockstep need at least that many rounds, so ``width``
lanes are busy at most ``useful / (width x critical path)`` of the time
(``parallelism / width``).

Example:
  >>> import numpy as np
  >>> from fedasync_jax import delays, plan, scheduler
  >>> m = delays.delay_model(np.ones(20), np.ones(20))
  >>> s = scheduler.asynchronous(m, num_updates=60, concurrency=8, seed=0)
  >>> p = plan.make_plan(s, width=4)
  >>> u = utilisation(p, np.full(20, 3))  # every client: 3 local steps
  >>> u["useful_steps"]
  180
  >>> # equal steps: only empty lanes of non-empty waves are wasted
  >>> bool(u["utilisation"] == p.wave_valid.sum() / (4 * u["executed_waves"]))
  True
"""

from __future__ import annotations

import math

import numpy as np


def client_steps(counts, *, batch_size: int, epochs: int = 1,
                 steps=None) -> np.ndarray:
  """Local steps of each client's task: ``epochs * ceil(count /
  batch_size)``, or ``steps`` for fixed-step training (as
  ``client.local_update`` runs them).

  Example:
    >>> client_steps(np.array([1, 10, 11]), batch_size=10).tolist()
    [1, 1, 2]
  """
  counts = np.asarray(counts, dtype=np.int64)
  if steps is not None:
    return np.full(counts.shape, int(steps), np.int64)
  return int(epochs) * -(-counts // int(batch_size))


def utilisation(p, steps_of_client) -> dict:
  """Lane utilisation of plan ``p`` under ``vmap``.

  Args:
    p: a ``plan.Plan`` (not a direct plan: it has no waves).
    steps_of_client: ``(num_clients,)`` local steps of each client's task
      (``client_steps``).

  Returns:
    ``useful_steps`` (client steps the run needs), ``executed_lane_steps``
    (``width x`` the longest client of every non-empty wave; for a refill
    plan, ``width x`` the steps in which any lane is busy),
    ``utilisation`` (their ratio), ``executed_waves`` (non-empty waves),
    ``padding`` (the plan's share of empty lanes) and ``width``.
  """
  if p.direct:
    raise ValueError("a direct plan trains one client per step: its "
                     "utilisation is 1 by construction")
  steps = np.asarray(steps_of_client, dtype=np.int64)[p.wave_client]
  steps = np.where(p.wave_valid, steps, 0)
  useful = int(steps.sum())
  if p.lane_done is not None:
    # Refill: a step costs one local step on every lane, and runs while
    # any lane holds a client (from its start to its last step).
    started = np.cumsum(p.wave_valid, axis=0)
    ended = np.cumsum(p.lane_done >= 0, axis=0) - (p.lane_done >= 0)
    waves = int(np.sum((started > ended).any(axis=1)))
    executed = waves * p.width
  else:
    waves = int(np.sum(p.wave_valid.any(axis=1)))
    executed = int(steps.max(axis=1).sum()) * p.width
  return {"width": p.width, "useful_steps": useful,
          "executed_lane_steps": executed,
          "utilisation": useful / executed if executed else math.nan,
          "executed_waves": waves, "padding": p.padding_waste}


def snake_devices(width: int, num_devices: int) -> np.ndarray:
  """The device of each of ``width`` lanes sorted largest first, dealt in
  a snake: devices ``0, 1, ..., D-1``, then ``D-1, ..., 0``, and so on,
  so that each device gets one of every ``D`` lanes of similar size and
  any two devices' loads differ by at most the largest lane
  (``strategies.deal_lanes`` and ``device_balance`` deal this way).

  Raises:
    ValueError: ``width`` is not a multiple of ``num_devices``.

  Example:
    >>> snake_devices(8, 2).tolist()
    [0, 1, 1, 0, 0, 1, 1, 0]
  """
  D = int(num_devices)
  if D < 1 or width % D:
    raise ValueError(f"width ({width}) must be a multiple of the number of "
                     f"devices ({num_devices})")
  k = np.arange(width)
  rnd, pos = k // D, k % D
  return np.where(rnd % 2 == 0, pos, D - 1 - pos)


def device_balance(p, steps_of_client, num_devices: int, *,
                   deal: str = "size") -> dict:
  """How much faster a wave plan's training runs over ``num_devices``
  devices that each run their lanes one after the other (``lax.map``
  within a device, the CPU's ``batching="devices"``), counted in local
  steps: a wave costs one device its lanes' steps, and the wave waits for
  the busiest device.

  Args:
    p: a wave ``plan.Plan`` (not direct, not refill); ``p.width`` must be
      a multiple of ``num_devices``.
    steps_of_client: ``(num_clients,)`` local steps of each client's task
      (``client_steps``).
    num_devices: ``D``.
    deal: ``"size"``, the lanes as ``strategies.deal_lanes`` deals them
      (sorted by size, ``snake_devices``), or ``"round_robin"`` (lane
      ``i`` on device ``i mod D``).

  Returns:
    ``useful_steps``, ``device_steps`` (the sum over waves of the busiest
    device's steps) and ``speedup`` (their ratio: at most ``D``).

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, plan, scheduler
    >>> m = delays.delay_model(np.ones(4), np.ones(4))
    >>> s = scheduler.synchronous(m, num_rounds=2, cohort_size=4, seed=0)
    >>> p = plan.make_plan(s, width=4)
    >>> steps = np.array([5, 1, 4, 2])  # a round: 12 steps, 6 per device
    >>> device_balance(p, steps, 2)["speedup"]
    2.0
  """
  if p.direct or p.lane_done is not None:
    raise ValueError("device_balance needs a wave plan (plan.make_plan "
                     "without steps_of_client)")
  if deal not in ("size", "round_robin"):
    raise ValueError(f"deal must be 'size' or 'round_robin', got {deal!r}")
  D, W = int(num_devices), p.width
  device = snake_devices(W, D)  # also checks the width
  steps = np.asarray(steps_of_client, dtype=np.int64)[p.wave_client]
  steps = np.where(p.wave_valid, steps, 0)
  if deal == "size":
    # Lanes in decreasing steps: the order of decreasing example counts
    # (up to ties of equal steps, which carry equal loads).
    steps = -np.sort(-steps, axis=1)
  else:
    device = np.arange(W) % D
  loads = np.stack([steps[:, device == d].sum(axis=1) for d in range(D)])
  useful = int(steps.sum())
  busiest = int(loads.max(axis=0).sum())
  return {"useful_steps": useful, "device_steps": busiest,
          "speedup": useful / busiest if busiest else math.nan}


def critical_path(schedule, steps_of_client) -> dict:
  """The longest chain of local steps the arrival order forces.

  Arrival ``p`` can be applied once arrival ``p - 1`` is and its client,
  started when its start version was created, has run its steps:
  ``done[p] = max(done[p - 1], done[created(v_p)] + steps_p)``, with
  lanes unlimited. Clients dropped by the staleness cutoff are not trained.

  Args:
    schedule: the events (``scheduler.Schedule``).
    steps_of_client: ``(num_clients,)`` local steps of each client's task
      (``client_steps``).

  Returns:
    ``critical_path_steps``, ``useful_steps`` (all trained clients' steps)
    and ``parallelism`` (their ratio: the most lanes that can be busy on
    average; lockstep utilisation at width ``W`` is at most
    ``min(1, parallelism / W)``).

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> m = delays.delay_model(np.ones(4), np.ones(4))
    >>> s = scheduler.synchronous(m, num_rounds=3, cohort_size=4, seed=0)
    >>> cp = critical_path(s, np.full(4, 5))  # a round waits for its 4
    >>> cp["critical_path_steps"], cp["parallelism"]
    (15, 4.0)
  """
  n = schedule.num_arrivals
  a_task = np.asarray(schedule.arrival_task)
  trained = ~np.asarray(schedule.dropped, bool)
  v0 = np.asarray(schedule.dispatch_version)[a_task]
  after = np.asarray(schedule.version_after, np.int64)
  # The arrival that created each version (-1: version 0).
  created = np.full(int(after.max(initial=0)) + 2, -1, np.int64)
  first = np.r_[True, after[1:] != after[:-1]] & (after > 0) if n else \
      np.zeros(0, bool)
  created[after[first]] = np.nonzero(first)[0]
  steps = np.asarray(steps_of_client, np.int64)[
      np.asarray(schedule.client)[a_task]]
  done = np.zeros(n + 1, np.int64)  # done[p + 1]: arrival p applied
  for p in range(n):
    t = done[p]
    if trained[p]:
      t = max(t, done[created[v0[p]] + 1] + steps[p])
    done[p + 1] = t
  useful = int(steps[trained].sum())
  cp = int(done[n])
  return {"critical_path_steps": cp, "useful_steps": useful,
          "parallelism": useful / cp if cp else math.nan}
