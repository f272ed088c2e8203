"""Trace-driven devices and availability: time to accuracy and staleness.

FedAsync (Xie et al. 2019, arXiv:1903.03934), FedBuff (Nguyen et al. 2021,
arXiv:2106.06639) and synchronous FedAvg on 1000-client MNIST (Dirichlet
0.5, MLP 784-200-200-10, one local epoch of SGD 0.05 at batch 10), under
two delay models:

* ``lognormal``: the library's default, a speed per client drawn from a
  lognormal (median 1 s per example, sigma 1), exponential jitter, every
  client always online;
* ``trace``: a device table and a behaviour trace in FedScale's format
  (Lai et al. 2022, arXiv:2105.11367): a task takes FedScale's completion
  time (3 x examples x ms per sample / 1000 + model size / bandwidth, both
  ways), clients are dispatched only while online, and a task is lost when
  its client goes offline first. By default the trace is *generated*
  (``trace_files.write_synthetic``: lognormal compute and bandwidth, a
  nightly charging session per user and short daytime sessions, a week
  long), not measured; ``--device-trace`` and ``--behaviour-trace`` take
  FedScale's real files (``device_info`` and ``client_behave_trace``
  pickles with ``--trust-pickle``, or JSON from ``python -m
  fedasync_jax.sim.trace_files convert``).

Reported per delay model and rule, over seeds (mean and 95% interval):
simulated time and client updates to 90% test accuracy, final accuracy,
the staleness distribution of applied updates (server versions between
dispatch and arrival) and the share of tasks lost.

Recorded (experiments/results/trace_heterogeneity/): ``python
experiments/trace_heterogeneity.py
--out experiments/results/trace_heterogeneity``.
``--smoke``: 20 clients of generated
images, 100 updates, one seed, FedAsync only, written to ``--out``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

SMOKE_OUTPUT = "summary.md"
TARGET = 0.90


def parse_args(argv):
  p = common.base_parser(__doc__.splitlines()[0])
  p.add_argument("--updates", type=common.positive_int, default=None,
                 help="client updates per run (default 10000; quick 3000)")
  p.add_argument("--seeds", type=common.positive_int, default=None,
                 help="number of seeds (default 3)")
  p.add_argument("--concurrency", type=common.positive_int, default=None,
                 help="default 50")
  p.add_argument("--rules", type=common.name_list, default=None,
                 help="default fedasync,fedbuff,fedavg (smoke: fedasync)")
  p.add_argument("--device-trace", type=common.existing_file, default=None,
                 help="FedScale device table (.pkl/.json/.csv); default: "
                      "generated")
  p.add_argument("--behaviour-trace", type=common.existing_file, default=None,
                 help="FedScale behaviour trace (.pkl/.json) or "
                      "client,start,end .csv; default: generated")
  p.add_argument("--trust-pickle", action="store_true",
                 help="allow reading .pkl traces (runs code from the file)")
  p.add_argument("--keep-offline", action="store_true",
                 help="do not lose tasks whose client goes offline")
  return common.parse(p, argv, resolve)


def resolve(args):
  """Fills in the defaults of ``--smoke`` / ``--quick`` / the full length
  and checks them (``ConfigError``)."""
  args.updates = args.updates or (100 if args.smoke else 3000 if args.quick
                                  else 10000)
  args.seeds = args.seeds or (1 if args.smoke else 3)
  args.concurrency = args.concurrency or (5 if args.smoke else 50)
  args.rules = args.rules or ("fedasync" if args.smoke else
                              "fedasync,fedbuff,fedavg").split(",")
  args.clients = 20 if args.smoke else 1000
  args.eval_every = 20 if args.smoke else 100
  base = base_config(args, "(the data file, checked later)")
  for rn in args.rules:  # every rule is known (or ConfigError)
    common.with_fields(base, rule={"name": rn})
  check_traces(args)


def check_traces(args) -> None:
  """Reads the given trace files once, so that one that cannot be read
  (format, contents, a pickle without ``--trust-pickle``) stops the run
  before anything is written (``ValueError`` naming the option)."""
  from fedasync_jax.sim import trace_files
  for option, path, read in (
      ("--device-trace", args.device_trace, trace_files.read_device_table),
      ("--behaviour-trace", args.behaviour_trace,
       trace_files.read_availability)):
    if path is not None:
      try:
        read(path, trust_pickle=bool(args.trust_pickle))
      except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{option}: {e}") from None


LENGTH_OPTIONS = {"--updates": "updates", "--seeds": "seeds",
                  "--concurrency": "concurrency", "--rules": "rules"}


def length(args) -> str:
  """The summary's first line (``common.run_length``)."""
  return common.run_length(args, parse_args, LENGTH_OPTIONS,
                           smoke=args.smoke, quick=args.quick)


