"""The AFL paper's experiments (Forootani and Iervolino 2025, arXiv:2508.01675).

Shared by ``afl_mnist.py`` (MNIST, the paper's CNN) and ``afl_cifar10.py``
(CIFAR-10, ResNet-20); a helper module, not a script. Setting (the
paper's): 10 clients, Dirichlet(0.5) labels, M clients per round (M in
flight in the asynchronous run, a cohort of M in synchronous FedAvg), Adam
at lr 1e-3 with the delay-aware client rate
``lr0 / (sqrt(epoch + 1) (1 + beta * delay))`` (``client.delay_beta``,
``client.epoch_decay``; the delay is the client's expected task duration,
fixed at dispatch) and early stopping with patience 10 (the paper's code),
NLL loss, server rule ``afl`` (the paper's aggregation: every M returned
clients, the normalised average of their models weighted by data size and
staleness). Figures:

1. server (test) loss against rounds for the default M;
2. client participation histogram;
3. server loss for M = 3..8 clients per round;
4. asynchronous AFL against synchronous FedAvg (same client training).

A "round" of the asynchronous run is M client updates (one server version
for ``afl``, which averages the round's M returned models); the synchronous
run advances one version per round of M.
Simulated time comes from the scheduler: lognormal device speeds (sigma 1)
times local work times exponential jitter; ``delays.mean`` is set so that a
client of mean size on a median device takes 1 time unit, which is also the
unit of the delay in the delay-aware rate.

``--smoke``: 2 rounds of one local step, the default M and FedAvg only, on
generated images (``common.smoke_data``), with the MLP in place of the
paper's CNN / ResNet-20 (whose compilation alone takes ~10 s here; the
library's tests cover those models), written to ``--out``.
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
        default_m=5, ms=(3, 4, 5, 6, 7, 8), batch=64,
        full=dict(rounds=20, epochs=10, steps=None, test_subset=None),
        quick=dict(rounds=12, epochs=None, steps=10, test_subset=2000,
                   ms=(3, 5, 8)),
        speed_note="The CNN trains at roughly 1,300 examples/s on this CPU "
                   "when the machine is idle"),
    "cifar10": dict(
        title="AFL paper, CIFAR-10 (10 clients, Dirichlet(0.5), ResNet-20)",
        file="cifar10_jpeg_bytes.npz", data_name="cifar10",
        model="resnet20", default_m=6, ms=(3, 4, 5, 6, 7, 8), batch=64,
        full=dict(rounds=20, epochs=10, steps=None, test_subset=None),
        quick=dict(rounds=8, epochs=None, steps=3, test_subset=1000,
                   ms=(3, 6, 8)),
        speed_note="ResNet-20 trains at roughly 300 examples/s on this CPU "
                   "when the machine is idle"),
}
SMOKE = dict(rounds=2, epochs=None, steps=1, test_subset=100, ms=())


def parser(name):
  p = common.base_parser(__doc__.splitlines()[0] + f" ({name})")
  p.add_argument("--rounds", type=int, default=None,
                 help="rounds per run (a round is M client updates)")
  p.add_argument("--epochs", type=int, default=None,
                 help="local epochs (the paper: 10)")
  p.add_argument("--steps", type=int, default=None,
                 help="fixed local steps instead of epochs")
  p.add_argument("--ms", default=None,
                 help="comma-separated clients per round for figure 3")
  p.add_argument("--delay-beta", type=float, default=0.5,
                 help="beta of the delay-aware client rate")
  p.add_argument("--test-subset", type=int, default=None,
                 help="evaluate on the first N test examples")
  p.add_argument("--afl-lr", type=float, default=1.0,
                 help="server step of the afl rule toward the round's "
                      "weighted average (rule.afl_lr; 1: the paper)")
  p.add_argument("--compare-afl-lr", type=float, default=None,
                 help="also run AFL with the default M and this server "
                      "step (an extra line in figures 1 and 4)")
  p.add_argument("--seed", type=int, default=0)
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
  mode = SMOKE if args.smoke else st["quick"] if args.quick else st["full"]
  steps = args.steps if args.steps is not None else (
      None if args.epochs is not None else mode["steps"])
  ms = (tuple(int(x) for x in args.ms.split(",")) if args.ms else
        mode.get("ms", st["ms"]))
  m0 = st["default_m"]
  return SimpleNamespace(
      name=name, st=st, args=args, rounds=args.rounds or mode["rounds"],
      steps=steps, epochs=args.epochs or mode["epochs"] or 1,
      ms=tuple(sorted(set(ms) | {m0})), m0=m0,
      subset=(args.test_subset if args.test_subset is not None
              else mode["test_subset"]))


def run_all(ctx, fed, data_path, out_dir, say):
  """AFL for every M, FedAvg at the default M (and AFL with
  ``--compare-afl-lr``); returns ``{label: (cfg, Run)}`` and the label of
  the comparison run (or None). Writes history.csv as it goes."""
  a = ctx.args
  mean = time_unit_mean(fed, make_config(
      ctx.st, data_path, m=ctx.m0, rounds=ctx.rounds, epochs=ctx.epochs,
      steps=ctx.steps, beta=a.delay_beta, seed=a.seed))
  runs, hist_rows = {}, []

  def run(label, afl_lr=None, **kw):
    cfg = make_config(ctx.st, data_path, rounds=ctx.rounds, epochs=ctx.epochs,
                      steps=ctx.steps, beta=a.delay_beta, seed=a.seed, **kw)
    cfg = common.with_fields(cfg, delays={"mean": mean}, rule={
        "afl_lr": a.afl_lr if afl_lr is None else afl_lr})
    s = common.build(cfg, test_subset=ctx.subset, fed=fed)
    say(f"run {label}: {s.schedule.num_arrivals} client updates, "
        f"{int(s.schedule.stats['num_versions'])} versions")
    r = common.simulate(s, cfg, label=label, log=say)
    say(f"  done in {r.wall_s:.0f} s: final test loss "
        f"{r.history[-1]['loss']:.4f}, accuracy "
        f"{r.history[-1]['accuracy']:.4f}, mean staleness "
        f"{r.out.arrivals['staleness'].mean():.2f}")
    runs[label] = (cfg, r)
    m = cfg.run.concurrency
    hist_rows.extend({"run": label, "rule": cfg.rule.name,
                      "clients_per_round": m, "round": h["updates"] / m, **h}
                     for h in r.history)
    common.write_rows(out_dir / "history.csv", hist_rows)

  for m in ctx.ms:
    run(f"afl_M{m}", m=m)
  run(f"fedavg_M{ctx.m0}", m=ctx.m0, rule="fedavg")
  cmp_label = None
  if a.compare_afl_lr is not None:
    cmp_label = f"afl_M{ctx.m0}_lr{a.compare_afl_lr:g}"
    run(cmp_label, m=ctx.m0, afl_lr=a.compare_afl_lr)
  return runs, cmp_label


# ---------------------------------------------------------------------------
# Figures.


def loss_axis(ax, values):
  v = np.asarray([x for x in values if np.isfinite(x) and x > 0])
  if v.size and v.max() / v.min() > 4:
    ax.set_yscale("log")
    ax.set_ylabel(ax.get_ylabel() + " (log scale)")


def xy(r, m, key="loss"):
  """(rounds, simulated times, ``key`` values) of a run's evaluations."""
  h = r.history
  return (np.array([e["updates"] / m for e in h]),
          np.array([e["time"] for e in h]), np.array([e[key] for e in h]))


