"""Convergence bounds as functions of a run's constants, with the conditions
under which the theorems they come from hold.

So that measured and predicted curves can be drawn together:

* the rates of Koloskova, Stich and Jaggi 2022 ("Sharper Convergence
  Guarantees for Asynchronous SGD for Distributed and Federated Learning",
  arXiv:2206.08307): Theorem 6 (constant step, ``sqrt(tau_C tau_max)``) and
  Theorem 8 / Corollary 9 (delay-adaptive step, ``tau_C`` / ``tau_avg``);
* the step-weighted bound of delayed SGD of Lian, Huang, Li and Liu 2015
  ("Asynchronous Parallel Stochastic Gradient for Nonconvex Optimization",
  arXiv:1506.08272), Theorem 1 with minibatch 1, the structure behind the
  ``O(1/sqrt(T))`` analyses of FedAsync (Xie, Koyejo and Gupta 2019,
  arXiv:1903.03934) and AFL (Forootani and Iervolino 2025,
  arXiv:2508.01675), with its step-size condition
  (``delayed_sgd_condition``, checked by the bound);
* a drift bound (our derivation).

Every theorem here is about asynchronous SGD: the stochastic gradient
computed at the stale iterate ``x_{t - tau_t}`` is added to the CURRENT
iterate, ``x_{t+1} = x_t - g_t grad F(x_{t - tau_t}, xi_t)`` (Algorithm 1 of
arXiv:2206.08307, AsySG-con of arXiv:1506.08272). In this library that is
``rules.fedbuff(1, optax.sgd(1.0))`` with one local SGD step; FedAsync's
mixing ``w <- (1 - a) w + a w_client`` is of that form only when
``tau = 0``.

Where the papers state a bound with ``O()``, the function states its
formula with the hidden numeric constants set to 1 and takes one
multiplicative constant ``c`` (default 1) that ``fits.fit_constant`` can fit
to measurements; ``delayed_sgd_bound`` and ``sqrt_t_bound`` carry the
explicit constants of their theorem, so ``c = 1`` is the bound itself.

How the forms were checked: the statements of arXiv:2206.08307 (Theorems
6, 8, 10, Corollaries 7, 9, Remark 5) were read in a stored copy of the
paper's main text; its appendix (the explicit step sizes of the proofs)
was not available. No copy of arXiv:1506.08272 was available: the form and
the condition of ``delayed_sgd_bound`` are kept as the paper is usually
quoted, not checked against its text.

Example:
  >>> drift_bound(2, gamma=0.5, sigma2=1.0, grad_sq=1.0)
  3.0
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.theory import arrays


def _tolerance(steps) -> float:
  """How far above its limit a condition's left-hand side may be and still
  hold: rounding of the steps' own dtype (float32 steps of a rule that
  meets the condition exactly overshoot it by about 1e-7), 1e-12 for
  float64 and Python numbers."""
  dt = np.asarray(steps).dtype
  if np.issubdtype(dt, np.floating) and np.finfo(dt).eps > 1e-15:
    return 4.0 * float(np.finfo(dt).eps)
  return 1e-12


def _flag(name: str, value) -> bool:
  """A boolean option (``check``); ``"no"`` or ``0`` are refused, not read
  as truth values."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be True or False, got {checks.show(value)}")
  return bool(value)


def _bound_args(lipschitz, f0_gap, sigma2):
  return (float(checks.number("lipschitz", lipschitz, low=0, low_open=True)),
          float(checks.number("f0_gap", f0_gap, low=0)),
          float(checks.number("sigma2", sigma2, low=0)))


def _inverse_rate(T, a, b):
  """The ``eps`` that solves ``T = a / eps^2 + b / eps``."""
  T = arrays.finite("T", T, low=0, low_open=True)
  return (b + np.sqrt(b * b + 4.0 * T * a)) / (2.0 * T)


class Condition(NamedTuple):
  """A theorem's validity condition evaluated on a run.

  Attributes:
    holds: whether ``value <= limit`` (and any other requirement held).
    value: the left-hand side (its largest value over the run).
    limit: the right-hand side.
    statement: the condition and the theorem it belongs to, in words.

  Example:
    >>> delayed_sgd_condition([0.1, 0.1], lipschitz=1.0, tau_max=0).holds
    True
  """
  holds: bool
  value: float
  limit: float
  statement: str


# --------------------------------------------------------------------------
# Koloskova, Stich, Jaggi 2022 (arXiv:2206.08307).
# --------------------------------------------------------------------------

