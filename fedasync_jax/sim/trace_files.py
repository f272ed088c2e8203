"""Reading trace files: FedScale's pickles and JSON, and plain CSV.

The formats are described in ``sim.traces`` (after FedScale, Lai et al.
2022, arXiv:2105.11367). A pickle is read only when the caller says the
file is trusted (unpickling runs code from the file); ``python -m
fedasync_jax.sim.trace_files convert IN.pkl OUT.json --trust-pickle``
converts one once, so later runs read JSON.

Example:
  >>> import tempfile, os
  >>> p = os.path.join(tempfile.mkdtemp(), "d.json")
  >>> _ = open(p, "w").write('{"7": {"computation": 5, "communication": 80}}')
  >>> read_device_table(p).download.tolist()
  [80.0]
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.sim import traces
from fedasync_jax.sim.traces import (DeviceTable, Intervals, device_table,
                                     intervals)

def _read_mapping(path: Path, trust_pickle: bool) -> dict:
  """A FedScale-style ``{id: {...}}`` mapping from a pickle or JSON."""
  if path.suffix in (".pkl", ".pickle"):
    if not trust_pickle:
      raise ValueError(
          f"{path} is a pickle: reading it runs code from the file; pass "
          f"trust_pickle=True (config: delays.trust_pickle=true) only for a "
          f"file you trust, or convert it once with `python -m "
          f"fedasync_jax.sim.trace_files convert {path} OUT.json --trust-pickle`")
    with open(path, "rb") as f:
      obj = pickle.load(f)  # noqa: S301 - the user vouched for the file
  else:
    with open(path, encoding="utf-8") as f:
      obj = json.load(f)
  if not isinstance(obj, dict) or not obj:
    raise ValueError(f"{path}: expected a non-empty mapping of client id to "
                     f"a record, got {type(obj).__name__}")
  return obj


def _read_csv(path: Path, columns) -> dict:
  """``{column: values}`` of a CSV file; every name in ``columns`` must be
  in the header (``columns(header)`` when it is a function), and all but
  the first are converted to numbers."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{path}: the trace is empty")
  if callable(columns):
    columns = columns(rows[0])
  missing = [c for c in columns if c not in rows[0]]
  if missing:
    raise ValueError(f"{path}: missing column(s) {missing}; the header "
                     f"is {list(rows[0])}")
  out = {c: [r[c] for r in rows] for c in rows[0]}
  for c in columns[1:]:
    try:
      out[c] = [float(v) for v in out[c]]
    except (TypeError, ValueError):
      raise ValueError(f"{path}: column {c!r} must hold numbers") from None
  return out


def _open_error(path: Path, e: Exception) -> ValueError:
  return ValueError(f"cannot read the trace {path}: "
                    f"{type(e).__name__}: {str(e)[:200]}")


def read_device_table(path, *, trust_pickle: bool = False) -> DeviceTable:
  """Reads a device table (FedScale pickle, JSON, or CSV).

  Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> _ = open(p, "w").write("client,computation,communication\\n7,5,80\\n")
    >>> read_device_table(p).computation.tolist()
    [5.0]
  """
  path = Path(path)
  try:
    if path.suffix == ".csv":
      cols = _read_csv(path, lambda header: (
          ["client", "computation", "download", "upload"]
          if "download" in header else
          ["client", "computation", "communication"]))
      return device_table(cols["client"], cols["computation"],
                          cols.get("download", cols.get("communication")),
                          cols.get("upload"), where=str(path))
    rec = _read_mapping(path, trust_pickle)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError,
          pickle.UnpicklingError, EOFError) as e:
    raise _open_error(path, e) from None
  try:
    comp = [float(r["computation"]) for r in rec.values()]
    down = [float(r.get("download", r.get("dl_kbps", r.get("communication"))))
            for r in rec.values()]
    up = [float(r.get("upload", r.get("ul_kbps", r.get("communication"))))
          for r in rec.values()]
  except (KeyError, TypeError, ValueError, AttributeError):
    raise ValueError(f"{path}: every record needs numbers 'computation' and "
                     f"'communication' (or 'download' and 'upload')") from None
  return device_table(list(rec), comp, down, up, where=str(path))


