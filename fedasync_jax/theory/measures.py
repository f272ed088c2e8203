"""What a problem's quantities are at any ``w``: client gradients,
heterogeneity, minibatch variance, and the executor's exact metrics.

All jit-traceable, computed from the stored examples with the client loss.
``metrics_fn`` gives the exact ``||grad F(w)||^2`` and ``F(w) - F*`` for
the executor's ``eval_fn`` (``eval_every=1``: every version).

Example:
  >>> from fedasync_jax.theory.problems import least_squares
  >>> p = least_squares(num_clients=5, examples_per_client=4, dim=2,
  ...                   zeta2=0.3, dtype=np.float64)
  >>> round(float(heterogeneity(p, jnp.asarray(p.w_star))), 5)
  0.3
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.theory.construction import _per_example_var_factor, _split
from fedasync_jax.theory.problems import Problem


def client_gradients(problem: Problem, w) -> jax.Array:
  """Full local gradients ``grad F_i(w)`` of every client, ``(N, d)``.

  Computed from the stored examples with the client loss (jit-traceable).

  Example:
    >>> from fedasync_jax.theory import least_squares
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
    >>> from fedasync_jax.theory import least_squares
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
    >>> from fedasync_jax.theory import least_squares
    >>> p = least_squares(num_clients=3, examples_per_client=6, dim=2,
    ...                   sigma2=0.5, batch_size=3, shift="linear",
    ...                   dtype=np.float64)
    >>> round(float(minibatch_variance(p, jnp.asarray(p.w_star))), 5)
    0.5
  """
  n = problem.examples_per_client
  b = problem.batch_size if batch_size is None else checks.integer(
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
    >>> from fedasync_jax.theory import least_squares
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


def metrics_fn(problem: Problem) -> Callable:
  """The executor ``eval_fn`` of a problem: exact ``grad_sq`` and ``gap``.

  Use with ``executor.simulate(..., eval_fn=metrics_fn(p), eval_every=1)``
  to get ``||grad F(w_v)||^2`` and ``F(w_v) - F*`` at every version ``v``
  (computed inside the compiled scan), as ``test_grad_sq`` and
  ``test_gap`` in ``RunResult.evals`` (``per_version(out.evals,
  "test_grad_sq")``).

  Example:
    >>> from fedasync_jax.theory import least_squares
    >>> p = least_squares(num_clients=2, examples_per_client=3, dim=2,
    ...                   zeta2=0.0, dtype=np.float64)
    >>> sorted(metrics_fn(p)(jnp.zeros(2)))
    ['gap', 'grad_sq']
  """
  return problem.metrics

