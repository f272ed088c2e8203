"""Theory lab: problems with known constants, exact tracking, and bounds.

Three parts, all pure functions (numpy for set-up, jit-traceable JAX for
anything that runs inside a simulation):

1. **Problems with known constants.** ``least_squares`` builds a federated
   least-squares problem whose smoothness ``L`` (largest eigenvalue of the
   global Hessian), heterogeneity ``zeta^2`` (the AFL paper's Assumption 7:
   ``(1/N) sum_i ||grad F_i(w*)||^2``), minibatch gradient variance
   ``sigma^2`` (computed exactly for the client's sampling) and optimum
   ``w*`` are known; ``nonconvex`` adds a non-convex, bounded-curvature term
   ``nu * sum_k psi(w_k - w*_k)``, ``psi(t) = t^2 / (1 + t^2)`` that keeps
   ``w*`` the global minimiser and makes ``L`` exact.
2. **Exact tracking.** ``metrics_fn`` gives the exact ``||grad F(w)||^2`` and
   ``F(w) - F*`` for the executor's ``eval_fn`` (``eval_every=1``: every
   version); ``staleness_stats`` reads ``tau_max`` and ``tau_avg`` from a
   run; ``tracker`` / ``track`` is a small pure-JAX runner (``lax.scan`` over
   the schedule's arrivals, one client at a time, with a ring buffer of the
   last ``tau_max + 1`` server versions) that also measures the drift
   ``||w_t - w_{t - tau}||^2`` of every update (the AFL paper's Definition 1
   and Assumption 4); it equals the reference simulator.
3. **Bounds as functions** of a run's constants, so that measured and
   predicted curves can be drawn together: the rates of Koloskova, Stich and
   Jaggi, the weighted-average bound of delayed SGD (the structure of Lian
   et al.'s Theorem 1, used by FedAsync/AFL-style ``O(1/sqrt(T))``
   analyses), a drift bound, and the closed forms of client sampling with and
   without replacement (the AFL paper, Section 2.2).

The ``O()`` of the papers hides numeric constants. Every bound here states
its formula exactly, with the hidden constants set to 1, and takes one
multiplicative constant ``c`` (default 1) that ``fit_constant`` can fit to
measurements. See each function for what is set to what.

Papers:

* Koloskova, Stich, Jaggi 2022, "Sharper Convergence Guarantees for
  Asynchronous SGD for Distributed and Federated Learning",
  arXiv:2206.08307.
* Lian, Huang, Li, Liu 2015, "Asynchronous Parallel Stochastic Gradient for
  Nonconvex Optimization", arXiv:1506.08272.
* Xie, Koyejo, Gupta 2019, "Asynchronous Federated Optimization" (FedAsync),
  arXiv:1903.03934.
* Forootani, Iervolino 2025, "Asynchronous Federated Learning with non-convex
  client objective functions and heterogeneous dataset" (AFL),
  arXiv:2508.01675.

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

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import tree as tree_lib
from fedasync_jax import data as data_lib
from fedasync_jax.sim import scheduler as sched_lib
from fedasync_jax.core.client import ClientHParams, ClientRef, ClientUpdate
from fedasync_jax.core.types import RunResult, ServerRule
from fedasync_jax.sim.tasks import task_hparams
from fedasync_jax.sim.sweep import member_keys

Params = Any


# --------------------------------------------------------------------------
# Validation helpers.
# --------------------------------------------------------------------------

def _num(name: str, value, *, low: Optional[float] = None,
         high: Optional[float] = None, strict_low: bool = False) -> float:
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number, got {value!r}") from None
  if not math.isfinite(v):
    raise ValueError(f"{name} must be finite, got {value!r}")
  if low is not None and (v <= low if strict_low else v < low):
    op = ">" if strict_low else ">="
    raise ValueError(f"{name} must be {op} {low}, got {value!r}")
  if high is not None and v > high:
    raise ValueError(f"{name} must be <= {high}, got {value!r}")
  return v


def _int(name: str, value, *, low: int) -> int:
  if isinstance(value, bool) or not isinstance(
      value, (int, np.integer)) or value < low:
    raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
  return int(value)


def _arr(name: str, value, *, low: Optional[float] = None,
         strict_low: bool = False) -> np.ndarray:
  a = np.asarray(value, dtype=np.float64)
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name} must be finite, got {value!r}")
  if low is not None:
    bad = a <= low if strict_low else a < low
    if np.any(bad):
      op = ">" if strict_low else ">="
      raise ValueError(f"{name} must be {op} {low} everywhere, got "
                       f"{a[bad].ravel()[0]!r}")
  return a


# --------------------------------------------------------------------------
# 1. Problems with known constants.
# --------------------------------------------------------------------------

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


def _psi(t):
  return t * t / (1.0 + t * t)


def _dpsi(t):
  return 2.0 * t / (1.0 + t * t) ** 2


SHIFTS = ("targets", "linear")


def _split(x, dim: int, linear: bool):
  """Rows ``a`` and per-example linear terms ``z`` (zeros if not linear)."""
  if linear:
    return x[..., :dim], x[..., dim:]
  return x, None


def _lsq_loss(dim: int, linear: bool, nu: float, center):
  """The client loss: mean over masked examples of ``(1/2)(a.w - y)^2``
  (``+ z.w`` with the linear shift; ``+ nu sum psi(w - center)``)."""

  def loss(w, x, y, mask):
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


def _build_lsq(*, num_clients, examples_per_client, dim, lipschitz, mu,
               zeta2, sigma2, batch_size, w_star_scale, linear, seed):
  """Float64 features and targets with the requested constants (see
  ``least_squares``)."""
  N, n, d = num_clients, examples_per_client, dim
  rng = np.random.default_rng(seed)
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
        hint = ("" if n > d else "; with examples_per_client <= dim it is "
                "the only possible value")
        raise ValueError(
            f"sigma2 must be >= {floor:.6g} for this problem (the variance "
            f"that zeta2 alone creates with shift='targets'; "
            f"shift='linear' has none{hint}), got {sigma2!r}")
      if qa > 0:
        scale = math.sqrt(max(sigma2 / factor - qc, 0.0) / qa)
  e = e_h + scale * e_n
  y = np.einsum("inj,j->in", a, w_star) + e
  x = a.reshape(N * n, d)
  if linear:
    x = np.concatenate([x, np.repeat(gi, n, axis=0)], -1)
  return x, y.reshape(N * n)


def _check_problem_args(num_clients, examples_per_client, dim, lipschitz, mu,
                        zeta2, sigma2, batch_size, shift):
  N = _int("num_clients", num_clients, low=1)
  n = _int("examples_per_client", examples_per_client, low=1)
  d = _int("dim", dim, low=1)
  L = _num("lipschitz", lipschitz, low=0.0, strict_low=True)
  m = L / 10.0 if mu is None else _num("mu", mu, low=0.0, strict_low=True)
  if m > L:
    raise ValueError(f"mu must be in (0, lipschitz={L}], got {mu!r}")
  z = _num("zeta2", zeta2, low=0.0)
  if N == 1 and z > 0:
    raise ValueError(f"zeta2 must be 0 with a single client, got {zeta2!r}")
  s = None if sigma2 is None else _num("sigma2", sigma2, low=0.0)
  b = _int("batch_size", batch_size, low=1)
  if b > n:
    raise ValueError(f"batch_size must be in [1, examples_per_client={n}], "
                     f"got {batch_size!r}")
  if n < d:
    raise ValueError(f"examples_per_client must be >= dim ({d}) so that each "
                     f"client's rows have full rank, got {n}")
  if shift not in SHIFTS:
    raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")
  return N, n, d, L, m, z, s, b


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
    equals ``sigma2`` (``None``: no noise residual).

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
      ``None``).
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
  scale = _num("w_star_scale", w_star_scale, low=0.0)
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
  nu = _num("nu", nu, low=0.0)
  scale = _num("w_star_scale", w_star_scale, low=0.0)
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


def client_gradients(problem: Problem, w) -> jax.Array:
  """Full local gradients ``grad F_i(w)`` of every client, ``(N, d)``.

  Computed from the stored examples with the client loss (jit-traceable).

  Example:
    >>> p = least_squares(num_clients=3, examples_per_client=4, dim=2,
    ...                   dtype=np.float64)
    >>> client_gradients(p, jnp.asarray(p.w_star)).shape
    (3, 2)
  """
  N, n = problem.num_clients, problem.examples_per_client
  x = jnp.asarray(problem.data.x).reshape(N, n, -1)
  y = jnp.asarray(problem.data.y).reshape(N, n)
  w = jnp.asarray(w, x.dtype)
  ones = jnp.ones((n,), x.dtype)
  return jax.vmap(lambda xi, yi: jax.grad(problem.loss)(w, xi, yi, ones))(
      x, y)


def heterogeneity(problem: Problem, w) -> jax.Array:
  """``(1/N) sum_i ||grad F_i(w) - grad F(w)||^2`` (``= zeta^2`` at ``w*``).

  Example:
    >>> p = least_squares(num_clients=5, examples_per_client=4, dim=2,
    ...                   zeta2=0.3, dtype=np.float64)
    >>> round(float(heterogeneity(p, jnp.asarray(p.w_star))), 5)
    0.3
  """
  g = client_gradients(problem, w)
  return jnp.mean(jnp.sum((g - g.mean(0, keepdims=True)) ** 2, -1))


def minibatch_variance(problem: Problem, w, batch_size: Optional[int] = None
                       ) -> jax.Array:
  """Exact variance of a local minibatch gradient at ``w``, mean over clients.

  ``(1/N) sum_i (n - b) / (b (n - 1)) * (1/n) sum_j ||grad l_j(w) -
  grad F_i(w)||^2``: a uniformly random ``b``-subset drawn without
  replacement (as every batch of ``client.local_update`` is). At ``w*`` and
  ``b = problem.batch_size`` this is ``problem.sigma2``.

  Example:
    >>> p = least_squares(num_clients=3, examples_per_client=6, dim=2,
    ...                   sigma2=0.5, batch_size=3, shift="linear",
    ...                   dtype=np.float64)
    >>> round(float(minibatch_variance(p, jnp.asarray(p.w_star))), 5)
    0.5
  """
  n = problem.examples_per_client
  b = problem.batch_size if batch_size is None else _int(
      "batch_size", batch_size, low=1)
  if b > n:
    raise ValueError(f"batch_size must be in [1, examples_per_client={n}], "
                     f"got {batch_size!r}")
  N, d = problem.num_clients, problem.dim
  linear = problem.shift == "linear"
  x = jnp.asarray(problem.data.x).reshape(N, n, -1)
  a, z = _split(x, d, linear)
  y = jnp.asarray(problem.data.y).reshape(N, n)
  w = jnp.asarray(w, x.dtype)
  resid = jnp.einsum("inj,j->in", a, w) - y
  g = a * resid[..., None]            # the psi term cancels in the spread
  if linear:
    g = g + z
  spread = jnp.mean(jnp.sum((g - g.mean(1, keepdims=True)) ** 2, -1), 1)
  return jnp.mean(spread) * _per_example_var_factor(n, b)


def effective_variance(problem: Problem, examples_per_update: Optional[int]
                       = None) -> float:
  """Noise of one client update relative to ``grad F`` at ``w*``.

  For a uniformly chosen client that takes one gradient on a random
  ``b``-subset, ``E||g - grad F(w*)||^2 = zeta^2 + sigma_b^2`` exactly
  (``grad F(w*) = 0``): the ``sigma^2`` to put into asynchronous-SGD bounds
  when clients are sampled uniformly. ``b`` defaults to the problem's
  ``batch_size``.

  Example:
    >>> p = least_squares(num_clients=4, examples_per_client=8, dim=2,
    ...                   zeta2=0.2, sigma2=0.3, batch_size=2,
    ...                   shift="linear", dtype=np.float64)
    >>> round(effective_variance(p), 5)
    0.5
  """
  b = problem.batch_size if examples_per_update is None else int(
      examples_per_update)
  v = minibatch_variance(problem, jnp.asarray(problem.w_star), b)
  return float(problem.zeta2 + float(v))

# --------------------------------------------------------------------------
# 2. Exact tracking.
# --------------------------------------------------------------------------

def metrics_fn(problem: Problem) -> Callable:
  """The executor ``eval_fn`` of a problem: exact ``grad_sq`` and ``gap``.

  Use with ``executor.simulate(..., eval_fn=metrics_fn(p), eval_every=1)``
  to get ``||grad F(w_v)||^2`` and ``F(w_v) - F*`` at every version ``v``
  (computed inside the compiled scan).

  Example:
    >>> p = least_squares(num_clients=2, examples_per_client=3, dim=2,
    ...                   zeta2=0.0, dtype=np.float64)
    >>> sorted(metrics_fn(p)(jnp.zeros(2)))
    ['gap', 'grad_sq']
  """
  return problem.metrics


class StalenessStats(NamedTuple):
  """Realised staleness of a run (applied updates only).

  Attributes:
    tau_max: the largest staleness.
    tau_avg: the mean staleness.
    tau_median: the median staleness.
    num_applied: applied updates.
    num_dropped: updates dropped by a cutoff.
    concurrency: the schedule's realised (time-averaged) concurrency, or
      ``nan`` when the source is a run's arrivals.

  Example:
    >>> StalenessStats(4, 2.0, 2.0, 3, 1, float("nan")).tau_max
    4
  """
  tau_max: int
  tau_avg: float
  tau_median: float
  num_applied: int
  num_dropped: int
  concurrency: float


def staleness_stats(source: Union[RunResult, sched_lib.Schedule, dict,
                                  "TrackedRun"]) -> StalenessStats:
  """``tau_max``, ``tau_avg`` of a run, from its staleness per update.

  Args:
    source: a ``RunResult`` (reads ``arrivals["staleness"]`` and
      ``arrivals["applied"]``), a ``TrackedRun``, an arrivals dict, or a
      ``Schedule`` (reads ``staleness`` and ``dropped``).

  Example:
    >>> import numpy as np
    >>> s = staleness_stats({"staleness": np.array([0, 2, 4, 9]),
    ...                      "applied": np.array([1, 1, 1, 0], bool)})
    >>> s.tau_max, s.tau_avg, s.num_dropped
    (4, 2.0, 1)
  """
  conc = float("nan")
  if isinstance(source, sched_lib.Schedule):
    tau = np.asarray(source.staleness)
    applied = ~np.asarray(source.dropped)
    conc = float(source.stats.get("realised_concurrency", float("nan")))
  else:
    arr = source.arrivals if hasattr(source, "arrivals") else source
    tau = np.asarray(arr["staleness"])
    applied = np.asarray(arr["applied"], bool)
  t = tau[applied]
  if t.size == 0:
    return StalenessStats(0, 0.0, 0.0, 0, int((~applied).sum()), conc)
  return StalenessStats(int(t.max()), float(t.mean()), float(np.median(t)),
                        int(t.size), int((~applied).sum()), conc)


def per_version(evals: Sequence[dict], key: str) -> np.ndarray:
  """A metric at versions ``0, 1, ..., V`` from a run's ``evals`` list.

  With ``eval_every=1`` the executor evaluates once per version (the
  initial parameters included); this returns those values in version order.

  Example:
    >>> per_version([{"version": 0, "g": 1.0}, {"version": 1, "g": 0.5}],
    ...             "g").tolist()
    [1.0, 0.5]
  """
  ev = sorted(evals, key=lambda e: e["version"])
  return np.asarray([e[key] for e in ev], np.float64)


class TrackerInputs(NamedTuple):
  """Per-arrival inputs of the tracker (arrays over arrivals, padded).

  ``task`` (PRNG key and hyperparameters of the task), ``client``,
  ``staleness``, ``ends_round``, ``lr_scale``, ``prox_rho`` and ``valid``
  (False for padding).

  Example:
    >>> TrackerInputs(*([0] * 7))._fields[-1]
    'valid'
  """
  task: Any
  client: Any
  staleness: Any
  ends_round: Any
  lr_scale: Any
  prox_rho: Any
  valid: Any


class TrackerState(NamedTuple):
  """The tracker's carry: the rule state and the ring of recent versions.

  Example:
    >>> TrackerState(None, None)._fields
    ('state', 'ring')
  """
  state: Any
  ring: Any


class Tracker(NamedTuple):
  """A pure runner that tracks staleness, drift and exact metrics.

  ``init(params) -> TrackerState``; ``step(carry, inputs, x, y, offsets,
  counts, key) -> (carry, outputs)`` for ONE arrival; ``run(params, inputs,
  x, y, offsets, counts, key) -> (TrackerState, outputs)``: ``lax.scan`` of
  ``step`` over the arrivals (vmappable over members). ``ring_size`` is the
  number of stored versions (at least the largest applied staleness + 1).

  Example:
    >>> from fedasync_jax import client, rules
    >>> import optax
    >>> p = least_squares(num_clients=2, examples_per_client=2, dim=1)
    >>> upd = client.local_update(p.loss, optax.sgd(0.1), batch_size=1,
    ...                           max_examples=2, steps=1)
    >>> tr = tracker(rules.fedasync(0.5), upd, ring_size=3)
    >>> carry = tr.init(jnp.zeros(1))
    >>> carry.ring.shape
    (3, 1)
  """
  init: Callable
  step: Callable
  run: Callable
  ring_size: int


def tracker(rule: ServerRule, client_update: ClientUpdate, *, ring_size: int,
            metrics: Optional[Callable] = None) -> Tracker:
  """Builds the drift/staleness tracker.

  It walks the arrivals in processing order, one client at a time (the
  reference simulator's order), and trains each client at its arrival from
  the parameters of its dispatch version ``v = version - tau``, read from a
  ring buffer that holds the parameters of the last ``ring_size`` versions
  (slot ``v mod ring_size``, written after every arrival). Task ``k``
  trains with ``jax.random.fold_in(key, k)``, as in ``reference.run`` and
  ``executor.simulate``, so the result equals theirs.

  Per arrival it outputs ``drift = ||w_t - w_{t - tau}||^2`` (``w_t`` the
  server parameters the update is applied to, ``t`` the version at arrival;
  ``nan`` if ``tau >= ring_size``), ``applied``, ``version`` (after the
  arrival), ``train_loss`` and the entries of ``metrics(params)`` after the
  arrival.

  Args:
    rule: the server rule.
    client_update: the client update (``client.local_update``).
    ring_size: stored versions, an integer ``>= 1``.
    metrics: optional jit-traceable ``params -> dict of scalars``.

  Returns:
    A ``Tracker``.

  Example:
    >>> import optax
    >>> from fedasync_jax import client, rules
    >>> p = least_squares(num_clients=4, examples_per_client=4, dim=2,
    ...                   batch_size=2)
    >>> upd = client.local_update(p.loss, optax.sgd(0.1), batch_size=2,
    ...                           max_examples=4, steps=1)
    >>> tracker(rules.fedasync(0.5), upd, ring_size=8).ring_size
    8
  """
  R = _int("ring_size", ring_size, low=1)

  def init(params):
    params = jax.tree.map(jnp.asarray, params)
    ring = jax.tree.map(
        lambda p: jnp.zeros((R,) + p.shape, p.dtype).at[0].set(p), params)
    return TrackerState(rule.init(params), ring)

  def step(carry, inp, x, y, offsets, counts, key):
    state, ring = carry
    tau = jnp.asarray(inp.staleness, jnp.int32)
    v0 = state.version - tau
    slot = jnp.mod(v0, R)
    start = jax.tree.map(lambda b: b[slot], ring)
    c = inp.client
    ref = ClientRef(x, y, offsets[c], counts[c])
    res, met = client_update.update(
        start, ref, jax.random.fold_in(key, inp.task),
        ClientHParams(inp.lr_scale, inp.prox_rho))
    drift = tree_lib.sq_dist(state.params, start)
    new = rule.apply(state, res, tau)
    if rule.end_round is not None:
      new = jax.lax.cond(inp.ends_round, rule.end_round, lambda s: s, new)
    new = tree_lib.where(inp.valid, new, state)
    ring = jax.tree.map(
        lambda b, p: b.at[jnp.mod(new.version, R)].set(p), ring, new.params)
    out = {"drift": jnp.where(tau < R, drift, jnp.nan),
           "applied": inp.valid & (new.dropped == state.dropped),
           "version": new.version, "train_loss": met["loss"]}
    if metrics is not None:
      out.update(metrics(new.params))
    return TrackerState(new, ring), out

  def run(params, inputs, x, y, offsets, counts, key):
    carry = init(params)
    return jax.lax.scan(
        lambda c, i: step(c, i, x, y, offsets, counts, key), carry, inputs)

  return Tracker(init, step, run, R)


def tracker_inputs(schedule: sched_lib.Schedule, *,
                   hparams: Optional[ClientHParams] = None,
                   length: Optional[int] = None) -> TrackerInputs:
  """The schedule's arrivals as tracker inputs (numpy), padded to ``length``.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(3), np.ones(3)),
    ...                            num_updates=5, concurrency=2, seed=0)
    >>> tracker_inputs(s, length=8).valid.tolist()
    [True, True, True, True, True, False, False, False]
  """
  if hparams is None:
    hparams = task_hparams(schedule)
  n = schedule.num_arrivals
  length = n if length is None else _int("length", length, low=n)
  task = schedule.arrival_task
  pad = length - n

  def p(a, dtype, fill=0):
    a = np.asarray(a).astype(dtype)
    return np.concatenate([a, np.full(pad, fill, dtype)])
  return TrackerInputs(
      task=p(task, np.int32), client=p(schedule.client[task], np.int32),
      staleness=p(schedule.staleness, np.int32),
      ends_round=p(schedule.ends_round, bool),
      lr_scale=p(np.asarray(hparams.lr_scale)[task], np.float32, 1.0),
      prox_rho=p(np.asarray(hparams.prox_rho)[task], np.float32),
      valid=p(np.ones(n, bool), bool, False))


class TrackedRun(NamedTuple):
  """What ``track`` returns.

  Attributes:
    state: the final server state.
    arrivals: per arrival (processing order): ``staleness``, ``applied``,
      ``version`` (after the arrival), ``drift`` (``||w_t - w_{t-tau}||^2``),
      ``train_loss`` and the tracked metrics after the arrival.
    initial: the tracked metrics of the initial parameters.
    stats: ``tau_max``, ``tau_avg``, ``ring_size``, ``wall_time_s``.

  Example:
    >>> r = TrackedRun(None, {"version": np.array([1, 1, 2]),
    ...                       "g": np.array([3.0, 2.0, 1.0])}, {"g": 4.0}, {})
    >>> r.per_version("g").tolist()
    [4.0, 3.0, 1.0]
  """
  state: Any
  arrivals: dict
  initial: dict
  stats: dict

  def per_version(self, key: str) -> np.ndarray:
    """Metric ``key`` at versions ``0..V`` (first arrival reaching each).

    A dropped update leaves the version unchanged and is skipped.
    """
    v = self.arrivals["version"]
    first = np.flatnonzero(np.diff(np.concatenate([[0], v])) > 0)
    return np.concatenate([[self.initial[key]], self.arrivals[key][first]])


def _applied_tau_max(schedule):
  t = np.asarray(schedule.staleness)[~np.asarray(schedule.dropped)]
  return int(t.max()) if t.size else 0


def track_many(rule: ServerRule, client_update: ClientUpdate, params,
               data: data_lib.ClientDataset,
               schedules: Sequence[sched_lib.Schedule], *, keys,
               hparams: Optional[Sequence[ClientHParams]] = None,
               metrics: Optional[Callable] = None,
               ring_size: Optional[int] = None) -> list:
  """Runs ``track`` for several schedules/keys as one vmapped program.

  Arrivals are padded to the longest schedule (padding leaves the state
  unchanged). Returns one ``TrackedRun`` per member.

  Example:
    >>> # outs = track_many(rule, upd, w0, p.data, [s0, s1],
    >>> #                   keys=jax.random.split(jax.random.key(0), 2))
  """
  import time
  scheds = list(schedules)
  if not scheds:
    raise ValueError("schedules must hold at least one Schedule")
  M = len(scheds)
  keys = member_keys(keys, M)
  hps = [None] * M if hparams is None else list(hparams)
  if len(hps) != M:
    raise ValueError(f"hparams must hold {M} entries, got {len(hps)}")
  for s in scheds:
    if s.num_clients != data.num_clients:
      raise ValueError(f"a schedule has {s.num_clients} clients but data has "
                       f"{data.num_clients}")
  need = max(_applied_tau_max(s) for s in scheds) + 1
  R = need if ring_size is None else _int("ring_size", ring_size, low=1)
  if R < need:
    raise ValueError(f"ring_size must be >= {need} (largest applied "
                     f"staleness + 1), got {ring_size!r}")
  length = max(s.num_arrivals for s in scheds)
  ins = [tracker_inputs(s, hparams=h, length=length)
         for s, h in zip(scheds, hps)]
  stacked = jax.tree.map(lambda *a: jnp.asarray(np.stack(a)), *ins)
  tr = tracker(rule, client_update, ring_size=R, metrics=metrics)
  t0 = time.perf_counter()
  run = jax.jit(jax.vmap(tr.run, in_axes=(None, 0, None, None, None, None,
                                          0)))
  final, outs = run(params, stacked, jnp.asarray(data.x), jnp.asarray(data.y),
                    jnp.asarray(data.offsets, jnp.int32),
                    jnp.asarray(data.counts, jnp.int32), keys)
  final = jax.block_until_ready(final)
  wall = time.perf_counter() - t0
  outs = jax.device_get(outs)
  initial = ({k: float(v) for k, v in jax.jit(metrics)(params).items()}
             if metrics is not None else {})
  results = []
  for m, s in enumerate(scheds):
    n = s.num_arrivals
    arr = {k: np.asarray(v[m][:n]) for k, v in outs.items()}
    arr["staleness"] = np.asarray(s.staleness, np.int64)
    arr["drift"] = arr["drift"].astype(np.float64)
    st = staleness_stats(arr)
    stats = {"tau_max": st.tau_max, "tau_avg": st.tau_avg, "ring_size": R,
             "wall_time_s": wall, "members": M}
    results.append(TrackedRun(jax.tree.map(lambda a: np.asarray(a[m]),
                                           final.state), arr, initial, stats))
  return results


def track(rule: ServerRule, client_update: ClientUpdate, params,
          data: data_lib.ClientDataset, schedule: sched_lib.Schedule, *, key,
          hparams: Optional[ClientHParams] = None,
          metrics: Optional[Callable] = None,
          ring_size: Optional[int] = None) -> TrackedRun:
  """Runs a schedule with the tracker and returns the per-update history.

  Args:
    rule: the server rule.
    client_update: the client update.
    params: initial parameters.
    data: the population's examples.
    schedule: the events.
    key: PRNG key (task ``k`` uses ``fold_in(key, k)``, as the simulators).
    hparams: per-task client hyperparameters (``tasks.task_hparams``).
    metrics: jit-traceable ``params -> dict`` (e.g. ``metrics_fn(p)``).
    ring_size: stored versions (default: the largest applied staleness + 1).

  Returns:
    A ``TrackedRun``.

  Example:
    >>> import jax, optax
    >>> from fedasync_jax import client, delays, rules, scheduler
    >>> p = least_squares(num_clients=6, examples_per_client=4, dim=2,
    ...                   batch_size=2)
    >>> upd = client.local_update(p.loss, optax.sgd(0.1), batch_size=2,
    ...                           max_examples=4, steps=1)
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(6),
    ...     np.ones(6)), num_updates=20, concurrency=3, seed=0)
    >>> out = track(rules.fedasync(0.5), upd, jnp.zeros(2), p.data, s,
    ...             key=jax.random.key(0), metrics=metrics_fn(p))
    >>> out.arrivals["drift"].shape, int(out.state.version)
    ((20,), 20)
  """
  return track_many(rule, client_update, params, data, [schedule],
                    keys=jnp.stack([key]),
                    hparams=None if hparams is None else [hparams],
                    metrics=metrics, ring_size=ring_size)[0]


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
  w = _arr("weights", weights, low=0.0)
  if w.shape != v.shape:
    raise ValueError(f"weights must have the shape of values {v.shape}, got "
                     f"{w.shape}")
  if w.sum() <= 0:
    raise ValueError("weights must not all be 0")
  return float(np.sum(w * v) / np.sum(w))


# --------------------------------------------------------------------------
# 3. Bounds.
# --------------------------------------------------------------------------

def _bound_args(lipschitz, f0_gap, sigma2):
  return (_num("lipschitz", lipschitz, low=0.0, strict_low=True),
          _num("f0_gap", f0_gap, low=0.0), _num("sigma2", sigma2, low=0.0))


def _inverse_rate(T, a, b):
  """The ``eps`` that solves ``T = a / eps^2 + b / eps``."""
  T = _arr("T", T, low=0.0, strict_low=True)
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
  tc = _num("tau_c", tau_c, low=0.0)
  tm = _num("tau_max", tau_max, low=0.0)
  c = _num("c", c, low=0.0, strict_low=True)
  e = _arr("eps", eps, low=0.0, strict_low=True)
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
  tc = _num("tau_c", tau_c, low=0.0)
  tm = _num("tau_max", tau_max, low=0.0)
  c = _num("c", c, low=0.0, strict_low=True)
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
  ta = _num("tau_avg", tau_avg, low=0.0)
  c = _num("c", c, low=0.0, strict_low=True)
  e = _arr("eps", eps, low=0.0, strict_low=True)
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
  ta = _num("tau_avg", tau_avg, low=0.0)
  c = _num("c", c, low=0.0, strict_low=True)
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
  tm = _int("tau_max", int(tau_max) if float(tau_max) == int(tau_max)
            else tau_max, low=0)
  c = _num("c", c, low=0.0, strict_low=True)
  g = _arr("steps", steps, low=0.0, strict_low=True).ravel()
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
  g0 = _num("gamma0", gamma0, low=0.0, strict_low=True)
  tm = _num("tau_max", tau_max, low=0.0)
  c = _num("c", c, low=0.0, strict_low=True)
  T = _arr("T", T, low=0.0, strict_low=True)
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
  g = _num("gamma", gamma, low=0.0)
  s2 = _num("sigma2", sigma2, low=0.0)
  G = _num("grad_sq", grad_sq, low=0.0)
  t = _arr("tau", tau, low=0.0)
  out = 2.0 * g * g * (t * t * G + t * s2)
  return out if out.ndim else float(out)


def fit_constant(measured, predicted) -> float:
  """The multiplicative constant ``c`` that best maps ``predicted`` to
  ``measured`` in log space: ``c = exp(mean(log measured - log predicted))``.

  Example:
    >>> round(fit_constant([2.0, 8.0], [1.0, 4.0]), 6)
    2.0
  """
  m = _arr("measured", measured, low=0.0, strict_low=True).ravel()
  p = _arr("predicted", predicted, low=0.0, strict_low=True).ravel()
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
  x = np.log(_arr("T", T, low=0.0, strict_low=True).ravel())
  if np.unique(x).size < 2:
    raise ValueError("T must hold at least two distinct horizons")
  v = _arr("values", values, low=0.0, strict_low=True)
  if v.ndim == 1:
    v = v[None]
  if v.ndim != 2 or v.shape[1] != x.size:
    raise ValueError(f"values must have shape (seeds, {x.size}), got "
                     f"{v.shape}")
  lv = _num("level", level)
  if not 0.0 < lv < 1.0:
    raise ValueError(f"level must be in (0, 1), got {level!r}")
  nb = _int("num_boot", num_boot, low=1)
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
  s2 = _num("sigma2", sigma2, low=0.0)
  N = _int("num_clients", num_clients, low=1)
  m = _int("m", m, low=1)
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
  m = _int("m", m, low=1)
  nt = _int("num_trials", num_trials, low=1)
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
