"""The networks of the papers, and ``MODELS``, the family that lists them.

* :func:`mnist_cnn`: the MNIST CNN of the AFL paper (Forootani and
  Iervolino 2025, "Asynchronous Federated Learning with non-convex client
  objective functions and heterogeneous dataset", arXiv:2508.01675): three
  3x3, 32-channel convolutions at full 28x28 resolution, Xavier init, global
  average pooling, a linear layer and log-softmax (19,146 parameters).
* :func:`resnet20`: the CIFAR ResNet-20 used by the same paper, i.e. the CIFAR
  variant of He, Zhang, Ren and Sun 2016, "Deep Residual Learning for Image
  Recognition" (arXiv:1512.03385), Section 4.2 (272,474 parameters with 1x1
  projection shortcuts, see :func:`resnet20`).
* :func:`mlp`: the "2NN" of McMahan et al. 2017, "Communication-Efficient
  Learning of Deep Networks from Decentralized Data" (arXiv:1602.05629),
  784-200-200-10 with ReLU (199,210 parameters).
* :func:`logistic_regression`: multinomial logistic regression, the convex
  model of FedProx's Synthetic(alpha, beta) experiments (Li et al. 2020,
  arXiv:1812.06127).

Each factory registers itself in ``MODELS`` (``core.registry``) with its
parameters, ranges and meanings, its aliases (``cnn``, ``2nn``, ``logreg``)
and whether it is stateful, and checks its arguments against those
declarations; ``MODEL_NAMES`` and ``get_model`` derive from it.

Example:
  >>> MODELS.names()
  ('mnist_cnn', 'resnet20', 'mlp', 'logistic_regression')
  >>> MODELS.build("mlp", hidden=(8,), input_dim=4, num_classes=2).name
  'mlp'
  >>> get_model("2nn").name
  'mlp'
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedasync_jax.core import checks
from fedasync_jax.core.registry import REQUIRED, Param, Registry
from fedasync_jax.models import conv as conv_lib
from fedasync_jax.models.batch_norm import BatchNorm
from fedasync_jax.models.base import Array, ModelFns, as_float, from_flax

MODELS = Registry("model")
"""The model family: name -> factory, parameters, ``aliases`` and
``stateful`` (in ``Member.info``)."""

_NUM_CLASSES = Param("num_classes", 10, low=1, kind=int,
                     meaning="number of output classes")
_CONV = Param("conv", None, kind=str, optional=True,
              meaning="convolution the layers call: auto (None), canonical "
              "or lax (the factory also takes a callable)")
_HIDDEN = Param("hidden", (200, 200), kind=tuple,
                meaning="widths of the hidden layers, each an integer >= 1 "
                "(may be empty)")
_INPUT_DIM = Param("input_dim", 784, low=1, kind=int,
                   meaning="number of input features (examples are "
                   "flattened)")


# ----------------------------------------------------------------------------
# The AFL paper's MNIST CNN.


class _MnistCNN(nn.Module):
  """Three 3x3/32 SAME convolutions, global average pool, linear."""
  num_classes: int = 10
  channels: int = 32
  conv_fn: Callable[..., Array] = jax.lax.conv_general_dilated

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(
        nn.Conv, features=self.channels, kernel_size=(3, 3), strides=(1, 1),
        padding="SAME", kernel_init=nn.initializers.glorot_uniform(),
        bias_init=nn.initializers.zeros,
        conv_general_dilated=self.conv_fn)
    for _ in range(3):
      x = nn.relu(conv()(x))
    x = jnp.mean(x, axis=(1, 2))  # adaptive average pooling to 1x1
    x = nn.Dense(self.num_classes,
                 kernel_init=nn.initializers.glorot_uniform(),
                 bias_init=nn.initializers.zeros)(x)
    return nn.log_softmax(x)


def _prepare_image(x, channels: int, name: str):
  x = as_float(x)
  if channels == 1 and x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(
        f"{name}: x must have shape (B, H, W, {channels})"
        + (" or (B, H, W)" if channels == 1 else "")
        + f", got {x.shape}")
  return x




@MODELS.register("mnist_cnn", params=(_NUM_CLASSES, _CONV), aliases=("cnn",),
                 stateful=False)
def mnist_cnn(*, num_classes: int = 10,
              conv: str | Callable[..., Array] | None = None) -> ModelFns:
  """The AFL paper's MNIST CNN (Forootani and Iervolino 2025).

  Three 3x3 convolutions with 32 channels, stride 1 and SAME padding at the
  full 28x28 resolution, each followed by ReLU; global (adaptive 1x1) average
  pooling; a linear layer; log-softmax. Kernels use Xavier-uniform
  (``glorot_uniform``) init and biases start at zero. 19,146 parameters for
  10 classes. ``apply`` returns log-probabilities and ``loss`` is the NLL.
  Inputs are ``(B, 28, 28)`` or ``(B, 28, 28, 1)`` float32 (NHWC); being
  fully convolutional, other spatial sizes also work.

  Args:
    num_classes: number of classes.
    conv: ``None``/``"auto"``, ``"canonical"``, ``"lax"`` or a callable: the
      convolution the layers call (see the module docstring). The default
      uses :mod:`fedasync_jax.models.conv`'s loop-friendly gradient on the CPU
      backend. Parameters, initialisation and outputs do not depend on it.

  Returns:
    The model's :class:`ModelFns`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> fns = mnist_cnn()
    >>> params = fns.init(jax.random.key(0))
    >>> from fedasync_jax.models import count_params
    >>> count_params(params)
    19146
    >>> fns.apply(params, jnp.zeros((2, 28, 28))).shape
    (2, 10)
  """
  num_classes = MODELS.check("mnist_cnn", num_classes=num_classes)[
      "num_classes"]
  conv_fn = conv_lib.resolve_conv(conv)
  return from_flax(
      _MnistCNN(num_classes=num_classes, conv_fn=conv_fn),
      input_shape=(28, 28, 1),
      num_classes=num_classes, name="mnist_cnn", outputs="log_probs",
      prepare=lambda x: _prepare_image(x, 1, "mnist_cnn"))


# ----------------------------------------------------------------------------
# CIFAR ResNet-20.


class _BasicBlock(nn.Module):
  """He et al. 2016 BasicBlock with a 1x1 projection on shape changes."""
  features: int
  strides: int = 1
  conv_fn: Callable[..., Array] = jax.lax.conv_general_dilated
  norm: Callable[..., nn.Module] = BatchNorm

  @nn.compact
  def __call__(self, x, *, train: bool, mask):
    conv = functools.partial(
        nn.Conv, use_bias=False,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
        conv_general_dilated=self.conv_fn)
    norm = functools.partial(self.norm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5)
    y = conv(self.features, (3, 3), strides=self.strides, padding=1)(x)
    y = nn.relu(norm()(y, mask=mask))
    y = conv(self.features, (3, 3), strides=1, padding=1)(y)
    y = norm()(y, mask=mask)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = conv(self.features, (1, 1), strides=self.strides, padding=0)(x)
      x = norm()(x, mask=mask)
    return nn.relu(y + x)


class _ResNetCifar(nn.Module):
  """CIFAR ResNet-(6n+2): conv, three stages of n blocks, pool, linear."""
  num_classes: int = 10
  blocks: tuple[int, ...] = (3, 3, 3)
  widths: tuple[int, ...] = (16, 32, 64)
  conv_fn: Callable[..., Array] = jax.lax.conv_general_dilated
  # The batch-norm layer class (models/batch_norm.py; flax.linen.BatchNorm
  # takes the same arguments and gives the same values, more slowly).
  norm: Callable[..., nn.Module] = BatchNorm

  @nn.compact
  def __call__(self, x, *, train: bool = False, mask=None):
    if mask is not None:
      mask = jnp.asarray(mask, bool).reshape((-1, 1, 1, 1))
    if not train:
      mask = None
    x = nn.Conv(self.widths[0], (3, 3), strides=1, padding=1, use_bias=False,
                kernel_init=nn.initializers.variance_scaling(
                    2.0, "fan_in", "normal"),
                conv_general_dilated=self.conv_fn)(x)
    x = self.norm(use_running_average=not train, momentum=0.9,
                  epsilon=1e-5)(x, mask=mask)
    x = nn.relu(x)
    for stage, (n, width) in enumerate(zip(self.blocks, self.widths)):
      for b in range(n):
        strides = 2 if (stage > 0 and b == 0) else 1
        x = _BasicBlock(width, strides, conv_fn=self.conv_fn,
                        norm=self.norm)(x, train=train, mask=mask)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


@MODELS.register("resnet20", params=(_NUM_CLASSES, _CONV), stateful=True)
def resnet20(*, num_classes: int = 10,
             conv: str | Callable[..., Array] | None = None) -> ModelFns:
  """The CIFAR ResNet-20 of He et al. 2016, as used by the AFL paper.

  A 3x3/16 convolution, then three stages of 3 BasicBlocks with 16, 32 and 64
  channels (the first block of stages 2 and 3 has stride 2), global average
  pooling and a linear layer. Convolutions have no bias (batch norm follows
  each); the linear layer has one. Shortcuts are identities, except where the
  shape changes: there a 1x1 stride-2 convolution plus batch norm ("option
  B"). That gives exactly 272,474 trainable parameters for 10 classes:
  option A (parameter-free zero-padding shortcuts) would give 269,722, and the
  two projections add (16*32 + 2*32) + (32*64 + 2*64) = 576 + 2,176 = 2,752.
  Convolutions use He-normal (fan-in) init; batch norm
  (:class:`fedasync_jax.models.batch_norm.BatchNorm`, flax's layer with
  cheaper masked statistics) uses PyTorch's defaults (momentum 0.1, i.e.
  flax ``momentum=0.9``; epsilon 1e-5).
  Inputs are NHWC ``(B, 32, 32, 3)`` float32.

  Batch norm in federated training. ``params`` is
  ``{"params": ..., "batch_stats": ...}`` and ``ModelFns.stateful`` is True.

  * ``loss(params, x, y, mask)`` runs in train mode and returns
    ``(loss, new_batch_stats)``. Batch statistics are computed over the real
    examples only (``mask > 0``), so padding changes neither the loss, its
    gradient, nor the running averages; with an all-zero mask the loss is 0
    and ``new_batch_stats`` equals the old ones.
  * A client trainer differentiates only w.r.t. ``params["params"]`` and
    replaces ``params["batch_stats"]`` by the aux output after each step::

      def f(p, bs):
        return fns.loss({"params": p, "batch_stats": bs}, x, y, mask)
      (loss, bs), g = jax.value_and_grad(f, has_aux=True)(p, bs)

    (:func:`loss_and_grad` does this for any model.) The optimizer state is
    built on ``params["params"]`` only.
  * The server averages ``batch_stats`` like parameters (the whole ``params``
    dict is one pytree, so FedAsync/FedAvg mixing applies to both).
  * ``apply`` and ``evaluate`` run in eval mode with the running averages.

  Args:
    num_classes: number of classes.
    conv: ``None``/``"auto"``, ``"canonical"``, ``"lax"`` or a callable: the
      convolution the layers call (see the module docstring and
      :func:`mnist_cnn`).

  Returns:
    The model's :class:`ModelFns` (``stateful=True``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> fns = resnet20()
    >>> params = jax.eval_shape(fns.init, jax.random.key(0))  # shapes only
    >>> from fedasync_jax.models import count_params
    >>> count_params(params)
    272474
    >>> x, y = jnp.zeros((2, 32, 32, 3)), jnp.zeros((2,), jnp.int32)
    >>> loss, new_stats = jax.eval_shape(fns.loss, params, x, y, jnp.ones(2))
    >>> loss.shape
    ()
  """
  num_classes = MODELS.check("resnet20", num_classes=num_classes)[
      "num_classes"]
  conv_fn = conv_lib.resolve_conv(conv)
  return _resnet20_fns(_ResNetCifar(num_classes=num_classes,
                                    conv_fn=conv_fn), num_classes)


def _resnet20_fns(module: _ResNetCifar, num_classes: int) -> ModelFns:
  """``resnet20``'s :class:`ModelFns` around one ``_ResNetCifar``."""
  return from_flax(
      module, input_shape=(32, 32, 3),
      num_classes=num_classes, name="resnet20", stateful=True,
      outputs="logits", prepare=lambda x: _prepare_image(x, 3, "resnet20"))




