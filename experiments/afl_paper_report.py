"""The summary of the AFL paper's experiment (``afl_paper.py``): the
verdicts on the paper's claims (Forootani and Iervolino 2025,
arXiv:2508.01675), the claim | paper | ours | verdict table, the estimate of
the full length, and ``summary.md`` itself.
"""

from __future__ import annotations

import numpy as np

import common
from afl_paper_numbers import PAPER, PAPER_CODE_NOTE
from afl_paper_stats import labels, series, spearman


def direction(values, *, want_negative: bool) -> str:
  """``"yes"`` when the 95% interval of the mean excludes 0 on the side the
  claim predicts, ``"opposite"`` when it excludes 0 on the other side,
  ``"none"`` when it holds 0, ``"undecided"`` with fewer than 2 values."""
  m, h, n = common.mean_ci(values)
  if n < 2 or not np.isfinite(h):
    return "undecided"
  if (m + h < 0) if want_negative else (m - h > 0):
    return "yes"
  if (m - h > 0) if want_negative else (m + h < 0):
    return "opposite"
  return "none"


def verdict(measures, *, want_negative: bool) -> str:
  """One verdict over one or more measures of a claim's effect
  (``{name: per-seed values}``): ``reproduced`` when every measure shows
  the predicted direction significantly, ``partly`` when some do,
  ``not reproduced`` when none does (saying which went the other way). A
  null result is never counted as reproduced.

  Example:
    >>> verdict({"a": [-1.0, -1.1, -0.9]}, want_negative=True)
    'reproduced'
    >>> verdict({"a": [-1.0, -1.1, -0.9], "b": [1.0, -1.0, 0.1]},
    ...         want_negative=True)
    'partly (shown by a; b: no significant effect)'
  """
  d = {k: direction(v, want_negative=want_negative)
       for k, v in measures.items()}
  yes = [k for k, v in d.items() if v == "yes"]
  opp = [k for k, v in d.items() if v == "opposite"]
  none = [k for k, v in d.items() if v in ("none", "undecided")]
  if len(yes) == len(d):
    return "reproduced"
  why = "; ".join(x for x in (
      opp and f"{', '.join(opp)}: significant effect the other way",
      none and f"{', '.join(none)}: no significant effect") if x)
  if yes:
    return f"partly (shown by {', '.join(yes)}; {why})"
  return f"not reproduced ({why})"


def length_text(ctx, rows, feds, length_line):
  """(shortened?, local work, examples/s, full-length estimate text);
  ``length_line`` is the summary's first line (``afl_paper.length``)."""
  c_steps, st = ctx.steps, ctx.st
  mean_n = float(np.mean([f.train.counts.mean() for f in feds.values()]))
  local = (f"{ctx.epochs} local epoch{'s' if ctx.epochs != 1 else ''} over "
           f"the client's data" if c_steps is None else
           f"{c_steps} local steps of batch {st['batch']} "
           f"({c_steps * st['batch']} examples, about "
           f"{c_steps * st['batch'] / mean_n:.2f} of an epoch over a "
           f"mean client's ~{mean_n:.0f} examples)")
  per_update = (c_steps * st["batch"] if c_steps is not None
                else ctx.epochs * mean_n)
  done = sum(r["clients_per_round"] for r in rows) * per_update
  wall = sum({(r["run"], r["seed"]): r["wall_s"] for r in rows}.values())
  rate = done / max(wall, 1e-9)
  full = st["full"]
  full_updates = full["rounds"] * (sum(full["ms"]) + st["default_m"])
  full_examples = full_updates * full["epochs"] * mean_n
  shortened = not length_line.startswith(common.FULL_TEXT)
  est = (f"`python experiments/afl_{ctx.name}.py --full` runs "
         f"{full['rounds']} rounds of {full['epochs']} local epochs, M = "
         f"{', '.join(map(str, full['ms']))} and FedAvg, per seed: "
         f"{full_updates} client updates, {full_examples / 1e6:.0f} million "
         f"training examples, about {full_examples / rate / 86400:.0f} days "
         f"per seed on this CPU at the {rate:.0f} examples/s measured in "
         f"this run; on one GPU at an assumed 50,000 examples/s (not "
         f"measured here) about {full_examples / 5e4 / 3600:.0f} hours per "
         f"seed.")
  return shortened, local, rate, est


