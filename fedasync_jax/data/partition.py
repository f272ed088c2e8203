"""Splitting a centralized training set among simulated clients.

Every scheme takes the training labels and returns one int64 index array per
client; every example is assigned to exactly one client, and the same seed
gives the same partition. Feed the result to ``data.from_partition``.

Schemes and where they come from:

  * ``iid``: a uniform random split into near-equal parts.
  * ``shards``: McMahan, Moore, Ramage, Hampson and Aguera y Arcas,
    "Communication-Efficient Learning of Deep Networks from Decentralized
    Data", AISTATS 2017 (arXiv:1602.05629): sort by label, cut into equal
    shards, give every client ``shards_per_client`` (2 in the paper) of them.
  * ``dirichlet``: per class, the class's examples are divided among the
    clients with proportions drawn from ``Dirichlet(alpha)`` (Hsu, Qi and
    Brown 2019, arXiv:1909.06335); the AFL paper (Forootani and Iervolino
    2025, arXiv:2508.01675) uses ``alpha = 0.5``.
  * ``power_law``: client sizes drawn from a Pareto (power-law) distribution,
    labels iid, as in the unbalanced splits of Li et al. 2020
    (arXiv:1812.06127).

Every scheme registers itself in ``PARTITIONS`` (``core.registry``) with
its options, their ranges and meanings, and checks its arguments against
them; ``SCHEMES`` and ``make`` derive from it. A member's factory is called
as ``factory(labels, num_clients, seed=..., **options)``; ``seed`` (an
integer or a numpy ``Generator``) is an input, not an option.

Example:
  >>> import numpy as np
  >>> labels = np.repeat(np.arange(3), 4)
  >>> parts = dirichlet(labels, 3, alpha=0.5, seed=0)
  >>> sorted(np.concatenate(parts).tolist()) == list(range(12))
  True
  >>> PARTITIONS.names()
  ('iid', 'dirichlet', 'shards', 'power_law')
  >>> len(PARTITIONS.build("shards", labels, 3, seed=0, shards_per_client=2))
  3
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.registry import REQUIRED, Param, Registry

PARTITIONS = Registry("partition")
"""The partition schemes: name -> factory and options."""

_ALPHA = Param("alpha", REQUIRED, low=0, low_open=True,
               meaning="Dirichlet concentration: small gives each client few "
               "classes, large approaches iid")
_MIN_SIZE = Param("min_size", 1, low=0, kind=int,
                  meaning="smallest client size")
_MAX_TRIES = Param("max_tries", 100, low=1, kind=int,
                   meaning="Dirichlet draws before short clients are repaired")
_SHARDS_PER_CLIENT = Param("shards_per_client", 2, low=1, kind=int,
                           meaning="label-sorted shards per client (2 in "
                           "McMahan et al.)")
_EXPONENT = Param("exponent", 1.5, low=0, low_open=True,
                  meaning="Pareto tail index of client sizes (smaller is more "
                  "unequal)")


@PARTITIONS.register("iid", inputs=("seed",))
def iid(labels: np.ndarray, num_clients: int, *,
        seed: int | np.random.Generator = 0) -> list[np.ndarray]:
  """Splits the examples uniformly at random into near-equal parts.

  Args:
    labels: ``(n,)`` labels (only their number is used).
    num_clients: number of clients, in ``[1, n]``.
    seed: an integer seed or a ``numpy.random.Generator``.

  Returns:
    ``num_clients`` int64 index arrays whose sizes differ by at most one.

  Example:
    >>> [len(p) for p in iid(np.zeros(10), 3, seed=0)]
    [4, 3, 3]
  """
  labels = _check_labels(labels)
  num_clients = _num_clients(num_clients, len(labels), min_size=1)
  rng = checks.rng(seed)
  order = rng.permutation(len(labels)).astype(np.int64)
  return [np.sort(p) for p in np.array_split(order, num_clients)]


@PARTITIONS.register("dirichlet", params=(_ALPHA, _MIN_SIZE, _MAX_TRIES),
                     inputs=("seed",))
def dirichlet(labels: np.ndarray, num_clients: int, *, alpha: float,
              seed: int | np.random.Generator = 0, min_size: int = 1,
              max_tries: int = 100) -> list[np.ndarray]:
  """Label-skewed split: per class, Dirichlet(alpha) proportions of clients.

  For each class, a proportion vector ``p ~ Dirichlet(alpha * ones)`` over
  the clients is drawn and the class's examples (in random order) are cut
  accordingly. Small ``alpha`` gives each client few classes; large
  ``alpha`` approaches an iid split.

  If some client gets fewer than ``min_size`` examples, all proportions are
  drawn again, up to ``max_tries`` times. If every try falls short (this
  happens for many clients and a tiny ``alpha``), the last draw is repaired:
  randomly chosen examples of the largest clients move to the short clients
  until each has ``min_size``. So the result always meets ``min_size``.

  Args:
    labels: ``(n,)`` integer labels.
    num_clients: number of clients, >= 1 with ``num_clients * min_size <= n``.
    alpha: Dirichlet concentration, > 0.
    seed: an integer seed or a ``numpy.random.Generator``.
    min_size: smallest allowed client size, >= 0.
    max_tries: number of draws before repairing, >= 1.

  Returns:
    ``num_clients`` sorted int64 index arrays.

  Example:
    >>> labels = np.repeat(np.arange(10), 100)
    >>> parts = dirichlet(labels, 20, alpha=0.1, seed=0, min_size=5)
    >>> min(len(p) for p in parts) >= 5
    True
  """
  labels = _check_labels(labels)
  min_size = PARTITIONS.check("dirichlet", min_size=min_size)["min_size"]
  num_clients = _num_clients(num_clients, len(labels), min_size=min_size)
  opts = PARTITIONS.check("dirichlet", alpha=alpha, max_tries=max_tries)
  alpha, max_tries = opts["alpha"], opts["max_tries"]
  rng = checks.rng(seed)
  classes = np.unique(labels)
  by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  for _ in range(max_tries):
    # cuts[i] has the num_clients + 1 boundaries of class i.
    cuts = []
    for idx in by_class:
      p = rng.dirichlet(np.full(num_clients, float(alpha)))
      bounds = np.minimum(np.floor(np.cumsum(p)[:-1] * len(idx) + 0.5),
                          len(idx)).astype(np.int64)
      cuts.append(np.concatenate([[0], bounds, [len(idx)]]))
    sizes = np.sum([np.diff(b) for b in cuts], axis=0)
    if sizes.min() >= min_size:
      break
  parts = [np.concatenate([idx[b[k]:b[k + 1]] for idx, b in
                           zip(by_class, cuts)]).astype(np.int64)
           for k in range(num_clients)]
  if min(len(p) for p in parts) < min_size:
    parts = _repair(parts, min_size, rng)
  return [np.sort(p) for p in parts]


@PARTITIONS.register("shards", params=(_SHARDS_PER_CLIENT,),
                     inputs=("seed",))
def shards(labels: np.ndarray, num_clients: int, *,
           shards_per_client: int = 2,
           seed: int | np.random.Generator = 0) -> list[np.ndarray]:
  """McMahan et al.'s pathological non-iid split: label-sorted shards.

  The examples are sorted by label (in random order within a label), cut
  into ``num_clients * shards_per_client`` contiguous shards of near-equal
  size, and each client gets ``shards_per_client`` shards at random. When
  every shard lies within one label (e.g. 10 balanced classes, 100 clients,
  2 shards each), a client holds at most ``shards_per_client`` labels.

  Args:
    labels: ``(n,)`` integer labels.
    num_clients: number of clients, >= 1.
    shards_per_client: shards per client, >= 1, with
      ``num_clients * shards_per_client <= n``.
    seed: an integer seed or a ``numpy.random.Generator``.

  Returns:
    ``num_clients`` sorted int64 index arrays.

  Example:
    >>> labels = np.repeat(np.arange(5), 4)
    >>> parts = shards(labels, 5, shards_per_client=2, seed=0)
    >>> max(len(set(labels[p].tolist())) for p in parts) <= 2
    True
  """
  labels = _check_labels(labels)
  num_clients = checks.integer("num_clients", num_clients, low=1)
  shards_per_client = PARTITIONS.check(
      "shards", shards_per_client=shards_per_client)["shards_per_client"]
  num_shards = num_clients * shards_per_client
  if num_shards > len(labels):
    raise ValueError(
        f"num_clients * shards_per_client must be <= the number of examples "
        f"{len(labels)}, got {num_clients} * {shards_per_client} = "
        f"{num_shards}")
  rng = checks.rng(seed)
  shuffled = rng.permutation(len(labels))
  order = shuffled[np.argsort(labels[shuffled], kind="stable")]
  pieces = np.array_split(order.astype(np.int64), num_shards)
  assignment = rng.permutation(num_shards).reshape(num_clients,
                                                   shards_per_client)
  return [np.sort(np.concatenate([pieces[s] for s in row]))
          for row in assignment]


@PARTITIONS.register("power_law", params=(_EXPONENT, _MIN_SIZE),
                     inputs=("seed",))
def power_law(labels: np.ndarray, num_clients: int, *, exponent: float = 1.5,
              seed: int | np.random.Generator = 0,
              min_size: int = 1) -> list[np.ndarray]:
  """Power-law client sizes, iid labels.

  Client weights are drawn from a Pareto distribution with tail index
  ``exponent`` (``P(w > t) = t ** -exponent`` for ``t >= 1``; smaller is
  more unequal). Every client gets ``min_size`` examples plus a share of the
  rest proportional to its weight (largest-remainder rounding), taken from a
  random permutation of all examples.

  Args:
    labels: ``(n,)`` labels (only their number is used).
    num_clients: number of clients, >= 1 with ``num_clients * min_size <= n``.
    exponent: Pareto tail index, > 0.
    seed: an integer seed or a ``numpy.random.Generator``.
    min_size: smallest client size, >= 0.

  Returns:
    ``num_clients`` sorted int64 index arrays.

  Example:
    >>> parts = power_law(np.zeros(1000), 10, exponent=1.0, seed=0)
    >>> sum(len(p) for p in parts), min(len(p) for p in parts) >= 1
    (1000, True)
  """
  labels = _check_labels(labels)
  min_size = PARTITIONS.check("power_law", min_size=min_size)["min_size"]
  num_clients = _num_clients(num_clients, len(labels), min_size=min_size)
  exponent = PARTITIONS.check("power_law", exponent=exponent)["exponent"]
  rng = checks.rng(seed)
  weights = rng.pareto(float(exponent), size=num_clients) + 1.0
  rest = len(labels) - num_clients * min_size
  share = weights / weights.sum() * rest
  sizes = np.floor(share).astype(np.int64)
  leftover = rest - int(sizes.sum())
  if leftover:
    sizes[np.argsort(sizes - share, kind="stable")[:leftover]] += 1
  sizes += min_size
  order = rng.permutation(len(labels)).astype(np.int64)
  bounds = np.cumsum(sizes)[:-1]
  return [np.sort(p) for p in np.split(order, bounds)]


SCHEMES = PARTITIONS.names()
"""The registered scheme names, in registration order."""


def make(scheme: str, labels: np.ndarray, num_clients: int, *,
         seed: int | np.random.Generator = 0, **options) -> list[np.ndarray]:
  """Runs the partition scheme named ``scheme`` (a name of ``PARTITIONS``).

  Args:
    scheme: ``"iid"``, ``"dirichlet"``, ``"shards"`` or ``"power_law"``.
    labels: ``(n,)`` integer labels.
    num_clients: number of clients.
    seed: an integer seed or a ``numpy.random.Generator``.
    **options: keyword options of that scheme (e.g. ``alpha`` for
      ``dirichlet``).

  Returns:
    ``num_clients`` int64 index arrays.

  Example:
    >>> len(make("iid", np.zeros(6), 2, seed=0))
    2
  """
  checks.choice("scheme", scheme, PARTITIONS.names())
  return PARTITIONS[scheme].factory(labels, num_clients, seed=seed, **options)


class PartitionStats(NamedTuple):
  """Summary of a partition.

  Attributes:
    examples_per_client: ``(num_clients,)`` int64 client sizes.
    label_histogram: ``(num_clients, num_classes)`` int64 label counts.

  Example:
    >>> s = PartitionStats(np.array([2, 2]), np.array([[2, 0], [1, 1]]))
    >>> s.classes_per_client().tolist(), s.total_variation().tolist()
    ([1, 2], [0.25, 0.25])
  """
  examples_per_client: np.ndarray
  label_histogram: np.ndarray

  @property
  def num_clients(self) -> int:
    return int(self.examples_per_client.shape[0])

  @property
  def num_classes(self) -> int:
    return int(self.label_histogram.shape[1])

  def classes_per_client(self) -> np.ndarray:
    """Number of distinct labels each client holds."""
    return (self.label_histogram > 0).sum(axis=1)

  def total_variation(self) -> np.ndarray:
    """Per client, total-variation distance of its label distribution to the
    global one (0 = same mix as the whole set, 1 = disjoint labels); 0 for an
    empty client."""
    hist = self.label_histogram.astype(np.float64)
    total = hist.sum()
    glob = hist.sum(axis=0) / max(total, 1.0)
    sizes = hist.sum(axis=1, keepdims=True)
    local = np.divide(hist, sizes, out=np.zeros_like(hist),
                      where=sizes > 0)
    tv = 0.5 * np.abs(local - glob).sum(axis=1)
    return np.where(sizes[:, 0] > 0, tv, 0.0)

  def format(self, *, max_rows: int = 20) -> str:
    """A printable summary, then one row per client (the first
    ``max_rows``)."""
    sizes = self.examples_per_client
    ncls = self.classes_per_client()
    tv = self.total_variation()
    lines = [
        f"clients: {self.num_clients}   examples: {int(sizes.sum())}   "
        f"classes: {self.num_classes}",
        f"examples/client: min {int(sizes.min())}  median "
        f"{float(np.median(sizes)):g}  mean {float(sizes.mean()):.1f}  "
        f"max {int(sizes.max())}  empty {int((sizes == 0).sum())}",
        f"classes/client:  min {int(ncls.min())}  mean "
        f"{float(ncls.mean()):.2f}  max {int(ncls.max())}",
        f"label TV distance to global: mean {float(tv.mean()):.3f}  "
        f"max {float(tv.max()):.3f}",
    ]
    rows = min(self.num_clients, max_rows)
    width = max(5, len(str(int(self.label_histogram.max(initial=0)))))
    header = ("client".rjust(7) + "  " + "n".rjust(7) + "  " +
              " ".join(str(c).rjust(width) for c in range(self.num_classes)))
    lines.append(header)
    for k in range(rows):
      lines.append(str(k).rjust(7) + "  " + str(int(sizes[k])).rjust(7) +
                   "  " + " ".join(str(int(v)).rjust(width)
                                   for v in self.label_histogram[k]))
    if rows < self.num_clients:
      lines.append(f"... ({self.num_clients - rows} more clients)")
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.format()


def stats(labels: np.ndarray, parts: Sequence[np.ndarray], *,
          num_classes: int | None = None) -> PartitionStats:
  """Counts examples and labels per client.

  Args:
    labels: ``(n,)`` integer labels in ``[0, num_classes)``.
    parts: one index array per client (as returned by the schemes).
    num_classes: number of classes; ``None`` means ``labels.max() + 1``.

  Returns:
    A ``PartitionStats``; ``print(it)`` shows a table.

  Example:
    >>> labels = np.array([0, 0, 1, 1])
    >>> s = stats(labels, [np.array([0, 1]), np.array([2, 3])], num_classes=2)
    >>> s.label_histogram.tolist()
    [[2, 0], [0, 2]]
  """
  labels = _check_labels(labels)
  if len(parts) == 0:
    raise ValueError("parts must hold at least one client, got 0")
  if num_classes is None:
    num_classes = int(labels.max()) + 1 if len(labels) else 1
  num_classes = checks.integer("num_classes", num_classes, low=1)
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must be in [0, num_classes={num_classes}), got "
                     f"range [{labels.min()}, {labels.max()}]")
  hist = np.zeros((len(parts), num_classes), dtype=np.int64)
  for k, p in enumerate(parts):
    hist[k] = np.bincount(labels[np.asarray(p, dtype=np.int64)],
                          minlength=num_classes)
  sizes = np.array([len(p) for p in parts], dtype=np.int64)
  return PartitionStats(sizes, hist)


def plot(partition_stats: PartitionStats, path, *,
         max_clients: int = 100) -> None:
  """Saves a figure of a partition: client sizes and label mix per client.

  Needs matplotlib (the ``plots`` extra: ``pip install
  'fedasync_jax[plots]'``).

  Args:
    partition_stats: the result of ``stats``.
    path: where to write the image (the suffix picks the format, e.g. png).
    max_clients: show the label mix of at most this many clients.

  Example:
    >>> s = stats(np.array([0, 1, 1]), [np.array([0]), np.array([1, 2])])
    >>> plot(s, "/tmp/partition.png")  # doctest: +SKIP
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "partition.plot needs matplotlib, which is not installed; install "
        "the 'plots' extra: pip install 'fedasync_jax[plots]'") from e
  max_clients = checks.integer("max_clients", max_clients, low=1)
  s = partition_stats
  shown = min(s.num_clients, max_clients)
  # The object-oriented API: no pyplot, no global figure or backend state.
  fig = Figure(figsize=(11, 4), layout="tight")
  ax_size, ax_mix = fig.subplots(1, 2)
  ax_size.hist(s.examples_per_client, bins=min(50, max(s.num_clients, 1)))
  ax_size.set_xlabel("examples per client")
  ax_size.set_ylabel("clients")
  hist = s.label_histogram[:shown].astype(np.float64)
  frac = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
  cmap = matplotlib.colormaps["tab20" if s.num_classes > 10 else "tab10"]
  # A stacked bar of width 1 per client, drawn as one stepped area per
  # label (a rectangle per client and label took 0.8 s at 100 clients of
  # 10 labels, the areas 0.3).
  edges = np.repeat(np.arange(shown + 1), 2)[1:-1] - 0.5
  ax_mix.stackplot(edges, np.repeat(frac.T, 2, axis=1),
                   colors=[cmap(c % cmap.N) for c in range(s.num_classes)],
                   labels=[str(c) for c in range(s.num_classes)])
  ax_mix.set_xlim(-0.5, shown - 0.5)
  ax_mix.set_xlabel(f"client (first {shown})")
  ax_mix.set_ylabel("label fraction")
  if s.num_classes <= 20:
    ax_mix.legend(title="label", fontsize="small", bbox_to_anchor=(1.0, 1.0),
                  loc="upper left")
  fig.savefig(path)