def fig_server_loss(ctx, runs, cmp_label, out_dir):
  """Figure 1: server loss and accuracy of AFL at the default M."""
  m0, a = ctx.m0, ctx.args
  main_run = runs[f"afl_M{m0}"][1]
  fig = common.figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  rr, _, ll = xy(main_run, m0)
  ax1.plot(rr * m0, ll, marker="o", label=f"afl_lr {a.afl_lr:g}")
  _, _, aa = xy(main_run, m0, "accuracy")
  ax2.plot(rr * m0, aa, marker="o", color="C2", label=f"afl_lr {a.afl_lr:g}")
  if cmp_label:
    rc, _, lc = xy(runs[cmp_label][1], m0)
    _, _, ac = xy(runs[cmp_label][1], m0, "accuracy")
    ax1.plot(rc * m0, lc, marker="s", color="C1",
             label=f"afl_lr {a.compare_afl_lr:g}")
    ax2.plot(rc * m0, ac, marker="s", color="C1",
             label=f"afl_lr {a.compare_afl_lr:g}")
    ax1.legend()
    ax2.legend()
  ax1.set_xlabel("client updates (M per AFL round and server version)")
  ax1.set_ylabel("server test loss (NLL)")
  loss_axis(ax1, ll)
  ax1.set_title(f"AFL, M={m0} clients per round")
  top = ax1.secondary_xaxis("top", functions=(lambda v: v / m0,
                                              lambda r: r * m0))
  top.set_xlabel("round")
  ax2.set_xlabel("client updates")
  ax2.set_ylabel("test accuracy")
  for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_dir / "fig1_server_loss.png", dpi=110)


