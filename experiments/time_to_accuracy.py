"""Experiment 4: time to accuracy under heterogeneous devices.

FedAsync (Xie et al. 2019, arXiv:1903.03934), FedBuff (Nguyen et al. 2021,
arXiv:2106.06639) and synchronous FedAvg (McMahan et al. 2017) on
cross-device MNIST: 1000 clients, Dirichlet(0.5) labels (8..179 examples per
client, mean 60), the 784-200-200-10 MLP, one local epoch of SGD at batch
10. Device speeds (seconds per example) are drawn once per client from a
lognormal (median 1, sigma 1) or a Pareto/Lomax heavy tail (shape 2, mean
1); a task takes speed x examples x exponential jitter (mean 1) simulated
seconds. Test accuracy against simulated wall-clock time, and the simulated
time to reach 90% and 95% test accuracy.

Algorithms (each with C clients at work):
* FedAsync: alpha 0.6, polynomial staleness a=0.5, C in flight;
* FedBuff: K=10 arrivals per server step, server SGD lr 1 (the plain mean of
  the buffered deltas), polynomial staleness a=0.5, C in flight;
* FedAvg: cohorts of C, barrier at the slowest client, example-weighted
  average.

Recorded (experiments/results/time_to_accuracy/): ``python
experiments/time_to_accuracy.py --out experiments/results/time_to_accuracy``.
``--smoke``: 20 clients of generated
images, 100 updates evaluated every 15 (so the final evaluation, at 100,
is exercised), lognormal speeds, FedAsync and FedAvg, written to
``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

SMOKE_OUTPUT = "summary.md"
THRESHOLDS = (0.90, 0.95)


QUICK_UPDATES, FULL_UPDATES = 6000, 30000
BUFFER_K = 10  # FedBuff's K (common.mnist_mlp_config)


def parse_args(argv):
  p = common.base_parser(__doc__.splitlines()[0])
  p.add_argument("--updates", type=common.positive_int, default=None,
                 help=f"client updates per run (quick {QUICK_UPDATES}, "
                      f"full {FULL_UPDATES})")
  p.add_argument("--concurrency", type=common.positive_int, default=None,
                 help="default 50")
  p.add_argument("--speeds", type=common.name_list, default=None, help="default lognormal,pareto")
  p.add_argument("--rules", type=common.name_list, default=None,
                 help="default fedasync,fedbuff,fedavg")
  p.add_argument("--lr", type=common.number(0, 1e18, low_open=True), default=0.05)
  p.add_argument("--eval-every", type=common.positive_int, default=None,
                 help=f"client updates between evaluations (a multiple of "
                      f"the concurrency and, with fedbuff, of its "
                      f"K={BUFFER_K}; default 100); the last update is "
                      f"always evaluated")
  p.add_argument("--seed", type=common.non_negative_int, default=0)
  return common.parse(p, argv, resolve)


def resolve(args):
  """Fills in the defaults of ``--smoke`` / ``--quick`` / the full length
  and checks them (``ValueError``, ``ConfigError``)."""
  smoke = args.smoke
  args.updates = args.updates or (100 if smoke else QUICK_UPDATES
                                  if args.quick else FULL_UPDATES)
  args.concurrency = args.concurrency or (5 if smoke else 50)
  args.speeds = args.speeds or ("lognormal" if smoke
                                else "lognormal,pareto").split(",")
  args.rules = args.rules or ("fedasync,fedavg" if smoke
                              else "fedasync,fedbuff,fedavg").split(",")
  args.eval_every = args.eval_every or (15 if smoke else 100)
  args.clients = 20 if smoke else 1000
  if args.eval_every % args.concurrency:
    raise ValueError(f"--eval-every must be a multiple of the concurrency "
                     f"{args.concurrency}, got {args.eval_every}")
  if "fedbuff" in args.rules and args.eval_every % BUFFER_K:
    raise ValueError(f"--eval-every must be a multiple of FedBuff's "
                     f"K={BUFFER_K}, got {args.eval_every}")
  base = base_config(args, "(the data file, checked later)")
  for sp in args.speeds:  # every configuration is valid (or ConfigError)
    for rn in args.rules:
      common.with_fields(base, rule={"name": rn}, delays={"speeds": sp})


LENGTH_OPTIONS = {"--updates": "updates", "--concurrency": "concurrency",
                  "--speeds": "speeds", "--rules": "rules",
                  "--eval-every": "eval_every"}


def length(args) -> str:
  """The summary's first line (``common.run_length``)."""
  return common.run_length(args, parse_args, LENGTH_OPTIONS,
                           smoke=args.smoke, quick=args.quick)


