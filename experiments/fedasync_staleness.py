"""Experiment 3: FedAsync's staleness study as the paper sets it up (Xie,
Koyejo, Gupta, "Asynchronous Federated Optimization", arXiv:1903.03934).

Staleness is prescribed, as in the paper: each update's staleness is drawn
uniformly on ``{0, ..., max}`` (``prescribed.uniform_staleness``) for max in
{4, 16}, and ``prescribed.from_staleness`` builds a schedule that realises
exactly those values (arrival ``t`` trains from server version ``t - s_t``;
values are clipped to ``t`` at the start). The local objective has the
paper's proximal term ``rho/2 ||x - x_t||^2`` (``--prox-rho``, default
0.01: we could not find the paper's value, so this is our choice).

FedAsync mixes every arrival at once: ``w <- (1 - a_t) w + a_t w_k`` with
``a_t = alpha * s(tau)``: ``s`` = constant, polynomial (a=0.5) and hinge
(a=10, b=4), each with alpha in {0.6, 0.9}. Adaptive rules also lower the
mean mixing weight, so each adaptive rule gets a *matched control*: the
constant rule whose alpha is the adaptive rule's mean mixing weight over
the run's applied updates, ``mean_t alpha * s(tau_t)``, computed exactly
from the same schedule's staleness. Adaptive minus control isolates
adaptivity from step size. Members whose per-update mixing weights are
identical (hinge at max 4 is constant: ``s(tau) = 1`` for ``tau <= 4``)
are run once and reported under each name.

The members of one (max, seed) run as one compiled program
(``fedasync_jax.sweep.sweep``: the staleness family is a traced member
index, ``mixed_staleness``) on one schedule, one initial model and one
client PRNG key (common random numbers, so differences are paired by
seed). Reference line: synchronous FedAvg (no proximal term) with cohorts
of ``max/2 + 1`` clients, the mean number of FedAsync clients in flight,
compared at equal client updates. Data: MNIST, 100 clients,
Dirichlet(0.5); model: the 784-200-200-10 MLP; clients: SGD, fixed local
steps (the paper used a CNN on CIFAR-10 and an LSTM on WikiText-2).

Every number in summary.md comes from results.csv / history.csv /
summary.json of the same run; intervals are mean +- t-based 95% CI over
seeds (``sweep_outputs.interval``), of per-seed paired differences where a
difference is reported.

The fixed setting (staleness families, members, matched controls), the
claims with their verdicts, and the figure and summary text are in
``fedasync_staleness_setting.py``, ``fedasync_staleness_claims.py`` and
``fedasync_staleness_report.py``; this script holds the command line, the
runs and ``claims_from``.

Recorded (experiments/results/fedasync_staleness/): ``python
experiments/fedasync_staleness.py --out
experiments/results/fedasync_staleness`` (the default length).
``--quick``: 500 updates, 3 seeds. ``--full``: 10,000 updates, 3 seeds
(the time estimate is in the recorded summary). ``--smoke``: 20 clients
of generated images, 40 updates, 2 seeds, written to ``--out``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402
from fedasync_staleness_claims import aggregates, claims  # noqa: E402
from fedasync_staleness_report import (  # noqa: E402
    comparisons_csv, figure, summary_markdown)
from fedasync_staleness_setting import (  # noqa: E402
    ADAPTIVE, DEFAULT_UPDATES, FULL_UPDATES, KINDS, QUICK_UPDATES, label,
    members_for, mixed_staleness, staleness_weights)

SMOKE_OUTPUT = "summary.md"


def parse_args(argv):
  p = common.base_parser(__doc__.splitlines()[0])
  p.add_argument("--full", action="store_true",
                 help=f"paper-like length: {FULL_UPDATES} client updates "
                      f"per run, 3 seeds")
  p.add_argument("--updates", type=common.positive_int, default=None,
                 help=f"client updates per run (quick {QUICK_UPDATES}, "
                      f"default {DEFAULT_UPDATES}, full {FULL_UPDATES})")
  p.add_argument("--seeds", type=common.int_list, default=None,
                 help="comma-separated seeds (default 0,1,2)")
  p.add_argument("--max-staleness", type=common.int_list, default="4,16",
                 help="comma-separated maximum staleness values")
  p.add_argument("--prox-rho", type=common.number(0, 1e18), default=0.01,
                 help="proximal weight rho of the local objective")
  p.add_argument("--steps", type=common.positive_int, default=10,
                 help="local SGD steps")
  p.add_argument("--batch", type=common.positive_int, default=32)
  p.add_argument("--lr", type=common.number(0, 1e18, low_open=True),
                 default=0.05, help="client SGD rate")
  p.add_argument("--eval-every", type=common.positive_int, default=None,
                 help="evaluation interval in versions (default 50); the "
                      "last version is always evaluated")
  p.add_argument("--batching", default="auto",
                 choices=("auto", "map", "vmap", "map_batched"),
                 help="how sweep.sweep batches a wave's clients (auto: the "
                      "library default, map on CPU)")
  p.add_argument("--no-fedavg", action="store_true",
                 help="skip the FedAvg reference line")
  p.add_argument("--test-subset", type=common.positive_int, default=None,
                 help="test examples for the curves (default 2000); final "
                      "accuracies always use the full test set")
  return common.parse(p, argv, resolve)


def resolve(args):
  """Fills in the defaults of ``--smoke`` / ``--quick`` / ``--full`` and
  checks them (``ValueError``, ``ConfigError``)."""
  smoke = args.smoke
  args.updates = args.updates or (
      40 if smoke else QUICK_UPDATES if args.quick else FULL_UPDATES
      if args.full else DEFAULT_UPDATES)
  args.seeds = args.seeds or ([0, 1] if smoke else [0, 1, 2])
  args.maxes = sorted(set(args.max_staleness))
  args.test_subset = args.test_subset or (100 if smoke else 2000)
  args.clients = 20 if smoke else 100
  args.eval_every = args.eval_every or (10 if smoke else 50)
  if smoke:
    args.steps = 2
  if args.clients < max(args.maxes) + 1:
    raise ValueError(f"--max-staleness {max(args.maxes)} needs more than "
                     f"{args.clients} clients")
  base_config(args, "(the data file, checked later)")  # or ConfigError


LENGTH_OPTIONS = {"--updates": "updates", "--seeds": "seeds",
                  "--max-staleness": "maxes", "--no-fedavg": "no_fedavg"}


def length(args) -> str:
  """The summary's first line (``common.run_length``)."""
  return common.run_length(args, parse_args, LENGTH_OPTIONS, has_full=True,
                           smoke=args.smoke, quick=args.quick)


