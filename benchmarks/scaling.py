#!/usr/bin/env python
"""Scaling: updates/s and peak memory against population size and concurrency.

Workload: every client holds ``--examples`` (default 4) examples of a
``--dim`` (16) feature, 10-class problem (numpy, a random linear teacher);
logistic regression (170 parameters), 1 local epoch, batch 4, SGD 0.1;
FedAsync alpha 0.6, polynomial(0.5); lognormal speeds (sigma 1), work =
example counts; ``--updates`` (100,000; enough for a steady rate to be measurable:
the logistic-regression update costs ~10 us) client updates per point.

* population sweep: 1e2, 1e3, 1e4, 1e5, 1e6 clients at concurrency
  ``--pop-concurrency`` (50);
* concurrency sweep: 1, 10, 100, 1000 in flight at 1e4 clients.

Every point runs in a FRESH subprocess (so peak RSS, ``ru_maxrss``, is that
point's alone) which builds the data, draws the schedule, and calls
``executor.simulate`` as a user does (library defaults) ``--runs`` times;
it reports the steady updates/s (chunks after the first, median over
runs), the end-to-end rate, the schedule and plan time, the peak RSS, the
RSS after imports (the interpreter + JAX baseline) and the sizes that
should bound memory: data bytes and (result slots + snapshot slots) x
parameter bytes. The whole sweep is repeated ``--rounds`` times in
alternating order and medians are reported.

Then ``--pair`` (1e3 vs 1e6) runs interleaved in ONE process (paired
ratios, immune to load drift between subprocesses), with a control: the
1e6 population whose clients all point into the 1e3 population's small
example array (``_shared_rows``), which separates costs of the simulator
that grow with the population (schedule, plan, offsets/counts) from
memory effects of a large, randomly accessed example array.

Probes of the 1e6 vs 1e3 gap (RESULTS_issue6.md, section 4):
``scaling_probe_chunk.py`` (same compiled chunk, large vs small array, and
its HLO), ``scaling_probe_threshold.py`` (the 512 KiB gather-split
threshold), ``scaling_gather_ab.py`` (old whole-array gather vs
``client._client_rows``, interleaved), ``scaling_probe_identity.py`` and
``scaling_probe_w1.py`` (bit-identity; no W1 regression).

Targets: 1e6 clients runs; peak RSS < 4 GB; updates/s at 1e6 within 20% of
the 1e3 figure; time per update flat in the population; memory bounded by
concurrency x params + data.

Usage:
  python benchmarks/scaling.py --only-pair   # just the interleaved pair
  python benchmarks/scaling.py            # 100k updates/point, 2 rounds
  python benchmarks/scaling.py --quick    # 20k updates/point, 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--examples", type=int, default=4)
  ap.add_argument("--dim", type=int, default=16)
  ap.add_argument("--populations", default="100,1000,10000,100000,1000000")
  ap.add_argument("--pop-concurrency", type=int, default=50)
  ap.add_argument("--concurrencies", default="1,10,100,1000")
  ap.add_argument("--conc-population", type=int, default=10000)
  ap.add_argument("--runs", type=int, default=2,
                  help="executor.simulate calls per subprocess")
  ap.add_argument("--rounds", type=int, default=None,
                  help="repeats of the whole sweep (alternating order)")
  ap.add_argument("--width", type=int, default=None)
  ap.add_argument("--pair", default="1000,1000000",
                  help="populations compared interleaved in ONE process "
                  "(paired ratio, immune to load drift between points)")
  ap.add_argument("--pair-repeats", type=int, default=3)
  ap.add_argument("--only-pair", action="store_true",
                  help="run only the interleaved pair comparison")
  ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  ap.add_argument("--pair-worker", action="store_true",
                  help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.updates is None:
    args.updates = 20000 if args.quick else 100000
  if args.rounds is None:
    args.rounds = 1 if args.quick else 2
  return args


def model_update_rule(args):
  """Logistic regression (``--dim`` -> 10), its client update (one epoch
  of the client's ``--examples`` examples, SGD 0.1) and FedAsync: the
  initial parameters, the update and the rule."""
  import jax
  import optax
  from fedasync_jax import client, models, rules, staleness
  model = models.logistic_regression(args.dim, 10)
  upd = client.local_update(model.loss, optax.sgd(0.1),
                            batch_size=args.examples,
                            max_examples=args.examples, epochs=1)
  return (model.init(jax.random.key(0)), upd,
          rules.fedasync(0.6, staleness.polynomial(0.5)))


def worker(args, population, concurrency):
  import resource
  t_start = time.perf_counter()
  import common as C
  import jax
  import numpy as np
  from fedasync_jax import data, delays, executor, scheduler
  rss_imports = C.peak_rss_mb()
  t = time.perf_counter()
  rng = np.random.default_rng(0)
  n_ex = population * args.examples
  x = rng.standard_normal((n_ex, args.dim), dtype=np.float32)
  teacher = rng.standard_normal((args.dim, 10)).astype(np.float32)
  y = np.argmax(x @ teacher, axis=1).astype(np.int32)
  counts = np.full(population, args.examples, np.int64)
  offsets = np.arange(population, dtype=np.int64) * args.examples
  ds = data.ClientDataset(x, y, offsets, counts)
  data_s = time.perf_counter() - t
  params, upd, rule = model_update_rule(args)
  t = time.perf_counter()
  speeds = delays.device_speeds("lognormal", population, sigma=1.0, seed=0)
  sched = scheduler.asynchronous(
      delays.delay_model(speeds, counts.astype(float)),
      num_updates=args.updates, concurrency=concurrency, seed=0)
  sched_s = time.perf_counter() - t
  runs = []
  for _ in range(args.runs):
    res, out = C.simulate_timed(executor, rule, upd, params, ds, sched,
                                jax.random.key(0), width=args.width)
    res["plan_time_s"] = out.stats["plan_time_s"]
    res["result_slots"] = out.stats["result_slots"]
    res["snapshot_slots"] = out.stats["snapshot_slots"]
    runs.append(res)
  param_bytes = sum(int(np.asarray(p).nbytes)
                    for p in jax.tree.leaves(params))
  last = runs[-1]
  return {
      "population": population, "concurrency": concurrency,
      "updates": sched.num_arrivals,
      "steady_updates_per_s": C.median([r["steady_updates_per_s"]
                                        for r in runs]),
      "updates_per_s_end_to_end": C.median([r["updates_per_s"]
                                            for r in runs]),
      "compile_s": C.median([r["compile_s"] for r in runs]),
      "runs": runs, "data_gen_s": data_s, "schedule_s": sched_s,
      "realised_concurrency": sched.stats["realised_concurrency"],
      "peak_rss_mb": C.peak_rss_mb(), "rss_after_imports_mb": rss_imports,
      "data_mb": (x.nbytes + y.nbytes + offsets.nbytes + counts.nbytes)
      / 2**20,
      "param_bytes": param_bytes,
      "slot_buffers_mb": ((last["result_slots"] + 1) * 2
                          + (last["snapshot_slots"] + 1)) * param_bytes
      / 2**20,
      "width": last["width"], "batching": last["batching"],
      "padding_waste": last["padding_waste"],
      "maxrss_raw": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      "subprocess_s": time.perf_counter() - t_start,
      "loadavg": C.loadavg(),
  }


def pair_worker(args):
  """Two populations, same everything else, simulate calls alternated in
  one process; returns the rates and the per-repeat paired ratios."""
  import common as C
  import jax
  import numpy as np
  from fedasync_jax import data, delays, executor, scheduler
  pops = [int(float(v)) for v in args.pair.split(",")]
  params, upd, rule = model_update_rule(args)
  setups = {}
  small_rows = pops[0] * args.examples
  for name, pop, shared in ((str(pops[0]), pops[0], False),
                            (str(pops[1]), pops[1], False),
                            (f"{pops[1]}_shared_rows", pops[1], True)):
    # shared=True: the large population's clients all point into the
    # small population's example array (same schedule and offsets/counts
    # sizes as the large one, small data): separates population-size
    # costs of the simulator from memory effects of a large data array.
    rng = np.random.default_rng(0)
    n_rows = small_rows if shared else pop * args.examples
    x = rng.standard_normal((n_rows, args.dim), dtype=np.float32)
    y = np.argmax(x @ rng.standard_normal((args.dim, 10)).astype(
        np.float32), axis=1).astype(np.int32)
    counts = np.full(pop, args.examples, np.int64)
    offsets = (np.arange(pop, dtype=np.int64) % pops[0] if shared
               else np.arange(pop, dtype=np.int64)) * args.examples
    ds = data.ClientDataset(x, y, offsets, counts)
    sched = scheduler.asynchronous(
        delays.delay_model(delays.device_speeds("lognormal", pop, sigma=1.0,
                                                seed=0),
                           counts.astype(float)),
        num_updates=args.updates, concurrency=args.pop_concurrency, seed=0)
    setups[name] = (ds, sched)
  names = list(setups)
  rates = {k: [] for k in names}
  for r in range(args.pair_repeats):
    for name in names[r % 3:] + names[:r % 3]:
      ds, sched = setups[name]
      res, _ = C.simulate_timed(executor, rule, upd, params, ds, sched,
                                jax.random.key(0), width=args.width)
      rates[name].append(res["steady_updates_per_s"])
      C.log(f"    pair repeat {r + 1} P={name}: "
            f"{res['steady_updates_per_s']:.0f} updates/s steady, load "
            f"{C.loadavg()}")
  a, b, c = names
  return {"populations": pops, "steady_updates_per_s": rates,
          "paired_ratio_second_over_first": C.median(
              [y / x for x, y in zip(rates[a], rates[b])]),
          "paired_ratio_shared_rows_over_first": C.median(
              [y / x for x, y in zip(rates[a], rates[c])]),
          "loadavg": C.loadavg()}


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  sys.path.insert(0, HERE)
  if args.pair_worker:
    print("RESULT " + json.dumps(pair_worker(args)))
    return 0
  if args.worker:
    pop, conc = (int(v) for v in args.worker.split(","))
    print("RESULT " + json.dumps(worker(args, pop, conc)))
    return 0
  import common as C
  started, load0 = time.perf_counter(), C.loadavg()
  pops = [int(float(v)) for v in args.populations.split(",")]
  concs = [int(v) for v in args.concurrencies.split(",")]
  points = [("population", p, min(args.pop_concurrency, p)) for p in pops]
  points += [("concurrency", args.conc_population, c) for c in concs]
  if args.only_pair:
    points = []
  results = {(kind, p, c): [] for kind, p, c in points}
  for r in range(args.rounds):
    order = points if r % 2 == 0 else points[::-1]
    for kind, p, c in order:
      cmd = [sys.executable, os.path.abspath(__file__), "--worker",
             f"{p},{c}", "--updates", str(args.updates), "--examples",
             str(args.examples), "--dim", str(args.dim), "--runs",
             str(args.runs)]
      if args.width:
        cmd += ["--width", str(args.width)]
      t = time.perf_counter()
      proc = subprocess.run(cmd, capture_output=True, text=True)
      line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
      if not line:
        res = {"population": p, "concurrency": c, "error":
               f"rc={proc.returncode}", "stderr_tail": proc.stderr[-1500:]}
      else:
        res = json.loads(line[-1][7:])
      res["wall_s"] = time.perf_counter() - t
      results[(kind, p, c)].append(res)
      C.log(f"  round {r + 1} {kind} P={p} C={c}: "
            + (f"{res['steady_updates_per_s']:.0f} updates/s steady, "
               f"{res['updates_per_s_end_to_end']:.0f} end to end, peak "
               f"RSS {res['peak_rss_mb']:.0f} MiB (data "
               f"{res['data_mb']:.0f} MiB), schedule "
               f"{res['schedule_s']:.1f} s, load {res['loadavg']}"
               if "error" not in res else res["error"]))

  def agg(rows):
    ok = [x for x in rows if "error" not in x]
    if not ok:
      return {"error": rows[-1].get("error"),
              "stderr_tail": rows[-1].get("stderr_tail")}
    out = {k: C.median([x[k] for x in ok]) for k in (
        "steady_updates_per_s", "updates_per_s_end_to_end", "compile_s",
        "peak_rss_mb", "rss_after_imports_mb", "data_mb", "slot_buffers_mb",
        "schedule_s", "data_gen_s", "realised_concurrency")}
    out["us_per_update_steady"] = 1e6 / out["steady_updates_per_s"]
    out.update({k: ok[0][k] for k in ("population", "concurrency", "width",
                                      "batching", "param_bytes",
                                      "padding_waste")})
    return out
  table = {kind: [] for kind in ("population", "concurrency")}
  for (kind, p, c), rows in results.items():
    table[kind].append(agg(rows))
  pop_rows = {r["population"]: r for r in table["population"]
              if "error" not in r}
  pair = None
  if args.pair:
    cmd = [sys.executable, os.path.abspath(__file__), "--pair-worker",
           "--pair", args.pair, "--pair-repeats", str(args.pair_repeats),
           "--updates", str(args.updates), "--examples", str(args.examples),
           "--dim", str(args.dim), "--pop-concurrency",
           str(args.pop_concurrency)]
    if args.width:
      cmd += ["--width", str(args.width)]
    C.log(f"  interleaved pair {args.pair} in one process")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for l in proc.stderr.splitlines():
      if l.startswith("    pair"):
        C.log(l)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    pair = (json.loads(line[-1][7:]) if line else
            {"error": proc.stderr[-1500:]})
  checks = {}
  if 1000 in pop_rows and 1000000 in pop_rows:
    a, b = pop_rows[1000], pop_rows[1000000]
    checks = {
        "1e6_runs": True,
        "1e6_peak_rss_mb": b["peak_rss_mb"],
        "1e6_peak_rss_under_4GB": b["peak_rss_mb"] < 4096,
        "1e6_vs_1e3_steady": b["steady_updates_per_s"]
        / a["steady_updates_per_s"],
        "1e6_vs_1e3_end_to_end": b["updates_per_s_end_to_end"]
        / a["updates_per_s_end_to_end"],
        "within_20pct_steady": b["steady_updates_per_s"]
        >= 0.8 * a["steady_updates_per_s"],
    }
  elif 1000000 in [p for _, p, _ in points]:
    checks = {"1e6_runs": 1000000 in pop_rows}
  if pair and "paired_ratio_second_over_first" in pair:
    r = pair["paired_ratio_second_over_first"]
    checks[f"steady_ratio_{pair['populations'][1]}_vs_"
           f"{pair['populations'][0]}_interleaved"] = r
    checks["within_20pct_interleaved"] = r >= 0.8
    checks["shared_rows_control_ratio"] = pair.get(
        "paired_ratio_shared_rows_over_first")
  result = {"config": {"examples_per_client": args.examples,
                       "dim": args.dim, "model": "logistic_regression",
                       "updates_per_point": args.updates,
                       "pop_concurrency": args.pop_concurrency,
                       "conc_population": args.conc_population,
                       "runs_per_point": args.runs, "rounds": args.rounds,
                       "width": args.width or "library default"},
            "table": table, "checks": checks, "interleaved_pair": pair,
            "samples": [dict(kind=k, rows=v) for (k, _, _), v in
                        results.items()],
            "target": "1e6 clients runs, peak RSS < 4 GB, steady updates/s "
                      "within 20% of 1e3",
            "method": "fresh subprocess per point; peak RSS = ru_maxrss of "
                      "that subprocess; medians over rounds (and over the "
                      "simulate calls inside a subprocess)"}
  C.finish("scaling", result, quick=args.quick, started=started,
           load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
