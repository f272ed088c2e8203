"""Experiment 4: client sampling with vs without replacement.

The AFL paper (Forootani and Iervolino 2025, arXiv:2508.01675, Section 2.2)
gives the variance of the mean of ``m`` sampled client updates: ``sigma^2 /
m`` with replacement and ``sigma^2 / m * (N - m) / (N - 1)`` without, with
``sigma^2 = (1/N) sum_i ||u_i - u_bar||^2``. Here the updates are the exact
local gradients at the optimum of a least-squares problem with known
heterogeneity (``theory.least_squares``), so ``sigma^2 = zeta^2`` exactly
(the AFL paper's Assumption 7 quantity). Two empirical checks:

A. Monte Carlo (``theory.empirical_sampling_variance``): many independent
   samples of ``m`` clients, for several ``m`` and ``N``.
B. The library's own scheduler (``scheduler.asynchronous`` with
   ``concurrency=1``): ``selection="uniform"`` is sampling with replacement,
   ``selection="without_replacement"`` walks a fresh permutation per pass;
   blocks of ``m`` consecutive dispatches inside a pass are samples without
   replacement.

Recorded (experiments/results/theory/theory_sampling.*): ``python
experiments/theory_sampling.py --out experiments/results/theory``.
``--smoke``: 200 Monte-Carlo samples and
20 scheduler passes per point, written to ``--out``.

``--seed S`` (default 0, the recorded draws) moves every draw, with ``B =
S x 1,000,000``: the client updates (the population, seed ``B``: the
closed forms hold for any, and ``sigma^2 = zeta^2 = 1`` for every seed),
the Monte-Carlo samples (``B + 1000 N + m``) and the scheduler's
dispatches (``B + 7``).

Run: ``.venv/bin/python experiments/theory_sampling.py [--quick | --smoke]
[--seed S]``
"""

from __future__ import annotations

from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np

import theory_claims
import theory_common as tc
from fedasync_jax import delays, scheduler, theory

SMOKE_OUTPUT = "theory_sampling_smoke.md"


def updates_for(N, seed=0):
  p = theory.least_squares(num_clients=N, examples_per_client=6, dim=5,
                           zeta2=1.0, batch_size=2, seed=seed)
  u = np.asarray(theory.client_gradients(p, jnp.asarray(p.w_star)),
                 np.float64)
  sigma2 = float(np.mean(np.sum((u - u.mean(0)) ** 2, 1)))
  return u, sigma2, p.zeta2


def block_variance(u, clients, m, N):
  """Mean squared deviation of block means of ``m`` consecutive dispatches
  (blocks aligned to passes of ``N`` dispatches), with its standard error."""
  passes = clients.size // N
  per_pass = N // m
  idx = clients[:passes * N].reshape(passes, N)[:, :per_pass * m]
  idx = idx.reshape(passes * per_pass, m)
  dev = u[idx].mean(1) - u.mean(0)
  sq = np.sum(dev ** 2, 1)
  return float(sq.mean()), float(sq.std(ddof=1) / np.sqrt(sq.size)), sq.size


def monte_carlo(trials, *, seed=0):
  """Monte-Carlo rows: N in {10, 50, 200}, m from 1 to N; ``seed``
  (``theory_common.seed_base``) starts the draws."""
  records = []
  for N in (10, 50, 200):
    u, sigma2, zeta2 = updates_for(N, seed=seed)
    for m in (1, 2, 5, 10, 25, 50, 100, 200):
      if m > N:
        continue
      for replace in (True, False):
        emp = theory.empirical_sampling_variance(
            u, m, replace=replace, num_trials=trials,
            seed=seed + 1000 * N + m)
        exact = theory.sampling_variance(sigma2, m, N, replace=replace)
        records.append({"method": "monte_carlo", "N": N, "m": m,
                        "replace": replace, "samples": trials,
                        "empirical": emp, "closed_form": exact,
                        "ratio": emp / exact if exact else float("nan"),
                        "se_ratio": float("nan"), "sigma2": sigma2,
                        "zeta2": zeta2})
  return records


def scheduler_rows(passes, *, seed=0):
  """Rows from the library's scheduler, N = 50, concurrency 1; ``seed``
  (``theory_common.seed_base``) starts the draws."""
  records = []
  sched_N = 50
  u, sigma2, zeta2 = updates_for(sched_N, seed=seed)
  dm = delays.delay_model(np.ones(sched_N), np.ones(sched_N))
  order = {}
  for sel in ("uniform", "without_replacement"):
    s = scheduler.asynchronous(dm, num_updates=passes * sched_N,
                               concurrency=1, selection=sel, seed=seed + 7)
    order[sel] = s.client        # dispatch order
  for m in (1, 2, 5, 10, 25, 50):
    for sel, replace in (("uniform", True), ("without_replacement", False)):
      emp, se, n = block_variance(u, order[sel], m, sched_N)
      exact = theory.sampling_variance(sigma2, m, sched_N, replace=replace)
      records.append({"method": f"scheduler:{sel}", "N": sched_N, "m": m,
                      "replace": replace, "samples": n, "empirical": emp,
                      "closed_form": exact,
                      "ratio": emp / exact if exact else float("nan"),
                      "se_ratio": se / exact if exact else float("nan"),
                      "sigma2": sigma2, "zeta2": zeta2})
  return records, sched_N


