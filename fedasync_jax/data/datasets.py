"""Loading centralized data sets and turning them into federated ones.

Loaders return a ``CentralData`` (train and test arrays, images kept as uint8
on the host); ``federate`` splits the training set among clients with a
scheme of ``fedasync_jax.data.partition`` and returns a ``data.FederatedData``.

  * ``load_tfds``: any image classification data set of tensorflow-datasets
    (mnist, fashion_mnist, cifar10, emnist/balanced, ...), read through
    ``tfds.data_source`` and numpy, so TensorFlow is not needed. Nothing is
    downloaded unless ``download=True``.
  * ``load_npz``: a user's ``.npz`` with ``x_train, y_train, x_test, y_test``.
  * ``load_cifar10_jpeg``: CIFAR-10 stored as JPEG bytes (the team's offline
    copy, see ``../shared/data/README.md``).

The data sets are MNIST (LeCun, Bottou, Bengio and Haffner 1998),
Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, arXiv:1708.07747), CIFAR-10
(Krizhevsky 2009) and EMNIST (Cohen, Afshar, Tapson and van Schaik 2017,
arXiv:1702.05373). The AFL paper (Forootani and Iervolino 2025,
arXiv:2508.01675) splits MNIST and CIFAR-10 with ``Dirichlet(0.5)``, the
default of ``federate``.

Example:
  >>> import numpy as np
  >>> x = np.zeros((40, 2, 2), np.uint8); y = np.arange(40) % 4
  >>> fed = federate(x, y, x[:8], y[:8], num_clients=4, seed=0)
  >>> fed.train.num_clients, fed.num_classes
  (4, 4)
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from fedasync_jax import data
from fedasync_jax.data import partition as partition_lib

# Per-channel mean and standard deviation of the training images scaled to
# [0, 1]. MNIST and Fashion-MNIST measured on the exact training sets; the
# CIFAR-10 values are the usual ones (exact training set, population std).
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_JPEG_KEYS = ("jpeg_train", "offsets_train", "y_train", "jpeg_test",
              "offsets_test", "y_test")


class DatasetNotFoundError(FileNotFoundError):
  """A data set is not on disk and downloading was not requested."""


class CentralData(NamedTuple):
  """A centralized train/test split, before federating.

  Attributes:
    x_train: training features, e.g. ``(60000, 28, 28, 1)`` uint8.
    y_train: ``(n_train,)`` int32 labels.
    x_test: test features.
    y_test: ``(n_test,)`` int32 labels.
    num_classes: number of classes.
    name: a short name, e.g. ``"mnist"``.

  Example:
    >>> c = CentralData(np.zeros((4, 2, 2), np.uint8), np.array([0, 1, 0, 1]),
    ...                 np.zeros((2, 2, 2), np.uint8), np.array([0, 1]), 2)
    >>> c.x_train.shape, c.num_classes
    ((4, 2, 2), 2)
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  name: str = ""

  def federate(self, **options) -> data.FederatedData:
    """Calls ``federate`` on these arrays (options as there).

    Example:
      >>> c = CentralData(np.zeros((6, 1)), np.arange(6) % 2,
      ...                 np.zeros((2, 1)), np.arange(2), 2, "toy")
      >>> c.federate(partition="iid", num_clients=3).name
      'toy'
    """
    options.setdefault("num_classes", self.num_classes)
    options.setdefault("name", self.name)
    return federate(self.x_train, self.y_train, self.x_test, self.y_test,
                    **options)


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
    ValueError: ``name`` is not a TFDS data set, or a bad argument.

  Example:
    >>> mnist = load_tfds("mnist",
    ...                   data_dir="../shared/data/tfds")  # doctest: +SKIP
    >>> mnist.x_train.shape, mnist.num_classes  # doctest: +SKIP
    ((60000, 28, 28, 1), 10)
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty TFDS data set name, got "
                     f"{name!r}")
  if isinstance(batch_size, bool) or not isinstance(
      batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be an integer >= 1, got "
                     f"{batch_size!r}")
  tfds = _import_tfds()
  root = os.fspath(data_dir) if data_dir is not None else (
      default_tfds_data_dir())
  try:
    train_src, test_src = tfds.data_source(
        name, split=[split_train, split_test], data_dir=root,
        download=bool(download))
  except Exception as e:  # pylint: disable=broad-except
    _diagnose_tfds_failure(tfds, name, root, download, e)
    raise
  features = train_src.dataset_info.features
  try:
    num_classes = getattr(features[label_key], "num_classes", None)
  except (KeyError, TypeError):
    num_classes = None
  x_train, y_train = _read_source(train_src, image_key, label_key,
                                  batch_size, name, split_train)
  x_test, y_test = _read_source(test_src, image_key, label_key, batch_size,
                                name, split_test)
  if num_classes is None:
    num_classes = int(max(y_train.max(), y_test.max())) + 1
  return CentralData(x_train, y_train, x_test, y_test, int(num_classes),
                     name)


