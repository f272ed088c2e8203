"""Device and availability traces: who is fast, and who is online when.

Two kinds of trace files drive a run's delays instead of distributions:

* a **device table**, one row per measured device: ``computation``
  (milliseconds per sample) and ``communication`` (bandwidth, kbit/s), or
  separate ``download`` and ``upload`` bandwidths;
* a **behaviour trace**, one row per user: the intervals during which the
  device is online.

The formats are those of FedScale (Lai et al. 2022, "FedScale: Benchmarking
Model and System Performance of Federated Learning at Scale",
arXiv:2105.11367), whose device table comes from AI Benchmark and MobiPerf
and whose behaviour trace covers a week of 136k users:

* device table: a mapping ``{id: {"computation": ms, "communication":
  kbps}}``, as a pickle (read only with ``trust_pickle=True``: unpickling
  runs code from the file), as JSON of the same shape, or as CSV with the
  header ``client,computation,communication`` (or ``client,computation,
  download,upload``);
* behaviour trace: ``{id: {"active": [t, ...], "inactive": [t, ...],
  "finish_time": T, ...}}``, as a pickle or JSON: the device is online from
  ``active[i]`` to ``inactive[i]``, and the trace repeats with period
  ``finish_time`` (FedScale reads time modulo ``finish_time``);
* plain availability CSV: rows ``client,start,end`` in seconds, any number
  of rows per client; it repeats with ``period`` if one is given.

A task's duration follows FedScale's completion time: computation
``augmentation * examples * epochs * ms_per_sample / 1000`` (``augmentation``
3 counts the backward pass as twice the forward) plus communication
``model_kbit / download + model_kbit / upload``. ``python -m
fedasync_jax.sim.trace_files convert IN OUT.json --trust-pickle`` turns
FedScale's pickles into JSON; ``sim.trace_files`` reads every format.

Example:
  >>> import numpy as np
  >>> av = intervals([0, 0, 1], [0.0, 5.0, 2.0], [1.0, 6.0, 3.0],
  ...                period=10.0)
  >>> a = availability_of(av, map_clients(2, av.num_rows))
  >>> a.available(np.array([0, 1]), 10.5).tolist()
  [True, False]
  >>> a.next_start(np.array([0]), 2.0).tolist(), a.online_until(1, 2.5)
  ([5.0], 3.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.registry import Param, Registry

TRACE_PARAMS = (
    Param("augmentation", 3.0, low=0, low_open=True, high=1e6,
          meaning="device table: compute cost of a training sample in "
          "forward passes (FedScale: 3)"),
    Param("model_kbit", None, low=0, high=1e12, optional=True,
          meaning="device table: model size sent each way, kbit (null: "
          "the model's float32 parameters)"),
    Param("availability_trace", None, kind=str, optional=True,
          meaning="per-client online intervals: FedScale behaviour trace "
          "(.pkl/.json) or client,start,end .csv"),
    Param("trace_period", None, low=0, low_open=True, high=1e15,
          optional=True, meaning="a .csv availability trace repeats with "
          "this period (null: once)"),
    Param("trust_pickle", False, kind=bool,
          meaning="allow reading trace pickles (runs code from the file)"),
    Param("lose_offline", False, kind=bool,
          meaning="a task is lost when its client goes offline before it "
          "finishes"),
)
"""The configuration's trace settings (section ``delays``), besides
``trace_path`` and ``trace_mapping``."""

MAPPINGS = Registry("trace_mapping")
"""How simulated clients are mapped to trace rows:
``factory(num_clients, num_rows, rng) -> (num_clients,) row indices``."""


@MAPPINGS.register("cycle")
def _cycle(n, rows, rng):
  """client ``i`` takes row ``i mod rows`` (rows in the file's order)"""
  del rng
  return np.arange(n) % rows


@MAPPINGS.register("random")
def _random(n, rows, rng):
  """a seeded random row per client (without repetition while rows last)"""
  reps = -(-n // rows)
  return np.concatenate([rng.permutation(rows) for _ in range(reps)])[:n]


def map_clients(num_clients: int, num_rows: int, *, rule: str = "cycle",
                seed: int = 0) -> np.ndarray:
  """Trace row of every simulated client.

  Args:
    num_clients: simulated population, ``>= 1``.
    num_rows: rows in the trace, ``>= 1``.
    rule: a member of ``MAPPINGS``: ``cycle`` or ``random``.
    seed: seed of ``random``.

  Example:
    >>> map_clients(5, 2).tolist()
    [0, 1, 0, 1, 0]
  """
  n = checks.integer("num_clients", num_clients, low=1)
  rows = checks.integer("num_rows", num_rows, low=1)
  checks.choice("rule", rule, MAPPINGS.names())
  return np.asarray(MAPPINGS[rule].factory(n, rows,
                                           checks.rng(seed)),
                    dtype=np.int64)


class DeviceTable(NamedTuple):
  """Measured devices: ids, ms per sample, download and upload kbit/s."""
  ids: np.ndarray
  computation: np.ndarray
  download: np.ndarray
  upload: np.ndarray

  @property
  def num_rows(self) -> int:
    return int(self.ids.shape[0])


class Intervals(NamedTuple):
  """Online intervals per trace row, padded with ``inf``; ``period[r]`` is
  ``inf`` for a trace that does not repeat."""
  ids: np.ndarray
  start: np.ndarray
  end: np.ndarray
  period: np.ndarray

  @property
  def num_rows(self) -> int:
    return int(self.ids.shape[0])


def _positive(name, values, where):
  v = np.asarray(values, dtype=np.float64)
  bad = ~np.isfinite(v) | (v <= 0)
  if v.size == 0:
    raise ValueError(f"{where}: the trace is empty")
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(f"{where}: {name} must be finite and > 0 for every "
                     f"device, got {float(v[i])!r} at row {i}")
  return v


def _ids(ids, where, unique=False) -> np.ndarray:
  """Client ids as strings; an empty id (or, with ``unique``, a repeated
  one) is refused naming its row."""
  out = [str(i).strip() for i in ids]
  for r, i in enumerate(out):
    if not i:
      raise ValueError(f"{where}: row {r} has no client id")
  if unique and len(set(out)) != len(out):
    seen = set()
    r = next(r for r, i in enumerate(out) if i in seen or seen.add(i))
    raise ValueError(f"{where}: client id {out[r]!r} appears twice (row "
                     f"{r})")
  return np.asarray(out)


def device_table(ids, computation, download, upload=None, *,
                 where: str = "device table") -> DeviceTable:
  """Validates a device table (``upload`` defaults to ``download``).

  Example:
    >>> device_table(["a"], [20.0], [1000.0]).upload.tolist()
    [1000.0]
  """
  ids = _ids(ids, where, unique=True)
  comp = _positive("computation", computation, where)
  down = _positive("download bandwidth", download, where)
  up = down if upload is None else _positive("upload bandwidth", upload,
                                             where)
  if not comp.shape == down.shape == up.shape == ids.shape:
    raise ValueError(f"{where}: every column needs one value per device")
  return DeviceTable(ids, comp, down, up)


def intervals(clients, start, end, *, period: Optional[float] = None,
              where: str = "availability trace") -> Intervals:
  """Groups ``(client, start, end)`` rows into per-client intervals.

  Intervals of one client must not overlap, and with a ``period`` they
  must lie in ``[0, period]``.

  Args:
    clients: client id of each row.
    start, end: seconds, ``0 <= start < end``.
    period: the trace repeats every ``period`` seconds (``None``: once).
    where: the file, for error messages.

  Example:
    >>> iv = intervals(["x", "x"], [4.0, 0.0], [5.0, 1.0])
    >>> iv.start.tolist(), iv.end.tolist()
    ([[0.0, 4.0]], [[1.0, 5.0]])
  """
  clients = [str(c) for c in _ids(clients, where)]  # plain, for messages
  s = np.asarray(start, dtype=np.float64).ravel()
  e = np.asarray(end, dtype=np.float64).ravel()
  if not len(clients) == s.size == e.size:
    raise ValueError(f"{where}: start and end need one value per row")
  if s.size == 0:
    raise ValueError(f"{where}: the trace is empty (no client is ever "
                     f"online)")
  bad = ~np.isfinite(s) | ~np.isfinite(e) | (s < 0) | (e <= s)
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(f"{where}: row {i} (client {clients[i]}) needs "
                     f"0 <= start < end, finite; got [{float(s[i])!r}, "
                     f"{float(e[i])!r}]")
  if period is not None:
    period = float(checks.number("period", period, low=0, low_open=True))
    if np.any(e > period):
      i = int(np.argmax(e > period))
      raise ValueError(f"{where}: row {i} ends at {float(e[i])!r}, after the "
                       f"period {period!r}")
  ids = sorted(set(clients), key=clients.index)
  per = {c: [] for c in ids}
  for c, a, b in zip(clients, s.tolist(), e.tolist()):
    per[c].append([a, b])
  width = max(len(v) for v in per.values())
  S = np.full((len(ids), width), np.inf)
  E = np.full((len(ids), width), np.inf)
  for r, c in enumerate(ids):
    iv = sorted(per[c])
    for j in range(1, len(iv)):
      if iv[j][0] < iv[j - 1][1]:
        raise ValueError(f"{where}: client {c} has overlapping intervals "
                         f"{iv[j - 1]} and {iv[j]}")
    S[r, :len(iv)] = [a for a, _ in iv]
    E[r, :len(iv)] = [b for _, b in iv]
  P = np.full(len(ids), np.inf if period is None else period)
  return Intervals(np.asarray(ids), S, E, P)


class TraceAvailability(NamedTuple):
  """Per-client online intervals (rows of ``Intervals`` mapped to the
  population); the interface of ``delays.Availability`` plus
  ``online_until``."""
  start: np.ndarray
  end: np.ndarray
  period: np.ndarray

  @property
  def num_clients(self) -> int:
    return int(self.period.shape[0])

  def _where(self, clients, t):
    c = np.atleast_1d(np.asarray(clients))
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), c.shape)
    p = self.period[c]
    finite = np.isfinite(p)
    ps = np.where(finite, p, 1.0)
    base = np.where(finite, np.floor(t / ps) * ps, 0.0)
    u = (t - base)[:, None]
    s, e = self.start[c], self.end[c]
    return c, p, base, u, s, e, (s <= u) & (u < e)

  def available(self, clients, t):
    """Whether each client is online at time ``t``."""
    *_, inside = self._where(clients, t)
    out = inside.any(axis=1)
    return out if np.ndim(clients) else bool(out[0])

  def next_start(self, clients, t):
    """The earliest time ``>= t`` at which each client is online (``inf``
    if never again)."""
    c, p, base, u, s, _, inside = self._where(clients, t)
    later = np.where(s > u, s, np.inf).min(axis=1)
    again = np.where(np.isfinite(p), p + s[:, 0], np.inf)
    out = np.where(inside.any(axis=1), t,
                   base + np.where(np.isfinite(later), later, again))
    # ``base + start`` can round to just before the interval: step up to
    # the first float that the interval holds.
    for _ in range(8):
      bad = np.isfinite(out) & ~self._where(c, out)[-1].any(axis=1)
      if not bad.any():
        break
      out = np.where(bad, np.nextafter(out, np.inf), out)
    return out if np.ndim(clients) else float(out[0])

  def online_until(self, clients, t):
    """When each client's current online interval ends (``t`` if it is
    offline); an interval that reaches the period's end continues into the
    next period's first interval if that starts at 0."""
    c, p, base, u, s, e, inside = self._where(clients, t)
    end = np.where(inside, e, -np.inf).max(axis=1)
    wraps = np.isfinite(p) & (end >= p) & (s[:, 0] <= 0)
    end = np.where(wraps, p + e[:, 0], end)
    out = np.where(inside.any(axis=1), base + end, t)
    return out if np.ndim(clients) else float(out[0])