# ----------------------------------------------------------------------------
# MLP ("2NN") and logistic regression.


class _MLP(nn.Module):
  hidden: tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


def _prepare_flat(x, input_dim: int, name: str):
  x = as_float(x)
  if x.ndim < 1:
    raise ValueError(f"{name}: x must have a batch dimension, got a scalar")
  x = x.reshape((x.shape[0], -1)) if x.ndim != 2 else x
  if x.shape[-1] != input_dim:
    raise ValueError(
        f"{name}: each example must have input_dim={input_dim} features "
        f"(after flattening), got {x.shape[-1]}")
  return x


@MODELS.register("mlp", params=(_HIDDEN, _NUM_CLASSES, _INPUT_DIM),
                 aliases=("2nn",), stateful=False)
def mlp(*, hidden: Sequence[int] = (200, 200), num_classes: int = 10,
        input_dim: int = 784) -> ModelFns:
  """A ReLU multilayer perceptron; by default FedAvg's "2NN".

  McMahan et al. 2017's MNIST 2NN is 784-200-200-10 with ReLU (199,210
  parameters). Inputs of any shape ``(B, ...)`` are flattened to
  ``(B, input_dim)``. ``apply`` returns logits; ``loss`` is softmax
  cross-entropy. Kernels use flax's default LeCun-normal init.

  Args:
    hidden: widths of the hidden layers (may be empty).
    num_classes: number of classes.
    input_dim: number of input features.

  Returns:
    The model's :class:`ModelFns`.

  Example:
    >>> import jax
    >>> from fedasync_jax.models import count_params
    >>> count_params(mlp().init(jax.random.key(0)))
    199210
  """
  opts = MODELS.check("mlp", num_classes=num_classes, input_dim=input_dim)
  num_classes, input_dim = opts["num_classes"], opts["input_dim"]
  try:
    hidden = tuple(hidden)
  except TypeError:
    raise ValueError(
        f"hidden must be a sequence of positive integers, got {hidden!r}"
    ) from None
  hidden = tuple(checks.integer("hidden (each width)", h, low=1)
                 for h in hidden)
  return from_flax(
      _MLP(hidden=hidden, num_classes=num_classes), input_shape=(input_dim,),
      num_classes=num_classes, name="mlp", outputs="logits",
      prepare=lambda x: _prepare_flat(x, input_dim, "mlp"))


