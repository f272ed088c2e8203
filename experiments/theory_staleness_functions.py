"""Experiment 3: staleness functions across delay distributions.

FedAsync (arXiv:1903.03934) on a NON-CONVEX problem with known constants
(``theory.nonconvex``: least squares plus ``nu sum psi(w - w*)``, exact
``L``, ``w*`` and ``F*``), with the staleness functions of
``fedasync_jax.core.staleness`` -- constant, polynomial, hinge, exponential and
the delay-adaptive rules ``koloskova`` (arXiv:2206.08307, Thm. 8) and
``mishchenko`` (arXiv:2206.07638) -- under four device-speed distributions
(constant, exponential, lognormal, Pareto; one speed per client, no per-task
jitter, so slow clients are slow every time). Everything (functions x
distributions x seeds) runs as ONE ``sweep.sweep`` program: the member's
staleness function is picked by ``lax.switch`` on a per-member index. The
exact final ``||grad F||^2`` and ``F - F*`` (mean over the last 20% of
versions) are reported as a table and a heat map.

Recorded (experiments/results/theory/theory_staleness_functions.*):
``python experiments/theory_staleness_functions.py
--out experiments/results/theory``. ``--smoke``: T = 100,
one seed (24 members), written to ``--out``.

``--seed S`` (default 0, the recorded draws) moves, with ``B = S x
1,000,000``, the device speeds (seed ``B + 1``), the schedules (``B + s``)
and the training keys (split from ``B``); the problem
(``theory.nonconvex``, seed 0) is the one studied and stays fixed.

Run: ``.venv/bin/python experiments/theory_staleness_functions.py [--quick | --smoke]
[--seed S]``
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

import theory_common as tc
from fedasync_jax import (client, delays, rules, scheduler, staleness, sweep,
                          theory)

SMOKE_OUTPUT = "theory_staleness_functions_smoke.md"
DISTS = {"constant": {}, "exponential": {}, "lognormal": {"sigma": 1.0},
         "pareto": {"shape": 1.5}}


def member_records(members, outs, fns, names):
  """One row per member: final and averaged gradient norm, gap, mean
  weight, realised staleness."""
  records = []
  for (f, d, s), o in zip(members, outs):
    g = theory.per_version(o.evals, "test_grad_sq")
    gap = theory.per_version(o.evals, "test_gap")
    V = len(g) - 1
    tail = slice(V - max(1, V // 5), None)
    tau = o.arrivals["staleness"][o.arrivals["applied"]]
    w = np.asarray(fns[names[f]](jnp.asarray(tau)), np.float64)
    st = theory.staleness_stats(o)
    records.append({
        "staleness_fn": names[f], "delays": d, "seed": s,
        "final_grad_sq": g[tail].mean(), "final_gap": gap[tail].mean(),
        "avg_grad_sq": g[:-1].mean(),
        "weighted_avg_grad_sq": theory.weighted_average(g[:V], w[:V]),
        "mean_weight": w.mean(), "tau_avg": st.tau_avg,
        "tau_max": st.tau_max, "versions": V})
  return records


def sizes(args):
  """``(T, seeds)`` of the run."""
  return (100, 1) if args.smoke else (2000, 3) if args.quick else (4000, 8)


def measure(args):
  """The problem, the one sweep of every member, and the per-member
  records and per-cell means (a namespace)."""
  T, seeds = sizes(args)
  seed = tc.seed_base(args)  # added to each replicate draw's seed
  conc, alpha, local_steps = 16, 0.5, 2
  p = theory.nonconvex(num_clients=100, examples_per_client=20, dim=10,
                       lipschitz=1.0, mu=0.1, nu=0.5, zeta2=1.0, sigma2=1.0,
                       batch_size=5, shift="linear", w_star_scale=3.0,
                       seed=0)
  N = p.num_clients
  eta = 0.5 / p.client_lipschitz
  gamma = alpha * eta * local_steps          # effective step of one update
  fns = {
      "constant": staleness.constant(),
      "polynomial(a=0.5)": staleness.polynomial(0.5),
      "hinge(a=10,b=4)": staleness.hinge(10.0, 4.0),
      "exponential(a=0.1)": staleness.exponential(0.1),
      f"koloskova(tau_c={conc})": staleness.koloskova(
          tau_c=conc, lipschitz=p.lipschitz, lr=gamma),
      f"mishchenko(n={conc})": staleness.mishchenko(conc),
  }
  names = list(fns)
  branches = [lambda t, f=f: jnp.asarray(f(t), jnp.float32)
              for f in fns.values()]

  def make_rule(hp):
    return rules.fedasync(alpha, lambda tau: jax.lax.switch(
        hp["fn"], branches, tau))

  upd = client.local_update(p.loss, optax.sgd(eta), batch_size=p.batch_size,
                            max_examples=p.examples_per_client,
                            steps=local_steps)
  scheds = {}
  for d, kw in DISTS.items():
    sp = delays.device_speeds(d, N, seed=seed + 1, **kw)
    dm = delays.delay_model(sp, np.ones(N), jitter="none")
    scheds[d] = [scheduler.asynchronous(dm, num_updates=T, concurrency=conc,
                                        seed=seed + s)
                for s in range(seeds)]
  members = [(f, d, s) for f in range(len(names)) for d in DISTS
             for s in range(seeds)]
  M = len(members)
  grid = {"fn": jnp.asarray([m[0] for m in members], jnp.int32)}
  timer = tc.Timer()
  outs = sweep.sweep(make_rule, grid, upd, jnp.zeros(p.dim), p.data,
                     [scheds[d][s] for _, d, s in members],
                     keys=jax.random.split(jax.random.key(seed), M),
                     eval_fn=theory.metrics_fn(p), eval_every=1,
                     chunk_steps=256)
  sweep_wall = timer()
  records = member_records(members, outs, fns, names)
  def cell(fn, d, key):
    v = np.array([r[key] for r in records
                  if r["staleness_fn"] == fn and r["delays"] == d])
    return v.mean(), v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
  grad = np.array([[cell(f, d, "final_grad_sq")[0] for d in DISTS]
                   for f in names])
  gapm = np.array([[cell(f, d, "final_gap")[0] for d in DISTS]
                   for f in names])
  tau_info = {d: {"tau_avg": float(np.mean([r["tau_avg"] for r in records
                                            if r["delays"] == d])),
                  "tau_max": int(max(r["tau_max"] for r in records
                                     if r["delays"] == d))}
              for d in DISTS}
  best = {d: names[int(np.argmin(grad[:, j]))]
          for j, d in enumerate(DISTS)}
  return SimpleNamespace(**{k: v for k, v in locals().items()
                            if k != "args"})


UNPACK = ("T seeds conc alpha local_steps p N eta gamma fns names branches "
          "upd scheds members M grid outs sweep_wall records cell grad gapm "
          "tau_info best").split()


def summary(ns):
  """The JSON summary."""
  (T, seeds, conc, alpha, local_steps, p, N, eta, gamma, fns, names,
   branches, upd, scheds, members, M, grid, outs, sweep_wall, records, cell,
   grad, gapm, tau_info, best) = (getattr(ns, k) for k in UNPACK)
  return {
      "problem": {"name": p.name, "L": p.lipschitz, "mu": p.mu, "nu": p.nu,
                  "sigma2": p.sigma2, "zeta2": p.zeta2, "f_star": p.f_star},
      "setup": {"T": T, "seeds": seeds, "seed": ns.seed,
                "concurrency": conc, "alpha": alpha,
                "eta": eta, "local_steps": local_steps,
                "effective_step": gamma, "dists": DISTS, "members": M},
      "functions": names, "final_grad_sq": grad, "final_gap": gapm,
      "tau": tau_info, "best_by_grad": best, "sweep_wall_s": sweep_wall}


def plot(ns, path):
  (T, seeds, conc, alpha, local_steps, p, N, eta, gamma, fns, names,
   branches, upd, scheds, members, M, grid, outs, sweep_wall, records, cell,
   grad, gapm, tau_info, best) = (getattr(ns, k) for k in UNPACK)
  plt = tc.pyplot()
  if plt is None:
    return
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  for ax, mat, title in ((axes[0], grad, "final ||grad F||^2"),
                         (axes[1], gapm, "final F - F*")):
    im = ax.imshow(np.log10(mat), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(DISTS)),
                  [f"{d}\ntau_avg={tau_info[d]['tau_avg']:.1f}"
                   for d in DISTS], fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
      for j in range(len(DISTS)):
        ax.text(j, i, f"{mat[i, j]:.2g}", ha="center", va="center",
                color="w", fontsize=7)
    ax.set_title(f"log10 {title} (mean of {seeds} seeds)")
    fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def markdown(ns, name):
  """The markdown body (the text the recorded file was written with)."""
  (T, seeds, conc, alpha, local_steps, p, N, eta, gamma, fns, names,
   branches, upd, scheds, members, M, grid, outs, sweep_wall, records, cell,
   grad, gapm, tau_info, best) = (getattr(ns, k) for k in UNPACK)
  def table(key):
    rows = []
    for f in names:
      row = [f]
      for d in DISTS:
        m, se = cell(f, d, key)
        row.append(f"{m:.3g} +- {se:.2g}")
      rows.append(row)
    return tc.md_table(["s(tau)"] + list(DISTS), rows)
  body = f"""Problem: {p.name}: non-convex (nu = {p.nu} > 2 mu = {2 * p.mu:.3g}),
