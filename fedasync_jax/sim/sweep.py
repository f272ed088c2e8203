"""Sweeps: one compiled program over a grid of configurations.

A sweep runs ``M`` members (hyperparameter settings and seeds) of the same
simulation as ONE compiled program: the executor's chunk is ``vmap``-ed over
the member axis. Rule hyperparameters (alpha, staleness exponents, server
learning rates) reach the rule through ``make_rule(hp)``, called inside the
trace, so they may be arrays; client learning rates scale the per-task
``lr_scale``; seeds are PRNG keys (and, optionally, different schedules,
padded to one plan shape). Every member equals its own ``executor.simulate``
run up to float reassociation.

With ``mesh=`` the member axis is sharded over the mesh's devices
(``jax.sharding.NamedSharding``): on several GPUs, or across hosts after
``jax.distributed.initialize()`` (JAX's own runtime is the distributed
engine; build the mesh from ``jax.devices()``, which then lists every
host's devices).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from fedasync_jax import rules, staleness
  >>> grid = {"alpha": jnp.array([0.3, 0.6]), "a": jnp.array([0.5, 1.0])}
  >>> make_rule = lambda hp: rules.fedasync(
  ...     hp["alpha"], staleness.polynomial(hp["a"]))
  >>> # outs = sweep(make_rule, grid, update, params, ds, sched,
  >>> #              keys=jax.random.split(jax.random.key(0), 2))
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.sim import executor
from fedasync_jax.sim import plan as plan_lib
from fedasync_jax.core.client import ClientHParams, ClientUpdate
from fedasync_jax.data import ClientDataset
from fedasync_jax.core.types import RunResult, ServerRule
from fedasync_jax.sim.tasks import task_hparams
from fedasync_jax.sim.scheduler import Schedule


def _num_members(rule_hparams) -> int:
  leaves = jax.tree.leaves(rule_hparams)
  if not leaves:
    raise ValueError("rule_hparams must hold at least one array with the "
                     "member axis first")
  sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
  if len(sizes) != 1 or -1 in sizes:
    raise ValueError(f"every leaf of rule_hparams must have the same leading "
                     f"(member) axis, got sizes {sorted(sizes)}")
  return sizes.pop()


def member_keys(keys, num_members: int):
  """``(M,)`` PRNG keys: ``keys`` as given, or one key repeated."""
  keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
  if keys.ndim == 0:
    keys = jnp.stack([keys] * num_members)
  if keys.shape[0] != num_members:
    raise ValueError(f"keys must hold {num_members} keys (one per member), "
                     f"got {keys.shape[0]}")
  return keys


def _pad_tasks(hp: ClientHParams, n: int) -> ClientHParams:
  return jax.tree.map(
      lambda a: np.concatenate([np.asarray(a), np.zeros(
          n - np.shape(a)[0], np.asarray(a).dtype)]), hp)


def sweep(make_rule: Callable[[Any], ServerRule], rule_hparams,
          client: ClientUpdate, params, data: ClientDataset,
          schedules: Union[Schedule, Sequence[Schedule]], *, keys,
          hparams: Optional[Union[ClientHParams, Sequence[ClientHParams]]]
          = None, client_lr_scale=None, width: Optional[int] = None,
          arrivals_per_step: Optional[int] = None,
          batching: Optional[str] = None, map_batch_size: int = 8,
          chunk_steps: int = 64, eval_fn: Optional[Callable] = None,
          eval_every: Optional[int] = None, member_params: bool = False,
          mesh=None,
          mesh_axis: Optional[str] = None,
          progress: Optional[Callable[[dict], None]] = None
          ) -> list[RunResult]:
  """Runs ``M`` configurations as one compiled program.

  Args:
    make_rule: ``hp -> ServerRule``, where ``hp`` is one member's slice of
      ``rule_hparams`` (traced inside the compiled program).
    rule_hparams: a pytree of arrays whose leading axis is the member axis.
    client: the client update (shared by all members).
    params: initial parameters, shared by all members, or with a leading
      member axis when ``member_params=True`` (e.g. one init per seed).
    data: the population's examples (shared).
    schedules: one ``Schedule`` for all members, or one per member.
    keys: ``(M,)`` PRNG keys (one per member) or a single key for all.
    hparams: per-task client hyperparameters, shared or one per member.
    client_lr_scale: ``(M,)`` factors on every member's client rate.
    width, arrivals_per_step, batching, map_batch_size, chunk_steps,
    eval_fn, eval_every, progress: as in ``executor.simulate``.
    member_params: whether ``params`` has a leading member axis.
    mesh: a ``jax.sharding.Mesh`` to shard the member axis over, with
      automatic axis types, e.g.
      ``jax.sharding.Mesh(np.array(jax.devices()), ("members",))``.
    mesh_axis: the mesh axis name (default: the mesh's first axis).

  Returns:
    One ``RunResult`` per member, in order.
  """
  M = _num_members(rule_hparams)
  scheds = ([schedules] * M if isinstance(schedules, Schedule)
            else list(schedules))
  if len(scheds) != M:
    raise ValueError(f"schedules must be one Schedule or {M} of them, got "
                     f"{len(scheds)}")
  if chunk_steps < 1 or int(chunk_steps) != chunk_steps:
    raise ValueError(f"chunk_steps must be an integer >= 1, got "
                     f"{chunk_steps!r}")
  keys = member_keys(keys, M)
  if hparams is None or isinstance(hparams, ClientHParams):
    hps = [hparams if hparams is not None else task_hparams(s)
           for s in scheds]
  else:
    hps = list(hparams)
    if len(hps) != M:
      raise ValueError(f"hparams must be one ClientHParams or {M}, got "
                       f"{len(hps)}")
  if client_lr_scale is not None:
    scale = np.asarray(client_lr_scale, np.float32).reshape(-1)
    if scale.shape != (M,):
      raise ValueError(f"client_lr_scale must have shape ({M},), got "
                       f"{scale.shape}")
    hps = [h._replace(lr_scale=np.asarray(h.lr_scale) * s)
           for h, s in zip(hps, scale)]
  for s in scheds:
    if s.num_clients != data.num_clients:
      raise ValueError(f"a schedule has {s.num_clients} clients but data "
                       f"has {data.num_clients}")
  t0 = time.perf_counter()
  batching = batching or executor.default_batching()
  width, direct = executor.choose_width(
      width, arrivals_per_step, batching,
      max(s.stats.get("realised_concurrency", 1) for s in scheds))
  plans = {}
  for s in scheds:
    if id(s) not in plans:
      plans[id(s)] = (plan_lib.make_direct_plan(s) if direct else
                      plan_lib.make_plan(s, width=width,
                                         arrivals_per_step=arrivals_per_step))
  n_steps = max(p.num_steps for p in plans.values())
  n_steps = -(-n_steps // chunk_steps) * chunk_steps
  num_slots = max(p.num_slots for p in plans.values())
  num_snaps = max(p.num_snaps for p in plans.values())
  member_plans = [plans[id(s)].pad_steps(n_steps) for s in scheds]
  # One schedule for all members: the plan is passed once, unbatched, so
  # its loop bounds and conditions (padding, evaluation points) stay
  # conditions under the member vmap instead of becoming selects that run
  # both branches.
  shared = len(plans) == 1
  if shared:
    stacked = executor.plan_arrays(member_plans[0], scheds[0], eval_every)
  else:
    arrays = [executor.plan_arrays(p, s, eval_every)
              for p, s in zip(member_plans, scheds)]
    stacked = {k: np.stack([a[k] for a in arrays]) for k in arrays[0]}
  n_tasks = max(s.num_tasks for s in scheds)
  hp_table = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)),
                          *[_pad_tasks(h, n_tasks) for h in hps])
  init_snaps = jnp.asarray([p.init_snap for p in member_plans], jnp.int32)
  rule_hp = jax.tree.map(jnp.asarray, rule_hparams)

  one_params = (jax.tree.map(lambda a: a[0], params) if member_params
                else params)
  dev = executor.device_data(data, eval_fn)
  prog = executor.make_program(make_rule, client, batching=batching,
                               map_batch_size=map_batch_size,
                               eval_fn=eval_fn, params_like=one_params,
                               data_like=dev, direct=direct)
  init = jax.jit(jax.vmap(
      lambda p, snap, hp: prog.init(p, num_snaps, num_slots, snap, hp),
      in_axes=(0 if member_params else None, 0, 0)))
  run = jax.vmap(prog.run_chunk,
                 in_axes=(0, None if shared else 0, 0, 0, None, 0))

  put = lambda x: x  # noqa: E731
  if mesh is not None:
    axis = mesh_axis or mesh.axis_names[0]
    n_dev = mesh.shape[axis]
    if M % n_dev:
      raise ValueError(f"the number of members ({M}) must be a multiple of "
                       f"the mesh axis {axis!r} size {n_dev}")
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    put = lambda x: jax.device_put(x, shard)  # noqa: E731
    dev = jax.device_put(dev, repl)
    keys, hp_table, init_snaps, rule_hp = put((keys, hp_table, init_snaps,
                                               rule_hp))
  carry = put(init(params, init_snaps, rule_hp))
  run_chunk = jax.jit(run, donate_argnums=0)
  outs = []
  done = 0
  for i in range(0, n_steps, chunk_steps):
    if shared:
      chunk = {k: v[i:i + chunk_steps] for k, v in stacked.items()}
    else:
      chunk = put({k: v[:, i:i + chunk_steps] for k, v in stacked.items()})
    carry, out = run_chunk(carry, chunk, keys, hp_table, dev, rule_hp)
    outs.append(jax.device_get(out))
    if progress is not None:
      done += int(chunk["arr_valid"].sum()) * (M if shared else 1)
      progress({"arrivals_done": done,
                "num_arrivals": sum(s.num_arrivals for s in scheds),
                "wall_time_s": time.perf_counter() - t0})
  state = jax.block_until_ready(carry[0])
  wall = time.perf_counter() - t0
  merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *outs)
  init_evals = [None] * M
  if eval_fn is not None:
    ev_jit = jax.jit(executor._call_eval, static_argnums=0)
    eval_data = getattr(eval_fn, "data", None)
    for m in range(M):
      p_m = (jax.tree.map(lambda a: a[m], params) if member_params
             else params)
      if m == 0 or member_params:
        ev0 = ev_jit(eval_fn, p_m, eval_data)
      init_evals[m] = {"version": 0, "time": 0.0, "arrival": -1,
                       "updates": 0, **{k: float(v) for k, v in ev0.items()}}
  results = []
  for m in range(M):
    out_m = jax.tree.map(lambda a: a[m], merged)
    arrivals, evals, participation = executor.assemble(
        scheds[m], member_plans[m], out_m, eval_every, eval_fn,
        init_evals[m])
    stats = {"wall_time_s": wall, "member": m, "members": M,
             "num_arrivals": scheds[m].num_arrivals,
             "updates_per_s": sum(s.num_arrivals for s in scheds) / wall,
             "padding_waste": plans[id(scheds[m])].padding_waste,
             "width": width, "batching": batching, "direct": direct}
    results.append(RunResult(jax.tree.map(lambda a: np.asarray(a[m]), state),
                             arrivals, evals, participation, stats))
  return results