@MODELS.register("logistic_regression", params=(
    _INPUT_DIM._replace(default=REQUIRED),
    _NUM_CLASSES._replace(default=REQUIRED)), aliases=("logreg",),
                 stateful=False)
def logistic_regression(input_dim: int, num_classes: int) -> ModelFns:
  """Multinomial logistic regression: one linear layer, softmax CE.

  Weights and biases start at zero (the objective is convex, so the usual
  choice); ``init`` ignores its key. Inputs are flattened to
  ``(B, input_dim)``; ``apply`` returns logits.

  Args:
    input_dim: number of input features.
    num_classes: number of classes.

  Returns:
    The model's :class:`ModelFns`.

  Example:
    >>> import jax
    >>> fns = logistic_regression(60, 10)  # FedProx Synthetic(alpha, beta)
    >>> from fedasync_jax.models import count_params
    >>> count_params(fns.init(jax.random.key(0)))
    610
  """
  opts = MODELS.check("logistic_regression", input_dim=input_dim,
                      num_classes=num_classes)
  input_dim, num_classes = opts["input_dim"], opts["num_classes"]
  module = nn.Dense(num_classes, kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.zeros)
  return from_flax(
      module, input_shape=(input_dim,), num_classes=num_classes,
      name="logistic_regression", outputs="logits",
      prepare=lambda x: _prepare_flat(x, input_dim, "logistic_regression"))


