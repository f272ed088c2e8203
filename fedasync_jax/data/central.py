"""A centralized train/test split (``CentralData``) and ``federate``, which
splits its training set among clients.

Every loader (``tfds_loader.load_tfds``, ``npz.load_npz``,
``npz.load_cifar10_jpeg``) returns a ``CentralData``; ``federate`` splits
its training set with a scheme of ``fedasync_jax.data.partition`` and
returns a ``data.FederatedData``. The AFL paper (Forootani and Iervolino
2025, arXiv:2508.01675) splits MNIST and CIFAR-10 with ``Dirichlet(0.5)``,
the default of ``federate``.

Example:
  >>> import numpy as np
  >>> x = np.zeros((40, 2, 2), np.uint8); y = np.arange(40) % 4
  >>> fed = federate(x, y, x[:8], y[:8], num_clients=4, seed=0)
  >>> fed.train.num_clients, fed.num_classes
  (4, 4)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fedasync_jax import data
from fedasync_jax.core import checks
from fedasync_jax.data import partition as partition_lib

MAX_CLASSES = 100_000
"""The most classes a data set may have: labels size per-class arrays
(label histograms per client, the model's output layer)."""


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
    partition: a name of ``partition.PARTITIONS``: ``"dirichlet"``
      (default, with ``alpha``), ``"iid"``, ``"shards"`` (with
      ``shards_per_client``) or ``"power_law"`` (with ``exponent``); each
      scheme gets the options its registry entry declares.
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
  num_classes = checks.integer("num_classes", num_classes, low=1,
                               high=MAX_CLASSES)
  for key, y in (("y_train", y_train), ("y_test", y_test)):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(f"{key} must be in [0, num_classes={num_classes}), "
                       f"got range [{y.min()}, {y.max()}]")
  checks.choice("partition", partition, partition_lib.PARTITIONS.names())
  # The scheme's own options, as its registry entry declares them.
  given = {"alpha": alpha, "min_size": min_size,
           "shards_per_client": shards_per_client, "exponent": exponent}
  options = {p.name: given[p.name]
             for p in partition_lib.PARTITIONS[partition].params
             if p.name in given}
  parts = partition_lib.make(partition, y_train, num_clients, seed=seed,
                             **options)
  train = data.from_partition(x_train, y_train.astype(np.int32), parts)
  return data.FederatedData(train, x_test, y_test.astype(np.int32),
                            int(num_classes), name)

