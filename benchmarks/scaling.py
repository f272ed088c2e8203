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

The pair also lists, per population, the fusions of the compiled client
update that XLA:CPU splits over its intra-op thread pool
(``outer_dimension_partitions`` in the HLO of ``jax.jit(update.update)``
on that population's arrays): the cause of the old 1e6 vs 1e3 gap, fixed
in ``client.py`` by gathering from the client's block (none should be
split at either size now). The one-off probes of that gap
(``scaling_probe_*.py``, ``scaling_gather_ab.py``, which patched a private
function of the library) were removed; their findings are recorded in
RESULTS_vs_pytorch.md, section 4.

Targets: 1e6 clients runs; peak RSS < 4 GB; updates/s at 1e6 within 20% of
the 1e3 figure; time per update flat in the population; memory bounded by
concurrency x params + data.

Recorded: ``results/scaling_2026-11-22T053529Z.json`` (the tables) by
``python benchmarks/scaling.py`` and ``results/scaling_2026-11-22T053650Z.json``
(the interleaved pair, 9 repeats) by
``python benchmarks/scaling.py --only-pair --pair-repeats 9``.

Usage:
  python benchmarks/scaling.py --only-pair   # just the interleaved pair
  python benchmarks/scaling.py            # 100k updates/point, 2 rounds
  python benchmarks/scaling.py --quick    # 20k updates/point, 1 round
  python benchmarks/scaling.py --smoke --out /tmp/x   # 1e2 and 1e3, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common as C  # noqa: E402

SMOKE_OUTPUT = "scaling_*_smoke.json"


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  C.add_output_args(ap)
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
  if args.smoke:  # one small population, the pair 1e2 vs 1e3, one round
    args.populations, args.concurrencies = "1000", ""
    args.pair, args.pair_repeats, args.runs = "100,1000", 1, 1
  if args.updates is None:
    args.updates = 2000 if args.smoke else 20000 if args.quick else 100000
  if args.rounds is None:
    args.rounds = 1 if args.quick or args.smoke else 2
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


def make_population(args, population, *, rows_of=None):
  """A ``ClientDataset`` of ``population`` clients with ``--examples``
  rows each (a random linear teacher); ``rows_of``: make the clients point
  into the example array of a ``rows_of``-client population instead."""
  import numpy as np
  from fedasync_jax import data
  rng = np.random.default_rng(0)
  n_rows = (rows_of or population) * args.examples
  x = rng.standard_normal((n_rows, args.dim), dtype=np.float32)
  teacher = rng.standard_normal((args.dim, 10)).astype(np.float32)
  y = np.argmax(x @ teacher, axis=1).astype(np.int32)
  counts = np.full(population, args.examples, np.int64)
  ids = np.arange(population, dtype=np.int64)
  offsets = (ids % rows_of if rows_of else ids) * args.examples
  return data.ClientDataset(x, y, offsets, counts)


def make_schedule(args, counts, concurrency):
  from fedasync_jax import delays, scheduler
  speeds = delays.device_speeds("lognormal", len(counts), sigma=1.0, seed=0)
  return scheduler.asynchronous(
      delays.delay_model(speeds, counts.astype(float)),
      num_updates=args.updates, concurrency=concurrency, seed=0)


def split_fusions(upd, params, ds):
  """The fusions of the compiled client update that XLA:CPU splits over
  its intra-op thread pool (their ``outer_dimension_partitions``), on this
  population's example arrays."""
  import re
  import jax
  import jax.numpy as jnp
  from fedasync_jax import ClientHParams, ClientRef
  ref = ClientRef(jnp.asarray(ds.x), jnp.asarray(ds.y), jnp.int32(0),
                  jnp.int32(int(ds.counts[0])))
  txt = jax.jit(upd.update).lower(
      params, ref, jax.random.key(0),
      ClientHParams(jnp.float32(1), jnp.float32(0))).compile().as_text()
  found = re.findall(r'outer_dimension_partitions":\[([^\]]*)\]', txt)
  return [m for m in found if m.strip()]  # [] = nothing split


