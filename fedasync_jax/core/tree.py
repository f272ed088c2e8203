"""Small pure functions on pytrees shared by the modules.

Example:
  >>> import jax.numpy as jnp
  >>> a = {"w": jnp.array([3.0, 0.0])}
  >>> float(norm(a)), float(sq_dist(a, {"w": jnp.zeros(2)}))
  (3.0, 9.0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def where(cond, new, old):
  """``jnp.where(cond, new, old)`` leaf by leaf (padding and masks)."""
  return jax.tree.map(lambda n, o: jnp.where(cond, n, o), new, old)


def sq_dist(a, b) -> jax.Array:
  """``||a - b||^2`` over all leaves."""
  return sum(jnp.sum(jnp.square(x - y)) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def norm(tree) -> jax.Array:
  """The L2 norm of all leaves together."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def all_finite(tree) -> jax.Array:
  """Whether every entry of every leaf is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                            for x in jax.tree.leaves(tree)]))