def fig_participation(ctx, part, counts, out_dir):
  """Figure 2: applied updates per client."""
  fig = common.figure(figsize=(6, 4))
  ax = fig.subplots()
  ax.bar(np.arange(len(part)), part)
  for i, (p, n) in enumerate(zip(part, counts)):
    ax.text(i, p, f"{n}", ha="center", va="bottom", fontsize=7)
  ax.set_xlabel("client (label above bar: its number of examples)")
  ax.set_ylabel("applied updates")
  ax.set_title(f"participation, AFL M={ctx.m0}, uniform sampling")
  fig.tight_layout()
  fig.savefig(out_dir / "fig2_participation.png", dpi=110)


def loss_figure(lines, round_label, path):
  """Server test loss against rounds (left) and simulated time (right)
  of ``(label, run, M)`` lines (figures 3 and 4)."""
  fig = common.figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  allv = []
  for lab, r, m in lines:
    rr, tt, ll = xy(r, m)
    allv += list(ll)
    ax1.plot(rr, ll, marker=".", label=lab)
    ax2.plot(tt, ll, marker=".", label=lab)
  ax1.set_xlabel(round_label)
  ax2.set_xlabel("simulated time")
  for ax in (ax1, ax2):
    ax.set_ylabel("server test loss")
    loss_axis(ax, allv)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def figures(ctx, runs, cmp_label, fed, out_dir):
  m0 = ctx.m0
  fig_server_loss(ctx, runs, cmp_label, out_dir)
  fig_participation(ctx, runs[f"afl_M{m0}"][1].out.participation,
                    fed.train.counts, out_dir)
  loss_figure([(f"M={m}", runs[f"afl_M{m}"][1], m) for m in ctx.ms],
              "round (M client updates)",
              out_dir / "fig3_clients_per_round.png")
  lines = [("asynchronous (afl)", runs[f"afl_M{m0}"][1], m0),
           ("synchronous (fedavg)", runs[f"fedavg_M{m0}"][1], m0)]
  if cmp_label:
    lines.append((f"asynchronous (afl, afl_lr {ctx.args.compare_afl_lr:g})",
                  runs[cmp_label][1], m0))
  loss_figure(lines, f"round ({m0} client updates)",
              out_dir / "fig4_async_vs_sync.png")


# ---------------------------------------------------------------------------
# Summary.


def final(r):
  return r.history[-1]


def table_rows(ctx, runs, cmp_label):
  """The results table's rows (markdown)."""
  rounds, m0 = ctx.rounds, ctx.m0

  def row(rule, m, r, stale=True):
    f, st = final(r), r.out.arrivals["staleness"]
    tau = f"{st.mean():.2f} | {int(st.max())}" if stale else "0 | 0"
    return (f"| {rule} | {m} | {rounds} | {tau} | {f['time']:.2f} | "
            f"{f['loss']:.4f} | {f['accuracy']:.4f} | {r.wall_s:.0f} |")
  rows = [row("afl", m, runs[f"afl_M{m}"][1]) for m in ctx.ms]
  rows.append(row("fedavg", m0, runs[f"fedavg_M{m0}"][1], stale=False))
  if cmp_label:
    rows.append(row(f"afl (afl_lr {ctx.args.compare_afl_lr:g})", m0,
                    runs[cmp_label][1]))
  return rows