def worker(args, population, concurrency):
  """One point in a fresh process: data, schedule, ``--runs`` simulate
  calls; peak RSS and the sizes that should bound it."""
  import resource
  t_start = time.perf_counter()
  import jax
  import numpy as np
  from fedasync_jax import executor
  rss_imports = C.peak_rss_mb()
  t = time.perf_counter()
  ds = make_population(args, population)
  data_s = time.perf_counter() - t
  params, upd, rule = model_update_rule(args)
  t = time.perf_counter()
  sched = make_schedule(args, ds.counts, concurrency)
  sched_s = time.perf_counter() - t
  runs = []
  for _ in range(args.runs):
    res, out = C.simulate_timed(executor, rule, upd, params, ds, sched,
                                jax.random.key(0), width=args.width)
    res.update({k: out.stats.get(k) for k in (
        "plan_time_s", "result_slots", "snapshot_slots")})
    runs.append(res)
  param_bytes = sum(int(np.asarray(p).nbytes)
                    for p in jax.tree.leaves(params))
  last = runs[-1]
  return {
      "population": population, "concurrency": concurrency,
      "updates": sched.num_arrivals,
      **{k: C.median([r[f] for r in runs]) for k, f in (
          ("steady_updates_per_s", "steady_updates_per_s"),
          ("updates_per_s_end_to_end", "updates_per_s"),
          ("compile_s", "compile_s"))},
      "runs": runs, "data_gen_s": data_s, "schedule_s": sched_s,
      "realised_concurrency": sched.stats["realised_concurrency"],
      "peak_rss_mb": C.peak_rss_mb(), "rss_after_imports_mb": rss_imports,
      "data_mb": sum(a.nbytes for a in (ds.x, ds.y, ds.offsets, ds.counts))
      / 2**20,
      "param_bytes": param_bytes,
      "slot_buffers_mb": (((last["result_slots"] or 0) + 1) * 2
                          + ((last["snapshot_slots"] or 0) + 1))
      * param_bytes / 2**20,
      "width": last["width"], "batching": last["batching"],
      "padding_waste": last["padding_waste"],
      "maxrss_raw": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      "subprocess_s": time.perf_counter() - t_start,
      "loadavg": C.loadavg(),
  }


def pair_worker(args):
  """Two populations, same everything else, simulate calls alternated in
  one process; returns the rates, the per-repeat paired ratios and the
  split fusions of the client update on each population's arrays.

  The third setup, ``<large>_shared_rows``, is the large population whose
  clients all point into the small population's example array (same
  schedule and offsets/counts sizes, small data): it separates
  population-size costs of the simulator from memory effects of a large
  data array."""
  import jax
  from fedasync_jax import executor
  pops = [int(float(v)) for v in args.pair.split(",")]
  params, upd, rule = model_update_rule(args)
  setups = {}
  for name, pop, rows_of in ((str(pops[0]), pops[0], None),
                             (str(pops[1]), pops[1], None),
                             (f"{pops[1]}_shared_rows", pops[1], pops[0])):
    ds = make_population(args, pop, rows_of=rows_of)
    setups[name] = (ds, make_schedule(args, ds.counts, args.pop_concurrency))
  names = list(setups)
  splits = {n: split_fusions(upd, params, setups[n][0]) for n in names[:2]}
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
          "split_fusions_in_client_update": splits,
          "loadavg": C.loadavg()}


def subprocess_result(cmd):
  """Runs ``cmd`` and returns the JSON after its ``RESULT `` line (or an
  error record), plus its stderr."""
  proc = subprocess.run(cmd, capture_output=True, text=True)
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if line:
    return json.loads(line[-1][7:]), proc.stderr
  return {"error": f"rc={proc.returncode}",
          "stderr_tail": proc.stderr[-1500:]}, proc.stderr


