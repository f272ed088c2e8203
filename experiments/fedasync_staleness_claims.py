"""The aggregation of experiment 3 (``fedasync_staleness.py``):
intervals over seeds of each run's accuracies, the per-seed paired
comparisons behind each claim of the FedAsync paper (Xie, Koyejo, Gupta,
"Asynchronous Federated Optimization", arXiv:1903.03934; qualitative
claims only, no number found in the paper) and of this study's own
(adaptivity against its matched control), and their verdicts.
"""

from __future__ import annotations

import numpy as np

from fedasync_staleness_setting import ADAPTIVE, control_label, label

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
