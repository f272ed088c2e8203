"""Client selection: how the scheduler draws idle clients.

``SELECTIONS`` is the family; a member is ``pick(selector, t) -> client or
None`` on a ``Selector`` (which holds ``n``, ``rng``, ``busy``, ``queue``,
the availability windows and, for members with ``info["needs_weights"]``,
the weights' ``cdf``). A client in flight is never picked. Uniform with
replacement, without replacement (a fresh permutation of the population
per pass) and weighted by data size are the sampling schemes the AFL paper
analyses (Forootani and Iervolino 2025, arXiv:2508.01675, Section 2.2).

Example:
  >>> import numpy as np
  >>> sel = Selector("without_replacement", 3, np.random.default_rng(0),
  ...                None, None)
  >>> sorted(sel.pick(0.0) for _ in range(3))
  [0, 1, 2]
  >>> SELECTIONS.names()
  ('uniform', 'without_replacement', 'weighted')
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.registry import Registry

SELECTIONS = Registry("selection")
"""How idle clients are drawn: ``pick(selector, t) -> client or None``."""


def _draw_idle(sel, t, draw) -> Optional[int]:
  """Up to 64 draws until one is idle and available at ``t`` (else None)."""
  for _ in range(64):
    c = draw()
    if sel.ok(c, t):
      return c
  return None


@SELECTIONS.register("uniform")
def _uniform(sel, t) -> Optional[int]:
  """uniform with replacement (a busy client is drawn again)"""
  c = _draw_idle(sel, t, lambda: int(sel.rng.integers(sel.n)))
  if c is not None:
    return c
  cand = sel.eligible(t)
  return int(cand[sel.rng.integers(cand.size)]) if cand.size else None


@SELECTIONS.register("without_replacement")
def _without_replacement(sel, t) -> Optional[int]:
  """a fresh permutation of the population per pass"""
  q = sel.queue
  for _ in range(2):
    if not q.size:
      q.start(sel.rng.permutation(sel.n))
    i = q.first(lambda c: sel.oks(c, t))
    if i is not None:
      return q.take(i)
    if q.size == sel.n:
      return None
    # Every client left in this pass is busy or offline: start the next
    # pass so the dispatch is not refused while idle clients exist.
    rest = q.left()
    in_rest = np.zeros(sel.n, bool)
    in_rest[rest] = True
    perm = sel.rng.permutation(sel.n)
    q.start(np.concatenate([rest, perm[~in_rest[perm]]]))
  return None


class _Pass:
  """The clients a pass of ``without_replacement`` has still to give, in
  order: an array with the given ones marked, scanned in growing chunks
  (a client is checked in numpy, not one by one in Python: with
  availability windows most of a pass's tail can be offline)."""

  def __init__(self):
    self.start(np.empty(0, np.int64))

  def start(self, order):
    self.order = np.asarray(order, np.int64)
    self.given = np.zeros(self.order.size, bool)
    self.head = 0
    self.size = int(self.order.size)

  def first(self, ok) -> Optional[int]:
    """The position of the first client not given for which ``ok`` (of an
    array of clients) holds, or None."""
    a, chunk = self.head, 64
    while a < self.order.size:
      b = min(a + chunk, self.order.size)
      hit = ~self.given[a:b] & ok(self.order[a:b])
      if hit.any():
        return a + int(np.argmax(hit))
      a, chunk = b, chunk * 4
    return None

  def take(self, i) -> int:
    self.given[i] = True
    self.size -= 1
    while self.head < self.order.size and self.given[self.head]:
      self.head += 1
    return int(self.order[i])

  def left(self):
    return self.order[self.head:][~self.given[self.head:]]


@SELECTIONS.register("weighted", needs_weights=True)
def _weighted(sel, t) -> Optional[int]:
  """weighted by data size (the clients' example counts)"""
  c = _draw_idle(sel, t, lambda: min(int(np.searchsorted(
      sel.cdf, sel.rng.random(), side="right")), sel.n - 1))
  if c is not None:
    return c
  cand = sel.eligible(t)
  w = np.diff(np.concatenate([[0.0], sel.cdf]))[cand]
  if cand.size == 0 or w.sum() <= 0:
    return None
  return int(cand[np.searchsorted(np.cumsum(w) / w.sum(), sel.rng.random(),
                                  side="right").clip(0, cand.size - 1)])


def needs_weights(kind: str) -> bool:
  """Whether selection ``kind`` draws by weights (and takes them only
  then: the others refuse weights that they would ignore).

  Example:
    >>> needs_weights("weighted"), needs_weights("uniform")
    (True, False)
  """
  return bool(SELECTIONS[kind].info.get("needs_weights"))


class Selector:
  """The state a selection draws from: idle clients, availability, weights.

  ``pick(t)`` calls the registered selection ``kind``.
  """

  def __init__(self, kind, n, rng, weights, avail):
    checks.choice("selection", kind, SELECTIONS.names())
    self.kind, self.n, self.rng, self.avail = kind, n, rng, avail
    self._pick = SELECTIONS[kind].factory
    self.busy = np.zeros(n, dtype=bool)
    self.queue = _Pass()
    if needs_weights(kind):
      if weights is None:
        raise ValueError(f"selection={kind!r} needs weights (e.g. the "
                         f"clients' example counts)")
      w = np.asarray(weights, dtype=np.float64)
      if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)) \
          or w.sum() <= 0:
        raise ValueError(f"weights must be ({n},) finite, >= 0, not all 0")
      self.cdf = np.cumsum(w) / w.sum()
    elif weights is not None:  # it would be ignored
      takes = [m.name for m in SELECTIONS.members() if needs_weights(m.name)]
      raise ValueError(f"selection={kind!r} takes no weights (they would "
                       f"be ignored); weights are for selection="
                       f"{' or '.join(repr(t) for t in takes)}")

  def ok(self, c, t):
    return not self.busy[c] and (self.avail is None
                                 or bool(self.avail.available(c, t)))

  def oks(self, clients, t):
    """``ok`` of an array of clients."""
    out = ~self.busy[clients]
    if self.avail is not None:
      out &= np.asarray(self.avail.available(clients, t), bool)
    return out

  def eligible(self, t):
    idle = np.flatnonzero(~self.busy)
    if self.avail is not None and idle.size:
      idle = idle[self.avail.available(idle, t)]
    return idle

  def pick(self, t) -> Optional[int]:
    """A client that is idle and available at ``t``, or None."""
    return self._pick(self, t)

  def next_available(self, t):
    """The earliest time an idle client becomes available (inf if none)."""
    idle = np.flatnonzero(~self.busy)
    if idle.size == 0:
      return np.inf
    if self.avail is None:
      return t
    return float(self.avail.next_start(idle, t).min())