def trend(r):
  h = r.history
  ls = np.array([e["loss"] for e in h])
  last = ls[-min(4, len(ls) - 1):] if len(ls) > 1 else ls
  change = np.abs(np.diff(ls)).mean() if len(ls) > 1 else 0.0
  return (f"{ls[0]:.2f} -> {ls[-1]:.2f} (mean of the last {len(last)} "
          f"evaluations {last.mean():.2f}, mean |change| between "
          f"evaluations {change:.2f}), accuracy "
          f"{h[0]['accuracy']:.2f} -> {h[-1]['accuracy']:.2f}")


def reading_paragraph(ctx, runs, cmp_label):
  """The summary's "Reading" paragraph."""
  a, m0, rounds = ctx.args, ctx.m0, ctx.rounds
  main_run, sync_run = runs[f"afl_M{m0}"][1], runs[f"fedavg_M{m0}"][1]
  return (
      f"Server test loss over {rounds} rounds with M={m0}: AFL (afl_lr "
      f"{a.afl_lr:g}) {trend(main_run)}; synchronous FedAvg "
      f"{trend(sync_run)}"
      + (f"; AFL with afl_lr {a.compare_afl_lr:g} "
         f"{trend(runs[cmp_label][1])}" if cmp_label else "")
      + ". The server is evaluated once per round, so a single final value "
      "of a noisy curve says little; compare the means. Like FedAvg, `afl` "
      "replaces the server model by an average of M client models once per "
      "round; unlike FedAvg, the M models are the next M to return (no "
      "barrier), started from stale server models, and weighted by "
      "n_k s(tau_k)"
      + (f"; a server step of afl_lr {a.compare_afl_lr:g} moves only that "
         f"far toward the round's average" if cmp_label else "")
      + ". M changes the staleness (mean "
      + ", ".join(f"{runs[f'afl_M{m}'][1].out.arrivals['staleness'].mean():.1f}"
                  f" at M={m}" for m in ctx.ms)
      + ") and the simulated time per round. In simulated time AFL is much "
      f"faster than FedAvg (no barrier): it finished {rounds} rounds at "
      f"t={main_run.history[-1]['time']:.1f} against "
      f"{sync_run.history[-1]['time']:.1f}.")


DATA_NOTE_CIFAR = (
    "\n**Data: CIFAR-10 here is the JPEG-decoded copy "
    "(`cifar10_jpeg_bytes.npz`, lossy, about 30 dB PSNR to the "
    "originals), read by `experiment.load_data` through "
    "`datasets.load_cifar10_jpeg` (because `data.path` ends in "
    "`jpeg_bytes.npz`) and normalised with the CIFAR-10 channel "
    "statistics. Accuracies are not comparable one-to-one with results "
    "on the original PNG images.**\n\n"
    "The initial server loss (~32) is that of the freshly initialised "
    "ResNet-20 evaluated with its initial batch-norm running statistics "
    "(mean 0, variance 1), which do not match the activations; it falls to "
    "~2-5 after the first round, as the running statistics are mixed in "
    "from the clients.\n")


def participation_numbers(ctx, runs, fed):
  """Participation statistics of the main run and the Spearman
  correlation of participation with device speed."""
  from fedasync_jax import delays as delays_lib
  main_cfg, main_run = runs[f"afl_M{ctx.m0}"]
  part = main_run.out.participation
  d = main_cfg.delays
  speeds = delays_lib.device_speeds(d.speeds, fed.train.num_clients,
                                    seed=main_cfg.run.seed, mean=d.mean,
                                    sigma=d.sigma)

  def rank(v):
    return np.argsort(np.argsort(v))
  return (common.participation_stats(part),
          float(np.corrcoef(rank(part), rank(-speeds))[0, 1]))


