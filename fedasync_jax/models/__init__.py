"""Classification models as bundles of pure functions.

Every model is exposed the optax way: a factory returns a :class:`ModelFns`
NamedTuple of pure functions (``init``, ``apply``, ``loss``, ``evaluate``)
with the hyperparameters held in the closure. Parameters are plain pytrees,
randomness comes in as an explicit PRNG key, and every function can be
``jit``-ed, ``vmap``-ed or differentiated.

Models and where they come from:

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

Convolutions. :func:`mnist_cnn` and :func:`resnet20` take a keyword-only
``conv`` option choosing the function their ``nn.Conv`` layers call.
XLA:CPU runs JAX's own (transposed) backward convolutions 8-108x slower
inside loops than alone (jax-ml/jax#12868), and clients train inside
``lax.scan``; :func:`fedasync_jax.models.conv.conv_general_dilated` has the same
forward and a gradient made of canonical forward convolutions, fast in
loops. The choice changes neither parameters, initialisation nor outputs;
gradients agree up to float reassociation. Values of ``conv``:

* ``None`` or ``"auto"`` (default): decided when the model is traced, from
  ``jax.default_backend()``: the canonical gradient on CPU,
  ``jax.lax.conv_general_dilated`` elsewhere.
* ``"canonical"``: :func:`fedasync_jax.models.conv.conv_general_dilated` on every
  backend.
* ``"lax"``: ``jax.lax.conv_general_dilated``. Use it for forward-mode
  differentiation (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``), which the
  canonical path (a ``custom_vjp``) does not support.
* a callable with the signature of ``jax.lax.conv_general_dilated``, given
  to flax's ``nn.Conv(conv_general_dilated=...)`` as is.

The training contract (used by the client trainer inside ``lax.scan``)::

  loss(params, x, y, mask) -> scalar                    # stateless
  loss(params, x, y, mask) -> (scalar, new_batch_stats)  # batch norm

where ``mask`` is a float32 ``(B,)`` array, 1 for real examples and 0 for
padding; the loss is the mean over real examples and 0 (with a finite, zero
gradient) when the mask is all zero. :func:`split_params`,
:func:`merge_params` and :func:`loss_and_grad` hide the difference between
the two kinds, so one trainer handles both.

Example:
  >>> import jax, jax.numpy as jnp
  >>> fns = get_model("mlp")
  >>> params = fns.init(jax.random.key(0))
  >>> count_params(params)
  199210
  >>> x, y = jnp.zeros((4, 784)), jnp.zeros((4,), jnp.int32)
  >>> loss, grads = jax.value_and_grad(fns.loss)(params, x, y, jnp.ones(4))
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.models import conv as conv_lib

PyTree = Any
Array = jax.Array

__all__ = [
    "ModelFns",
    "from_flax",
    "mnist_cnn",
    "resnet20",
    "mlp",
    "logistic_regression",
    "get_model",
    "MODEL_NAMES",
    "count_params",
    "split_params",
    "merge_params",
    "loss_and_grad",
    "make_evaluator",
]


class ModelFns(NamedTuple):
  """A model as a bundle of pure functions (optax-style).

  Attributes:
    init: ``init(key) -> params``. For stateful models ``params`` is the dict
      ``{"params": ..., "batch_stats": ...}``; otherwise the trainable pytree.
    apply: ``apply(params, x) -> outputs`` of shape ``(B, num_classes)``:
      logits, or log-probabilities when ``outputs == "log_probs"``. Stateful
      models run in eval mode (running batch-norm averages).
    loss: ``loss(params, x, y, mask)``: the mean cross-entropy over examples
      with ``mask > 0`` (0 when there are none). Stateless models return a
      scalar; stateful models return ``(scalar, new_batch_stats)`` computed in
      train mode from the statistics of the real examples of the batch.
    evaluate: ``evaluate(params, x, y, *, batch_size=1000) -> (mean_loss,
      accuracy)`` as jnp scalars; jit-compiled, runs over fixed-size batches
      (the last one padded and masked), and is itself jit-traceable.
    name: model name, e.g. ``"mnist_cnn"``.
    stateful: whether ``params`` carries batch-norm statistics (see
      :func:`loss_and_grad`).
    num_classes: number of output classes.
    input_shape: shape of one example, e.g. ``(28, 28, 1)``.
    outputs: ``"logits"`` or ``"log_probs"``: what ``apply`` returns.

  Example:
    >>> fns = mnist_cnn()
    >>> fns.name, fns.stateful, fns.num_classes
    ('mnist_cnn', False, 10)
  """
  init: Callable[[Array], PyTree]
  apply: Callable[[PyTree, Array], Array]
  loss: Callable[..., Any]
  evaluate: Callable[..., tuple[Array, Array]]
  name: str
  stateful: bool
  num_classes: int
  input_shape: tuple[int, ...]
  outputs: str


# ----------------------------------------------------------------------------
# Validation helpers.


def _check_positive_int(value, name: str) -> int:
  if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
      or value < 1):
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  return int(value)


def _check_batch(x, y, mask, name: str):
  """Checks the leading dimensions of a training batch."""
  if y.ndim != 1 or y.shape[0] != x.shape[0]:
    raise ValueError(
        f"{name}: y must have shape (B,) = ({x.shape[0]},) with integer "
        f"labels, got shape {y.shape}")
  if mask is not None and (mask.ndim != 1 or mask.shape[0] != x.shape[0]):
    raise ValueError(
        f"{name}: mask must have shape (B,) = ({x.shape[0]},), got shape "
        f"{mask.shape}")


# ----------------------------------------------------------------------------
# Losses and metrics shared by all models.


def _per_example_nll(outputs: Array, y: Array, outputs_kind: str) -> Array:
  """Per-example negative log-likelihood of integer labels ``y``."""
  logp = outputs if outputs_kind == "log_probs" else jax.nn.log_softmax(outputs)
  y = y.astype(jnp.int32)
  return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]


def _masked_mean(values: Array, mask: Array) -> Array:
  """Mean of ``values`` weighted by ``mask``; 0 (not NaN) if the mask is 0.

  Padded entries are selected away with ``jnp.where`` before weighting, so a
  non-finite value in a padded slot cannot leak into the result.
  """
  mask = mask.astype(values.dtype)
  total = jnp.sum(mask)
  weighted = jnp.where(mask > 0, values, jnp.zeros_like(values)) * mask
  return jnp.sum(weighted) / jnp.where(total > 0, total, jnp.ones_like(total))


def _eval_sums(apply, params, x, y, mask):
  """(sum of NLL, number correct) over the examples with ``mask``."""
  # log_softmax is idempotent on log-probabilities, so this works for both
  # kinds of outputs.
  logp = jax.nn.log_softmax(apply(params, x).astype(jnp.float32))
  y = y.astype(jnp.int32)
  nll = -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
  correct = (jnp.argmax(logp, axis=-1) == y).astype(jnp.float32)
  zero = jnp.zeros_like(nll)
  return (jnp.sum(jnp.where(mask, nll, zero)),
          jnp.sum(jnp.where(mask, correct, zero)))


def _pad_batches(x, y, batch_size: int, xp):
  """Pads ``(x, y)`` to whole batches; returns (xb, yb, mb, n)."""
  n = x.shape[0]
  if n == 0:
    raise ValueError("x must hold at least one example, got 0")
  bs = min(batch_size, n)
  nb = -(-n // bs)
  pad = nb * bs - n
  x = xp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  y = xp.pad(y, [(0, pad)])
  mask = xp.arange(nb * bs) < n
  return (x.reshape((nb, bs) + x.shape[1:]), y.reshape(nb, bs),
          mask.reshape(nb, bs), n)


def _scan_eval(apply, params, xb, yb, mb, n):
  """Mean loss and accuracy over pre-batched data, one compiled batch shape."""

  def body(carry, batch):
    loss_sum, correct_sum = carry
    bx, by, bm = batch
    l, c = _eval_sums(apply, params, bx, by, bm)
    return (loss_sum + l, correct_sum + c), None

  init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
  (loss_sum, correct_sum), _ = jax.lax.scan(body, init, (xb, yb, mb))
  return loss_sum / n, correct_sum / n


def _make_evaluate(apply):
  """Builds ``evaluate(params, x, y, *, batch_size)`` for an ``apply``."""

  @functools.partial(jax.jit, static_argnames=("batch_size",))
  def evaluate(params, x, y, *, batch_size: int = 1000):
    batch_size = _check_positive_int(batch_size, "batch_size")
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
      raise ValueError(
          f"y must have shape ({x.shape[0]},) with integer labels, got "
          f"{y.shape}")
    xb, yb, mb, n = _pad_batches(x, y, batch_size, jnp)
    return _scan_eval(apply, params, xb, yb, mb, n)

  return evaluate


def make_evaluator(model_fns: ModelFns, x_test, y_test,
                   batch_size: int = 1000) -> Callable[..., dict]:
  """Returns a jit-traceable ``params -> dict(loss=..., accuracy=...)``.

  The test set is padded to whole batches once, here, in numpy, and the
  returned function scans over the fixed-size batches with ``lax.scan``, so it
  can be called inside another ``jit`` (e.g. between chunks of a simulation)
  and compiles one batch shape. The loss is the mean cross-entropy, matching
  the training loss of every model in this module. Only ``model_fns.apply``
  is used, so any classifier with that contract works.

  Called as ``evaluate_fn(params)`` inside a ``jit``, the test set becomes a
  constant of the compiled program; for a CIFAR-10-sized test set that costs
  about 1.4 s of extra compile time on CPU (0.1 s otherwise). To avoid it,
  pass the padded data through the outer function's arguments:
  ``evaluate_fn(params, data)`` with ``data = evaluate_fn.data``.

  Args:
    model_fns: the model.
    x_test: test features, ``(N, ...)``.
    y_test: integer labels, ``(N,)``.
    batch_size: examples per batch (capped at ``N``).

  Returns:
    ``evaluate_fn(params, data=None) -> {"loss": scalar, "accuracy":
    scalar}``, with attribute ``evaluate_fn.data``: the batched
    ``(x, y, mask)`` arrays of shapes ``(nb, bs, ...)``, ``(nb, bs)``,
    ``(nb, bs)``.

  Example:
    >>> import jax, numpy as np
    >>> fns = logistic_regression(input_dim=5, num_classes=3)
    >>> ev = make_evaluator(fns, np.ones((7, 5), np.float32),
    ...                     np.zeros(7, np.int32), batch_size=4)
    >>> out = jax.jit(ev)(fns.init(jax.random.key(0)))
    >>> round(float(out["accuracy"]), 3)
    1.0
    >>> out = jax.jit(ev)(fns.init(jax.random.key(0)), ev.data)  # no constant
  """
  batch_size = _check_positive_int(batch_size, "batch_size")
  x_test = np.asarray(x_test)
  y_test = np.asarray(y_test)
  if y_test.ndim != 1 or y_test.shape[0] != x_test.shape[0]:
    raise ValueError(
        f"y_test must have shape ({x_test.shape[0]},) with integer labels, "
        f"got {y_test.shape}")
  xb, yb, mb, n = _pad_batches(x_test, y_test.astype(np.int32), batch_size,
                               np)
  batched = (jnp.asarray(xb), jnp.asarray(yb), jnp.asarray(mb))
  apply = model_fns.apply

  def evaluate_fn(params, data=None) -> dict:
    bx, by, bm = batched if data is None else data
    if tuple(bm.shape) != tuple(batched[2].shape):
      raise ValueError(
          f"data must be evaluate_fn.data (mask shape {batched[2].shape}), "
          f"got mask shape {tuple(bm.shape)}")
    loss, acc = _scan_eval(apply, params, bx, by, bm, n)
    return {"loss": loss, "accuracy": acc}

  evaluate_fn.data = batched
  return evaluate_fn


# ----------------------------------------------------------------------------
# Generic builder from a flax module.

_OUTPUT_KINDS = ("logits", "log_probs")


def from_flax(module: nn.Module, *, input_shape: Sequence[int],
              num_classes: int, name: str = "custom", stateful: bool = False,
              outputs: str = "logits",
              prepare: Callable[[Array], Array] | None = None) -> ModelFns:
  """Wraps a flax classifier as :class:`ModelFns`.

  A stateless module is called as ``module.apply({"params": p}, x)`` and its
  params are the bare ``p`` pytree. A stateful module (batch norm) must accept
  ``module(x, train=..., mask=...)``, where ``mask`` is a boolean ``(B,)``
  array of the examples from which batch statistics are computed; its params
  are ``{"params": ..., "batch_stats": ...}``.

  Args:
    module: a flax.linen module mapping ``(B, *input_shape)`` to
      ``(B, num_classes)``.
    input_shape: shape of one example (used by ``init``).
    num_classes: number of classes.
    name: model name.
    stateful: whether the module keeps ``batch_stats``.
    outputs: ``"logits"`` or ``"log_probs"``.
    prepare: optional ``x -> x`` applied before the module (reshaping,
      casting); it also validates shapes.

  Returns:
    The model's :class:`ModelFns`.

  Example:
    >>> import jax, flax.linen as nn
    >>> fns = from_flax(nn.Dense(3), input_shape=(4,), num_classes=3)
    >>> count_params(fns.init(jax.random.key(0)))
    15
  """
  if outputs not in _OUTPUT_KINDS:
    raise ValueError(f"outputs must be one of {_OUTPUT_KINDS}, got {outputs!r}")
  num_classes = _check_positive_int(num_classes, "num_classes")
  input_shape = tuple(int(d) for d in input_shape)
  prepare = prepare if prepare is not None else (
      lambda x: jnp.asarray(x, jnp.float32))

  if not stateful:

    def init(key):
      variables = module.init(key, jnp.zeros((1,) + input_shape, jnp.float32))
      return variables["params"]

    def apply(params, x):
      return module.apply({"params": params}, prepare(x))

    def loss(params, x, y, mask):
      x, y, mask = prepare(x), jnp.asarray(y), jnp.asarray(mask)
      _check_batch(x, y, mask, name)
      out = module.apply({"params": params}, x)
      return _masked_mean(_per_example_nll(out, y, outputs), mask)

  else:

    def init(key):
      variables = module.init(key, jnp.zeros((1,) + input_shape, jnp.float32),
                              train=False)
      return {"params": variables["params"],
              "batch_stats": variables["batch_stats"]}

    def apply(params, x):
      return module.apply(params, prepare(x), train=False)

    def loss(params, x, y, mask):
      x, y, mask = prepare(x), jnp.asarray(y), jnp.asarray(mask)
      _check_batch(x, y, mask, name)
      real = mask > 0
      any_real = jnp.any(real)
      # With no real example, take statistics over the whole (padding) batch
      # to stay finite, then keep the old running averages below.
      stats_mask = jnp.where(any_real, real, jnp.ones_like(real))
      out, updates = module.apply(
          {"params": params["params"], "batch_stats": params["batch_stats"]},
          x, train=True, mask=stats_mask, mutable=["batch_stats"])
      new_stats = jax.tree.map(lambda new, old: jnp.where(any_real, new, old),
                               updates["batch_stats"], params["batch_stats"])
      return _masked_mean(_per_example_nll(out, y, outputs), mask), new_stats

  return ModelFns(init=jax.jit(init), apply=apply, loss=loss,
                  evaluate=_make_evaluate(apply), name=name,
                  stateful=bool(stateful), num_classes=num_classes,
                  input_shape=input_shape, outputs=outputs)


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
  x = jnp.asarray(x, jnp.float32)
  if channels == 1 and x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(
        f"{name}: x must have shape (B, H, W, {channels})"
        + (" or (B, H, W)" if channels == 1 else "")
        + f", got {x.shape}")
  return x


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
    >>> count_params(params)
    19146
    >>> fns.apply(params, jnp.zeros((2, 28, 28))).shape
    (2, 10)
  """
  num_classes = _check_positive_int(num_classes, "num_classes")
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

  @nn.compact
  def __call__(self, x, *, train: bool, mask):
    conv = functools.partial(
        nn.Conv, use_bias=False,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
        conv_general_dilated=self.conv_fn)
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


