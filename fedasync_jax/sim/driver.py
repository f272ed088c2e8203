"""The host driver shared by ``executor.simulate`` and ``sweep.sweep``.

A run of ``M`` members (one for ``simulate``) goes through the same steps:
choose the strategy and width once; plan each distinct schedule; pad the
plans to one shape (a whole number of chunks); evaluate the initial
parameters; run the compiled chunks, reporting progress and handing out
checkpoints between them; and assemble each member's history in the
reference simulator's format. Only how the program is batched differs:
``simulate`` runs it as is, a sweep ``vmap``s it over the member axis.

Example:
  >>> import numpy as np
  >>> from fedasync_jax import delays, scheduler
  >>> s = scheduler.asynchronous(delays.delay_model(np.ones(4), np.ones(4)),
  ...                            num_updates=6, concurrency=2, seed=0)
  >>> from fedasync_jax.sim import strategies
  >>> plans = make_plans([s, s], strategies.Direct(), width=1,
  ...                    arrivals_per_step=None, chunk_steps=4)
  >>> plans.num_steps, len(plans.members), plans.shared
  (8, 2, True)
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.types import RunResult, evaluation, metric_columns
from fedasync_jax.sim import lanes, xla_cpu
from fedasync_jax.sim import plan as plan_lib
from fedasync_jax.sim.checkpoint import (  # noqa: F401  (driver.Checkpoint)
    Checkpoint, merge as _merge, outputs_dict as _outputs_dict)
from fedasync_jax.sim.program import evaluate
from fedasync_jax.sim.scheduler import Schedule
from fedasync_jax.sim.strategies import NO_LANE
from fedasync_jax.sim.contract import check_followed
from fedasync_jax.sim.tasks import eval_points


def program_options(strategy, mesh=None) -> tuple:
  """XLA options for a run's compiled program, as sorted ``(name, value)``
  pairs (hashable, for the program cache's key; ``dict(...)`` of them is
  ``jax.jit``'s ``compiler_options``): on the CPU, Eigen's convolutions
  when the program has two or more cores per device
  (``xla_cpu.compiler_options``). The devices it runs on at once are the
  ``"devices"`` strategy's and the sweep's mesh.

  Example:
    >>> from fedasync_jax.sim import strategies
    >>> isinstance(program_options(strategies.Direct()), tuple)
    True
  """
  devices = getattr(strategy, "num_devices", 1)
  if mesh is not None:
    devices = max(devices, int(mesh.size))
  return tuple(sorted(xla_cpu.compiler_options(devices=devices).items()))


def jit_program(fn, options: tuple, **jit_kwargs):
  """``jax.jit`` of a run's program ``fn`` with its XLA ``options`` (from
  :func:`program_options`), traced so that the models' convolutions see
  them (``xla_cpu.traced_with``: their form suits the convolution path the
  options choose).

  Example:
    >>> import jax.numpy as jnp
    >>> jit_program(lambda x: x + 1, ())(jnp.ones(2)).tolist()
    [2.0, 2.0]
  """
  return jax.jit(xla_cpu.traced_with(fn, dict(options)),
                 compiler_options=dict(options) or None, **jit_kwargs)


class Plans(NamedTuple):
  """The members' plans, padded to one shape.

  ``members``: one ``Plan`` per member (members that share a schedule share
  the object); ``real``: the unpadded plan per member (for stats);
  ``shared``: whether every member runs the same schedule (the plan then
  enters the program once, unbatched); ``num_steps``: padded step count
  (a multiple of the chunk); ``num_snaps``, ``num_slots``: buffer sizes.
  """
  members: list
  real: list
  shared: bool
  num_steps: int
  num_snaps: int
  num_slots: int

  @property
  def like(self) -> plan_lib.Plan:
    """A plan with the common buffer sizes (for ``Program.init``)."""
    return self.members[0]._replace(num_snaps=self.num_snaps,
                                    num_slots=self.num_slots)


def bucket(n: int) -> int:
  """``n`` rounded up to the next of 0, 4, 8, 10, 12, 14, 16, 20, 24, 28,
  32, 40...: buffer sizes that vary a little from schedule to schedule
  (snapshot and result slots, task counts) land on a few values, so one
  compiled program serves many schedules (buffers at most 25% larger, or
  a few slots for small ones).

  Example:
    >>> [bucket(n) for n in (0, 3, 5, 9, 11, 13, 17, 100)]
    [0, 4, 8, 10, 12, 14, 20, 112]
  """
  n = int(n)
  if n <= 8:
    return 0 if n <= 0 else 4 if n <= 4 else 8
  base = 1 << (n.bit_length() - 1)
  for step in (base // 4, base // 2, 3 * base // 4, base):
    if base + step >= n:
      return base + step
  return 2 * base  # pragma: no cover


def refill_layout(strategy, client, data, schedules, width: int,
                  width_given: bool):
  """``(steps_of_client, width)`` of a refill plan: the local steps of
  each client's task and, unless the caller chose a width, as many lanes
  as the schedules' parallelism (``lanes.critical_path``: more lanes
  could not all be busy, fewer would lengthen the run); ``(None, width)``
  for other strategies.

  Raises:
    ValueError: ``batching='refill'`` with a client update that has no
      lane machine.
  """
  if not strategy.refill:
    return None, width
  if client.lane is None:
    raise ValueError(NO_LANE)
  steps = client.lane.steps_of(np.asarray(data.counts))
  if not width_given:
    par = max(lanes.critical_path(s, steps)["parallelism"]
              for s in schedules)
    width = int(min(256, max(1, np.ceil(par)))) if np.isfinite(par) else 1
  return steps, width


def make_plans(schedules: Sequence[Schedule], strategy, *, width: int,
               arrivals_per_step: Optional[int], chunk_steps: int,
               steps_of_client=None) -> Plans:
  """Plans each distinct schedule once and pads all to one shape (buffer
  sizes rounded up by ``bucket``); ``steps_of_client`` (``lane_steps``)
  for the refill strategy."""
  if strategy.refill and steps_of_client is None:
    raise ValueError("batching='refill' is not available here: it plans "
                     "with the clients' local step counts (use "
                     "executor.simulate or sweep.sweep)")
  by_id, real = {}, []
  for s in schedules:
    if id(s) not in by_id:
      by_id[id(s)] = (plan_lib.make_direct_plan(s) if strategy.direct else
                      plan_lib.make_plan(s, width=width,
                                         arrivals_per_step=arrivals_per_step,
                                         steps_of_client=steps_of_client))
    real.append(by_id[id(s)])
  n_steps = max(p.num_steps for p in by_id.values())
  n_steps = max(1, -(-n_steps // chunk_steps)) * chunk_steps
  num_snaps = bucket(max(p.num_snaps for p in by_id.values()))
  num_slots = bucket(max(p.num_slots for p in by_id.values()))
  # Trash slots must agree across members: re-point each plan's trash
  # (its own num_snaps / num_slots) to the common one.
  padded = {k: _retrash(p.pad_steps(n_steps), num_snaps, num_slots)
            for k, p in by_id.items()}
  return Plans([padded[id(s)] for s in schedules], real, len(by_id) == 1,
               n_steps, num_snaps, num_slots)


def _retrash(p: plan_lib.Plan, num_snaps: int, num_slots: int):
  snap = lambda a: np.where(a == p.num_snaps, num_snaps, a).astype(a.dtype)  # noqa: E731
  slot = lambda a: np.where(a == p.num_slots, num_slots, a).astype(a.dtype)  # noqa: E731
  return p._replace(wave_snap=snap(p.wave_snap), arr_snap=snap(p.arr_snap),
                    wave_slot=slot(p.wave_slot), arr_slot=slot(p.arr_slot),
                    num_snaps=num_snaps, num_slots=num_slots)


def member_steps(plans: Plans, schedules: Sequence[Schedule],
                 eval_every: Optional[int]) -> plan_lib.Steps:
  """Every member's ``Steps``, stacked on a leading member axis."""
  each = [plan_lib.steps_of(p, eval_points(s.version_after, eval_every))
          for p, s in zip(plans.members, schedules)]
  return jax.tree.map(lambda *xs: np.stack(xs), *each)


