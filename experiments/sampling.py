"""Experiment 5: client sampling with and without replacement (the AFL
paper's analysis, Forootani and Iervolino 2025, arXiv:2508.01675, Sec. 2.2).

``run.selection=uniform`` draws each new client uniformly among the idle
ones (with replacement across draws); ``without_replacement`` walks a fresh
random permutation of the population per pass (skipping clients still in
flight), so every client is drawn about equally often.

Part A (schedule only, many seeds, no training): the spread of per-client
participation (coefficient of variation of applied updates per client)
against the number of client updates, in the AFL paper's setting (10
clients, 5 in flight) and a larger population (100 clients, 10 in flight),
both with lognormal device speeds.

Part B (training): the AFL MNIST setting of experiment 1 (10 clients,
Dirichlet(0.5), 5 in flight, Adam 1e-3 with the delay-aware rate, rule
``afl``) with both schemes and several seeds: server test loss curves.

Recorded (experiments/results/sampling/): ``python experiments/sampling.py
--quick --out experiments/results/sampling``.
``--smoke``: part A with 2 seeds, part B with the MLP, 2 rounds
of one local step and one seed, on generated images, written to ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

SMOKE_OUTPUT = "summary.md"
SCHEMES = ("uniform", "without_replacement")
M = 5  # clients in flight (a "round" is M updates)


def part_a(fed_counts_10, fed_counts_100, seeds, say):
  """Participation spread of both schemes, schedules only."""
  from fedasync_jax import delays, scheduler
  out = {}
  for tag, counts, c, total in (("10 clients, 5 in flight", fed_counts_10,
                                 5, 600),
                                ("100 clients, 10 in flight", fed_counts_100,
                                 10, 3000)):
    n = len(counts)
    checkpoints = np.unique(np.linspace(n, total, 12).astype(int))
    for sel in SCHEMES:
      cvs = np.zeros((len(seeds), len(checkpoints)))
      rho = []
      example = None
      for i, seed in enumerate(seeds):
        speed = delays.device_speeds("lognormal", n, seed=seed, sigma=1.0)
        dm = delays.delay_model(speed, counts / counts.mean(),
                                jitter="exponential")
        s = scheduler.asynchronous(dm, num_updates=total, concurrency=c,
                                   selection=sel, seed=seed)
        clients = s.arrival_client
        for j, k in enumerate(checkpoints):
          p = np.bincount(clients[:k], minlength=n)
          cvs[i, j] = p.std() / p.mean()
        p = np.bincount(clients, minlength=n)
        rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
        rho.append(np.corrcoef(rank(p), rank(-speed))[0, 1])
        if i == 0:
          example = p
      out[(tag, sel)] = dict(checkpoints=checkpoints, cv=cvs,
                             rho=float(np.mean(rho)), example=example)
      say(f"[A] {tag}, {sel}: participation CV after {total} updates "
          f"{cvs[:, -1].mean():.3f} (mean of {len(seeds)} seeds); Spearman "
          f"(participation, device speed) {np.mean(rho):.2f}")
  return out


def parse_args(argv):
  p = common.base_parser(__doc__.splitlines()[0])
  p.add_argument("--model", default=None, choices=("mlp", "mnist_cnn"),
                 help="model of part B (quick: mlp, full: mnist_cnn)")
  p.add_argument("--rounds", type=common.positive_int, default=None,
                 help="rounds of 5 updates (default 40)")
  p.add_argument("--steps", type=common.positive_int, default=None,
                 help="local steps (quick 10; full: 10 epochs)")
  p.add_argument("--seeds", type=common.int_list, default=None,
                 help="training seeds (quick 0..9, full 0..4)")
  return common.parse(p, argv, resolve)


def resolve(args):
  """Fills in the defaults of ``--smoke`` / ``--quick`` / the full
  length."""
  short = args.quick or args.smoke
  args.model = args.model or ("mlp" if short else "mnist_cnn")
  args.rounds = args.rounds or (2 if args.smoke else 40)
  if args.steps is None:
    args.steps = 1 if args.smoke else 10 if args.quick else None
  args.local = "10 epochs" if args.steps is None else args.steps
  args.seeds = args.seeds or ([0] if args.smoke else list(range(10))
                              if args.quick else list(range(5)))
  args.a_seeds = list(range(2 if args.smoke else 20))
  args.test_subset = 100 if args.smoke else 2000 if args.quick else None


LENGTH_OPTIONS = {"--model": "model", "--rounds": "rounds",
                  "--steps": "local", "--seeds": "seeds"}


def length(args) -> str:
  """The summary's first line (``common.run_length``)."""
  return common.run_length(args, parse_args, LENGTH_OPTIONS,
                           smoke=args.smoke, quick=args.quick)


