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

SMOKE_OUTPUT = "summary.md"
KINDS = ("constant", "polynomial", "hinge")
ALPHAS = (0.6, 0.9)
POLY_A, HINGE_A, HINGE_B = 0.5, 10.0, 4.0
ADAPTIVE = [(k, a) for k in range(len(KINDS)) for a in ALPHAS]
DEFAULT_UPDATES, FULL_UPDATES, QUICK_UPDATES = 2500, 10000, 500


def label(kind: int, alpha: float) -> str:
  return f"{KINDS[kind]} alpha={alpha}"


def control_label(kind: int, alpha: float) -> str:
  return f"control of {KINDS[kind]} alpha={alpha}"


def mixed_staleness(kind, *, poly_a=POLY_A, hinge_a=HINGE_A, hinge_b=HINGE_B):
  """One staleness function for all three families, chosen by ``kind`` (0
  constant, 1 polynomial, 2 hinge), which may be a traced sweep value."""
  import jax.numpy as jnp

  def fn(tau):
    t = jnp.asarray(tau, jnp.float32)
    poly = jnp.power(1.0 + t, -poly_a)
    hinge = jnp.where(t <= hinge_b, 1.0, 1.0 / (hinge_a * (t - hinge_b) + 1.0))
    return jnp.where(kind == 0, jnp.ones_like(t),
                     jnp.where(kind == 1, poly, hinge))
  return fn


def staleness_weights(kind: int, tau) -> np.ndarray:
  """``s(tau)`` of a family in numpy (float64), as ``mixed_staleness``."""
  t = np.asarray(tau, np.float64)
  if kind == 0:
    return np.ones_like(t)
  if kind == 1:
    return (1.0 + t) ** -POLY_A
  return np.where(t <= HINGE_B, 1.0, 1.0 / (HINGE_A * (t - HINGE_B) + 1.0))


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
  p.add_argument("--prox-rho", type=float, default=0.01,
                 help="proximal weight rho of the local objective")
  p.add_argument("--steps", type=common.positive_int, default=10,
                 help="local SGD steps")
  p.add_argument("--batch", type=common.positive_int, default=32)
  p.add_argument("--lr", type=float, default=0.05, help="client SGD rate")
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


def members_for(tau):
  """The members of one (max, seed): ``[(name, kind, alpha, control_of)]``
  (the matched controls are constant rules at the adaptive rule's mean
  mixing weight over ``tau``), and ``runs``: ``{name: name it is run
  as}`` where members with identical per-update weights share one run."""
  out = [(label(k, a), k, a, "") for k, a in ADAPTIVE]
  out += [(control_label(k, a), 0,
           float(np.mean(a * staleness_weights(k, tau))), label(k, a))
          for k, a in ADAPTIVE if k != 0]
  runs, weights = {}, []
  for name, k, a, _ in out:
    w = (np.float32(a) * staleness_weights(k, tau).astype(np.float32))
    same = [n for n, ww in weights if np.array_equal(ww, w)]
    runs[name] = same[0] if same else name
    if not same:
      weights.append((name, w))
  return out, runs


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
  from fedasync_jax import delays, executor, prescribed, rules, scheduler, sweep, tasks
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
# Aggregation: intervals over seeds, claims and verdicts.

METRICS = {"final_full_test_accuracy": "final acc",
           "mean_acc_run": "mean acc over the run"}


def ci(values) -> dict:
  from fedasync_jax.run.sweep_outputs import interval
  v = np.asarray(values, np.float64)
  m, lo, hi = interval(v)
  return {"mean": float(m), "low": float(lo), "high": float(hi),
          "n": int(v.size)}


def per_seed(su, mx, name, metric) -> dict:
  return {r["seed"]: r[metric] for r in su.rows
          if r["max_staleness"] == mx and r["run"] == name}


