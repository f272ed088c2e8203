"""Reading data sets stored as ``.npz`` files.

* ``load_npz``: a user's ``.npz`` with ``x_train, y_train, x_test, y_test``
  (written with ``numpy.savez``; no pickles), checked key by key.
* ``load_cifar10_jpeg``: CIFAR-10 (Krizhevsky 2009) stored as JPEG bytes
  (the team's offline copy, see ``../shared/data/README.md``).

Every error names the file and the key.

Example:
  >>> import numpy as np, tempfile, os
  >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
  >>> z = np.zeros((4, 2), np.float32); y = np.array([0, 1, 0, 1])
  >>> np.savez(path, x_train=z, y_train=y, x_test=z, y_test=y)
  >>> c = load_npz(path)
  >>> c.name, c.num_classes, c.x_train.shape
  ('toy', 2, (4, 2))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.data.central import MAX_CLASSES, CentralData
from fedasync_jax.data.images import decode_jpegs

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_JPEG_KEYS = ("jpeg_train", "offsets_train", "y_train", "jpeg_test",
              "offsets_test", "y_test")


def load_npz(path: str | os.PathLike, *, num_classes: int | None = None,
             max_classes: int = MAX_CLASSES) -> CentralData:
  """Loads and checks a ``.npz`` with ``x_train, y_train, x_test, y_test``.

  Checks that the four keys exist, that ``len(x) == len(y)`` per split, that
  train and test features have the same trailing shape, that labels are
  one-dimensional integers in ``[0, num_classes)``, and that float features
  are finite. Every error names the file and the key.

  Args:
    path: the ``.npz`` file (written with ``numpy.savez``; no pickles).
    num_classes: number of classes; ``None`` infers ``max label + 1``.
    max_classes: the most classes allowed (a named data set's own count);
      labels ``>= max_classes`` are refused before anything is allocated.

  Returns:
    A ``CentralData`` with features as stored and int32 labels; its name is
    the file's stem.

  Example:
    >>> m = load_npz("../shared/data/mnist.npz")  # doctest: +SKIP
    >>> m.x_train.shape, m.num_classes  # doctest: +SKIP
    ((60000, 28, 28), 10)
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  arrays = _read_npz(path, _NPZ_KEYS)
  _check_shapes(path, arrays)
  x_train, y_train = arrays["x_train"], arrays["y_train"]
  x_test, y_test = arrays["x_test"], arrays["y_test"]
  max_classes = checks.integer("max_classes", max_classes, low=1,
                               high=MAX_CLASSES)
  if num_classes is None:
    num_classes = min(max_classes, int(max(y_train.max(initial=0),
                                           y_test.max(initial=0))) + 1)
  else:
    num_classes = checks.integer("num_classes", num_classes, low=1,
                                 high=max_classes)
  for key in ("y_train", "y_test"):
    y = arrays[key]
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(f"{path}: key {key!r} has labels outside [0, "
                       f"{num_classes}): {int(bad.sum())} of them, first "
                       f"y[{i}] = {y[i]}")
  for key in ("x_train", "x_test"):
    x = arrays[key]
    if x.dtype.kind == "f":
      finite = np.isfinite(x)
      if not finite.all():
        flat = int(np.argmin(finite.reshape(len(x), -1).all(axis=1)))
        raise ValueError(f"{path}: key {key!r} has {int((~finite).sum())} "
                         f"non-finite values (NaN or inf), first in example "
                         f"{flat}")
  return CentralData(x_train, y_train.astype(np.int32), x_test,
                     y_test.astype(np.int32), int(num_classes), path.stem)


def load_cifar10_jpeg(path: str | os.PathLike, *,
                      limit: int | None = None) -> CentralData:
  """Decodes CIFAR-10 stored as concatenated JPEG bytes.

  The file holds, per split ``s`` in ``train``/``test``, ``jpeg_s`` (all JPEG
  files concatenated, uint8), ``offsets_s`` (``n + 1`` int64 boundaries:
  image ``i`` is ``jpeg_s[offsets_s[i]:offsets_s[i + 1]]``) and ``y_s``.
  JPEG is lossy (about 30 dB PSNR to the original images). Decoding all
  60,000 images takes about 4 s.

  Args:
    path: the ``.npz`` file, e.g. ``../shared/data/cifar10_jpeg_bytes.npz``.
    limit: decode only the first ``limit`` images of each split (>= 1);
      ``None`` decodes all.

  Returns:
    A ``CentralData`` with ``(n, 32, 32, 3)`` uint8 images and int32 labels.

  Example:
    >>> c = load_cifar10_jpeg("../shared/data/cifar10_jpeg_bytes.npz",
    ...                       limit=10)  # doctest: +SKIP
    >>> c.x_train.shape  # doctest: +SKIP
    (10, 32, 32, 3)
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  if limit is not None:
    limit = checks.integer("limit", limit, low=1)
  arrays = _read_npz(path, _JPEG_KEYS)
  out = {}
  for split in ("train", "test"):
    blob = arrays[f"jpeg_{split}"]
    offsets = arrays[f"offsets_{split}"]
    y = arrays[f"y_{split}"]
    if blob.dtype != np.uint8 or blob.ndim != 1:
      raise ValueError(f"{path}: key 'jpeg_{split}' must be flat uint8 bytes, "
                       f"got {blob.dtype} of shape {blob.shape}")
    if y.ndim != 1 or y.dtype.kind not in "iu":
      raise ValueError(f"{path}: key 'y_{split}' must be 1-D integer labels, "
                       f"got {y.dtype} of shape {y.shape}")
    if offsets.shape != (len(y) + 1,):
      raise ValueError(f"{path}: key 'offsets_{split}' must have shape "
                       f"({len(y) + 1},), got {offsets.shape}")
    if (offsets[0] != 0 or offsets[-1] != len(blob) or
        (np.diff(offsets) <= 0).any()):
      raise ValueError(f"{path}: key 'offsets_{split}' must increase from 0 "
                       f"to len(jpeg_{split}) = {len(blob)}")
    if y.min(initial=0) < 0 or y.max(initial=0) >= 10:
      raise ValueError(f"{path}: key 'y_{split}' has labels outside [0, 10)")
    n = len(y) if limit is None else min(len(y), int(limit))
    images = decode_jpegs(blob, offsets, n, shape=(32, 32, 3),
                          where=f"{path}: 'jpeg_{split}'")
    out[split] = (images, y[:n].astype(np.int32))
  return CentralData(out["train"][0], out["train"][1], out["test"][0],
                     out["test"][1], 10, "cifar10_jpeg")


def _check_shapes(path: Path, arrays: dict) -> None:
  """Dtypes and shapes of the four arrays of ``load_npz``'s file."""
  x_train, x_test = arrays["x_train"], arrays["x_test"]
  for key in ("x_train", "x_test"):
    x = arrays[key]
    if x.dtype.kind not in "biuf":
      raise ValueError(f"{path}: key {key!r} must hold numbers (bool, int or "
                       f"float), got dtype {x.dtype}")
    if x.ndim < 1:
      raise ValueError(f"{path}: key {key!r} must have a leading example "
                       f"axis, got shape {x.shape}")
  for key in ("y_train", "y_test"):
    y = arrays[key]
    if y.ndim != 1:
      raise ValueError(f"{path}: key {key!r} must be one-dimensional labels, "
                       f"got shape {y.shape}")
    if y.dtype.kind not in "iu":
      raise ValueError(f"{path}: key {key!r} must hold integer labels, got "
                       f"dtype {y.dtype}")
  if len(x_train) == 0:
    raise ValueError(f"{path}: key 'x_train' holds no examples")
  for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
    if len(arrays[xk]) != len(arrays[yk]):
      raise ValueError(f"{path}: key {yk!r} has {len(arrays[yk])} labels but "
                       f"{xk!r} has {len(arrays[xk])} examples")
  if x_test.shape[1:] != x_train.shape[1:]:
    raise ValueError(f"{path}: key 'x_test' has example shape "
                     f"{x_test.shape[1:]} but 'x_train' has "
                     f"{x_train.shape[1:]}")


def _read_npz(path: Path, keys: Sequence[str]) -> dict:
  """Reads the given keys of an ``.npz``; errors name the file and key."""
  try:
    archive = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{path}: cannot be read as an .npz archive: {e}") from e
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise ValueError(f"{path}: is a single .npy array, expected an .npz "
                     f"archive with keys {list(keys)}")
  with archive:
    missing = [k for k in keys if k not in archive.files]
    if missing:
      raise ValueError(f"{path}: missing key(s) {missing}; found "
                       f"{archive.files}, expected {list(keys)}")
    out = {}
    for k in keys:
      try:
        out[k] = archive[k]
      except ValueError as e:
        if "pickle" not in str(e):
          raise ValueError(f"{path}: key {k!r} is corrupt: {e}") from e
        raise ValueError(f"{path}: key {k!r} cannot be loaded without "
                         f"pickle (object arrays are not supported): "
                         f"{e}") from e
      except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, EOF...
        raise ValueError(f"{path}: key {k!r} is corrupt "
                         f"({type(e).__name__}: {e})") from e
  return out
