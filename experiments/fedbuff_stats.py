"""The statistics of experiment 7 (``fedbuff_comparison.py``): means
with Student t 95% intervals over seeds (lower bounds where runs are
censored), paired per-seed ratios to FedBuff, every number of
``summary.json``, the verdicts on the FedBuff paper's claims and the
observations of the summary's "Reading".
"""

from __future__ import annotations

import math

import numpy as np

from fedbuff_paper_numbers import EXPERIMENT4, PAPER
from fedbuff_setting import (BUFFER_K, DEADLINE_QUANTILE, FEDASYNC_ALPHA,
                             LABELS, OVER_SELECTION, POLY_A)


def t_interval(values):
  """``(mean, low, high)``: the Student t 95% interval of the mean
  (``sweep_outputs.interval``; NaN bounds with fewer than two values)."""
  from fedasync_jax.run.sweep_outputs import interval
  a = np.asarray(values, np.float64)
  if a.size == 0:
    return math.nan, math.nan, math.nan
  mean, low, high = interval(a)
  return float(mean), float(low), float(high)


def group(rows, C, variant):
  return [r for r in rows if r["phase"] == "compare"
          and r["concurrency"] == C and r["method"] == variant]


def stat(rows, C, variant, key) -> dict:
  """Mean and interval of ``key`` over seeds; with censored runs, a lower
  bound (censored runs counted at what they ran: the budget of updates,
  or the simulated time they reached)."""
  g = group(rows, C, variant)
  n, reached = len(g), [r for r in g if r["reached"]]
  out = {"n": n, "reached": len(reached)}
  if n and len(reached) == n:
    m, lo, hi = t_interval([r[key] for r in g])
    out.update(mean=m, low=lo, high=hi, censored=False)
  elif n:
    run_key = "budget" if key == "updates_to_target" else \
        "simulated_time_run"
    vals = [r[key] if r["reached"] else r[run_key] for r in g]
    out.update(mean=None, low=None, high=None, censored=True,
               lower_bound=float(np.mean(vals)))
  return out


def ratio(rows, C, num, den, key) -> dict:
  """Paired per-seed ratio ``num / den`` of ``key``: geometric mean and t
  interval on the logarithms; a lower bound when only ``num`` has
  censored runs; nothing when ``den`` has."""
  a = {r["seed"]: r for r in group(rows, C, num)}
  b = {r["seed"]: r for r in group(rows, C, den)}
  seeds = sorted(set(a) & set(b))
  out = {"n": len(seeds), "num": num, "den": den, "key": key}
  if not seeds:
    return out
  if not all(b[s]["reached"] for s in seeds):
    out.update(censored="denominator")
    return out
  run_key = "budget" if key == "updates_to_target" else \
      "simulated_time_run"
  if not all(a[s]["reached"] for s in seeds):
    logs = [math.log((a[s][key] if a[s]["reached"] else a[s][run_key])
                     / b[s][key]) for s in seeds]
    out.update(censored="numerator",
               lower_bound=float(math.exp(np.mean(logs))))
    return out
  logs = [math.log(a[s][key] / b[s][key]) for s in seeds]
  m, lo, hi = t_interval(logs)
  out.update(censored=None, geo_mean=math.exp(m),
             low=math.exp(lo) if np.isfinite(lo) else None,
             high=math.exp(hi) if np.isfinite(hi) else None,
             per_seed=[math.exp(x) for x in logs])
  return out


def aggregate(args, env, rows, tuned, perf) -> dict:
  """Every number of the summary (written as summary.json)."""
  cs, vs = args.concurrency, args.variants
  out = {"setting": {
      "clients": env.fed.train.num_clients,
      "examples_min": int(env.fed.train.counts.min()),
      "examples_max": int(env.fed.train.counts.max()),
      "examples_mean": float(env.fed.train.counts.mean()),
      "concurrency": cs, "seeds": args.seeds, "tune_seed": args.tune_seed,
      "target": args.target, "budgets": dict(zip(map(str, cs),
                                                 args.budgets)),
      "variants": vs, "server_lrs": args.server_lrs,
      "momenta": args.momenta, "client_lr": args.lr,
      "fedasync_alpha": FEDASYNC_ALPHA, "staleness_a": POLY_A,
      "buffer_k": BUFFER_K,
      "deadline_s": env.deadline, "deadline_quantile": DEADLINE_QUANTILE,
      "over_selection_fraction": OVER_SELECTION,
      "task_duration_median_s": float(np.median(env.durations)),
      "task_duration_p99_s": float(np.quantile(env.durations, 0.99))},
      "paper": PAPER, "experiment4": EXPERIMENT4,
      "tuned": {str(c): tuned[c] for c in tuned}, "stats": {},
      "ratios": {}, "performance": perf}
  for c in cs:
    for v in vs:
      out["stats"][f"{c}/{v}"] = {
          k: stat(rows, c, v, k) for k in ("updates_to_target",
                                           "time_to_target",
                                           "discarded_tasks_to_target",
                                           "mean_staleness_to_target")}
    for v in vs:
      if v == "fedbuff":
        continue
      for k in ("updates_to_target", "time_to_target"):
        out["ratios"][f"{c}/{v}/fedbuff/{k}"] = ratio(rows, c, v, "fedbuff",
                                                      k)
    if "fedasync" in vs and "fedavgm" in vs:  # experiment 4's other pair
      for k in ("updates_to_target", "time_to_target"):
        out["ratios"][f"{c}/fedavgm/fedasync/{k}"] = ratio(
            rows, c, "fedavgm", "fedasync", k)
  # Scaling: updates to target at the largest over the middle concurrency.
  if len(cs) >= 2:
    hi, lo = max(cs), sorted(cs)[-2]
    out["scaling"] = {"from": lo, "to": hi}
    for v in vs:
      a, b = stat(rows, hi, v, "updates_to_target"), stat(
          rows, lo, v, "updates_to_target")
      out["scaling"][v] = (a["mean"] / b["mean"]
                           if a.get("mean") and b.get("mean") else None)
  out["verdicts"] = verdicts(args, out)
  out["reading"] = reading(args, out)
  return out


