"""The AFL paper's experiments (Forootani and Iervolino 2025, arXiv:2508.01675).

Shared by ``afl_mnist.py`` (MNIST, the paper's CNN) and ``afl_cifar10.py``
(CIFAR-10, ResNet-20); a helper module, not a script.

Setting (the paper's Algorithm 1 and its experiments): 10 clients,
Dirichlet(0.5) labels, M clients per round (M in flight in the
asynchronous run, a cohort of M in synchronous FedAvg), Adam at lr 1e-3,
batch 64, with the delay-aware client rate ``lr0 / (sqrt(epoch + 1)
(1 + beta * delay))`` (``client.delay_beta``, ``client.epoch_decay``; the
delay is the client's expected task duration, fixed at dispatch) and early
stopping with patience 10, NLL loss, server rule ``afl`` (every M returned
clients, the normalised average of their models weighted by data size and
staleness). Each configuration runs for several seeds (a seed sets the
Dirichlet partition, the device speeds, the schedule and the
initialisation).

Two losses are recorded per round: the paper's "server loss" (the mean
local training loss of the round's M clients) and the server model's test
loss and accuracy. Figures:

1. both losses of AFL against rounds at the default M (mean over seeds,
   95% band);
2. client participation (first seed);
3. the paper's loss for each M against rounds and client updates;
4. asynchronous AFL against synchronous FedAvg at the default M, against
   rounds and simulated time.

A "round" of the asynchronous run is M client updates (one server version:
``afl`` averages the round's M returned models); the synchronous run
advances one version per round of M. Simulated time comes from the
scheduler: lognormal device speeds (sigma 1) times local work times
exponential jitter; ``delays.mean`` is set so that a client of mean size on
a median device takes 1 time unit, which is also the unit of the delay in
the delay-aware rate.

``PAPER`` holds the paper's numbers beside which ours are reported (its
figures' values, read from the result arrays the authors published with
their code, since the figures give no table) and what their code does
differently from the algorithm the paper states.

``--smoke``: 2 rounds of one local step, the default M and FedAvg, two
seeds, on generated images (``common.smoke_data``), with the MLP in place
of the paper's CNN / ResNet-20 (whose compilation alone takes ~10 s here;
the library's tests cover those models), written to ``--out``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

import common

SETTINGS = {
    "mnist": dict(
        title="AFL paper, MNIST (10 clients, Dirichlet(0.5), paper CNN)",
        file="mnist.npz", data_name="mnist", model="mnist_cnn",
        default_m=5, batch=64,
        full=dict(rounds=1000, epochs=10, steps=None, test_subset=None,
                  ms=(3, 4, 5, 6, 7, 8), seeds=(0, 1, 2)),
        default=dict(rounds=10, epochs=None, steps=16, test_subset=2000,
                     ms=(3, 5, 8), seeds=(0, 1, 2)),
        quick=dict(rounds=4, epochs=None, steps=16, test_subset=1000,
                   ms=(3, 8), seeds=(0, 1, 2))),
    "cifar10": dict(
        title="AFL paper, CIFAR-10 (10 clients, Dirichlet(0.5), ResNet-20)",
        file="cifar10_jpeg_bytes.npz", data_name="cifar10",
        model="resnet20", default_m=5, batch=64,
        full=dict(rounds=200, epochs=10, steps=None, test_subset=None,
                  ms=(3, 4, 5, 6, 7, 8), seeds=(0, 1, 2)),
        default=dict(rounds=10, epochs=None, steps=8, test_subset=1000,
                     ms=(3, 5, 8), seeds=(0, 1, 2)),
        quick=dict(rounds=3, epochs=None, steps=4, test_subset=500,
                   ms=(3, 8), seeds=(0, 1, 2))),
}
SMOKE = dict(rounds=2, epochs=None, steps=1, test_subset=100, ms=(),
             seeds=(0, 1))

# The paper's numbers. Its text gives no table; its figures plot the
# "server loss" (mean local training loss of the round's clients) per
# round, and these values are read from the result arrays that the authors
# published with their code (repository Ali-Forootani/AFL_non_convex_non_iid,
# src/results; one run per M, no seed set), which the figures plot.
PAPER = {
    "mnist": dict(
        rounds=1000, epochs=10,
        # first round whose server loss is below 0.1, by M
        rounds_to_01={3: 89, 4: 82, 5: 69, 6: 63, 7: 60, 8: 41},
        # server loss at rounds 10 and 20, by M
        loss_r10={3: 0.642, 4: 0.682, 5: 0.682, 6: 0.687, 7: 0.525,
                  8: 0.413},
        loss_r20={3: 0.513, 4: 0.436, 5: 0.366, 6: 0.355, 7: 0.370,
                  8: 0.186},
        loss_r1={3: 1.377, 4: 1.533, 5: 1.324, 6: 1.433, 7: 1.410, 8: 1.391},
        # synchronous against asynchronous at M = 5
        sync_rounds_to_01=52, sync_mean_r1_100=0.228, async_mean_r1_100=0.280),
    "cifar10": dict(
        rounds=200, epochs=10,
        rounds_to_01={3: 10, 4: 8, 5: 6, 6: 6, 7: 4, 8: 5},
        loss_r10={3: 0.098, 4: 0.067, 5: 0.055, 6: 0.056, 7: 0.032,
                  8: 0.039},
        loss_r20={3: 0.048, 4: 0.038, 5: 0.034, 6: 0.028, 7: 0.018,
                  8: 0.018},
        loss_r1={3: 0.787, 4: 0.744, 5: 0.706, 6: 0.801, 7: 0.684, 8: 0.701},
        sync_rounds_to_01=5, sync_mean_r1_100=0.032, async_mean_r1_100=0.036),
}
PAPER_CODE_NOTE = (
    "How the paper's experiments were run (from the authors' published "
    "code, which the paper's text does not contradict where we could read "
    "it): the server's average is never sent back to the clients, so each "
    "client keeps training its own model, 10 epochs every time it is "
    "selected; the aggregation is the plain data-size-weighted average "
    "(no staleness penalty); the delay in the delay-aware rate is the "
    "constant maximum delay (2 s, times 0.01), so the rate is "
    "lr0 / (1.02 sqrt(epoch + 1)); every round waits for its M clients "
    "(the asynchronous and synchronous scripts differ only by a random "
    "sleep); no seed is set and each M is run once. The paper's \"server "
    "loss\" therefore measures how well each client has fit its own "
    "shard after 10 x (times selected) epochs, and more clients per round "
    "means every client is trained more often per round. This experiment "
    "runs the algorithm as the paper states it: a client starts from the "
    "server model it was dispatched with.")


def parser(name):
  p = common.base_parser(__doc__.splitlines()[0] + f" ({name})")
  p.add_argument("--full", action="store_true",
                 help="the paper's length (10 local epochs, M = 3..8, "
                      "1000 rounds for MNIST / 200 for CIFAR-10): days on "
                      "this CPU, see the summary's estimate")
  p.add_argument("--rounds", type=common.positive_int, default=None,
                 help="rounds per run (a round is M client updates)")
  p.add_argument("--epochs", type=common.positive_int, default=None,
                 help="local epochs (the paper: 10)")
  p.add_argument("--steps", type=common.positive_int, default=None,
                 help="fixed local steps instead of epochs")
  p.add_argument("--ms", type=common.positive_int_list, default=None,
                 help="comma-separated clients per round for figure 3")
  p.add_argument("--seeds", type=common.int_list, default=None,
                 help="comma-separated seeds (default 0,1,2)")
  p.add_argument("--delay-beta", type=float, default=0.01,
                 help="beta of the delay-aware client rate (the authors' "
                      "code: 0.01)")
  p.add_argument("--test-subset", type=common.positive_int, default=None,
                 help="evaluate on the first N test examples")
  p.add_argument("--afl-lr", type=float, default=1.0,
                 help="server step of the afl rule toward the round's "
                      "weighted average (rule.afl_lr; 1: the paper)")
  return p


def make_config(st, data_path, *, m, rounds, epochs, steps, beta, seed,
                rule="afl", num_clients=10, selection="uniform"):
  from fedasync_jax import config as config_lib
  client = {"optimizer": "adam", "lr": 1e-3, "batch_size": st["batch"],
            "delay_beta": beta, "epoch_decay": True, "patience": 10}
  if steps is None:
    client["epochs"] = epochs
  else:
    client["steps"] = steps
  return config_lib.from_dict({
      "data": {"name": st["data_name"], "path": str(data_path),
               "num_clients": num_clients, "partition": "dirichlet",
               "alpha": 0.5, "seed": seed},
      "model": {"name": st["model"]},
      "client": client,
      "rule": {"name": rule, "params": (
          {"clients_per_round": m} if rule == "afl" else None)},
      "delays": {"speeds": "lognormal", "sigma": 1.0, "jitter": "exponential",
                 "mean": 1.0},
      "run": {"concurrency": m, "num_updates": rounds * m,
              "num_rounds": rounds if rule == "fedavg" else None,
              "eval_every": m, "seed": seed, "selection": selection}})


def time_unit_mean(fed, cfg) -> float:
  """``delays.mean`` that makes a mean-size client on a median device take
  one time unit."""
  c = cfg.client
  work = (fed.train.counts.mean() * c.epochs if c.steps is None
          else c.steps * c.batch_size)
  return 1.0 / float(work)


def resolve(name, args):
  """The run's length and settings from the mode and the options."""
  st = SETTINGS[name]
  if args.smoke:  # the MLP: the paper's CNN / ResNet-20 compile for ~10 s
    st = dict(st, model="mlp")
  mode = (SMOKE if args.smoke else st["quick"] if args.quick
          else st["full"] if args.full else st["default"])
  steps = args.steps if args.steps is not None else (
      None if args.epochs is not None else mode["steps"])
  ms = tuple(args.ms) if args.ms else mode["ms"]
  seeds = tuple(args.seeds) if args.seeds else mode["seeds"]
  m0 = st["default_m"]
  epochs = args.epochs or mode["epochs"] or 1
  subset = (args.test_subset if args.test_subset is not None
            else mode["test_subset"])
  return SimpleNamespace(
      name=name, st=st, args=args, mode=mode,
      rounds=args.rounds or mode["rounds"], steps=steps, epochs=epochs,
      local_work=(f"{epochs} epochs" if steps is None else f"{steps} steps"),
      ms=tuple(sorted(set(ms) | {m0})), m0=m0, seeds=seeds,
      subset=subset, test_examples=subset or "all")


