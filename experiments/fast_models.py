"""The AFL paper's MNIST CNN and ResNet-20 with a loop-friendly conv gradient.

Same architectures, parameter trees, initializers and forward passes as
``fedasync_jax.models.mnist_cnn`` / ``resnet20`` (checked by
``check_against_library``), but every ``nn.Conv`` gets
``conv_general_dilated=loopconv.conv_general_dilated``, whose backward pass
stays fast inside the executor's loops on XLA:CPU (see ``loopconv.py``).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax import models

import loopconv

_Conv = functools.partial(nn.Conv,
                          conv_general_dilated=loopconv.conv_general_dilated)


class MnistCNN(nn.Module):
  """Three 3x3/32 SAME convolutions + ReLU, global average pool, linear,
  log-softmax (as ``models._MnistCNN``)."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = nn.relu(_Conv(32, (3, 3), strides=(1, 1), padding="SAME",
                        kernel_init=nn.initializers.glorot_uniform(),
                        bias_init=nn.initializers.zeros)(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes,
                 kernel_init=nn.initializers.glorot_uniform(),
                 bias_init=nn.initializers.zeros)(x)
    return nn.log_softmax(x)


class _BasicBlock(nn.Module):
  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, *, train, mask):
    conv = functools.partial(_Conv, use_bias=False,
                             kernel_init=nn.initializers.variance_scaling(
                                 2.0, "fan_in", "normal"))
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5)
    y = conv(self.features, (3, 3), strides=self.strides, padding=1)(x)
    y = nn.relu(norm()(y, mask=mask))
    y = conv(self.features, (3, 3), strides=1, padding=1)(y)
    y = norm()(y, mask=mask)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = conv(self.features, (1, 1), strides=self.strides, padding=0)(x)
      x = norm()(x, mask=mask)
    return nn.relu(y + x)


class ResNet20(nn.Module):
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, *, train=False, mask=None):
    if mask is not None:
      mask = jnp.asarray(mask, bool).reshape((-1, 1, 1, 1))
    if not train:
      mask = None
    x = _Conv(16, (3, 3), strides=1, padding=1, use_bias=False,
              kernel_init=nn.initializers.variance_scaling(
                  2.0, "fan_in", "normal"))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-5)(x, mask=mask)
    x = nn.relu(x)
    for stage, width in enumerate((16, 32, 64)):
      for b in range(3):
        x = _BasicBlock(width, 2 if (stage > 0 and b == 0) else 1)(
            x, train=train, mask=mask)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


def _grey(x):
  x = jnp.asarray(x, jnp.float32)
  return x[..., None] if x.ndim == 3 else x


def mnist_cnn(num_classes=10) -> models.ModelFns:
  return models.from_flax(MnistCNN(num_classes), input_shape=(28, 28, 1),
                          num_classes=num_classes, name="mnist_cnn",
                          outputs="log_probs", prepare=_grey)


def resnet20(num_classes=10) -> models.ModelFns:
  return models.from_flax(ResNet20(num_classes), input_shape=(32, 32, 3),
                          num_classes=num_classes, name="resnet20",
                          stateful=True)


def get(name: str, num_classes: int = 10) -> models.ModelFns:
  return {"mnist_cnn": mnist_cnn, "resnet20": resnet20}[name](num_classes)


def check_against_library(name: str, x, y) -> float:
  """Max |difference| of the loss and its gradient between this model and
  the library's, from the library's initial parameters (raises if the
  parameter trees differ)."""
  lib = models.get_model(name)
  fast = get(name)
  p = lib.init(jax.random.key(0))
  p2 = fast.init(jax.random.key(0))
  if jax.tree.structure(p) != jax.tree.structure(p2):
    raise AssertionError(f"{name}: parameter trees differ")
  mask = jnp.ones(len(y))
  stateful = lib.stateful

  def lossf(m):
    def f(tr):
      full = {"params": tr, "batch_stats": p["batch_stats"]} if stateful \
          else tr
      out = m.loss(full, x, y, mask)
      return out[0] if stateful else out
    return f
  tr = p["params"] if stateful else p
  l0, g0 = jax.jit(jax.value_and_grad(lossf(lib)))(tr)
  l1, g1 = jax.jit(jax.value_and_grad(lossf(fast)))(tr)
  err = max([abs(float(l0 - l1))] + [
      float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))
      for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1))])
  return err