def length_numbers(ctx, runs, fed):
  """(shortened?, local-work text, examples/s over all runs, full-length
  client updates)."""
  st, a = ctx.st, ctx.args
  c = runs[f"afl_M{ctx.m0}"][0].client
  local = (f"{c.epochs} local epoch{'s' if c.epochs != 1 else ''} over the "
           f"client's data" if c.steps is None else
           f"{c.steps} local steps of batch {c.batch_size} "
           f"({c.steps * c.batch_size} examples, instead of 10 epochs over "
           f"~{int(fed.train.counts.mean())} examples)")
  work = sum(float(np.sum(r.setup.fed.train.counts[
      r.out.arrivals["client"]])) * (c.epochs if c.steps is None else 0)
      + (len(r.out.arrivals["client"]) * c.steps * c.batch_size
         if c.steps is not None else 0) for _, r in runs.values())
  rate = work / max(sum(r.wall_s for _, r in runs.values()), 1e-9)
  full = st["full"]
  shortened = (a.quick or a.smoke or c.steps is not None
               or ctx.rounds < full["rounds"]
               or (c.steps is None and c.epochs < full["epochs"])
               or tuple(ctx.ms) != tuple(st["ms"]))
  full_updates = (sum(st["ms"]) * full["rounds"]
                  + st["default_m"] * full["rounds"])
  return shortened, local, rate, full_updates


def summary_markdown(ctx, runs, cmp_label, fed, prov):
  """summary.md (the text every recorded summary was written with)."""
  st, args, name = ctx.st, ctx.args, ctx.name
  rounds, ms, m0, subset = ctx.rounds, ctx.ms, ctx.m0, ctx.subset
  main_run, sync_run = runs[f"afl_M{m0}"][1], runs[f"fedavg_M{m0}"][1]
  c = runs[f"afl_M{m0}"][0].client
  rows = table_rows(ctx, runs, cmp_label)
  ps, rho = participation_numbers(ctx, runs, fed)
  shortened, local, rate, full_updates = length_numbers(ctx, runs, fed)
  t_sync_end = sync_run.history[-1]["time"]
  t_async_end = main_run.history[-1]["time"]
  s_same = [e for e in sync_run.history if e["time"] <= t_async_end]
  s_same = s_same[-1] if s_same else sync_run.history[0]
  data_note = DATA_NOTE_CIFAR if name == "cifar10" else ""
  reading = reading_paragraph(ctx, runs, cmp_label)
  full_cmd = f"python experiments/afl_{name}.py"
  header = ("SMOKE RUN (`--smoke`): generated data, a few updates; the "
            "numbers mean nothing." if args.smoke else
            "QUICK RUN (`--quick`): heavily shortened, see below."
            if args.quick else
            "SHORTENED RUN (not `--quick`, but shorter than the paper; see "
            "below)." if shortened else "Full-length run.")
  md = f"""# {st['title']}

{header}
{data_note}
## Setting

- data: {fed.name}, {fed.train.num_clients} clients, Dirichlet(0.5) labels,
  client sizes {fed.train.counts.tolist()} (mean {fed.train.counts.mean():.0f});
  server loss/accuracy on {'the first ' + str(subset) + ' test examples' if subset else 'the full test set'}
- model: {st['model']} (`fedasync_jax.models.{st['model']}` as is; on CPU its
  convolutions use the loop-friendly gradient of `fedasync_jax/conv.py`)
- clients: Adam lr 1e-3, batch {c.batch_size}, {local}; delay-aware rate
  lr0 / (sqrt(epoch+1) (1 + beta delay)) with beta = {args.delay_beta}
  and delay = the client's expected task duration, fixed at dispatch
  (`client.delay_beta`, `client.epoch_decay=true`); early stopping with
  patience {c.patience}; NLL loss
- server: `afl` rule (every M returned clients, w <- (1 - lr) w + lr
  sum n_k s(tau_k) w_k / sum n_k s(tau_k), lr {args.afl_lr}, s = polynomial
  a=0.5); FedAvg baseline: cohort of M, example-weighted mean
- delays: lognormal device speeds (sigma 1) x work x exponential jitter; one
  time unit = a mean-size client on a median device
- {rounds} rounds per run; a round = M client updates (async) or one
  barrier round of M clients (FedAvg)

## Results

| rule | M | rounds | mean staleness | max staleness | simulated time | final test loss | final test acc | wall s |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

- Figure 1 (`fig1_server_loss.png`): AFL with M={m0}: the server test loss
  goes from {main_run.history[0]['loss']:.3f} to {final(main_run)['loss']:.3f}
  over {rounds} rounds ({rounds * m0} client updates); accuracy
  {main_run.history[0]['accuracy']:.3f} -> {final(main_run)['accuracy']:.3f}.
- Figure 2 (`fig2_participation.png`): applied updates per client with
  uniform sampling (among idle clients): min {ps['min']}, max {ps['max']},
  mean {ps['mean']:.1f}, coefficient of variation {ps['cv']:.2f}; Spearman
  correlation between a client's applied updates and its device speed
  (1 / seconds per unit of work): {rho:.2f} (a client in flight cannot be
  drawn, so fast devices, idle more often, tend to be drawn more).
- Figure 3 (`fig3_clients_per_round.png`): final server loss by M:
  {', '.join(f"M={m}: {final(runs[f'afl_M{m}'][1])['loss']:.3f}" for m in ms)}.
  More clients per round means more client updates per round (and more
  staleness: mean staleness grows with M, see the table).
- Figure 4 (`fig4_async_vs_sync.png`): after {rounds} rounds, AFL loss
  {final(main_run)['loss']:.3f} vs FedAvg {final(sync_run)['loss']:.3f}; in
  simulated time, FedAvg needed {t_sync_end:.1f} units for its {rounds}
  rounds (every round waits for its slowest client) while AFL finished its
  {rounds * m0} updates at {t_async_end:.1f}; by that time FedAvg had
  finished {s_same['version']} rounds, with loss {s_same['loss']:.3f}.
  Rounds of AFL are not barriers: a round closes with the M-th client to
  return, whatever version it started from, and its average is weighted by
  n_k s(tau_k).

## Reading

{reading}

## What was shortened

{'The paper trains 10 local epochs per client update. Here each client update is ' + local + ', runs are ' + str(rounds) + ' rounds, and M is ' + ', '.join(map(str, ms)) + ' (the paper: 3..8), so that the whole experiment fits in well under an hour of this shared CPU. ' if shortened else ''}{st['speed_note']}; with 10 local epochs one client update is
10 x ~{int(fed.train.counts.mean())} examples (a client runs
`ceil(n_k / batch)` steps per epoch, its own data only). The full-length
run is

    {full_cmd}

({st['full']['rounds']} rounds, 10 local epochs, M = 3..8 and FedAvg;
{full_updates} client updates in all, about
{full_updates * 10 * fed.train.counts.mean() / rate / 3600:.0f} hours on this CPU at the
{rate:.0f} examples/s measured in this run;
use `--rounds`, `--epochs`/`--steps`, `--ms` to pick an intermediate length).

## Provenance

{prov.markdown()}"""
  return md