def parse_args(name, argv):
  """The parsed command line, its run checked before anything is written
  (a bad value is one line and exit status 2: ``common.parse``)."""
  def check(args):
    ctx = resolve(name, args)
    for rule in ("afl", "fedavg"):  # or ConfigError
      make_config(ctx.st, "(the data file, checked later)", m=ctx.m0,
                  rounds=ctx.rounds, epochs=ctx.epochs, steps=ctx.steps,
                  beta=args.delay_beta, seed=ctx.seeds[0], rule=rule)
  return common.parse(parser(name), argv, check)


LENGTH_OPTIONS = {"--rounds": "rounds", "local work (--steps, --epochs)":
                  "local_work", "--ms": "ms", "--seeds": "seeds",
                  "--test-subset": "test_examples"}


def length(ctx) -> str:
  """The summary's first line (``common.run_length``)."""
  return common.run_length(
      ctx, lambda argv: resolve(ctx.name, parser(ctx.name).parse_args(argv)),
      LENGTH_OPTIONS, has_full=True, smoke=ctx.args.smoke,
      quick=ctx.args.quick)


def labels(ctx):
  """Run labels: AFL for every M, then FedAvg at the default M."""
  return [f"afl_M{m}" for m in ctx.ms] + [f"fedavg_M{ctx.m0}"]


