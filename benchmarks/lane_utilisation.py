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

Two more figures per case, to say how far the wave plan is from what is
possible: ``bound``, the most any executor that keeps the exact arrival
order can reach at that width (``lanes.critical_path``: parallelism /
width), and ``refill``, what a lane machine would reach that refills a
lane with the earliest-arriving ready client as soon as its client
finishes, at the granularity of one local step (``refill_utilisation``
below: a host simulation of a design, not an executor of the library).

The LAST line printed is one JSON object, also written to
``benchmarks/results/lane_utilisation_<date>[_smoke].json``.

Usage:
  python benchmarks/lane_utilisation.py            # 5000 updates per case
  python benchmarks/lane_utilisation.py --smoke --out /tmp/x
"""

from __future__ import annotations

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


def refill_utilisation(schedule, steps_of_client, width: int) -> dict:
  """Utilisation of ``width`` lockstep lanes that each take the ready
  client with the earliest arrival whenever they are idle (ready: its start
  version exists), advance one local step per round, and hand a finished
  client's result to the arrivals, which are applied in order as soon as
  their clients are trained."""
  import heapq
  import numpy as np
  n = schedule.num_arrivals
  a_task = schedule.arrival_task
  trained_ok = ~schedule.dropped
  after = schedule.version_after
  exists_after = {0: 0}  # version -> arrivals applied when it exists
  for p, v in enumerate(after):
    exists_after.setdefault(int(v), p + 1)
  tasks = a_task[trained_ok]
  ready_at = np.array([exists_after[int(schedule.dispatch_version[k])]
                       for k in tasks], np.int64)
  order = np.argsort(ready_at, kind="stable")
  arr_pos = np.full(schedule.num_tasks, -1, np.int64)
  arr_pos[a_task] = np.arange(n)
  steps = np.asarray(steps_of_client)[schedule.client]
  done = np.zeros(schedule.num_tasks, bool)
  lane_task, lane_left = [-1] * width, [0] * width
  heap, r, applied, rounds, useful = [], 0, 0, 0, 0
  while applied < n:
    while r < order.size and ready_at[order[r]] <= applied:
      k = int(tasks[order[r]])
      heapq.heappush(heap, (arr_pos[k], k))
      r += 1
    for lane in range(width):
      if lane_task[lane] < 0 and heap:
        k = heapq.heappop(heap)[1]
        lane_task[lane], lane_left[lane] = k, int(steps[k])
    busy = [lane for lane in range(width) if lane_task[lane] >= 0]
    rounds += bool(busy)
    for lane in busy:
      lane_left[lane] -= 1
      useful += 1
      if lane_left[lane] == 0:
        done[lane_task[lane]], lane_task[lane] = True, -1
    while applied < n and (not trained_ok[applied]
                           or done[a_task[applied]]):
      applied += 1
  return {"refill": useful / (width * rounds), "refill_rounds": rounds}


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
    matched = max(1, int(cp["parallelism"]))  # widest with bound 1
    for width in sorted(set(args.widths + [plan.default_width(conc),
                                           matched])):
      p = plan.make_plan(sched, width=width)
      u = lanes.utilisation(p, steps)
      u.update(concurrency=conc, default_width=width == plan.default_width(
          conc), steps=p.num_steps, matched_width=width == matched, **cp,
               bound=min(1.0, cp["parallelism"] / width),
               **refill_utilisation(sched, steps, width))
      C.log(f"C={conc} width={width}: utilisation {u['utilisation']:.3f} "
            f"(padding {u['padding']:.3f}, {p.num_steps} steps); refill "
            f"{u['refill']:.3f}; bound {u['bound']:.3f}")
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