def base_config(args, data_path):
  """The validated configuration every run starts from."""
  return common.mnist_mlp_config(
      data_path, num_clients=args.clients, concurrency=args.concurrency,
      num_updates=args.updates, eval_every=args.eval_every, lr=args.lr,
      seed=args.seed, delays={"speeds": "lognormal", "sigma": 1.0,
                              "mean": 1.0, "jitter": "exponential"})


def run_all(args, data_path, out_dir, say):
  """Every speed distribution x rule; ``(base config, fed, runs)``."""
  from fedasync_jax import experiment
  base = base_config(args, data_path)
  fed = experiment.load_data(base)
  say(f"MNIST: {fed.train.num_clients} clients, "
      f"{fed.train.counts.min()}..{fed.train.counts.max()} examples "
      f"(mean {fed.train.counts.mean():.0f})")
  runs, hist = {}, []
  for sp in args.speeds:
    for rn in args.rules:
      cfg = common.with_fields(base, rule={"name": rn},
                               delays={"speeds": sp})
      s = common.build(cfg, fed=fed)
      label = f"{rn} / {sp}"
      say(f"run {label}: {s.schedule.num_arrivals} client updates, "
          f"{int(s.schedule.stats['num_versions'])} versions, simulated "
          f"end {s.schedule.stats['end_time']:.0f} s")
      r = common.simulate(s, cfg, label=label, log=say)
      t90, _ = common.first_reach(r.history, 0.90)
      say(f"  {r.wall_s:.0f} s wall ({s.schedule.num_arrivals / r.wall_s:.0f}"
          f" updates/s); final acc {r.history[-1]['test_accuracy']:.4f}; "
          f"t(90%) {t90}")
      runs[(sp, rn)] = (cfg, r)
      hist.extend({"speeds": sp, "rule": rn, **e} for e in r.history)
      common.write_rows(out_dir / "history.csv", hist)
      say.run_done()
  return base, fed, runs


def figures(args, runs, out_dir):
  """accuracy_vs_time.png (log time axis) and accuracy_vs_updates.png."""
  for name, x_of, log_x in (
      ("accuracy_vs_time.png", lambda e: e["simulated_time"], True),
      ("accuracy_vs_updates.png", lambda e: e["client_updates"], False)):
    fig = common.figure(figsize=(6 * len(args.speeds), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(args.speeds)))
    for sp, ax in zip(args.speeds, axes):
      for i, rn in enumerate(args.rules):
        h = runs[(sp, rn)][1].history
        if log_x:
          h = [e for e in h if e["simulated_time"] > 0]
        ax.plot([x_of(e) for e in h], [e["test_accuracy"] for e in h],
                marker=".", color=f"C{i}", label=rn)
      if log_x:
        for thr in THRESHOLDS:
          ax.axhline(thr, color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("simulated wall-clock time (s, log scale)")
      else:
        ax.set_xlabel("client updates")
      ax.set_ylim(0.5, 1.0)
      ax.set_ylabel("test accuracy")
      ax.set_title(f"{sp} device speeds")
      ax.grid(alpha=0.3)
      ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)


def table(args, runs, out_dir):
  """The results table (markdown lines); writes time_to_accuracy.csv."""
  lines = ["| speeds | rule | time to 90% | updates to 90% | time to 95% | "
           "updates to 95% | final acc | simulated end | wall s |",
           "|---|---|---|---|---|---|---|---|---|"]
  rows = []
  for sp in args.speeds:
    for rn in args.rules:
      r = runs[(sp, rn)][1]
      cells, row = [], {"speeds": sp, "rule": rn}
      for thr in THRESHOLDS:
        t, u = common.first_reach(r.history, thr)
        cells += [f"{t:,.0f} s" if t is not None else "not reached",
                  f"{u:,}" if u is not None else "not reached"]
        row[f"time_to_{int(thr * 100)}"] = t
        row[f"updates_to_{int(thr * 100)}"] = u
      end = r.history[-1]
      row.update(final_accuracy=end["test_accuracy"],
                 simulated_end=end["simulated_time"], wall_s=r.wall_s)
      rows.append(row)
      lines.append(f"| {sp} | {rn} | " + " | ".join(cells) +
                   f" | {end['test_accuracy']:.4f} | "
                   f"{end['simulated_time']:,.0f} s | "
                   f"{r.wall_s:.0f} |")
  common.write_rows(out_dir / "time_to_accuracy.csv", rows)
  return lines


