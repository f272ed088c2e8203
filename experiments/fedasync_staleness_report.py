"""The outputs of experiment 3 (``fedasync_staleness.py``) beyond its
CSV rows: the figure ``accuracy_vs_updates.png``, the results and claims
tables, the rows of ``comparisons.csv``, and ``summary.md``.
"""

from __future__ import annotations

import numpy as np

import common
from fedasync_staleness_setting import FULL_UPDATES, HINGE_A, HINGE_B, POLY_A


def figure(args, su, out_dir):
  """accuracy_vs_updates.png: one panel per maximum staleness."""
  fig = common.figure(figsize=(6.5 * len(args.maxes), 4.6))
  axes = np.atleast_1d(fig.subplots(1, len(args.maxes), squeeze=False)[0])
  styles = {"constant": "-", "polynomial": "--", "hinge": ":"}
  colors = {0.6: "C0", 0.9: "C3"}
  for mx, ax in zip(args.maxes, axes):
    for (m, name), hs in su.curves.items():
      if m != mx:
        continue
      n = min(len(h) for h in hs)
      x = np.array([e["client_updates"] for e in hs[0][:n]])
      y = np.mean([[e["test_accuracy"] for e in h[:n]] for h in hs], axis=0)
      if name == "FedAvg":
        ax.plot(x, y, color="k", lw=1.5, label=f"FedAvg (cohort {mx // 2 + 1})")
      elif name.startswith("control of "):
        kind, a = name[len("control of "):].split(" alpha=")
        ax.plot(x, y, styles[kind], color=colors[float(a)], lw=0.8,
                alpha=0.45, label=f"{name} (constant)")
      else:
        kind, a = name.split(" alpha=")
        ax.plot(x, y, styles[kind], color=colors[float(a)], lw=1.4,
                label=name)
    ax.set_title(f"staleness uniform on 0..{mx}")
    ax.set_xlabel("client updates")
    ax.set_ylabel(f"test accuracy (mean of {len(args.seeds)} seeds)")
    ax.set_ylim(0.5, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, ncol=2)
  fig.tight_layout()
  fig.savefig(out_dir / "accuracy_vs_updates.png", dpi=110)


def fmt_ci(c: dict, scale: float = 100.0, nd: int = 1) -> str:
  """``mean +- half`` (in points by default); ``n/a`` without an interval."""
  if c["n"] == 0:
    return "n/a"
  if not np.isfinite(c["low"]):
    return f"{scale * c['mean']:.{nd}f}"
  half = scale * (c["high"] - c["low"]) / 2
  return f"{scale * c['mean']:.{nd}f} +- {half:.{nd}f}"


