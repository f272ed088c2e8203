"""Sweeps: one compiled program over a grid of configurations.

A sweep runs ``M`` members (hyperparameter settings and seeds) of the same
simulation as ONE compiled program: the executor's chunk runs over the
member axis, with ``lax.map`` (``members="map"``, one member after the
other: the CPU default) or ``vmap`` (``members="vmap"``: the default on
accelerators). Rule hyperparameters (alpha, staleness exponents, server
learning rates) reach the rule through ``make_rule(hp)``, called inside the
trace, so they may be arrays; client learning rates scale the per-task
``lr_scale``; seeds are PRNG keys (and, optionally, different schedules,
padded to one plan shape). Every member equals its own ``executor.simulate``
run: bit for bit with ``"map"``, up to float reassociation with ``"vmap"``.
Members are paired, not crossed: ``rule_hparams`` holds one value per
member along its leading axis (build a Cartesian grid with
``itertools.product`` or ``jnp.meshgrid``, flattened).

With ``mesh=`` the member axis is sharded over the mesh's devices
(``jax.sharding.NamedSharding``): on several GPUs, or across hosts after
``jax.distributed.initialize()`` (JAX's own runtime is the distributed
engine; build the mesh from ``jax.devices()``, which then lists every
host's devices). With ``members="map"`` each device runs its block of
members one after the other (``shard_map``): on a CPU split into one
device per core (``jax.config.update("jax_num_cpu_devices", 2)`` before
JAX starts) the cores train different members at once.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from fedasync_jax import rules, staleness
  >>> import numpy as np, optax
  >>> from fedasync_jax import (client, delays, models, rules, scheduler,
  ...                           staleness, synthetic)
  >>> fed = synthetic.synthetic(1.0, 1.0, num_clients=20, seed=0)
  >>> model = models.logistic_regression(60, 10)
  >>> update = client.local_update(model.loss, optax.sgd(0.01),
  ...     batch_size=10, max_examples=fed.train.max_count, epochs=1)
  >>> sched = scheduler.asynchronous(delays.delay_model(
  ...     np.ones(20), fed.train.counts.astype(float)), num_updates=40,
  ...     concurrency=4, seed=0)
  >>> members = {"alpha": jnp.array([0.3, 0.6]),  # two members, paired
  ...            "a": jnp.array([0.5, 1.0])}
  >>> make_rule = lambda hp: rules.fedasync(
  ...     hp["alpha"], staleness.polynomial(hp["a"]))
  >>> outs = sweep(make_rule, members, update,
  ...              model.init(jax.random.key(0)), fed.train, sched,
  ...              keys=jax.random.split(jax.random.key(0), 2))
  >>> len(outs), int(outs[1].state.version)
  (2, 40)
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.client import ClientHParams, ClientUpdate
from fedasync_jax.core.types import RunResult, ServerRule
from fedasync_jax.data import ClientDataset
from fedasync_jax.sim import contract, driver, strategies, tasks
from fedasync_jax.sim.checkpoint import run_digest
from fedasync_jax.sim.program import (cached, device_data, make_program,
                                      signature, strong_arrays)
from fedasync_jax.sim.scheduler import Schedule
from fedasync_jax.sim.tasks import pad_tasks, task_hparams


def _num_members(rule_hparams) -> int:
  leaves = jax.tree.leaves(rule_hparams)
  if not leaves:
    raise ValueError("rule_hparams must hold at least one array with the "
                     "member axis first")
  sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
  if len(sizes) != 1 or -1 in sizes:
    shown = ", ".join("a scalar" if n < 0 else str(n) for n in sorted(sizes))
    raise ValueError(f"every leaf of rule_hparams must be an array with the "
                     f"same leading (member) axis, got sizes {shown} (a "
                     f"Python list is a tree of scalars: pass "
                     f"jnp.array([...]))")
  return sizes.pop()


def member_keys(keys, num_members: int):
  """``(M,)`` PRNG keys: ``keys`` as given, or one key repeated. Raw
  ``uint32`` key data (``jax.random.PRNGKey``: ``(2,)`` for one key,
  ``(M, 2)`` for M) is read as keys, as ``simulate`` reads it."""
  keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
  if not jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
    if keys.dtype != jnp.uint32 or keys.ndim not in (1, 2) or \
        keys.shape[-1] != 2:
      raise ValueError(f"keys must be PRNG keys (jax.random.key, or "
                       f"jax.random.PRNGKey's uint32 pairs), got an array "
                       f"of {keys.dtype} and shape {keys.shape}")
    keys = jax.random.wrap_key_data(keys)
  if keys.ndim == 0:
    keys = jnp.stack([keys] * num_members)
  if keys.shape[0] != num_members:
    raise ValueError(f"keys must hold {num_members} keys (one per member), "
                     f"got {keys.shape[0]}")
  return keys


def _member_hparams(scheds, hparams, client_lr_scale, M):
  """One ``ClientHParams`` per member (``client_lr_scale`` applied)."""
  if hparams is None or isinstance(hparams, ClientHParams):
    hps = [hparams if hparams is not None else task_hparams(s)
           for s in scheds]
  else:
    hps = list(hparams)
    if len(hps) != M:
      raise ValueError(f"hparams must be one ClientHParams or {M}, got "
                       f"{len(hps)}")
  if hparams is not None:
    hps = [tasks.check_hparams(h, s, name="hparams" if isinstance(
        hparams, ClientHParams) else f"hparams[{m}]")
        for m, (h, s) in enumerate(zip(hps, scheds))]
  if client_lr_scale is not None:
    scale = np.asarray(client_lr_scale, np.float64).reshape(-1)
    if scale.shape != (M,):
      raise ValueError(f"client_lr_scale must have shape ({M},), got "
                       f"{scale.shape}")
    hps = [h._replace(lr_scale=np.asarray(h.lr_scale) * s)
           for h, s in zip(hps, scale)]
  return hps


def _kinds_differ(first, other) -> ValueError:
  """Members whose rules differ in what one compiled program fixes."""
  names = ("synchronous", "arrivals_per_version", "max_staleness")
  (a, i), (b, j) = first, other
  diff = [f"{n} {x} (member {i}) and {y} (member {j})"
          for n, x, y in zip(names, a, b) if x != y]
  return ValueError(
      f"the members' rules differ in {'; '.join(diff)}: a staleness "
      f"cutoff, a buffer size and the kind of rule are fixed in one "
      f"compiled sweep; run one sweep per value")


def _member_schedules(schedules, M, data) -> list:
  """One schedule per member, each with the data's number of clients."""
  scheds = ([schedules] * M if isinstance(schedules, Schedule)
            else list(schedules))
  if len(scheds) != M:
    raise ValueError(f"schedules must be one Schedule or {M} of them, got "
                     f"{len(scheds)}")
  contract.check_schedules(scheds, data.num_clients)
  return scheds


