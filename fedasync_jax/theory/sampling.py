"""The variance of client sampling with and without replacement.

``sampling_variance`` is the closed form for the mean of ``m`` sampled
client updates (the AFL paper, Forootani and Iervolino 2025,
arXiv:2508.01675, Section 2.2) and ``empirical_sampling_variance`` its
Monte-Carlo check.

Example:
  >>> sampling_variance(1.0, 4, 10, replace=True)
  0.25
"""

from __future__ import annotations

import numpy as np

from fedasync_jax.core import checks


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
  rng = checks.rng(seed)
  if replace:
    idx = rng.integers(0, N, size=(nt, m))
  else:
    idx = np.argsort(rng.random((nt, N)), axis=1)[:, :m]
  dev = u[idx].mean(1) - u.mean(0)
  return float(np.mean(np.sum(dev ** 2, -1)))
