"""The vectorized executor: many clients per compiled call, exact order.

``simulate`` runs a ``plan.Plan`` as a ``lax.scan`` over fixed-shape steps.
Each step trains a wave of clients in one batched call (their start
parameters are gathered from a snapshot buffer), stores the results in
slots, then applies the step's arrivals in arrival order with the rule's
pure ``apply`` (a nested ``lax.scan``), writing the versions that later
clients start from into the snapshot buffer. The result equals the
one-client-at-a-time reference simulator up to float reassociation.

The scan runs in chunks of ``chunk_steps`` steps, one compiled program for
every chunk, so that Python can report progress and evaluate between
chunks. Evaluations at the versions the reference evaluates run inside the
scan (under ``lax.cond``), so the history is exact whatever the chunking.

Batching strategies for the wave (``batching=``): ``"vmap"`` (one batched
program; best on GPU), ``"map"`` (``lax.map``, one client after the other
inside the compiled step, padded clients skipped by ``lax.cond``; best on
this project's 2-core CPU, where XLA:CPU batched matmuls are weak) and
``"map_batched"`` (``lax.map`` with ``batch_size=map_batch_size``).

Example:
  >>> import jax, jax.numpy as jnp, numpy as np, optax
  >>> from fedasync_jax import client, data, delays, rules, scheduler
  >>> ds = data.from_client_arrays([np.ones((2, 1), np.float32)] * 4,
  ...                              [np.ones(2, np.float32)] * 4)
  >>> def loss(w, x, y, m):
  ...   return jnp.sum(m * (x @ w - y) ** 2) / jnp.maximum(m.sum(), 1)
  >>> upd = client.local_update(loss, optax.sgd(0.1), batch_size=2,
  ...                           max_examples=2)
  >>> sched = scheduler.asynchronous(
  ...     delays.delay_model(np.ones(4), np.ones(4)), num_updates=6,
  ...     concurrency=2, seed=0)
  >>> out = simulate(rules.fedasync(0.5), upd, jnp.zeros(1), ds, sched,
  ...                key=jax.random.key(0))
  >>> int(out.state.version)
  6
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.sim import plan as plan_lib
from fedasync_jax.core.client import ClientHParams, ClientRef, ClientUpdate
from fedasync_jax.data import ClientDataset
from fedasync_jax.core.types import ClientResult, RunResult, ServerRule
from fedasync_jax.sim.tasks import eval_points, task_hparams
from fedasync_jax.sim.scheduler import Schedule

BATCHINGS = ("vmap", "map", "map_batched")


def default_batching(backend: Optional[str] = None) -> str:
  """``"vmap"`` on accelerators, ``"map"`` on CPU (measured: see
  benchmarks/README.md)."""
  backend = backend or jax.default_backend()
  return "map" if backend == "cpu" else "vmap"


def _tree_zeros(shape_tree):
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape_tree)


def _stack_zeros(tree, n):
  return jax.tree.map(lambda a: jnp.zeros((n,) + a.shape, a.dtype), tree)


class DeviceData(NamedTuple):
  """Arguments of the compiled chunk that are data, not program: the
  population's examples, client ranges and the evaluation set."""
  x: Any
  y: Any
  offsets: Any
  counts: Any
  eval_data: Any = None


def device_data(data: ClientDataset, eval_fn=None) -> DeviceData:
  """Places the examples on the device once (clients stay index ranges)."""
  return DeviceData(jnp.asarray(data.x), jnp.asarray(data.y),
                    jnp.asarray(data.offsets, jnp.int32),
                    jnp.asarray(data.counts, jnp.int32),
                    getattr(eval_fn, "data", None))


def _call_eval(eval_fn, params, eval_data):
  if eval_data is None:
    return eval_fn(params)
  return eval_fn(params, eval_data)


class Program(NamedTuple):
  """The pure pieces of a simulation.

  ``init(params, num_snaps, num_slots, init_snap, rule_hp) -> carry`` and
  ``run_chunk(carry, steps, key, hp_table, dev, rule_hp) -> (carry,
  outputs)``, a scan over the leading axis of ``steps`` (plan arrays).
  ``rule_hp`` reaches ``make_rule``; ``sweep`` batches it with ``vmap``.
  """
  init: Callable
  run_chunk: Callable