def paired(a: dict, b: dict) -> list:
  """``a[seed] - b[seed]`` over the seeds both have."""
  return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def aggregates(args, su) -> dict:
  names = list(dict.fromkeys(r["run"] for r in su.rows))
  lo, hi = min(args.maxes), max(args.maxes)
  out = {"per_run": {}, "change": {}}
  for mx in args.maxes:
    for name in names:
      vals = {m: ci(list(per_seed(su, mx, name, m).values()))
              for m in METRICS}
      mw = [r["mean_mixing_weight"] for r in su.rows
            if r["max_staleness"] == mx and r["run"] == name]
      vals["mean_mixing_weight"] = float(np.mean(mw))
      out["per_run"][f"{name} | max {mx}"] = vals
  if lo != hi:
    for name in names:
      out["change"][name] = {m: ci(paired(per_seed(su, hi, name, m),
                                          per_seed(su, lo, name, m)))
                             for m in METRICS}
  return out


def comparison(desc: str, metric: str, diffs: list, sign: int) -> dict:
  """One paired comparison of ``metric``: the claim is ``sign * mean >
  0``."""
  c = ci(diffs)
  if c["n"] >= 2 and np.isfinite(c["low"]):
    sig = (c["low"] > 0) if sign > 0 else (c["high"] < 0)
    opp = (c["high"] < 0) if sign > 0 else (c["low"] > 0)
  else:
    sig = opp = False
  return {"what": desc, "metric": metric, **c, "claimed_sign": sign,
          "significant_as_claimed": bool(sig),
          "significant_against": bool(opp),
          "mean_as_claimed": bool(sign * c["mean"] > 0)}


def verdict(comps: list) -> str:
  """reproduced: every comparison's 95% CI lies on the claimed side;
  partly: some do, or all means are on the claimed side; else not
  reproduced."""
  if not comps:
    return "not tested"
  if all(c["significant_as_claimed"] for c in comps):
    return "reproduced"
  n_sig = sum(c["significant_as_claimed"] for c in comps)
  n_mean = sum(c["mean_as_claimed"] for c in comps)
  n_against = sum(c["significant_against"] for c in comps)
  why = (f"{n_sig} of {len(comps)} comparisons significant as claimed, "
         f"{n_mean} with the mean as claimed, {n_against} significant "
         f"against")
  if n_sig > 0 or n_mean == len(comps):
    return f"partly ({why})"
  return f"not reproduced ({why})"


def distinct(su, mx, name) -> bool:
  """Whether ``name`` at max staleness ``mx`` was a run of its own: not,
  in every seed, the run of another member with the same per-update
  weights (``same_run_as``; hinge at max 4 is the constant run)."""
  rows = [r for r in su.rows if r["max_staleness"] == mx
          and r["run"] == name]
  return bool(rows) and not all(r["same_run_as"] for r in rows)