def load_npz(path: str | os.PathLike, *,
             num_classes: int | None = None) -> CentralData:
  """Loads and checks a ``.npz`` with ``x_train, y_train, x_test, y_test``.

  Checks that the four keys exist, that ``len(x) == len(y)`` per split, that
  train and test features have the same trailing shape, that labels are
  one-dimensional integers in ``[0, num_classes)``, and that float features
  are finite. Every error names the file and the key.

  Args:
    path: the ``.npz`` file (written with ``numpy.savez``; no pickles).
    num_classes: number of classes; ``None`` infers ``max label + 1``.

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
  x_train, y_train = arrays["x_train"], arrays["y_train"]
  x_test, y_test = arrays["x_test"], arrays["y_test"]
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
  if num_classes is None:
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
  elif (isinstance(num_classes, bool) or
        not isinstance(num_classes, (int, np.integer)) or num_classes < 1):
    raise ValueError(f"num_classes must be an integer >= 1, got "
                     f"{num_classes!r}")
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
  from PIL import Image  # pylint: disable=import-outside-toplevel
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  if limit is not None and (isinstance(limit, bool) or not isinstance(
      limit, (int, np.integer)) or limit < 1):
    raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
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
    images = np.empty((n, 32, 32, 3), np.uint8)
    raw = blob.tobytes()
    for i in range(n):
      with Image.open(io.BytesIO(raw[offsets[i]:offsets[i + 1]])) as im:
        img = np.asarray(im.convert("RGB"))
      if img.shape != (32, 32, 3):
        raise ValueError(f"{path}: image {i} of 'jpeg_{split}' decodes to "
                         f"shape {img.shape}, expected (32, 32, 3)")
      images[i] = img
    out[split] = (images, y[:n].astype(np.int32))
  return CentralData(out["train"][0], out["train"][1], out["test"][0],
                     out["test"][1], 10, "cifar10_jpeg")


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
  if not np.isfinite(scale) or scale <= 0:
    raise ValueError(f"scale must be finite and > 0, got {scale}")
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
  if dataset not in NORMALIZATION:
    raise ValueError(f"dataset must be one of {sorted(NORMALIZATION)}, got "
                     f"{dataset!r}")
  mean, std = NORMALIZATION[dataset]
  return normalize(x, mean=mean, std=std)


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


def federate(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
             y_test: np.ndarray, *, num_clients: int,
             partition: str = "dirichlet", alpha: float = 0.5, seed: int = 0,
             num_classes: int | None = None, name: str = "",
             min_size: int = 1, shards_per_client: int = 2,
             exponent: float = 1.5) -> data.FederatedData:
  """Splits a centralized training set among clients.

  Args:
    x_train: training features.
    y_train: ``(n,)`` integer training labels.
    x_test: test features (kept whole, for server-side evaluation).
    y_test: test labels.
    num_clients: number of clients.
    partition: one of ``partition.SCHEMES``: ``"dirichlet"`` (default, with
      ``alpha``), ``"iid"``, ``"shards"`` (with ``shards_per_client``) or
      ``"power_law"`` (with ``exponent``).
    alpha: Dirichlet concentration (``"dirichlet"`` only); the AFL paper
      uses 0.5.
    seed: seed of the partition.
    num_classes: number of classes; ``None`` infers ``max label + 1``.
    name: name of the result.
    min_size: smallest client size (``"dirichlet"`` and ``"power_law"``).
    shards_per_client: shards per client (``"shards"`` only).
    exponent: Pareto tail index of client sizes (``"power_law"`` only).

  Returns:
    A ``data.FederatedData`` whose clients own contiguous ranges of the
    reordered training set; labels are int32, features keep their dtype.

  Example:
    >>> x = np.arange(20.0)[:, None]; y = np.arange(20) % 2
    >>> fed = federate(x, y, x, y, partition="shards", num_clients=5)
    >>> fed.train.counts.tolist()
    [4, 4, 4, 4, 4]
  """
  x_train, y_train = np.asarray(x_train), np.asarray(y_train)
  x_test, y_test = np.asarray(x_test), np.asarray(y_test)
  for key, y in (("y_train", y_train), ("y_test", y_test)):
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
      raise ValueError(f"{key} must be 1-D integer labels, got dtype "
                       f"{y.dtype} and shape {y.shape}")
  if len(x_train) != len(y_train):
    raise ValueError(f"x_train has {len(x_train)} examples but y_train has "
                     f"{len(y_train)}")
  if len(x_test) != len(y_test):
    raise ValueError(f"x_test has {len(x_test)} examples but y_test has "
                     f"{len(y_test)}")
  if num_classes is None:
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
  for key, y in (("y_train", y_train), ("y_test", y_test)):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(f"{key} must be in [0, num_classes={num_classes}), "
                       f"got range [{y.min()}, {y.max()}]")
  options = {
      "iid": {},
      "dirichlet": {"alpha": alpha, "min_size": min_size},
      "shards": {"shards_per_client": shards_per_client},
      "power_law": {"exponent": exponent, "min_size": min_size},
  }
  if partition not in options:
    raise ValueError(f"partition must be one of {partition_lib.SCHEMES}, got "
                     f"{partition!r}")
  parts = partition_lib.make(partition, y_train, num_clients, seed=seed,
                             **options[partition])
  train = data.from_partition(x_train, y_train.astype(np.int32), parts)
  return data.FederatedData(train, x_test, y_test.astype(np.int32),
                            int(num_classes), name)


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
        f"pass download=True (--download in the experiment scripts; needs "
        f"network), or point data_dir= or the TFDS_DATA_DIR environment "
        f"variable at a directory that already holds it (on the team "
        f"machines: ../shared/data/tfds).") from error


def _read_source(source, image_key: str, label_key: str, batch_size: int,
                 name: str, split: str):
  """Reads every record of a TFDS data source into ``(x, y)`` arrays."""
  n = len(source)
  if n == 0:
    raise ValueError(f"split {split!r} of {name!r} holds no examples")
  first = source[0]
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
    if batched:
      try:
        records = source.__getitems__(keys)
      except TypeError:
        # tfds.testing.mock_data's sources only implement __getitem__.
        batched = False
    if records is None:
      records = [source[i] for i in keys]
    for i, record in zip(keys, records):
      x[i] = record[image_key]
      y[i] = record[label_key]
  return x, y.astype(np.int32)


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
        raise ValueError(f"{path}: key {k!r} cannot be loaded without "
                         f"pickle (object arrays are not supported): "
                         f"{e}") from e
  return out