class _ResNetCifar(nn.Module):
  """CIFAR ResNet-(6n+2): conv, three stages of n blocks, pool, linear."""
  num_classes: int = 10
  blocks: tuple[int, ...] = (3, 3, 3)
  widths: tuple[int, ...] = (16, 32, 64)
  conv_fn: Callable[..., Array] = jax.lax.conv_general_dilated

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
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-5)(x, mask=mask)
    x = nn.relu(x)
    for stage, (n, width) in enumerate(zip(self.blocks, self.widths)):
      for b in range(n):
        strides = 2 if (stage > 0 and b == 0) else 1
        x = _BasicBlock(width, strides, conv_fn=self.conv_fn)(
            x, train=train, mask=mask)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


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
  Convolutions use He-normal (fan-in) init; batch norm uses PyTorch's
  defaults (momentum 0.1, i.e. flax ``momentum=0.9``; epsilon 1e-5).
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
    >>> params = fns.init(jax.random.key(0))
    >>> count_params(params)
    272474
    >>> x, y = jnp.zeros((2, 32, 32, 3)), jnp.zeros((2,), jnp.int32)
    >>> loss, new_stats = fns.loss(params, x, y, jnp.ones(2))
  """
  num_classes = _check_positive_int(num_classes, "num_classes")
  conv_fn = conv_lib.resolve_conv(conv)
  return from_flax(
      _ResNetCifar(num_classes=num_classes, conv_fn=conv_fn),
      input_shape=(32, 32, 3),
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
  x = jnp.asarray(x, jnp.float32)
  if x.ndim < 1:
    raise ValueError(f"{name}: x must have a batch dimension, got a scalar")
  x = x.reshape((x.shape[0], -1)) if x.ndim != 2 else x
  if x.shape[-1] != input_dim:
    raise ValueError(
        f"{name}: each example must have input_dim={input_dim} features "
        f"(after flattening), got {x.shape[-1]}")
  return x


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
    >>> count_params(mlp().init(jax.random.key(0)))
    199210
  """
  num_classes = _check_positive_int(num_classes, "num_classes")
  input_dim = _check_positive_int(input_dim, "input_dim")
  try:
    hidden = tuple(hidden)
  except TypeError:
    raise ValueError(
        f"hidden must be a sequence of positive integers, got {hidden!r}"
    ) from None
  for h in hidden:
    _check_positive_int(h, "hidden (each width)")
  hidden = tuple(int(h) for h in hidden)
  return from_flax(
      _MLP(hidden=hidden, num_classes=num_classes), input_shape=(input_dim,),
      num_classes=num_classes, name="mlp", outputs="logits",
      prepare=lambda x: _prepare_flat(x, input_dim, "mlp"))


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
    >>> count_params(fns.init(jax.random.key(0)))
    610
  """
  input_dim = _check_positive_int(input_dim, "input_dim")
  num_classes = _check_positive_int(num_classes, "num_classes")
  module = nn.Dense(num_classes, kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.zeros)
  return from_flax(
      module, input_shape=(input_dim,), num_classes=num_classes,
      name="logistic_regression", outputs="logits",
      prepare=lambda x: _prepare_flat(x, input_dim, "logistic_regression"))


# ----------------------------------------------------------------------------
# Registry and pytree helpers.

_FACTORIES: dict[str, Callable[..., ModelFns]] = {
    "mnist_cnn": mnist_cnn,
    "resnet20": resnet20,
    "mlp": mlp,
    "logistic_regression": logistic_regression,
}
_ALIASES = {"cnn": "mnist_cnn", "2nn": "mlp", "logreg": "logistic_regression"}
MODEL_NAMES = tuple(_FACTORIES)


def get_model(name: str, **kwargs) -> ModelFns:
  """Builds a model by name.

  Args:
    name: one of ``"mnist_cnn"`` (alias ``"cnn"``), ``"resnet20"``, ``"mlp"``
      (alias ``"2nn"``), ``"logistic_regression"`` (alias ``"logreg"``).
    **kwargs: keyword options of the factory, e.g. ``num_classes``.

  Returns:
    The model's :class:`ModelFns`.

  Example:
    >>> get_model("logistic_regression", input_dim=60, num_classes=10).name
    'logistic_regression'
  """
  key = _ALIASES.get(name, name) if isinstance(name, str) else name
  if key not in _FACTORIES:
    allowed = sorted(set(_FACTORIES) | set(_ALIASES))
    raise ValueError(f"name must be one of {allowed}, got {name!r}")
  return _FACTORIES[key](**kwargs)


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
