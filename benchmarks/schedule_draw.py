#!/usr/bin/env python
"""Drawing a schedule when few clients are online: the selector's memory.

Workload: ``scheduler.asynchronous`` alone (no training): lognormal speeds
(sigma 1), 50 units of work per task, closed loop at ``--concurrency``
(100) clients in flight, ``--updates`` (20,000) arrivals, seed 0, for
each availability x population (``--populations``, default 1e4 and 1e5
for the periodic windows, 1e4 for the trace: its plain lookups take
minutes at 1e5) x selection:

* ``periodic``: ``delays.availability(period=100, on_fraction=0.001)``, a
  client online 0.1% of the time;
* ``trace``: three windows of 0.5 s per 100 s per client (1.5% online),
  from ``traces.intervals``;
* selections ``uniform``, ``weighted`` (by client index + 1) and
  ``without_replacement``.

Compared side by side, alternating, ``--repeats`` (2) times each: the
library's ``selection.Selector`` (it remembers when an offline client
comes back and looks it up only then) against
``selection.LookupEveryTime`` (the same selection looking every client up
at every call: what every dispatch did before). Reported: the median draw
time of each, their ratio, and whether the two schedules are identical
(clients, dispatch and arrival times; they must be).

The LAST line printed is one JSON object, also written to
``<--out>/schedule_draw_<date>[_quick|_smoke].json`` (default
``runs/benchmarks/``, untracked; ``--out benchmarks/results`` records the run).

Recorded: ``results/schedule_draw_2026-12-05T050636Z.json`` by
``python benchmarks/schedule_draw.py --out benchmarks/results``.

Usage:
  python benchmarks/schedule_draw.py
  python benchmarks/schedule_draw.py --quick   # 1e4 clients, 5,000 updates
  (about 10 minutes by default on a loaded 2-core CPU; --quick 1-2)
  python benchmarks/schedule_draw.py --smoke --out /tmp/x
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "schedule_draw_*_smoke.json"
SELECTIONS = ("uniform", "weighted", "without_replacement")
AVAILABILITY = ("periodic", "trace")


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  C.add_output_args(ap)
  ap.add_argument("--populations", default=None,
                  help="comma-separated client counts for every "
                  "availability (default: 1e4,1e5 periodic, 1e4 trace)")
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--concurrency", type=int, default=None)
  ap.add_argument("--repeats", type=int, default=None)
  args = ap.parse_args(argv)
  if args.populations:
    pops = [int(float(p)) for p in args.populations.split(",")]
    args.populations = {k: pops for k in AVAILABILITY}
  else:
    args.populations = {"periodic": [1000] if args.smoke else [10_000] if
                        args.quick else [10_000, 100_000],
                        "trace": [1000] if args.smoke else [10_000]}
  args.updates = args.updates or (300 if args.smoke else 5_000 if args.quick
                                  else 20_000)
  args.concurrency = args.concurrency or (20 if args.smoke else 100)
  args.repeats = args.repeats or (1 if args.smoke else 2)
  return args


def availability(kind, n):
  """Few clients online: periodic windows or a trace."""
  import numpy as np
  from fedasync_jax import delays
  from fedasync_jax.sim import traces
  if kind == "periodic":
    return delays.availability(n, period=100.0, on_fraction=0.001, seed=0)
  start = (np.random.default_rng(1).uniform(0, 29, (n, 3))
           + [0.0, 30.0, 60.0]).ravel()
  trace = traces.intervals(np.repeat(np.arange(n), 3), start, start + 0.5,
                           period=100.0)
  return traces.availability_of(trace, np.arange(n))


@contextlib.contextmanager
def selector(cls):
  """The scheduler draws with selector class ``cls`` meanwhile."""
  from fedasync_jax.sim import scheduler
  saved = scheduler.Selector
  scheduler.Selector = cls
  try:
    yield
  finally:
    scheduler.Selector = saved


def draw(cls, model, sel, n, args):
  """One draw with selector ``cls``: (seconds, schedule)."""
  import numpy as np
  from fedasync_jax import scheduler
  weights = np.arange(1, n + 1, dtype=float) if sel == "weighted" else None
  with selector(cls):
    t = time.perf_counter()
    s = scheduler.asynchronous(model, num_updates=args.updates,
                               concurrency=args.concurrency, selection=sel,
                               weights=weights, seed=0)
    return time.perf_counter() - t, s


def same(a, b) -> bool:
  import numpy as np
  return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in (
      "client", "dispatch_time", "arrival_time", "arrival_task"))


def main(argv=None):
  import numpy as np
  from fedasync_jax import delays
  from fedasync_jax.sim import selection
  args = parse_args(argv)
  started, load_start = time.perf_counter(), C.loadavg()
  rows = []
  for kind in AVAILABILITY:
    for n in args.populations[kind]:
      speeds = delays.device_speeds("lognormal", n, sigma=1.0, seed=0)
      model = delays.delay_model(speeds, np.full(n, 50.0),
                                 availability=availability(kind, n))
      for sel in SELECTIONS:
        times = {"selector": [], "lookup_every_time": []}
        scheds = {}
        for _ in range(args.repeats):
          for name, cls in (("selector", selection.Selector),
                            ("lookup_every_time",
                             selection.LookupEveryTime)):
            dt, scheds[name] = draw(cls, model, sel, n, args)
            times[name].append(dt)
        med = {k: C.median(v) for k, v in times.items()}
        row = {"clients": n, "availability": kind, "selection": sel,
               "updates": args.updates, "selector_s": med["selector"],
               "lookup_every_time_s": med["lookup_every_time"],
               "speedup": med["lookup_every_time"] / med["selector"],
               "identical": same(scheds["selector"],
                                 scheds["lookup_every_time"]),
               "all_s": times}
        rows.append(row)
        C.log(f"{n} clients, {kind}, {sel}: {med['selector']:.2f} s against "
              f"{med['lookup_every_time']:.2f} s ({row['speedup']:.1f}x), "
              f"identical {row['identical']}")
  if not all(r["identical"] for r in rows):
    C.log("SCHEDULES DIFFER: the selector's memory changed a draw")
  C.finish("schedule_draw", {"concurrency": args.concurrency,
                             "repeats": args.repeats, "rows": rows,
                             "all_identical": all(r["identical"]
                                                  for r in rows)},
           args=args, started=started, load_start=load_start)
  return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