def claims(args, su) -> list:
  """The claims and their per-seed paired comparisons. A comparison of a
  member that repeats another member's run (``distinct``) is left out
  where it would repeat that member's comparison."""
  lo, hi = min(args.maxes), max(args.maxes)
  names = {r["run"] for r in su.rows}

  def diff(mx_a, a, mx_b, b, m):
    return paired(per_seed(su, mx_a, a, m), per_seed(su, mx_b, b, m))

  def change(name, m):
    return diff(hi, name, lo, name, m)

  def ctrl_alpha(mx, k, a):
    return float(np.mean([r["alpha"] for r in su.rows
                          if r["run"] == control_label(k, a)
                          and r["max_staleness"] == mx]))
  out = []
  two = lo != hi
  fedasync = [label(k, a) for k, a in ADAPTIVE]
  comps = [comparison(f"{n}: max {hi} - max {lo}", m, change(n, m), -1)
           for n in fedasync for m in METRICS] if two else []
  out.append({
      "id": "staleness_hurts",
      "claim": f"Larger staleness slows FedAsync: accuracy at max {hi} is "
               f"below max {lo}, for every staleness function",
      "paper": "qualitative, no number found (the abstract: FedAsync "
               "'converges quickly and tolerates staleness'; the "
               "experiments compare max staleness 4 and 16 on CIFAR-10 "
               "CNN and WikiText-2 LSTM)",
      "comparisons": comps})
  c09, others = label(0, 0.9), [label(0, 0.6), label(1, 0.6), label(1, 0.9)]
  comps = [comparison(f"change of {c09} - change of {o}", m,
                      paired(dict(enumerate(change(c09, m))),
                             dict(enumerate(change(o, m)))), -1)
           for o in others for m in METRICS] if two else []
  out.append({
      "id": "large_alpha_degrades_most",
      "claim": f"Constant alpha=0.9 loses the most from max {lo} to {hi} "
               f"among constant and polynomial",
      "paper": "qualitative, no number found (this repository's earlier "
               "summary attributed it to the paper; we could not retrieve "
               "the paper's experimental text to check it)",
      "comparisons": comps})
  comps = [comparison(f"max {hi}: {label(k, a)} - {label(0, a)}", m,
                      diff(hi, label(k, a), hi, label(0, a), m), +1)
           for k, a in ADAPTIVE if k != 0 for m in METRICS]
  out.append({
      "id": "adaptive_beats_constant",
      "claim": f"At max staleness {hi}, adaptive alpha (polynomial, hinge) "
               f"beats constant alpha at the same alpha",
      "paper": "qualitative, no number found (the paper proposes the "
               "adaptive alpha to mitigate staleness)",
      "comparisons": comps})
  comps = [comparison(f"max {mx}: {label(k, a)} - matched control "
                      f"(alpha {ctrl_alpha(mx, k, a):.3f}, mean of seeds)", m,
                      diff(mx, label(k, a), mx, control_label(k, a), m), +1)
           for mx in args.maxes for k, a in ADAPTIVE if k != 0
           for m in METRICS
           if distinct(su, mx, label(k, a))
           and control_label(k, a) in names]
  out.append({
      "id": "adaptivity_not_step_size",
      "claim": "The adaptive rules' gain comes from adapting to staleness, "
               "not from their smaller mean mixing weight: adaptive beats "
               "the constant rule with the same mean weight",
      "paper": "not tested in the paper (no matched control); its "
               "explanation of the gain is adaptivity",
      "comparisons": comps})
  if "FedAvg" in names:
    comps = [comparison(f"max {mx}: {n} - FedAvg (cohort {mx // 2 + 1})",
                        m, diff(mx, n, mx, "FedAvg", m), +1)
             for mx in args.maxes for n in fedasync for m in METRICS
             if distinct(su, mx, n)]
    out.append({
        "id": "fedasync_beats_fedavg",
        "claim": "Per client update, FedAsync converges faster than FedAvg",
        "paper": "qualitative, no number found: the paper's abstract "
                 "says FedAsync 'converges quickly'; a third-party summary "
                 "of the paper (sciencestack.ai) says FedAsync often "
                 "outperforms synchronous FedAvg, i.e. the opposite of "
                 "FedAvg being better; we could not retrieve the paper's "
                 "experimental section or a number",
        "comparisons": comps})
  for c in out:
    c["verdict"] = verdict(c["comparisons"])
  return out


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


# ---------------------------------------------------------------------------
# Outputs.


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


def summary_markdown(args, su, agg, cl, js, prov) -> str:
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

{length(args)}

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


def main(argv=None):
  args = parse_args(argv)
  prov = common.Provenance()
  out_dir, data_path = common.prepare(args, "fedasync_staleness")
  say = common.Log(out_dir)
  su = make_setup(args, data_path, say)
  for mx in args.maxes:
    for seed in args.seeds:
      run_setting(args, su, mx, seed, out_dir, say)
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
  (out_dir / "summary.md").write_text(
      summary_markdown(args, su, agg, cl, js, prov))
  say(f"wrote {out_dir}/summary.md ({prov.wall():.0f} s)")
  say.close()


if __name__ == "__main__":
  main()