def base_config(args, data_path):
  """The validated configuration of the runs' data, model and clients."""
  from fedasync_jax import config as config_lib
  return config_lib.from_dict({
      "data": {"name": "mnist", "path": str(data_path),
               "num_clients": args.clients, "partition": "dirichlet",
               "alpha": 0.5, "seed": 0},
      "model": {"name": "mlp"},
      "client": {"optimizer": "sgd", "lr": args.lr,
                 "batch_size": args.batch, "steps": args.steps,
                 "prox_rho": args.prox_rho},
      "rule": {"name": "fedasync"},
      "run": {"num_updates": args.updates, "eval_every": args.eval_every}})


def make_setup(args, data_path, say):
  """Data, model, client update and evaluators shared by every run."""
  import jax
  from fedasync_jax import experiment, models
  base = base_config(args, data_path)
  fed = experiment.load_data(base)
  say(f"MNIST: {fed.train.num_clients} clients, sizes "
      f"{fed.train.counts.min()}..{fed.train.counts.max()} (mean "
      f"{fed.train.counts.mean():.0f})")
  s0 = common.build(base, fed=fed)
  n = args.test_subset
  return SimpleNamespace(
      fed=fed, model=s0.model, update=s0.update,
      eval_fn=models.make_evaluator(s0.model, fed.x_test[:n],
                                    fed.y_test[:n]),
      full_eval=jax.jit(models.make_evaluator(s0.model, fed.x_test,
                                              fed.y_test)),
      rows=[], hist=[], curves={}, sched_rows=[], timing=[])