def reading(args, agg) -> list:
  """Observations with their numbers (from ``agg``)."""
  notes, S = [], agg["stats"]

  def mean(c, v, k):
    st = S.get(f"{c}/{v}", {}).get(k) or {}
    return st.get("mean")
  c0 = min(args.concurrency)
  t = agg["tuned"].get(str(c0))
  st_b = mean(c0, "fedbuff", "mean_staleness_to_target")
  r = agg["ratios"].get(f"{c0}/fedavgm/fedbuff/updates_to_target") or {}
  if t and st_b is not None and r.get("geo_mean"):
    notes.append(
        f"At C={c0} FedAvgM / FedBuff is {r['geo_mean']:.2f}x in client "
        f"updates: FedBuff is untuned, its server step is lr 1 x s(tau) = "
        f"{(1 + st_b) ** -POLY_A:.2f} at its mean staleness {st_b:.1f}, "
        f"while tuned FedAvgM steps with lr / (1 - momentum) = "
        f"{t['server_lr'] / (1 - t['momentum']):.1f}.")
  stale = [(c, mean(c, "fedasync", "mean_staleness_to_target"),
            mean(c, "fedasync", "updates_to_target"))
           for c in args.concurrency]
  if all(x[1] is not None and x[2] is not None for x in stale) \
      and "fedasync" in args.variants:
    notes.append(
        "FedAsync's updates to target grow with its staleness: " + ", ".join(
            f"C={c}: mean staleness {s_:.0f}, {u:,.0f} updates"
            for c, s_, u in stale) + ".")
  cmax = max(args.concurrency)
  waste = [(v, mean(cmax, v, "discarded_tasks_to_target"),
            mean(cmax, v, "updates_to_target"))
           for v in ("fedavgm_deadline", "fedavgm_oversel",
                     "fedavgm_deadline_oversel") if v in args.variants]
  waste = [w for w in waste if w[1] is not None and w[2]]
  if waste:
    notes.append(
        f"The deadline and over-selection buy time with discarded client "
        f"work: at C={cmax}, " + "; ".join(
            f"{LABELS[v]} discards {d:,.0f} client tasks ({d / u:.0%} of "
            f"the {u:,.0f} updates it uses)" for v, d, u in waste)
        + "; the asynchronous rules discard none.")
  fb = [(c, mean(c, "fedbuff", "time_to_target"),
         mean(c, "fedbuff", "updates_to_target")) for c in args.concurrency]
  if all(x[1] is not None for x in fb) and len(fb) > 1:
    notes.append(
        "More concurrency costs FedBuff client updates but saves time: " +
        ", ".join(f"C={c}: {u:,.0f} updates in {t_:,.0f} s" for c, t_, u
                  in fb) + " (C clients at work deliver about C times as many updates per "
        "second, and a run's first arrivals come from its fastest "
        "devices).")
  return notes


def best_ratio(agg, variant, key="updates_to_target"):
  """The concurrency with the largest ratio ``variant / fedbuff``."""
  best = None
  for c in agg["setting"]["concurrency"]:
    r = agg["ratios"].get(f"{c}/{variant}/fedbuff/{key}")
    if r and r.get("geo_mean") is not None:
      if best is None or r["geo_mean"] > best[1]["geo_mean"]:
        best = (c, r)
  return best


def verdict_of(r, lo_paper, hi_paper) -> str:
  """reproduced: FedBuff is faster (interval above 1) and the interval
  overlaps the paper's range; partly: faster, but the interval does not
  overlap the range; not reproduced: not faster."""
  if r is None or r.get("low") is None:
    return "not reproduced (no interval)"
  if r["low"] <= 1.0:
    return "not reproduced"
  if r["low"] <= hi_paper and r["high"] >= lo_paper:
    return "reproduced"
  return "partly (FedBuff faster; magnitude " + (
      "larger" if r["low"] > hi_paper else "smaller") + " than the paper's)"


def verdicts(args, agg) -> dict:
  v = {}
  if "fedavgm" in args.variants:
    b = best_ratio(agg, "fedavgm")
    v["vs_fedavgm"] = {"concurrency": b and b[0],
                       "verdict": verdict_of(b and b[1], 3.3, 3.8)}
  if "fedasync" in args.variants:
    b = best_ratio(agg, "fedasync")
    v["vs_fedasync"] = {"concurrency": b and b[0],
                        "verdict": verdict_of(b and b[1], 2.5, 2.5)}
  sc = agg.get("scaling")
  if sc and sc.get("fedavgm") and sc.get("fedbuff"):
    grows = sc["fedavgm"] > 1.0 and sc["fedavgm"] > sc["fedbuff"]
    v["scaling"] = {"verdict": "reproduced" if grows and sc["fedbuff"] <= 1.2
                    else "partly" if grows else "not reproduced"}
  return v

