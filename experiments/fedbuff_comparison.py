"""Experiment 7: FedBuff, FedAsync and FedAvgM at concurrency 10, 100, 1000.

The comparison of "Federated Learning with Buffered Asynchronous
Aggregation" (Nguyen et al., AISTATS 2022, arXiv:2106.06639): client
updates AND simulated time to a target test accuracy for

* FedBuff (the paper's method): K = 10 arrivals per server step, server SGD
  lr 1 (the plain mean of the buffered deltas), polynomial staleness
  weight (1 + tau)^-0.5;
* FedAsync (Xie, Koyejo, Gupta 2019, "Asynchronous Federated
  Optimization", arXiv:1903.03934): alpha 0.6, the same staleness weight;
* FedAvgM: synchronous FedAvg (McMahan et al. 2017, arXiv:1602.05629) with
  server momentum (Hsu, Qi, Brown 2019, "Measuring the Effects of
  Non-Identical Data Distribution for Federated Visual Classification",
  arXiv:1909.06335), its server lr x momentum tuned on a grid on one seed
  that is not among the seeds compared; then also run with a round
  deadline and with over-selection ("Towards Federated Learning at Scale",
  Bonawitz et al. 2019, arXiv:1902.01046), the production fixes for
  stragglers that the plain barrier lacks;

at ``C`` = 10, 100 and 1000 clients at work (asynchronous: ``C`` in
flight; FedAvgM: cohorts of ``C``). Setting: MNIST over 3000 clients,
Dirichlet(0.5) labels (2..70 examples per client, mean 20), the
784-200-200-10 MLP, one local epoch of SGD (lr 0.05, batch 10); device
speeds lognormal (median 1 s per example, sigma 1) with exponential
per-task jitter. Every seed draws its own device speeds, initial model,
selections and task durations; the methods run under one seed share its
device speeds and initial model, so ratios between methods are paired by
seed. Runs stop once every member of
their sweep has reached the target; a run that does not reach it within
its budget of client updates is reported as censored, never dropped.
Means come with Student t 95% intervals over seeds; ratios are geometric
means of the per-seed ratios with t intervals on their logarithms.

Seeds run together as members of one compiled program
(``fedasync_jax.sweep.sweep``), split over the CPU's cores
(``jax_num_cpu_devices``, one member after another on each core).

The fixed setting, the paper's numbers, the runs, the statistics and the
figures and text are in ``fedbuff_setting.py``,
``fedbuff_paper_numbers.py``, ``fedbuff_runs.py``, ``fedbuff_stats.py`` and
``fedbuff_report.py``; this script holds the command line, the devices and
the estimate of ``--full``.

Recorded (experiments/results/fedbuff_comparison/): ``python
experiments/fedbuff_comparison.py --out
experiments/results/fedbuff_comparison``. ``--quick``: 2 seeds, target
85%, half budgets. ``--full``: 10 seeds, a 15-point grid and the deadline
with over-selection together (estimate in the summary). ``--smoke``: 40
clients of generated images, concurrency 4, 2 seeds, 50 updates (FedAvgM's
rounds end between two evaluations, so the final one is exercised), FedBuff
and FedAvgM with a deadline only, written to ``--out``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from fedbuff_report import (  # noqa: E402
    claims_table, figures, summary_markdown, tables)
from fedbuff_runs import Env, compare, tune  # noqa: E402
from fedbuff_setting import (  # noqa: E402
    FULL_SERVER_LRS, MOMENTA, SERVER_LRS, VARIANTS)
from fedbuff_stats import aggregate  # noqa: E402

SMOKE_OUTPUT = "summary.md"
NAME = "fedbuff_comparison"


# ---------------------------------------------------------------------------
# Command line and devices.


def parse_args(argv):
  p = common.base_parser(__doc__.splitlines()[0])
  p.add_argument("--full", action="store_true",
                 help="10 seeds, server lr {0.5,1,2,4,8} x momentum "
                      "{0,0.5,0.9}, and FedAvgM with deadline and "
                      "over-selection together")
  p.add_argument("--concurrency", type=common.positive_int_list,
                 default=None, help="comma-separated (default 10,100,1000)")
  p.add_argument("--seeds", type=common.int_list, default=None,
                 help="seeds compared (default 1..6; quick 1,2; full 1..10)")
  p.add_argument("--tune-seed", type=common.non_negative_int, default=0,
                 help="the seed FedAvgM's grid is tuned on (default 0, "
                      "not among the seeds compared)")
  p.add_argument("--target", type=common.number(0, 1, low_open=True),
                 default=None,
                 help="target test accuracy (default 0.90; quick 0.85)")
  p.add_argument("--budgets", type=common.positive_ints, default=None,
                 help="client updates per run, one per concurrency "
                      "(default 10000,10000,30000; quick half)")
  p.add_argument("--server-lrs",
                 type=common.number_list(0, 1e18, low_open=True), default=None,
                 help="FedAvgM grid: server lrs (default 1,2,4)")
  p.add_argument("--momenta",
                 type=common.number_list(0, 1, high_open=True), default=None,
                 help="FedAvgM grid: server momenta (default 0,0.5,0.9)")
  p.add_argument("--variants", type=common.name_list, default=None,
                 help="comma-separated among " + ",".join(VARIANTS))
  p.add_argument("--clients", type=common.positive_int, default=None,
                 help="population size (default 3000)")
  p.add_argument("--lr", type=common.number(0, 1e18, low_open=True),
                 default=0.05, help="client SGD lr")
  p.add_argument("--devices", type=common.positive_int, default=None,
                 help="CPU devices the members are split over (default: "
                      "min(2, cores))")
  return common.parse(p, argv, resolve)


def resolve(args):
  """Fills in the defaults of ``--smoke`` / ``--quick`` / ``--full`` and
  checks them (``ValueError``)."""
  smoke, quick, full = args.smoke, args.quick, args.full
  args.concurrency = args.concurrency or ([4] if smoke else [10, 100, 1000])
  args.seeds = args.seeds or ([1, 2] if smoke or quick else
                              list(range(1, 11)) if full else
                              list(range(1, 7)))
  if args.tune_seed in args.seeds:
    raise ValueError("--tune-seed must not be among --seeds")
  args.target = args.target or (0.3 if smoke else 0.85 if quick else 0.90)
  args.eval_updates = 10 if smoke else None  # else 100, or 250 at C > 100
  args.budgets = args.budgets or [
      50 if smoke else max(10_000, 30 * c) // (2 if quick else 1)
      for c in args.concurrency]
  if len(args.budgets) != len(args.concurrency):
    raise ValueError("--budgets needs one value per concurrency")
  args.server_lrs = args.server_lrs or (
      [1.0] if smoke else list(FULL_SERVER_LRS if full else SERVER_LRS))
  args.momenta = args.momenta or ([0.0, 0.9] if smoke else list(MOMENTA))
  names = args.variants or (
      "fedbuff,fedavgm_deadline" if smoke else ",".join(VARIANTS) if full
      else "fedbuff,fedasync,fedavgm,fedavgm_deadline,fedavgm_oversel"
  ).split(",")
  unknown = [v for v in names if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown variants {unknown}; known: {list(VARIANTS)}")
  if "fedbuff" not in names:
    raise ValueError("--variants must include fedbuff (the ratios' "
                     "reference)")
  args.variants = names
  args.clients = args.clients or (40 if smoke else 3000)
  args.devices = args.devices or min(2, os.cpu_count() or 1)


LENGTH_OPTIONS = {"--concurrency": "concurrency", "--seeds": "seeds",
                  "--target": "target", "--budgets": "budgets",
                  "--server-lrs": "server_lrs", "--momenta": "momenta",
                  "--variants": "variants", "--clients": "clients"}


def length(args) -> str:
  """The summary's first line (``common.run_length``)."""
  return common.run_length(args, parse_args, LENGTH_OPTIONS, has_full=True,
                           smoke=args.smoke, quick=args.quick)


