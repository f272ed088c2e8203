"""Comparing measurements with bounds: averages, fitted constants, log-log
slopes and rate curves.

``weighted_average`` is the step-weighted average the FedAsync/AFL bounds
are on; ``fit_constant`` fits a bound's multiplicative constant;
``loglog_slope`` fits a straight line in log-log space with a bootstrap
interval over seeds; ``rate_fit`` fits the curve ``A T^-p + B / T`` (the
shape of every bound here: a slow term plus a ``1/T`` term) or the pure
power ``A T^-p``, with a bootstrap interval for ``p``, and
``goodness_of_fit`` says whether a model curve fits within the seed noise
(log residuals, chi-square, p-value), so that the two can be compared;
``sampling_variance`` is the closed form of client sampling with and
without replacement (the AFL paper, Forootani and Iervolino 2025,
arXiv:2508.01675, Section 2.2) and ``empirical_sampling_variance`` its
Monte-Carlo check.

Example:
  >>> weighted_average([1.0, 3.0], [1.0, 3.0])
  2.5
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.theory import arrays


def weighted_average(values, weights=None) -> float:
  """``sum_t w_t v_t / sum_t w_t`` (the plain mean when ``weights`` is None).

  The FedAsync/AFL bounds are on this average of ``||grad F(w_t)||^2`` with
  the step sizes as weights.

  Example:
    >>> weighted_average([1.0, 3.0], [1.0, 3.0])
    2.5
  """
  v = np.asarray(values, np.float64)
  if weights is None:
    return float(v.mean())
  w = arrays.finite("weights", weights, low=0)
  if w.shape != v.shape:
    raise ValueError(f"weights must have the shape of values {v.shape}, got "
                     f"{w.shape}")
  if w.sum() <= 0:
    raise ValueError("weights must not all be 0")
  return float(np.sum(w * v) / np.sum(w))


def fit_constant(measured, predicted) -> float:
  """The multiplicative constant ``c`` that best maps ``predicted`` to
  ``measured`` in log space: ``c = exp(mean(log measured - log predicted))``.

  Example:
    >>> round(fit_constant([2.0, 8.0], [1.0, 4.0]), 6)
    2.0
  """
  m = arrays.finite("measured", measured, low=0, low_open=True)
  p = arrays.finite("predicted", predicted, low=0, low_open=True)
  if m.shape != p.shape:  # compared before any flattening
    raise ValueError(f"measured and predicted must have the same shape, got "
                     f"{m.shape} and {p.shape}")
  return float(np.exp(np.mean(np.log(m) - np.log(p))))


# --------------------------------------------------------------------------
# Statistics: log-log slopes and client sampling.
# --------------------------------------------------------------------------

class SlopeFit(NamedTuple):
  """A log-log slope with a confidence interval over seeds.

  Attributes:
    slope: OLS slope of ``log(mean over seeds)`` on ``log T``.
    intercept: its intercept (``log`` scale).
    ci_low, ci_high: bootstrap percentile interval of ``slope`` (seeds
      resampled with replacement).
    seed_slopes: the per-seed OLS slopes.
    seed_mean, seed_se: their mean and standard error.
    level: the confidence level.

  Example:
    >>> fit = loglog_slope([1.0, 4.0], [1.0, 0.5])
    >>> round(fit.slope, 6), isinstance(fit, SlopeFit)
    (-0.5, True)
  """
  slope: float
  intercept: float
  ci_low: float
  ci_high: float
  seed_slopes: np.ndarray
  seed_mean: float
  seed_se: float
  level: float


def _ols(x, y):
  xm = x.mean()
  slope = np.sum((x - xm) * (y - y.mean(-1, keepdims=True)), -1) / np.sum(
      (x - xm) ** 2)
  return slope, y.mean(-1) - slope * xm


def loglog_slope(T, values, *, num_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> SlopeFit:
  """Fits ``log values ~ slope * log T`` with a bootstrap interval.

  Args:
    T: ``(K,)`` horizons (``> 0``, at least two distinct).
    values: ``(S, K)`` measurements (``> 0``), one row per seed, or ``(K,)``.
    num_boot: bootstrap resamples of the seeds.
    level: confidence level in ``(0, 1)``.
    seed: numpy seed of the bootstrap.

  Returns:
    A ``SlopeFit``.

  Example:
    >>> import numpy as np
    >>> T = np.array([100., 400., 1600.])
    >>> v = np.array([T ** -0.5, 1.1 * T ** -0.5])
    >>> round(loglog_slope(T, v).slope, 6)
    -0.5
  """
  t, v = _horizons_and_values(T, values, min_horizons=2)
  x = np.log(t)
  lv = float(checks.number("level", level, low=0, high=1, low_open=True,
                           high_open=True))
  nb = checks.integer("num_boot", num_boot, low=1)
  slope, icpt = _ols(x, np.log(v.mean(0)))
  per_seed, _ = _ols(x, np.log(v))
  S = v.shape[0]
  rng = checks.rng(seed)
  idx = rng.integers(0, S, size=(nb, S))
  boot, _ = _ols(x, np.log(v[idx].mean(1)))
  lo, hi = np.quantile(boot, [(1 - lv) / 2, (1 + lv) / 2])
  se = float(per_seed.std(ddof=1) / math.sqrt(S)) if S > 1 else float("nan")
  return SlopeFit(float(slope), float(icpt), float(lo), float(hi), per_seed,
                  float(per_seed.mean()), se, lv)


# --------------------------------------------------------------------------
# Rate curves: A T^-p + B / T, and how well a model fits.
# --------------------------------------------------------------------------

class FitQuality(NamedTuple):
  """How well a model curve fits the mean over seeds, in log space.

  Attributes:
    log_residuals: ``log(mean over seeds) - log(model)`` per horizon.
    se: standard error of ``log(mean over seeds)`` per horizon, by the
      delta method ``sd / (sqrt(S) mean)`` (``nan`` with one seed).
    z: ``log_residuals / se``: about standard normal where the model fits.
    rmse: root mean square of ``log_residuals``.
    chi2: ``sum z^2`` (``nan`` with one seed).
    dof: horizons minus fitted parameters.
    p_value: ``P(chi2_dof >= chi2)``; small (say below 0.01) when the model
      does not fit within the noise of the seeds (``nan`` with one seed or
      ``dof < 1``).

  Example:
    >>> q = goodness_of_fit([1.0, 2.0, 4.0], [[1.0, 0.5, 0.25],
    ...                                      [1.2, 0.6, 0.3]],
    ...                     [1.1, 0.55, 0.275], num_params=2)
    >>> isinstance(q, FitQuality), q.dof, round(q.chi2, 9)
    (True, 1, 0.0)
  """
  log_residuals: np.ndarray
  se: np.ndarray
  z: np.ndarray
  rmse: float
  chi2: float
  dof: int
  p_value: float


def _logsumexp(a):
  m = max(a)
  return m + math.log(sum(math.exp(x - m) for x in a))


def _chi2_sf(x: float, k: int) -> float:
  """``P(chi2_k >= x)`` for an integer ``k >= 1`` (closed forms: a Poisson
  sum for even ``k``; ``erfc`` plus a finite sum for odd ``k``)."""
  if k < 1 or not math.isfinite(x):
    return float("nan")
  if x <= 0:
    return 1.0
  half = 0.5 * x
  if k % 2 == 0:
    terms = [j * math.log(half) - math.lgamma(j + 1) for j in range(k // 2)]
    return min(1.0, math.exp(-half + _logsumexp(terms)))
  chi = math.sqrt(x)
  out = math.erfc(chi / math.sqrt(2.0))
  if k > 1:
    # sum_{r=1}^{(k-1)/2} chi^(2r-1) / (1 * 3 * ... * (2r-1)).
    terms = [(2 * r - 1) * math.log(chi) - (math.lgamma(2 * r + 1)
             - r * math.log(2.0) - math.lgamma(r + 1))
             for r in range(1, (k - 1) // 2 + 1)]
    out += math.exp(-half + 0.5 * math.log(2.0 / math.pi)
                    + _logsumexp(terms))
  return min(1.0, out)


def _horizons_and_values(T, values, *, min_horizons: int):
  """``(T, values)`` checked: positive finite horizons with at least
  ``min_horizons`` distinct ones, values as ``(seeds, len(T))``."""
  t = arrays.series("T", T, low=0, low_open=True)
  if np.unique(t).size < min_horizons:
    raise ValueError(f"T must hold at least {min_horizons} distinct horizons, "
                     f"got {np.unique(t).size}")
  v = arrays.finite("values", values, low=0, low_open=True)
  if v.ndim == 1:
    v = v[None]
  if v.ndim != 2 or v.shape[1] != t.size:
    raise ValueError(f"values must have shape (seeds, {t.size}), got "
                     f"{v.shape}")
  return t, v


def _log_mean_se(v):
  """``(mean, se of log mean)`` over axis -2 (seeds)."""
  S = v.shape[-2]
  mean = v.mean(-2)
  if S < 2:
    return mean, np.full(mean.shape, np.nan)
  return mean, v.std(-2, ddof=1) / (math.sqrt(S) * mean)


def goodness_of_fit(T, values, model, *, num_params: int) -> FitQuality:
  """Log residuals and a chi-square test of ``model`` against the seeds.

  The mean over seeds at each horizon is compared with the model in log
  space; each residual is divided by the standard error of the log mean
  (delta method, from the spread of the seeds). Horizons must be
  independent runs (as in the theory experiments, where every horizon has
  its own seeds), so that ``chi2`` has ``dof = K - num_params`` degrees of
  freedom when the model is right.

  Args:
    T: ``(K,)`` horizons (``> 0``).
    values: ``(S, K)`` measurements (``> 0``), one row per seed, or ``(K,)``.
    model: ``(K,)`` the model's values at ``T`` (``> 0``).
    num_params: parameters fitted to produce ``model`` (``>= 0``).

  Returns:
    A ``FitQuality``.

  Example:
    >>> q = goodness_of_fit([1.0, 2.0], [1.0, 0.5], [1.0, 0.5],
    ...                     num_params=0)
    >>> q.rmse, q.dof
    (0.0, 2)
  """
  t, v = _horizons_and_values(T, values, min_horizons=1)
  m = arrays.series("model", model, low=0, low_open=True)
  if m.shape != t.shape:
    raise ValueError(f"model must have shape {t.shape}, got {m.shape}")
  k = checks.integer("num_params", num_params, low=0)
  mean, se = _log_mean_se(v)
  res = np.log(mean) - np.log(m)
  ok = v.shape[0] > 1 and np.all(se > 0)
  z = res / se if ok else np.full(res.shape, np.nan)
  chi2 = float(np.sum(z * z)) if ok else float("nan")
  dof = t.size - k
  pv = _chi2_sf(chi2, dof) if ok and dof >= 1 else float("nan")
  return FitQuality(res, se, z, float(np.sqrt(np.mean(res * res))), chi2,
                    dof, pv)


class RateFit(NamedTuple):
  """A fit of ``A T^-p + B / T`` (or ``A T^-p``) with an interval for ``p``.

  Attributes:
    p: exponent of the slow term (a straight log-log line has slope
      ``-p``).
    a: ``A`` (``> 0``).
    b: ``B`` (``>= 0``; 0 for the pure power).
    ci_low, ci_high: bootstrap percentile interval of ``p`` (seeds
      resampled with replacement; each resample refitted, weights included).
    boot: the bootstrap values of ``p``.
    quality: ``goodness_of_fit`` of the fitted curve (``num_params`` 3, or 2
      for the pure power).
    inverse_t: whether the model has the ``B / T`` term.
    at_bound: whether ``p`` ended at an end of ``p_range`` (the interval is
      then cut there and means little).
    level: the confidence level.

  Example:
    >>> import numpy as np
    >>> T = np.array([100., 200., 400., 800.])
    >>> fit = rate_fit(T, 2 * T ** -0.5 + 30 / T, num_boot=10)
    >>> round(fit.p, 3), round(fit.b, 2), isinstance(fit, RateFit)
    (0.5, 30.0, True)
  """
  p: float
  a: float
  b: float
  ci_low: float
  ci_high: float
  boot: np.ndarray
  quality: FitQuality
  inverse_t: bool
  at_bound: bool
  level: float


_GRID = 1001


def _profile(P, t, y, w, inverse_t):
  """Objective and ``(a, b)`` of the best nonnegative ``a t^-p + b / t`` for
  every ``p`` in ``P``: minimises ``sum w^2 ((y - m) / y)^2``.

  ``y, w``: ``(..., K)``; ``P``: ``(G,)``; returns ``(..., G)`` arrays. For a
  fixed ``p`` the model is linear in ``(a, b)``: the 2x2 normal equations,
  with ``b`` clipped at 0 when the unconstrained ``b`` is negative.
  """
  u = t[None, :] ** -P[:, None]                       # (G, K)
  r = (w / y)[..., None, :]                           # (..., 1, K)
  U = u * r                                           # (..., G, K)
  tgt = w[..., None, :]
  c0 = np.sum(w * w, -1)[..., None]
  huu = np.sum(U * U, -1)
  hu = np.sum(U * tgt, -1)
  a1 = hu / huu
  f1 = c0 - hu * hu / huu                             # b = 0
  if not inverse_t:
    return f1, a1, np.zeros_like(a1)
  V = (r / t)                                         # (..., 1, K)
  hvv = np.sum(V * V, -1)
  hv = np.sum(V * tgt, -1)
  huv = np.sum(U * V, -1)
  det = huu * hvv - huv * huv
  good = det > 1e-10 * huu * hvv
  sdet = np.where(good, det, 1.0)
  a2 = (hu * hvv - hv * huv) / sdet
  b2 = (hv * huu - hu * huv) / sdet
  f2 = c0 - (a2 * hu + b2 * hv)
  use2 = good & (a2 > 0) & (b2 >= 0) & (f2 < f1)
  return (np.where(use2, f2, f1), np.where(use2, a2, a1),
          np.where(use2, b2, 0.0))


def _best_p(t, y, w, inverse_t, lo, hi):
  """Grid search over ``p`` with a parabolic step inside the best cell."""
  P = np.linspace(lo, hi, _GRID)
  f, _, _ = _profile(P, t, y, w, inverse_t)
  i = np.argmin(f, -1)
  inner = (i > 0) & (i < _GRID - 1)
  j = np.clip(i, 1, _GRID - 2)
  take = lambda k: np.take_along_axis(f, k[..., None], -1)[..., 0]  # noqa: E731
  fm, f0, fp = take(j - 1), take(j), take(j + 1)
  curv = fm - 2 * f0 + fp
  h = P[1] - P[0]
  step = np.where(curv > 0, 0.5 * h * (fm - fp) / np.where(curv > 0, curv,
                                                            1.0), 0.0)
  p = np.where(inner, P[j] + np.clip(step, -h, h), P[i])
  return p, ~inner


def rate_fit(T, values, *, inverse_t: bool = True, p_range=(0.0, 1.0),
             weighted: bool = True, num_boot: int = 2000,
             level: float = 0.95, seed: int = 0) -> RateFit:
  """Fits ``A T^-p + B / T`` (``inverse_t``) or ``A T^-p`` to the mean over
  seeds, with a bootstrap interval for ``p``.

  The bounds of ``bounds`` all have a slow term and a ``1/T`` term
  (staleness, the transient from ``w_0``), so a log-log plot of a measured
  rate is curved, and a straight line fitted over a range where the ``1/T``
  term still matters reports an exponent that mixes the two. This fit
  separates them. ``A, B >= 0``; ``p`` is searched on ``p_range`` (a grid of
  1001 points and a parabolic step; for ``p`` near 1 the two terms cannot
  be told apart).

  The fit minimises ``sum_k w_k^2 ((y_k - m_k) / y_k)^2``, ``y_k`` the mean
  over seeds and ``m_k`` the model: relative residuals, equal to log
  residuals to second order; with ``weighted`` (and at least two seeds)
  ``w_k = 1 / se_k``, ``se_k`` the standard error of ``log y_k``, so the
  objective is about the chi-square of ``goodness_of_fit``. The interval
  resamples the seeds with replacement and refits, weights included (as
  ``loglog_slope`` does for the line).

  Args:
    T: ``(K,)`` horizons (``> 0``, at least 3 distinct with ``inverse_t``,
      2 without).
    values: ``(S, K)`` measurements (``> 0``), one row per seed, or ``(K,)``.
    inverse_t: include the ``B / T`` term.
    p_range: ``(low, high)``, ``0 <= low < high``: where ``p`` is searched.
    weighted: weight horizons by ``1 / se`` of the log mean.
    num_boot: bootstrap resamples of the seeds.
    level: confidence level in ``(0, 1)``.
    seed: numpy seed of the bootstrap.

  Returns:
    A ``RateFit``.

  Example:
    >>> import numpy as np
    >>> T = np.array([250., 500., 1000., 2000., 4000.])
    >>> fit = rate_fit(T, 3 * T ** -0.4, inverse_t=False, num_boot=10)
    >>> round(fit.p, 4), round(fit.a, 4)
    (0.4, 3.0)
  """
  inv = bool(inverse_t)
  t_raw, v = _horizons_and_values(T, values, min_horizons=3 if inv else 2)
  try:
    lo, hi = (float(x) for x in p_range)
  except (TypeError, ValueError):
    raise ValueError(f"p_range must be a pair (low, high), got {p_range!r}"
                     ) from None
  if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
    raise ValueError(f"p_range must satisfy 0 <= low < high, got {p_range!r}")
  lv = float(checks.number("level", level, low=0, high=1, low_open=True,
                           high_open=True))
  nb = checks.integer("num_boot", num_boot, low=1)
  T0 = float(np.exp(np.mean(np.log(t_raw))))
  t = t_raw / T0                                      # for conditioning

  def weights(vv):
    mean, se = _log_mean_se(vv)
    if not weighted or vv.shape[-2] < 2:
      return mean, np.ones_like(mean)
    ok = np.all(se > 0, -1, keepdims=True)
    return mean, np.where(ok, 1.0 / np.where(se > 0, se, 1.0), 1.0)

  y, w = weights(v)
  p, edge = _best_p(t, y, w, inv, lo, hi)
  _, a, b = _profile(np.atleast_1d(p), t, y, w, inv)
  a, b, p = float(a[0]), float(b[0]), float(p)
  S = v.shape[0]
  rng = checks.rng(seed)
  idx = rng.integers(0, S, size=(nb, S))
  boot = np.empty(nb)
  for s in range(0, nb, 200):
    yb, wb = weights(v[idx[s:s + 200]])
    boot[s:s + 200], _ = _best_p(t, yb, wb, inv, lo, hi)
  ci = np.quantile(boot, [(1 - lv) / 2, (1 + lv) / 2])
  A, B = a * T0 ** p, b * T0
  model = A * t_raw ** -p + B / t_raw
  q = goodness_of_fit(t_raw, v, model, num_params=3 if inv else 2)
  return RateFit(p, A, B, float(ci[0]), float(ci[1]), boot, q, inv,
                 bool(edge), lv)
