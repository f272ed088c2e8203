"""How the problems of ``problems`` are built, and their exact constants.

Numpy, float64: ``_build_lsq`` makes features and targets whose global
Hessian, heterogeneity ``zeta^2`` and minibatch variance ``sigma^2`` are
the requested ones (see ``problems.least_squares``); ``_constants``
recomputes every constant exactly from the data as stored. Also the client
loss (``_lsq_loss``) and the non-convex term ``psi(t) = t^2 / (1 + t^2)``.
These are the internals of ``problems`` and ``measures``; the theory
package does not re-export them.

Example:
  >>> _per_example_var_factor(4, 2), _per_example_var_factor(4, 4)
  (0.3333333333333333, 0.0)
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks


def _psi(t):
  """``psi(t) = t^2 / (1 + t^2)``, curvature in ``[-1/2, 2]``."""
  return t * t / (1.0 + t * t)


def _dpsi(t):
  """``psi'(t)``."""
  return 2.0 * t / (1.0 + t * t) ** 2


def _split(x, dim: int, linear: bool):
  """Rows ``a`` and per-example linear terms ``z`` (zeros if not linear)."""
  if linear:
    return x[..., :dim], x[..., dim:]
  return x, None


def _lsq_loss(dim: int, linear: bool, nu: float, center):
  """The client loss: mean over masked examples of ``(1/2)(a.w - y)^2``
  (``+ z.w`` with the linear shift; ``+ nu sum psi(w - center)``)."""

  def loss(w, x, y, mask):
    if jnp.shape(w) != (dim,):  # a (dim, 1) column broadcast silently
      raise ValueError(f"this problem's parameters w must have shape "
                       f"({dim},), got {jnp.shape(w)}")
    a, z = _split(x, dim, linear)
    per = 0.5 * (a @ w - y) ** 2
    if linear:
      per = per + z @ w
    mean = jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    if nu:
      mean = mean + nu * jnp.sum(_psi(w - center.astype(w.dtype)))
    return mean
  return loss


def _orthogonal(rng, d):
  q, r = np.linalg.qr(rng.normal(size=(d, d)))
  return q * np.sign(np.diag(r))


