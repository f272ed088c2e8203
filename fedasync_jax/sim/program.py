"""The compiled program: pure ``init`` and ``run_chunk`` over typed state.

``run_chunk`` is a ``lax.scan`` of the strategy's step
(``strategies.Direct`` or a wave strategy) over a chunk of the plan's
``Steps``. The carry is a ``Carry`` (server state, snapshot buffer, result
buffer); each step emits ``StepOutputs``. Both functions are pure and not
jitted here: the host driver jits them (and ``vmap``s them over the members
of a sweep).

Example:
  >>> import jax, jax.numpy as jnp, numpy as np, optax
  >>> from fedasync_jax import client, data, delays, rules, scheduler
  >>> from fedasync_jax.sim import plan, strategies, tasks
  >>> ds = data.from_client_arrays([np.ones((2, 1), np.float32)] * 4,
  ...                              [np.ones(2, np.float32)] * 4)
  >>> def loss(w, x, y, m):
  ...   return jnp.sum(m * (x @ w - y) ** 2) / jnp.maximum(m.sum(), 1)
  >>> upd = client.local_update(loss, optax.sgd(0.1), batch_size=2,
  ...                           max_examples=2)
  >>> s = scheduler.asynchronous(delays.delay_model(np.ones(4), np.ones(4)),
  ...                            num_updates=6, concurrency=2, seed=0)
  >>> p = plan.make_direct_plan(s)
  >>> dev = device_data(ds)
  >>> prog = make_program(lambda _: rules.fedasync(0.5), upd,
  ...                     strategies.Direct(), params_like=jnp.zeros(1),
  ...                     data_like=dev)
  >>> carry = prog.init(jnp.zeros(1), p)
  >>> steps = plan.steps_of(p, np.zeros(6, bool))
  >>> carry, outs = prog.run_chunk(carry, steps, jax.random.key(0),
  ...                              tasks.task_hparams(s), dev)
  >>> int(carry.state.version), outs.applied.shape
  (6, (6, 1))
"""

from __future__ import annotations

import collections
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from fedasync_jax.core.client import ClientHParams, ClientRef, ClientUpdate
from fedasync_jax.core.types import ServerRule
from fedasync_jax.data import ClientDataset
from fedasync_jax.sim import plan as plan_lib
from fedasync_jax.sim import strategies
from fedasync_jax.sim.strategies import Context, kept


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


def evaluate(eval_fn: Callable, params, eval_data=None) -> dict:
  """Calls ``eval_fn(params)``, or ``eval_fn(params, eval_data)`` when the
  evaluation set is passed as data (``models.make_evaluator``)."""
  if eval_data is None:
    return eval_fn(params)
  return eval_fn(params, eval_data)


class Carry(NamedTuple):
  """The program's loop state.

  Attributes:
    state: the server rule's state.
    snaps: snapshot buffer: parameters of versions that clients still start
      from (leaves ``(num_snaps + 1, ...)``; the last slot is the trash).
    results: result buffer of trained clients not yet arrived (leaves
      ``(num_slots + 1, ...)``), or ``None`` on the direct path.
    lanes: the lanes of ``strategies.Refill`` (a ``LaneCarry``), else
      ``None``.
  """
  state: Any
  snaps: Any
  results: Any = None
  lanes: Any = None


class StepOutputs(NamedTuple):
  """What each step emits, per arrival position (``applied``, ``version``,
  ``eval``: a dict of metrics or ``None``) and per wave lane
  (``train_loss``)."""
  applied: Any
  version: Any
  train_loss: Any
  eval: Any = None


class Program(NamedTuple):
  """The pure pieces of a simulation.

  ``init(params, plan, rule_hp=None) -> Carry`` and
  ``run_chunk(carry, steps, key, hp_table, dev, rule_hp=None) -> (carry,
  StepOutputs)``, a scan over the leading axis of ``steps``. ``rule_hp``
  reaches ``make_rule`` inside the trace (a sweep batches it).
  """
  init: Callable
  run_chunk: Callable


def _zeros(shape_tree):
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape_tree)


