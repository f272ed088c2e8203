#!/usr/bin/env python
"""Compilation share of a W1 run, and what JAX's persistent cache saves.

``executor.simulate`` compiles its chunk program on every call (the rule's
hyperparameters are closure constants and the program is built per call),
about 1.5-2 s here: a quarter of the end-to-end time of a 5000-update W1
run. JAX's persistent compilation cache (``jax_compilation_cache_dir``)
keeps compiled programs on disk across processes. This runs W1 with
``--updates`` (5000) client updates in fresh subprocesses, alternating:

* ``no_cache``: the default;
* ``cache_cold``: a new, empty cache directory (compiles and writes);
* ``cache_warm``: the same directory again (reads).

and reports end-to-end updates/s, the steady rate and the compile
estimate of each (medians over ``--repeats``).

Recorded: ``results/compile_cache_2026-11-22T041136Z.json`` by
``python benchmarks/compile_cache.py``.

Usage:
  python benchmarks/compile_cache.py [--quick]
  python benchmarks/compile_cache.py --smoke --out /tmp/x   # 20 clients
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common as C  # noqa: E402

SMOKE_OUTPUT = "compile_cache_*_smoke.json"
SYSTEMS = ("no_cache", "cache_cold", "cache_warm")


def worker(args):
  """One W1 run (library defaults) in this fresh process, with JAX's
  persistent cache in ``args.worker`` ('' = off)."""
  import jax
  if args.worker:
    jax.config.update("jax_compilation_cache_dir", args.worker)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  from fedasync_jax import executor, scheduler
  ds, _, _ = C.w1_data(args.data, args.clients)
  _, params, upd, rule, key = C.w1_pieces(ds)
  sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                 num_updates=args.updates,
                                 concurrency=args.concurrency, seed=0)
  res, _ = C.simulate_timed(executor, rule, upd, params, ds, sched, key,
                            chunk_steps=args.chunk_steps)
  res["loadavg"] = C.loadavg()
  return res


def run_worker(args, cache):
  """One fresh subprocess; its result (or an error record)."""
  p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                      cache, "--updates", str(args.updates), "--data",
                      str(args.data), "--clients", str(args.clients),
                      "--concurrency", str(args.concurrency),
                      "--chunk-steps", str(args.chunk_steps)],
                     capture_output=True, text=True)
  line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
  return json.loads(line[-1][7:]) if line else {"error": p.stderr[-1500:]}


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  C.add_output_args(ap)
  ap.add_argument("--data", default=None, help="path of mnist.npz")
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--clients", type=int, default=None, help=argparse.SUPPRESS)
  ap.add_argument("--concurrency", type=int, default=None,
                  help=argparse.SUPPRESS)
  ap.add_argument("--chunk-steps", type=int, default=None,
                  help=argparse.SUPPRESS)
  ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  args.chunk_steps = args.chunk_steps or (16 if args.smoke else 64)
  # --smoke: the cache's two runs only (every run is a fresh process).
  args.systems = SYSTEMS[1:] if args.smoke else SYSTEMS
  w1 = C.W1_SMOKE if args.smoke else C.W1
  args.clients = args.clients or w1["num_clients"]
  args.concurrency = args.concurrency or w1["concurrency"]
  if args.updates is None:
    args.updates = (w1["num_updates"] if args.smoke else
                    1000 if args.quick else 5000)
  if args.repeats is None:
    args.repeats = 1 if args.quick or args.smoke else 3
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.worker is not None:
    print("RESULT " + json.dumps(worker(args)))
    return 0
  args.data = C.mnist_path(args, C.out_dir(args) if args.smoke else None)
  if C.skip_if_no_mnist(args.data, "compile_cache"):
    return 0
  started, load0 = time.perf_counter(), C.loadavg()
  runs = {k: [] for k in args.systems}
  for r in range(args.repeats):
    with tempfile.TemporaryDirectory() as d:
      for name in args.systems:
        cache = d if name.startswith("cache") else ""
        res = run_worker(args, cache)
        runs[name].append(res)
        C.log(f"  repeat {r + 1} {name}: " + (
            f"{res['updates_per_s']:.0f} updates/s end to end, steady "
            f"{res['steady_updates_per_s']:.0f}, compile "
            f"{res['compile_s']:.2f} s, load {res['loadavg']}"
            if "error" not in res else res["error"]))
  summary = {k: {f: C.median([x[f] for x in v if f in x]) for f in (
      "updates_per_s", "steady_updates_per_s", "compile_s", "wall_s")}
      for k, v in runs.items()}
  ratio = C.median([w["updates_per_s"] / n["updates_per_s"] for w, n in
                    zip(runs["cache_warm"], runs.get("no_cache", []))
                    if "error" not in w and "error" not in n])
  C.finish("compile_cache", {
      "workload": "W1 (library defaults)", "updates": args.updates,
      "clients": args.clients, "summary": summary,
      "warm_cache_vs_no_cache_end_to_end": ratio, "samples": runs,
      "method": "fresh subprocess per run; no_cache, cache_cold and "
                "cache_warm in that order per repeat, a new cache "
                "directory per repeat"}, args=args, started=started,
      load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