def read_availability(path, *, period: Optional[float] = None,
                      trust_pickle: bool = False) -> Intervals:
  """Reads a behaviour trace (FedScale pickle or JSON) or a plain
  ``client,start,end`` CSV.

  FedScale's traces repeat with their ``finish_time``; a CSV repeats with
  ``period`` if given.

  Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write("client,start,end\\n1,0,5\\n1,8,9\\n")
    >>> read_availability(p).end.tolist()
    [[5.0, 9.0]]
  """
  path = Path(path)
  try:
    if path.suffix == ".csv":
      cols = _read_csv(path, ["client", "start", "end"])
      return intervals(cols["client"], cols["start"], cols["end"],
                       period=period, where=str(path))
    rec = _read_mapping(path, trust_pickle)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError,
          pickle.UnpicklingError, EOFError) as e:
    raise _open_error(path, e) from None
  clients, starts, ends, fin_of = [], [], [], {}
  for cid, r in rec.items():
    try:
      act = [float(v) for v in r["active"]]
      ina = [float(v) for v in r["inactive"]]
      fin = float(r["finish_time"])
    except (KeyError, TypeError, ValueError, AttributeError):
      raise ValueError(f"{path}: client {cid!r} needs lists 'active' and "
                       f"'inactive' and a number 'finish_time'") from None
    if len(act) != len(ina):
      raise ValueError(f"{path}: client {cid!r} has {len(act)} 'active' but "
                       f"{len(ina)} 'inactive' times")
    clients += [cid] * len(act)
    starts += act
    ends += ina
    fin_of[cid] = fin
  if not clients:
    raise ValueError(f"{path}: no client is ever online (every 'active' "
                     f"list is empty)")
  out = []
  for fin in sorted(set(fin_of.values())):  # rows grouped by period
    keep = [i for i, c in enumerate(clients) if fin_of[c] == fin]
    out.append(intervals([clients[i] for i in keep], [starts[i] for i in keep],
                         [ends[i] for i in keep], period=fin,
                         where=str(path)))
  return out[0] if len(out) == 1 else _concat(out)


def _concat(parts) -> Intervals:
  width = max(p.start.shape[1] for p in parts)

  def pad(a):
    return np.pad(a, ((0, 0), (0, width - a.shape[1])),
                  constant_values=np.inf)
  return Intervals(np.concatenate([p.ids for p in parts]),
                   np.concatenate([pad(p.start) for p in parts]),
                   np.concatenate([pad(p.end) for p in parts]),
                   np.concatenate([p.period for p in parts]))


class Loaded(NamedTuple):
  """What the trace files set for a population: ``speed`` and
  ``comm_time`` from a device table, ``availability`` from a behaviour
  trace (each ``None`` without its file) and ``mapping``, the rows of
  ``traces.mapping_table``."""
  speed: Optional[np.ndarray]
  comm_time: Optional[np.ndarray]
  availability: Optional[traces.TraceAvailability]
  mapping: list


def load(num_clients: int, *, device_path=None, availability_path=None,
         period: Optional[float] = None, mapping: str = "cycle",
         seed: int = 0, model_kbit: float = 0.0, augmentation: float = 3.0,
         trust_pickle: bool = False) -> Loaded:
  """Reads the trace files and maps ``num_clients`` clients onto them.

  Each file gets its own mapping of clients to rows, drawn by the rule
  ``mapping`` (``traces.MAPPINGS``) with seeds derived from ``seed``.

  Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "av.csv")
    >>> _ = open(p, "w").write("client,start,end\\n0,0,5\\n1,5,10\\n")
    >>> out = load(3, availability_path=p, period=10.0)
    >>> out.availability.available(np.arange(3), 6.0).tolist()
    [False, True, False]
    >>> out.mapping[:2]
    [['client', 'availability_row', 'availability_id'], [0, 0, '0']]
  """
  rows, ids = {}, {}
  speed = comm = avail = None
  if device_path is not None:
    table = read_device_table(device_path, trust_pickle=trust_pickle)
    rows["device"] = traces.map_clients(num_clients, table.num_rows,
                                        rule=mapping, seed=seed)
    ids["device"] = table.ids
    speed, comm = traces.task_costs(table, rows["device"],
                                    model_kbit=model_kbit,
                                    augmentation=augmentation)
  if availability_path is not None:
    iv = read_availability(availability_path, period=period,
                           trust_pickle=trust_pickle)
    rows["availability"] = traces.map_clients(
        num_clients, iv.num_rows, rule=mapping, seed=seed + 1)
    ids["availability"] = iv.ids
    avail = traces.availability_of(iv, rows["availability"])
  return Loaded(speed, comm, avail, traces.mapping_table(rows, ids))