# ----------------------------------------------------------------------------
# Lookup by name.

MODEL_NAMES = MODELS.names()
"""The registered model names (aliases excluded), in registration order."""


def model_aliases() -> dict:
  """Alias -> model name, from the members' ``aliases``.

  Example:
    >>> model_aliases()["logreg"]
    'logistic_regression'
  """
  return {alias: m.name for m in MODELS.members()
          for alias in m.info.get("aliases", ())}


def get_model(name: str, **kwargs) -> ModelFns:
  """Builds a model by name.

  The factory checks its own options (a ``conv`` callable is allowed here,
  unlike in ``MODELS.build``, which checks the declared parameters).

  Args:
    name: a name of ``MODELS`` or an alias: ``"mnist_cnn"`` (alias
      ``"cnn"``), ``"resnet20"``, ``"mlp"`` (alias ``"2nn"``),
      ``"logistic_regression"`` (alias ``"logreg"``).
    **kwargs: keyword options of the factory, e.g. ``num_classes``.

  Returns:
    The model's :class:`ModelFns`.

  Example:
    >>> get_model("logistic_regression", input_dim=60, num_classes=10).name
    'logistic_regression'
  """
  aliases = model_aliases()
  checks.choice("name", name, sorted(set(MODELS.names()) | set(aliases)))
  return MODELS[aliases.get(name, name)].factory(**kwargs)
