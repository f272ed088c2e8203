"""Figures of a device trace: how busy an accelerator was, and where it
waited.

``benchmarks/gpu.py --profile`` traces one run with JAX's profiler
(``jax.profiler.trace(..., create_perfetto_trace=True)``) and summarises
the Perfetto JSON it writes with :func:`summary`. A helper module of the
benchmarks, not a script.
"""

from __future__ import annotations


def summary(path, *, wall_s, updates, top=15):
  """Figures of a Perfetto JSON trace (``jax.profiler.trace``).

  Device events are those of processes whose names hold 'GPU' or
  'device' but not 'host'. Returned: their count and busy time (the union
  of their intervals), per update; the busy share of the device's span
  (first event to last; ``wall_s`` also holds the profiler's start and
  stop, so the share of it is a floor); the device-to-host copies
  (``MemcpyD2H``: on a GPU, among others, the copy of a ``while`` loop's
  predicate that the host waits for at every iteration) and the idle gap
  after them, against the other gaps under 1 ms, and the longer gaps (the
  host between compiled calls); the ``top`` event names by device time;
  the event names grouped by how often each ran (``{count: {"names",
  "us"}}``, the ``top`` largest counts: a loop's iterations and kernels
  per iteration); and every process's event count and time, so that an
  unexpected layout is still visible.

  Example:
    >>> import gzip, json, tempfile
    >>> ev = [{"ph": "M", "name": "process_name", "pid": 1,
    ...        "args": {"name": "/device:GPU:0"}},
    ...       {"ph": "X", "pid": 1, "name": "dot", "ts": 0, "dur": 6},
    ...       {"ph": "X", "pid": 1, "name": "MemcpyD2H", "ts": 6, "dur": 1},
    ...       {"ph": "X", "pid": 1, "name": "dot", "ts": 37, "dur": 3}]
    >>> f = tempfile.NamedTemporaryFile(suffix=".json.gz", delete=False)
    >>> with gzip.open(f.name, "wt") as g:
    ...   json.dump({"traceEvents": ev}, g)
    >>> s = summary(f.name, wall_s=1.0, updates=2)
    >>> s["device_busy_share_of_span"], s["gap_after_device_to_host_us"]
    (0.25, {'count': 1, 'median': 30.0, 'total': 30.0})
  """
  import gzip
  import json
  import statistics
  with gzip.open(path, "rt") as f:
    events = json.load(f)
  events = events.get("traceEvents", events) if isinstance(
      events, dict) else events
  names = {e.get("pid"): e.get("args", {}).get("name", "")
           for e in events if e.get("ph") == "M"
           and e.get("name") == "process_name"}
  spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
  per_process = {}
  for e in spans:
    name = names.get(e.get("pid"), str(e.get("pid")))
    n, d = per_process.get(name, (0, 0.0))
    per_process[name] = (n + 1, d + float(e["dur"]))
  device = sorted((e for e in spans
                   if _is_device(names.get(e.get("pid"), ""))),
                  key=lambda e: float(e["ts"]))
  busy_us, end = 0.0, float("-inf")
  after_copy, other, long_gaps = [], [], []
  for e in device:
    t0, t1 = float(e["ts"]), float(e["ts"]) + float(e["dur"])
    busy_us += max(0.0, t1 - max(t0, end))
    end = max(end, t1)
  for a, b in zip(device, device[1:]):
    gap = float(b["ts"]) - float(a["ts"]) - float(a["dur"])
    (long_gaps if gap > 1000 else after_copy if a.get("name") == "MemcpyD2H"
     else other).append(max(0.0, gap))
  span_us = (end - float(device[0]["ts"])) if device else 0.0
  by_name = {}
  for e in device:
    by_name[e.get("name", "")] = by_name.get(e.get("name", ""), 0.0) + float(
        e["dur"])
  costliest = sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
  copies = sum(1 for e in device if e.get("name") == "MemcpyD2H")
  # Event names that ran equally often, grouped: a loop's body runs each
  # of its kernels once per iteration, so a group's count is a loop's
  # iteration count and its size the kernels per iteration.
  counts = {}
  for e in device:
    counts[e.get("name", "")] = counts.get(e.get("name", ""), 0) + 1
  groups = {}
  for name, n in counts.items():
    g = groups.setdefault(n, {"names": 0, "us": 0.0})
    g["names"] += 1
    g["us"] += by_name[name]
  groups = dict(sorted(groups.items(), key=lambda kv: -kv[0])[:top])

  def gaps(xs):
    return {"count": len(xs), "median": statistics.median(xs) if xs else None,
            "total": sum(xs)}

  return {"processes": {k: {"events": n, "us": d}
                        for k, (n, d) in per_process.items()},
          "device_events": len(device),
          "device_busy_s": busy_us / 1e6,
          "device_span_s": span_us / 1e6,
          "device_busy_share_of_span": busy_us / span_us if span_us else None,
          "device_busy_share_of_wall": busy_us / 1e6 / wall_s,
          "device_events_per_update": len(device) / updates,
          "device_us_per_update": busy_us / updates,
          "device_to_host_per_update": copies / updates,
          "gap_after_device_to_host_us": gaps(after_copy),
          "other_gaps_under_1ms_us": gaps(other),
          "gaps_over_1ms_us": gaps(long_gaps),
          "costliest_device_events_us": dict(costliest),
          "device_event_groups_by_count": {str(n): g
                                           for n, g in groups.items()}}


def _is_device(process_name):
  low = process_name.lower()
  return ("gpu" in low or "device" in low) and "host" not in low
