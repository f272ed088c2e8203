"""Federated problems with known constants: ``least_squares``, ``nonconvex``.

``least_squares`` builds a federated least-squares problem whose smoothness
``L`` (largest eigenvalue of the global Hessian), heterogeneity ``zeta^2``
(the AFL paper's Assumption 7: ``(1/N) sum_i ||grad F_i(w*)||^2``;
Forootani and Iervolino 2025, arXiv:2508.01675), minibatch gradient
variance ``sigma^2`` (computed exactly for the client's sampling) and
optimum ``w*`` are known; ``nonconvex`` adds a non-convex,
bounded-curvature term ``nu * sum_k psi(w_k - w*_k)``,
``psi(t) = t^2 / (1 + t^2)`` that keeps ``w*`` the global minimiser and
makes ``L`` exact. The data are built in ``construction``; ``measures``
measures a problem's quantities at any ``w``.

Example:
  >>> import jax.numpy as jnp
  >>> p = least_squares(num_clients=8, examples_per_client=12, dim=3,
  ...                   lipschitz=2.0, zeta2=0.5, batch_size=4, seed=0)
  >>> round(p.lipschitz, 6), round(p.zeta2, 6)
  (2.0, 0.5)
  >>> float(jnp.sum(p.full_grad(jnp.asarray(p.w_star)) ** 2)) < 1e-10
  True
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax import data as data_lib
from fedasync_jax.core import checks
from fedasync_jax.theory.construction import (_build_lsq, _constants,
                                              _dpsi, _lsq_loss,
                                              _per_example_var_factor, _psi)

SHIFTS = ("targets", "linear")
"""How heterogeneity is made (``Problem.shift``)."""


class Problem(NamedTuple):
  """A federated problem with known constants.

  The global objective is the uniform mean over the ``N`` clients,
  ``F(w) = (1/N) sum_i F_i(w)``, and ``F_i`` is the mean of the client's
  per-example losses, which is exactly what ``loss(params, x, y, mask)``
  returns on the client's data with an all-ones mask (the client contract
  of ``client.local_update``). Every client holds the same number of
  examples ``n``, so the uniform and the example-weighted means agree.

  All constants are computed in float64 from the data *as stored* (after
  the cast to ``dtype``), so they are exact for the stored problem.

  Attributes:
    data: the clients' examples as a ``data.ClientDataset``.
    loss: ``loss(params, x, y, mask) -> mean over masked examples``.
    lipschitz: ``L``, the smoothness constant: the largest eigenvalue of
      the global Hessian (least squares), or ``sup_w ||Hess F(w)||`` (non-
      convex; attained at ``w*``).
    mu: the smallest eigenvalue of the quadratic part's Hessian.
    sigma2: ``sigma^2``: the variance of one local minibatch gradient at
      ``w*``, averaged over clients: ``(1/N) sum_i E_B ||grad_B F_i(w*) -
      grad F_i(w*)||^2`` for ``B`` a uniformly random ``batch_size``-subset
      of the client's examples (what one local step of ``local_update``
      draws).
    zeta2: ``zeta^2 = (1/N) sum_i ||grad F_i(w*)||^2``.
    w_star: the global minimiser ``w*`` (float64 numpy).
    f_star: ``F(w*)``.
    full_loss: jit-traceable ``w -> F(w)``.
    full_grad: jit-traceable ``w -> grad F(w)``.
    metrics: jit-traceable ``w -> {"grad_sq": ||grad F(w)||^2,
      "gap": F(w) - F*}`` (an ``eval_fn`` for the executor).
    batch_size: the minibatch size ``sigma2`` refers to.
    hessian: the quadratic part's Hessian ``(1/(N n)) sum_j a_j a_j^T``
      (float64, ``(d, d)``).
    client_lipschitz: ``max_i L_i``, the largest client smoothness.
    nu: weight of the non-convex term (0 for least squares).
    shift: how heterogeneity is made: ``"targets"`` (pure least squares)
      or ``"linear"`` (per-client linear term, ``d`` extra feature columns).
    name: a short description.

  Example:
    >>> p = least_squares(num_clients=3, examples_per_client=4, dim=2)
    >>> p.num_clients, p.examples_per_client, p.dim
    (3, 4, 2)
  """
  data: data_lib.ClientDataset
  loss: Callable
  lipschitz: float
  mu: float
  sigma2: float
  zeta2: float
  w_star: np.ndarray
  f_star: float
  full_loss: Callable
  full_grad: Callable
  metrics: Callable
  batch_size: int
  hessian: np.ndarray
  client_lipschitz: float
  nu: float = 0.0
  shift: str = "targets"
  name: str = ""

  @property
  def num_clients(self) -> int:
    return self.data.num_clients

  @property
  def examples_per_client(self) -> int:
    return int(self.data.counts[0])

  @property
  def dim(self) -> int:
    return int(self.w_star.shape[0])


def _make_problem(x, y, N, n, dim, linear, batch_size, nu, center, dtype,
                  name):
  ds = data_lib.ClientDataset(x, y, np.arange(N, dtype=np.int64) * n,
                              np.full(N, n, np.int64))
  c = _constants(x, y, N, n, dim, linear, nu, center)
  jdtype = jax.dtypes.canonicalize_dtype(dtype)
  hess_j = jnp.asarray(c["hess"], jdtype)
  w_star_j = jnp.asarray(c["w_star"], jdtype)
  f_star = c["f_star"]

  def gap(w):
    # F is quadratic (+ the psi term) with grad F(w*) = 0, so
    # F(w) - F* = (1/2)(w - w*)^T H (w - w*) (+ nu sum psi) exactly.
    e = w - w_star_j.astype(w.dtype)
    g = 0.5 * e @ (hess_j.astype(w.dtype) @ e)
    if nu:
      g = g + nu * jnp.sum(_psi(e))
    return g

  def full_loss(w):
    return gap(w) + f_star

  def full_grad(w):
    e = w - w_star_j.astype(w.dtype)
    g = hess_j.astype(w.dtype) @ e
    if nu:
      g = g + nu * _dpsi(e)
    return g

  def metrics(w):
    g = full_grad(w)
    return {"grad_sq": jnp.sum(g * g), "gap": gap(w)}

  sigma2 = float(np.mean(c["spread"])) * _per_example_var_factor(
      n, batch_size)
  loss = _lsq_loss(dim, linear, nu,
                   jnp.asarray(center, jdtype) if nu else None)
  return Problem(
      data=ds, loss=loss, lipschitz=c["lam_max"] + 2.0 * nu, mu=c["lam_min"],
      sigma2=sigma2, zeta2=c["zeta2"], w_star=c["w_star"], f_star=f_star,
      full_loss=full_loss, full_grad=full_grad, metrics=metrics,
      batch_size=int(batch_size), hessian=c["hess"],
      client_lipschitz=c["client_l"], nu=float(nu), shift="linear" if linear
      else "targets", name=name)


def _check_problem_args(num_clients, examples_per_client, dim, lipschitz, mu,
                        zeta2, sigma2, batch_size, shift):
  N = checks.integer("num_clients", num_clients, low=1)
  n = checks.integer("examples_per_client", examples_per_client, low=1)
  d = checks.integer("dim", dim, low=1)
  L = float(checks.number("lipschitz", lipschitz, low=0, low_open=True))
  m = L / 10.0 if mu is None else float(
      checks.number("mu", mu, low=0, low_open=True))
  if m > L:
    raise ValueError(f"mu must be in (0, lipschitz={L}], got {mu!r}")
  z = float(checks.number("zeta2", zeta2, low=0))
  if N == 1 and z > 0:
    raise ValueError(f"zeta2 must be 0 with a single client, got {zeta2!r}")
  s = None if sigma2 is None else float(
      checks.number("sigma2", sigma2, low=0))
  b = checks.integer("batch_size", batch_size, low=1)
  if b > n:
    raise ValueError(f"batch_size must be in [1, examples_per_client={n}], "
                     f"got {batch_size!r}")
  if n < d:
    raise ValueError(f"examples_per_client must be >= dim ({d}) so that each "
                     f"client's rows have full rank, got {n}")
  checks.choice("shift", shift, SHIFTS)
  return N, n, d, L, m, z, s, b


def _float_dtype(dtype) -> np.dtype:
  """``dtype`` as float32 or float64 (an integer dtype rounded the data and
  changed every constant)."""
  try:
    dt = np.dtype(dtype)
  except TypeError:
    dt = None
  if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
    raise ValueError(f"dtype must be float32 or float64, got "
                     f"{checks.show(dtype)}")
  return dt


def least_squares(*, num_clients: int, examples_per_client: int, dim: int,
                  lipschitz: float = 1.0, mu: Optional[float] = None,
                  zeta2: float = 1.0, sigma2: Optional[float] = None,
                  batch_size: int = 1, shift: str = "targets",
                  w_star_scale: float = 1.0, seed: int = 0,
                  dtype=np.float32) -> Problem:
  """A federated least-squares problem with known ``L``, ``zeta^2``,
  ``sigma^2`` and ``w*``.

  Client ``i`` holds ``n`` rows ``a_j`` and targets ``y_j``; its objective is
  ``F_i(w) = (1/n) sum_j (1/2)(a_j . w - y_j)^2 = ||A_i w - b_i||^2 / (2n)``
  (plus ``g_i . w`` with ``shift="linear"``), and ``F = (1/N) sum_i F_i``.
  Construction (numpy, ``seed``):

  * the global Hessian ``H = (1/(N n)) sum_j a_j a_j^T`` is set exactly to
    ``U diag(lambda) U^T`` with ``lambda`` log-spaced from ``lipschitz``
    down to ``mu`` (``U`` random orthogonal), by whitening Gaussian rows:
    ``L = lambda_max(H)``; client Hessians differ (random rows);
  * ``w* ~ N(0, w_star_scale^2 / d)``; target local gradients ``g_i`` at
    ``w*`` are random, mean zero, with ``(1/N) sum ||g_i||^2 = zeta2``;
  * ``shift="targets"`` (pure least squares): ``b_i = A_i w* + e_i`` with
    the residual ``e_i`` of least weighted norm that makes ``grad F_i(w*)
    = g_i``. Rows of least squares can only push along themselves, so this
    also creates per-example gradient spread: ``sigma2`` has a floor
    (reported by the ``ValueError``), about ``5 zeta2`` for ``n = 2 d``,
    ``b = n / 4``;
  * ``shift="linear"``: ``b_i = A_i w* (+ noise)`` and a per-client linear
    term ``g_i . w`` (stored as ``d`` extra feature columns, equal on all
    the client's examples, so the loss is still a mean over examples):
    ``zeta2`` adds no minibatch noise and ``sigma2`` can be any value;
  * noise residuals orthogonal to ``A_i``'s columns (so they do not move
    ``grad F_i(w*)``) are scaled so that the minibatch variance at ``w*``
    equals ``sigma2`` (``None``: no noise residual; with
    ``shift="targets"`` the problem's ``sigma2`` is then the floor above,
    which ill-conditioned or small problems make large: 952 with
    ``N = 3, n = d = 5, L = 3, mu = 0.3, zeta2 = 0.2, b = 1``, seed 1; read
    ``p.sigma2``).

  The data are cast to ``dtype`` and every constant is then recomputed in
  float64 from the stored data (so ``w*`` is the exact minimiser of the
  stored problem; the requested values are matched up to ``dtype``
  rounding).

  Args:
    num_clients: ``N >= 1``.
    examples_per_client: ``n >= dim`` (``> dim`` for a noise residual).
    dim: ``d >= 1`` (the parameter dimension).
    lipschitz: ``L > 0``.
    mu: smallest Hessian eigenvalue, ``0 < mu <= L`` (default ``L / 10``).
    zeta2: heterogeneity ``>= 0``.
    sigma2: minibatch gradient variance at ``w*`` for ``batch_size`` (or
      ``None``: no noise beyond what ``zeta2`` makes; see ``p.sigma2``).
    batch_size: the local minibatch size ``1 <= b <= n``.
    shift: ``"targets"`` or ``"linear"`` (how heterogeneity is made).
    w_star_scale: the scale of ``w*``.
    seed: numpy seed.
    dtype: dtype of the stored data.

  Returns:
    A ``Problem``.

  Example:
    >>> p = least_squares(num_clients=4, examples_per_client=10, dim=2,
    ...                   lipschitz=1.0, zeta2=0.1, sigma2=0.2,
    ...                   batch_size=2, shift="linear", dtype=np.float64)
    >>> round(p.sigma2, 8), round(p.zeta2, 8), round(p.lipschitz, 8)
    (0.2, 0.1, 1.0)
  """
  N, n, d, L, m, z, s, b = _check_problem_args(
      num_clients, examples_per_client, dim, lipschitz, mu, zeta2, sigma2,
      batch_size, shift)
  dtype = _float_dtype(dtype)
  scale = float(checks.number("w_star_scale", w_star_scale, low=0))
  linear = shift == "linear"
  x, y = _build_lsq(num_clients=N, examples_per_client=n, dim=d,
                    lipschitz=L, mu=m, zeta2=z, sigma2=s, batch_size=b,
                    w_star_scale=scale, linear=linear, seed=seed)
  return _make_problem(x.astype(dtype), y.astype(dtype), N, n, d, linear, b,
                       0.0, None, dtype,
                       f"least_squares(N={N}, n={n}, d={d}, shift={shift})")


def nonconvex(*, num_clients: int, examples_per_client: int, dim: int,
              lipschitz: float = 1.0, mu: Optional[float] = None,
              nu: float = 1.0, zeta2: float = 1.0,
              sigma2: Optional[float] = None, batch_size: int = 1,
              shift: str = "targets", w_star_scale: float = 1.0,
              seed: int = 0, dtype=np.float32) -> Problem:
  """A non-convex federated problem with exact ``L`` and known ``w*``.

  ``F_i(w) = Q_i(w) + nu * sum_k psi(w_k - w*_k)`` with ``Q_i`` the
  objective of ``least_squares`` (whose Hessian has largest eigenvalue
  ``lipschitz`` and smallest ``mu``) and ``psi(t) = t^2 / (1 + t^2)``, whose
  curvature ``psi''(t) = (2 - 6 t^2) / (1 + t^2)^3`` lies in ``[-1/2, 2]``.
  Hence:

  * ``Hess F(w) = H + nu diag(psi''(w - w*))``: its norm is at most
    ``lambda_max(H) + 2 nu``, attained at ``w*``, so
    ``L = lipschitz + 2 nu`` exactly;
  * ``F(w) - F* = (1/2)(w - w*)^T H (w - w*) + nu sum psi >= 0``: ``w*`` is
    the unique global minimiser and ``F* = Q(w*)``;
  * the smallest curvature over all ``w`` is ``mu - nu / 2`` (all
    ``|w_k - w*_k| = 1``): ``F`` is non-convex iff ``nu > 2 mu``;
  * the extra term is the same for every example, so ``zeta^2`` and
    ``sigma^2`` (at ``w*``) are those of the least-squares part.

  The client loss adds ``nu * sum psi(w - w*)`` to the mean of the
  per-example losses (so it is still a mean over the masked examples).
  Arguments as in ``least_squares``, plus ``nu >= 0``.

  Example:
    >>> p = nonconvex(num_clients=4, examples_per_client=6, dim=2,
    ...               lipschitz=1.0, mu=0.1, nu=1.0, zeta2=0.1,
    ...               batch_size=2, dtype=np.float64)
    >>> round(p.lipschitz, 8), p.mu - p.nu / 2 < 0
    (3.0, True)
  """
  N, n, d, L, m, z, s, b = _check_problem_args(
      num_clients, examples_per_client, dim, lipschitz, mu, zeta2, sigma2,
      batch_size, shift)
  dtype = _float_dtype(dtype)
  nu = float(checks.number("nu", nu, low=0))
  scale = float(checks.number("w_star_scale", w_star_scale, low=0))
  linear = shift == "linear"
  x, y = _build_lsq(num_clients=N, examples_per_client=n, dim=d,
                    lipschitz=L, mu=m, zeta2=z, sigma2=s, batch_size=b,
                    w_star_scale=scale, linear=linear, seed=seed)
  x, y = x.astype(dtype), y.astype(dtype)
  c = _constants(x, y, N, n, d, linear, 0.0, None)
  center = c["w_star"].astype(dtype).astype(np.float64)
  return _make_problem(x, y, N, n, d, linear, b, nu, center, dtype,
                       f"nonconvex(N={N}, n={n}, d={d}, nu={nu}, "
                       f"shift={shift})")

