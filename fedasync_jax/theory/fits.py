"""Comparing measurements with bounds: averages, fitted constants, log-log
slopes, and the variance of client sampling.

``weighted_average`` is the step-weighted average the FedAsync/AFL bounds
are on; ``fit_constant`` fits a bound's multiplicative constant;
``loglog_slope`` fits a rate with a bootstrap interval over seeds;
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
  m = arrays.finite("measured", measured, low=0, low_open=True).ravel()
  p = arrays.finite("predicted", predicted, low=0, low_open=True).ravel()
  if m.shape != p.shape:
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
  x = np.log(arrays.finite("T", T, low=0, low_open=True).ravel())
  if np.unique(x).size < 2:
    raise ValueError("T must hold at least two distinct horizons")
  v = arrays.finite("values", values, low=0, low_open=True)
  if v.ndim == 1:
    v = v[None]
  if v.ndim != 2 or v.shape[1] != x.size:
    raise ValueError(f"values must have shape (seeds, {x.size}), got "
                     f"{v.shape}")
  lv = float(checks.number("level", level, low=0, high=1, low_open=True,
                           high_open=True))
  nb = checks.integer("num_boot", num_boot, low=1)
  slope, icpt = _ols(x, np.log(v.mean(0)))
  per_seed, _ = _ols(x, np.log(v))
  S = v.shape[0]
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, S, size=(nb, S))
  boot, _ = _ols(x, np.log(v[idx].mean(1)))
  lo, hi = np.quantile(boot, [(1 - lv) / 2, (1 + lv) / 2])
  se = float(per_seed.std(ddof=1) / math.sqrt(S)) if S > 1 else float("nan")
  return SlopeFit(float(slope), float(icpt), float(lo), float(hi), per_seed,
                  float(per_seed.mean()), se, lv)


def sampling_variance(sigma2: float, m: int, num_clients: int, *,
                      replace: bool):
  """Closed-form variance of the mean of ``m`` sampled client updates.

  With ``sigma^2 = (1/N) sum_i ||u_i - u_bar||^2`` the population variance:
  ``sigma^2 / m`` with replacement and ``sigma^2 / m * (N - m) / (N - 1)``
  without (the AFL paper, Section 2.2).

  Example:
    >>> sampling_variance(1.0, 4, 10, replace=False)
    0.16666666666666666
  """
  s2 = float(checks.number("sigma2", sigma2, low=0))
  N = checks.integer("num_clients", num_clients, low=1)
  m = checks.integer("m", m, low=1)
  if replace:
    return s2 / m
  if m > N:
    raise ValueError(f"m must be <= num_clients ({N}) without replacement, "
                     f"got {m}")
  return 0.0 if N == 1 else s2 / m * (N - m) / (N - 1.0)


def empirical_sampling_variance(updates, m: int, *, replace: bool,
                                num_trials: int, seed: int = 0) -> float:
  """Monte-Carlo ``E||mean of m sampled rows - population mean||^2``.

  Args:
    updates: ``(N, d)`` client updates (e.g. ``client_gradients``).
    m: clients per sample.
    replace: sample with (True) or without (False) replacement.
    num_trials: number of samples.
    seed: numpy seed.

  Example:
    >>> import numpy as np
    >>> u = np.arange(4.0)[:, None]
    >>> empirical_sampling_variance(u, 4, replace=False, num_trials=3)
    0.0
  """
  u = np.asarray(updates, np.float64)
  if u.ndim == 1:
    u = u[:, None]
  N = u.shape[0]
  m = checks.integer("m", m, low=1)
  nt = checks.integer("num_trials", num_trials, low=1)
  if not replace and m > N:
    raise ValueError(f"m must be <= the number of updates ({N}) without "
                     f"replacement, got {m}")
  rng = np.random.default_rng(seed)
  if replace:
    idx = rng.integers(0, N, size=(nt, m))
  else:
    idx = np.argsort(rng.random((nt, N)), axis=1)[:, :m]
  dev = u[idx].mean(1) - u.mean(0)
  return float(np.mean(np.sum(dev ** 2, -1)))
