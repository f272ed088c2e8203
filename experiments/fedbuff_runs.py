"""The runs of experiment 7 (``fedbuff_comparison.py``): the rules as
sweep members, what every run shares (``Env``: data, model, base
configuration, task durations and the round deadline), schedules with
enough client updates, sweeps that stop once their members reach the
target, one run's result and history rows, and the two phases (tuning
FedAvgM on its own seed, then comparing each method over the seeds).
"""

from __future__ import annotations

import math
import time

import numpy as np

import common
from fedbuff_setting import (BUFFER_K, DEADLINE_QUANTILE, FEDASYNC_ALPHA,
                             LABELS, OVER_SELECTION, POLY_A, VARIANTS)


# ---------------------------------------------------------------------------
# Rules (module level, so that equal sweeps reuse one compiled program).


def make_fedasync(hp):
  """FedAsync(alpha) with s(tau) = (1 + tau)^-POLY_A, NaN updates skipped."""
  from fedasync_jax import robust, rules, staleness
  return robust.guard(rules.fedasync(hp["alpha"],
                                     staleness.polynomial(POLY_A)))


def make_fedbuff(hp):
  """FedBuff(K) with server SGD (lr ``server_lr``) and the same s(tau)."""
  import optax
  from fedasync_jax import robust, rules, staleness
  return robust.guard(rules.fedbuff(BUFFER_K, optax.sgd(hp["server_lr"]),
                                    staleness.polynomial(POLY_A)))


def make_fedavgm(hp):
  """FedAvg with server SGD (``server_lr``, heavy-ball ``momentum``)."""
  import optax
  from fedasync_jax import robust, rules
  return robust.guard(rules.fedavg(optax.sgd(
      hp["server_lr"], momentum=hp["momentum"])))


MAKERS = {"fedasync": make_fedasync, "fedbuff": make_fedbuff,
          "fedavgm": make_fedavgm}
CONFIG_RULE = {"fedasync": "fedasync", "fedbuff": "fedbuff",
               "fedavgm": "fedavg"}


# ---------------------------------------------------------------------------
# Setting, schedules and sweeps.


class Env:
  """What every run shares: data, model pieces, base configuration."""

  def __init__(self, args, data_path, say):
    from fedasync_jax import experiment
    self.args, self.say = args, say
    self.base = common.mnist_mlp_config(
        data_path, num_clients=args.clients, concurrency=1, num_updates=10,
        eval_every=10, lr=args.lr, seed=args.tune_seed,
        delays={"speeds": "lognormal", "sigma": 1.0, "mean": 1.0,
                "jitter": "exponential"})
    self.fed = experiment.load_data(self.base)
    s = common.build(self.base, fed=self.fed)
    self.model, self.update, self.eval_fn = s.model, s.update, s.eval_fn
    c = self.fed.train.counts
    say(f"MNIST: {self.fed.train.num_clients} clients, {c.min()}..{c.max()}"
        f" examples (mean {c.mean():.1f})")
    self.durations = self.task_durations()
    self.deadline = float(np.quantile(self.durations, DEADLINE_QUANTILE))
    say(f"task durations (seed {args.tune_seed}): median "
        f"{np.median(self.durations):.1f} s, 90th percentile "
        f"{self.deadline:.1f} s (the round deadline), 99th "
        f"{np.quantile(self.durations, 0.99):.1f} s")

  def task_durations(self, draws: int = 20):
    """Durations of ``draws`` tasks per client (speed x examples x Exp(1))
    under the tuning seed's device speeds."""
    from fedasync_jax import experiment
    dm = experiment.make_delays(self.base, self.fed)
    rng = np.random.default_rng(12345)
    return (dm.speed * dm.work)[:, None] * rng.exponential(
        size=(dm.num_clients, draws))

  def config(self, variant: str, C: int, seed: int, budget: int,
             num_rounds=None):
    rule, dl, ov = VARIANTS[variant]
    run = {"concurrency": C, "num_updates": budget, "seed": seed,
           "deadline": self.deadline if dl else None,
           "over_selection": int(math.ceil(OVER_SELECTION * C)) if ov else 0,
           "num_rounds": num_rounds}
    return common.with_fields(self.base, rule={"name": CONFIG_RULE[rule]},
                              run=run)

  def schedule(self, variant: str, C: int, seed: int, budget: int):
    """The schedule of a run with at least ``budget`` client updates."""
    from fedasync_jax import experiment
    cfg = self.config(variant, C, seed, budget)
    rule = experiment.make_rule_from(cfg, self.fed)
    dm = experiment.make_delays(cfg, self.fed)
    if not rule.synchronous:
      return experiment.make_schedule(cfg, self.fed, rule, delay_model=dm)
    rounds = max(1, math.ceil(budget / C))
    while True:  # rounds with a deadline may use fewer than C updates
      cfg = self.config(variant, C, seed, budget, num_rounds=rounds)
      s = experiment.make_schedule(cfg, self.fed, rule, delay_model=dm)
      if s.num_arrivals >= budget:
        return s
      rounds = math.ceil(rounds * budget / max(1, s.num_arrivals)) + 1