def write_synthetic(folder, *, num_devices: int = 1000, days: int = 7,
                    seed: int = 0) -> tuple:
  """Writes a generated trace pair in FedScale's JSON format.

  Not measured data: a stand-in with the shape of FedScale's traces for
  tests and experiments. Devices: lognormal compute time (median 300 ms
  per sample, log standard deviation 0.8) and bandwidth (median 5,000
  kbit/s, log standard deviation 1). Behaviour, diurnal: every user is
  online each night (a charging session starting near the user's own hour
  around 22:00, 3-9 hours long) and for 0-3 short daytime sessions (5-60
  minutes); the trace spans ``days`` days and repeats.

  Returns:
    ``(device_path, behaviour_path)`` inside ``folder``.

  Example:
    >>> import tempfile
    >>> dev, beh = write_synthetic(tempfile.mkdtemp(), num_devices=5, days=1)
    >>> read_availability(beh).num_rows, read_device_table(dev).num_rows
    (5, 5)
  """
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  rng = checks.rng(seed)
  n = int(num_devices)
  comp = 300.0 * rng.lognormal(0.0, 0.8, n)
  bw = 5000.0 * rng.lognormal(0.0, 1.0, n)
  device = {str(i): {"computation": round(float(c), 3),
                     "communication": round(float(b), 3)}
            for i, (c, b) in enumerate(zip(comp, bw))}
  day, finish = 86400.0, 86400.0 * int(days)
  behaviour = {}
  for i in range(n):
    hour = rng.normal(22.0, 1.5)
    sessions = []
    for d in range(int(days)):
      start = d * day + 3600.0 * (hour + rng.normal(0.0, 0.5))
      sessions.append((start, start + 3600.0 * rng.uniform(3, 9)))
      for _ in range(int(rng.integers(0, 4))):
        s0 = d * day + 3600.0 * rng.uniform(8, 20)
        sessions.append((s0, s0 + 60.0 * rng.uniform(5, 60)))
    merged = []  # wrap into [0, finish), sort, merge overlaps
    for a, b in sessions:
      a, b = a % finish, b % finish
      merged += [(a, b)] if a < b else [(a, finish), (0.0, b)]
    merged = sorted((a, b) for a, b in merged if b - a >= 1.0)
    out = [list(merged[0])]
    for a, b in merged[1:]:
      if a <= out[-1][1] + 1.0:  # gaps under 1 s would not survive rounding
        out[-1][1] = max(out[-1][1], b)
      else:
        out.append([a, b])
    behaviour[str(i)] = {"active": [round(a, 1) for a, _ in out],
                         "inactive": [round(b, 1) for _, b in out],
                         "finish_time": finish, "duration": finish}
  paths = folder / "device_info.json", folder / "client_behave_trace.json"
  for path, rec in zip(paths, (device, behaviour)):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rec), encoding="utf-8")
    tmp.replace(path)
  return paths


def convert(src, dst) -> Path:
  """Writes a trusted FedScale pickle (device table or behaviour trace) as
  JSON of the same shape, atomically; returns ``dst``."""
  src, dst = Path(src), Path(dst)
  rec = _read_mapping(src, trust_pickle=True)

  def plain(v):
    if isinstance(v, dict):
      return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
      return [plain(x) for x in v]
    if isinstance(v, (np.integer, np.floating)):
      return v.item()
    if isinstance(v, float) and not math.isfinite(v):
      raise ValueError(f"{src}: non-finite value {v!r} cannot be JSON")
    return v
  tmp = dst.with_name(dst.name + ".tmp")
  tmp.write_text(json.dumps(plain(rec)), encoding="utf-8")
  tmp.replace(dst)
  return dst


def main(argv=None) -> int:
  """``python -m fedasync_jax.sim.trace_files convert IN.pkl OUT.json
  --trust-pickle``."""
  import argparse
  ap = argparse.ArgumentParser(prog="python -m fedasync_jax.sim.trace_files",
                               description="Convert FedScale trace pickles "
                               "to JSON.")
  sub = ap.add_subparsers(dest="command", required=True)
  c = sub.add_parser("convert", help="pickle -> JSON (same shape)")
  c.add_argument("src")
  c.add_argument("dst")
  c.add_argument("--trust-pickle", action="store_true",
                 help="required: unpickling runs code from the file")
  args = ap.parse_args(argv)
  if not args.trust_pickle:
    print("error: --trust-pickle is required: unpickling runs code from the "
          "file; pass it only for a file you trust", file=sys.stderr)
    return 2
  try:
    out = convert(args.src, args.dst)
  except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
