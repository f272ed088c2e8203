"""Schedules whose staleness is prescribed instead of simulated.

``from_staleness`` builds a one-version-per-arrival ``Schedule`` from given
staleness values, and ``uniform_staleness`` draws them uniformly on
``{0, ..., max}``: the way FedAsync's experiments set staleness (Xie,
Koyejo, Gupta, "Asynchronous Federated Optimization", arXiv:1903.03934).
The schedule is data like any other, so the executor and the reference
simulator run it unchanged.

Example:
  >>> s = from_staleness(uniform_staleness(50, 4, seed=0), num_clients=10)
  >>> s.num_arrivals, int(s.staleness.max()) <= 4
  (50, True)
"""

from __future__ import annotations

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.sim.scheduler import MAX_EVENTS, Schedule, _Builder


def uniform_staleness(num_updates: int, max_staleness: int, *,
                      seed: int = 0) -> np.ndarray:
  """Staleness values drawn independently and uniformly on
  ``{0, ..., max_staleness}``, one per arrival.

  This is how FedAsync's experiments set staleness (Xie, Koyejo, Gupta,
  "Asynchronous Federated Optimization", arXiv:1903.03934): each update is
  computed from a model that is a uniformly random number of versions old,
  up to a maximum. Hand the values to ``from_staleness`` for a schedule.
  The draws come from a stream of ``seed`` that is independent of the
  client draws of ``from_staleness(..., seed=seed)``.

  Args:
    num_updates: values to draw, ``>= 1``.
    max_staleness: the largest value, ``>= 0``.
    seed: the random seed; the same seed gives the same values.

  Returns:
    A ``(num_updates,)`` int64 array.

  Example:
    >>> s = uniform_staleness(1000, 4, seed=0)
    >>> sorted(set(s.tolist())), bool(abs(s.mean() - 2.0) < 0.2)
    ([0, 1, 2, 3, 4], True)
  """
  num_updates = checks.integer("num_updates", num_updates, low=1,
                               high=MAX_EVENTS)
  max_staleness = checks.integer("max_staleness", max_staleness, low=0)
  rng = np.random.default_rng(np.random.SeedSequence(
      checks.integer("seed", seed, low=0), spawn_key=(1,)))
  return rng.integers(0, max_staleness + 1, size=num_updates,
                      dtype=np.int64)