def record(su, mx, seed, name, out, *, kind, alpha, mean_weight,
           control_of, ran_as, wall, tau):
  """Adds one run's curve, history rows and result row."""
  h = common.history_of(out)
  su.curves.setdefault((mx, name), []).append(h)
  for e in h:
    su.hist.append({"max_staleness": mx, "seed": seed, "run": name, **e})
  accs = [e["test_accuracy"] for e in h]
  fin = su.full_eval(out.state.params)
  su.rows.append({
      "max_staleness": mx, "seed": seed, "run": name, "rule": kind,
      "alpha": alpha, "mean_mixing_weight": mean_weight,
      "control_of": control_of, "same_run_as": "" if ran_as == name
      else ran_as, "final_accuracy": accs[-1],
      "final_full_test_accuracy": float(fin["accuracy"]),
      "mean_acc_run": float(np.mean(accs[1:] or accs)),
      "final_loss": h[-1]["test_loss"],
      "applied": int(out.arrivals["applied"].sum()),
      "mean_staleness": float(np.mean(out.arrivals["staleness"])),
      "max_staleness_realised": int(np.max(out.arrivals["staleness"])),
      "prescribed_staleness_realised": bool(np.array_equal(
          out.arrivals["staleness"], tau)) if tau is not None else "",
      "wall_s": wall})


def run_setting(args, su, mx, seed, out_dir, say):
  """The FedAsync sweep (adaptive rules and matched controls) and FedAvg
  for one maximum staleness and seed."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax import (delays, executor, prescribed, rules, scheduler,
                            sweep, tasks)
  n = su.fed.train.num_clients
  want = prescribed.uniform_staleness(args.updates, mx, seed=seed)
  sched = prescribed.from_staleness(want, num_clients=n, seed=seed)
  tau = sched.staleness
  members, runs = members_for(tau)
  ran = [m for m in members if runs[m[0]] == m[0]]
  su.sched_rows.append({
      "max_staleness": mx, "seed": seed, "mean_staleness": float(tau.mean()),
      "max": int(tau.max()), "clipped": int(np.sum(want != tau)),
      "max_in_flight": sched.stats["max_in_flight"],
      "realised_concurrency": sched.stats["realised_concurrency"],
      **{f"mean_weight[{label(k, a)}]": float(np.mean(
          a * staleness_weights(k, tau))) for k, a in ADAPTIVE}})
  say(f"[max={mx} seed={seed}] staleness uniform on 0..{mx}: mean "
      f"{tau.mean():.2f} ({int(np.sum(want != tau))} clipped at the start),"
      f" max in flight {sched.stats['max_in_flight']}; {len(ran)} distinct "
      f"runs for {len(members)} members")

  def make_rule(hp):
    return rules.fedasync(hp["alpha"], mixed_staleness(hp["kind"]))
  hp = {"kind": jnp.asarray([k for _, k, _, _ in ran], jnp.int32),
        "alpha": jnp.asarray([a for _, _, a, _ in ran], jnp.float32)}
  params = su.model.init(jax.random.key(seed))
  batching = None if args.batching == "auto" else args.batching
  t0 = time.perf_counter()
  outs = sweep.sweep(make_rule, hp, su.update, params, su.fed.train, sched,
                     keys=jax.random.key(seed),
                     hparams=tasks.task_hparams(sched,
                                                prox_rho=args.prox_rho),
                     eval_fn=su.eval_fn, eval_every=args.eval_every,
                     batching=batching)
  outs = [common.final_eval(o, su.eval_fn) for o in outs]
  wall = time.perf_counter() - t0
  su.timing.append({"what": "fedasync", "max_staleness": mx, "seed": seed,
                    "member_runs": len(ran), "updates": args.updates,
                    "wall_s": wall})
  say(f"  sweep of {len(ran)} runs x {args.updates} updates: {wall:.0f} s "
      f"({len(ran) * args.updates / wall:.0f} updates/s)")
  by_name = {m[0]: o for m, o in zip(ran, outs)}
  for name, k, a, ctrl in members:
    record(su, mx, seed, name, by_name[runs[name]], kind=KINDS[k], alpha=a,
           mean_weight=float(np.mean(a * staleness_weights(k, tau))),
           control_of=ctrl, ran_as=runs[name], wall=wall, tau=tau)
  if not args.no_fedavg:
    c = mx // 2 + 1
    dm = delays.delay_model(np.ones(n), np.ones(n), jitter="none")
    ssched = scheduler.synchronous(dm, num_rounds=args.updates // c,
                                   cohort_size=c, seed=seed)
    t0 = time.perf_counter()
    out = executor.simulate(rules.fedavg(), su.update, params, su.fed.train,
                            ssched, key=jax.random.key(seed),
                            eval_fn=su.eval_fn,
                            eval_every=max(1, round(args.eval_every / c)))
    out = common.final_eval(out, su.eval_fn)
    wall = time.perf_counter() - t0
    su.timing.append({"what": "fedavg", "max_staleness": mx, "seed": seed,
                      "member_runs": 1, "updates": ssched.num_arrivals,
                      "wall_s": wall})
    record(su, mx, seed, "FedAvg", out, kind="fedavg", alpha=float("nan"),
           mean_weight=float("nan"), control_of="", ran_as="FedAvg",
           wall=wall, tau=None)
    su.rows[-1]["cohort"] = c
    say(f"  FedAvg (cohort {c}, {ssched.num_arrivals} updates): {wall:.0f} "
        f"s, final acc {su.rows[-1]['final_full_test_accuracy']:.4f}")
  common.write_rows(out_dir / "history.csv", su.hist)
  common.write_rows(out_dir / "results.csv", su.rows)
  common.write_rows(out_dir / "schedules.csv", su.sched_rows)


# ---------------------------------------------------------------------------
# The claims of a finished run, recomputed from its saved results.


def read_rows(path) -> list:
  """The rows of a saved ``results.csv`` with their numbers parsed (as
  ``record`` made them; empty cells stay ``""``)."""
  import csv

  def value(v):
    for kind in (int, float):
      try:
        return kind(v)
      except ValueError:
        pass
    return v
  with open(path, newline="") as f:
    return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(f)]


def claims_from(folder) -> list:
  """``claims`` recomputed from a finished run's ``results.csv`` (the
  per-seed results are all they need), e.g. after a change of the
  claims' rules, without rerunning the experiment."""
  rows = read_rows(Path(folder) / "results.csv")
  args = SimpleNamespace(maxes=sorted({r["max_staleness"] for r in rows}))
  return claims(args, SimpleNamespace(rows=rows))


