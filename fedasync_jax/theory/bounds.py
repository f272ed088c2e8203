"""Convergence bounds as functions of a run's constants.

So that measured and predicted curves can be drawn together: the rates of
Koloskova, Stich and Jaggi 2022 ("Sharper Convergence Guarantees for
Asynchronous SGD for Distributed and Federated Learning",
arXiv:2206.08307), the weighted-average bound of delayed SGD (the structure
of Lian, Huang, Li and Liu 2015, "Asynchronous Parallel Stochastic Gradient
for Nonconvex Optimization", arXiv:1506.08272, Theorem 1, used by the
``O(1/sqrt(T))`` analyses of FedAsync, Xie, Koyejo and Gupta 2019,
arXiv:1903.03934, and AFL, Forootani and Iervolino 2025, arXiv:2508.01675),
and a drift bound.

The ``O()`` of the papers hides numeric constants. Every bound here states
its formula exactly, with the hidden constants set to 1, and takes one
multiplicative constant ``c`` (default 1) that ``fits.fit_constant`` can
fit to measurements.

Example:
  >>> drift_bound(2, gamma=0.5, sigma2=1.0, grad_sq=1.0)
  3.0
"""

from __future__ import annotations

import math

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.theory import arrays


def _bound_args(lipschitz, f0_gap, sigma2):
  return (float(checks.number("lipschitz", lipschitz, low=0, low_open=True)),
          float(checks.number("f0_gap", f0_gap, low=0)),
          float(checks.number("sigma2", sigma2, low=0)))


def _inverse_rate(T, a, b):
  """The ``eps`` that solves ``T = a / eps^2 + b / eps``."""
  T = arrays.finite("T", T, low=0, low_open=True)
  return (b + np.sqrt(b * b + 4.0 * T * a)) / (2.0 * T)


def koloskova_constant_complexity(eps, *, lipschitz: float, f0_gap: float,
                                  sigma2: float, tau_c: float,
                                  tau_max: float, c: float = 1.0):
  """Iterations for ``(1/T) sum E||grad F(x_t)||^2 <= eps`` with a constant,
  tuned step (arXiv:2206.08307, constant-stepsize theorem):
  ``T(eps) = c * (L F0 sigma^2 / eps^2 + L F0 sqrt(tau_C tau_max) / eps)``.

  The paper's statement is ``O(sigma^2/eps^2 + sqrt(tau_C tau_max)/eps)``
  with ``L F0`` inside the ``O``; here its numeric constants are set to 1
  and ``c`` multiplies the whole (``F0 = F(x_0) - F*``; ``tau_C`` the
  concurrency, ``tau_max`` the largest delay).

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
  """The ``eps`` reached after ``T`` steps: the exact inverse of
  ``koloskova_constant_complexity`` in ``eps``,
  ``eps(T) = (B + sqrt(B^2 + 4 T A)) / (2 T)`` with ``A = c L F0 sigma^2``
  and ``B = c L F0 sqrt(tau_C tau_max)``; about
  ``sqrt(A / T) + B / T``.

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
  """Iterations with the delay-adaptive step (arXiv:2206.08307, Thm. 8;
  ``staleness.koloskova``):
  ``T(eps) = c * (L F0 sigma^2 / eps^2 + L F0 tau_avg / eps)``
  (numeric constants set to 1, ``c`` multiplies the whole).

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
  """The exact inverse of ``koloskova_adaptive_complexity``:
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