def _repair(parts: list[np.ndarray], min_size: int,
            rng: np.random.Generator) -> list[np.ndarray]:
  """Moves random examples from the largest clients to those below
  ``min_size``."""
  parts = [rng.permutation(p) for p in parts]
  sizes = np.array([len(p) for p in parts])
  for k in np.flatnonzero(sizes < min_size):
    need = min_size - len(parts[k])
    taken = []
    while need:
      donor = int(np.argmax(sizes))
      give = min(need, int(sizes[donor]) - min_size)
      taken.append(parts[donor][:give])
      parts[donor] = parts[donor][give:]
      sizes[donor] -= give
      need -= give
    parts[k] = np.concatenate([parts[k]] + taken)
    sizes[k] = len(parts[k])
  return parts


def _check_labels(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be one-dimensional, got shape "
                     f"{labels.shape}")
  return labels


def _num_clients(num_clients, n: int, *, min_size: int) -> int:
  """``num_clients`` as an int, checked against the ``n`` examples."""
  num_clients = checks.integer("num_clients", num_clients, low=1)
  if num_clients * min_size > n and min_size == 1:
    raise ValueError(f"num_clients must be <= the number of examples {n} "
                     f"(each client holds at least one), got {num_clients}")
  if num_clients * min_size > n:
    raise ValueError(
        f"num_clients * min_size must be <= the number of examples {n}, got "
        f"num_clients={num_clients} with min_size={min_size}")
  return num_clients