def _sqrtm(sym):
  vals, vecs = np.linalg.eigh(sym)
  return (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T


def _inv_sqrtm(sym):
  vals, vecs = np.linalg.eigh(sym)
  return (vecs / np.sqrt(vals)) @ vecs.T


def _per_example_var_factor(n: int, b: int) -> float:
  """``E||mean of a b-subset - mean||^2 = factor * (1/n) sum ||g_j - g||^2``
  for a uniformly random b-subset of n items (without replacement)."""
  if n == 1:
    return 0.0
  return (n - b) / (b * (n - 1.0))


def _constants(x, y, N, n, dim, linear, nu, center):
  """Exact float64 constants of the stored problem."""
  x64 = x.astype(np.float64).reshape(N, n, -1)
  a, z = _split(x64, dim, linear)
  ys = y.astype(np.float64).reshape(N, n)
  hess_i = np.einsum("inj,ink->ijk", a, a) / n
  hess = hess_i.mean(0)
  rhs = np.einsum("inj,in->j", a, ys) / (N * n)
  if linear:
    rhs = rhs - z.mean((0, 1))
  w_star = np.linalg.solve(hess, rhs)
  if nu:
    # The stored centre of the non-convex term: the quadratic's minimiser
    # rounded to the data dtype (the same point in float64).
    w_star = np.asarray(center, np.float64)
  resid = np.einsum("inj,j->in", a, w_star) - ys          # a.w* - y
  g_ex = a * resid[..., None]                              # per example
  per_loss = 0.5 * resid ** 2
  if linear:
    g_ex = g_ex + z
    per_loss = per_loss + np.einsum("inj,j->in", z, w_star)
  g_i = g_ex.mean(1)                                       # grad F_i(w*)
  eig = np.linalg.eigvalsh(hess)
  spread = np.mean(np.sum((g_ex - g_i[:, None]) ** 2, -1), 1)  # per client
  client_l = float(np.max(np.linalg.eigvalsh(hess_i)[:, -1])) + 2.0 * nu
  return dict(hess=hess, w_star=w_star, lam_max=float(eig[-1]),
              lam_min=float(eig[0]), f_star=float(per_loss.mean()), g_i=g_i,
              zeta2=float(np.mean(np.sum(g_i ** 2, -1))), spread=spread,
              client_l=client_l)


def _build_lsq(*, num_clients, examples_per_client, dim, lipschitz, mu,
               zeta2, sigma2, batch_size, w_star_scale, linear, seed):
  """Float64 features and targets with the requested constants (see
  ``least_squares``)."""
  N, n, d = num_clients, examples_per_client, dim
  rng = checks.rng(seed)
  # Target Hessian: eigenvalues log-spaced in [mu, L], random eigenvectors.
  lam = np.geomspace(lipschitz, mu, d) if d > 1 else np.array([lipschitz])
  u = _orthogonal(rng, d)
  h_target = (u * lam) @ u.T
  g = rng.normal(size=(N, n, d))
  s = np.einsum("inj,ink->jk", g, g) / (N * n)
  a = g @ (_inv_sqrtm(s) @ _sqrtm(h_target))     # (1/(N n)) A^T A = H
  w_star = w_star_scale * rng.normal(size=d) / math.sqrt(d)
  # Heterogeneity: local gradients at w* are g_i, mean zero, with
  # (1/N) sum ||g_i||^2 = zeta2.
  gi = rng.normal(size=(N, d))
  gi -= gi.mean(0)
  norm = np.mean(np.sum(gi ** 2, -1))
  gi = gi * (math.sqrt(zeta2 / norm) if norm > 0 and zeta2 > 0 else 0.0)
  an = np.sum(a ** 2, -1)
  if linear:
    # A per-client linear term g_i . w, stored as extra feature columns
    # (the same on all the client's examples): no within-client spread.
    e_h = np.zeros((N, n))
  else:
    # e_h = -n W^-1 A_i (A_i^T W^-1 A_i)^{-1} g_i with W = diag(||a_j||^2)
    # gives A_i^T e_h = -n g_i, i.e. grad F_i(w*) = g_i, with the least
    # per-example gradient spread sum_j ||a_j||^2 e_j^2 (the smallest sigma2
    # floor); it is W-orthogonal to the noise below.
    wa = a / an[..., None]
    wgram = np.einsum("inj,ink->ijk", wa, a)
    e_h = -n * np.einsum("inj,ij->in", wa,
                         np.linalg.solve(wgram, gi[..., None])[..., 0])
  # Noise: residuals orthogonal to the client's columns leave grad F_i(w*)
  # unchanged and only add minibatch variance.
  e_n = np.zeros((N, n))
  if n > d:
    gram = np.einsum("inj,ink->ijk", a, a)
    zz = rng.normal(size=(N, n))
    proj = np.einsum("inj,ij->in", a, np.linalg.solve(
        gram, np.einsum("inj,in->ij", a, zz)[..., None])[..., 0])
    e_n = zz - proj
  scale = 0.0
  if sigma2 is not None:
    factor = _per_example_var_factor(n, batch_size)
    # The per-example spread at w*, mean over clients, is
    # qa s^2 + qc (qc: the spread that zeta2 alone creates; the cross term
    # vanishes by W-orthogonality).
    qa = float(np.mean(an * e_n ** 2))
    qc = float(np.mean(an * e_h ** 2) - (0.0 if linear else
                                          np.mean(np.sum(gi ** 2, -1))))
    floor = qc * factor
    if sigma2 > 0 and factor == 0.0:
      raise ValueError(f"sigma2 must be 0 when batch_size equals "
                       f"examples_per_client ({n}), got {sigma2!r}")
    if factor > 0.0:
      if sigma2 < floor * (1 - 1e-12) or (qa <= 0 and sigma2 > floor * (
          1 + 1e-12)):
        why = ("the variance that zeta2 alone creates with "
               "shift='targets'; shift='linear' has none")
        if qa <= 0:  # no room for noise: examples_per_client <= dim
          raise ValueError(
              f"sigma2 must be {floor:.6g} for this problem ({why}; with "
              f"examples_per_client ({n}) <= dim ({d}) no other value is "
              f"possible: give sigma2=None, or more examples per client), "
              f"got {sigma2!r}")
        raise ValueError(f"sigma2 must be >= {floor:.6g} for this problem "
                         f"({why}), got {sigma2!r}")
      if qa > 0:
        scale = math.sqrt(max(sigma2 / factor - qc, 0.0) / qa)
  e = e_h + scale * e_n
  y = np.einsum("inj,j->in", a, w_star) + e
  x = a.reshape(N * n, d)
  if linear:
    x = np.concatenate([x, np.repeat(gi, n, axis=0)], -1)
  return x, y.reshape(N * n)

