"""The figures of the AFL paper's experiment (``afl_paper.py``): both
losses of AFL at the default M (``fig1_server_loss.png``), client
participation (``fig2_participation.png``), the paper's loss for each M
(``fig3_clients_per_round.png``) and asynchronous AFL against synchronous
FedAvg (``fig4_async_vs_sync.png``), each a mean over seeds with a 95%
band.
"""

from __future__ import annotations

import numpy as np

import common
from afl_paper_stats import series


def band(ax, x, v, label, bounds=(0.0, None), **kw):
  """Mean over seeds (columns of ``v``) with a 95% band clipped to
  ``bounds`` (default: a loss, >= 0)."""
  stats = np.array([common.interval_of(row, bounds)[:3] for row in v])
  m = stats[:, 0]
  low, high = np.where(np.isfinite(stats[:, 1:]), stats[:, 1:], m[:, None]).T
  line, = ax.plot(x, m, marker=".", label=label, **kw)
  ax.fill_between(x, low, high, alpha=0.2, color=line.get_color())


def loss_axis(ax, values):
  v = np.asarray([x for x in np.ravel(values) if np.isfinite(x) and x > 0])
  if v.size and v.max() / v.min() > 4:
    ax.set_yscale("log")
    ax.set_ylabel(ax.get_ylabel() + " (log scale)")


def figures(ctx, rows, runs, feds, out_dir):
  m0, R = ctx.m0, ctx.rounds
  rr = np.arange(1, R + 1)
  n = len(ctx.seeds)
  # Figure 1: both losses of AFL at the default M.
  fig = common.figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  main = f"afl_M{m0}"
  band(ax1, rr, series(rows, main, "client_train_loss"),
       "paper's server loss (mean client training loss)")
  band(ax1, rr, series(rows, main, "test_loss"), "server model, test loss")
  ax1.set_xlabel("round")
  ax1.set_ylabel("loss (NLL)")
  ax1.set_title(f"AFL, M={m0}: mean over {n} seeds, 95% band")
  ax1.legend(fontsize=8)
  band(ax2, rr, series(rows, main, "test_accuracy"), "test accuracy",
       bounds=common.BOUNDS["test_accuracy"],
       color="C2")
  ax2.set_xlabel("round")
  ax2.set_ylabel("server model, test accuracy")
  for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_dir / "fig1_server_loss.png", dpi=110)
  # Figure 2: participation of the first seed's main run.
  part = runs[main].out.participation
  counts = feds[ctx.seeds[0]].train.counts
  fig = common.figure(figsize=(6, 4))
  ax = fig.subplots()
  ax.bar(np.arange(len(part)), part)
  for i, (p, k) in enumerate(zip(part, counts)):
    ax.text(i, p, f"{k}", ha="center", va="bottom", fontsize=7)
  ax.set_xlabel("client (label above bar: its number of examples)")
  ax.set_ylabel("applied updates")
  ax.set_title(f"participation, AFL M={m0}, seed {ctx.seeds[0]}")
  fig.tight_layout()
  fig.savefig(out_dir / "fig2_participation.png", dpi=110)
  # Figure 3: the paper's loss by M, per round and per client update.
  fig = common.figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  for m in ctx.ms:
    v = series(rows, f"afl_M{m}", "client_train_loss")
    band(ax1, rr, v, f"M={m}")
    band(ax2, rr * m, v, f"M={m}")
  ax1.set_xlabel("round")
  ax2.set_xlabel("client updates")
  for ax in (ax1, ax2):
    ax.set_ylabel("paper's server loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out_dir / "fig3_clients_per_round.png", dpi=110)
  # Figure 4: asynchronous against synchronous.
  fig = common.figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  for label, name, color in ((main, "asynchronous (afl)", "C0"),
                             (f"fedavg_M{m0}", "synchronous (fedavg)", "C1")):
    v = series(rows, label, "test_loss")
    band(ax1, rr, series(rows, label, "client_train_loss"),
         f"{name}, paper's loss", color=color)
    band(ax1, rr, v, f"{name}, test loss", linestyle="--", color=color)
    t = np.nanmean(series(rows, label, "simulated_time"), axis=1)
    band(ax2, t, v, name, color=color)
  ax1.set_xlabel(f"round ({m0} client updates)")
  ax2.set_xlabel("simulated time (mean over seeds)")
  ax1.set_ylabel("loss")
  ax2.set_ylabel("server test loss")
  for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out_dir / "fig4_async_vs_sync.png", dpi=110)
