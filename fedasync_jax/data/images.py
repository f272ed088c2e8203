"""Images: standardization constants per data set, scaling, channel axis and
JPEG decoding.

The one place that decides how a data set's images are normalised:

* ``normalization(name)``: the per-channel ``(mean, std)`` of a data set's
  images scaled to [0, 1] (``NORMALIZATION``); any other data set is only
  scaled to [0, 1] (mean 0, std 1);
* ``image_transform(name)``: ``uint8 -> standardized float32`` with those
  constants, jit-traceable (training images stay uint8 on the device and
  are standardized per minibatch inside the compiled step);
* ``with_image_inputs(model, name)``: a ``models.ModelFns`` whose
  ``apply``, ``loss`` and ``evaluate`` standardize uint8 inputs
  themselves;
* ``normalize`` (numpy, any mean/std/scale) and ``normalize_for`` (numpy,
  with a known data set's constants) for host-side arrays (e.g. the test
  set).

The constants: MNIST (LeCun, Bottou, Bengio and Haffner 1998) and
Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, arXiv:1708.07747) measured
on the exact training sets; CIFAR-10 (Krizhevsky 2009) the usual values
(exact training set, population std).

Example:
  >>> import numpy as np
  >>> normalization("mnist")
  ((0.1307,), (0.3081,))
  >>> t = image_transform("mnist")
  >>> round(float(t(np.zeros((1, 2), np.uint8))[0, 0]), 4)
  -0.4242
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks

# Per-channel mean and standard deviation of the training images scaled to
# [0, 1]. MNIST and Fashion-MNIST measured on the exact training sets; the
# CIFAR-10 values are the usual ones (exact training set, population std).
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def normalization(name: str) -> tuple:
  """``(mean, std)`` of a data set's images after scaling to [0, 1].

  Args:
    name: a data set name; a key of ``NORMALIZATION`` (``"mnist"``,
      ``"fashion_mnist"``, ``"cifar10"``) gives its per-channel constants,
      any other name ``((0.0,), (1.0,))`` (only scaling to [0, 1]).

  Returns:
    ``(mean, std)``, tuples of floats, one entry per channel.

  Example:
    >>> normalization("cifar10")[0]
    (0.4914, 0.4822, 0.4465)
    >>> normalization("emnist")
    ((0.0,), (1.0,))
  """
  return NORMALIZATION.get(name, ((0.0,), (1.0,)))


def normalize(x: np.ndarray, *, mean: float | Sequence[float] = 0.0,
              std: float | Sequence[float] = 1.0,
              scale: float | None = None) -> np.ndarray:
  """Scales features to [0, 1] and standardizes them, as float32.

  Computes ``(x / scale - mean) / std``; ``mean`` and ``std`` are scalars or
  per-channel sequences (broadcast over the last axis).

  Args:
    x: features, e.g. uint8 images.
    mean: mean to subtract (after scaling).
    std: standard deviation to divide by (after scaling), > 0.
    scale: divisor bringing ``x`` to [0, 1]; ``None`` means 255 for uint8
      input and 1 otherwise.

  Returns:
    float32 array of ``x``'s shape.

  Example:
    >>> normalize(np.array([0, 255], np.uint8), mean=0.5, std=0.5).tolist()
    [-1.0, 1.0]
  """
  x = np.asarray(x)
  mean_a = np.asarray(mean, dtype=np.float32)
  std_a = np.asarray(std, dtype=np.float32)
  if mean_a.ndim > 1 or std_a.ndim > 1:
    raise ValueError(f"mean and std must be scalars or 1-D per-channel "
                     f"sequences, got shapes {mean_a.shape} and "
                     f"{std_a.shape}")
  if not np.isfinite(mean_a).all():
    raise ValueError(f"mean must be finite, got {mean}")
  if not (np.isfinite(std_a).all() and (std_a > 0).all()):
    raise ValueError(f"std must be finite and > 0, got {std}")
  for nm, a in (("mean", mean_a), ("std", std_a)):
    if a.ndim == 1 and a.shape[0] not in (1, x.shape[-1] if x.ndim else 0):
      raise ValueError(f"{nm} has {a.shape[0]} channels but x has last axis "
                       f"{x.shape[-1] if x.ndim else None}")
  if scale is None:
    scale = 255.0 if x.dtype == np.uint8 else 1.0
  checks.number("scale", scale, low=0, low_open=True)
  out = x.astype(np.float32) * np.float32(1.0 / scale)
  out -= mean_a
  out /= std_a
  return out


def normalize_for(x: np.ndarray, *, dataset: str) -> np.ndarray:
  """``normalize`` with the standard constants of ``dataset``.

  Args:
    x: uint8 images of that data set (channels last).
    dataset: a key of ``NORMALIZATION`` (``"mnist"``, ``"fashion_mnist"``,
      ``"cifar10"``).

  Returns:
    float32 standardized images.

  Example:
    >>> z = normalize_for(np.zeros(1, np.uint8), dataset="mnist")
    >>> round(float(z[0]), 4)
    -0.4242
  """
  checks.choice("dataset", dataset, sorted(NORMALIZATION))
  mean, std = normalization(dataset)
  return normalize(x, mean=mean, std=std)


def image_transform(name: str):
  """``x_uint8 -> standardized float32``, traced inside the compiled step.

  Computes ``(x / 255 - mean) / std`` in float32 with the constants of
  ``normalization(name)``, broadcast over the last (channel) axis.

  Args:
    name: the data set, a key of ``NORMALIZATION`` (``mnist``,
      ``fashion_mnist``, ``cifar10``); any other name only scales to [0, 1].

  Returns:
    A jit-traceable function of a uint8 array (numpy or jax).

  Example:
    >>> import numpy as np
    >>> t = image_transform("mnist")
    >>> round(float(t(np.zeros((1, 2), np.uint8))[0, 0]), 4)
    -0.4242
  """
  mean, std = (np.asarray(v, np.float32) for v in normalization(name))

  def transform(x):
    shape = (1,) * (x.ndim - 1) + (-1,)
    return ((x.astype(jnp.float32) / 255.0 - mean.reshape(shape))
            / std.reshape(shape))
  return transform


def with_image_inputs(model: Any, name: str) -> Any:
  """``model`` whose ``apply``, ``loss`` and ``evaluate`` standardize uint8
  images themselves.

  Training images can stay uint8 (4x less memory) while the test set is
  standardized float32. A model wrapped here takes either: uint8 inputs go
  through ``image_transform(name)`` inside the compiled step, float inputs
  are used as they are (the choice is made from the dtype when tracing, so
  it costs nothing). ``model.loss`` is then the right training loss and
  ``models.make_evaluator(model, x_test, y_test)`` the right evaluator.

  Args:
    model: any ``models.ModelFns`` (anything with ``apply``, ``loss``,
      ``evaluate`` and ``_replace``).
    name: the data set, for its normalization (see ``image_transform``).

  Returns:
    The wrapped model (same fields otherwise).

  Example:
    >>> import jax, numpy as np
    >>> from fedasync_jax import models
    >>> m = with_image_inputs(models.logistic_regression(4, 2), "mnist")
    >>> p = m.init(jax.random.key(0))
    >>> x8 = np.full((1, 4), 255, np.uint8)
    >>> xf = np.asarray(image_transform("mnist")(x8))
    >>> bool(np.allclose(m.apply(p, x8), m.apply(p, xf)))
    True
  """
  transform = image_transform(name)

  def prepare(x):
    dtype = x.dtype if hasattr(x, "dtype") else jnp.asarray(x).dtype
    return transform(x) if dtype == jnp.uint8 else x

  def apply(params, x, *args, **kwargs):
    return model.apply(params, prepare(x), *args, **kwargs)

  def loss(params, x, *args, **kwargs):
    return model.loss(params, prepare(x), *args, **kwargs)

  def evaluate(params, x, *args, **kwargs):
    return model.evaluate(params, prepare(x), *args, **kwargs)
  return model._replace(apply=apply, loss=loss, evaluate=evaluate)


def add_channel_axis(x: np.ndarray) -> np.ndarray:
  """Returns ``(n, H, W)`` grayscale images as ``(n, H, W, 1)``; leaves
  arrays with a channel axis unchanged.

  Args:
    x: images, ``(n, H, W)`` or ``(n, H, W, C)``.

  Returns:
    A view with a trailing channel axis.

  Example:
    >>> add_channel_axis(np.zeros((2, 28, 28))).shape
    (2, 28, 28, 1)
  """
  x = np.asarray(x)
  if x.ndim == 3:
    return x[..., None]
  if x.ndim == 4:
    return x
  raise ValueError(f"x must have shape (n, H, W) or (n, H, W, C), got "
                   f"{x.shape}")


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray, count: int, *,
                 shape: Sequence[int] = (32, 32, 3),
                 where: str = "jpeg") -> np.ndarray:
  """Decodes the first ``count`` of concatenated JPEG files to uint8 RGB.

  Image ``i`` is ``blob[offsets[i]:offsets[i + 1]]``. Needs pillow.

  Args:
    blob: all JPEG files concatenated, flat uint8.
    offsets: ``n + 1`` increasing boundaries (``count <= n``).
    count: number of images to decode.
    shape: the shape every image must decode to.
    where: names the source in errors (e.g. ``"file.npz: 'jpeg_train'"``).

  Returns:
    ``(count, *shape)`` uint8 images.

  Example:
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (2, 2), (255, 0, 0)).save(buf, "JPEG")
    >>> b = np.frombuffer(buf.getvalue(), np.uint8)
    >>> decode_jpegs(b, np.array([0, len(b)]), 1, shape=(2, 2, 3)).shape
    (1, 2, 2, 3)
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel
  shape = tuple(shape)
  images = np.empty((count,) + shape, np.uint8)
  raw = blob.tobytes()
  for i in range(count):
    try:
      with Image.open(io.BytesIO(raw[offsets[i]:offsets[i + 1]])) as im:
        img = np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001 - any decoder error, one line
      raise ValueError(f"{where}: image {i} cannot be decoded as a JPEG "
                       f"({type(e).__name__}: {e})") from None
    if img.shape != shape:
      raise ValueError(f"{where}: image {i} decodes to shape {img.shape}, "
                       f"expected {shape}")
    images[i] = img
  return images