def koloskova_constant_complexity(eps, *, lipschitz: float, f0_gap: float,
                                  sigma2: float, tau_c: float,
                                  tau_max: float, c: float = 1.0):
  """Iterations for ``(1/(T+1)) sum_t ||grad F(x_t)||^2 <= eps`` with a
  tuned constant step: arXiv:2206.08307, Theorem 6, eq. (8),
  ``O(sigma^2 / eps^2 + sqrt(tau_C tau_max) / eps)``; here
  ``T(eps) = c * (L F0 sigma^2 / eps^2 + L F0 sqrt(tau_C tau_max) / eps)``.

  The theorem's form uses the CONCURRENCY ``tau_C`` (the largest number of
  workers computing at once, Definition 1), not the average delay: the
  paper's abstract and Corollary 7 read ``sqrt(tau_avg tau_max)``, which
  follows from Theorem 6 only when the concurrency is constant, through
  Remark 5 (``tau_avg = O(mean concurrency)``). Pass ``tau_c=tau_avg`` for
  Corollary 7's form. ``L F0`` and the numeric constants are inside the
  ``O``; here they are set to 1 and ``c`` multiplies the whole
  (``F0 = F(x_0) - F*``, ``tau_max`` the largest delay).

  Conditions of Theorem 6: Assumptions 1 (stochastic-gradient variance
  ``<= sigma^2`` at every point) and 3 (``L``-smooth); identical worker
  functions, or (Section 5, Theorem 10 and its remark on independent
  delays) clients drawn uniformly, independently of the delays, with
  ``sigma^2`` the noise of one client update; Algorithm 1 (the stale
  gradient is added to the current iterate); and a constant step that the
  theorem says exists (the explicit step is in the paper's appendix, which
  we could not read). A run can satisfy the theorem only through the best
  step: compare with the best of a grid of constant steps.

  Example:
    >>> koloskova_constant_complexity(1.0, lipschitz=1.0, f0_gap=1.0,
    ...                               sigma2=1.0, tau_c=4, tau_max=4)
    5.0
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  tc = float(checks.number("tau_c", tau_c, low=0))
  tm = float(checks.number("tau_max", tau_max, low=0))
  c = float(checks.number("c", c, low=0, low_open=True))
  e = arrays.finite("eps", eps, low=0, low_open=True)
  out = c * (L * f0 * s2 / e ** 2 + L * f0 * math.sqrt(tc * tm) / e)
  return out if out.ndim else float(out)


def koloskova_constant_rate(T, *, lipschitz: float, f0_gap: float,
                            sigma2: float, tau_c: float, tau_max: float,
                            c: float = 1.0):
  """The ``eps`` reached after ``T`` steps (Theorem 6 of arXiv:2206.08307;
  see ``koloskova_constant_complexity`` for its conditions): the exact
  inverse in ``eps``, ``eps(T) = (B + sqrt(B^2 + 4 T A)) / (2 T)`` with
  ``A = c L F0 sigma^2`` and ``B = c L F0 sqrt(tau_C tau_max)``; about
  ``sqrt(A / T) + B / (2 T)`` for large ``T``.

  Example:
    >>> round(float(koloskova_constant_rate(5.0, lipschitz=1.0, f0_gap=1.0,
    ...       sigma2=1.0, tau_c=4, tau_max=4)), 6)
    1.0
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  tc = float(checks.number("tau_c", tau_c, low=0))
  tm = float(checks.number("tau_max", tau_max, low=0))
  c = float(checks.number("c", c, low=0, low_open=True))
  out = _inverse_rate(T, c * L * f0 * s2, c * L * f0 * math.sqrt(tc * tm))
  return out if out.ndim else float(out)


