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

Usage:
  python benchmarks/compile_cache.py [--quick]
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


def worker(updates, cache_dir):
  import common as C
  import jax
  if cache_dir:
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  import optax
  from fedasync_jax import (client, executor, models, rules, scheduler,
                            staleness)
  ds, _, _ = C.w1_data(C.DEFAULT_MNIST)
  model = models.mlp()
  params = model.init(jax.random.key(0))
  upd = client.local_update(model.loss, optax.sgd(0.05), batch_size=10,
                            max_examples=ds.max_count, epochs=1)
  sched = scheduler.asynchronous(C.w1_delay_model(ds), num_updates=updates,
                                 concurrency=100, seed=0)
  res, _ = C.simulate_timed(executor, rules.fedasync(
      0.6, staleness.polynomial(0.5)), upd, params, ds, sched,
      jax.random.key(0))
  res["loadavg"] = C.loadavg()
  return res


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = ap.parse_args(sys.argv[1:] if argv is None else argv)
  sys.path.insert(0, HERE)
  if args.updates is None:
    args.updates = 1000 if args.quick else 5000
  if args.repeats is None:
    args.repeats = 1 if args.quick else 3
  if args.worker is not None:
    print("RESULT " + json.dumps(worker(args.updates, args.worker)))
    return 0
  import common as C
  if C.skip_if_no_mnist(C.DEFAULT_MNIST, "compile_cache"):
    return 0
  started, load0 = time.perf_counter(), C.loadavg()
  runs = {"no_cache": [], "cache_cold": [], "cache_warm": []}
  for r in range(args.repeats):
    with tempfile.TemporaryDirectory() as d:
      for name, cache in (("no_cache", ""), ("cache_cold", d),
                          ("cache_warm", d)):
        p = subprocess.run([sys.executable, os.path.abspath(__file__),
                            "--worker", cache, "--updates",
                            str(args.updates)], capture_output=True,
                           text=True)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        res = json.loads(line[-1][7:]) if line else {
            "error": p.stderr[-1500:]}
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
                    zip(runs["cache_warm"], runs["no_cache"])
                    if "error" not in w and "error" not in n])
  C.finish("compile_cache", {
      "workload": "W1 (library defaults)", "updates": args.updates,
      "summary": summary, "warm_cache_vs_no_cache_end_to_end": ratio,
      "samples": runs,
      "method": "fresh subprocess per run; no_cache, cache_cold and "
                "cache_warm in that order per repeat, a new cache "
                "directory per repeat"}, quick=args.quick, started=started,
      load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
