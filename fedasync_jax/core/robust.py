"""Guards around a server rule: quarantine, norm bounding, client-level DP.

``guard(rule, ...)`` returns a rule with the same interface whose ``apply``
first inspects the client result:

* **quarantine**: a result with a NaN or Inf anywhere is not applied; the
  arrival is counted in ``quarantined`` (and ``dropped``), so one diverging
  client cannot poison the global model;
* **norm bounding** (``max_norm``): the update ``delta = w_k - w_start`` is
  scaled to norm at most ``max_norm`` (the defence of Sun et al. 2019, "Can
  You Really Backdoor Federated Learning?", arXiv:1911.07963), bounding the
  influence of a scaled-up malicious update;
* **Gaussian noise** (``noise_multiplier``): after clipping to
  ``max_norm = C``, the server adds ``N(0, (z C)^2)`` to every coordinate of
  each update (client-level DP in the style of DP-FedAvg, McMahan et al.
  2018, arXiv:1710.06963), with the noise key derived from ``key`` and the
  arrival count, so runs are reproducible from the seed.

A quarantined or noised update still counts as processed, so the server's
version advances exactly as the schedule says: a quarantined arrival acts
as an update with zero weight (FedAsync mixes in the server's own
parameters, FedBuff buffers a zero delta, FedAvg gives it no weight).

What the noise does and does not give: each applied update is the output of
a Gaussian mechanism with L2 sensitivity ``C`` and noise ``z C``, so one
update's release is ``(epsilon, delta)``-DP at the level the Gaussian
mechanism gives for multiplier ``z``. Nothing here composes over a client's
many updates, accounts for subsampling, or accounts for the asynchronous
server's mixing: this module makes NO privacy-accountant claim.

Example:
  >>> import jax.numpy as jnp
  >>> from fedasync_jax import rules
  >>> rule = guard(rules.fedasync(1.0), max_norm=1.0)
  >>> st = rule.init(jnp.zeros(2))
  >>> d = jnp.array([3.0, 4.0])
  >>> st = rule.apply(st, rules.ClientResult(d, d, 1.0), 0)
  >>> st.params.tolist(), int(st.clipped)
  ([0.6000000238418579, 0.800000011920929], 1)
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from fedasync_jax.core import tree as tree_lib
from fedasync_jax.core.types import ClientResult, ServerRule
from fedasync_jax.core.registry import Param


GUARD_PARAMS = (
    Param("quarantine", True, kind=bool,
          meaning="do not apply NaN/Inf updates"),
    Param("max_norm", None, low=0, low_open=True, optional=True,
          meaning="clip each update to this L2 norm (null: no clip)"),
    Param("noise_multiplier", None, low=0, optional=True,
          meaning="client-level DP noise z (needs the clip norm C)"),
)
"""The settings of ``guard`` (the configuration reads their ranges)."""


class GuardedState(NamedTuple):
  """The wrapped rule's state plus the guard's counters.

  ``params``, ``version``, ``applied`` and ``dropped`` read through to the
  inner state (``dropped`` includes quarantined arrivals).
  """
  inner: Any
  quarantined: jax.Array
  clipped: jax.Array
  arrivals: jax.Array

  @property
  def params(self):
    return self.inner.params

  @property
  def version(self):
    return self.inner.version

  @property
  def applied(self):
    return self.inner.applied

  @property
  def dropped(self):
    return self.inner.dropped


def guard(rule: ServerRule, *, quarantine: bool = True,
          max_norm: Optional[float] = None,
          noise_multiplier: Optional[float] = None,
          key: Optional[jax.Array] = None) -> ServerRule:
  """Wraps ``rule`` with quarantine, norm bounding and/or Gaussian noise.

  Args:
    rule: the rule to protect.
    quarantine: do not apply results with NaN or Inf entries.
    max_norm: bound on the L2 norm of each update ``delta`` (``> 0``).
    noise_multiplier: ``z >= 0``; needs ``max_norm`` (the clip ``C``) and a
      ``key``; adds ``N(0, (z C)^2)`` per coordinate to each update.
    key: PRNG key of the noise.

  Returns:
    A ``ServerRule`` whose state is a ``GuardedState``.
  """
  _, max_norm_p, noise_p = GUARD_PARAMS
  max_norm = max_norm_p.check(max_norm)
  noise_multiplier = noise_p.check(noise_multiplier)
  if noise_multiplier is not None:
    if max_norm is None:
      raise ValueError("noise_multiplier needs max_norm (the clip norm C)")
    if key is None:
      raise ValueError("noise_multiplier needs a PRNG key")

  def init(params):
    zero = jnp.zeros((), jnp.int32)
    return GuardedState(rule.init(params), zero, zero, zero)

  def apply(state, result: ClientResult, tau):
    server = state.inner.params
    finite = tree_lib.all_finite(result.params) & tree_lib.all_finite(result.delta)
    delta = result.delta
    clipped = jnp.zeros((), bool)
    if max_norm is not None:
      norm = tree_lib.norm(delta)
      factor = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))
      clipped = norm > max_norm
      delta = jax.tree.map(lambda d: (d * factor).astype(d.dtype), delta)
    if noise_multiplier is not None:
      k = jax.random.fold_in(key, state.arrivals)
      leaves, treedef = jax.tree.flatten(delta)
      keys = jax.random.split(k, len(leaves))
      leaves = [d + (noise_multiplier * max_norm
                     * jax.random.normal(kk, d.shape, d.dtype)
                     ).astype(d.dtype)
                for d, kk in zip(leaves, keys)]
      delta = jax.tree.unflatten(treedef, leaves)
    start = jax.tree.map(lambda p, d: p - d, result.params, result.delta)
    params = jax.tree.map(lambda s, d: s + d, start, delta)
    cleaned = ClientResult(params, delta, result.num_examples)
    if quarantine:
      # A quarantined result acts as a zero-weight update.
      null = ClientResult(server, jax.tree.map(jnp.zeros_like, delta),
                          jnp.zeros_like(jnp.asarray(result.num_examples)))
      cleaned = jax.tree.map(lambda a, b: jnp.where(finite, a, b), cleaned,
                             null)
    inner = rule.apply(state.inner, cleaned, tau)
    bad = jnp.logical_not(finite) if quarantine else jnp.zeros((), bool)
    # Count a quarantined arrival as dropped, unless the rule dropped it
    # already (staleness cutoff).
    moved = (bad & (inner.applied > state.inner.applied)).astype(jnp.int32)
    inner = inner._replace(applied=inner.applied - moved,
                           dropped=inner.dropped + moved)
    return GuardedState(inner, state.quarantined + bad.astype(jnp.int32),
                        state.clipped + (clipped & finite).astype(jnp.int32),
                        state.arrivals + 1)

  end_round = None
  if rule.end_round is not None:
    def end_round(state):
      return state._replace(inner=rule.end_round(state.inner))
  return ServerRule(init, apply, end_round, rule.max_staleness,
                    rule.arrivals_per_version,
                    staleness_fn=rule.staleness_fn)