def koloskova_adaptive_complexity(eps, *, lipschitz: float, f0_gap: float,
                                  sigma2: float, tau_avg: float,
                                  c: float = 1.0):
  """Iterations with the delay-adaptive step: arXiv:2206.08307, Theorem 8,
  eq. (12), ``O(sigma^2 / eps^2 + tau_C / eps)``, and its Corollary 9,
  eq. (13), ``O(sigma^2 / eps^2 + tau_avg / eps)`` under constant
  concurrency; here
  ``T(eps) = c * (L F0 sigma^2 / eps^2 + L F0 tau_avg / eps)`` (numeric
  constants set to 1, ``c`` multiplies the whole).

  ``tau_avg`` is Corollary 9's quantity; pass the concurrency ``tau_C`` as
  ``tau_avg`` for Theorem 8's own form (the two differ by Remark 5's
  ``O()``). Conditions of Theorem 8: Assumptions 1 and 3, Algorithm 1, a
  base step ``eta <= 1 / (4 L)`` taken while ``tau_t <= tau_C``, and a step
  ``<= min(eta, 1 / (4 L tau_t))`` (0 allowed: dropping) when
  ``tau_t > tau_C`` (eq. (11); ``staleness.koloskova``); checked by
  ``koloskova_adaptive_condition``. Corollary 9 adds constant concurrency.

  Example:
    >>> koloskova_adaptive_complexity(0.5, lipschitz=1.0, f0_gap=1.0,
    ...                               sigma2=0.0, tau_avg=3.0)
    6.0
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  ta = float(checks.number("tau_avg", tau_avg, low=0))
  c = float(checks.number("c", c, low=0, low_open=True))
  e = arrays.finite("eps", eps, low=0, low_open=True)
  out = c * (L * f0 * s2 / e ** 2 + L * f0 * ta / e)
  return out if out.ndim else float(out)


def koloskova_adaptive_rate(T, *, lipschitz: float, f0_gap: float,
                            sigma2: float, tau_avg: float, c: float = 1.0):
  """The exact inverse of ``koloskova_adaptive_complexity`` (Theorem 8 /
  Corollary 9 of arXiv:2206.08307):
  ``eps(T) = (B + sqrt(B^2 + 4 T A)) / (2 T)``, ``A = c L F0 sigma^2``,
  ``B = c L F0 tau_avg``.

  Example:
    >>> float(koloskova_adaptive_rate(6.0, lipschitz=1.0, f0_gap=1.0,
    ...                               sigma2=0.0, tau_avg=3.0))
    0.5
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  ta = float(checks.number("tau_avg", tau_avg, low=0))
  c = float(checks.number("c", c, low=0, low_open=True))
  out = _inverse_rate(T, c * L * f0 * s2, c * L * f0 * ta)
  return out if out.ndim else float(out)


def koloskova_adaptive_condition(steps, staleness, *, lipschitz: float,
                                 tau_c: float) -> Condition:
  """The step-size condition of arXiv:2206.08307, Theorem 8 (eq. (11)), on
  a run's steps ``eta_t`` and delays ``tau_t``.

  It holds when every update with ``tau_t <= tau_C`` takes the same base
  step ``eta <= 1 / (4 L)`` and every update with ``tau_t > tau_C`` takes a
  step ``<= min(eta, 1 / (4 L tau_t))``. ``value`` is the largest ratio of a
  step to what the condition allows (``limit`` 1).

  Args:
    steps: ``(T,)`` the steps of the applied updates (``>= 0``).
    staleness: ``(T,)`` their delays (``>= 0``).
    lipschitz: ``L``.
    tau_c: the concurrency ``tau_C``.

  Example:
    >>> koloskova_adaptive_condition([0.2, 0.2, 0.01], [0, 1, 8],
    ...                              lipschitz=1.0, tau_c=2).holds
    True
    >>> koloskova_adaptive_condition([0.3, 0.3], [0, 1], lipschitz=1.0,
    ...                              tau_c=2).value
    1.2
  """
  L = float(checks.number("lipschitz", lipschitz, low=0, low_open=True))
  tc = float(checks.number("tau_c", tau_c, low=0))
  tol = _tolerance(steps)
  g = arrays.series("steps", steps, low=0)
  tau = arrays.series("staleness", staleness, low=0)
  if g.shape != tau.shape or g.size == 0:
    raise ValueError(f"steps and staleness must have the same nonempty "
                     f"shape, got {g.shape} and {tau.shape}")
  text = ("arXiv:2206.08307 Theorem 8: eta_t = eta <= 1/(4L) while tau_t "
          "<= tau_C, eta_t <= min(eta, 1/(4 L tau_t)) beyond")
  low = tau <= tc
  eta = float(g[low].max()) if low.any() else float(g.max())
  same = bool(np.all(g[low] == eta)) if low.any() else True
  allowed = np.where(low, 1.0 / (4.0 * L),
                     np.minimum(eta, 1.0 / (4.0 * L * np.maximum(tau, 1.0))))
  with np.errstate(divide="ignore"):  # a step > 0 where 0 is allowed: inf
    ratio = np.divide(g, allowed, out=np.zeros_like(g), where=g > 0)
  value = float(np.max(ratio))
  return Condition(bool(value <= 1.0 + tol and same), value, 1.0,
                   text if same else text + " (steps differ while tau_t <= "
                   "tau_C)")


# --------------------------------------------------------------------------
# Delayed SGD (Lian et al. 2015, arXiv:1506.08272, Theorem 1).
# --------------------------------------------------------------------------

