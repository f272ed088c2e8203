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

``PAPER`` (``afl_paper_numbers.py``) holds the paper's numbers beside
which ours are reported (its figures' values, read from the result arrays
the authors published with their code, since the figures give no table)
and what their code does differently from the algorithm the paper states.
This module holds the settings, the command line and the runs; the
aggregates over seeds, the figures and the summary are in
``afl_paper_stats.py``, ``afl_paper_figures.py`` and
``afl_paper_report.py``.

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
from afl_paper_figures import figures
from afl_paper_numbers import PAPER
from afl_paper_report import summary_markdown
from afl_paper_stats import aggregate, comparisons, labels

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
  p.add_argument("--delay-beta", type=common.number(0, 1e18), default=0.01,
                 help="beta of the delay-aware client rate (the authors' "
                      "code: 0.01)")
  p.add_argument("--test-subset", type=common.positive_int, default=None,
                 help="evaluate on the first N test examples")
  p.add_argument("--afl-lr", type=common.number(0, 1e18), default=1.0,
                 help="server step of the afl rule toward the round's "
                      "weighted average (rule.afl_lr; 1: the paper)")
  return p


def make_config(st, data_path, *, m, rounds, epochs, steps, beta, seed,
                rule="afl", num_clients=10, selection="uniform",
                afl_lr=1.0):
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
      "rule": {"name": rule, "afl_lr": afl_lr, "params": (
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
                  beta=args.delay_beta, seed=ctx.seeds[0], rule=rule,
                  afl_lr=args.afl_lr)
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
      say.run_done()
  return rows, runs, feds


def main(name, argv=None):
  """Experiment 1 (``name="mnist"``) or 2 (``"cifar10"``)."""
  args = parse_args(name, argv)
  prov = common.Provenance()
  ctx = resolve(name, args)
  out_dir, data_path = common.prepare(args, f"afl_{name}", ctx.st["file"])
  say = common.Log(out_dir)
  t = time.perf_counter()
  say.plan(len(ctx.seeds) * len(labels(ctx)))
  with common.interruptible(say):
    rows, runs, feds = run_all(ctx, data_path, out_dir, say)
  say(f"all runs done ({time.perf_counter() - t:.0f} s)")
  common.write_rows(out_dir / "summary.csv", aggregate(ctx, rows))
  comp = comparisons(ctx, rows)
  figures(ctx, rows, runs, feds, out_dir)
  common.write_text(
      out_dir / "summary.md",
      summary_markdown(ctx, rows, runs, feds, comp, prov, length(ctx)))
  common.write_json(out_dir / "summary.json", {
      "comparisons": comp, "paper": PAPER[name], "seeds": list(ctx.seeds),
      "ms": list(ctx.ms), "rounds": ctx.rounds, "steps": ctx.steps,
      "epochs": ctx.epochs, "wall_s": prov.wall(), "command": prov.command,
      "quick": args.quick, "smoke": args.smoke, "full": args.full})
  out_dir = common.finish(out_dir)
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()