def from_staleness(staleness, *, num_clients: int,
                   seed: int = 0) -> Schedule:
  """A one-version-per-arrival schedule whose staleness is prescribed.

  Arrival ``t`` (0-based, ``T`` arrivals) carries staleness ``s_t``
  (clipped to ``t``: no model is older than version 0): its task was
  dispatched when the server was at version ``d_t = t - s_t``, i.e. right
  after arrival ``d_t - 1`` was processed (at the start for ``d_t = 0``).
  Every arrival is applied and advances the version by one (FedAsync;
  not FedBuff or FedAvg), so the realised staleness is exactly ``s_t``.
  Dispatches made at the same version come in arrival order. Each task's
  client is drawn uniformly, with a generator seeded by ``seed``, among
  the clients not in flight. The tasks in flight right after the
  dispatches at version ``v`` are those of arrivals ``v..v+max(s)`` that
  were dispatched by then, so at most ``max(s) + 1`` are in flight at once
  and ``num_clients`` must be at least that.

  Times are bookkeeping, not a delay model: a task dispatched at version
  ``v`` starts at time ``v``, arrival ``t`` comes at time ``t + 1``, so the
  events are in time order and ``stats["realised_concurrency"]`` (the
  time-averaged number in flight) is ``mean(s) + 1``.

  Args:
    staleness: ``(T,)`` integers ``>= 0`` (e.g. ``uniform_staleness``).
    num_clients: the population size, ``>= max(s) + 1`` after clipping.
    seed: the seed of the client draws.

  Returns:
    A ``Schedule`` with ``schedule.staleness`` equal to the clipped
    ``staleness``; ``stats`` holds ``realised_concurrency``, ``end_time``,
    ``num_versions``, ``skipped_dispatches`` (0), ``lost_updates`` (0),
    ``max_in_flight``, and ``arrivals_per_version`` (1) and
    ``max_staleness`` (``None``: no arrival is dropped), which the
    simulators check the rule against: a buffered rule, or a cutoff that
    drops an arrival, would not realise the prescribed staleness.

  Raises:
    ValueError: ``staleness`` empty, not 1-D, not integral or negative, or
      ``num_clients`` too small.

  Example:
    >>> s = from_staleness([0, 1, 2, 0, 2], num_clients=4, seed=0)
    >>> s.staleness.tolist(), s.dispatch_version[s.arrival_task].tolist()
    ([0, 1, 2, 0, 2], [0, 0, 0, 3, 2])
    >>> int(s.version_after[-1]), s.stats["max_in_flight"]
    (5, 3)
  """
  s = np.asarray(staleness)
  if s.ndim != 1 or s.size == 0:
    raise ValueError(f"staleness must be a non-empty 1-D array of integers, "
                     f"got shape {s.shape}")
  if s.dtype == bool or not (np.issubdtype(s.dtype, np.integer) or (
      np.issubdtype(s.dtype, np.floating) and np.all(np.isfinite(s))
      and np.all(s == np.round(s)))):
    raise ValueError(f"staleness must hold integers, got "
                     f"{checks.show(s.tolist())} ({s.dtype})")
  if np.any(s < 0):
    bad = int(np.argmax(s < 0))
    raise ValueError(f"staleness must be >= 0, got {s[bad]} at arrival "
                     f"{bad}")
  T = checks.integer("len(staleness)", s.size, low=1, high=MAX_EVENTS)
  num_clients = checks.integer("num_clients", num_clients, low=1)
  t_idx = np.arange(T, dtype=np.int64)
  s = np.minimum(s.astype(np.int64), t_idx)
  need = int(s.max()) + 1
  if num_clients < need:
    raise ValueError(f"num_clients must be >= max staleness + 1 = {need} "
                     f"(up to that many tasks are in flight at once), got "
                     f"{num_clients}")
  d = t_idx - s
  order = np.lexsort((t_idx, d))  # by dispatch version, then arrival
  rng = checks.rng(seed)
  busy = np.zeros(num_clients, bool)
  task_of = np.zeros(T, np.int64)
  b = _Builder()
  j, in_flight, max_in_flight = 0, 0, 0
  for v in range(T):
    while j < T and d[order[j]] == v:
      t = int(order[j])
      c = _pick_idle(rng, busy)
      busy[c] = True
      task_of[t] = b.dispatch(c, float(v), float(t + 1 - v), False, v)
      j += 1
      in_flight += 1
    max_in_flight = max(max_in_flight, in_flight)
    k = int(task_of[v])
    busy[b.client[k]] = False
    in_flight -= 1
    b.arrive(k, int(s[v]), False, v + 1)
  stats = {
      "realised_concurrency": float(s.mean()) + 1.0,
      "end_time": float(T),
      "num_versions": T,
      "skipped_dispatches": 0,
      "lost_updates": 0,
      "max_in_flight": max_in_flight,
      # what the rule must do for the staleness to be realised
      # (``contract.check_rule_fits`` refuses another rule)
      "arrivals_per_version": 1,
      "max_staleness": None,
  }
  return b.build(num_clients, False, stats)


def _pick_idle(rng, busy) -> int:
  """A client drawn uniformly among those not ``busy`` (rejection, then a
  draw among the idle ones after 64 misses; both are uniform)."""
  n = busy.shape[0]
  for _ in range(64):
    c = int(rng.integers(n))
    if not busy[c]:
      return c
  idle = np.flatnonzero(~busy)
  return int(idle[rng.integers(idle.size)])