def worker_cmd(args, *extra):
  cmd = [sys.executable, os.path.abspath(__file__), *extra, "--updates",
         str(args.updates), "--examples", str(args.examples), "--dim",
         str(args.dim), "--runs", str(args.runs), "--pop-concurrency",
         str(args.pop_concurrency)]
  return cmd + (["--width", str(args.width)] if args.width else [])


def run_points(args, points):
  """Every point in a fresh subprocess, ``--rounds`` times in alternating
  order; returns the samples per point."""
  results = {pt: [] for pt in points}
  for r in range(args.rounds):
    for kind, p, c in (points if r % 2 == 0 else points[::-1]):
      t = time.perf_counter()
      res, _ = subprocess_result(worker_cmd(args, "--worker", f"{p},{c}"))
      res.update(population=p, concurrency=c,
                 wall_s=time.perf_counter() - t)
      results[(kind, p, c)].append(res)
      C.log(f"  round {r + 1} {kind} P={p} C={c}: "
            + (f"{res['steady_updates_per_s']:.0f} updates/s steady, "
               f"{res['updates_per_s_end_to_end']:.0f} end to end, peak "
               f"RSS {res['peak_rss_mb']:.0f} MiB (data "
               f"{res['data_mb']:.0f} MiB), schedule "
               f"{res['schedule_s']:.1f} s, load {res['loadavg']}"
               if "error" not in res else res["error"]))
  return results


def aggregate(rows):
  """Medians over the rounds of one point."""
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


def run_pair(args):
  C.log(f"  interleaved pair {args.pair} in one process")
  res, err = subprocess_result(worker_cmd(
      args, "--pair-worker", "--pair", args.pair, "--pair-repeats",
      str(args.pair_repeats)))
  for l in err.splitlines():
    if l.startswith("    pair"):
      C.log(l)
  return res


def checks_of(pop_rows, points, pair):
  """The targets: 1e6 runs, peak RSS < 4 GB, 1e6 within 20% of 1e3."""
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
  return checks


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.pair_worker:
    print("RESULT " + json.dumps(pair_worker(args)))
    return 0
  if args.worker:
    pop, conc = (int(v) for v in args.worker.split(","))
    print("RESULT " + json.dumps(worker(args, pop, conc)))
    return 0
  started, load0 = time.perf_counter(), C.loadavg()
  pops = [int(float(v)) for v in args.populations.split(",") if v]
  concs = [int(v) for v in args.concurrencies.split(",") if v]
  points = [("population", p, min(args.pop_concurrency, p)) for p in pops]
  points += [("concurrency", args.conc_population, c) for c in concs]
  if args.only_pair:
    points = []
  results = run_points(args, points)
  table = {kind: [] for kind in ("population", "concurrency")}
  for (kind, p, c), rows in results.items():
    table[kind].append(aggregate(rows))
  pop_rows = {r["population"]: r for r in table["population"]
              if "error" not in r}
  pair = run_pair(args) if args.pair else None
  result = {"config": {"examples_per_client": args.examples,
                       "dim": args.dim, "model": "logistic_regression",
                       "updates_per_point": args.updates,
                       "pop_concurrency": args.pop_concurrency,
                       "conc_population": args.conc_population,
                       "runs_per_point": args.runs, "rounds": args.rounds,
                       "width": args.width or "library default"},
            "table": table, "checks": checks_of(pop_rows, points, pair),
            "interleaved_pair": pair,
            "samples": [dict(kind=k, rows=v) for (k, _, _), v in
                        results.items()],
            "target": "1e6 clients runs, peak RSS < 4 GB, steady updates/s "
                      "within 20% of 1e3",
            "method": "fresh subprocess per point; peak RSS = ru_maxrss of "
                      "that subprocess; medians over rounds (and over the "
                      "simulate calls inside a subprocess)"}
  C.finish("scaling", result, args=args, started=started, load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