def eval_every_versions(variant: str, C: int, updates: int) -> int:
  """``updates`` client updates between evaluations, in server versions."""
  rule = VARIANTS[variant][0]
  per_version = {"fedasync": 1, "fedbuff": BUFFER_K, "fedavgm": C}[rule]
  return max(1, math.ceil(updates / per_version))


def eval_updates(args, C: int) -> int:
  """Client updates between evaluations: 100, or 250 at C > 100."""
  return args.eval_updates or (100 if C <= 100 else 250)


def stopper(scheds, eval_every: int, target: float, budget: int, *,
            need: str = "all", log=None):
  """A ``sweep.sweep`` checkpoint callback that stops the sweep once every
  member (``need="all"``) or any member (``"any"``) has reached ``target``
  at one of its own evaluation points within ``budget`` updates.

  The direct plan (the CPU default) runs one arrival per step, so step
  ``i`` of member ``m`` is arrival ``i`` of its schedule.
  """
  from fedasync_jax import tasks
  flags = [tasks.eval_points(s.version_after, eval_every)
           & (np.arange(s.num_arrivals) < budget) for s in scheds]

  def check(ck) -> bool:
    ev = ck.outputs.get("eval")
    if ev is None:
      return False
    acc = np.asarray(ev["accuracy"])
    n = acc.shape[1]
    hit = []
    for m, f in enumerate(flags):
      a = acc[m].reshape(n, -1)[:, 0]
      k = min(n, f.size)
      hit.append(bool(np.any(a[:k][f[:k]] >= target)))
    done = all(hit) if need == "all" else any(hit)
    if done and log is not None:
      log(f"  stopping after {n} steps: "
          f"{sum(hit)}/{len(hit)} members at the target")
    return done
  return check


