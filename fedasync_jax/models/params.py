"""A model's parameters as the client trainer sees them: counted, and
split into what is trained and what is not (batch-norm statistics).

``split_params``, ``merge_params`` and ``loss_and_grad`` hide the
difference between stateless models and models with batch statistics
(``{"params": ..., "batch_stats": ...}``), so one trainer handles both.

Example:
  >>> import jax, jax.numpy as jnp
  >>> count_params({"params": {"w": jnp.ones((2, 3))},
  ...               "batch_stats": {"m": jnp.ones(3)}})
  6
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import numpy as np

from fedasync_jax.models.base import ModelFns

PyTree = Any


def _is_variables(params) -> bool:
  return isinstance(params, Mapping) and "params" in params


def count_params(params: PyTree) -> int:
  """Number of trainable scalars in ``params``.

  For a variables dict ``{"params": ..., "batch_stats": ...}`` only the
  ``"params"`` collection is counted.

  Shapes suffice, so ``count_params(jax.eval_shape(fns.init, key))`` counts
  without computing anything.

  Args:
    params: a parameter pytree or flax variables dict (arrays or
      ``jax.ShapeDtypeStruct`` leaves).

  Returns:
    The number of trainable parameters (a python int).

  Example:
    >>> import jax.numpy as jnp
    >>> count_params({"params": {"w": jnp.ones((2, 3))},
    ...               "batch_stats": {"m": jnp.ones(3)}})
    6
  """
  if _is_variables(params):
    params = params["params"]
  return int(sum(
      math.prod(leaf.shape if hasattr(leaf, "shape") else np.shape(leaf))
      for leaf in jax.tree.leaves(params)))


def split_params(model_fns: ModelFns, params: PyTree) -> tuple[PyTree, PyTree]:
  """Splits ``params`` into ``(trainable, state)``.

  Stateful models give ``(params["params"], params["batch_stats"])``;
  stateless ones ``(params, {})``. Build optimizer state on ``trainable``.

  Args:
    model_fns: the model.
    params: its parameters, as returned by ``model_fns.init``.

  Returns:
    ``(trainable, state)``.

  Example:
    >>> import jax
    >>> from fedasync_jax.models import mlp
    >>> fns = mlp(hidden=(), input_dim=4, num_classes=2)
    >>> trainable, state = split_params(fns, fns.init(jax.random.key(0)))
    >>> state
    {}
  """
  if model_fns.stateful:
    return params["params"], params["batch_stats"]
  return params, {}


def merge_params(model_fns: ModelFns, trainable: PyTree,
                 state: PyTree) -> PyTree:
  """Inverse of :func:`split_params`.

  Args:
    model_fns: the model.
    trainable: the trainable pytree.
    state: the batch statistics (``{}`` for stateless models).

  Returns:
    ``params`` in the layout of ``model_fns.init``.

  Example:
    >>> import jax
    >>> from fedasync_jax.models import mlp
    >>> fns = mlp(hidden=(), input_dim=4, num_classes=2)
    >>> p = fns.init(jax.random.key(0))
    >>> merge_params(fns, *split_params(fns, p)) is p
    True
  """
  if model_fns.stateful:
    return {"params": trainable, "batch_stats": state}
  return trainable


def loss_and_grad(model_fns: ModelFns) -> Callable[..., tuple]:
  """A uniform gradient function for stateless and stateful models.

  Returns ``fn(trainable, state, x, y, mask) -> (loss, grads, new_state)``
  where ``grads`` has the structure of ``trainable`` and ``new_state`` is the
  updated batch statistics (``state`` unchanged for stateless models). A
  client step is then::

    loss, g, state = fn(trainable, state, x, y, mask)
    updates, opt_state = tx.update(g, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)

  Args:
    model_fns: the model.

  Returns:
    The gradient function (pure, jit-traceable).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from fedasync_jax.models import logistic_regression
    >>> fns = logistic_regression(3, 2)
    >>> tr, st = split_params(fns, fns.init(jax.random.key(0)))
    >>> loss, g, st = loss_and_grad(fns)(tr, st, jnp.ones((4, 3)),
    ...                                  jnp.zeros(4, jnp.int32), jnp.ones(4))
    >>> round(float(loss), 4)
    0.6931
  """
  if model_fns.stateful:

    def f(trainable, state, x, y, mask):
      return model_fns.loss({"params": trainable, "batch_stats": state}, x, y,
                            mask)

    vg = jax.value_and_grad(f, has_aux=True)

    def fn(trainable, state, x, y, mask):
      (loss, new_state), grads = vg(trainable, state, x, y, mask)
      return loss, grads, new_state

  else:
    vg = jax.value_and_grad(model_fns.loss)

    def fn(trainable, state, x, y, mask):
      loss, grads = vg(trainable, x, y, mask)
      return loss, grads, state

  return fn
