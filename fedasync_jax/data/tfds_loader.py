"""Reading image classification data sets of tensorflow-datasets.

``load_tfds`` reads any image classification data set of
tensorflow-datasets (mnist, fashion_mnist, cifar10, emnist/balanced, ...)
through ``tfds.data_source`` and numpy, so TensorFlow is not needed.
Nothing is downloaded unless ``download=True``: offline downloads hang for
minutes, so a missing data set raises ``central.DatasetNotFoundError`` at
once, with what to do.

Example:
  >>> isinstance(default_tfds_data_dir(), str)
  True
"""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.data.central import CentralData, DatasetNotFoundError


def default_tfds_data_dir() -> str:
  """The TFDS data directory used when ``data_dir=None``.

  Returns:
    ``$TFDS_DATA_DIR`` if set (read at call time), else
    ``~/tensorflow_datasets`` (the TFDS default).

  Example:
    >>> isinstance(default_tfds_data_dir(), str)
    True
  """
  env = os.environ.get("TFDS_DATA_DIR")
  if env:
    return env
  return os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def load_tfds(name: str, *, data_dir: str | os.PathLike | None = None,
              download: bool = False, split_train: str = "train",
              split_test: str = "test", image_key: str = "image",
              label_key: str = "label",
              batch_size: int = 4096) -> CentralData:
  """Reads a TFDS image classification data set into numpy arrays.

  Uses ``tfds.data_source`` (random access to ``array_record`` files), so
  TensorFlow is not needed. Records are read in batches of ``batch_size``
  (reading the 60,000 MNIST training images takes about 3.5 s on a 2-core
  CPU, most of it PNG decoding) and keep TFDS's stored order.

  Args:
    name: a TFDS name, e.g. ``"mnist"``, ``"fashion_mnist"``,
      ``"cifar10"`` or ``"emnist/balanced"`` (optionally with a version,
      ``"mnist:3.0.1"``).
    data_dir: directory holding TFDS data sets; ``None`` means the
      ``TFDS_DATA_DIR`` environment variable, else ``~/tensorflow_datasets``.
    download: whether TFDS may download and prepare a missing data set
      (needs network). Off by default: offline downloads hang for minutes.
    split_train: name of the training split.
    split_test: name of the test split.
    image_key: feature holding the image.
    label_key: feature holding the class label (a ``ClassLabel``).
    batch_size: records per read, >= 1.

  Returns:
    A ``CentralData`` with images as stored (uint8, ``(n, H, W, C)``) and
    int32 labels.

  Raises:
    DatasetNotFoundError: the data set is not in ``data_dir`` and
      ``download`` is False (raised in well under a second).
    ValueError: ``name`` is not a TFDS data set, a bad argument, or a
      record file that is truncated or damaged (naming the file, the split
      and the record).

  Example:
    >>> mnist = load_tfds("mnist",
    ...                   data_dir="../shared/data/tfds")  # doctest: +SKIP
    >>> mnist.x_train.shape, mnist.num_classes  # doctest: +SKIP
    ((60000, 28, 28, 1), 10)
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty TFDS data set name, got "
                     f"{name!r}")
  batch_size = checks.integer("batch_size", batch_size, low=1)
  tfds = _import_tfds()
  root = os.fspath(data_dir) if data_dir is not None else (
      default_tfds_data_dir())
  try:
    with _quiet_tfds_warnings():
      train_src, test_src = tfds.data_source(
          name, split=[split_train, split_test], data_dir=root,
          download=bool(download))
  except Exception as e:  # pylint: disable=broad-except
    with _quiet_tfds_warnings():
      _diagnose_tfds_failure(tfds, name, root, download, e)
    raise
  features = train_src.dataset_info.features
  try:
    num_classes = getattr(features[label_key], "num_classes", None)
  except (KeyError, TypeError):
    num_classes = None
  with _quiet_tfds_warnings():  # (decoding logs "OpenCV is not installed")
    x_train, y_train = _read_source(train_src, image_key, label_key,
                                    batch_size, name, split_train)
    x_test, y_test = _read_source(test_src, image_key, label_key,
                                  batch_size, name, split_test)
  if num_classes is None:
    num_classes = int(max(y_train.max(), y_test.max())) + 1
  return CentralData(x_train, y_train, x_test, y_test, int(num_classes),
                     name)



@contextlib.contextmanager
def _quiet_tfds_warnings():
  """TFDS logs its own warnings through absl (``WARNING:absl:Variant
  folder ... has no dataset_info.json``, twice, before the error this
  module raises; ``OpenCV is not installed ... Defaulting to PIL`` while
  decoding images); only its errors are shown while inside."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(max(level, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(level)


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("load_tfds needs tensorflow-datasets (plus pillow and "
                      "importlib_resources); TensorFlow itself is not "
                      "needed") from e
  return tfds