def _initial_evals(eval_fn, params, dev, M, member_params) -> list:
  """Each member's evaluation of its initial parameters (or ``None``s)."""
  if eval_fn is None:
    return [None] * M
  out = []
  for m in range(M):
    if m == 0 or member_params:
      p_m = jax.tree.map(lambda a: a[m], params) if member_params else params
      ev0 = driver.initial_eval(eval_fn, p_m, dev.eval_data)
    out.append(dict(ev0))
  return out


def _mapped(run_chunk, axes):
  """``run_chunk`` over the member axis with ``lax.map``: one member after
  the other inside one compiled program (fields of ``steps`` whose axis is
  ``None`` are shared by all members)."""
  def run(carry, steps, keys, hp_table, dev, rule_hp):
    own = jax.tree.map(lambda a, ax: a if ax == 0 else None, steps, axes)

    def one(args):
      c, st, k, hp, rhp = args
      st = jax.tree.map(lambda mine, shared, ax: mine if ax == 0 else shared,
                        st, steps, axes, is_leaf=lambda x: x is None)
      return run_chunk(c, st, k, hp, dev, rhp)
    return jax.lax.map(one, (carry, own, keys, hp_table, rule_hp))
  return run


def _sharded(run, mesh, axis, axes):
  """``run`` (members mapped one after the other) on every device of
  ``mesh`` at once, each device taking its block of members
  (``shard_map``); fields of ``steps`` shared by all members are
  replicated."""
  P = jax.sharding.PartitionSpec
  own = jax.tree.map(lambda ax: P() if ax is None else P(axis), axes,
                     is_leaf=lambda x: x is None)
  return jax.shard_map(run, mesh=mesh,
                       in_specs=(P(axis), own, P(axis), P(axis), P(),
                                 P(axis)),
                       out_specs=P(axis), check_vma=False)