def steps_for(plans: Plans, schedules: Sequence[Schedule],
              eval_every: Optional[int]):
  """The program's ``Steps`` and their member axes (``in_axes`` of a
  ``vmap``): one plan's, unbatched, when all members share a schedule;
  else stacked over members, except ``arr_eval``, which stays unbatched as
  the union of the members' evaluation points. Every condition of the
  compiled step then stays a condition under the member ``vmap`` (a
  batched one would run both branches for every member at every step);
  a member that needs no evaluation at a point just ignores it.
  """
  if plans.shared:
    steps = plan_lib.steps_of(plans.members[0], eval_points(
        schedules[0].version_after, eval_every))
    return steps, jax.tree.map(lambda _: None, steps)
  steps = member_steps(plans, schedules, eval_every)
  steps = steps._replace(arr_eval=np.any(steps.arr_eval, axis=0))
  axes = jax.tree.map(lambda _: 0, steps)._replace(arr_eval=None)
  return steps, axes


def initial_eval(eval_fn, params, eval_data=None, *, version: int = 0,
                 simulated_time: float = 0.0, client_updates: int = 0,
                 arrivals: Optional[dict] = None, since: int = 0) -> dict:
  """The evaluation of ``params`` as a history entry (``types.evaluation``;
  the keywords are its arguments): by default the initial parameters'
  (version 0, no update yet)."""
  ev = jax.jit(evaluate, static_argnums=0)(eval_fn, params, eval_data)
  return evaluation(version, simulated_time, client_updates, ev, arrivals,
                    since)