def _diagnose_tfds_failure(tfds, name, root, download, error) -> None:
  """Raises a clear error when ``tfds.data_source`` failed because the data
  set name is unknown or its files are missing; returns otherwise."""
  if isinstance(error, tfds.core.registered.DatasetNotFoundError):
    raise ValueError(f"name {name!r} is not a tensorflow-datasets data set "
                     f"(e.g. 'mnist', 'fashion_mnist', 'cifar10', "
                     f"'emnist/balanced')") from error
  try:
    builder = tfds.builder(name, data_dir=root)
    prepared = builder.is_prepared()
    where = str(builder.data_path)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"cannot load TFDS data set name={name!r}: "
                     f"{e}") from error
  if not prepared and not download:
    raise DatasetNotFoundError(
        f"TFDS data set {name!r} is not in data_dir={root!r} (looked for "
        f"{where}) and was not downloaded because download=False. Either "
        f"pass download=True (the configuration's data.download: --set "
        f"data.download=true on the command line; needs network), or point "
        f"data_dir= (data.data_dir) or the TFDS_DATA_DIR environment "
        f"variable at a directory that already holds it (on the team "
        f"machines: ../shared/data/tfds).") from error


_READ_ERRORS = (RuntimeError, OSError, ValueError, EOFError)
"""What reading a damaged ``array_record`` file raises (riegeli raises
``RuntimeError: Corrupted Riegeli/records file ...``)."""


def _record_file(source, index: int) -> str:
  """The file holding record ``index`` of a TFDS data source (from its
  split's file instructions), else its data directory, else ``"?"``."""
  try:
    info = source.dataset_info
  except Exception:  # pylint: disable=broad-except
    return "?"
  try:
    for fi in info.splits[source.split].file_instructions:
      n = fi.take if fi.take >= 0 else fi.examples_in_shard - fi.skip
      if index < n:
        return str(fi.filename)
      index -= n
  except Exception:  # pylint: disable=broad-except
    pass
  return str(getattr(info, "data_dir", "?"))


def _damaged(source, index: int, name: str, split: str,
             error: BaseException) -> ValueError:
  """One line naming the file, split and record that could not be read."""
  reason = " ".join(str(error).split()) or type(error).__name__
  if len(reason) > 240:
    reason = reason[:237] + "..."
  return ValueError(
      f"{_record_file(source, index)}: cannot read record {index} of split "
      f"{split!r} of TFDS data set {name!r}; the file is truncated or "
      f"damaged ({type(error).__name__}: {reason}). Prepare the data set "
      f"again or point data_dir at a good copy")


def _first_unreadable(source, keys) -> int:
  """The first of ``keys`` whose record cannot be read (``keys[0]`` when
  each reads alone)."""
  for i in keys:
    try:
      source[i]
    except _READ_ERRORS:
      return i
  return keys[0]


def _read_source(source, image_key: str, label_key: str, batch_size: int,
                 name: str, split: str):
  """Reads every record of a TFDS data source into ``(x, y)`` arrays.

  Raises:
    ValueError: a record cannot be read (``_damaged``: naming the file).
  """
  n = len(source)
  if n == 0:
    raise ValueError(f"split {split!r} of {name!r} holds no examples")
  try:
    first = source[0]
  except _READ_ERRORS as e:
    raise _damaged(source, 0, name, split, e) from None
  for key in (image_key, label_key):
    if key not in first:
      raise ValueError(f"{name!r} has no feature {key!r}; features are "
                       f"{sorted(first)} (set image_key / label_key)")
  first_image = np.asarray(first[image_key])
  x = np.empty((n,) + first_image.shape, first_image.dtype)
  y = np.empty(n, np.int64)
  batched = True
  for start in range(0, n, batch_size):
    keys = list(range(start, min(n, start + batch_size)))
    records = None
    try:
      if batched:
        try:
          records = source.__getitems__(keys)
        except TypeError:
          # tfds.testing.mock_data's sources only implement __getitem__.
          batched = False
      if records is None:
        records = [source[i] for i in keys]
    except _READ_ERRORS as e:
      raise _damaged(source, _first_unreadable(source, keys), name, split,
                     e) from None
    for i, record in zip(keys, records):
      x[i] = record[image_key]
      y[i] = record[label_key]
  return x, y.astype(np.int32)