def make_program(make_rule: Callable[[Any], ServerRule], client: ClientUpdate,
                 *, batching: str, map_batch_size: int = 8,
                 eval_fn: Optional[Callable] = None, params_like=None,
                 data_like: Optional[DeviceData] = None,
                 direct: bool = False) -> Program:
  """Builds the pure ``init`` and ``run_chunk`` functions (not jitted).

  With ``direct=True`` the program runs a ``plan.make_direct_plan``: each
  step trains the arriving client and applies its update at once, with no
  result slots (the carry's result buffer is empty).
  """
  if batching not in BATCHINGS:
    raise ValueError(f"batching must be one of {BATCHINGS}, got "
                     f"{batching!r}")

  def train_fn(dev, fields):
    def train_one(p, o, c, k, h):
      res, met = client.update(p, ClientRef(dev.x, dev.y, o, c), k, h)
      # Only what the rule reads is kept for clients in flight.
      return res._replace(**{f: None for f in ("params", "delta")
                             if f not in fields}), met
    return train_one

  def init(params, num_snaps, num_slots, init_snap, rule_hp=None):
    # The carry is donated to the compiled chunks: copy, never alias, the
    # caller's parameters.
    params = jax.tree.map(lambda p: jnp.array(p, copy=True), params)
    rule = make_rule(rule_hp)
    state = rule.init(params)
    snaps = jax.tree.map(
        lambda p: jnp.zeros((num_snaps + 1,) + p.shape, p.dtype)
        .at[init_snap].set(p), params)
    res_shape = jax.eval_shape(
        train_fn(data_like, rule.result_fields), params, jnp.int32(0),
        jnp.int32(0),
        jax.random.key(0), ClientHParams(jnp.float32(1), jnp.float32(0)))[0]
    results = (() if direct else
               _stack_zeros(_tree_zeros(res_shape), num_slots + 1))
    # Every leaf its own buffer: rules may share one array between fields
    # (e.g. zero counters), and the carry is donated.
    return jax.tree.map(lambda x: jnp.array(x, copy=True),
                        (state, snaps, results))

  def batched_wave(train_one, results, xs, keys, hp, snaps, dev):
    """vmap / map_batched: train all ``width`` lanes, scatter the results."""
    start = jax.tree.map(lambda b: b[xs["wave_snap"]], snaps)
    clients = xs["wave_client"]
    args = (start, dev.offsets[clients], dev.counts[clients], keys, hp)
    if batching == "vmap":
      res, met = jax.vmap(train_one)(*args)
    else:
      res, met = jax.lax.map(lambda a: train_one(*a), args,
                             batch_size=map_batch_size)
    results = jax.tree.map(lambda b, r: b.at[xs["wave_slot"]].set(r),
                           results, res)
    return results, met["loss"]

  def looped_wave(train_one, results, xs, keys, hp, snaps, dev):
    """map: train only the valid prefix of the wave, one client at a time,
    writing each result straight into its slot (padding costs nothing)."""
    n_valid = jnp.sum(xs["wave_valid"].astype(jnp.int32))

    def body(j, c):
      results, losses = c
      start = jax.tree.map(lambda b: b[xs["wave_snap"][j]], snaps)
      client_id = xs["wave_client"][j]
      res, met = train_one(start, dev.offsets[client_id],
                           dev.counts[client_id], keys[j],
                           jax.tree.map(lambda a: a[j], hp))
      results = jax.tree.map(lambda b, r: b.at[xs["wave_slot"][j]].set(r),
                             results, res)
      return results, losses.at[j].set(met["loss"])
    loss_dtype = jax.tree.leaves(snaps)[0].dtype
    return jax.lax.fori_loop(
        0, n_valid, body,
        (results, jnp.zeros(xs["wave_valid"].shape, loss_dtype)))

  eval_shape = (jax.eval_shape(lambda p: _call_eval(
      eval_fn, p, getattr(eval_fn, "data", None)), params_like)
      if eval_fn is not None else None)

  def step(carry, xs, key, hp_table, dev, rule):
    state, snaps, results = carry
    tasks = xs["wave_task"]
    keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(tasks)
    hp = jax.tree.map(lambda a: a[tasks], hp_table)
    wave = looped_wave if batching == "map" else batched_wave
    results, train_loss = wave(train_fn(dev, rule.result_fields), results,
                               xs, keys, hp, snaps, dev)
    trash = jax.tree.leaves(snaps)[0].shape[0] - 1
    A = xs["arr_valid"].shape[0]
    n_arr = jnp.sum(xs["arr_valid"].astype(jnp.int32))
    outs = {"applied": jnp.zeros((A,), bool),
            "version": jnp.zeros((A,), jnp.asarray(state.version).dtype)}
    if eval_fn is not None:
      outs["eval"] = jax.tree.map(
          lambda s: jnp.zeros((A,) + s.shape, s.dtype), eval_shape)

    # The step's arrivals are a prefix of its A positions: apply exactly
    # those, in order (padding costs nothing).
    def arrive(j, c):
      state, snaps, outs = c
      r = jax.tree.map(lambda b: b[xs["arr_slot"][j]], results)
      new = rule.apply(state, r, xs["arr_staleness"][j])
      if rule.end_round is not None:
        new = jax.lax.cond(xs["arr_ends_round"][j], rule.end_round,
                           lambda s: s, new)
      snap = xs["arr_snap"][j]
      snaps = jax.lax.cond(
          snap < trash,
          lambda b: jax.tree.map(lambda x, p: x.at[snap].set(p), b,
                                 new.params),
          lambda b: b, snaps)
      outs = dict(outs)
      outs["applied"] = outs["applied"].at[j].set(new.dropped ==
                                                  state.dropped)
      outs["version"] = outs["version"].at[j].set(new.version)
      if eval_fn is not None:
        ev = jax.lax.cond(
            xs["arr_eval"][j],
            lambda p: _call_eval(eval_fn, p, dev.eval_data),
            lambda p: _tree_zeros(eval_shape), new.params)
        outs["eval"] = jax.tree.map(lambda o, v: o.at[j].set(v),
                                    outs["eval"], ev)
      return new, snaps, outs
    state, snaps, outs = jax.lax.fori_loop(0, n_arr, arrive,
                                           (state, snaps, outs))
    outs["train_loss"] = train_loss
    return (state, snaps, results), outs

  def direct_step(carry, xs, key, hp_table, dev, rule):
    """One arrival: train its client (unless dropped), apply, snapshot."""
    state, snaps, results = carry
    trash = jax.tree.leaves(snaps)[0].shape[0] - 1
    task, client_id = xs["wave_task"][0], xs["wave_client"][0]
    train_one = train_fn(dev, rule.result_fields)
    res_shape, met_shape = jax.eval_shape(
        train_one, jax.tree.map(lambda b: b[0], snaps), jnp.int32(0),
        jnp.int32(0), jax.random.key(0),
        jax.tree.map(lambda a: a[0], hp_table))

    def train(_):
      start = jax.tree.map(lambda b: b[xs["wave_snap"][0]], snaps)
      res, met = train_one(start, dev.offsets[client_id],
                           dev.counts[client_id],
                           jax.random.fold_in(key, task),
                           jax.tree.map(lambda a: a[task], hp_table))
      return res, met["loss"]

    def skip(_):  # dropped by the staleness cutoff: the rule discards it
      return _tree_zeros(res_shape), jnp.zeros((), met_shape["loss"].dtype)
    res, loss = jax.lax.cond(xs["wave_valid"][0], train, skip, None)

    def apply(state):
      new = rule.apply(state, res, xs["arr_staleness"][0])
      if rule.end_round is not None:
        new = jax.lax.cond(xs["arr_ends_round"][0], rule.end_round,
                           lambda s: s, new)
      return new
    new = jax.lax.cond(xs["arr_valid"][0], apply, lambda s: s, state)
    snap = xs["arr_snap"][0]
    snaps = jax.lax.cond(
        snap < trash,
        lambda b: jax.tree.map(lambda x, p: x.at[snap].set(p), b,
                               new.params),
        lambda b: b, snaps)
    outs = {"applied": (xs["arr_valid"] & (new.dropped == state.dropped)),
            "version": jnp.reshape(new.version, (1,)),
            "train_loss": jnp.reshape(loss, (1,))}
    if eval_fn is not None:
      ev = jax.lax.cond(
          xs["arr_eval"][0],
          lambda p: _call_eval(eval_fn, p, dev.eval_data),
          lambda p: _tree_zeros(eval_shape), new.params)
      outs["eval"] = jax.tree.map(lambda v: jnp.expand_dims(v, 0), ev)
    return (new, snaps, results), outs

  def run_chunk(carry, steps, key, hp_table, dev, rule_hp=None):
    rule = make_rule(rule_hp)
    body = direct_step if direct else step
    return jax.lax.scan(lambda c, xs: body(c, xs, key, hp_table, dev, rule),
                        carry, steps)

  return Program(init, run_chunk)