def paper_rows(ctx, rows, comp):
  """The claim | paper | ours | verdict table."""
  p, R, m0 = PAPER[ctx.name], ctx.rounds, ctx.m0
  ms = ctx.ms

  def at(label, key, k=R):
    return common.fmt_ci(series(rows, label, key)[k - 1], 3,
                         common.BOUNDS[key])
  by_m = "; ".join(f"M={m}: {at(f'afl_M{m}', 'client_train_loss')}"
                   for m in ms)
  paper_by_m = "; ".join(f"M={m}: {p['loss_r10'][m]}" for m in ms
                         if m in p["loss_r10"])
  rho_paper = spearman([m for m in sorted(p["rounds_to_01"])],
                       [p["rounds_to_01"][m] for m in sorted(
                           p["rounds_to_01"])])
  slope = comp["slope_client_train_loss"]
  slope_mean = comp["slope_mean_client_train_loss"]
  slope_t = comp["slope_test_loss"]
  first, last = comp["main_first_round_loss"], comp["main_last_round_loss"]
  diff = comp["async_minus_sync_mean_client_train_loss"]
  diff_final = comp["async_minus_sync_final_client_train_loss"]
  diff_t = comp["async_minus_sync_mean_test_loss"]
  ratio = comp["time_ratio_sync_over_async"]
  return [
      ("the server loss falls over rounds (figure 1, M=5)",
       f"{p['loss_r1'][m0]} at round 1, {p['loss_r10'][m0]} at round 10, "
       f"{p['loss_r20'][m0]} at round 20, below 0.1 from round "
       f"{p['rounds_to_01'][m0]} ({p['rounds']} rounds of {p['epochs']} "
       f"epochs, one run)",
       f"round 1 {common.fmt_ci(first, 3, (0.0, None))} -> round {R} "
       f"{common.fmt_ci(last, 3, (0.0, None))}",
       verdict({"round 1 to last": np.subtract(last, first)},
               want_negative=True)
       + (" (the direction only: our rounds are shorter, the values are "
          "not comparable)")),
      ("more clients per round lower the server loss faster (figure 3)",
       f"rounds to a loss below 0.1 fall from {p['rounds_to_01'][3]} (M=3) "
       f"to {p['rounds_to_01'][8]} (M=8), Spearman(M, rounds) = "
       f"{rho_paper:.2f}; loss at round 10: {paper_by_m}",
       f"loss at round {R}: {by_m}; slope per added client at round {R} "
       f"{common.fmt_ci(slope, 4)}, of the mean over rounds 1-{R} "
       f"{common.fmt_ci(slope_mean, 4)} (test loss at round {R}: "
       f"{common.fmt_ci(slope_t, 4)})",
       verdict({f"the slope at round {R}": slope,
                "the slope of the mean over rounds": slope_mean},
               want_negative=True)),
      ("asynchronous AFL against synchronous FedAvg (figure 4, M=5)",
       f"close; synchronous slightly lower per round: below 0.1 at round "
       f"{p['sync_rounds_to_01']} vs {p['rounds_to_01'][m0]}, mean loss "
       f"over rounds 1-100 {p['sync_mean_r1_100']} vs "
       f"{p['async_mean_r1_100']} (both scripts wait for all M clients)",
       f"async minus sync, paper's loss: mean over the {R} rounds "
       f"{common.fmt_ci(diff, 3)}, at round {R} "
       f"{common.fmt_ci(diff_final, 3)} (test loss, mean over rounds: "
       f"{common.fmt_ci(diff_t, 3)}); synchronous needs "
       f"{common.fmt_ci(ratio, 1)}x the simulated time for {R} rounds (a "
       f"property of the delay model: the barrier waits for the slowest of "
       f"M, with every task the same number of steps)",
       verdict({"the mean over rounds": diff, f"round {R}": diff_final},
               want_negative=False)
       + " (the claim tested: synchronous lower per round)"),
  ]