def main(name, argv=None):
  """Experiment 1 (``name="mnist"``) or 2 (``"cifar10"``)."""
  args = parser(name).parse_args(argv)
  prov = common.Provenance()
  ctx = resolve(name, args)
  out_dir, data_path = common.prepare(args, f"afl_{name}", ctx.st["file"])
  say = common.Log(out_dir)
  from fedasync_jax import experiment
  t = time.perf_counter()
  fed = experiment.load_data(make_config(
      ctx.st, data_path, m=ctx.m0, rounds=ctx.rounds, epochs=ctx.epochs,
      steps=ctx.steps, beta=args.delay_beta, seed=args.seed))
  say(f"loaded {fed.name}: {fed.train.num_clients} clients, sizes "
      f"{fed.train.counts.tolist()} ({time.perf_counter() - t:.1f} s)")
  runs, cmp_label = run_all(ctx, fed, data_path, out_dir, say)
  figures(ctx, runs, cmp_label, fed, out_dir)
  md = summary_markdown(ctx, runs, cmp_label, fed, prov)
  (out_dir / "summary.md").write_text(md)
  common.write_json(out_dir / "summary.json", {
      "runs": {k: {"final": final(r), "wall_s": r.wall_s,
                   "mean_staleness": float(r.out.arrivals["staleness"].mean()),
                   "participation": r.out.participation.tolist(),
                   "config": cfg} for k, (cfg, r) in runs.items()},
      "wall_s": prov.wall(), "command": prov.command, "quick": args.quick,
      "smoke": args.smoke})
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()