def main(argv=None):
  args = parse_args(argv)
  prov = common.Provenance()
  out_dir, data_path = common.prepare(args, "fedasync_staleness")
  say = common.Log(out_dir)
  say.plan(len(args.maxes) * len(args.seeds))  # (max, seed) settings
  with common.interruptible(say):
    su = make_setup(args, data_path, say)
    for mx in args.maxes:
      for seed in args.seeds:
        run_setting(args, su, mx, seed, out_dir, say)
        say.run_done()
  figure(args, su, out_dir)
  agg = aggregates(args, su)
  cl = claims(args, su)
  fa = [t for t in su.timing if t["what"] == "fedasync"]
  fa_s = sum(t["wall_s"] for t in fa)
  fa_mu = sum(t["member_runs"] * t["updates"] for t in fa)
  fv_s = sum(t["wall_s"] for t in su.timing if t["what"] == "fedavg")
  scale = FULL_UPDATES * 3 / (args.updates * len(args.seeds))
  js = {
      "settings": {k: getattr(args, k) for k in (
          "updates", "seeds", "maxes", "prox_rho", "steps", "batch", "lr",
          "eval_every", "test_subset", "clients", "quick", "smoke", "full")},
      "paper": "Xie, Koyejo, Gupta, Asynchronous Federated Optimization, "
               "arXiv:1903.03934",
      "staleness": "prescribed: uniform on {0..max} per update "
                   "(prescribed.uniform_staleness + from_staleness)",
      "control": "constant alpha = mean over applied updates of "
                 "alpha * s(tau) of the adaptive rule, same schedule",
      "prescribed_staleness_realised": all(
          r["prescribed_staleness_realised"] for r in su.rows
          if r["rule"] != "fedavg"),
      "schedules": su.sched_rows,
      "aggregates": agg, "claims": cl,
      "timing": {"fedasync_s": fa_s, "fedasync_member_updates": fa_mu,
                 "fedavg_s": fv_s, "estimated_full_s": (fa_s + fv_s) * scale,
                 "full_updates": scale * sum(t["member_runs"] * t["updates"]
                                             for t in su.timing),
                 "runs": su.timing},
      "provenance": {"command": prov.command, "machine": prov.machine,
                     "date": prov.date, "wall_s_before_summary": prov.wall()}}
  common.write_json(out_dir / "summary.json", js)
  common.write_rows(out_dir / "comparisons.csv", comparisons_csv(cl))
  common.write_text(
      out_dir / "summary.md",
      summary_markdown(args, su, agg, cl, js, prov, length(args)))
  out_dir = common.finish(out_dir)
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()


if __name__ == "__main__":
  main()