def _compiled(make_rule, client, strategy, eval_fn, plans, axes,
              member_mode, member_params, params, dev, hp_table, rule_hp,
              key_like, mesh=None, mesh_axis=None):
  """The sweep's jitted ``init`` and ``run_chunk``, built once per shape
  (``program.cached``: an equal sweep compiles nothing) after checking
  that the client update trains ``params`` (``tasks.check_params_fit``;
  ``key_like``: one member's key)."""
  like = plans.like
  one_params = (jax.tree.map(lambda a: a[0], params) if member_params
                else params)
  options = driver.program_options(strategy, mesh)

  def build():
    tasks.check_params_fit(client, one_params, dev, jax.tree.map(
        lambda a: a[0], hp_table), key_like)
    contract.check_rule_contract(make_rule(jax.tree.map(
        lambda a: jnp.asarray(a)[0], rule_hp)), one_params)
    prog = make_program(make_rule, client, strategy, eval_fn=eval_fn,
                        params_like=one_params, data_like=dev,
                        masked_writes=member_mode == "vmap" and
                        not plans.shared)
    init = jax.jit(jax.vmap(
        lambda p, snap, hp: prog.init(p, like, hp, init_snap=snap,
                                     key=key_like),
        in_axes=(0 if member_params else None, 0, 0)))
    run = (jax.vmap(prog.run_chunk, in_axes=(0, axes, 0, 0, None, 0))
           if member_mode == "vmap" else _mapped(prog.run_chunk, axes))
    if mesh is not None and member_mode == "map":
      run = _sharded(run, mesh, mesh_axis or mesh.axis_names[0], axes)
    return init, driver.jit_program(run, options, donate_argnums=0)
  return cached(
      ("sweep", member_mode, mesh, mesh_axis, make_rule, client, strategy,
       eval_fn,
       like.num_snaps, like.num_slots, like.direct, member_params, axes,
       signature(params), signature(dev), signature(hp_table),
       signature(rule_hp), options), build)