def per_round(r, m, rounds):
  """One run's per-round rows: the paper's loss (mean local training loss
  of the round's M client updates), the server's test loss and accuracy at
  the round's end, and its simulated time."""
  loss = np.asarray(r.out.arrivals["train_loss"], float)
  if loss.size != rounds * m:
    raise RuntimeError(f"expected {rounds * m} client updates, got "
                       f"{loss.size}")
  evals = {e["client_updates"]: e for e in r.history}
  rows = []
  for k in range(1, rounds + 1):
    e = evals[k * m]
    rows.append({"round": k, "client_updates": k * m,
                 "simulated_time": e["simulated_time"],
                 "client_train_loss": float(np.nanmean(
                     loss[(k - 1) * m:k * m])),
                 "test_loss": e["test_loss"],
                 "test_accuracy": e["test_accuracy"]})
  return rows


def run_all(ctx, data_path, out_dir, say):
  """Every configuration for every seed; returns ``(rows, runs, feds)``:
  the per-round rows (also written to history.csv as they come), the
  first seed's runs ``{label: Run}`` and the loaded data per seed."""
  from fedasync_jax import experiment
  a = ctx.args
  rows, runs, feds = [], {}, {}
  for seed in ctx.seeds:
    base = make_config(ctx.st, data_path, m=ctx.m0, rounds=ctx.rounds,
                       epochs=ctx.epochs, steps=ctx.steps, beta=a.delay_beta,
                       seed=seed)
    fed = feds[seed] = experiment.load_data(base)
    mean = time_unit_mean(fed, base)
    say(f"seed {seed}: {fed.train.num_clients} clients, sizes "
        f"{fed.train.counts.tolist()}")
    for label in labels(ctx):
      rule, m = label.split("_M")
      m = int(m)
      cfg = make_config(ctx.st, data_path, m=m, rounds=ctx.rounds,
                        epochs=ctx.epochs, steps=ctx.steps, beta=a.delay_beta,
                        seed=seed, rule=rule)
      cfg = common.with_fields(cfg, delays={"mean": mean},
                               rule={"afl_lr": a.afl_lr})
      s = common.build(cfg, test_subset=ctx.subset, fed=fed)
      r = common.simulate(s, cfg, label=f"{label} seed {seed}", log=say)
      new = [{"run": label, "rule": rule, "clients_per_round": m,
              "seed": seed, "wall_s": r.wall_s,
              "mean_staleness": float(r.out.arrivals["staleness"].mean()),
              **row} for row in per_round(r, m, ctx.rounds)]
      rows.extend(new)
      say(f"  {label} seed {seed}: {r.wall_s:.0f} s; round {ctx.rounds}: "
          f"client train loss {new[-1]['client_train_loss']:.4f}, test loss "
          f"{new[-1]['test_loss']:.4f}, accuracy "
          f"{new[-1]['test_accuracy']:.4f}")
      if seed == ctx.seeds[0]:
        runs[label] = r
      common.write_rows(out_dir / "history.csv", rows)
  return rows, runs, feds