def part_b(args, st, data_path, fed, mean, out_dir, say):
  """AFL training with both schemes and every seed; ``{(sel, seed): Run}``."""
  import afl_paper
  runs, hist = {}, []
  for sel in SCHEMES:
    for seed in args.seeds:
      cfg = afl_paper.make_config(st, data_path, m=M, rounds=args.rounds,
                                  epochs=10, steps=args.steps, beta=0.5,
                                  seed=seed, selection=sel)
      # Same data partition for every seed; the seed changes the device
      # speeds, the schedule, the initial model and the training keys.
      cfg = common.with_fields(cfg, delays={"mean": mean},
                               data={"seed": 0})
      s = common.build(cfg, fed=fed, test_subset=args.test_subset)
      r = common.simulate(s, cfg, label=f"{sel} seed {seed}", log=say)
      part = r.out.participation
      say(f"[B] {sel} seed {seed}: {r.wall_s:.0f} s; final loss "
          f"{r.history[-1]['test_loss']:.4f}, acc "
          f"{r.history[-1]['test_accuracy']:.4f};"
          f" participation {part.tolist()}")
      runs[(sel, seed)] = r
      hist.extend({"selection": sel, "seed": seed, **e} for e in r.history)
      common.write_rows(out_dir / "history.csv", hist)
      say.run_done()
  return runs


def figure(args, a, runs, out_dir):
  """sampling.png: participation CV, one seed's participation, losses."""
  seeds, m = args.seeds, M
  fig = common.figure(figsize=(15, 4.2))
  axs = fig.subplots(1, 3)
  tags = sorted({t for t, _ in a})
  for k, tag in enumerate(tags):
    for i, sel in enumerate(SCHEMES):
      d = a[(tag, sel)]
      mu, sd = d["cv"].mean(0), d["cv"].std(0)
      axs[0].plot(d["checkpoints"], mu, ls="-" if k == 0 else "--",
                  color=f"C{i}", label=f"{sel}, {tag}")
      axs[0].fill_between(d["checkpoints"], mu - sd, mu + sd, color=f"C{i}",
                          alpha=0.12)
  axs[0].set_xscale("log")
  axs[0].set_xlabel("client updates")
  axs[0].set_ylabel("participation CV (std/mean over clients)")
  axs[0].set_title(f"A: participation spread ({len(args.a_seeds)} seeds)")
  axs[0].legend(fontsize=7)
  axs[0].grid(alpha=0.3)
  tag10 = [t for t in tags if t.startswith("10 ")][0]
  w = 0.4
  for i, sel in enumerate(SCHEMES):
    ex = a[(tag10, sel)]["example"]
    axs[1].bar(np.arange(len(ex)) + (i - 0.5) * w, ex, width=w,
               color=f"C{i}", label=sel)
  axs[1].set_xlabel("client")
  axs[1].set_ylabel("updates in 600 arrivals")
  axs[1].set_title(f"A: participation, {tag10}, seed 0")
  axs[1].legend(fontsize=7)
  for i, sel in enumerate(SCHEMES):
    hs = [runs[(sel, sd)].history for sd in seeds]
    x = np.array([e["client_updates"] / m for e in hs[0]])
    y = np.array([[e["test_loss"] for e in h] for h in hs])
    axs[2].plot(x, y.mean(0), color=f"C{i}", label=f"{sel} (mean)")
    for row in y:
      axs[2].plot(x, row, color=f"C{i}", alpha=0.25, lw=0.8)
  axs[2].set_xlabel(f"round ({m} client updates)")
  axs[2].set_ylabel("server test loss")
  axs[2].set_title(f"B: AFL, {args.model}, {len(seeds)} seeds")
  axs[2].legend(fontsize=7)
  axs[2].grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_dir / "sampling.png", dpi=110)


def part_a_rows(a):
  return [f"| {tag} | {sel} | {a[(tag, sel)]['checkpoints'][-1]} | "
          f"{a[(tag, sel)]['cv'][:, -1].mean():.3f} +- "
          f"{a[(tag, sel)]['cv'][:, -1].std():.3f} | "
          f"{a[(tag, sel)]['rho']:.2f} |"
          for tag in sorted({t for t, _ in a}) for sel in SCHEMES]