def assemble(schedule: Schedule, p: plan_lib.Plan, outs: dict,
             eval_every: Optional[int], eval_fn, init_eval):
  """Turns one member's per-step outputs into the reference's history.

  ``outs`` may cover only the first steps of the plan (a run stopped early):
  the history then holds the arrivals applied so far.

  Returns:
    ``(arrivals, evals, participation)`` as in ``RunResult``.
  """
  n_steps = np.asarray(outs["applied"]).shape[0]
  valid = p.arr_valid[:n_steps]
  arr_index = p.arr_index[:n_steps]
  idx = arr_index[valid]
  n_arr = int(valid.sum())
  applied = np.zeros(n_arr, bool)
  applied[idx] = np.asarray(outs["applied"])[valid]
  version = np.zeros(n_arr, np.int64)
  version[idx] = np.asarray(outs["version"])[valid]
  loss_of_task = np.full(schedule.num_tasks, np.nan)
  if p.lane_done is not None:  # a lane's loss is final where it ends
    done = p.lane_done[:n_steps]
    loss_of_task[done[done >= 0]] = np.asarray(outs["train_loss"])[done >= 0]
  else:
    wv = p.wave_valid[:n_steps]
    loss_of_task[p.wave_task[:n_steps][wv]] = np.asarray(
        outs["train_loss"])[wv]
  a_task = schedule.arrival_task[:n_arr]
  arrivals = {"client": schedule.client[a_task].astype(np.int64),
              "simulated_time": schedule.arrival_time[a_task],
              "staleness": schedule.staleness[:n_arr].astype(np.int64),
              "applied": applied, "version": version,
              "train_loss": loss_of_task[a_task]}
  evals = []
  if eval_fn is not None:
    evals.append(init_eval)
    flags = eval_points(schedule.version_after, eval_every)
    ev = {k: np.asarray(v) for k, v in outs["eval"].items()}
    # (no arrivals at all: a FedAvg run whose every round missed its
    # deadline, where the padding's index 0 points nowhere)
    mask = valid & (flags[arr_index] if flags.size else False)
    pos = np.argwhere(mask)
    for i, j in pos[np.argsort(arr_index[mask], kind="stable")]:
      a = int(arr_index[i, j])
      evals.append(evaluation(
          version[a], arrivals["simulated_time"][a], a + 1,
          {k: v[i, j] for k, v in ev.items()}, arrivals,
          since=evals[-1]["client_updates"]))
  participation = np.bincount(arrivals["client"][applied],
                              minlength=schedule.num_clients)
  return arrivals, evals, participation