def base_config(args, data_path):
  """The validated configuration every run starts from."""
  return common.mnist_mlp_config(
      data_path, num_clients=args.clients, concurrency=args.concurrency,
      num_updates=args.updates, eval_every=args.eval_every)


def delay_fields(args, out_dir):
  """``{condition: delays section}``; writes the generated trace."""
  from fedasync_jax.sim import trace_files
  dev, beh = args.device_trace, args.behaviour_trace
  if dev is None or beh is None:
    gen = trace_files.write_synthetic(out_dir / "trace", seed=0,
                                      num_devices=args.clients)
    dev, beh = dev or gen[0], beh or gen[1]
  return {
      "lognormal": {"speeds": "lognormal", "sigma": 1.0, "mean": 1.0,
                    "jitter": "exponential"},
      "trace": {"speeds": "trace", "trace_path": str(dev),
                "availability_trace": str(beh), "jitter": "none",
                "trace_mapping": "random",
                "trust_pickle": bool(args.trust_pickle),
                "lose_offline": not args.keep_offline},
  }, (dev, beh)


def run_all(args, data_path, out_dir, say):
  from fedasync_jax import experiment
  base = base_config(args, data_path)
  fed = experiment.load_data(base)
  conditions, files = delay_fields(args, out_dir)
  runs, hist, stale_rows = {}, [], []
  for cond, fields in conditions.items():
    for rn in args.rules:
      for seed in range(args.seeds):
        cfg = common.with_fields(base, rule={"name": rn}, delays=fields,
                                 run={"seed": seed})
        s = common.build(cfg, fed=fed)
        sch = s.schedule
        r = common.simulate(s, cfg, label=f"{cond}/{rn}/{seed}", log=say)
        applied = sch.staleness[~sch.dropped]
        counts = np.bincount(applied)
        stale_rows += [{"delays": cond, "rule": rn, "seed": seed,
                        "staleness": k, "count": int(c)}
                       for k, c in enumerate(counts) if c]
        t90, u90 = (math.nan if v is None else v
                    for v in common.first_reach(r.history, TARGET))
        runs[(cond, rn, seed)] = {
            "time_to_90": t90, "updates_to_90": u90,
            "final_accuracy": r.history[-1]["test_accuracy"],
            "simulated_end": float(sch.stats["end_time"]),
            "lost_share": float(sch.lost.mean()),
            "staleness_mean": float(applied.mean()),
            "staleness_p50": float(np.percentile(applied, 50)),
            "staleness_p90": float(np.percentile(applied, 90)),
            "staleness_p99": float(np.percentile(applied, 99)),
            "staleness_max": int(applied.max()), "wall_s": r.wall_s}
        say(f"{cond}/{rn}/seed {seed}: t(90%) {t90:,.0f} s, final acc "
            f"{r.history[-1]['test_accuracy']:.4f}, staleness mean "
            f"{applied.mean():.1f}, lost {sch.lost.mean():.1%}, "
            f"{r.wall_s:.0f} s wall")
        hist += [{"delays": cond, "rule": rn, "seed": seed, **e}
                 for e in r.history]
        common.write_rows(out_dir / "history.csv", hist)
        common.write_rows(out_dir / "staleness.csv", stale_rows)
        say.run_done()
  return list(conditions), runs, hist, files