# ---------------------------------------------------------------------------
# Aggregates over seeds.


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


# ---------------------------------------------------------------------------
# Figures.


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


# ---------------------------------------------------------------------------
# Summary.


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


def length_text(ctx, rows, feds):
  """(shortened?, local work, examples/s, full-length estimate text)."""
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
  shortened = not length(ctx).startswith(common.FULL_TEXT)
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


def summary_markdown(ctx, rows, runs, feds, comp, prov):
  st, args, name, R, m0 = ctx.st, ctx.args, ctx.name, ctx.rounds, ctx.m0
  shortened, local, rate, est = length_text(ctx, rows, feds)
  patience_note = (
      "" if ctx.steps is None else
      " (with fixed local steps a task is one epoch, so neither this nor "
      "the rate's epoch decay acts in these runs)")
  header = length(ctx) + (" See \"What was shortened\"." if shortened
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


def main(name, argv=None):
  """Experiment 1 (``name="mnist"``) or 2 (``"cifar10"``)."""
  args = parse_args(name, argv)
  prov = common.Provenance()
  ctx = resolve(name, args)
  out_dir, data_path = common.prepare(args, f"afl_{name}", ctx.st["file"])
  say = common.Log(out_dir)
  t = time.perf_counter()
  rows, runs, feds = run_all(ctx, data_path, out_dir, say)
  say(f"all runs done ({time.perf_counter() - t:.0f} s)")
  common.write_rows(out_dir / "summary.csv", aggregate(ctx, rows))
  comp = comparisons(ctx, rows)
  figures(ctx, rows, runs, feds, out_dir)
  (out_dir / "summary.md").write_text(
      summary_markdown(ctx, rows, runs, feds, comp, prov))
  common.write_json(out_dir / "summary.json", {
      "comparisons": comp, "paper": PAPER[name], "seeds": list(ctx.seeds),
      "ms": list(ctx.ms), "rounds": ctx.rounds, "steps": ctx.steps,
      "epochs": ctx.epochs, "wall_s": prov.wall(), "command": prov.command,
      "quick": args.quick, "smoke": args.smoke, "full": args.full})
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()
