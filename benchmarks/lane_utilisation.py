#!/usr/bin/env python
"""Lane utilisation of the vmap wave path on W1, computed from the plans.

W1: MNIST over 1000 Dirichlet(0.5) clients (8-179 examples), one local
epoch at batch 10, so a task takes 1-18 local steps; lognormal speeds
(sigma 1), work = example counts, exponential jitter. For concurrency C in
{100, 1000} and plan widths in {16, 32, 64} (and the library's default
width ``2 sqrt(C)``), the schedule's plan is built as the executor builds
it (``plan.make_plan``, ``arrivals_per_step = 2 x width``) and
``lanes.utilisation`` counts useful client steps against executed
lane-steps (``width x`` the longest client of each wave). Nothing is
trained, so this measures what an accelerator's lanes would do without
one (issue target: >= 0.85 at 32 lanes, C = 1000).

Two more figures per case: ``refill``, the utilisation of the refill
executor's plan at that width (``batching="refill"``: a lane takes the
earliest-arriving ready client as soon as its own is done, one local step
per plan step; ``plan.make_plan(steps_of_client=...)``), and ``bound``,
the most any executor that keeps the exact arrival order can reach at
that width (``lanes.critical_path``: parallelism / width). The widths
include the parallelism rounded up (refill's default width).

And for even widths, what the wave plan gains over two devices that each
run their lanes one after the other (``batching="devices"`` on a CPU
split into two one-core devices): ``lanes.device_balance``, useful steps
over the busiest device's steps, with the lanes dealt by size (the
strategy's ``deal_lanes``) and round-robin (before it); at most 2.

The LAST line printed is one JSON object, also written to
``<--out>/lane_utilisation_<date>[_smoke].json`` (default ``runs/benchmarks/``,
untracked; ``--out benchmarks/results`` records the run).

Usage:
  python benchmarks/lane_utilisation.py            # 5000 updates per case
  python benchmarks/lane_utilisation.py --smoke --out /tmp/x
"""

from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "lane_utilisation_*_smoke.json"


def parse_args(argv):
  ap = C.mnist_parser(__doc__)
  ap.add_argument("--updates", type=int, default=None)
  args = ap.parse_args(argv)
  args.updates = args.updates or (100 if args.smoke else 5000)
  args.clients = 20 if args.smoke else C.W1["num_clients"]
  args.concurrency = [5, 10] if args.smoke else [100, 1000]
  args.widths = [4, 8] if args.smoke else [16, 32, 64]
  return args


def main(argv=None):
  args = parse_args(argv)
  started, load_start = time.perf_counter(), C.loadavg()
  out = C.out_dir(args)
  path = C.mnist_path(args, out)
  if C.skip_if_no_mnist(path, "lane_utilisation"):
    return 0
  from fedasync_jax import plan, scheduler
  from fedasync_jax.sim import lanes
  ds, _, _ = C.w1_data(path, num_clients=args.clients)
  dm = C.w1_delay_model(ds)
  steps = lanes.client_steps(ds.counts, batch_size=C.W1["batch_size"],
                             epochs=C.W1["epochs"])
  cases = []
  for conc in args.concurrency:
    sched = scheduler.asynchronous(dm, num_updates=args.updates,
                                   concurrency=conc, seed=0)
    cp = lanes.critical_path(sched, steps)
    C.log(f"C={conc}: critical path {cp['critical_path_steps']} steps, "
          f"{cp['useful_steps']} useful, parallelism "
          f"{cp['parallelism']:.1f} lanes")
    matched = max(1, math.ceil(cp["parallelism"]))  # refill's default
    for width in sorted(set(args.widths + [plan.default_width(conc),
                                           matched])):
      p = plan.make_plan(sched, width=width)
      u = lanes.utilisation(p, steps)
      u.update(concurrency=conc, default_width=width == plan.default_width(
          conc), steps=p.num_steps, matched_width=width == matched, **cp,
               bound=min(1.0, cp["parallelism"] / width))
      r = plan.make_plan(sched, width=width, steps_of_client=steps)
      ru = lanes.utilisation(r, steps)
      u.update(refill=ru["utilisation"], refill_steps=r.num_steps,
               refill_slots=r.num_slots, refill_snaps=r.num_snaps)
      for deal in ("size", "round_robin"):
        u[f"two_devices_{deal}"] = (
            lanes.device_balance(p, steps, 2, deal=deal)["speedup"]
            if width % 2 == 0 else None)
      two = ("" if width % 2 else
             f"; two devices {u['two_devices_size']:.2f}x (round-robin "
             f"{u['two_devices_round_robin']:.2f}x)")
      C.log(f"C={conc} width={width}: utilisation {u['utilisation']:.3f} "
            f"(padding {u['padding']:.3f}, {p.num_steps} steps); refill "
            f"{u['refill']:.3f}; bound {u['bound']:.3f}{two}")
      cases.append(u)
  result = {"workload": {**C.W1, "num_clients": args.clients,
                         "num_updates": args.updates,
                         "client_steps": "epochs x ceil(examples / 10): "
                         f"{int(steps.min())}..{int(steps.max())}"},
            "cases": cases}
  C.finish("lane_utilisation", result, args=args, started=started,
           load_start=load_start)
  return 0


if __name__ == "__main__":
  sys.exit(main())
