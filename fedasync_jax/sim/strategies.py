"""How a step of the compiled program trains its clients: strategy objects.

A strategy is chosen once per run, on the host, before anything is traced
(``choose``); the program then calls its ``step``. Two kinds:

* ``Direct``: one arrival per step (``plan.make_direct_plan``): train the
  arriving client from its snapshot and apply its update at once; no result
  slots. The CPU default: clients are trained one after the other anyway,
  and skipping the slots is faster (docs/benchmarks.md).
* wave strategies (``plan.make_plan``): train a wave of up to ``width``
  clients whose start versions exist, keep their results in slots, then
  apply the step's arrivals in order. They differ in how the wave is
  batched: ``Vmap`` (one batched program over all lanes; the accelerator
  default), ``Map`` (``lax.fori_loop`` over the valid prefix of the wave:
  padding costs nothing) and ``MapBatched`` (``lax.map`` with a batch size).
* ``Refill`` (``plan.make_plan(steps_of_client=...)``): ``width`` lanes,
  batched with ``vmap``, each advance their client by one local step per
  step (``ClientUpdate.lane``); a lane whose client is done takes the next
  one, so short clients never wait for a long one.

The batching family is declared once, in ``BATCHINGS``.

Example:
  >>> s, width = choose("map", width=None, arrivals_per_step=None,
  ...                   concurrency=10.0)
  >>> type(s).__name__, width
  ('Direct', 1)
  >>> s, width = choose("vmap", width=None, arrivals_per_step=None,
  ...                   concurrency=100.0)
  >>> type(s).__name__, width
  ('Vmap', 20)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.arrival import arrive
from fedasync_jax.core.registry import Param, Registry
from fedasync_jax.core.tree import where as tree_where
from fedasync_jax.core.types import ServerRule
from fedasync_jax.sim import lanes
from fedasync_jax.sim import plan as plan_lib


class Context(NamedTuple):
  """What a step reads besides the carry (fixed for a chunk).

  Attributes:
    rule: the server rule (built inside the trace from its hyperparameters).
    train_one: ``(start, offset, count, key, hparams) -> (result, metrics)``
      for one client.
    key: the run's PRNG key (task ``k`` trains with ``fold_in(key, k)``).
    hp_table: per-task client hyperparameters (leading axis: tasks).
    dev: the device data (``program.DeviceData``).
    evaluate: ``(params, dev) -> dict of scalars``, or ``None``.
    eval_zeros: zeros shaped like ``evaluate``'s output (or ``None``).
    masked_writes: masked snapshot writes and arrival loops over all
      positions, for a ``vmap`` over members with different plans.
    lane: the client update's ``Lane`` (``Refill`` reads it).
  """
  rule: ServerRule
  train_one: Callable
  key: Any
  hp_table: Any
  dev: Any
  evaluate: Optional[Callable]
  eval_zeros: Any
  masked_writes: bool = False
  lane: Any = None


def kept(result, fields):
  """A ``ClientResult`` with only what the rule reads (``fields``): the
  others are ``None`` and take no memory in the result slots."""
  return result._replace(**{f: None for f in ("params", "delta")
                            if f not in fields})


def _hp(ctx: Context, task):
  return jax.tree.map(lambda a: a[task], ctx.hp_table)


def _train(ctx: Context, snaps, snap, client, task):
  start = jax.tree.map(lambda b: b[snap], snaps)
  return ctx.train_one(start, ctx.dev.offsets[client], ctx.dev.counts[client],
                       jax.random.fold_in(ctx.key, task), _hp(ctx, task))


def _eval_or_zeros(ctx: Context, flag, params):
  return jax.lax.cond(flag, lambda p: ctx.evaluate(p, ctx.dev),
                      lambda p: ctx.eval_zeros, params)


class _Strategy:
  """Strategies compare equal when they are of one kind with equal
  settings (they are part of the compiled-program cache key)."""
  direct = refill = False
  vmapped = False  # clients' updates under jax.vmap (checks.prng_key)
  name = ""

  def __eq__(self, other):
    return type(self) is type(other) and vars(self) == vars(other)

  def __hash__(self):
    return hash((type(self), tuple(sorted(vars(self).items()))))


class Direct(_Strategy):
  """Train the arriving client and apply it in the same step."""
  direct = True
  name = "direct"

  def step(self, ctx: Context, carry, row: plan_lib.Steps):
    """One arrival (a dropped one is not trained)."""
    from fedasync_jax.sim.program import Carry, StepOutputs
    res_shape, met_shape = jax.eval_shape(
        lambda: _train(ctx, carry.snaps, 0, 0, 0))

    def train(_):
      res, met = _train(ctx, carry.snaps, row.wave_snap[0],
                        row.wave_client[0], row.wave_task[0])
      return res, met["loss"]

    def skip(_):  # dropped by the staleness cutoff: the rule discards it
      return (jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), res_shape),
              jnp.zeros((), met_shape["loss"].dtype))
    res, loss = jax.lax.cond(row.wave_valid[0], train, skip, None)
    out = arrive(ctx.rule, carry.state, res, row.arr_staleness[0],
                 ends_round=row.arr_ends_round[0], valid=row.arr_valid[0],
                 snaps=carry.snaps, snap_slot=row.arr_snap[0],
                 masked_write=ctx.masked_writes)
    ev = None
    if ctx.evaluate is not None:
      ev = jax.tree.map(lambda v: jnp.expand_dims(v, 0),
                        _eval_or_zeros(ctx, row.arr_eval[0], out.state.params))
    outs = StepOutputs(applied=jnp.reshape(out.applied, (1,)),
                       version=jnp.reshape(out.state.version, (1,)),
                       train_loss=jnp.reshape(loss, (1,)), eval=ev)
    return Carry(out.state, out.snaps, carry.results), outs


class _Wave(_Strategy):
  """Train a wave into result slots, then apply the step's arrivals."""

  def train(self, ctx: Context, results, snaps, row: plan_lib.Steps):
    """Returns ``(results, train_losses)``; ``train_losses`` per lane."""
    raise NotImplementedError

  def train_carry(self, ctx: Context, carry, row: plan_lib.Steps):
    """Returns ``(carry, train_losses)`` after the step's training."""
    results, train_loss = self.train(ctx, carry.results, carry.snaps, row)
    return carry._replace(results=results), train_loss

  def step(self, ctx: Context, carry, row: plan_lib.Steps):
    from fedasync_jax.sim.program import StepOutputs
    carry, train_loss = self.train_carry(ctx, carry, row)
    results = carry.results
    A = row.arr_valid.shape[0]
    outs = StepOutputs(
        applied=jnp.zeros((A,), bool),
        version=jnp.zeros((A,), jnp.asarray(carry.state.version).dtype),
        train_loss=train_loss,
        eval=(None if ctx.evaluate is None else jax.tree.map(
            lambda z: jnp.zeros((A,) + z.shape, z.dtype), ctx.eval_zeros)))

    # The step's arrivals are a prefix of its A positions: apply exactly
    # those, in order (padding costs nothing). Under a vmap over members
    # with plans of their own (``masked_writes``) a loop to each member's
    # count would select its whole carry (snapshots too) at every
    # iteration, so it runs over all A positions, padding masked (the
    # plan gives padding the trash slot).
    masked = ctx.masked_writes

    def one(j, c):
      state, snaps, outs = c
      valid = row.arr_valid[j] if masked else True
      res = jax.tree.map(lambda b: b[row.arr_slot[j]], results)
      out = arrive(ctx.rule, state, res, row.arr_staleness[j],
                   ends_round=row.arr_ends_round[j], valid=valid,
                   snaps=snaps, snap_slot=row.arr_snap[j],
                   masked_write=masked)
      ev = outs.eval
      if ctx.evaluate is not None:
        ev = jax.tree.map(lambda o, v: o.at[j].set(v), ev,
                          _eval_or_zeros(ctx, row.arr_eval[j] & valid,
                                         out.state.params))
      version = (jnp.where(valid, out.state.version, outs.version[j])
                 if masked else out.state.version)
      outs = outs._replace(applied=outs.applied.at[j].set(out.applied),
                           version=outs.version.at[j].set(version),
                           eval=ev)
      return out.state, out.snaps, outs
    n_arr = A if masked else jnp.sum(row.arr_valid.astype(jnp.int32))
    state, snaps, outs = jax.lax.fori_loop(0, n_arr, one,
                                           (carry.state, carry.snaps, outs))
    return carry._replace(state=state, snaps=snaps), outs


