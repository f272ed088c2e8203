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
``benchmarks/results/sweep_bench_<date>[_quick].json``.

Usage:
  python benchmarks/sweep_bench.py            # 2000 updates, 3 repeats
  python benchmarks/sweep_bench.py --quick    # 500 updates, 2 repeats
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--clients", type=int, default=100)
  ap.add_argument("--concurrency", type=int, default=10)
  ap.add_argument("--width", type=int, default=None,
                  help="executor width for every system (default: library)")
  args = ap.parse_args(argv)
  if args.updates is None:
    args.updates = 500 if args.quick else 2000
  if args.repeats is None:
    args.repeats = 2 if args.quick else 3
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import common as C
  started, load0 = time.perf_counter(), C.loadavg()
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from fedasync_jax import (client, delays, executor, models, rules,
                            scheduler, staleness, sweep, synthetic)

  fed = synthetic.synthetic(1.0, 1.0, num_clients=args.clients, seed=0,
                            mean_examples=40, min_examples=10,
                            size_sigma=1.0)
  ds = fed.train
  model = models.logistic_regression(60, 10)
  params = model.init(jax.random.key(0))
  upd = client.local_update(model.loss, optax.sgd(0.01), batch_size=10,
                            max_examples=ds.max_count, epochs=1)
  speeds = delays.device_speeds("lognormal", ds.num_clients, sigma=1.0,
                                seed=0)
  sched = scheduler.asynchronous(
      delays.delay_model(speeds, ds.counts.astype(float)),
      num_updates=args.updates, concurrency=args.concurrency, seed=0)
  alphas = [0.2, 0.4, 0.6, 0.8]
  exps = [0.0, 0.5, 1.0, 2.0]
  grid_pairs = [(a, e) for a in alphas for e in exps]
  grid = {"alpha": jnp.asarray([a for a, _ in grid_pairs], jnp.float32),
          "a": jnp.asarray([e for _, e in grid_pairs], jnp.float32)}
  M = len(grid_pairs)
  key = jax.random.key(0)

  def make_rule(hp):
    return rules.fedasync(hp["alpha"], staleness.polynomial(hp["a"]))

  C.log(f"sweep: {M} members x {sched.num_arrivals} updates, "
        f"{ds.num_clients} clients (max {ds.max_count} examples, "
        f"{upd.num_steps} local steps)")

  def separate():
    t = time.perf_counter()
    finals = []
    for a, e in grid_pairs:
      out = executor.simulate(
          rules.fedasync(a, staleness.polynomial(e)), upd, params, ds,
          sched, key=key, width=args.width)
      finals.append(jax.device_get(out.state.params))
    return time.perf_counter() - t, finals

  def swept(batching):
    def run():
      t = time.perf_counter()
      outs = sweep.sweep(make_rule, grid, upd, params, ds, sched, keys=key,
                         batching=batching, width=args.width)
      return time.perf_counter() - t, [o.state.params for o in outs]
    return run

  systems = {"separate": separate, "sweep_map": swept("map"),
             "sweep_vmap": swept("vmap")}
  names = list(systems)
  runs = {k: [] for k in names}
  finals = {}
  for r in range(args.repeats):
    for name in names[r % len(names):] + names[:r % len(names)]:
      wall, fin = systems[name]()
      runs[name].append({"wall_s": wall, "loadavg": C.loadavg(),
                         "member_updates_per_s":
                             M * sched.num_arrivals / wall})
      finals[name] = fin
      C.log(f"  repeat {r + 1}/{args.repeats} {name}: {wall:.1f} s "
            f"({M * sched.num_arrivals / wall:.0f} member-updates/s), load "
            f"{C.loadavg()}")

  def rel(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(la, lb)) / max(
                   float(np.max(np.abs(np.asarray(y)))) for y in lb)
  agree = {k: max(rel(finals[k][m], finals["separate"][m])
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
      "config": {"data": "synthetic(1,1) 100 clients, sizes min 10 mean 40 "
                         "sigma 1", "model": "logistic_regression(60, 10)",
                 "client": "1 epoch, batch 10, sgd 0.01",
                 "grid": {"alpha": alphas, "polynomial_a": exps},
                 "members": M, "updates_per_member": sched.num_arrivals,
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
  C.finish("sweep_bench", result, quick=args.quick, started=started,
           load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
