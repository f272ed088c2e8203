"""What every model is: ``ModelFns``, the losses, evaluation and helpers.

A model is exposed the optax way: a factory returns a :class:`ModelFns`
NamedTuple of pure functions (``init``, ``apply``, ``loss``, ``evaluate``)
with the hyperparameters held in the closure. :func:`from_flax` wraps any
flax classifier that way; :func:`make_evaluator` builds a jit-traceable
test-set evaluation; ``models.params`` holds the helpers that hide the
difference between stateless models and models with batch-norm
statistics (``split_params``, ``merge_params``, ``loss_and_grad``), so one
client trainer handles both.

The training contract (used by the client trainer inside ``lax.scan``)::

  loss(params, x, y, mask) -> scalar                    # stateless
  loss(params, x, y, mask) -> (scalar, new_batch_stats)  # batch norm

where ``mask`` is a ``(B,)`` array in the parameters' float dtype (float64
in a float64 study), 1 for real examples and 0 for padding; the loss is the mean over real examples and 0 (with a finite, zero
gradient) when the mask is all zero.

Example:
  >>> import jax, flax.linen as nn
  >>> from fedasync_jax.models.params import count_params
  >>> fns = from_flax(nn.Dense(3), input_shape=(4,), num_classes=3)
  >>> count_params(fns.init(jax.random.key(0))), fns.stateful
  (15, False)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks

PyTree = Any
Array = jax.Array

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
      ``params.loss_and_grad``).
    num_classes: number of output classes.
    input_shape: shape of one example, e.g. ``(28, 28, 1)``.
    outputs: ``"logits"`` or ``"log_probs"``: what ``apply`` returns.

  Example:
    >>> from fedasync_jax.models import mnist_cnn
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


def as_float(x) -> Array:
  """Examples as floating point: integers (e.g. uint8 pixels) and half
  precision as float32; float32 kept, and float64 kept under
  ``jax_enable_x64`` (a float64 study's data are not rounded to float32).

  Example:
    >>> import numpy as np
    >>> as_float(np.arange(3, dtype=np.uint8)).dtype
    dtype('float32')
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return x.astype(jnp.float32)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _sum_dtype(dtype):
  """The evaluation's dtype for model outputs of ``dtype``: at least
  float32 (half precision is summed in float32), float64 kept."""
  return jnp.promote_types(dtype, jnp.float32)


def _eval_sums(apply, params, x, y, mask):
  """(sum of NLL, number correct) over the examples with ``mask``."""
  # log_softmax is idempotent on log-probabilities, so this works for both
  # kinds of outputs.
  out = apply(params, x)
  logp = jax.nn.log_softmax(out.astype(_sum_dtype(out.dtype)))
  y = y.astype(jnp.int32)
  nll = -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
  correct = (jnp.argmax(logp, axis=-1) == y).astype(logp.dtype)
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

  out = jax.eval_shape(apply, params, xb[0])
  init = (jnp.zeros((), _sum_dtype(out.dtype)),) * 2
  (loss_sum, correct_sum), _ = jax.lax.scan(body, init, (xb, yb, mb))
  return loss_sum / n, correct_sum / n


def _make_evaluate(apply):
  """Builds ``evaluate(params, x, y, *, batch_size)`` for an ``apply``."""

  @functools.partial(jax.jit, static_argnames=("batch_size",))
  def evaluate(params, x, y, *, batch_size: int = 1000):
    batch_size = checks.integer("batch_size", batch_size, low=1)
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
    scalar}``, with attributes ``evaluate_fn.data``: the batched
    ``(x, y, mask)`` arrays of shapes ``(nb, bs, ...)``, ``(nb, bs)``,
    ``(nb, bs)``, and ``evaluate_fn.num_classes`` (``simulate`` checks the
    labels against it).

  Example:
    >>> import jax, numpy as np
    >>> from fedasync_jax.models import logistic_regression
    >>> fns = logistic_regression(input_dim=5, num_classes=3)
    >>> ev = make_evaluator(fns, np.ones((7, 5), np.float32),
    ...                     np.zeros(7, np.int32), batch_size=4)
    >>> out = jax.jit(ev)(fns.init(jax.random.key(0)))
    >>> round(float(out["accuracy"]), 3)
    1.0
    >>> out = jax.jit(ev)(fns.init(jax.random.key(0)), ev.data)  # no constant
  """
  batch_size = checks.integer("batch_size", batch_size, low=1)
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
  evaluate_fn.num_classes = model_fns.num_classes  # simulate checks labels
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
  are ``{"params": ..., "batch_stats": ...}``. (flax's own
  ``nn.BatchNorm(...)(x, mask=...)`` wants a mask that broadcasts to
  ``x``: pass it ``mask[:, None]`` after a dense layer, ``mask[:, None,
  None, None]`` on images; ``models.batch_norm.BatchNorm`` takes the
  ``(B,)`` mask as it is.)

  Args:
    module: a flax.linen module mapping ``(B, *input_shape)`` to
      ``(B, num_classes)``.
    input_shape: shape of one example (used by ``init``).
    num_classes: number of classes.
    name: model name.
    stateful: whether the module keeps ``batch_stats``.
    outputs: ``"logits"`` or ``"log_probs"``.
    prepare: optional ``x -> x`` applied before the module (reshaping,
      casting); it also validates shapes. The default is ``as_float``:
      integer or half-precision examples become float32, float64 ones
      stay float64 under ``jax_enable_x64``.

  Returns:
    The model's :class:`ModelFns`.

  Example:
    >>> import jax, flax.linen as nn
    >>> from fedasync_jax.models.params import count_params
    >>> fns = from_flax(nn.Dense(3), input_shape=(4,), num_classes=3)
    >>> count_params(fns.init(jax.random.key(0)))
    15
  """
  outputs = checks.choice("outputs", outputs, _OUTPUT_KINDS)
  num_classes = checks.integer("num_classes", num_classes, low=1)
  input_shape = tuple(int(d) for d in input_shape)
  prepare = prepare if prepare is not None else as_float
  build = _stateful_fns if stateful else _stateless_fns
  init, apply, loss = build(module, input_shape, prepare, name, outputs)
  _check_outputs(init, apply, input_shape, num_classes)
  return ModelFns(init=jax.jit(init), apply=apply, loss=loss,
                  evaluate=_make_evaluate(apply), name=name,
                  stateful=bool(stateful), num_classes=num_classes,
                  input_shape=input_shape, outputs=outputs)


def _check_outputs(init, apply, input_shape, num_classes) -> None:
  """The module must map ``(B, *input_shape)`` to ``(B, num_classes)``
  (traced for shapes only): more classes than outputs trained to NaN
  losses with no error."""
  out = jax.eval_shape(lambda k: apply(init(k), jnp.zeros(
      (2,) + input_shape, jnp.float32)), jax.random.key(0))
  if tuple(out.shape) != (2, num_classes):
    raise ValueError(f"the module maps examples of shape {input_shape} to "
                     f"outputs of shape {tuple(out.shape[1:])}, but "
                     f"num_classes={num_classes} needs ({num_classes},)")


def _stateless_fns(module, input_shape, prepare, name, outputs):
  """``(init, apply, loss)`` of a module without batch statistics."""

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

  return init, apply, loss


def _stateful_fns(module, input_shape, prepare, name, outputs):
  """``(init, apply, loss)`` of a module with batch statistics: ``loss``
  runs in train mode and also returns the new ``batch_stats``."""

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

  return init, apply, loss