def availability_of(trace: Intervals, rows: np.ndarray) -> TraceAvailability:
  """The population's availability: client ``i`` follows row ``rows[i]``."""
  rows = np.asarray(rows, dtype=np.int64)
  if not np.isfinite(trace.start[:, 0]).any():
    raise ValueError("the availability trace has no online interval")
  return TraceAvailability(trace.start[rows], trace.end[rows],
                           trace.period[rows])


def task_costs(table: DeviceTable, rows: np.ndarray, *, model_kbit: float,
               augmentation: float = 3.0):
  """FedScale's completion time, split as the delay model needs it.

  Returns ``(speed, comm_time)``: seconds per unit of work (one example of
  one epoch), ``augmentation * ms_per_sample / 1000``, and the seconds of
  one download plus one upload of ``model_kbit``.

  Example:
    >>> t = device_table(["a"], [20.0], [1000.0], [500.0])
    >>> speed, comm = task_costs(t, np.array([0]), model_kbit=100.0)
    >>> speed.tolist(), comm.tolist()
    ([0.06], [0.30000000000000004])
  """
  rows = np.asarray(rows, dtype=np.int64)
  kbit = float(checks.number("model_kbit", model_kbit, low=0))
  aug = float(checks.number("augmentation", augmentation, low=0,
                            low_open=True, high=1e6))
  speed = aug * table.computation[rows] / 1000.0
  comm = kbit / table.download[rows] + kbit / table.upload[rows]
  return speed, comm


def is_device_table(path) -> bool:
  """Whether ``path`` names a device table rather than a list of speeds:
  a pickle, JSON, or a CSV whose header has a ``computation`` column."""
  path = Path(path)
  if path.suffix in (".pkl", ".pickle", ".json"):
    return True
  if path.suffix != ".csv":
    return False
  try:
    with open(path, encoding="utf-8") as f:
      return "computation" in f.readline()
  except (OSError, UnicodeDecodeError):
    return False


def mapping_table(rows: dict, ids: dict) -> list:
  """Rows ``client, <kind>_row, <kind>_id`` recording which trace row each
  simulated client follows (``rows``/``ids``: ``{kind: array}``)."""
  kinds = sorted(rows)
  n = len(next(iter(rows.values()))) if rows else 0
  out = [["client"] + [f"{k}_{w}" for k in kinds for w in ("row", "id")]]
  for c in range(n):
    out.append([c] + [v for k in kinds
                      for v in (int(rows[k][c]), str(ids[k][rows[k][c]]))])
  return out