class Checkpoint(NamedTuple):
  """The executor's state between two chunks, on the host.

  ``carry_leaves``: the leaves of (server state, snapshot buffer, result
  buffer); ``next_chunk``: the first chunk still to run; ``outputs``: the
  per-step outputs of the chunks already run, concatenated.
  """
  carry_leaves: list
  next_chunk: int
  outputs: dict

  @classmethod
  def capture(cls, carry, next_chunk, outs):
    leaves = [np.asarray(x) for x in jax.device_get(jax.tree.leaves(carry))]
    merged = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
    return cls(leaves, int(next_chunk), merged)

  def restore(self, like):
    """Returns ``(carry, next_chunk, outs)``, checking shapes against
    ``like`` (a freshly initialised carry of the same run)."""
    ref, treedef = jax.tree.flatten(like)
    if len(ref) != len(self.carry_leaves):
      raise ValueError(f"checkpoint has {len(self.carry_leaves)} arrays but "
                       f"this run needs {len(ref)}: it is from another run")
    for a, b in zip(ref, self.carry_leaves):
      if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(f"checkpoint array {b.shape} {b.dtype} does not "
                         f"match this run's {a.shape} {a.dtype}: it is from "
                         f"another run")
    carry = jax.tree.unflatten(treedef, [jnp.asarray(x)
                                         for x in self.carry_leaves])
    return carry, self.next_chunk, [self.outputs]

  def to_bytes(self) -> bytes:
    """Serialises with flax's msgpack serialization."""
    from flax import serialization
    return serialization.msgpack_serialize({
        "carry": {str(i): x for i, x in enumerate(self.carry_leaves)},
        "next_chunk": self.next_chunk, "outputs": self.outputs})

  @classmethod
  def from_bytes(cls, payload: bytes) -> "Checkpoint":
    from flax import serialization
    d = serialization.msgpack_restore(payload)
    carry = [np.asarray(d["carry"][str(i)]) for i in range(len(d["carry"]))]
    return cls(carry, int(d["next_chunk"]), d["outputs"])


