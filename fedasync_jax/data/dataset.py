"""Client data laid out once for the whole population.

All examples of all clients live in one pair of arrays ``x`` and ``y``; client
``c`` owns the contiguous range ``[offsets[c], offsets[c] + counts[c])``. A
local training step gathers its minibatch by index inside the compiled
program, so a population of a million clients costs no more memory than the
examples themselves (no per-client padding).

Example:
  >>> import numpy as np
  >>> ds = from_client_arrays([np.zeros((3, 2)), np.ones((1, 2))],
  ...                         [np.zeros(3, int), np.ones(1, int)])
  >>> ds.counts.tolist(), ds.offsets.tolist()
  ([3, 1], [0, 3])
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


class ClientDataset(NamedTuple):
  """Examples of every client, stored once.

  Attributes:
    x: features of all examples, shape ``(num_examples, ...)``.
    y: labels or targets, shape ``(num_examples, ...)``.
    offsets: ``(num_clients,)`` int, first example of each client.
    counts: ``(num_clients,)`` int, number of examples of each client.
  """
  x: np.ndarray
  y: np.ndarray
  offsets: np.ndarray
  counts: np.ndarray

  @property
  def num_clients(self) -> int:
    return int(self.counts.shape[0])

  @property
  def max_count(self) -> int:
    return int(self.counts.max()) if self.counts.size else 0

  def client(self, c: int):
    """Returns ``(x, y)`` of client ``c`` as numpy arrays."""
    lo = int(self.offsets[c])
    hi = lo + int(self.counts[c])
    return self.x[lo:hi], self.y[lo:hi]


class FederatedData(NamedTuple):
  """A federated training set plus a held-out test set.

  Attributes:
    train: the clients' training examples.
    x_test: held-out test features (server-side evaluation).
    y_test: held-out test labels.
    num_classes: number of label classes.
    name: a short description, e.g. ``"synthetic(1,1)"`` or ``"mnist"``.
  """
  train: ClientDataset
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  name: str = ""


def from_client_arrays(xs: Sequence[np.ndarray],
                       ys: Sequence[np.ndarray]) -> ClientDataset:
  """Concatenates per-client arrays into one ``ClientDataset``.

  Args:
    xs: one feature array per client (same trailing shape).
    ys: one label array per client.

  Returns:
    The dataset with contiguous client ranges in the given client order.
  """
  if len(xs) != len(ys):
    raise ValueError(f"xs and ys must have the same length, got {len(xs)} "
                     f"and {len(ys)}")
  if not xs:
    raise ValueError("xs must hold at least one client")
  counts = np.array([len(x) for x in xs], dtype=np.int64)
  for i, (x, y) in enumerate(zip(xs, ys)):
    if len(y) != len(x):
      raise ValueError(f"client {i}: x has {len(x)} examples but y has "
                       f"{len(y)}")
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  return ClientDataset(np.concatenate(xs), np.concatenate(ys), offsets, counts)


def from_partition(x: np.ndarray, y: np.ndarray,
                   client_indices: Sequence[np.ndarray]) -> ClientDataset:
  """Builds a ``ClientDataset`` from a partition of ``(x, y)``.

  Args:
    x: all training features.
    y: all training labels.
    client_indices: one integer index array per client, into ``x``/``y``.

  Returns:
    The dataset with examples reordered so each client's range is contiguous.
  """
  if len(x) != len(y):
    raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
  if len(client_indices) == 0:
    raise ValueError("client_indices must hold at least one client")
  counts = np.array([len(ix) for ix in client_indices], dtype=np.int64)
  order = (np.concatenate([np.asarray(ix, dtype=np.int64)
                           for ix in client_indices])
           if counts.sum() else np.zeros(0, np.int64))
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  return ClientDataset(x[order], y[order], offsets, counts)