def plot(records, sched_N, path):
  plt = tc.pyplot()
  if plt is None:
    return
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  ax = axes[0]
  for i, N in enumerate((10, 50, 200)):
    for replace, mk in ((True, "o"), (False, "s")):
      rs = [r for r in records if r["method"] == "monte_carlo"
            and r["N"] == N and r["replace"] == replace]
      m = np.array([r["m"] for r in rs], float)
      ax.plot(m, [r["empirical"] for r in rs], mk, color=f"C{i}",
              mfc="none" if replace else f"C{i}",
              label=f"N={N}, {'with' if replace else 'without'}")
      mm = np.linspace(1, N, 200)
      cf = ([theory.sampling_variance(rs[0]["sigma2"], 1, N, replace=True)
             / x for x in mm] if replace else
            [rs[0]["sigma2"] / x * (N - x) / (N - 1) for x in mm])
      ax.plot(mm, np.maximum(cf, 1e-6), "-" if replace else "--",
              color=f"C{i}", lw=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_ylim(1e-3, 2)
  ax.set_xlabel("m (clients per sample)")
  ax.set_ylabel("E||mean - u_bar||^2")
  ax.set_title("Monte Carlo (marks) vs closed forms (lines)")
  ax.legend(fontsize=6, ncol=2)
  ax = axes[1]
  for sel, c in (("uniform", "C0"), ("without_replacement", "C1")):
    rs = [r for r in records if r["method"] == f"scheduler:{sel}"
          and np.isfinite(r["ratio"])]
    ax.errorbar([r["m"] for r in rs], [r["ratio"] for r in rs],
                yerr=[2 * r["se_ratio"] for r in rs], fmt="o-", color=c,
                label=f"scheduler selection={sel}")
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set_xscale("log")
  ax.set_xlabel("m")
  ax.set_ylabel("empirical / closed form (+- 2 s.e.)")
  ax.set_title(f"scheduler, N={sched_N}, C=1")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def markdown(records, trials, passes, sched_N, worst, zero_max, wall, name):
  """The markdown body (the text the recorded file was written with)."""
  rows = [[r["method"], r["N"], r["m"], "with" if r["replace"] else
           "without", r["samples"], tc.fmt(r["empirical"]),
           tc.fmt(r["closed_form"]),
           "-" if not np.isfinite(r["ratio"]) else f"{r['ratio']:.4f}"]
          for r in records]
  head = theory_claims.sampling(records, worst, trials)
  body = head + f"""Updates: exact local gradients grad F_i(w*) of
`theory.least_squares(num_clients=N, examples_per_client=6, dim=5,
zeta2=1)`; their population variance is sigma^2 = zeta^2 = 1 (measured:
{records[0]['sigma2']:.6f} for N = 10, float32 data). Closed forms:
sigma^2/m (with replacement), sigma^2/m (N-m)/(N-1) (without).

Largest relative deviation from the closed form over all finite rows:
{abs(worst['ratio'] - 1):.4f} ({worst['method']}, N = {worst['N']}, m =
{worst['m']}, {'with' if worst['replace'] else 'without'} replacement). The
Monte-Carlo standard error with K samples is about sqrt(2/K)-sqrt(3/K)
relative ({np.sqrt(2 / trials):.4f} for K = {trials}); without replacement
and m = N the mean is the population mean: closed form 0, largest empirical
value {zero_max:.3g} (float rounding).

{tc.md_table(["method", "N", "m", "replacement", "samples", "empirical",
              "closed form", "ratio"], rows)}

Scheduler rows: {passes} passes of N = {sched_N} dispatches with
concurrency 1 (so no client is ever busy and `uniform` is exactly sampling
with replacement); blocks of m consecutive dispatches inside a pass
(floor(N/m) blocks per pass). Total {wall:.1f} s. Plot: `{name}.png`.
"""
  return body


def sizes(args):
  """``(Monte Carlo trials, scheduler passes)`` of the run."""
  return ((200, 20) if args.smoke else (5_000, 200) if args.quick
          else (50_000, 2_000))


def measure(args) -> SimpleNamespace:
  """The Monte-Carlo and scheduler rows and what the report reads of
  them."""
  trials, passes = sizes(args)
  timer = tc.Timer()
  records = monte_carlo(trials, seed=tc.seed_base(args))
  sched_rows, sched_N = scheduler_rows(passes, seed=tc.seed_base(args))
  records += sched_rows
  wall = timer()
  finite = [r for r in records if np.isfinite(r["ratio"])]
  return SimpleNamespace(
      records=records, trials=trials, passes=passes, seed=args.seed,
      sched_N=sched_N,
      worst=max(finite, key=lambda r: abs(r["ratio"] - 1)),
      zero_max=max(r["empirical"] for r in records
                   if r["closed_form"] == 0), wall=wall)


def summary(m) -> dict:
  """The JSON summary."""
  return {"trials": m.trials, "passes": m.passes, "seed": m.seed,
          "records": m.records,
          "max_abs_rel_error": abs(m.worst["ratio"] - 1),
          "max_empirical_where_closed_form_is_0": m.zero_max,
          "wall_s": m.wall}


def main():
  return tc.main(
      __doc__, "theory_sampling",
      title="Experiment 4: sampling with vs without replacement",
      measure=measure, summary=summary,
      plot=lambda m, path: plot(m.records, m.sched_N, path),
      markdown=lambda m, name: markdown(
          m.records, m.trials, m.passes, m.sched_N, m.worst, m.zero_max,
          m.wall, name),
      length=lambda a: tc.length_line(a, lambda b: dict(zip(
          ("Monte Carlo trials", "scheduler passes"), sizes(b)))))

if __name__ == "__main__":
  main()
