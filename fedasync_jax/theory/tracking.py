"""Exact tracking: realised staleness, and a runner that measures drift.

``staleness_stats`` reads ``tau_max`` and ``tau_avg`` from a run;
``tracker`` / ``track`` is a small pure-JAX runner (``lax.scan`` over the
schedule's arrivals, one client at a time, with a ring buffer of the last
``tau_max + 1`` server versions) that also measures the drift
``||w_t - w_{t - tau}||^2`` of every update (Definition 1 and Assumption 4
of the AFL paper, Forootani and Iervolino 2025, arXiv:2508.01675); it
equals the reference simulator.

Example:
  >>> import numpy as np
  >>> s = staleness_stats({"staleness": np.array([0, 2, 4]),
  ...                      "applied": np.array([1, 1, 1], bool)})
  >>> s.tau_max, s.tau_avg
  (4, 2.0)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax import data as data_lib
from fedasync_jax.core import checks
from fedasync_jax.core.arrival import arrive
from fedasync_jax.core import tree as tree_lib
from fedasync_jax.core.client import ClientHParams, ClientRef, ClientUpdate
from fedasync_jax.core.types import RunResult, ServerRule
from fedasync_jax.sim import scheduler as sched_lib
from fedasync_jax.sim.sweep import member_keys
from fedasync_jax.sim import contract, tasks
from fedasync_jax.sim.tasks import task_hparams


class StalenessStats(NamedTuple):
  """Realised staleness of a run (applied updates only).

  Attributes:
    tau_max: the largest staleness.
    tau_avg: the mean staleness.
    tau_median: the median staleness.
    num_applied: applied updates.
    num_dropped: updates dropped by a cutoff.
    concurrency: the schedule's realised (time-averaged) concurrency, or
      ``nan`` when the source is a run's arrivals. Koloskova et al.'s
      ``tau_C`` (arXiv:2206.08307, Definition 1) is the largest number in
      flight, not this mean: a closed loop without availability windows
      keeps its ``concurrency`` in flight, so there both are that number;
      an open (Poisson) loop's largest is not recorded.

  Example:
    >>> StalenessStats(4, 2.0, 2.0, 3, 1, float("nan")).tau_max
    4
  """
  tau_max: int
  tau_avg: float
  tau_median: float
  num_applied: int
  num_dropped: int
  concurrency: float


def staleness_stats(source: Union[RunResult, sched_lib.Schedule, dict,
                                  "TrackedRun"]) -> StalenessStats:
  """``tau_max``, ``tau_avg`` of a run, from its staleness per update.

  Args:
    source: a ``RunResult`` (reads ``arrivals["staleness"]`` and
      ``arrivals["applied"]``), a ``TrackedRun``, an arrivals dict, or a
      ``Schedule`` (reads ``staleness`` and ``dropped``).

  Example:
    >>> import numpy as np
    >>> s = staleness_stats({"staleness": np.array([0, 2, 4, 9]),
    ...                      "applied": np.array([1, 1, 1, 0], bool)})
    >>> s.tau_max, s.tau_avg, s.num_dropped
    (4, 2.0, 1)
  """
  conc = float("nan")
  if isinstance(source, sched_lib.Schedule):
    tau = np.asarray(source.staleness)
    applied = ~np.asarray(source.dropped)
    conc = float(source.stats.get("realised_concurrency", float("nan")))
  else:
    arr = source.arrivals if hasattr(source, "arrivals") else source
    tau = np.asarray(arr["staleness"])
    applied = np.asarray(arr["applied"], bool)
  t = tau[applied]
  if t.size == 0:
    return StalenessStats(0, 0.0, 0.0, 0, int((~applied).sum()), conc)
  return StalenessStats(int(t.max()), float(t.mean()), float(np.median(t)),
                        int(t.size), int((~applied).sum()), conc)


def per_version(evals: Sequence[dict], key: str) -> np.ndarray:
  """A metric at versions ``0, 1, ..., V`` from a run's ``evals`` list.

  With ``eval_every=1`` the executor evaluates once per version (the
  initial parameters included); this returns those values in version order.
  ``key`` is the column of ``RunResult.evals``: ``test_<name>`` for the
  metric ``<name>`` of the evaluation function (``metrics_fn``).

  Raises:
    ValueError: ``key`` not a column, or the evaluations not one per
      version (another ``eval_every``).

  Example:
    >>> per_version([{"version": 0, "test_g": 1.0},
    ...              {"version": 1, "test_g": 0.5}], "test_g").tolist()
    [1.0, 0.5]
  """
  ev = sorted(evals, key=lambda e: e["version"])
  if ev and key not in ev[0]:
    hint = (f" (the evaluation function's metric {key!r} is the column "
            f"'test_{key}')" if f"test_{key}" in ev[0] else "")
    raise ValueError(f"per_version: key must be a column of the evals, one "
                     f"of {sorted(ev[0])}, got {key!r}{hint}")
  versions = [int(e["version"]) for e in ev]
  if versions != list(range(len(ev))):
    raise ValueError(
        f"per_version needs one evaluation at every version 0, 1, ..., V "
        f"(run with eval_every=1), got versions {versions[:6]}"
        f"{' ...' if len(versions) > 6 else ''}")
  return np.asarray([e[key] for e in ev], np.float64)


class TrackerInputs(NamedTuple):
  """Per-arrival inputs of the tracker (arrays over arrivals, padded).

  ``task`` (PRNG key and hyperparameters of the task), ``client``,
  ``staleness``, ``ends_round``, ``lr_scale``, ``prox_rho`` and ``valid``
  (False for padding).

  Example:
    >>> TrackerInputs(*([0] * 7))._fields[-1]
    'valid'
  """
  task: Any
  client: Any
  staleness: Any
  ends_round: Any
  lr_scale: Any
  prox_rho: Any
  valid: Any


class TrackerState(NamedTuple):
  """The tracker's carry: the rule state and the ring of recent versions.

  Example:
    >>> TrackerState(None, None)._fields
    ('state', 'ring')
  """
  state: Any
  ring: Any


class Tracker(NamedTuple):
  """A pure runner that tracks staleness, drift and exact metrics.

  ``init(params) -> TrackerState``; ``step(carry, inputs, x, y, offsets,
  counts, key) -> (carry, outputs)`` for ONE arrival; ``run(params, inputs,
  x, y, offsets, counts, key) -> (TrackerState, outputs)``: ``lax.scan`` of
  ``step`` over the arrivals (vmappable over members). ``ring_size`` is the
  number of stored versions (at least the largest applied staleness + 1).

  Example:
    >>> from fedasync_jax import client, rules
    >>> import optax
    >>> from fedasync_jax.theory import least_squares
    >>> p = least_squares(num_clients=2, examples_per_client=2, dim=1)
    >>> upd = client.local_update(p.loss, optax.sgd(0.1), batch_size=1,
    ...                           max_examples=2, steps=1)
    >>> tr = tracker(rules.fedasync(0.5), upd, ring_size=3)
    >>> carry = tr.init(jnp.zeros(1))
    >>> carry.ring.shape  # three versions and the trash slot
    (4, 1)
  """
  init: Callable
  step: Callable
  run: Callable
  ring_size: int


def tracker(rule: ServerRule, client_update: ClientUpdate, *, ring_size: int,
            metrics: Optional[Callable] = None) -> Tracker:
  """Builds the drift/staleness tracker.

  It walks the arrivals in processing order, one client at a time (the
  reference simulator's order), and trains each client at its arrival from
  the parameters of its dispatch version ``v = version - tau``, read from a
  ring buffer that holds the parameters of the last ``ring_size`` versions
  (slot ``v mod ring_size``, written after every arrival by
  ``core.arrival.arrive``, the arrival step every simulator uses; the ring
  has one more slot, the snapshot buffers' trash slot). Task ``k``
  trains with ``jax.random.fold_in(key, k)``, as in ``reference.run`` and
  ``executor.simulate``, so the result equals theirs.

  Per arrival it outputs ``drift = ||w_t - w_{t - tau}||^2`` (``w_t`` the
  server parameters the update is applied to, ``t`` the version at arrival;
  ``nan`` if ``tau >= ring_size``), ``applied``, ``version`` (after the
  arrival), ``train_loss`` and the entries of ``metrics(params)`` after the
  arrival.

  Args:
    rule: the server rule.
    client_update: the client update (``client.local_update``).
    ring_size: stored versions, an integer ``>= 1``.
    metrics: optional jit-traceable ``params -> dict of scalars``.

  Returns:
    A ``Tracker``.

  Example:
    >>> import optax
    >>> from fedasync_jax import client, rules
    >>> from fedasync_jax.theory import least_squares
    >>> p = least_squares(num_clients=4, examples_per_client=4, dim=2,
    ...                   batch_size=2)
    >>> upd = client.local_update(p.loss, optax.sgd(0.1), batch_size=2,
    ...                           max_examples=4, steps=1)
    >>> tracker(rules.fedasync(0.5), upd, ring_size=8).ring_size
    8
  """
  R = checks.integer("ring_size", ring_size, low=1)

  def init(params):
    params = jax.tree.map(jnp.asarray, params)
    ring = jax.tree.map(
        lambda p: jnp.zeros((R + 1,) + p.shape, p.dtype).at[0].set(p),
        params)
    return TrackerState(rule.init(params), ring)

  def step(carry, inp, x, y, offsets, counts, key):
    state, ring = carry
    tau = jnp.asarray(inp.staleness, jnp.int32)
    v0 = state.version - tau
    slot = jnp.mod(v0, R)
    start = jax.tree.map(lambda b: b[slot], ring)
    c = inp.client
    ref = ClientRef(x, y, offsets[c], counts[c])
    res, met = client_update.update(
        start, ref, jax.random.fold_in(key, inp.task),
        ClientHParams(inp.lr_scale, inp.prox_rho))
    drift = tree_lib.sq_dist(state.params, start)
    new, ring, applied = arrive(
        rule, state, res, tau, ends_round=inp.ends_round, valid=inp.valid,
        snaps=ring, snap_slot=lambda st: jnp.mod(st.version, R))
    out = {"drift": jnp.where(tau < R, drift, jnp.nan), "applied": applied,
           "version": new.version, "train_loss": met["loss"]}
    if metrics is not None:
      out.update(metrics(new.params))
    return TrackerState(new, ring), out

  def run(params, inputs, x, y, offsets, counts, key):
    carry = init(params)
    return jax.lax.scan(
        lambda c, i: step(c, i, x, y, offsets, counts, key), carry, inputs)

  return Tracker(init, step, run, R)


def tracker_inputs(schedule: sched_lib.Schedule, *,
                   hparams: Optional[ClientHParams] = None,
                   length: Optional[int] = None) -> TrackerInputs:
  """The schedule's arrivals as tracker inputs (numpy), padded to ``length``.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(3), np.ones(3)),
    ...                            num_updates=5, concurrency=2, seed=0)
    >>> tracker_inputs(s, length=8).valid.tolist()
    [True, True, True, True, True, False, False, False]
  """
  if hparams is None:
    hparams = task_hparams(schedule)
  n = schedule.num_arrivals
  length = n if length is None else checks.integer("length", length, low=n)
  task = schedule.arrival_task
  pad = length - n

  def p(a, dtype, fill=0):
    a = np.asarray(a).astype(dtype)
    return np.concatenate([a, np.full(pad, fill, dtype)])
  return TrackerInputs(
      task=p(task, np.int32), client=p(schedule.client[task], np.int32),
      staleness=p(schedule.staleness, np.int32),
      ends_round=p(schedule.ends_round, bool),
      lr_scale=p(np.asarray(hparams.lr_scale)[task], np.float64, 1.0),
      prox_rho=p(np.asarray(hparams.prox_rho)[task], np.float64),
      valid=p(np.ones(n, bool), bool, False))


class TrackedRun(NamedTuple):
  """What ``track`` returns.

  Attributes:
    state: the final server state.
    arrivals: per arrival (processing order): ``staleness``, ``applied``,
      ``version`` (after the arrival), ``drift`` (``||w_t - w_{t-tau}||^2``),
      ``train_loss`` and the tracked metrics after the arrival.
    initial: the tracked metrics of the initial parameters.
    stats: ``tau_max``, ``tau_avg``, ``ring_size``, ``wall_time_s``.

  Example:
    >>> r = TrackedRun(None, {"version": np.array([1, 1, 2]),
    ...                       "g": np.array([3.0, 2.0, 1.0])}, {"g": 4.0}, {})
    >>> r.per_version("g").tolist()
    [4.0, 3.0, 1.0]
  """
  state: Any
  arrivals: dict
  initial: dict
  stats: dict

  def per_version(self, key: str) -> np.ndarray:
    """Metric ``key`` at versions ``0..V`` (first arrival reaching each).

    A dropped update leaves the version unchanged and is skipped.
    """
    v = self.arrivals["version"]
    first = np.flatnonzero(np.diff(np.concatenate([[0], v])) > 0)
    return np.concatenate([[self.initial[key]], self.arrivals[key][first]])


def _applied_tau_max(schedule):
  t = np.asarray(schedule.staleness)[~np.asarray(schedule.dropped)]
  return int(t.max()) if t.size else 0


def track_many(rule: ServerRule, client_update: ClientUpdate, params,
               data: data_lib.ClientDataset,
               schedules: Sequence[sched_lib.Schedule], *, keys,
               hparams: Optional[Sequence[ClientHParams]] = None,
               metrics: Optional[Callable] = None,
               ring_size: Optional[int] = None) -> list:
  """Runs ``track`` for several schedules/keys as one vmapped program.

  Arrivals are padded to the longest schedule (padding leaves the state
  unchanged). Returns one ``TrackedRun`` per member.

  Example:
    >>> # outs = track_many(rule, upd, w0, p.data, [s0, s1],
    >>> #                   keys=jax.random.split(jax.random.key(0), 2))
  """
  import time
  scheds = list(schedules)
  if not scheds:
    raise ValueError("schedules must hold at least one Schedule")
  M = len(scheds)
  keys = member_keys(keys, M)
  hps = [None] * M if hparams is None else list(hparams)
  if len(hps) != M:
    raise ValueError(f"hparams must hold {M} entries, got {len(hps)}")
  # The simulators' checks, so that the result equals theirs.
  contract.check_schedules(scheds, data.num_clients)
  contract.check_rule_fits(rule, scheds)
  contract.check_rule_contract(rule, params)
  contract.check_client_fits(client_update, data)
  hps = [h if h is None else tasks.check_hparams(h, s, name=f"hparams[{m}]")
         for m, (h, s) in enumerate(zip(hps, scheds))]
  need = max(_applied_tau_max(s) for s in scheds) + 1
  R = need if ring_size is None else checks.integer("ring_size", ring_size,
                                                    low=1)
  if R < need:
    raise ValueError(f"ring_size must be >= {need} (largest applied "
                     f"staleness + 1), got {ring_size!r}")
  length = max(s.num_arrivals for s in scheds)
  ins = [tracker_inputs(s, hparams=h, length=length)
         for s, h in zip(scheds, hps)]
  stacked = jax.tree.map(lambda *a: jnp.asarray(np.stack(a)), *ins)
  tr = tracker(rule, client_update, ring_size=R, metrics=metrics)
  t0 = time.perf_counter()
  run = jax.jit(jax.vmap(tr.run, in_axes=(None, 0, None, None, None, None,
                                          0)))
  final, outs = run(params, stacked, jnp.asarray(data.x), jnp.asarray(data.y),
                    jnp.asarray(data.offsets, jnp.int32),
                    jnp.asarray(data.counts, jnp.int32), keys)
  final = jax.block_until_ready(final)
  wall = time.perf_counter() - t0
  outs = jax.device_get(outs)
  initial = ({k: float(v) for k, v in jax.jit(metrics)(params).items()}
             if metrics is not None else {})
  results = []
  for m, s in enumerate(scheds):
    n = s.num_arrivals
    arr = {k: np.asarray(v[m][:n]) for k, v in outs.items()}
    arr["staleness"] = np.asarray(s.staleness, np.int64)
    contract.check_followed(s, arr, where=f"member {m}: " if M > 1 else "")
    arr["drift"] = arr["drift"].astype(np.float64)
    st = staleness_stats(arr)
    stats = {"tau_max": st.tau_max, "tau_avg": st.tau_avg, "ring_size": R,
             "wall_time_s": wall, "members": M}
    results.append(TrackedRun(jax.tree.map(lambda a: np.asarray(a[m]),
                                           final.state), arr, initial, stats))
  return results


def track(rule: ServerRule, client_update: ClientUpdate, params,
          data: data_lib.ClientDataset, schedule: sched_lib.Schedule, *, key,
          hparams: Optional[ClientHParams] = None,
          metrics: Optional[Callable] = None,
          ring_size: Optional[int] = None) -> TrackedRun:
  """Runs a schedule with the tracker and returns the per-update history.

  Args:
    rule: the server rule.
    client_update: the client update.
    params: initial parameters.
    data: the population's examples.
    schedule: the events.
    key: PRNG key (task ``k`` uses ``fold_in(key, k)``, as the simulators).
    hparams: per-task client hyperparameters (``tasks.task_hparams``).
    metrics: jit-traceable ``params -> dict`` (e.g. ``metrics_fn(p)``).
    ring_size: stored versions (default: the largest applied staleness + 1).

  Returns:
    A ``TrackedRun``.

  Example:
    >>> import jax, optax
    >>> from fedasync_jax import client, delays, rules, scheduler
    >>> from fedasync_jax.theory import least_squares, metrics_fn
    >>> p = least_squares(num_clients=6, examples_per_client=4, dim=2,
    ...                   batch_size=2)
    >>> upd = client.local_update(p.loss, optax.sgd(0.1), batch_size=2,
    ...                           max_examples=4, steps=1)
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(6),
    ...     np.ones(6)), num_updates=20, concurrency=3, seed=0)
    >>> out = track(rules.fedasync(0.5), upd, jnp.zeros(2), p.data, s,
    ...             key=jax.random.key(0), metrics=metrics_fn(p))
    >>> out.arrivals["drift"].shape, int(out.state.version)
    ((20,), 20)
  """
  return track_many(rule, client_update, params, data, [schedule],
                    keys=jnp.stack([key]),
                    hparams=None if hparams is None else [hparams],
                    metrics=metrics, ring_size=ring_size)[0]