def run_sweep(env, variant, C, hp, scheds, seeds, *, budget, need,
              label):
  """``len(scheds)`` members (one schedule and seed each) as one sweep.

  The members are split evenly over the CPU devices; when they do not
  divide, the last member is repeated and its copies are dropped.

  Returns:
    ``(outs, wall seconds, steps run per member)``.
  """
  import jax
  import jax.numpy as jnp
  from fedasync_jax import sweep, tasks
  from fedasync_jax.run import sweep_run
  args = env.args
  M = len(scheds)
  pad = -M % max(1, len(jax.devices()))
  if pad:  # members split evenly over the devices: repeat the last one
    scheds, seeds = list(scheds) + [scheds[-1]] * pad, list(seeds) + [
        seeds[-1]] * pad
    hp = {k: list(np.broadcast_to(np.asarray(v, np.float32), (M,)))
          + [np.broadcast_to(np.asarray(v, np.float32), (M,))[-1]] * pad
          for k, v in hp.items()}
  E = eval_every_versions(variant, C, eval_updates(args, C))
  shared = all(s is scheds[0] for s in scheds)
  member_params = len(set(seeds)) > 1
  if member_params:
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *[
        env.model.init(jax.random.key(s)) for s in seeds])
  else:
    params = env.model.init(jax.random.key(seeds[0]))
  keys = jnp.stack([jax.random.key(s) for s in seeds])
  hps = (tasks.task_hparams(scheds[0]) if shared
         else [tasks.task_hparams(s) for s in scheds])
  hp = {k: jnp.asarray(np.broadcast_to(np.asarray(v, np.float32),
                                       (M + pad,))) for k, v in hp.items()}
  t0 = time.perf_counter()

  def progress(info):
    acc = (info.get("last_eval") or {}).get("test_accuracy", float("nan"))
    print(f"  [{label}] {info['arrivals_done']}/{info['num_arrivals']} "
          f"updates, {time.perf_counter() - t0:.0f} s, member 0 acc "
          f"{acc:.3f}", file=env.say.file, flush=True)
  outs = sweep.sweep(
      MAKERS[VARIANTS[variant][0]], hp, env.update, params, env.fed.train,
      scheds, keys=keys, hparams=hps, eval_fn=env.eval_fn, eval_every=E,
      member_params=member_params, mesh=sweep_run.member_mesh(M + pad),
      members="map",
      chunk_steps=256 if C < 1000 else 512, progress=progress,
      checkpoint=stopper(scheds, E, args.target, budget, need=need,
                         log=env.say))
  outs = [common.final_eval(o, env.eval_fn) for o in outs[:M]]
  wall = time.perf_counter() - t0
  steps = max(len(o.arrivals["client"]) for o in outs)
  return outs, wall, steps


# ---------------------------------------------------------------------------
# One run's numbers.


def close_time(sched, a: int, deadline, cohort: int) -> float:
  """When the server has the model of arrival ``a``: its arrival time, or
  for a synchronous round that used fewer than ``cohort`` updates under a
  deadline, the round's start plus the deadline (the server waits for it)."""
  t = float(sched.arrival_time[sched.arrival_task[a]])
  if not sched.synchronous or deadline is None:
    return t
  v0 = sched.dispatch_version[sched.arrival_task[a]]
  used = int(np.sum(sched.dispatch_version[sched.arrival_task] == v0))
  if used < cohort:
    return float(sched.dispatch_time[sched.arrival_task[a]]) + deadline
  return t


def run_row(env, variant, C, seed, sched, out, *, budget, hp, phase, wall,
            members) -> tuple:
  """The result row and history rows of one member."""
  args = env.args
  hist = common.history_of(out)
  deadline = env.deadline if VARIANTS[variant][1] else None
  reach = next((e for e in hist if e["test_accuracy"] >= args.target
                and e["client_updates"] <= budget), None)
  row = {"phase": phase, "concurrency": C, "method": variant, "seed": seed,
         "server_lr": hp.get("server_lr"), "momentum": hp.get("momentum"),
         "alpha": hp.get("alpha"), "deadline_s": deadline,
         "over_selection": int(math.ceil(OVER_SELECTION * C))
         if VARIANTS[variant][2] else 0,
         "target": args.target, "budget": budget,
         "reached": reach is not None}
  if reach is not None:
    a = reach["client_updates"] - 1
    t = close_time(sched, a, deadline, C)
    row.update(updates_to_target=reach["client_updates"], time_to_target=t,
               versions_to_target=reach["version"],
               discarded_tasks_to_target=int(np.sum(
                   sched.lost & (sched.dispatch_time < t))),
               mean_staleness_to_target=float(np.mean(
                   sched.staleness[:a + 1])))
  else:
    row.update(updates_to_target=None, time_to_target=None,
               versions_to_target=None, discarded_tasks_to_target=None,
               mean_staleness_to_target=None)
  last = hist[-1]
  row.update(updates_run=int(len(out.arrivals["client"])),
             simulated_time_run=float(last["simulated_time"]),
             last_accuracy=float(last["test_accuracy"]),
             best_accuracy=float(max(e["test_accuracy"] for e in hist)),
             sweep_wall_s=wall, sweep_members=members)
  h = [{"phase": phase, "concurrency": C, "method": variant, "seed": seed,
        "server_lr": hp.get("server_lr"), "momentum": hp.get("momentum"),
        **e} for e in hist]
  return row, h