def use_devices(n: int) -> int:
  """Splits the CPU into ``n`` devices, one per core, so that the members
  of a sweep train on every core; must run before JAX starts its backend.
  Returns the number of devices."""
  import jax
  if n > 1:
    jax.config.update("jax_num_cpu_devices", int(n))
  return len(jax.devices())


def full_updates(args, perf) -> float:
  """Client updates ``--full`` would simulate."""
  tune_u = perf["tune_updates"] * len(FULL_SERVER_LRS) * len(MOMENTA) / max(
      1, len(args.server_lrs) * len(args.momenta))
  cmp_u = perf["compare_updates"] * 10 / max(1, len(args.seeds))
  per_v = cmp_u / max(1, len(args.variants))
  extra = per_v * (len(VARIANTS) - len(args.variants))
  return tune_u + cmp_u + extra


def full_estimate(args, perf) -> float:
  """Seconds ``--full`` would take at this run's throughput."""
  rate = perf["updates_run"] / max(perf["sweep_wall_s"], 1e-9)
  return full_updates(args, perf) / rate


def main(argv=None):
  args = parse_args(argv)
  devices = use_devices(args.devices)
  prov = common.Provenance()
  out_dir, data_path = common.prepare(args, NAME)
  say = common.Log(out_dir)
  say(f"{devices} CPU device(s); seeds {args.seeds}; target "
      f"{args.target}; budgets {args.budgets}")
  rows, hist, tuned = [], [], {}
  perf = {"tune_updates": 0, "compare_updates": 0, "sweep_wall_s": 0.0,
          "devices": devices}
  tunes = any(VARIANTS[v][0] == "fedavgm" for v in args.variants)
  # One "run" is a tuning sweep or a compared variant's sweep over seeds.
  say.plan(len(args.concurrency) * (len(args.variants) + tunes))
  with common.interruptible(say):
    env = Env(args, data_path, say)
    for C, budget in zip(args.concurrency, args.budgets):
      if tunes:
        tuned[C], w, u = tune(env, C, budget, rows, hist)
        perf["tune_updates"] += u
        perf["sweep_wall_s"] += w
        common.write_rows(out_dir / "results.csv", rows)
        common.write_rows(out_dir / "history.csv", hist)
        say.run_done()
      for v in args.variants:
        w, u = compare(env, C, v, budget, tuned.get(C), rows, hist)
        perf["compare_updates"] += u
        perf["sweep_wall_s"] += w
        common.write_rows(out_dir / "results.csv", rows)
        common.write_rows(out_dir / "history.csv", hist)
        say.run_done()
  perf["updates_run"] = perf["tune_updates"] + perf["compare_updates"]
  perf["full_estimate_s"] = full_estimate(args, perf)
  perf["full_updates"] = full_updates(args, perf)
  agg = aggregate(args, env, rows, tuned, perf)
  agg["tuning_rows"] = [r for r in rows if r["phase"] == "tune"]
  tabs = tables(args, agg)
  claims = claims_table(args, agg)
  figures(args, hist, out_dir)
  agg["wall_s"] = prov.wall()
  agg["cpu_s"] = time.process_time()
  agg["provenance"] = {"command": prov.command, "machine": prov.machine,
                       "date": prov.date}
  common.write_json(out_dir / "summary.json", agg)
  common.write_text(
      out_dir / "summary.md",
      summary_markdown(args, env, agg, tabs, claims, prov, length(args)))
  out_dir = common.finish(out_dir)
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()


if __name__ == "__main__":
  main()