def summarize(args, conds, runs):
  """Rows with the mean and 95% interval over seeds of each figure."""
  from fedasync_jax.run.sweep_outputs import interval
  keys = ["time_to_90", "updates_to_90", "final_accuracy", "simulated_end",
          "lost_share", "staleness_mean", "staleness_p90", "staleness_p99",
          "staleness_max"]
  rows = []
  for cond in conds:
    for rn in args.rules:
      per = [runs[(cond, rn, s)] for s in range(args.seeds)]
      row = {"delays": cond, "rule": rn, "seeds": args.seeds}
      for k in keys:
        vals = np.asarray([p[k] for p in per], float)
        row[f"{k}_reached"] = int(np.sum(np.isfinite(vals)))
        vals = vals[np.isfinite(vals)]
        m, lo, hi = interval(vals) if vals.size else (math.nan,) * 3
        row[k], row[f"{k}_low"], row[f"{k}_high"] = (float(m), float(lo),
                                                      float(hi))
      rows.append(row)
  return rows


def cell(row, k, fmt):
  m, lo, hi = row[k], row[f"{k}_low"], row[f"{k}_high"]
  if not math.isfinite(m):
    return "not reached"
  text = fmt.format(m)
  if math.isfinite(lo):
    text += " [" + fmt.format(lo) + ", " + fmt.format(hi) + "]"
  if row[f"{k}_reached"] < row["seeds"]:
    text += f" ({row[f'{k}_reached']}/{row['seeds']} seeds)"
  return text


