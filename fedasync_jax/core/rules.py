"""Server rules: how an arriving client result changes the server state.

A rule is an optax-style NamedTuple of pure functions with its
hyperparameters in a closure:

* ``init(params) -> state``
* ``apply(state, client_result, staleness) -> state``: one arrival.
* ``end_round(state) -> state``: closes a synchronous round (``None`` for the
  asynchronous rules, whose versions advance inside ``apply``).

Every state is a NamedTuple with at least ``params``, ``version`` (the
integer server version), ``applied`` and ``dropped`` (counters); updates
older than a ``staleness.cutoff`` leave the state unchanged except for
``dropped``.

Algorithms:

* ``fedasync``: Xie, Koyejo, Gupta 2019, "Asynchronous Federated
  Optimization" (arXiv:1903.03934): ``w <- (1 - a s(tau)) w + a s(tau) w_k``.
* ``fedbuff``: Nguyen et al. 2021, "Federated Learning with Buffered
  Asynchronous Aggregation" (arXiv:2106.06639): buffer ``s(tau) (w_k - w_v)``,
  every ``K`` arrivals apply the mean as a pseudo-gradient through an optax
  server optimizer (FedOpt: Reddi et al. 2020, arXiv:2003.00295).
* ``fedavg``: McMahan et al. 2017, "Communication-Efficient Learning of Deep
  Networks from Decentralized Data" (arXiv:1602.05629): a synchronous round
  averaged by example counts.
* ``afl`` (defined in ``core/afl.py``): Forootani and Iervolino 2025,
  "Asynchronous Federated Learning with non-convex client objective
  functions and heterogeneous dataset" (arXiv:2508.01675), Section 3 and
  Algorithm 1: every ``M`` returned clients, ``w`` becomes the normalised
  average ``sum_k n_k s(tau_k) w_k / sum_k n_k s(tau_k)``;
  ``size_weighted_mix`` (also there) is the per-arrival mix
  ``w <- w + min(max_weight, lr (n_k / n_bar) s(tau)) (w_k - w)`` that this
  library used to call ``afl``.

Every rule is registered in ``RULES`` with its parameters (their ranges and
meaning) and the inputs its caller supplies (``staleness_fn``,
``server_optimizer``, ``mean_examples``); the configuration builds rules
from there. A synchronous rule is one with an ``end_round``
(``rule.synchronous``).

Example:
  >>> import jax.numpy as jnp
  >>> from fedasync_jax import staleness
  >>> from fedasync_jax.core.rules import ClientResult, fedasync
  >>> rule = fedasync(alpha=0.5, staleness_fn=staleness.constant())
  >>> state = rule.init({"w": jnp.zeros(2)})
  >>> result = ClientResult({"w": jnp.ones(2)}, {"w": jnp.ones(2)}, 1.0)
  >>> state = rule.apply(state, result, 0)
  >>> state.params["w"].tolist(), int(state.version)
  ([0.5, 0.5], 1)
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from fedasync_jax.core import checks
from fedasync_jax.core import tree as tree_lib
from fedasync_jax.core import staleness as staleness_lib
from fedasync_jax.core.registry import Param, Registry
from fedasync_jax.core.staleness import StalenessFn
from fedasync_jax.core.types import ClientResult, Params, ServerRule

RULES = Registry("rule")
"""The server rules by name. A member's inputs (``info["inputs"]``) are
among ``staleness_fn``, ``server_optimizer`` (an optax optimizer) and
``mean_examples`` (the population's mean examples per client);
``info["per_version"]`` names the parameter that sets its
``arrivals_per_version`` (FedBuff's ``buffer_size``), for messages."""


def _tree_mix(old, new, weight):
  return jax.tree.map(lambda o, n: o + weight * (n - o), old, new)


def _as_float(x, like):
  dtype = jax.tree.leaves(like)[0].dtype
  return jnp.asarray(x, dtype=dtype)


def fedasync_mix(params: Params, version, client_params: Params,
                 client_version, *, alpha, staleness_fn: StalenessFn):
  """FedAsync's core mix as a pure function.

  Args:
    params: the global parameters.
    version: the server version (an integer).
    client_params: the client's trained parameters.
    client_version: the version the client downloaded.
    alpha: the mixing weight, in ``[0, 1]``.
    staleness_fn: ``s(tau)``; a ``cutoff`` drops stale updates.

  Returns:
    ``(params, version)`` after the arrival: unchanged for a dropped update,
    else ``(1 - alpha s(tau)) params + alpha s(tau) client_params`` and
    ``version + 1``.

  Example:
    >>> import jax.numpy as jnp
    >>> from fedasync_jax import staleness
    >>> p, v = fedasync_mix(jnp.zeros(1), 3, jnp.ones(1), 0, alpha=0.9,
    ...                     staleness_fn=staleness.polynomial(1.0))
    >>> round(float(p[0]), 3), int(v)
    (0.225, 4)
  """
  tau = jnp.asarray(version) - jnp.asarray(client_version)
  kept = staleness_lib.keep(staleness_fn, tau)
  a = _as_float(alpha, params) * _as_float(staleness_fn(tau), params)
  mixed = _tree_mix(params, client_params, a)
  return (tree_lib.where(kept, mixed, params),
          jnp.asarray(version) + kept.astype(jnp.asarray(version).dtype))


class FedAsyncState(NamedTuple):
  params: Params
  version: jax.Array
  applied: jax.Array
  dropped: jax.Array


def _check_inputs(*, staleness_fn=None, server_optimizer=None) -> None:
  """Refuses a rule input of the wrong kind at construction, naming it: a
  staleness function must keep its contract (``staleness.check``), a
  server optimizer be an optax optimizer (``None``: the default)."""
  if staleness_fn is not None:
    staleness_lib.check(staleness_fn)
  if server_optimizer is not None:
    checks.optimizer("server_optimizer", server_optimizer)


def _counters():
  return jnp.zeros((), jnp.int32)


@RULES.register("fedasync", params=(
    Param("alpha", 0.6, low=0, high=1, sweepable=True,
          meaning="FedAsync mixing weight"),), inputs=("staleness_fn",))
def fedasync(alpha: float, staleness_fn: Optional[StalenessFn] = None
             ) -> ServerRule:
  """FedAsync: mix every arrival into the global model at once.

  Args:
    alpha: mixing weight in ``[0, 1]``.
    staleness_fn: ``s(tau)`` (default ``staleness.constant()``).

  Returns:
    A ``ServerRule`` whose state is a ``FedAsyncState``.

  Example:
    >>> from fedasync_jax import staleness
    >>> rule = fedasync(0.6, staleness.polynomial(0.5))
    >>> rule.arrivals_per_version
    1
  """
  RULES.check("fedasync", alpha=alpha)
  _check_inputs(staleness_fn=staleness_fn)
  s = staleness_fn if staleness_fn is not None else staleness_lib.constant()

  def init(params):
    return FedAsyncState(params, _counters(), _counters(), _counters())

  def apply(state, result, tau):
    tau = jnp.asarray(tau, jnp.int32)
    params, version = fedasync_mix(state.params, state.version,
                                   result.params, state.version - tau,
                                   alpha=alpha, staleness_fn=s)
    kept = staleness_lib.keep(s, tau).astype(jnp.int32)
    return FedAsyncState(params, version, state.applied + kept,
                         state.dropped + 1 - kept)

  return ServerRule(init, apply, None, staleness_lib.max_staleness(s), 1,
                    ("params",), s)


class FedBuffState(NamedTuple):
  params: Params
  version: jax.Array
  applied: jax.Array
  dropped: jax.Array
  buffer: Params
  count: jax.Array
  opt_state: Any
  real: jax.Array  # buffered updates with examples (not quarantined)


def _server_step(optimizer, params, opt_state, mean_delta):
  """One FedOpt server step: the pseudo-gradient is ``-mean_delta``."""
  grads = jax.tree.map(jnp.negative, mean_delta)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


@RULES.register("fedbuff", params=(
    Param("buffer_size", 10, low=1, kind=int,
          meaning="FedBuff K (updates per server step)"),),
    inputs=("server_optimizer", "staleness_fn"), per_version="buffer_size")
def fedbuff(buffer_size: int,
            server_optimizer: Optional[optax.GradientTransformation] = None,
            staleness_fn: Optional[StalenessFn] = None) -> ServerRule:
  """FedBuff: buffer ``K`` weighted deltas, then take one server step.

  Args:
    buffer_size: ``K``, arrivals per server step (an integer ``>= 1``).
    server_optimizer: any optax optimizer applied to the pseudo-gradient
      ``-mean(s(tau) delta)`` (default ``optax.sgd(1.0)``: add the mean).
    staleness_fn: ``s(tau)`` (default ``staleness.constant()``).

  Returns:
    A ``ServerRule`` whose state is a ``FedBuffState``; ``version`` counts
    server steps (flushes). A buffer whose updates all carry no examples
    (quarantined by ``robust.guard``) advances the version without a step.

  Example:
    >>> import optax
    >>> rule = fedbuff(5, optax.sgd(1.0, momentum=0.9))
    >>> rule.arrivals_per_version
    5
  """
  K = RULES.check("fedbuff", buffer_size=buffer_size)["buffer_size"]
  _check_inputs(server_optimizer=server_optimizer, staleness_fn=staleness_fn)
  opt = server_optimizer if server_optimizer is not None else optax.sgd(1.0)
  s = staleness_fn if staleness_fn is not None else staleness_lib.constant()

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return FedBuffState(params, _counters(), _counters(), _counters(), zeros,
                        _counters(), opt.init(params), _counters())

  def flush(state):
    mean = jax.tree.map(lambda b: b / K, state.buffer)
    stepped = _server_step(opt, state.params, state.opt_state, mean)
    # A buffer of only zero-weight updates (all quarantined) takes no step,
    # as FedAvg's round does: momentum or Adam moved the model anyway.
    params, opt_state = tree_lib.where(state.real > 0, stepped,
                                       (state.params, state.opt_state))
    return state._replace(params=params, opt_state=opt_state,
                          version=state.version + 1,
                          buffer=jax.tree.map(jnp.zeros_like, state.buffer),
                          count=jnp.zeros_like(state.count),
                          real=jnp.zeros_like(state.real))

  def apply(state, result, tau):
    kept = staleness_lib.keep(s, tau)
    w = _as_float(s(tau), state.params)
    buffered = state._replace(
        buffer=jax.tree.map(lambda b, d: b + w * d, state.buffer,
                            result.delta),
        count=state.count + 1, applied=state.applied + 1,
        real=state.real + (jnp.asarray(result.num_examples) > 0).astype(
            state.real.dtype))
    buffered = jax.lax.cond(buffered.count >= K, flush, lambda x: x, buffered)
    skipped = state._replace(dropped=state.dropped + 1)
    return tree_lib.where(kept, buffered, skipped)

  return ServerRule(init, apply, None, staleness_lib.max_staleness(s), K,
                    ("delta",), s)


class FedAvgState(NamedTuple):
  params: Params
  version: jax.Array
  applied: jax.Array
  dropped: jax.Array
  sum_delta: Params
  sum_weight: jax.Array
  opt_state: Any


@RULES.register("fedavg", inputs=("server_optimizer",))
def fedavg(server_optimizer: Optional[optax.GradientTransformation] = None
           ) -> ServerRule:
  """Synchronous FedAvg: average a round's deltas weighted by example count.

  ``apply`` accumulates one arrival of the round; ``end_round`` takes the
  server step with the example-weighted mean delta (through
  ``server_optimizer``, default ``optax.sgd(1.0)``, which gives the plain
  weighted average of the clients' parameters) and advances the version.
  A round whose updates all carry zero weight (quarantined by
  ``robust.guard``) leaves the parameters and the optimizer's state as
  they were.

  Example:
    >>> import jax.numpy as jnp
    >>> rule = fedavg()
    >>> st = rule.init(jnp.zeros(1))
    >>> st = rule.apply(st, ClientResult(jnp.ones(1), jnp.ones(1), 3.0), 0)
    >>> st = rule.apply(st, ClientResult(-jnp.ones(1), -jnp.ones(1), 1.0), 0)
    >>> float(rule.end_round(st).params[0])
    0.5
  """
  _check_inputs(server_optimizer=server_optimizer)
  opt = server_optimizer if server_optimizer is not None else optax.sgd(1.0)

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    dtype = jax.tree.leaves(params)[0].dtype
    return FedAvgState(params, _counters(), _counters(), _counters(), zeros,
                       jnp.zeros((), dtype), opt.init(params))

  def apply(state, result, tau):
    del tau  # a synchronous round has no staleness
    n = _as_float(result.num_examples, state.params)
    return state._replace(
        sum_delta=jax.tree.map(lambda a, d: a + n * d, state.sum_delta,
                               result.delta),
        sum_weight=state.sum_weight + n, applied=state.applied + 1)

  def end_round(state):
    denom = jnp.maximum(state.sum_weight, jnp.finfo(state.sum_weight.dtype).tiny)
    mean = jax.tree.map(lambda a: a / denom, state.sum_delta)
    stepped = _server_step(opt, state.params, state.opt_state, mean)
    # A round whose updates all carry zero weight (all quarantined) takes
    # no server step: a stateful optimizer (momentum, Adam) moved the model.
    params, opt_state = tree_lib.where(state.sum_weight > 0, stepped,
                                       (state.params, state.opt_state))
    return state._replace(
        params=params, opt_state=opt_state, version=state.version + 1,
        sum_delta=jax.tree.map(jnp.zeros_like, state.sum_delta),
        sum_weight=jnp.zeros_like(state.sum_weight))

  return ServerRule(init, apply, end_round, None, None, ("delta",))


# AFL lives in its own module, which registers its rules in ``RULES``;
# importing it here makes every user of ``RULES`` see them.
from fedasync_jax.core import afl as _afl  # noqa: E402

afl = _afl.afl
size_weighted_mix = _afl.size_weighted_mix
AFLState = _afl.AFLState
