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
    i = q.first(lambda c: sel.maybe(c, t), lambda c: sel.online(c, t))
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

  def first(self, maybe, online) -> Optional[int]:
    """The position of the first client not given that ``maybe`` (a cheap
    mask of an array of clients: idle and not known to be offline) admits
    and ``online`` (a lookup of availability) confirms, or None; the
    lookups go in growing batches up to the first hit."""
    a, chunk = self.head, 64
    while a < self.order.size:
      b = min(a + chunk, self.order.size)
      pos = a + np.flatnonzero(~self.given[a:b] & maybe(self.order[a:b]))
      i, k = 0, 4
      while i < pos.size:
        part = pos[i:i + k]
        on = online(self.order[part])
        if on.any():
          return int(part[np.argmax(on)])
        i, k = i + k, k * 4
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
    # when each client may next be online (known offline before it)
    # (``_look``: from when to look again, a little before it)
    self._back, self._look = np.full(n, -np.inf), np.full(n, -np.inf)
    self._t = -np.inf
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
    if self.busy[c]:
      return False
    if self.avail is None:
      return True
    if self._look[c] > t >= self._t:  # known offline at t
      return False
    return bool(self._online(np.array([c]), t)[0])

  def maybe(self, clients, t):
    """Which of ``clients`` are idle and not known to be offline at ``t``
    (no lookup)."""
    self._forward(t)
    out = ~self.busy[clients]
    if self.avail is not None:
      out &= self._look[clients] <= t
    return out

  def online(self, clients, t):
    """Which of ``clients`` are available at ``t``."""
    if self.avail is None:
      return np.ones(len(clients), bool)
    return self._online(clients, t)

  def eligible(self, t):
    if self.avail is None:
      return np.flatnonzero(~self.busy)
    self._forward(t)
    cand = np.flatnonzero(~self.busy & (self._look <= t))
    return cand[self._online(cand, t)] if cand.size else cand

  def _online(self, clients, t):
    """``avail.available(clients, t)``, looked up only for clients not
    known to be offline at ``t``: an offline client's next start is kept
    (``back``), so each offline spell is looked up once, not at every
    dispatch (with few clients online, every dispatch of ``uniform``
    looked at the whole population: 38 s to schedule 20,000 updates among
    100,000 clients online 0.1% of the time)."""
    self._forward(t)
    out = self._look[clients] <= t
    look = np.flatnonzero(out)
    if look.size:
      c = clients[look]
      on = np.asarray(self.avail.available(c, t), bool).reshape(-1)
      out[look] = on
      if not on.all():
        self._remember(c[~on], t)
    return out

  def _forward(self, t):
    """Time runs forward in a schedule; if it goes back, what is known
    about offline clients is forgotten."""
    if t < self._t:
      self._back[:] = self._look[:] = -np.inf
    self._t = t

  def _remember(self, off, t):
    """Keeps when the clients ``off`` (offline at ``t``) come back."""
    back = np.asarray(self.avail.next_start(off, t), np.float64).reshape(-1)
    # A start computed from another time can round a few ulps later than
    # the one ``available`` sees: look again from a little before it.
    look = np.where(np.isfinite(back), back - 16 * np.spacing(back), back)
    unresolved = getattr(self.avail, "unresolved", None)
    if unresolved is not None:
      # Windows shorter than the float resolution count as open from that
      # time on (it only grows with t): before ``back`` if it is so there.
      look = np.where(unresolved(back), t, look)
    self._back[off], self._look[off] = back, look

  def pick(self, t) -> Optional[int]:
    """A client that is idle and available at ``t``, or None."""
    return self._pick(self, t)

  def next_available(self, t):
    """The earliest time an idle client becomes available (inf if none)."""
    idle = ~self.busy
    if not idle.any():
      return np.inf
    if self.avail is None:
      return t
    if self.eligible(t).size:
      return t
    # The kept starts were computed from other times (a few ulps apart):
    # the earliest is recomputed from ``t``, among those near the minimum.
    back = np.where(idle, self._back, np.inf)
    low = back.min()
    if not np.isfinite(low):
      return float(low)
    near = np.flatnonzero(back <= low + 64 * np.spacing(low))
    return float(np.min(self.avail.next_start(near, t)))


class LookupEveryTime(Selector):
  """A ``Selector`` that looks every client's availability up at every
  call (no memory of when offline clients come back): the plain rule that
  the tests and ``benchmarks/schedule_draw.py`` compare ``Selector`` with
  (the same picks, in more time)."""

  def _online(self, clients, t):
    return np.asarray(self.avail.available(clients, t), bool).reshape(-1)

  def maybe(self, clients, t):
    return ~self.busy[clients]

  def ok(self, c, t):
    return not self.busy[c] and (self.avail is None
                                 or bool(self.avail.available(c, t)))

  def eligible(self, t):
    idle = np.flatnonzero(~self.busy)
    return idle if self.avail is None else idle[self._online(idle, t)]

  def next_available(self, t):
    idle = np.flatnonzero(~self.busy)
    if idle.size == 0 or self.avail is None:
      return np.inf if idle.size == 0 else t
    return float(np.min(self.avail.next_start(idle, t)))