def plan_arrays(p: plan_lib.Plan, schedule: Schedule,
                eval_every: Optional[int]) -> dict:
  """The plan's per-step arrays as a dict (with the evaluation flags)."""
  flags = eval_points(schedule.version_after, eval_every)
  arr_eval = flags[p.arr_index] & p.arr_valid if flags.size else \
      np.zeros_like(p.arr_valid)
  return {"wave_task": p.wave_task, "wave_client": p.wave_client,
          "wave_snap": p.wave_snap, "wave_slot": p.wave_slot,
          "wave_valid": p.wave_valid, "arr_slot": p.arr_slot,
          "arr_staleness": p.arr_staleness,
          "arr_ends_round": p.arr_ends_round, "arr_snap": p.arr_snap,
          "arr_valid": p.arr_valid, "arr_eval": arr_eval}


def _check_inputs(schedule, data, width, chunk_steps):
  if schedule.num_clients != data.num_clients:
    raise ValueError(f"schedule has {schedule.num_clients} clients but data "
                     f"has {data.num_clients}")
  if chunk_steps is not None and (int(chunk_steps) != chunk_steps
                                  or chunk_steps < 1):
    raise ValueError(f"chunk_steps must be an integer >= 1, got "
                     f"{chunk_steps!r}")
  if width is not None and (int(width) != width or width < 1):
    raise ValueError(f"width must be an integer >= 1, got {width!r}")