def make_program(make_rule: Callable[[Any], ServerRule],
                 client: ClientUpdate, strategy, *,
                 eval_fn: Optional[Callable] = None, params_like=None,
                 data_like: Optional[DeviceData] = None,
                 masked_writes: bool = False) -> Program:
  """Builds the pure ``init`` and ``run_chunk`` functions (not jitted).

  Args:
    make_rule: ``rule_hp -> ServerRule`` (called inside the trace).
    client: the client update.
    strategy: a strategy object from ``strategies.choose``.
    eval_fn: optional ``params -> dict of scalars`` (see ``evaluate``).
    params_like: parameters with the run's shapes (for the output shapes).
    data_like: the run's ``DeviceData`` (for the output shapes).
    masked_writes: snapshot writes as masked scatters, and wave steps
      that apply all their arrival positions, padding masked (for a
      ``vmap`` over members with different plans;
      ``core.arrival.write_snapshot``).

  Returns:
    A ``Program``.
  """

  def train_fn(dev, fields):
    def train_one(p, o, c, k, h):
      res, met = client.update(p, ClientRef(dev.x, dev.y, o, c), k, h)
      # Only what the rule reads is kept for clients in flight.
      return kept(res, fields), met
    return train_one

  # Only shapes are kept: a compiled program held by the in-process cache
  # must not keep the run's examples alive.
  data_like = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)),
      data_like)
  eval_zeros = None
  if eval_fn is not None:
    eval_zeros = jax.eval_shape(
        lambda p: evaluate(eval_fn, p, getattr(eval_fn, "data", None)),
        params_like)

  def init(params, p: plan_lib.Plan, rule_hp=None, init_snap=None, key=None):
    """``init_snap`` overrides ``p.init_snap`` (a traced value in sweeps);
    ``key`` is a key of the run's kind (its shape sizes the lanes' keys;
    default: ``jax.random.key(0)``'s)."""
    key = jax.random.key(0) if key is None else key
    # The carry is donated to the compiled chunks: copy, never alias, the
    # caller's parameters.
    params = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
    rule = make_rule(rule_hp)
    state = rule.init(params)
    first = p.init_snap if init_snap is None else init_snap
    snaps = jax.tree.map(
        lambda x: jnp.zeros((p.num_snaps + 1,) + x.shape, x.dtype)
        .at[first].set(x), params)
    results = None
    if not p.direct:
      res_shape = jax.eval_shape(
          lambda d, q: train_fn(d, rule.result_fields)(
              q, jnp.int32(0), jnp.int32(0), key,
              ClientHParams(jnp.float32(1), jnp.float32(0))),
          data_like, params)[0]
      results = jax.tree.map(
          lambda s: jnp.zeros((p.num_slots + 1,) + s.shape, s.dtype),
          res_shape)
    # Every leaf its own buffer: rules may share one array between fields
    # (e.g. zero counters), and the carry is donated.
    lanes = None
    if strategy.refill:
      if client.lane is None:
        raise ValueError(strategies.NO_LANE)
      lanes = strategy.init_lanes(client.lane, params, p.width, p.num_slots,
                                  key)
    return jax.tree.map(lambda x: jnp.array(x, copy=True),
                        Carry(state, snaps, results, lanes))

  def run_chunk(carry: Carry, steps: plan_lib.Steps, key, hp_table, dev,
                rule_hp=None):
    rule = make_rule(rule_hp)
    hp_table = jax.tree.map(jnp.asarray, hp_table)
    ctx = Context(rule, train_fn(dev, rule.result_fields), key, hp_table,
                  dev, None if eval_fn is None else
                  (lambda p, d: evaluate(eval_fn, p, d.eval_data)),
                  None if eval_zeros is None else _zeros(eval_zeros),
                  masked_writes, client.lane)
    return jax.lax.scan(lambda c, row: strategy.step(ctx, c, row), carry,
                        steps)

  return Program(init, run_chunk)


def strong_arrays(tree, like=None):
  """A pytree's leaves as JAX arrays of their canonical dtypes, never
  weakly typed: ``0.6`` and ``np.float64(0.6)`` then give the same
  argument types, so a jitted program called with either is traced and
  compiled once (a weak ``float32`` is another type to ``jax.jit``).
  With ``like`` (the run's parameters), floating leaves take its dtype,
  as a Python float does in their arithmetic: a float64 value would
  otherwise promote float32 state under x64.

  Example:
    >>> import numpy as np
    >>> a, b = strong_arrays(0.6), strong_arrays(np.float64(0.6))
    >>> (a.dtype == b.dtype, a.weak_type, b.weak_type)
    (True, False, False)
    >>> strong_arrays(np.float64(0.6), like=np.zeros(2, np.float32)).dtype
    dtype('float32')
  """
  floats = None if like is None else jax.tree.leaves(like)[0].dtype

  def strong(v):
    dt = jnp.result_type(v)
    if floats is not None and jnp.issubdtype(dt, jnp.floating):
      dt = floats
    return jnp.asarray(v, dtype=dt)
  return jax.tree.map(strong, tree)


def signature(tree) -> tuple:
  """The structure, shapes and dtypes of a pytree (a cache key part)."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((tuple(jnp.shape(x)), str(jnp.result_type(x)))
                        for x in leaves)


_COMPILED: collections.OrderedDict = collections.OrderedDict()
CACHE_SIZE = 32
"""Compiled programs kept in memory (least recently used dropped first)."""


def cached(key, build: Callable[[], Any]):
  """``build()``, or the value built before for an equal ``key``.

  The simulators key their jitted programs by the rule (or ``make_rule``),
  the client update, the strategy, the evaluation function, the buffer
  sizes and the shapes of parameters and data, so a second call with equal
  shapes reuses the compiled program instead of tracing and compiling it
  again. Keys hold the objects themselves (compared by identity for
  functions), never bare ``id``s, so a key cannot match a new object that
  reuses a freed address. An unhashable key part (an ``eval_fn`` that
  defines ``__eq__`` without ``__hash__``) disables the cache for the call.

  Example:
    >>> clear_cache()
    >>> cached(("k", 1), lambda: object()) is cached(("k", 1), object)
    True
  """
  try:
    hash(key)
  except TypeError:
    return build()
  if key in _COMPILED:
    _COMPILED.move_to_end(key)
    return _COMPILED[key]
  value = build()
  _COMPILED[key] = value
  while len(_COMPILED) > CACHE_SIZE:
    _COMPILED.popitem(last=False)
  return value


def clear_cache() -> None:
  """Forgets every compiled program kept by ``cached``."""
  _COMPILED.clear()