class Loop(NamedTuple):
  """How the driver calls the compiled chunk and reads its outputs.

  ``run_chunk(carry, chunk) -> (carry, StepOutputs)`` (jitted, with every
  other argument bound); ``members``: the number of members when outputs
  have a leading member axis (a sweep), else ``None``; ``axes``: the member
  axis of each field of ``steps`` (``None``: shared by all members).
  """
  run_chunk: Callable
  members: Optional[int]
  axes: Any


def _slice_steps(steps, axes, start: int, stop: int):
  return jax.tree.map(
      lambda a, ax: np.take(a, range(start, stop), axis=1 if ax == 0 else 0),
      steps, axes)


def run_loop(loop: Loop, carry, steps: plan_lib.Steps, *, chunk_steps: int,
             num_arrivals: int, first_chunk: int = 0, outs=None,
             progress: Optional[Callable[[dict], None]] = None,
             checkpoint: Optional[Callable[[Checkpoint], Any]] = None,
             last_eval: Optional[dict] = None, t0: Optional[float] = None,
             run_digest: str = "", member_evals: Optional[list] = None):
  """Runs the chunks from ``first_chunk`` on.

  Calls ``progress(dict)`` after every chunk with ``arrivals_done``,
  ``num_arrivals``, ``version`` (largest so far), ``wall_time_s`` and
  ``last_eval`` (the latest evaluation, of member 0 in a sweep: its
  ``test_<name>`` metrics, or the whole history entry for the one passed
  in, e.g. the initial evaluation's with ``client_updates`` 0; after a
  resume, the latest in the resumed outputs until the run evaluates) and,
  for a sweep, ``members``: one ``{"arrivals_done", "last_eval"}`` dict
  per member (its own arrivals and latest evaluation; before a member
  evaluates, its entry of ``member_evals``, e.g. its initial evaluation);
  calls ``checkpoint(Checkpoint)`` after every chunk (stamped with
  ``run_digest``) and stops when it returns True.

  Returns:
    ``(carry, outs)``: the final carry and the per-step outputs (dicts, one
    per chunk run, after those of a resumed checkpoint).
  """
  t0 = time.perf_counter() if t0 is None else t0
  out_axis = 0 if loop.members is None else 1
  valid_axis = 1 if loop.axes.arr_valid == 0 else 0
  valid = np.asarray(steps.arr_valid)
  n_steps = valid.shape[valid_axis]
  outs = list(outs or [])
  # Arrivals done per member (one entry for a single run).
  done = _per_member(np.take(valid, range(first_chunk * chunk_steps),
                             axis=valid_axis), loop)
  latest = (list(member_evals) if member_evals is not None else
            [last_eval] + [None] * ((loop.members or 1) - 1))
  if outs and first_chunk > 0:  # resumed: the last evaluations before it
    _check_resumed_steps(outs, out_axis, min(first_chunk * chunk_steps,
                                             n_steps), chunk_steps)
    before = _slice_steps(steps, loop.axes, 0, first_chunk * chunk_steps)
    latest = [e or old for e, old in zip(
        _chunk_evals(outs[-1], before, loop, np.zeros_like(done)), latest)]
  for i in range(first_chunk * chunk_steps, n_steps, chunk_steps):
    chunk = _slice_steps(steps, loop.axes, i, min(i + chunk_steps, n_steps))
    carry, out = loop.run_chunk(carry, chunk)
    outs.append(_outputs_dict(jax.device_get(out)))
    stop = False
    if checkpoint is not None:
      stop = bool(checkpoint(Checkpoint.capture(
          carry, i // chunk_steps + 1, outs, out_axis, run_digest)))
    if progress is not None:
      latest = [e or old for e, old in zip(
          _chunk_evals(outs[-1], chunk, loop, done), latest)]
      done = done + _per_member(chunk.arr_valid, loop)
      info = {"arrivals_done": int(done.sum()),
              "num_arrivals": num_arrivals,
              "version": int(np.max(outs[-1]["version"])),
              "wall_time_s": time.perf_counter() - t0,
              "last_eval": latest[0]}
      if loop.members is not None:
        info["members"] = [{"arrivals_done": int(d), "last_eval": e}
                           for d, e in zip(done, latest)]
      progress(info)
    if stop:
      break
  return carry, outs


def _check_resumed_steps(outs, out_axis: int, expected: int,
                         chunk_steps: int) -> None:
  """A resumed checkpoint must hold the steps its chunks of this call's
  ``chunk_steps`` ran (another ``chunk_steps`` failed with an IndexError)."""
  held = sum(int(np.shape(jax.tree.leaves(o)[0])[out_axis]) for o in outs)
  if held != expected:
    raise ValueError(f"resume: the checkpoint holds {held} plan steps, not "
                     f"the {expected} of its chunks at chunk_steps="
                     f"{chunk_steps}: it was written with other arguments "
                     f"(chunk_steps, schedule, width); resume with the "
                     f"run's own")


def _per_member(arr_valid, loop: Loop) -> np.ndarray:
  """Valid arrivals per member, ``(M,)`` (``(1,)`` for a single run); a
  plan shared by the members counts for each."""
  a = np.asarray(arr_valid)
  if loop.members is not None and loop.axes.arr_valid == 0:
    return a.reshape(a.shape[0], -1).sum(axis=1).astype(np.int64)
  return np.full(loop.members or 1, int(a.sum()), np.int64)


def _chunk_evals(out: dict, chunk: plan_lib.Steps, loop: Loop,
                 done_before: np.ndarray) -> list:
  """Each member's last evaluation in the chunk (its ``test_<name>``
  metrics and ``client_updates``, the arrivals it follows), or ``None``
  where it made none (one entry for a single run); ``done_before``: each
  member's arrivals before the chunk."""
  members = loop.members or 1
  if "eval" not in out:
    return [None] * members
  flags = np.asarray(chunk.arr_eval)
  valid = np.asarray(chunk.arr_valid)
  ev = out["eval"]
  if loop.members is None:  # no member axis: add one
    ev = jax.tree.map(lambda v: np.asarray(v)[None], ev)
  shared = loop.members is None or loop.axes.arr_eval != 0
  own_valid = loop.members is not None and loop.axes.arr_valid == 0
  at = _last_flag(flags) if shared else None
  found = []
  for m in range(members):
    ij = at if shared else _last_flag(flags[m])
    if ij is None:
      found.append(None)
      continue
    v = (valid[m] if own_valid else valid).reshape(-1)
    upto = ij[0] * flags.shape[-1] + ij[1] + 1  # (step, slot) flattened
    found.append({**metric_columns(
        {k: np.asarray(v_)[(m,) + ij] for k, v_ in ev.items()}),
        "client_updates": int(done_before[m]) + int(v[:upto].sum())})
  return found


def _last_flag(flags):
  """The ``(step, slot)`` of the last set flag, or ``None``."""
  if not flags.any():
    return None
  i, j = np.argwhere(flags)[-1]
  return int(i), int(j)


def merged_outputs(outs: list, batched: bool) -> dict:
  """The per-chunk outputs concatenated along the step axis."""
  return _merge(outs, 1 if batched else 0)


def check_chunk_steps(chunk_steps) -> int:
  """``chunk_steps`` as an integer ``>= 1`` (or a clear error)."""
  return checks.integer("chunk_steps", chunk_steps, low=1)


def results_for(schedules, plans: Plans, member_outs: list, states: list, *,
                eval_every, eval_fn, init_evals, stats: Callable[[int], dict]
                ) -> list:
  """One ``RunResult`` per member from its outputs and final state."""
  out = []
  for m, s in enumerate(schedules):
    arrivals, evals, participation = assemble(
        s, plans.members[m], member_outs[m], eval_every, eval_fn,
        init_evals[m])
    check_followed(s, arrivals,
                   where=f"member {m}: " if len(schedules) > 1 else "")
    st = stats(m)
    st["stopped_early"] = len(arrivals["client"]) < s.num_arrivals
    out.append(RunResult(states[m], arrivals, evals, participation, st))
  return out
