"""Staleness functions ``s(tau)``: how much an update of age ``tau`` counts.

A staleness function is a plain callable from integer staleness (a scalar or
an array, ``>= 0``; a known negative value is refused) to a weight in
``[0, 1]``, jit-traceable and vectorized (the model is optax's
``Schedule``); every built-in one has ``s(0) = 1`` and is non-increasing in
``tau``. The rules refuse a function that breaks the first part when they
are built (``check``).

The families of FedAsync (Xie, Koyejo, Gupta 2019, "Asynchronous Federated
Optimization", arXiv:1903.03934, Section 5.2): ``constant``, ``polynomial``
``(1 + tau)^-a`` and ``hinge``; an ``exponential`` decay; the ``cutoff``
wrapper that discards updates older than a maximum staleness; and two
delay-adaptive step-size rules from the asynchronous SGD literature,
normalised so the full step is 1:

* ``koloskova``: Koloskova, Stich, Jaggi 2022, "Sharper Convergence
  Guarantees for Asynchronous SGD for Distributed and Federated Learning"
  (arXiv:2206.08307), Theorem 8: full step while ``tau <= tau_c``, else the
  step is cut to ``min(1, 1 / (4 L gamma tau))`` of the base step ``gamma``.
* ``mishchenko``: Mishchenko, Bach, Even, Woodworth 2022, "Asynchronous SGD
  Beats Minibatch SGD Under Arbitrary Delays" (arXiv:2206.07638): the step
  ``gamma * min(1, n / tau)``; here the factor ``min(1, n / tau)``.

Every family registers itself in ``STALENESS`` with its parameters (range,
meaning, whether a sweep may vary it) and checks its arguments against
them; the configuration (``rule.staleness``, ``rule.staleness_a``,
``rule.staleness_params``...) and ``get`` read the registry. Adding a
staleness function is one decorated factory here (and one test).

Example:
  >>> import jax.numpy as jnp
  >>> s = polynomial(0.5)
  >>> [round(float(v), 4) for v in s(jnp.array([0, 3]))]
  [1.0, 0.5]
  >>> c = cutoff(hinge(10.0, 4.0), 16)
  >>> bool(keep(c, 17)), bool(keep(c, 16))
  (False, True)
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.registry import REQUIRED, Param, Registry

StalenessFn = Callable[[Any], jax.Array]

STALENESS = Registry("staleness")
"""The staleness functions by name: each factory returns an ``s(tau)``."""

CUTOFF = Param("max_staleness", None, low=0, kind=int, optional=True,
               meaning="drop updates staler than this (null: keep all)")
"""The parameter of ``cutoff`` (any staleness function can be cut off)."""


def _tau(tau) -> jax.Array:
  """``tau`` as a float array; a known negative staleness is refused (no
  update is older than the model it was applied to; ``(1 + tau)^-a`` was
  ``inf`` at ``-1``). Traced values are not checked."""
  t = jnp.asarray(tau, dtype=jnp.result_type(float))
  if not checks.is_traced(t):
    low = np.min(np.asarray(tau), initial=0)
    if low < 0:
      raise ValueError(f"staleness tau must be >= 0, got "
                       f"{checks.show(low.item())}")
  return t


@STALENESS.register("constant")
def constant() -> StalenessFn:
  """``s(tau) = 1``: every update counts fully (plain FedAsync).

  Example:
    >>> float(constant()(7))
    1.0
  """
  def fn(tau):
    return jnp.ones_like(_tau(tau))
  return fn


@STALENESS.register("polynomial", params=(
    Param("a", 0.5, low=0, sweepable=True, meaning="decay exponent"),))
def polynomial(a: float) -> StalenessFn:
  """``s(tau) = (1 + tau)^-a`` (FedAsync's polynomial function).

  Args:
    a: decay exponent, ``a >= 0``.

  Example:
    >>> float(polynomial(1.0)(1))
    0.5
  """
  STALENESS.check("polynomial", a=a)

  def fn(tau):
    return jnp.power(1.0 + _tau(tau), -a)
  return fn


@STALENESS.register("hinge", params=(
    Param("a", 10.0, low=0, sweepable=True, meaning="slope after the hinge"),
    Param("b", 4.0, low=0, sweepable=True,
          meaning="staleness up to which updates count fully")))
def hinge(a: float, b: float) -> StalenessFn:
  """``s(tau) = 1`` if ``tau <= b`` else ``1 / (a (tau - b) + 1)``.

  Args:
    a: slope after the hinge, ``a >= 0``.
    b: staleness up to which updates count fully, ``b >= 0``.

  Example:
    >>> float(hinge(10.0, 4.0)(5))
    0.09090909...
  """
  STALENESS.check("hinge", a=a, b=b)

  def fn(tau):
    t = _tau(tau)
    return jnp.where(t <= b, 1.0, 1.0 / (a * (t - b) + 1.0))
  return fn


@STALENESS.register("exponential", params=(
    Param("a", 0.5, low=0, sweepable=True, meaning="decay rate"),))
def exponential(a: float) -> StalenessFn:
  """``s(tau) = exp(-a tau)``.

  Args:
    a: decay rate, ``a >= 0``.

  Example:
    >>> round(float(exponential(1.0)(1)), 4)
    0.3679
  """
  STALENESS.check("exponential", a=a)

  def fn(tau):
    return jnp.exp(-a * _tau(tau))
  return fn


@STALENESS.register("koloskova", params=(
    Param("tau_c", REQUIRED, low=0, sweepable=True,
          meaning="staleness up to which the full step is taken"),
    Param("lipschitz", REQUIRED, low=0, low_open=True, sweepable=True,
          meaning="smoothness constant L"),
    Param("lr", REQUIRED, low=0, low_open=True, sweepable=True,
          meaning="the base (full) step size gamma")))
def koloskova(*, tau_c: float, lipschitz: float, lr: float) -> StalenessFn:
  """Delay-adaptive step of arXiv:2206.08307 (Thm. 8), relative to ``lr``.

  The full step ``lr`` is kept while ``tau <= tau_c``; beyond, the step is
  ``min(lr, 1 / (4 L tau))``, returned here as a fraction of ``lr``.

  Args:
    tau_c: staleness up to which the full step is taken, ``>= 0``.
    lipschitz: smoothness constant ``L``, ``> 0``.
    lr: the base (full) step size ``gamma``, ``> 0``.

  Example:
    >>> s = koloskova(tau_c=2, lipschitz=1.0, lr=0.1)
    >>> float(s(2)), round(float(s(5)), 3)
    (1.0, 0.5)
  """
  STALENESS.check("koloskova", tau_c=tau_c, lipschitz=lipschitz, lr=lr)

  # ``4 L gamma`` in the default float dtype, computed alike from Python
  # numbers (a run) and traced arrays (a sweep), so that a sweep's member
  # gets its run's weights to the last bit (in a run XLA folded the
  # constants, in another order).
  dt = jnp.result_type(float)
  coef = 4.0 * jnp.asarray(lipschitz, dt) * jnp.asarray(lr, dt)

  def fn(tau):
    t = _tau(tau)
    cut = 1.0 / (jnp.maximum(t, 1.0) * coef)
    return jnp.where(t <= tau_c, 1.0, jnp.minimum(1.0, cut))
  return fn


@STALENESS.register("mishchenko", params=(
    Param("n", REQUIRED, low=0, low_open=True, sweepable=True,
          meaning="number of workers (the paper's n)"),))
def mishchenko(n: float) -> StalenessFn:
  """Delay-adaptive factor ``min(1, n / tau)`` of arXiv:2206.07638.

  Args:
    n: number of workers (the paper's ``n``), ``> 0``.

  Example:
    >>> float(mishchenko(4)(8))
    0.5
  """
  STALENESS.check("mishchenko", n=n)

  def fn(tau):
    t = _tau(tau)
    return jnp.minimum(1.0, n / jnp.maximum(t, 1e-30))
  return fn


class Cutoff:
  """A staleness function that drops updates older than ``max_staleness``.

  Calling it gives the wrapped weight, and 0 for dropped updates; ``keep``
  tells which updates are applied. Rules leave the server state unchanged for
  dropped updates and count them; the scheduler does not advance the version.
  """

  def __init__(self, fn: StalenessFn, max_staleness: int):
    self.fn = fn
    self.max_staleness = max_staleness

  def __repr__(self):
    return f"Cutoff({self.fn!r}, max_staleness={self.max_staleness})"

  def __call__(self, tau):
    t = _tau(tau)
    return jnp.where(t <= self.max_staleness, self.fn(tau), 0.0)


def cutoff(fn: StalenessFn, max_staleness: int) -> Cutoff:
  """Wraps ``fn`` so that updates with ``tau > max_staleness`` are dropped.

  Args:
    fn: the staleness function for kept updates.
    max_staleness: the oldest staleness still applied, an integer ``>= 0``.

  A cutoff of a cutoff drops what either drops: its ``max_staleness`` is
  the smaller of the two (the outer one was reported while the inner one
  zeroed the weights between them, and those updates counted as applied).

  Example:
    >>> s = cutoff(constant(), 4)
    >>> float(s(4)), float(s(5))
    (1.0, 0.0)
    >>> cutoff(cutoff(constant(), 2), 4).max_staleness
    2
  """
  if not callable(fn):
    raise ValueError(f"fn must be a staleness function, got {fn!r}")
  limit = CUTOFF._replace(optional=False).check(max_staleness)
  if isinstance(fn, Cutoff):
    return Cutoff(fn.fn, min(limit, fn.max_staleness))
  return Cutoff(fn, limit)


def keep(fn: StalenessFn, tau) -> jax.Array:
  """Whether an update of staleness ``tau`` is applied (False if dropped)."""
  t = _tau(tau)
  if isinstance(fn, Cutoff):
    return t <= fn.max_staleness
  return jnp.ones(t.shape, dtype=bool)


def max_staleness(fn: StalenessFn) -> Optional[int]:
  """The cutoff of ``fn`` (``None`` when it never drops updates)."""
  return fn.max_staleness if isinstance(fn, Cutoff) else None


PROBE = 64
"""``check`` evaluates a staleness function at ``tau = 0, 1, ..., PROBE``."""


def check(fn, name: str = "staleness_fn", *, taus=None) -> StalenessFn:
  """Refuses a staleness function that cannot serve as one, naming
  ``name``: one that fails on an array of staleness values (not
  vectorized, or a Python ``if`` on ``tau``: not jit-traceable), returns
  more than one weight per value, or a weight outside ``[0, 1]`` or not
  finite (a mix with such a weight is no convex combination, and runs
  diverge or turn NaN without an error). Checked at ``tau = 0, ...,
  PROBE`` when a rule is built, and by the simulators at the staleness
  values their schedule holds (``taus``); a function of traced values (its
  parameters under ``jit``) is checked only for its shape. ``s(0) = 1``
  and a weight that does not grow with ``tau`` are the built-in
  functions' convention, not required: ``s(0) = 0.5`` halves every mix.

  Args:
    fn: the staleness function.
    name: how errors name it.
    taus: the staleness values to check (default ``0, 1, ..., PROBE``).

  Example:
    >>> check(lambda tau: 2.0 / (1 + tau))
    Traceback (most recent call last):
    ...
    ValueError: staleness_fn(tau) must be in [0, 1], got 2.0 at tau = 0
  """
  checks.callable_(name, fn)
  probe = taus is None
  taus = jnp.arange(PROBE + 1) if probe else jnp.asarray(taus, jnp.int32)
  try:
    out = jnp.asarray(fn(taus))
  except Exception as e:  # a Python ``if`` on tau, a wrong signature, ...
    where = f"[0, 1, ..., {PROBE}]" if probe else "this schedule's values"
    raise ValueError(
        f"{name}(tau) failed on tau = {where} "
        f"({type(e).__name__}: {checks.error_text(e)}); a staleness "
        f"function maps an array of staleness values to one weight each "
        f"and must be jit-traceable (jnp.where, not if)") from e
  if out.shape not in ((), taus.shape):
    raise ValueError(f"{name}(tau) must return one weight per staleness "
                     f"value (shape {taus.shape} for tau of shape "
                     f"{taus.shape}), got shape {out.shape}")
  if checks.is_traced(out):
    return fn
  w = np.broadcast_to(np.asarray(out, dtype=np.float64), taus.shape)
  bad = ~np.isfinite(w) | (w < 0) | (w > 1 + 1e-6)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"{name}(tau) must be in [0, 1], got {w[i]} at "
                     f"tau = {int(taus[i])}"
                     + ("" if probe else " (a staleness this schedule "
                        f"holds; checked at 0..{PROBE} when the rule was "
                        f"built)"))
  return fn


def get(name: str, **kwargs) -> StalenessFn:
  """Builds a registered staleness function by name, e.g.
  ``get("polynomial", a=0.5)``.

  A parameter not given takes its declared default (``polynomial``'s
  ``a=0.5``, as ``fedasync-jax config`` lists them); ``koloskova``'s and
  ``mishchenko``'s have none. A ``max_staleness=...`` keyword wraps the
  result in ``cutoff``.

  Raises:
    ValueError: an unknown name (the message lists the registered ones),
      an unknown parameter, or a parameter out of its range.

  Example:
    >>> float(get("hinge", a=10, b=4, max_staleness=16)(3))
    1.0
    >>> float(get("polynomial")(3))  # a = 0.5
    0.5
  """
  if name not in STALENESS:
    raise ValueError(f"staleness name must be one of "
                     f"{', '.join(STALENESS.names())}; got {name!r}")
  limit = kwargs.pop("max_staleness", None)
  defaults = {p.name: p.default for p in STALENESS[name].params
              if p.default is not REQUIRED}
  fn = STALENESS.build(name, **{**defaults, **kwargs})
  return fn if limit is None else cutoff(fn, limit)
