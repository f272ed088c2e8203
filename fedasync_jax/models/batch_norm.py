"""Batch normalization with statistics over the real examples of a batch.

Ioffe and Szegedy 2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift" (arXiv:1502.03167).

:class:`BatchNorm` is the layer :func:`fedasync_jax.models.resnet20` uses.
It has the variables, initialisation and arithmetic of
``flax.linen.BatchNorm`` (with its defaults: statistics over every axis but
the last, the mean and ``E[x^2] - E[x]^2`` clipped at 0, a learned
``scale`` and ``bias``, running averages updated as ``momentum * old +
(1 - momentum) * batch``), so parameter trees, checkpoints and outputs do
not change. What differs is how padding is left out of the statistics.

Why. A client's last batch is padded, so the statistics must be taken
over the real examples only (``mask``). flax's layer takes
``mean(x, where=mask)``: the count of real entries is itself a reduction
over a full-size broadcast of the mask, and the gradient runs through both
masked means. Here the count is the number of real examples times the
positions per example, a scalar, and the masked sums are plain sums of
``where(mask, x, 0)``. The values agree with flax's up to float
reassociation (within 1e-12 relative in float64,
``tests/test_batch_norm.py``). Measured on a 2-core Intel VM, ResNet-20's
client training (``benchmarks/paper_cnn.py``, paired against the
``flaxbn_*`` variants, which use flax's layer): 1.02x on one device
(``paper_cnn_2026-12-03T050006Z.json``) and 1.02x with 6 clients over two
one-core devices (``..T051257Z.json``); docs/benchmarks.md, 2026-12-03.

Example:
  >>> import jax, jax.numpy as jnp
  >>> bn = BatchNorm(use_running_average=False, momentum=0.9)
  >>> x = jnp.arange(8.0).reshape(4, 1, 1, 2)
  >>> mask = jnp.array([True, True, False, False])
  >>> variables = bn.init(jax.random.key(0), x, mask=mask)
  >>> y, updates = bn.apply(variables, x, mask=mask, mutable=["batch_stats"])
  >>> updates["batch_stats"]["mean"]  # 0.1 of the real examples' mean
  Array([0.1, 0.2], dtype=float32)
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


class BatchNorm(nn.Module):
  """Channels-last batch normalization with masked batch statistics.

  Attributes:
    use_running_average: normalise with the running averages (evaluation)
      instead of the batch statistics (training), which then update them.
    momentum: weight of the old running average in its update (flax's
      convention: PyTorch's momentum 0.1 is 0.9 here).
    epsilon: added to the variance before its square root.

  Call it as ``bn(x, mask=None)``: ``x`` has the features on its last axis;
  ``mask`` (optional, training only) marks the real examples, of shape
  ``(B,)`` or ``(B, 1, ..., 1)`` for a batch of ``B``; the statistics are
  taken over those examples only. A mask with no real example gives NaN
  statistics, as flax's layer does.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> bn = BatchNorm(use_running_average=True)
    >>> x = jnp.ones((2, 3))
    >>> bn.apply(bn.init(jax.random.key(0), x), x).shape
    (2, 3)
  """
  use_running_average: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: Array, mask: Optional[Array] = None) -> Array:
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,),
                       jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,),
                      jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,),
                            jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (features,),
                           jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      # Statistics in at least float32, like flax's layer.
      x_stats = x.astype(jnp.promote_types(x.dtype, jnp.float32))
      mean, var = _batch_stats(x_stats, mask)
      if not self.is_initializing():
        ra_mean.value = (self.momentum * ra_mean.value
                         + (1 - self.momentum) * mean)
        ra_var.value = (self.momentum * ra_var.value
                        + (1 - self.momentum) * var)
    shape = (1,) * (x.ndim - 1) + (features,)  # no implicit rank promotion
    mul = (jax.lax.rsqrt(var + self.epsilon) * scale).reshape(shape)
    y = (x - mean.reshape(shape)) * mul + bias.reshape(shape)
    return jnp.asarray(y, jnp.result_type(x, scale, bias))


def _batch_stats(x: Array, mask: Optional[Array]) -> tuple[Array, Array]:
  """Mean and ``E[x^2] - E[x]^2`` (clipped at 0) of ``x`` over every axis
  but the last, over the examples ``mask`` marks (all when ``None``)."""
  axes = tuple(range(x.ndim - 1))
  per_example = x.size // (x.shape[0] * x.shape[-1]) if x.size else 0
  if mask is None:
    count = x.shape[0] * per_example
  else:
    mask = jnp.asarray(mask, bool)
    if mask.size != x.shape[0]:
      raise ValueError(f"BatchNorm: mask must have one entry per example "
                       f"({x.shape[0]}), got shape {mask.shape}")
    mask = mask.reshape((x.shape[0],) + (1,) * (x.ndim - 1))
    count = jnp.sum(mask, dtype=x.dtype) * per_example
    x = jnp.where(mask, x, jnp.zeros((), x.dtype))
  mean = jnp.sum(x, axes) / count
  mean2 = jnp.sum(x * x, axes) / count
  return mean, jnp.maximum(0.0, mean2 - mean * mean)