# ---------------------------------------------------------------------------
# The two phases.


def tune(env, C, budget, rows, hist):
  """FedAvgM's grid on the tuning seed (one shared schedule); stops when a
  member reaches the target. Returns the chosen ``{server_lr, momentum}``.
  """
  args, say = env.args, env.say
  grid = [(lr, m) for lr in args.server_lrs for m in args.momenta]
  seed = args.tune_seed
  t0 = time.perf_counter()
  sched = env.schedule("fedavgm", C, seed, budget)
  say(f"[C={C}] tuning FedAvgM on seed {seed}: {len(grid)} members "
      f"(server lr x momentum), {sched.num_arrivals} updates at most "
      f"(schedule {time.perf_counter() - t0:.1f} s)")
  hp = {"server_lr": [g[0] for g in grid], "momentum": [g[1] for g in grid]}
  outs, wall, steps = run_sweep(env, "fedavgm", C, hp, [sched] * len(grid),
                                [seed] * len(grid), budget=budget,
                                need="any", label=f"tune C={C}")
  cand = []
  for (lr, m), out in zip(grid, outs):
    row, h = run_row(env, "fedavgm", C, seed, sched, out, budget=budget,
                     hp={"server_lr": lr, "momentum": m}, phase="tune",
                     wall=wall, members=len(grid))
    rows.append(row)
    hist.extend(h)
    key = ((row["updates_to_target"] if row["reached"] else math.inf),
           -row["best_accuracy"], lr * 1 / (1 - m))
    cand.append((key, lr, m))
  _, lr, m = min(cand)
  say(f"  {wall:.0f} s ({steps} steps per member, "
      f"{len(grid) * steps / wall:.0f} updates/s); chosen server lr {lr}, "
      f"momentum {m}")
  return {"server_lr": lr, "momentum": m}, wall, len(grid) * steps


def compare(env, C, variant, budget, tuned, rows, hist):
  """One variant over the compared seeds (one sweep)."""
  args, say = env.args, env.say
  t0 = time.perf_counter()
  scheds = [env.schedule(variant, C, s, budget) for s in args.seeds]
  rule = VARIANTS[variant][0]
  hp = (tuned if rule == "fedavgm" else {"alpha": FEDASYNC_ALPHA}
        if rule == "fedasync" else {"server_lr": 1.0})
  st = np.concatenate([s.staleness for s in scheds])
  say(f"[C={C}] {LABELS[variant]}: {len(scheds)} seeds, "
      f"{min(s.num_arrivals for s in scheds)} updates at most per seed "
      f"(schedules {time.perf_counter() - t0:.1f} s; staleness mean "
      f"{st.mean():.1f}, max {st.max()})")
  outs, wall, steps = run_sweep(env, variant, C, hp, scheds, args.seeds,
                                budget=budget, need="all",
                                label=f"{variant} C={C}")
  for seed, sched, out in zip(args.seeds, scheds, outs):
    row, h = run_row(env, variant, C, seed, sched, out, budget=budget,
                     hp=hp, phase="compare", wall=wall,
                     members=len(scheds))
    rows.append(row)
    hist.extend(h)
  got = [r for r in rows[-len(scheds):]]
  reached = [r["updates_to_target"] for r in got if r["reached"]]
  say(f"  {wall:.0f} s ({steps} steps per member, "
      f"{len(scheds) * steps / wall:.0f} updates/s); reached "
      f"{len(reached)}/{len(got)}; updates to target {reached}")
  return wall, len(scheds) * steps