_LIAN = ("arXiv:1506.08272 Theorem 1 (M = 1): L g_t + 2 L^2 tau_max "
         "sum_{k=1}^{tau_max} g_{t+k} <= 1 for every t")


def delayed_sgd_condition(steps, *, lipschitz: float,
                          tau_max: int) -> Condition:
  """The step-size condition of delayed SGD (Lian et al. 2015,
  arXiv:1506.08272, Theorem 1, minibatch ``M = 1``):
  ``L g_t + 2 L^2 tau_max sum_{k=1}^{tau_max} g_{t+k} <= 1`` for every
  ``t`` (steps after the last one count as 0). ``value`` is the largest
  left-hand side. (The condition as the theorem is usually quoted; its text
  was not available to check.)

  Example:
    >>> c = delayed_sgd_condition([0.1] * 5, lipschitz=1.0, tau_max=2)
    >>> c.holds, round(c.value, 6)          # 0.1 + 2 * 2 * (0.1 + 0.1)
    (True, 0.9)
  """
  L = float(checks.number("lipschitz", lipschitz, low=0, low_open=True))
  tm = checks.integer("tau_max", tau_max, low=0)
  tol = _tolerance(steps)
  g = arrays.series("steps", steps, low=0, low_open=True)
  if g.size == 0:
    raise ValueError("steps must hold at least one step size")
  csum = np.concatenate([[0.0], np.cumsum(g)])
  t = np.arange(g.size)
  future = csum[np.minimum(t + 1 + tm, g.size)] - csum[t + 1]
  value = float(np.max(L * g + 2.0 * L * L * tm * future))
  return Condition(value <= 1.0 + tol, value, 1.0, _LIAN)


def delayed_sgd_max_step(*, lipschitz: float, tau_max: int) -> float:
  """The largest constant step inside ``delayed_sgd_condition`` for runs
  longer than ``tau_max``: ``1 / (L (1 + 2 L tau_max^2))``.

  Example:
    >>> delayed_sgd_max_step(lipschitz=1.0, tau_max=2)
    0.1111111111111111
  """
  L = float(checks.number("lipschitz", lipschitz, low=0, low_open=True))
  tm = checks.integer("tau_max", tau_max, low=0)
  return 1.0 / (L * (1.0 + 2.0 * L * tm * tm))


def _outside(cond: Condition) -> ValueError:
  return ValueError(
      f"outside the validity condition ({cond.statement}): the left-hand "
      f"side reaches {cond.value:.4g} > {cond.limit:g}; pass check=False to "
      f"evaluate the formula anyway")