def _lane_counts(ctx: Context, row: plan_lib.Steps):
  """The example count of each lane's client, 0 on padding lanes: a
  padding lane then runs no local step, so a batched wave loops only as
  long as its longest real client (a padding lane holds client 0, whose
  own count would otherwise set the trip count)."""
  return jnp.where(row.wave_valid, ctx.dev.counts[row.wave_client], 0)


def deal_lanes(counts, num_devices: int):
  """Which lanes each device trains: a permutation ``deal`` of the ``W``
  lanes whose ``d``-th block of ``W / num_devices`` entries are device
  ``d``'s lanes, balanced by example count (a lane's local steps follow its
  count; padding lanes count 0).

  Lanes are sorted by count, largest first, and dealt in a snake
  (``lanes.snake_devices``: device 0, 1, ..., D-1, then D-1, ..., 0, ...),
  so each device gets one of every D lanes of similar size. With ``lax.map`` within a device, a device's
  time is the sum of its lanes' steps and the step waits for the busiest.
  In FedAvg rounds of 6 of 100 Dirichlet(0.5) MNIST clients (4-19 steps
  of batch 64) the busier of two devices holds 52% of a round's steps,
  against 56% dealt round-robin (docs/benchmarks.md). The order of lanes
  changes no result: each lane's result goes to its own slot.

  Args:
    counts: ``(W,)`` example counts of the wave's lanes.
    num_devices: ``D``; ``W`` must be a multiple of it.

  Returns:
    ``(W,)`` int32 lane indices.

  Raises:
    ValueError: ``W`` is not a multiple of ``num_devices``.

  Example:
    >>> counts = jnp.array([5, 19, 0, 12, 15, 10, 8, 0])
    >>> deal = deal_lanes(counts, 2)
    >>> deal.tolist()  # device 0: lanes 1, 5, 6, 7; device 1: 4, 3, 0, 2
    [1, 5, 6, 7, 4, 3, 0, 2]
    >>> counts[deal].reshape(2, 4).sum(axis=1).tolist()  # round-robin: 28, 41
    [37, 32]
  """
  W = counts.shape[0]
  device = lanes.snake_devices(W, num_devices)  # also checks the width
  # The k-th largest lane's position in the deal: its device's block, then
  # its turn within the block.
  where = device * (W // num_devices) + np.arange(W) // num_devices
  order = jnp.argsort(-jnp.asarray(counts), stable=True)  # largest first
  return jnp.zeros((W,), jnp.int32).at[where].set(order.astype(jnp.int32))


def _scatter(results, slots, res):
  return jax.tree.map(lambda b, r: b.at[slots].set(r), results, res)


class _Batched(_Wave):
  def run_lanes(self, fn, args):
    raise NotImplementedError

  def train(self, ctx, results, snaps, row):
    tasks = row.wave_task
    start = jax.tree.map(lambda b: b[row.wave_snap], snaps)
    keys = jax.vmap(lambda t: jax.random.fold_in(ctx.key, t))(tasks)
    args = (start, ctx.dev.offsets[row.wave_client],
            _lane_counts(ctx, row), keys, _hp(ctx, tasks))
    res, met = self.run_lanes(ctx.train_one, args)
    return _scatter(results, row.wave_slot, res), met["loss"]


class Vmap(_Batched):
  """All ``width`` lanes in one ``jax.vmap``-batched program (padding
  lanes are trained too); the accelerator default."""
  name, vmapped = "vmap", True

  def run_lanes(self, fn, args):
    return jax.vmap(fn)(*args)


class MapBatched(_Batched):
  """``lax.map`` over the lanes with ``batch_size`` lanes per call."""
  name = "map_batched"

  def __init__(self, batch_size: int = 8):
    self.batch_size = checks.integer("map_batch_size", batch_size, low=1)
    self.vmapped = self.batch_size > 1

  def run_lanes(self, fn, args):
    return jax.lax.map(lambda a: fn(*a), args, batch_size=self.batch_size)


class Devices(_Batched):
  """The wave's lanes split over the local devices (``shard_map``), the
  devices at the same time. Within a device its lanes run one after the
  other (``inner="map"``, ``lax.map``; the CPU default) or batched
  (``inner="vmap"``; the accelerator default). On a CPU split into one
  device per core (``jax.config.update("jax_num_cpu_devices", 2)`` before
  JAX starts) the cores train different clients at once; on several GPUs,
  one lane group per GPU. Lanes are dealt by ``deal_lanes``, balanced by
  example count, so that the devices' work is about equal; padding lanes
  train no step."""
  name = "devices"

  def __init__(self, num_devices: Optional[int] = None,
               inner: Optional[str] = None):
    n = len(jax.devices())
    self.num_devices = (n if num_devices is None else checks.integer(
        "num_devices", num_devices, low=1, high=n))
    self.inner = checks.choice("inner", inner or (
        "map" if jax.default_backend() == "cpu" else "vmap"), ("map", "vmap"))
    self.vmapped = self.inner == "vmap"

  def mesh(self):
    return jax.sharding.Mesh(np.array(jax.devices()[:self.num_devices]),
                             ("lanes",))

  def train(self, ctx, results, snaps, row):
    D, W = self.num_devices, row.wave_valid.shape[0]
    deal = deal_lanes(_lane_counts(ctx, row), D)
    row = jax.tree.map(lambda a: a[deal] if a.shape[:1] == (W,) else a, row)
    tasks = row.wave_task
    keys = jax.vmap(lambda t: jax.random.fold_in(ctx.key, t))(tasks)
    args = (row.wave_snap, ctx.dev.offsets[row.wave_client],
            _lane_counts(ctx, row), keys, _hp(ctx, tasks))
    P = jax.sharding.PartitionSpec

    def one(x):  # each lane reads its start from the replicated snapshots
      snap, *rest = x
      return ctx.train_one(jax.tree.map(lambda b: b[snap], snaps), *rest)
    batch = (jax.vmap(one) if self.inner == "vmap" else
             lambda a: jax.lax.map(one, a))
    lanes = jax.shard_map(batch, mesh=self.mesh(),
                          in_specs=P("lanes"), out_specs=P("lanes"),
                          check_vma=False)
    res, met = lanes(args)
    loss = jnp.zeros_like(met["loss"]).at[deal].set(met["loss"])
    return _scatter(results, row.wave_slot, res), loss


class Map(_Wave):
  """One client after the other over the valid prefix of the wave
  (``lax.fori_loop``), each result written straight into its slot."""
  name = "map"

  def train(self, ctx, results, snaps, row):
    def body(j, c):
      results, losses = c
      res, met = _train(ctx, snaps, row.wave_snap[j], row.wave_client[j],
                        row.wave_task[j])
      return (_scatter(results, row.wave_slot[j], res),
              losses.at[j].set(met["loss"]))
    n_valid = jnp.sum(row.wave_valid.astype(jnp.int32))
    loss_dtype = jax.tree.leaves(snaps)[0].dtype
    return jax.lax.fori_loop(
        0, n_valid, body,
        (results, jnp.zeros(row.wave_valid.shape, loss_dtype)))


class LaneCarry(NamedTuple):
  """``Refill``'s lanes: each lane's ``client.LaneState`` (leading axis:
  lanes), the result slot its client writes to, and whether it wrote."""
  state: Any
  slot: Any
  written: Any


NO_LANE = ("batching='refill' needs a client update with a lane machine "
           "(client.local_update; a wrapped or hand-written update has "
           "none): use another batching")


class Refill(_Wave):
  """``width`` lanes in one ``vmap``, one local step per plan step; a lane
  whose client is done writes its result and takes the next client the
  plan gives it. Needs a refill plan and a client update with a ``lane``
  (``client.local_update`` has one)."""
  name, refill, vmapped = "refill", True, True

  @staticmethod
  def init_lanes(lane, params, width: int, trash_slot: int, key) -> LaneCarry:
    """Idle lanes (done and written) for ``Program.init``; ``key``, of the
    run's kind, only shapes them."""
    from fedasync_jax.core.client import ClientHParams, ClientRef
    dt = jax.tree.leaves(params)[0].dtype
    shape = jax.eval_shape(lambda p: lane.start(
        p, ClientRef(None, None, jnp.int32(0), jnp.int32(0)),
        key, ClientHParams(dt.type(1), dt.type(0))), params)
    state = jax.tree.map(
        lambda s: jnp.zeros((width,) + s.shape, s.dtype), shape)
    state = state._replace(done=jnp.ones((width,), bool))
    return LaneCarry(state, jnp.full((width,), trash_slot, jnp.int32),
                     jnp.ones((width,), bool))

  def train_carry(self, ctx, carry, row):
    from fedasync_jax.core.client import ClientRef
    lanes = carry.lanes
    tasks = row.wave_task
    start = jax.tree.map(lambda b: b[row.wave_snap], carry.snaps)
    keys = jax.vmap(lambda t: jax.random.fold_in(ctx.key, t))(tasks)
    data = ClientRef(None, None, ctx.dev.offsets[row.wave_client],
                     _lane_counts(ctx, row))
    fresh = jax.vmap(ctx.lane.start)(start, data, keys, _hp(ctx, tasks))
    starts = row.wave_valid
    state = jax.vmap(tree_where)(starts, fresh, lanes.state)
    slot = jnp.where(starts, row.wave_slot, lanes.slot)
    written = lanes.written & ~starts
    impl = jax.random.key_impl(ctx.key)
    state = jax.vmap(lambda s: ctx.lane.step(s, ctx.dev.x, ctx.dev.y,
                                             impl))(state)
    res, met = jax.vmap(ctx.lane.finish)(state)
    write = state.done & ~written
    trash = jax.tree.leaves(carry.results)[0].shape[0] - 1
    results = _scatter(carry.results, jnp.where(write, slot, trash),
                       kept(res, ctx.rule.result_fields))
    return (carry._replace(results=results,
                           lanes=LaneCarry(state, slot, written | write)),
            met["loss"])


BATCHINGS = Registry("batching")
BATCHINGS.add("map", Map, doc="one client after the other in the compiled "
              "step (CPU default; the direct path at width 1)")
BATCHINGS.add("vmap", Vmap, doc="all lanes of a wave in one vmap "
              "(accelerator default)")
BATCHINGS.add("devices", Devices, doc="the wave's lanes split over the "
              "local devices (one per CPU core, or per GPU)")
BATCHINGS.add("refill", Refill, doc="lanes in one vmap, one local step "
              "per step, refilled as soon as their client is done "
              "(accelerators: no lane waits for a longer client)")
BATCHINGS.add("map_batched", MapBatched, params=(
    Param("batch_size", 8, low=1, kind=int,
          meaning="lanes per lax.map call"),),
    doc="lax.map over the lanes, batch_size lanes per call")


def default_batching(backend: Optional[str] = None,
                     num_devices: Optional[int] = None) -> str:
  """The layout ``batching=None`` (``run.batching=auto``) picks: ``"map"``
  on CPU, whatever its number of devices (measured: XLA:CPU's batched
  matmuls are weak, and one run dealt over two CPU devices ran at 0.48x
  the direct path; docs/benchmarks.md); on accelerators ``"vmap"`` with
  one device and ``"devices"`` with several (a wave's lanes split over
  them, batched within each).

  Example:
    >>> default_batching("gpu", 1), default_batching("gpu", 4)
    ('vmap', 'devices')
    >>> default_batching("cpu", 2)
    'map'
  """
  backend = backend or jax.default_backend()
  if backend == "cpu":
    return "map"
  n = len(jax.devices()) if num_devices is None else num_devices
  return "devices" if n > 1 else "vmap"


def choose(batching: Optional[str], *, width: Optional[int],
           arrivals_per_step: Optional[int], concurrency: float,
           map_batch_size: int = 8):
  """Picks the strategy and the step width, once, on the host.

  The direct path is taken for ``width=1`` with one arrival per step, and
  by default with ``"map"`` batching, where wave clients are trained one
  after the other anyway (measured faster on CPU); ``"vmap"`` and
  ``"map_batched"`` default to ``plan.default_width`` of the concurrency.

  Args:
    batching: ``"map"``, ``"vmap"``, ``"map_batched"`` or ``None``
      (``default_batching()``).
    width: clients trained per step, or ``None`` (automatic).
    arrivals_per_step: arrivals applied per step, or ``None``.
    concurrency: the schedule's realised concurrency.
    map_batch_size: lanes per call of ``"map_batched"``.

  Returns:
    ``(strategy, width)``.
  """
  batching = batching or default_batching()
  checks.choice("batching", batching, BATCHINGS.names())
  if width is not None:
    width = checks.integer("width", width, low=1)
  if arrivals_per_step is not None:
    arrivals_per_step = checks.integer("arrivals_per_step",
                                       arrivals_per_step, low=1)
  one_arrival = arrivals_per_step in (None, 1)
  if width is None:
    if batching == "map" and one_arrival:
      return Direct(), 1
    width = plan_lib.default_width(concurrency)
  if batching == "devices":
    d = Devices().num_devices
    return Devices(), -(-width // d) * d
  if width == 1 and one_arrival:
    return Direct(), 1
  if batching == "map_batched":
    return BATCHINGS.build(batching, batch_size=map_batch_size), width
  return BATCHINGS.build(batching), width