def figures(args, conds, hist, stale_rows_path, out_dir):
  fig = common.figure(figsize=(6 * len(conds), 4.2))
  axes = np.atleast_1d(fig.subplots(1, len(conds)))
  for cond, ax in zip(conds, axes):
    for i, rn in enumerate(args.rules):
      for seed in range(args.seeds):
        h = [e for e in hist if e["delays"] == cond and e["rule"] == rn
             and e["seed"] == seed and e["simulated_time"] > 0]
        ax.plot([e["simulated_time"] for e in h],
                [e["test_accuracy"] for e in h],
                color=f"C{i}", alpha=0.8, lw=1,
                label=rn if seed == 0 else None)
    ax.axhline(TARGET, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("simulated time (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{cond} delays")
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(out_dir / "accuracy_vs_time.png", dpi=110)
  import csv
  with open(stale_rows_path, newline="") as f:
    rows = list(csv.DictReader(f))
  async_rules = [rn for rn in args.rules if rn != "fedavg"]
  fig = common.figure(figsize=(6 * max(1, len(async_rules)), 4))
  axes = np.atleast_1d(fig.subplots(1, max(1, len(async_rules))))
  for rn, ax in zip(async_rules, axes):
    cut = 1
    for i, cond in enumerate(conds):
      c = {}
      for r in rows:
        if r["rule"] == rn and r["delays"] == cond:
          k = int(r["staleness"])
          c[k] = c.get(k, 0) + int(r["count"])
      ks = np.arange(max(c) + 1) if c else np.arange(1)
      v = np.array([c.get(k, 0) for k in ks], float)
      cdf = np.cumsum(v) / max(v.sum(), 1)
      cut = max(cut, int(np.searchsorted(cdf, 0.995)) + 1)
      ax.step(ks, v / max(v.sum(), 1), where="mid", color=f"C{i}",
              label=cond)
    ax.set_xlim(0, cut)
    ax.set_xlabel("staleness (server versions; axis cut at the 99.5th "
                  "percentile)")
    ax.set_ylabel("share of applied updates")
    ax.set_title(rn)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(out_dir / "staleness.png", dpi=110)


def observations(args, rows) -> list:
  """Sentences computed from the table: FedAvg's time to 90% against each
  asynchronous rule's, per delay model."""
  by = {(r["delays"], r["rule"]): r for r in rows}
  out = []
  for cond in sorted({r["delays"] for r in rows}):
    avg = by.get((cond, "fedavg"))
    if avg is None or not math.isfinite(avg["time_to_90"]):
      continue
    parts = [f"{rn} {avg['time_to_90'] / by[(cond, rn)]['time_to_90']:.1f}x"
             for rn in args.rules if rn != "fedavg" and (cond, rn) in by
             and math.isfinite(by[(cond, rn)]["time_to_90"])]
    if parts:
      out.append(f"- {cond}: FedAvg needs this many times the simulated "
                 f"time to 90% of: " + ", ".join(parts) + " (means over "
                 "seeds).")
  return out


def summary_markdown(args, rows, files, prov):
  kind = (f"{length(args)} {args.updates} client updates per run, "
          f"{args.seeds} seed(s).")
  generated = args.device_trace is None or args.behaviour_trace is None
  lines = ["| delays | rule | time to 90% (s) | updates to 90% | final "
           "accuracy | staleness mean | p90 | p99 | max | tasks lost |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['delays']} | {r['rule']} | {cell(r, 'time_to_90', '{:,.0f}')}"
        f" | {cell(r, 'updates_to_90', '{:,.0f}')} | "
        f"{cell(r, 'final_accuracy', '{:.4f}')} | "
        f"{cell(r, 'staleness_mean', '{:.1f}')} | "
        f"{cell(r, 'staleness_p90', '{:.0f}')} | "
        f"{cell(r, 'staleness_p99', '{:.0f}')} | "
        f"{cell(r, 'staleness_max', '{:.0f}')} | "
        f"{cell(r, 'lost_share', '{:.3f}')} |")
  return f"""# Trace-driven devices and availability (MNIST, {args.clients} clients)

{kind}

## Setting

- MNIST, {args.clients} clients, Dirichlet(0.5); MLP 784-200-200-10; one local
  epoch of SGD (lr 0.05, batch 10); {args.concurrency} clients at work
  (FedAsync alpha 0.6 and FedBuff K = 10 with polynomial(0.5) staleness;
  FedAvg cohorts of {args.concurrency}, no deadline).
- `lognormal`: speed ~ lognormal (median 1 s per example, sigma 1) x
  exponential jitter; always online.
- `trace`: FedScale's completion time from a device table, dispatch only
  while online, tasks lost when the client goes offline first; clients mapped
  to trace rows at random (seeded by the run's seed; `trace_mapping`).
  Trace files: `{files[0]}` and `{files[1]}`
  ({'GENERATED by `trace_files.write_synthetic`, not measured data' if generated else 'user-supplied'}).
- Values: mean [95% interval] over seeds; "time to 90%" is the simulated
  time of the first evaluation (every {args.eval_every} updates, and after
  the last) at or above
  90% test accuracy; staleness is in server versions, over applied updates.

## Results

{chr(10).join(lines)}

{chr(10).join(observations(args, rows))}

Files: `history.csv`, `staleness.csv` (histograms per run), `runs.csv`,
`summary.csv`, `accuracy_vs_time.png`, `staleness.png`.

## Rerun on FedScale's files

    python experiments/trace_heterogeneity.py --trust-pickle \\
        --device-trace device_info.pkl --behaviour-trace client_behave_trace.pkl

## Provenance

{prov.markdown()}"""


def main(argv=None):
  args = parse_args(argv)
  prov = common.Provenance()
  out_dir, data_path = common.prepare(args, "trace_heterogeneity")
  say = common.Log(out_dir)
  say.plan(2 * len(args.rules) * args.seeds)  # lognormal and trace
  with common.interruptible(say):
    conds, runs, hist, files = run_all(args, data_path, out_dir, say)
  common.write_rows(out_dir / "runs.csv",
                    [{"delays": c, "rule": r, "seed": s, **v}
                     for (c, r, s), v in runs.items()])
  rows = summarize(args, conds, runs)
  common.write_rows(out_dir / "summary.csv", rows)
  figures(args, conds, hist, out_dir / "staleness.csv", out_dir)
  final = common.target_of(out_dir)  # the generated trace's final place
  files = [final / Path(f).relative_to(out_dir)
           if Path(f).is_relative_to(out_dir) else f for f in files]
  common.write_text(
      out_dir / "summary.md",
      summary_markdown(args, rows, files, prov))
  out_dir = common.finish(out_dir)
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()


if __name__ == "__main__":
  main()