def delayed_sgd_bound(steps, *, lipschitz: float, f0_gap: float,
                      sigma2: float, tau_max: int, c: float = 1.0) -> float:
  """Bound on the step-weighted average ``sum_t g_t ||grad F(w_t)||^2 /
  sum_t g_t`` of SGD with delays ``<= tau_max`` and steps ``g_t``.

  The structure of Lian et al. 2015 (arXiv:1506.08272), Theorem 1, with
  minibatch 1, which FedAsync/AFL-style analyses share:

  ``c * (2 F0 + L sigma^2 sum_t g_t^2
  + 2 L^2 sigma^2 sum_t g_t sum_{j=t-tau_max}^{t-1} g_j^2) / sum_t g_t``.

  The constants 2, 1, 2 are those of that structure; ``c`` (default 1)
  absorbs what our FedAsync runs do differently (mixing instead of adding a
  gradient, local steps) and is fitted with ``fit_constant``. Valid (in the
  paper) when ``L g_t + 2 L^2 tau_max sum_{k=1}^{tau_max} g_{t+k} <= 1``.

  Args:
    steps: the step sizes ``g_t`` of the ``T`` updates (``> 0``).
    lipschitz: ``L``.
    f0_gap: ``F(w_0) - F*``.
    sigma2: noise variance of one update (e.g. ``effective_variance``).
    tau_max: the largest delay.
    c: multiplicative constant.

  Example:
    >>> delayed_sgd_bound([0.5, 0.5], lipschitz=1.0, f0_gap=1.0, sigma2=1.0,
    ...                   tau_max=0)
    2.5
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  tm = checks.integer("tau_max", tau_max, low=0)
  c = float(checks.number("c", c, low=0, low_open=True))
  g = arrays.finite("steps", steps, low=0, low_open=True).ravel()
  if g.size == 0:
    raise ValueError("steps must hold at least one step size")
  g2 = g * g
  csum = np.concatenate([[0.0], np.cumsum(g2)])
  t = np.arange(g.size)
  window = csum[t] - csum[np.maximum(t - tm, 0)]
  num = 2.0 * f0 + L * s2 * g2.sum() + 2.0 * L * L * s2 * np.sum(g * window)
  return float(c * num / g.sum())


def sqrt_t_bound(T, *, gamma0: float, lipschitz: float, f0_gap: float,
                 sigma2: float, tau_max: float, c: float = 1.0):
  """``delayed_sgd_bound`` for the constant step ``g = gamma0 / sqrt(T)``:

  ``c * (2 F0 / (gamma0 sqrt(T)) + L gamma0 sigma^2 / sqrt(T)
  + 2 L^2 gamma0^2 sigma^2 tau_max / T)`` (up to the first ``tau_max``
  steps, whose delay window is shorter; this closed form counts the full
  window and so is an upper bound on ``delayed_sgd_bound``). The
  ``O(1/sqrt(T))`` bound of FedAsync (arXiv:1903.03934) and AFL
  (arXiv:2508.01675) with step ``~ 1/sqrt(T)``: staleness enters only the
  ``1/T`` term.

  Example:
    >>> sqrt_t_bound(4.0, gamma0=1.0, lipschitz=1.0, f0_gap=1.0, sigma2=1.0,
    ...              tau_max=0)
    1.5
  """
  L, f0, s2 = _bound_args(lipschitz, f0_gap, sigma2)
  g0 = float(checks.number("gamma0", gamma0, low=0, low_open=True))
  tm = float(checks.number("tau_max", tau_max, low=0))
  c = float(checks.number("c", c, low=0, low_open=True))
  T = arrays.finite("T", T, low=0, low_open=True)
  out = c * (2.0 * f0 / (g0 * np.sqrt(T)) + L * g0 * s2 / np.sqrt(T)
             + 2.0 * L * L * g0 * g0 * s2 * tm / T)
  return out if out.ndim else float(out)


def drift_bound(tau, *, gamma: float, sigma2: float, grad_sq: float):
  """Bound on the drift ``E||w_t - w_{t-tau}||^2`` of SGD with step
  ``gamma`` (the quantity of the AFL paper's Definition 1 / Assumption 4):
  ``2 gamma^2 (tau^2 G^2 + tau sigma^2)``.

  From ``w_t - w_{t-tau} = -gamma sum (grad F + xi)`` over ``tau`` steps,
  ``||a + b||^2 <= 2||a||^2 + 2||b||^2``, Cauchy-Schwarz for the gradient
  part (``G^2`` bounds ``||grad F||^2`` over the window) and uncorrelated
  noise of variance ``sigma^2``. No hidden constant.

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