def results_table(args, agg) -> str:
  names = list(dict.fromkeys(k.split(" | ")[0] for k in agg["per_run"]))
  head = ["run"] + [f"max {mx}: final / mean-run / mean weight"
                    for mx in args.maxes]
  if agg["change"]:
    head.append(f"change {min(args.maxes)} -> {max(args.maxes)}: final / "
                f"mean-run")
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for name in names:
    cells = [name]
    for mx in args.maxes:
      v = agg["per_run"][f"{name} | max {mx}"]
      w = v["mean_mixing_weight"]
      cells.append(f"{fmt_ci(v['final_full_test_accuracy'])} / "
                   f"{fmt_ci(v['mean_acc_run'])} / "
                   f"{'-' if not np.isfinite(w) else f'{w:.3f}'}")
    if agg["change"]:
      ch = agg["change"][name]
      cells.append(f"{fmt_ci(ch['final_full_test_accuracy'])} / "
                   f"{fmt_ci(ch['mean_acc_run'])}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def claims_table(cl: list) -> str:
  lines = ["| claim | paper | ours: final acc / mean acc over the run "
           "(mean +- 95% CI over seeds, points) | verdict |",
           "|---|---|---|---|"]
  for c in cl:
    by = {}
    for x in c["comparisons"]:
      by.setdefault(x["what"], {})[x["metric"]] = fmt_ci(x)
    ours = "<br>".join(f"{w}: {v.get('final_full_test_accuracy', 'n/a')} / "
                       f"{v.get('mean_acc_run', 'n/a')}"
                       for w, v in by.items())
    lines.append(f"| {c['claim']} | {c['paper']} | {ours or 'n/a'} | "
                 f"{c['verdict']} |")
  return "\n".join(lines)


def comparisons_csv(cl: list) -> list:
  return [{"claim": c["id"], "verdict": c["verdict"], **{
      k: x[k] for k in ("what", "metric", "mean", "low", "high", "n",
                        "claimed_sign",
                        "significant_as_claimed", "significant_against")}}
          for c in cl for x in c["comparisons"]]


def summary_markdown(args, su, agg, cl, js, prov, length_line) -> str:
  """``summary.md``; ``length_line`` is its first line
  (``fedasync_staleness.length``)."""
  sched = js["schedules"]
  tm = js["timing"]
  est = tm["estimated_full_s"]
  cohorts = ", ".join(f"{mx // 2 + 1} at max {mx}" for mx in args.maxes)
  every = ", ".join(
      f"{max(1, round(args.eval_every / (mx // 2 + 1))) * (mx // 2 + 1)} "
      f"at max {mx}" for mx in args.maxes)
  fedavg_line = ("" if args.no_fedavg else
                 f"- FedAvg reference line: synchronous FedAvg, cohorts of "
                 f"max/2 + 1 clients ({cohorts}: the mean number of FedAsync "
                 f"clients in flight), example-weighted average, no "
                 f"proximal term, the same initial model and local "
                 f"training, compared at equal client updates (curve "
                 f"evaluated every {every} updates and at the last "
                 f"one).\n")
  clipped = ", ".join(f"{r['clipped']} at max {r['max_staleness']} seed "
                      f"{r['seed']}" for r in sched)
  means = ", ".join(f"{r['mean_staleness']:.2f} (max {r['max_staleness']}, "
                    f"seed {r['seed']})" for r in sched)
  rate = tm["fedasync_member_updates"] / max(tm["fedasync_s"], 1e-9)
  return f"""# FedAsync staleness study, set up as arXiv:1903.03934, MNIST MLP

{length_line}

## Setting

- **Staleness is prescribed uniform, as in the paper:** each update's
  staleness is drawn uniformly on {{0, ..., max}} for max in {args.maxes}
  (`prescribed.uniform_staleness`), and `prescribed.from_staleness` builds a
  schedule in which arrival t trains from server version t - s_t, so the
  realised staleness equals the draw (values clipped to t at the start:
  {clipped}).
  Realised mean staleness: {means};
  every run checked that the staleness the executor applied equals the
  prescribed values: {js['prescribed_staleness_realised']}.
- **Proximal term on:** the local objective is f_k(x) + rho/2 ||x - x_t||^2
  with **rho = {args.prox_rho}** for every FedAsync run. We could not find
  the paper's rho, so this value is our choice (small: with client lr
  {args.lr} and {args.steps} steps the pull towards x_t is weak).
- Data and model: MNIST, {su.fed.train.num_clients} clients, Dirichlet(0.5);
  the 784-200-200-10 MLP; clients: SGD lr {args.lr}, {args.steps} local
  steps of batch {args.batch}. **Not the paper's setting:** the paper used a
  CNN on CIFAR-10 and an LSTM on WikiText-2.
- {args.updates} client updates per run (= server versions for FedAsync);
  seeds {args.seeds} (each seed: its own staleness draws, client draws,
  initial model and client PRNG key, shared by all rules of that seed);
  curves: test accuracy on the first {args.test_subset} test examples every
  {args.eval_every} versions and at the last one; "final" is on the full
  test set; "mean-run"
  is the mean of the curve after the initial point (area under the curve:
  it rewards fast runs).
- FedAsync: s(tau) constant, polynomial (a={POLY_A}), hinge (a={HINGE_A:g},
  b={HINGE_B:g}), alpha in {{0.6, 0.9}}.
- **Matched control:** for each adaptive rule (polynomial, hinge) and each
  seed and max, a constant rule whose alpha is the adaptive rule's mean
  mixing weight over the run's applied updates, mean_t alpha * s(tau_t),
  computed exactly from that schedule's staleness (column "mean weight";
  per seed in summary.json). It takes the same average step with no
  adaptivity, so adaptive - control measures adaptivity alone. Members
  with identical per-update weights were run once: at max 4 hinge is
  constant (s = 1 for tau <= 4), so hinge and its control there are the
  constant run with the same alpha (column `same_run_as` in results.csv).
{fedavg_line}
## Results

Accuracies in percentage points: mean +- half-width of the t-based 95%
interval over {len(args.seeds)} seed(s). "change" is the per-seed paired
difference max {max(args.maxes)} minus max {min(args.maxes)}.

{results_table(args, agg)}

## Claims

Each comparison is a per-seed paired difference (same seed: same initial
model and client keys) with its 95% interval. Verdict: *reproduced* when
every comparison's interval lies on the claimed side; *partly* when some
do, or when all means are on the claimed side; else *not reproduced*.
Each claim is checked on both final and mean-over-run accuracy.

{claims_table(cl)}

Figure: `accuracy_vs_updates.png` (test accuracy against client updates,
mean of seeds; thin lines are the matched controls).

## Length and time

This run: {args.updates} updates x {len(args.seeds)} seeds x
{len(args.maxes)} maxima; FedAsync sweeps {tm['fedasync_s']:.0f} s for
{tm['fedasync_member_updates']} member-updates
({rate:.0f}/s), FedAvg {tm['fedavg_s']:.0f} s.
Paper-like length, `python experiments/fedasync_staleness.py --full`
({FULL_UPDATES} updates, 3 seeds): about {est / 60:.0f} min on this machine
(this run's throughput scaled; compile time not scaled);
{common.gpu_estimate(tm['full_updates'])}.

## Files

`results.csv` (one row per max, seed and run), `history.csv` (the curves),
`schedules.csv` (the staleness draws' statistics and each adaptive rule's
mean mixing weight per seed), `comparisons.csv` and `summary.json` (the
intervals and verdicts above), `log.txt`, `accuracy_vs_updates.png`.

## Provenance

{prov.markdown()}"""