def notes_of(args, runs):
  """Speed-ups over FedAvg and the task / round durations."""
  rule_names, C = args.rules, args.concurrency

  def speedup(sp, thr):
    t = {rn: common.first_reach(runs[(sp, rn)][1].history, thr)[0]
         for rn in rule_names}
    if "fedavg" not in t or t["fedavg"] is None:
      return ""
    parts = [f"{rn} {t['fedavg'] / t[rn]:.1f}x" for rn in rule_names
             if rn != "fedavg" and t[rn] is not None]
    return (f"- {sp}, {int(thr * 100)}%: speed-up over FedAvg in simulated "
            f"time: " + (", ".join(parts) if parts else "n/a"))
  notes = [x for sp in args.speeds for thr in THRESHOLDS
           for x in [speedup(sp, thr)] if x]
  for sp in args.speeds:
    async_rn = [rn for rn in rule_names if rn != "fedavg"]
    if async_rn:
      sch = runs[(sp, async_rn[0])][1].setup.schedule
      dur = sch.arrival_time - sch.dispatch_time
      notes.append(
          f"- {sp}: task durations (asynchronous runs) median "
          f"{np.median(dur):,.0f} s, 90th percentile "
          f"{np.percentile(dur, 90):,.0f} s, 99th {np.percentile(dur, 99):,.0f}"
          f" s")
    if "fedavg" in rule_names:
      sch = runs[(sp, "fedavg")][1].setup.schedule
      ends = sch.arrival_time[sch.arrival_task[sch.ends_round]]
      rt = np.diff(np.concatenate([[0.0], ends]))
      notes.append(
          f"- {sp}: FedAvg rounds last {np.mean(rt):,.0f} s on average (the "
          f"slowest of {C} clients), median {np.median(rt):,.0f} s")
  return notes


def summary_markdown(args, base, fed, lines, notes, prov):
  """summary.md (the text the recorded summary was written with)."""
  updates, C = args.updates, args.concurrency
  md = f"""# Time to accuracy under heterogeneous devices (MNIST, 1000 clients)

{length(args)}

## Setting

- MNIST, {fed.train.num_clients} clients, Dirichlet(0.5) ({fed.train.counts.min()}..{fed.train.counts.max()}
  examples per client, mean {fed.train.counts.mean():.0f}); MLP 784-200-200-10;
  one local epoch of SGD (lr {args.lr}, batch 10)
- {C} clients at work at any time: FedAsync and FedBuff keep {C} in flight
  (closed loop, uniform selection of idle clients); FedAvg runs cohorts of
  {C} with a barrier (no deadline)
- FedAsync alpha 0.6, s = polynomial(0.5); FedBuff K = 10, server SGD lr 1,
  s = polynomial(0.5); FedAvg example-weighted
- task time = device speed (s/example) x examples x Exp(1) jitter; speeds
  lognormal (median 1 s, sigma 1) or Pareto/Lomax (shape 2, mean 1 s: a
  heavy tail, a few devices 10-60x slower than the median)
- {updates} client updates per run; test accuracy on the full test set every
  {base.run.eval_every} client updates and after the last one; "time to X%"
  is the simulated time of the first evaluation at or above X% (so it is
  resolved to the evaluation grid).

## Results

{chr(10).join(lines)}

{chr(10).join(notes)}

Figures: `accuracy_vs_time.png` (test accuracy against simulated time,
log axis), `accuracy_vs_updates.png` (against client updates).

## Length

{'Quick: ' + str(updates) + ' updates per run. ' if args.quick else ''}Full length ({FULL_UPDATES:,} client updates per run):

    python experiments/time_to_accuracy.py

## Provenance

{prov.markdown()}"""
  return md


def main(argv=None):
  args = parse_args(argv)
  prov = common.Provenance()
  out_dir, data_path = common.prepare(args, "time_to_accuracy")
  say = common.Log(out_dir)
  say.plan(len(args.speeds) * len(args.rules))
  with common.interruptible(say):
    base, fed, runs = run_all(args, data_path, out_dir, say)
  figures(args, runs, out_dir)
  lines = table(args, runs, out_dir)
  md = summary_markdown(args, base, fed, lines, notes_of(args, runs), prov)
  common.write_text(out_dir / "summary.md", md)
  out_dir = common.finish(out_dir)
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()


if __name__ == "__main__":
  main()