exact L = {p.lipschitz:.4g}, sigma^2 = {p.sigma2:.4g}, zeta^2 = {p.zeta2:.4g},
F* = {p.f_star:.4g}, w* known.

Setup: FedAsync alpha = {alpha}, {local_steps} local SGD steps (eta =
{eta:.4g}, minibatch {p.batch_size}), closed loop C = {conc}, T = {T}
arrivals, {seeds} seeds; one device speed per client from the named
distribution (lognormal sigma = 1, Pareto shape 1.5), no per-task jitter;
`koloskova` with tau_C = C, L = {p.lipschitz:.3g} and the effective step
alpha eta H = {gamma:.4g}; `mishchenko` with n = C. All {M} members in ONE
`sweep.sweep` ({sweep_wall:.1f} s for {M * T} client updates).

Realised staleness (applied updates): {', '.join(
    f"{d}: tau_avg {v['tau_avg']:.1f}, tau_max {v['tau_max']}"
    for d, v in tau_info.items())}.

Final ||grad F||^2 (mean over the last 20% of versions; mean +- s.e. over
seeds):

{table("final_grad_sq")}

Final F - F* (same window):

{table("final_gap")}

Averaged squared gradient norm over the whole run, (1/V) sum_v
||grad F(w_v)||^2 (the quantity the O(1/sqrt(T)) bounds are about):

{table("avg_grad_sq")}

Mean weight s(tau) over the applied updates (the step is alpha s(tau) times
the client's; with a constant base step a smaller mean weight is also a
smaller effective step, hence a lower noise floor -- read the tables with
this one):

{table("mean_weight")}

Lowest final gradient norm per distribution: {', '.join(
    f'{d}: {b}' for d, b in best.items())}. Heat map: `{name}.png`; per-seed
numbers (with the AFL-style step-weighted average): `{name}.csv`.
"""
  return body


def main():
  return tc.main(__doc__, "theory_staleness_functions", title="Experiment 3: "
                 "staleness functions x delay distributions", measure=measure,
                 summary=summary, plot=plot, markdown=markdown,
                 length=lambda a: tc.length_line(a, lambda b: dict(zip(
                     ("T", "seeds"), sizes(b)))))


if __name__ == "__main__":
  main()