def part_b_rows(args, runs):
  """Part B's table rows and the verdict on the difference."""
  seeds, lb, finals = args.seeds, [], {}
  for sel in SCHEMES:
    f_loss = [runs[(sel, sd)].history[-1]["test_loss"] for sd in seeds]
    f_acc = [runs[(sel, sd)].history[-1]["test_accuracy"] for sd in seeds]
    cv = [common.participation_stats(runs[(sel, sd)].out.participation)["cv"]
          for sd in seeds]
    # Loss variability along the run: std over seeds, averaged over evals.
    y = np.array([[e["test_loss"] for e in runs[(sel, sd)].history]
                  for sd in seeds])
    auc = y[:, 1:].mean(1)
    finals[sel] = (auc.mean(), auc.std())
    lb.append(f"| {sel} | {np.mean(f_loss):.4f} +- {np.std(f_loss):.4f} | "
              f"{auc.mean():.4f} +- {auc.std():.4f} | "
              f"{np.mean(f_acc):.4f} +- {np.std(f_acc):.4f} | "
              f"{y[:, 1:].std(0).mean():.4f} | {np.mean(cv):.3f} |")
  (au, bu), (aw, bw) = finals[SCHEMES[0]], finals[SCHEMES[1]]
  noise = 2 * np.hypot(bu, bw) / np.sqrt(len(seeds))
  verdict = (
      f"Mean loss over the run: without replacement {aw:.4f} vs uniform "
      f"{au:.4f} (difference {aw - au:+.4f}; two standard errors of the "
      f"difference of the means over {len(seeds)} seeds: {noise:.4f}). "
      + ("At this length the difference is within two standard errors (not "
         "significant)."
         if abs(aw - au) < noise else
         ("Sampling without replacement gives the lower loss."
          if aw < au else "Uniform sampling gives the lower loss.")))
  return lb, verdict


def summary_markdown(args, base, a, runs, prov):
  """summary.md (the text the recorded summary was written with)."""
  la = part_a_rows(a)
  lb, verdict = part_b_rows(args, runs)
  model, rounds, m, seeds, steps = (args.model, args.rounds, M, args.seeds,
                                    args.steps)
  c = base.client
  local = (f"{c.steps} local steps of batch {c.batch_size}" if steps else
           "10 local epochs")
  md = f"""# Client sampling with and without replacement (AFL paper's analysis)

{length(args)}

## A. Participation spread (schedule only, {len(args.a_seeds)} seeds, lognormal speeds)

| population | selection | updates | participation CV | Spearman(participation, device speed) |
|---|---|---|---|---|
{chr(10).join(la)}

Without replacement, every client is drawn about once per pass, so the
spread of participation is much smaller and shrinks with the run length;
with replacement (uniform among idle clients) it stays larger. In the
10-client setting both schemes still favour fast devices (a client still in
flight cannot be drawn, and slow clients are in flight most of the time);
with 100 clients and 10 in flight, without-replacement sampling almost
equalises participation.

## B. Training (AFL, MNIST, 10 clients, 5 in flight)

Model {model}; Adam 1e-3, {local}, delay-aware rate (beta 0.5), rule `afl`;
{rounds} rounds of {m} updates; seeds {seeds} (the seed changes device
speeds, schedule, initial model and training keys; the data partition is
fixed); server loss on {'the first ' + str(args.test_subset) if args.test_subset else 'all 10,000'}
test examples.

| selection | final test loss | mean loss over the run | final test accuracy | std over seeds of the loss (mean over the curve) | participation CV |
|---|---|---|---|---|---|
{chr(10).join(lb)}

{verdict}

Figure `sampling.png`: (left) participation CV against updates, (middle)
one seed's participation per client, (right) server loss curves (thin: each
seed, thick: mean).

## Length

{'Quick: MLP instead of the paper CNN, ' + local + ', ' + str(len(seeds)) + ' seeds. ' if args.quick else ''}Full length (the paper's CNN, 10 local epochs, 5 seeds; hours on this CPU):

    python experiments/sampling.py

## Provenance

{prov.markdown()}"""
  return md


def main(argv=None):
  args = parse_args(argv)
  prov = common.Provenance()
  out_dir, data_path = common.prepare(args, "sampling")
  say = common.Log(out_dir)
  import afl_paper
  from fedasync_jax import experiment, partition
  st = dict(afl_paper.SETTINGS["mnist"], model=args.model)
  base = afl_paper.make_config(st, data_path, m=M, rounds=args.rounds,
                               epochs=10, steps=args.steps, beta=0.5, seed=0)
  fed = experiment.load_data(base)
  mean = afl_paper.time_unit_mean(fed, base)
  with np.load(data_path) as raw:
    counts100 = np.array([len(q) for q in partition.dirichlet(
        raw["y_train"], 100, alpha=0.5, seed=0)], float)
  a = part_a(fed.train.counts.astype(float), counts100, args.a_seeds, say)
  say.plan(len(SCHEMES) * len(args.seeds))  # part B's training runs
  with common.interruptible(say):
    runs = part_b(args, st, data_path, fed, mean, out_dir, say)
  figure(args, a, runs, out_dir)
  common.write_text(
      out_dir / "summary.md",
      summary_markdown(args, base, a, runs, prov))
  out_dir = common.finish(out_dir)
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()


if __name__ == "__main__":
  main()