def delayed_sgd_bound(steps, *, lipschitz: float, f0_gap: float,
                      sigma2: float, tau_max: int, c: float = 1.0,
                      check: bool = True) -> float:
  """Bound on the step-weighted average ``sum_t g_t E||grad F(w_t)||^2 /
  sum_t g_t`` of SGD with delays ``<= tau_max`` and steps ``g_t``.

  Lian et al. 2015 (arXiv:1506.08272), Theorem 1, with minibatch ``M = 1``:

  ``c * (2 F0 + L sigma^2 sum_t g_t^2
  + 2 L^2 sigma^2 sum_t g_t sum_{j=t-tau_max}^{t-1} g_j^2) / sum_t g_t``

  with explicit constants: ``c = 1`` is the theorem's bound. Conditions:
  ``F`` is ``L``-smooth, the stochastic gradients are unbiased with
  variance ``<= sigma^2`` at every point where they are computed, every
  delay is ``<= tau_max``, the update adds the stale gradient to the
  current iterate (asynchronous SGD, not FedAsync's mixing), and the steps
  satisfy ``delayed_sgd_condition``, which is checked: outside it the
  function raises ``ValueError`` unless ``check=False`` (then the number is
  the formula, not a bound). (Form and condition as the theorem is usually
  quoted; the paper's text was not available to check them.)

  Args:
    steps: the step sizes ``g_t`` of the ``T`` updates (``> 0``).
    lipschitz: ``L``.
    f0_gap: ``F(w_0) - F*``.
    sigma2: noise variance of one update (e.g. ``effective_variance``).
    tau_max: the largest delay.
    c: multiplicative constant.
    check: raise when the steps violate the theorem's condition.

  Example:
    >>> delayed_sgd_bound([0.5, 0.5], lipschitz=1.0, f0_gap=1.0, sigma2=1.0,
    ...                   tau_max=0)
    2.5
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  tm = checks.integer("tau_max", tau_max, low=0)
  c = float(checks.number("c", c, low=0, low_open=True))
  check = _flag("check", check)
  g = arrays.series("steps", steps, low=0, low_open=True)
  if g.size == 0:
    raise ValueError("steps must hold at least one step size")
  if check:
    cond = delayed_sgd_condition(steps, lipschitz=L, tau_max=tm)  # (its dtype)
    if not cond.holds:
      raise _outside(cond)
  g2 = g * g
  csum = np.concatenate([[0.0], np.cumsum(g2)])
  t = np.arange(g.size)
  window = csum[t] - csum[np.maximum(t - tm, 0)]
  num = 2.0 * f0 + L * s2 * g2.sum() + 2.0 * L * L * s2 * np.sum(g * window)
  return float(c * num / g.sum())


def sqrt_t_bound(T, *, gamma0: float, lipschitz: float, f0_gap: float,
                 sigma2: float, tau_max: int, c: float = 1.0,
                 check: bool = True):
  """``delayed_sgd_bound`` for the constant step ``g = gamma0 / sqrt(T)``:

  ``c * (2 F0 / (gamma0 sqrt(T)) + L gamma0 sigma^2 / sqrt(T)
  + 2 L^2 gamma0^2 sigma^2 tau_max / T)`` (up to the first ``tau_max``
  steps, whose delay window is shorter; this closed form counts the full
  window and so is an upper bound on ``delayed_sgd_bound``). The
  ``O(1/sqrt(T))`` bound of FedAsync (arXiv:1903.03934) and AFL
  (arXiv:2508.01675) with step ``~ 1/sqrt(T)``: staleness enters only the
  ``1/T`` term.

  Lian et al.'s condition (``delayed_sgd_condition``) for this step is
  ``L g + 2 L^2 tau_max min(tau_max, T - 1) g <= 1``, i.e. ``gamma0 <=
  sqrt(T) delayed_sgd_max_step(...)`` once ``T > tau_max``; with ``check``
  (default) a ``T`` outside it raises ``ValueError``.

  Example:
    >>> sqrt_t_bound(4.0, gamma0=1.0, lipschitz=1.0, f0_gap=1.0, sigma2=1.0,
    ...              tau_max=0)
    1.5
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  g0 = float(checks.number("gamma0", gamma0, low=0, low_open=True))
  tm = float(checks.integer("tau_max", tau_max, low=0))
  c = float(checks.number("c", c, low=0, low_open=True))
  check = _flag("check", check)
  T = arrays.finite("T", T, low=0, low_open=True)
  if check:
    g = g0 / np.sqrt(T)
    lhs = L * g + 2.0 * L * L * tm * np.minimum(tm, np.maximum(T - 1, 0)) * g
    if np.any(lhs > 1.0 + 1e-12):
      raise _outside(Condition(False, float(np.max(lhs)), 1.0, _LIAN))
  out = c * (2.0 * f0 / (g0 * np.sqrt(T)) + L * g0 * s2 / np.sqrt(T)
             + 2.0 * L * L * g0 * g0 * s2 * tm / T)
  return out if out.ndim else float(out)


def drift_bound(tau, *, gamma: float, sigma2: float, grad_sq: float):
  """Bound on the drift ``E||w_t - w_{t-tau}||^2`` of asynchronous SGD with
  step ``gamma`` (the quantity of the AFL paper's Definition 1 /
  Assumption 4): ``2 gamma^2 (tau^2 G^2 + tau sigma^2)``.

  Our derivation, not a paper's theorem: with the update
  ``w_{s+1} = w_s - gamma (grad F(w_{s - tau_s}) + xi_s)``,
  ``w_t - w_{t-tau}`` is ``-gamma`` times a sum of ``tau`` such terms;
  ``||a + b||^2 <= 2||a||^2 + 2||b||^2``, Cauchy-Schwarz on the gradient
  part, and noise that is unbiased and uncorrelated across steps with
  variance ``<= sigma^2`` give the bound, with ``G^2`` the mean of
  ``E||grad F||^2`` over the window. No hidden constant. It does not hold
  for FedAsync's mixing (whose increment is not a gradient step when
  ``tau > 0``).

  Example:
    >>> drift_bound(2, gamma=0.5, sigma2=1.0, grad_sq=1.0)
    3.0
  """
  g = float(checks.number("gamma", gamma, low=0))
  s2 = float(checks.number("sigma2", sigma2, low=0))
  G = float(checks.number("grad_sq", grad_sq, low=0))
  t = arrays.finite("tau", tau, low=0)
  out = 2.0 * g * g * (t * t * G + t * s2)
  return out if out.ndim else float(out)
