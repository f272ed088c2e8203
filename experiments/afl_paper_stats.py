"""Aggregates over seeds of the AFL paper's experiment (``afl_paper.py``):
the run labels, the per-round series of one run over seeds, the rows of
``summary.csv`` (means and 95% intervals per round), and the slopes,
differences and ratios that the summary's verdicts rest on.
"""

from __future__ import annotations

import numpy as np

import common


def labels(ctx):
  """Run labels: AFL for every M, then FedAvg at the default M."""
  return [f"afl_M{m}" for m in ctx.ms] + [f"fedavg_M{ctx.m0}"]


def series(rows, label, key):
  """``(rounds, seeds)`` array of ``key`` for run ``label``."""
  sel = [r for r in rows if r["run"] == label]
  seeds = sorted({r["seed"] for r in sel})
  rounds = sorted({r["round"] for r in sel})
  out = np.full((len(rounds), len(seeds)), np.nan)
  for r in sel:
    out[rounds.index(r["round"]), seeds.index(r["seed"])] = r[key]
  return out


def aggregate(ctx, rows):
  """Per (run, round): mean and 95% half-width over seeds of each metric
  (the rows of ``summary.csv``), and the interval clipped to the metric's
  range (``common.BOUNDS``)."""
  out = []
  for label in labels(ctx):
    cols = {k: series(rows, label, k) for k in (
        "simulated_time", "client_train_loss", "test_loss", "test_accuracy")}
    for i in range(ctx.rounds):
      row = {"run": label, "round": i + 1}
      for k, v in cols.items():
        m, h, n = common.mean_ci(v[i])
        _, low, high, _ = common.interval_of(v[i], common.BOUNDS[k])
        row[f"{k}_mean"], row[f"{k}_ci95"], row["seeds"] = m, h, n
        row[f"{k}_low"], row[f"{k}_high"] = low, high
      out.append(row)
  return out


def m_slopes(ctx, rows, key, round_):
  """Per seed, the least-squares slope of ``key`` at round ``round_``
  against M over the AFL runs (per added client per round)."""
  ms = np.asarray(ctx.ms, float)
  if ms.size < 2:
    return [float("nan")] * len(ctx.seeds)
  vals = np.stack([series(rows, f"afl_M{m}", key)[round_ - 1]
                   for m in ctx.ms])            # (len(ms), seeds)
  return [float(np.polyfit(ms, vals[:, j], 1)[0])
          for j in range(vals.shape[1])]


def spearman(x, y) -> float:
  rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
  return float(np.corrcoef(rx, ry)[0, 1])


def comparisons(ctx, rows):
  """The numbers the summary's verdicts rest on."""
  R, m0 = ctx.rounds, ctx.m0
  sync, main = f"fedavg_M{m0}", f"afl_M{m0}"
  c = {}
  for key in ("client_train_loss", "test_loss", "test_accuracy"):
    c[f"slope_{key}"] = m_slopes(ctx, rows, key, R)
    mean_over = {m: np.nanmean(series(rows, f"afl_M{m}", key), axis=0)
                 for m in ctx.ms}
    c[f"slope_mean_{key}"] = [
        float(np.polyfit(np.asarray(ctx.ms, float),
                         [mean_over[m][j] for m in ctx.ms], 1)[0])
        if len(ctx.ms) > 1 else float("nan")
        for j in range(len(ctx.seeds))]
    a, s = series(rows, main, key), series(rows, sync, key)
    c[f"async_minus_sync_final_{key}"] = (a[-1] - s[-1]).tolist()
    c[f"async_minus_sync_mean_{key}"] = (np.nanmean(a, 0)
                                         - np.nanmean(s, 0)).tolist()
  ta = series(rows, main, "simulated_time")[-1]
  ts = series(rows, sync, "simulated_time")[-1]
  c["time_ratio_sync_over_async"] = (ts / ta).tolist()
  first = series(rows, main, "client_train_loss")[0]
  last = series(rows, main, "client_train_loss")[-1]
  c["main_first_round_loss"], c["main_last_round_loss"] = (
      first.tolist(), last.tolist())
  return c
