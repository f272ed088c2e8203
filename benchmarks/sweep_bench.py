#!/usr/bin/env python
"""Sweeps: a 16-member grid as one compiled program vs 16 separate runs.

Workload: FedProx Synthetic(1, 1) (``synthetic.synthetic``), 100 clients
(sizes: min 10, mean 40, lognormal sigma 1), logistic regression 60 -> 10,
1 local epoch, batch 10, SGD 0.01; FedAsync with polynomial staleness,
grid alpha in {0.2, 0.4, 0.6, 0.8} x a in {0, 0.5, 1, 2} (16 members);
closed-loop concurrency 10, lognormal speeds (sigma 1), work = example
counts; ``--updates`` (2000) client updates per member; one schedule and
one key shared by all members.

Systems (wall time INCLUDING compilation, as a user sees it; whole sweep
repeated ``--repeats`` times in rotating order, medians):

* ``separate``: 16 ``executor.simulate`` calls (library defaults), one per
  member (each call builds and compiles its own program);
* ``sweep_map`` / ``sweep_vmap``: ``sweep.sweep(make_rule, grid, ...)``
  with ``batching="map"`` / ``"vmap"`` (the member axis is always vmapped;
  batching is how the wave's clients are batched inside each member).

Every member of each sweep is checked against its separate run (max
relative parameter difference). Target: sweep >= 3x separate.

The LAST line printed is one JSON object, also written to
``<--out>/sweep_bench_<date>[_quick].json`` (default ``runs/benchmarks/``,
untracked; ``--out benchmarks/results`` records the run).

Recorded: ``results/sweep_bench_2026-11-22T061200Z.json`` by
``python benchmarks/sweep_bench.py``.

Usage:
  python benchmarks/sweep_bench.py            # 2000 updates, 3 repeats
  python benchmarks/sweep_bench.py --quick    # 500 updates, 2 repeats
  python benchmarks/sweep_bench.py --smoke --out /tmp/x   # 2 members, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "sweep_bench_*_smoke.json"
ALPHAS, EXPONENTS = (0.2, 0.4, 0.6, 0.8), (0.0, 0.5, 1.0, 2.0)


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  C.add_output_args(ap)
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--clients", type=int, default=None)
  ap.add_argument("--concurrency", type=int, default=None)
  ap.add_argument("--width", type=int, default=None,
                  help="executor width for every system (default: library)")
  args = ap.parse_args(argv)
  if args.updates is None:
    args.updates = 100 if args.smoke else 500 if args.quick else 2000
  if args.repeats is None:
    args.repeats = 1 if args.smoke else 2 if args.quick else 3
  args.clients = args.clients or (20 if args.smoke else 100)
  args.concurrency = args.concurrency or (5 if args.smoke else 10)
  # --smoke: 2 members (alpha 0.2, 0.6 x a = 0.5) instead of 16.
  args.grid = ([(0.2, 0.5), (0.6, 0.5)] if args.smoke else
               [(a, e) for a in ALPHAS for e in EXPONENTS])
  return args


class Workload:
  """Synthetic(1, 1), logistic regression, one schedule and key."""

  def __init__(self, args):
    import jax
    import optax
    from fedasync_jax import (client, delays, models, scheduler, synthetic)
    fed = synthetic.synthetic(1.0, 1.0, num_clients=args.clients, seed=0,
                              mean_examples=40, min_examples=10,
                              size_sigma=1.0)
    self.ds = fed.train
    model = models.logistic_regression(60, 10)
    self.params = model.init(jax.random.key(0))
    self.upd = client.local_update(model.loss, optax.sgd(0.01),
                                   batch_size=10,
                                   max_examples=self.ds.max_count, epochs=1)
    speeds = delays.device_speeds("lognormal", self.ds.num_clients,
                                  sigma=1.0, seed=0)
    self.sched = scheduler.asynchronous(
        delays.delay_model(speeds, self.ds.counts.astype(float)),
        num_updates=args.updates, concurrency=args.concurrency, seed=0)
    self.key = jax.random.key(0)
    self.width = args.width

  def separate(self, grid):
    """One ``executor.simulate`` per member; (wall s, final params)."""
    import jax
    from fedasync_jax import executor, rules, staleness
    t = time.perf_counter()
    finals = []
    for a, e in grid:
      out = executor.simulate(
          rules.fedasync(a, staleness.polynomial(e)), self.upd, self.params,
          self.ds, self.sched, key=self.key, width=self.width)
      finals.append(jax.device_get(out.state.params))
    return time.perf_counter() - t, finals

  def swept(self, grid, batching):
    """All members as one ``sweep.sweep``; (wall s, final params)."""
    import jax.numpy as jnp
    from fedasync_jax import rules, staleness, sweep
    hp = {"alpha": jnp.asarray([a for a, _ in grid], jnp.float32),
          "a": jnp.asarray([e for _, e in grid], jnp.float32)}

    def make_rule(h):
      return rules.fedasync(h["alpha"], staleness.polynomial(h["a"]))
    t = time.perf_counter()
    outs = sweep.sweep(make_rule, hp, self.upd, self.params, self.ds,
                       self.sched, keys=self.key, batching=batching,
                       width=self.width)
    return time.perf_counter() - t, [o.state.params for o in outs]


def measure(args, w):
  """The three systems in rotating order; (samples, final params)."""
  systems = {"separate": lambda: w.separate(args.grid),
             "sweep_map": lambda: w.swept(args.grid, "map"),
             "sweep_vmap": lambda: w.swept(args.grid, "vmap")}
  names, M, n = list(systems), len(args.grid), w.sched.num_arrivals
  runs, finals = {k: [] for k in names}, {}
  for r in range(args.repeats):
    for name in names[r % len(names):] + names[:r % len(names)]:
      wall, fin = systems[name]()
      runs[name].append({"wall_s": wall, "loadavg": C.loadavg(),
                         "member_updates_per_s": M * n / wall})
      finals[name] = fin
      C.log(f"  repeat {r + 1}/{args.repeats} {name}: {wall:.1f} s "
            f"({M * n / wall:.0f} member-updates/s), load {C.loadavg()}")
  return runs, finals


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  started, load0 = time.perf_counter(), C.loadavg()
  w = Workload(args)
  M = len(args.grid)
  C.log(f"sweep: {M} members x {w.sched.num_arrivals} updates, "
        f"{w.ds.num_clients} clients (max {w.ds.max_count} examples, "
        f"{w.upd.num_steps} local steps)")
  runs, finals = measure(args, w)
  names = list(runs)
  agree = {k: max(C.rel_diff(finals[k][m], finals["separate"][m])
                  for m in range(M)) for k in names if k != "separate"}
  summary = {k: {"wall_s": C.median([x["wall_s"] for x in runs[k]]),
                 "member_updates_per_s": C.median(
                     [x["member_updates_per_s"] for x in runs[k]])}
             for k in names}
  ratios = {f"{k}_vs_separate": C.median(
      [a["wall_s"] / b["wall_s"] for a, b in zip(runs["separate"],
                                                  runs[k])])
            for k in names if k != "separate"}
  result = {
      "config": {"data": f"synthetic(1,1) {args.clients} clients, sizes "
                         "min 10 mean 40 sigma 1",
                 "model": "logistic_regression(60, 10)",
                 "client": "1 epoch, batch 10, sgd 0.01",
                 "grid": {"alpha": sorted({a for a, _ in args.grid}),
                          "polynomial_a": sorted({e for _, e in args.grid})},
                 "members": M, "updates_per_member": w.sched.num_arrivals,
                 "concurrency": args.concurrency,
                 "width": args.width or "library default"},
      "summary": summary, "speedup": ratios,
      "max_rel_param_diff_vs_separate": agree,
      "target": "sweep >= 3x 16 separate runs (wall incl. compilation)",
      "samples": runs,
      "method": "wall time of the whole 16-member job including "
                "compilation; systems in rotating order per repeat; "
                "speedup = median of per-repeat paired ratios",
  }
  C.finish("sweep_bench", result, args=args, started=started,
           load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