def _sharding(mesh, mesh_axis, M):
  """``(put, put_replicated)`` for the member axis over ``mesh``."""
  if mesh is None:
    return (lambda x: x), (lambda x: x)
  axis = mesh_axis or mesh.axis_names[0]
  n_dev = mesh.shape[axis]
  if M % n_dev:
    raise ValueError(f"the number of members ({M}) must be a multiple of "
                     f"the mesh axis {axis!r} size {n_dev}")
  shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return (lambda x: jax.device_put(x, shard)), (
      lambda x: jax.device_put(x, repl))


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
          progress: Optional[Callable[[dict], None]] = None,
          checkpoint: Optional[Callable[[driver.Checkpoint], Any]] = None,
          resume: Optional[driver.Checkpoint] = None,
          members: Optional[str] = None) -> list[RunResult]:
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
    eval_fn, eval_every, progress, checkpoint, resume: as in
    ``executor.simulate`` (the default batching is one device's, as the
    members are what spreads over devices; the checkpoint holds every member's carry and
    outputs; a sweep stopped by ``checkpoint`` returns every member's
    history so far, ``stats["stopped_early"]``).
    member_params: whether ``params`` has a leading member axis.
    mesh: a ``jax.sharding.Mesh`` to shard the member axis over, with
      automatic axis types, e.g.
      ``jax.sharding.Mesh(np.array(jax.devices()), ("members",))``.
    mesh_axis: the mesh axis name (default: the mesh's first axis).
    members: how the compiled chunk runs the members: ``"vmap"`` (one
      batched program; the accelerator default) or ``"map"`` (one member
      after the other inside the compiled chunk, ``lax.map``; the CPU
      default: XLA:CPU's batched matmuls are weak, and a batched client
      loop runs every member for the longest member's local steps).

  Returns:
    One ``RunResult`` per member, in order. Its ``stats`` are the sweep's
    where the members ran together: ``wall_time_s`` and ``updates_per_s``
    (every member's updates over the sweep's wall time), ``width``,
    ``batching``, ``devices``; and the member's own: ``member``,
    ``num_arrivals``, ``padding_waste``. ``executor.simulate``'s plan
    statistics (``plan_time_s``, ``num_steps``...) are not kept per member.
  """
  M = _num_members(rule_hparams)
  scheds = _member_schedules(schedules, M, data)
  rules_ = [make_rule(jax.tree.map(lambda a: jnp.asarray(a)[m],
                                   rule_hparams))
            for m in range(M)]  # every member's values (its own checks)
  kinds = {}
  for m, rule in enumerate(rules_):
    kind = (bool(rule.synchronous), rule.arrivals_per_version,
            rule.max_staleness)
    if kinds and kind not in kinds:
      raise _kinds_differ(next(iter(kinds.items())), (kind, m))
    kinds.setdefault(kind, m)
  contract.check_rule_fits(rules_[0], scheds)  # one kind: fitted once
  taus = {}
  for rule, s in zip(rules_, scheds):  # weights at its own staleness values
    if id(s) not in taus:
      taus[id(s)] = contract.beyond_probe([s])
    contract.check_weights(rule, taus[id(s)])
  contract.check_client_fits(client, data)
  tasks.check_eval_every(eval_every, has_eval_fn=eval_fn is not None)
  chunk_steps = driver.check_chunk_steps(chunk_steps)
  keys = member_keys(keys, M)
  hps = _member_hparams(scheds, hparams, client_lr_scale, M)
  t0 = time.perf_counter()
  width_given = width is not None
  # The members are what a sweep spreads over devices (``mesh``); the
  # lanes of each stay on one device.
  batching = batching or strategies.default_batching(num_devices=1)
  strategy, width = strategies.choose(
      batching, width=width, arrivals_per_step=arrivals_per_step,
      concurrency=max(s.stats.get("realised_concurrency", 1)
                      for s in scheds), map_batch_size=map_batch_size)
  steps_of_client, width = driver.refill_layout(
      strategy, client, data, scheds, width, width_given)
  plans = driver.make_plans(scheds, strategy, width=width,
                            arrivals_per_step=arrivals_per_step,
                            chunk_steps=chunk_steps,
                            steps_of_client=steps_of_client)
  # One schedule for all members: the plan is passed once, unbatched, so
  # its loop bounds and conditions (padding, evaluation points) stay
  # conditions under the member vmap instead of becoming selects that run
  # both branches. Different schedules share their evaluation points.
  steps, axes = driver.steps_for(plans, scheds, eval_every)
  n_tasks = driver.bucket(max(s.num_tasks for s in scheds))
  hp_table = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)),
                          *[pad_tasks(h, n_tasks) for h in hps])
  init_snaps = jnp.asarray([p.init_snap for p in plans.members], jnp.int32)
  rule_hp = strong_arrays(rule_hparams, like=params)
  dev = device_data(data, eval_fn)
  member_mode = checks.choice("members", members or (
      "map" if jax.default_backend() == "cpu" and mesh is None else "vmap"),
      ("map", "vmap"))
  checks.prng_key("keys", keys[0], vmapped_by=(
      f"batching={strategy.name!r}" if strategy.vmapped else
      member_mode == "vmap" and "members='vmap'"))
  init, run_chunk = _compiled(
      make_rule, client, strategy, eval_fn, plans, axes, member_mode,
      member_params, params, dev, hp_table, rule_hp, keys[0], mesh,
      mesh_axis)
  put, put_repl = _sharding(mesh, mesh_axis, M)
  dev = put_repl(dev)
  keys, hp_table, init_snaps, rule_hp = put((keys, hp_table, init_snaps,
                                             rule_hp))
  carry = put(init(params, init_snaps, rule_hp))
  init_evals = _initial_evals(eval_fn, params, dev, M, member_params)
  digest = ("" if checkpoint is None and resume is None else
            run_digest(scheds, steps, keys, hp_table, rule_hp,
                       chunk_steps=chunk_steps))
  first_chunk, outs = 0, []
  if resume is not None:
    carry, first_chunk, outs = resume.restore(carry, digest)
    carry = put(carry)
  loop = driver.Loop(
      lambda c, chunk: run_chunk(
          c, jax.tree.map(lambda a, ax: a if ax is None else put(a), chunk,
                          axes, is_leaf=lambda x: x is None), keys, hp_table,
          dev, rule_hp),
      members=M, axes=axes)
  carry, outs = driver.run_loop(
      loop, carry, steps, chunk_steps=chunk_steps,
      num_arrivals=sum(s.num_arrivals for s in scheds), first_chunk=first_chunk,
      outs=outs, progress=progress, checkpoint=checkpoint, t0=t0,
      run_digest=digest, member_evals=init_evals)
  state = jax.block_until_ready(carry.state)
  wall = time.perf_counter() - t0
  merged = driver.merged_outputs(outs, True)

  def stats(m):
    return {"wall_time_s": wall, "member": m, "members": M,
            "num_arrivals": scheds[m].num_arrivals,
            "updates_per_s": sum(s.num_arrivals for s in scheds) / wall,
            "padding_waste": plans.real[m].padding_waste,
            "width": width, "batching": batching,
            "direct": strategy.direct,
            "members_as": member_mode,
            "devices": 1 if mesh is None else int(mesh.size)}
  return driver.results_for(
      scheds, plans, [jax.tree.map(lambda a: a[m], merged) for m in range(M)],
      [jax.tree.map(lambda a: np.asarray(a[m]), state) for m in range(M)],
      eval_every=eval_every, eval_fn=eval_fn, init_evals=init_evals,
      stats=stats)
