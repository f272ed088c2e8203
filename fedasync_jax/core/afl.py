"""The AFL paper's server rule, and the per-arrival mix once called ``afl``.

Forootani and Iervolino 2025, "Asynchronous Federated Learning with
non-convex client objective functions and heterogeneous dataset"
(arXiv:2508.01675), Section 3 and Algorithm 1: a round selects ``M``
clients; each starts from the global model it downloaded when it was
dispatched (stale by its delay) and trains its local epochs with the
delay-aware rate; once the round's ``M`` clients have returned, the new
global model is the weighted average of the returned models, the weights
proportional to the clients' data sizes and penalised by staleness,
normalised:

    w <- sum_k n_k s(tau_k) w_k / sum_k n_k s(tau_k)

(``afl``; ``lr`` below 1 steps only part of the way there). With
``average="deltas"`` the round averages the clients' deltas
``w_k - w_start`` with the same weights and adds the mean to ``w``
(FedBuff-style, for comparison). The delay-aware client rate
``lr0 / (sqrt(epoch + 1) (1 + beta delay))`` belongs to the client:
``sim.tasks.task_hparams(delay_beta=..., delay=...)`` fixes each task's
factor at its dispatch and ``client.local_update(epoch_decay=True,
patience=...)`` applies it.

``size_weighted_mix`` is the rule this library used to call ``afl``: every
arrival is mixed into the global model at once with weight
``min(max_weight, lr (n_k / mean_n) s(tau))``. It is not the paper's
aggregation (a per-arrival mix is a different algorithm); it is kept under
a name that says what it does, and its default ``max_weight = 0.5`` never
lets one client replace the global model.

Both register in ``rules.RULES`` (``rules`` imports this module).

Example:
  >>> import jax.numpy as jnp
  >>> from fedasync_jax import staleness
  >>> rule = afl(clients_per_round=2, staleness_fn=staleness.constant())
  >>> st = rule.init(jnp.zeros(1))
  >>> st = rule.apply(st, ClientResult(jnp.ones(1), jnp.ones(1), 3.0), 0)
  >>> st = rule.apply(st, ClientResult(-jnp.ones(1), -jnp.ones(1), 1.0), 0)
  >>> float(st.params[0]), int(st.version)
  (0.5, 1)
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from fedasync_jax.core import checks
from fedasync_jax.core import staleness as staleness_lib
from fedasync_jax.core import tree as tree_lib
from fedasync_jax.core.registry import Param
from fedasync_jax.core.rules import (RULES, FedAsyncState, _as_float,
                                     _counters, _tree_mix)
from fedasync_jax.core.staleness import StalenessFn
from fedasync_jax.core.types import ClientResult, Params, ServerRule

AVERAGES = ("params", "deltas")
"""What an AFL round averages: the returned models (the paper) or their
deltas (FedBuff-style)."""


class AFLState(NamedTuple):
  """The AFL server state.

  Attributes:
    params, version, applied, dropped: as every rule's.
    buffer: ``sum_k n_k s(tau_k) x_k`` over the round's kept arrivals so
      far, ``x_k`` the client's params (or delta).
    weight: ``sum_k n_k s(tau_k)`` over the same arrivals.
    count: kept arrivals in the current round (``< M``).
  """
  params: Params
  version: jax.Array
  applied: jax.Array
  dropped: jax.Array
  buffer: Params
  weight: jax.Array
  count: jax.Array


@RULES.register("afl", params=(
    Param("clients_per_round", 5, low=1, kind=int,
          meaning="AFL M: returned clients per aggregation (round)"),
    Param("lr", 1.0, low=0, sweepable=True,
          meaning="AFL server step toward the round's average (1: the "
                  "paper)"),
    Param("average", "params", kind=str,
          meaning="AFL: average the clients' params (the paper) or deltas "
                  "(FedBuff-style)")),
    inputs=("staleness_fn",), per_version="clients_per_round")
def afl(*, clients_per_round: int = 5, lr: float = 1.0,
        average: str = "params",
        staleness_fn: Optional[StalenessFn] = None) -> ServerRule:
  """The AFL paper's aggregation: a normalised, size- and staleness-weighted
  average of each round's ``M`` returned models.

  ``apply`` buffers a kept arrival with weight ``n_k s(tau_k)``; the
  ``M``-th kept arrival of a round closes it (``version += 1``):

  * ``average="params"`` (the paper): ``w <- (1 - lr) w + lr avg`` with
    ``avg = sum_k n_k s(tau_k) w_k / sum_k n_k s(tau_k)``; ``lr = 1`` sets
    ``w`` to ``avg`` exactly;
  * ``average="deltas"``: ``w <- w + lr sum_k n_k s(tau_k) delta_k /
    sum_k n_k s(tau_k)`` with ``delta_k = w_k - w_start_k``.

  ``tau`` counts server versions (rounds) since the client's dispatch.
  Updates a ``staleness.cutoff`` drops neither count toward ``M`` nor enter
  the average (as FedBuff's). A round whose weights sum to zero leaves
  ``w`` unchanged (its version still advances).

  Args:
    clients_per_round: ``M``, kept arrivals per aggregation (``>= 1``).
    lr: server step toward the round's average, ``>= 0`` (1: the paper).
    average: ``"params"`` or ``"deltas"``.
    staleness_fn: ``s(tau)`` (default ``staleness.polynomial(0.5)``).

  Returns:
    A ``ServerRule`` whose state is an ``AFLState``; its
    ``arrivals_per_version`` is ``M``.

  Example:
    >>> rule = afl(clients_per_round=3)
    >>> rule.arrivals_per_version, rule.result_fields
    (3, ('params',))
  """
  vals = RULES.check("afl", clients_per_round=clients_per_round, lr=lr)
  M = vals["clients_per_round"]
  checks.choice("average", average, AVERAGES)
  if staleness_fn is not None:
    staleness_lib.check(staleness_fn)
  s = staleness_fn if staleness_fn is not None else staleness_lib.polynomial(
      0.5)
  field = "params" if average == "params" else "delta"

  def init(params):
    dtype = jax.tree.leaves(params)[0].dtype
    return AFLState(params, _counters(), _counters(), _counters(),
                    jax.tree.map(jnp.zeros_like, params),
                    jnp.zeros((), dtype), _counters())

  def flush(state):
    ok = state.weight > 0
    denom = jnp.where(ok, state.weight, jnp.ones_like(state.weight))
    mean = jax.tree.map(lambda b: b / denom.astype(b.dtype), state.buffer)
    step = _as_float(lr, state.params)
    if average == "params":
      new = jax.tree.map(lambda w, m: (1 - step) * w + step * m,
                         state.params, mean)
    else:
      new = jax.tree.map(lambda w, m: w + step * m, state.params, mean)
    return state._replace(
        params=tree_lib.where(ok, new, state.params),
        version=state.version + 1,
        buffer=jax.tree.map(jnp.zeros_like, state.buffer),
        weight=jnp.zeros_like(state.weight),
        count=jnp.zeros_like(state.count))

  def apply(state, result, tau):
    tau = jnp.asarray(tau, jnp.int32)
    kept = staleness_lib.keep(s, tau)
    w = (_as_float(result.num_examples, state.params)
         * _as_float(s(tau), state.params))
    x = getattr(result, field)
    buffered = state._replace(
        buffer=jax.tree.map(lambda b, v: b + w.astype(b.dtype) * v,
                            state.buffer, x),
        weight=state.weight + w.astype(state.weight.dtype),
        count=state.count + 1, applied=state.applied + 1)
    buffered = jax.lax.cond(buffered.count >= M, flush, lambda z: z,
                            buffered)
    skipped = state._replace(dropped=state.dropped + 1)
    return tree_lib.where(kept, buffered, skipped)

  return ServerRule(init, apply, None, staleness_lib.max_staleness(s), M,
                    (field,), s)


@RULES.register("size_weighted_mix", params=(
    Param("lr", 0.5, low=0, sweepable=True,
          meaning="per-arrival mixing rate (times n_k / mean_n s(tau))"),
    Param("max_weight", 0.5, low=0, high=1, sweepable=True,
          meaning="cap of the per-arrival mixing weight")),
    inputs=("mean_examples", "staleness_fn"))
def size_weighted_mix(*, lr: float = 0.5, max_weight: float = 0.5,
                      mean_examples: float,
                      staleness_fn: Optional[StalenessFn] = None
                      ) -> ServerRule:
  """FedAsync with a data-size-weighted mixing weight, per arrival.

  Each kept arrival is mixed into the global model at once,
  ``w <- w + a (w_k - w)`` with
  ``a = min(max_weight, lr (n_k / mean_examples) s(tau))``, and the
  version advances by one. This is the rule the library called ``afl``
  before it implemented the AFL paper's round aggregation (``afl``); the
  old rule is ``lr=1, max_weight=1``, which lets every client with more
  than the mean data replace the global model. The default
  ``max_weight = 0.5`` never does. The state is a ``FedAsyncState``.

  Args:
    lr: mixing rate, ``>= 0``.
    max_weight: cap of the mixing weight, in ``[0, 1]``.
    mean_examples: the population's mean examples per client (``> 0``).
    staleness_fn: ``s(tau)`` (default ``staleness.polynomial(0.5)``).

  Example:
    >>> import jax.numpy as jnp
    >>> rule = size_weighted_mix(lr=1.0, mean_examples=10.0)
    >>> st = rule.init(jnp.zeros(1))
    >>> r = ClientResult(jnp.ones(1), jnp.ones(1), 40.0)  # 4x the mean
    >>> float(rule.apply(st, r, 0).params[0])  # capped at max_weight
    0.5
  """
  RULES.check("size_weighted_mix", lr=lr, max_weight=max_weight)
  checks.number("mean_examples", mean_examples, low=0, low_open=True)
  if staleness_fn is not None:
    staleness_lib.check(staleness_fn)
  s = staleness_fn if staleness_fn is not None else staleness_lib.polynomial(
      0.5)

  def init(params):
    return FedAsyncState(params, _counters(), _counters(), _counters())

  def apply(state, result, tau):
    tau = jnp.asarray(tau, jnp.int32)
    kept = staleness_lib.keep(s, tau)
    n = _as_float(result.num_examples, state.params)
    a = jnp.minimum(_as_float(max_weight, state.params),
                    _as_float(lr, state.params) * (n / mean_examples)
                    * _as_float(s(tau), state.params))
    mixed = _tree_mix(state.params, result.params, a.astype(n.dtype))
    k = kept.astype(jnp.int32)
    return FedAsyncState(tree_lib.where(kept, mixed, state.params),
                         state.version + k, state.applied + k,
                         state.dropped + 1 - k)

  return ServerRule(init, apply, None, staleness_lib.max_staleness(s), 1,
                    ("params",), s)