def summary_markdown(ctx, rows, runs, feds, comp, prov, length_line):
  """``summary.md``; ``length_line`` is its first line
  (``afl_paper.length``)."""
  st, args, name, R, m0 = ctx.st, ctx.args, ctx.name, ctx.rounds, ctx.m0
  shortened, local, rate, est = length_text(ctx, rows, feds,
                                            length_line)
  patience_note = (
      "" if ctx.steps is None else
      " (with fixed local steps a task is one epoch, so neither this nor "
      "the rate's epoch decay acts in these runs)")
  header = length_line + (" See \"What was shortened\"." if shortened
                          and not args.smoke else "")
  table = "\n".join(f"| {a} | {b} | {c} | {d} |"
                    for a, b, c, d in paper_rows(ctx, rows, comp))
  res = []
  for label in labels(ctx):
    a = {k: series(rows, label, k)[-1] for k in (
        "client_train_loss", "test_loss", "test_accuracy", "simulated_time",
        "mean_staleness")}
    res.append(f"| {label} | " + " | ".join(
        common.fmt_ci(a[k], 3, common.BOUNDS[k]) for k in (
            "client_train_loss", "test_loss", "test_accuracy")) + " | "
        + common.fmt_ci(a["simulated_time"], 1, common.BOUNDS[
            "simulated_time"]) + " | "
        f"{np.mean(a['mean_staleness']):.2f} |")
  ps = common.participation_stats(runs[f"afl_M{m0}"].out.participation)
  data_note = DATA_NOTE_CIFAR if name == "cifar10" else ""
  subset = ctx.subset
  return f"""# {st['title']}

{header}
{data_note}
## Against the paper

Paper: Forootani and Iervolino 2025, arXiv:2508.01675. Its numbers are
the values its figures plot (one run per M, {PAPER[name]['rounds']} rounds
of {PAPER[name]['epochs']} local epochs), read from the result arrays the
authors published with their code. "Ours" is mean +- 95% interval over
{len(ctx.seeds)} seeds (t-based), at round {R} unless stated. Verdicts test
the direction of each claim on every measure named (the interval of the
mean excludes zero): reproduced when every measure shows it, partly when
some do, not reproduced when none does; no significant difference is
never counted as reproduced. Our runs are far shorter, so no value is
expected to match.

| claim | paper | ours | verdict |
|---|---|---|---|
{table}

{PAPER_CODE_NOTE}

## Setting

- data: {name}, 10 clients, Dirichlet(0.5) labels (a new partition per
  seed; seeds {', '.join(map(str, ctx.seeds))}); server test loss/accuracy
  on {'the first ' + str(subset) + ' test examples' if subset else 'the full test set'}
- model: {st['model']} (`fedasync_jax.models.{st['model']}` as is; on CPU
  its convolutions use the loop-friendly gradient of
  `fedasync_jax/models/conv.py`)
- clients: Adam lr 1e-3 (fresh state per task), batch {st['batch']},
  {local}; delay-aware rate lr0 / (sqrt(epoch+1) (1 + beta delay)) with
  beta = {args.delay_beta} and delay = the client's expected task duration
  in time units, fixed at dispatch; early stopping with patience 10{patience_note}; NLL
- server: `afl` (every M returned clients, w <- (1 - lr) w + lr sum n_k
  s(tau_k) w_k / sum n_k s(tau_k), lr {args.afl_lr}, s = polynomial a=0.5);
  FedAvg: a cohort of M, example-weighted mean, barrier
- delays: lognormal device speeds (sigma 1) x work x exponential jitter;
  one time unit = a mean-size client on a median device
- {R} rounds per run; M = {', '.join(map(str, ctx.ms))} (AFL) and FedAvg
  at M = {m0}; the paper's loss of a round = the mean training loss of its
  M client updates (each client's mean over its local steps)

## Results at round {R} (mean +- 95% interval over seeds)

| run | paper's loss | test loss | test accuracy | simulated time | mean staleness |
|---|---|---|---|---|---|
{chr(10).join(res)}

Participation in the first seed's AFL M={m0} run: min {ps['min']}, max
{ps['max']}, coefficient of variation {ps['cv']:.2f}
(`fig2_participation.png`). Per-round values: `history.csv` (every seed,
in a `seed` column) and `summary.csv` (mean, 95% half-width and the
interval clipped to the metric's range); the slopes and differences
behind the verdicts: `summary.json`.

## What was shortened

{'The paper trains 10 local epochs per client update for ' + str(PAPER[name]['rounds']) + ' rounds. Here each client update is ' + local + ', runs are ' + str(R) + ' rounds, and M is ' + ', '.join(map(str, ctx.ms)) + ' (the paper: 3..8). ' if shortened else ''}{est}

## Provenance

{prov.markdown()}"""


DATA_NOTE_CIFAR = (
    "\n**Data: CIFAR-10 here is the JPEG-decoded copy "
    "(`cifar10_jpeg_bytes.npz`, lossy, about 30 dB PSNR to the "
    "originals), read by `experiment.load_data` through "
    "`datasets.load_cifar10_jpeg`. Accuracies are not comparable "
    "one-to-one with results on the original images. The library's "
    "ResNet-20 has the paper's 1x1 projection shortcuts (272,474 "
    "parameters).**\n")