def choose_width(width: Optional[int], arrivals_per_step: Optional[int],
                 batching: str, concurrency: float) -> tuple[int, bool]:
  """``(width, direct)``: the step width, and whether the run takes the
  direct path (one arrival per step, trained and applied at once, no
  result slots: ``plan.make_direct_plan``).

  The direct path is taken for ``width=1`` with one arrival per step, and
  by default with ``"map"`` batching, where wave clients are trained one
  after the other anyway (measured faster on CPU: benchmarks/README.md);
  ``"vmap"`` and ``"map_batched"`` default to ``plan.default_width``.
  """
  if width is None:
    if batching == "map" and arrivals_per_step in (None, 1):
      return 1, True
    width = plan_lib.default_width(concurrency)
  return width, width == 1 and arrivals_per_step in (None, 1)


def _chunks(arrays: dict, chunk_steps: int):
  n = next(iter(arrays.values())).shape[0]
  for i in range(0, n, chunk_steps):
    yield i, {k: v[i:i + chunk_steps] for k, v in arrays.items()}


def assemble(schedule: Schedule, p: plan_lib.Plan, outs: dict,
             eval_every: Optional[int], eval_fn, init_eval):
  """Turns the per-step outputs into the reference's history format.

  ``outs`` may cover only the first steps of the plan (a run stopped early):
  the history then holds the arrivals applied so far.
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
  wv = p.wave_valid[:n_steps]
  loss_of_task[p.wave_task[:n_steps][wv]] = np.asarray(
      outs["train_loss"])[wv]
  a_task = schedule.arrival_task[:n_arr]
  arrivals = {"client": schedule.client[a_task].astype(np.int64),
              "time": schedule.arrival_time[a_task],
              "staleness": schedule.staleness[:n_arr].astype(np.int64),
              "applied": applied, "version": version,
              "train_loss": loss_of_task[a_task]}
  evals = []
  if eval_fn is not None:
    evals.append(init_eval)
    flags = eval_points(schedule.version_after, eval_every)
    ev = {k: np.asarray(v) for k, v in outs["eval"].items()}
    mask = valid & flags[arr_index]
    pos = np.argwhere(mask)
    for i, j in pos[np.argsort(arr_index[mask], kind="stable")]:
      a = int(arr_index[i, j])
      evals.append({"version": int(version[a]),
                    "time": float(arrivals["time"][a]), "arrival": a,
                    "updates": a + 1,
                    **{k: float(v[i, j]) for k, v in ev.items()}})
  participation = np.bincount(arrivals["client"][applied],
                              minlength=schedule.num_clients)
  return arrivals, evals, participation


def simulate(rule: ServerRule, client: ClientUpdate, params,
             data: ClientDataset, schedule: Schedule, *, key,
             hparams: Optional[ClientHParams] = None,
             width: Optional[int] = None,
             arrivals_per_step: Optional[int] = None,
             batching: Optional[str] = None, map_batch_size: int = 8,
             chunk_steps: int = 64, eval_fn: Optional[Callable] = None,
             eval_every: Optional[int] = None,
             progress: Optional[Callable[[dict], None]] = None,
             checkpoint: Optional[Callable[["Checkpoint"], None]] = None,
             resume: Optional["Checkpoint"] = None) -> RunResult:
  """Runs a schedule with the vectorized executor.

  Args:
    rule: the server rule.
    client: the client update.
    params: initial server parameters.
    data: the population's examples (placed on the device once).
    schedule: the events.
    key: PRNG key; task ``k`` trains with ``jax.random.fold_in(key, k)``
      (as in the reference simulator).
    hparams: per-task client hyperparameters (``tasks.task_hparams``).
    width: clients trained per step. Default: 1 with ``"map"`` batching
      (the direct path: ``choose_width``), else ``plan.default_width`` of
      the concurrency.
    arrivals_per_step: arrivals applied per step (default ``2 * width``,
      or 1 on the direct path).
    batching: ``"vmap"``, ``"map"`` or ``"map_batched"`` (default by
      backend: ``default_batching``).
    map_batch_size: the batch size of ``"map_batched"``.
    chunk_steps: plan steps per compiled call.
    eval_fn: jit-traceable ``params -> dict of scalars``; if it has an
      attribute ``data`` (``models.make_evaluator``), it is called as
      ``eval_fn(params, eval_fn.data)`` with the data passed as an argument
      of the compiled program rather than baked into it.
    eval_every: evaluation interval in versions.
    progress: called after every chunk with a dict (``arrivals_done``,
      ``num_arrivals``, ``version``, ``wall_time_s``, ``last_eval``).
    checkpoint: called after every chunk with a ``Checkpoint`` (host
      copies of the carry and the outputs so far); the caller decides
      whether to write it (``Checkpoint.to_bytes``). If it returns True the
      run stops there and the result holds the history so far
      (``stats["stopped_early"]``).
    resume: a ``Checkpoint`` of the same run (same arguments) to continue
      from; the result equals the uninterrupted run's.

  Returns:
    A ``RunResult``; ``stats`` holds the plan shape and ``padding_waste``.
  """
  _check_inputs(schedule, data, width, chunk_steps)
  batching = batching or default_batching()
  width, direct = choose_width(width, arrivals_per_step, batching,
                               schedule.stats.get("realised_concurrency",
                                                  1.0))
  t0 = time.perf_counter()
  p = (plan_lib.make_direct_plan(schedule) if direct else
       plan_lib.make_plan(schedule, width=width,
                          arrivals_per_step=arrivals_per_step))
  waste, real_steps = p.padding_waste, p.num_steps
  p = p.pad_steps(-(-p.num_steps // chunk_steps) * chunk_steps)
  plan_time = time.perf_counter() - t0
  if hparams is None:
    hparams = task_hparams(schedule)
  hp_table = jax.tree.map(jnp.asarray, hparams)
  dev = device_data(data, eval_fn)
  prog = make_program(lambda _: rule, client, batching=batching,
                      map_batch_size=map_batch_size, eval_fn=eval_fn,
                      params_like=params, data_like=dev, direct=direct)
  carry = prog.init(params, p.num_snaps, p.num_slots, p.init_snap)
  first_chunk, outs = 0, []
  if resume is not None:
    carry, first_chunk, outs = resume.restore(carry)
  init_eval = None
  if eval_fn is not None:
    init_eval = {"version": 0, "time": 0.0, "arrival": -1, "updates": 0,
                 **{k: float(v) for k, v in jax.jit(_call_eval, static_argnums=0)(
                     eval_fn, params, dev.eval_data).items()}}
  run_chunk = jax.jit(prog.run_chunk, donate_argnums=0)
  arrays = plan_arrays(p, schedule, eval_every)
  done = int(arrays["arr_valid"][:first_chunk * chunk_steps].sum())
  last_eval = init_eval
  for i, chunk in _chunks(arrays, chunk_steps):
    if i < first_chunk * chunk_steps:
      continue
    carry, out = run_chunk(carry, chunk, key, hp_table, dev)
    outs.append(jax.device_get(out))
    stop = False
    if checkpoint is not None:
      stop = bool(checkpoint(Checkpoint.capture(carry, i // chunk_steps + 1,
                                                outs)))
    if progress is not None:
      done += int(chunk["arr_valid"].sum())
      if eval_fn is not None and chunk["arr_eval"].any():
        ev = outs[-1]["eval"]
        ii, jj = np.argwhere(chunk["arr_eval"])[-1]
        last_eval = {k: float(v[ii, jj]) for k, v in ev.items()}
      progress({"arrivals_done": done,
                "num_arrivals": schedule.num_arrivals,
                "version": int(outs[-1]["version"].max()),
                "wall_time_s": time.perf_counter() - t0,
                "last_eval": last_eval})
    if stop:
      break
  state = jax.block_until_ready(carry[0])
  wall = time.perf_counter() - t0
  merged = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
  arrivals, evals, participation = assemble(schedule, p, merged, eval_every,
                                            eval_fn, init_eval)
  stats = {"wall_time_s": wall, "plan_time_s": plan_time,
           "num_arrivals": schedule.num_arrivals,
           "updates_per_s": schedule.num_arrivals / max(wall, 1e-9),
           "num_steps": real_steps, "padded_steps": p.num_steps,
           "width": p.width,
           "arrivals_per_step": p.arrivals_per_step,
           "result_slots": p.num_slots, "snapshot_slots": p.num_snaps,
           "padding_waste": waste, "batching": batching, "direct": direct,
           "trained_clients": int(p.wave_valid.sum()),
           "stopped_early": len(arrivals["client"]) < schedule.num_arrivals}
  return RunResult(state, arrivals, evals, participation, stats)
