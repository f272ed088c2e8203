"""Experiment 2: how does the staleness bound tau_max enter the rate?

The set-up of experiment 1 (``theory_rate.py``: FedAsync, least squares with
known constants, client step ``~ 1/sqrt(T)``) with the staleness pinned to
``tau_max`` in {0, 4, 16, 64}: identical device speeds and no jitter, closed
loop with ``C = tau_max + 1`` clients in flight, so that after the first
``C`` arrivals every update has staleness exactly ``tau_max`` (the worst
case a bound ``tau <= tau_max`` allows; ``tau_C = C``). For each
``tau_max``: the averaged squared gradient norm against ``T`` (slope with a
bootstrap interval over seeds, one ``sweep.sweep`` per horizon), the
measured dependence on ``tau_max`` at every ``T`` next to the predicted one
(``theory.sqrt_t_bound`` and ``theory.koloskova_constant_rate``, each with
ONE constant fitted on the ``tau_max = 0`` runs), and the measured drift
``||w_t - w_{t - tau}||^2`` (``theory.track_many``, ring buffer) next to
``theory.drift_bound``.

Recorded (experiments/results/theory/theory_staleness_bound.*): ``python
experiments/theory_staleness_bound.py --out experiments/results/theory``.
``--smoke``: T in {50, 100},
tau_max in {0, 4}, 2 seeds, written to ``--out``.

Run: ``.venv/bin/python experiments/theory_staleness_bound.py [--quick | --smoke]``
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

import theory_common as tc
from fedasync_jax import client, delays, rules, scheduler, staleness, theory
from theory_rate import make_problem, run

SMOKE_OUTPUT = "theory_staleness_bound_smoke.md"


def drift_runs(p, tau, *, T, seeds, alpha, eta, seed_offset):
  """Mean drift (second half of the run) and mean grad norm, via the
  tracker; one vmapped program over the seeds."""
  N = p.num_clients
  upd = client.local_update(p.loss, optax.sgd(eta), batch_size=p.batch_size,
                            max_examples=p.examples_per_client, steps=1)
  dm = delays.delay_model(np.ones(N), np.ones(N), jitter="none")
  rule = rules.fedasync(alpha, staleness.cutoff(staleness.constant(), tau))
  scheds = [scheduler.asynchronous(dm, num_updates=T, concurrency=tau + 1,
                                   max_staleness=tau,
                                   seed=seed_offset + s)
            for s in range(seeds)]
  outs = theory.track_many(rule, upd, jnp.zeros(p.dim), p.data, scheds,
                           keys=jax.random.split(jax.random.key(seed_offset),
                                                 seeds),
                           metrics=p.metrics)
  half = slice(T // 2, None)
  drift = np.mean([o.arrivals["drift"][half].mean() for o in outs])
  grad = np.mean([o.arrivals["grad_sq"][half].mean() for o in outs])
  wall = outs[0].stats["wall_time_s"]
  return float(drift), float(grad), wall


def sizes(args):
  """(horizons, seeds, drift horizon, drift seeds, tau_max values)."""
  if args.smoke:
    return [50, 100], 2, 100, 2, [0, 4]
  if args.quick:
    return [500, 1000, 2000, 4000], 6, 2000, 4, [0, 4, 16, 64]
  return [500, 1000, 2000, 4000, 8000], 16, 4000, 8, [0, 4, 16, 64]


def measure(args):
  """Sweeps per tau_max, fits, predictions and drift (a namespace)."""
  horizons, seeds, drift_T, drift_seeds, taus = sizes(args)
  nb = 200 if args.smoke else 4000
  alpha = 0.5
  p = make_problem()
  eta0 = 0.8 / p.client_lipschitz
  T = np.asarray(horizons, float)
  timer = tc.Timer()
  measured, fits, records, walls, realised = {}, {}, [], {}, {}
  tails = {}
  for i, tau in enumerate(taus):
    vals, recs, wall = run(horizons, seeds, concurrency=tau + 1,
                           tau_max=tau, alpha=alpha, eta0=eta0, problem=p,
                           jitter="none", seed_offset=100_000 * (i + 1))
    measured[tau] = vals
    fits[tau] = theory.loglog_slope(horizons, vals, num_boot=nb, seed=i)
    tails[tau] = theory.loglog_slope(horizons[-3:], vals[:, -3:],
                                     num_boot=nb, seed=i)
    for r in recs:
      r["tau_bound"] = tau
    records += recs
    walls[tau] = wall
    realised[tau] = {
        "tau_max": int(max(r["tau_max"] for r in recs)),
        "tau_avg": float(np.mean([r["tau_avg"] for r in recs]))}
    print(f"tau_max={tau}: slope {fits[tau].slope:.3f} "
          f"[{fits[tau].ci_low:.3f}, {fits[tau].ci_high:.3f}], "
          f"{wall:.1f} s", flush=True)
  # Predictions: one constant per bound, fitted on tau_max = 0.
  f0 = float(p.full_loss(jnp.zeros(p.dim))) - p.f_star
  s2 = theory.effective_variance(p)
  gamma0 = alpha * eta0 * np.sqrt(horizons[0])
  common = dict(lipschitz=p.lipschitz, f0_gap=f0, sigma2=s2)
  raw = {tau: {
      "sqrt_t_bound": theory.sqrt_t_bound(T, gamma0=gamma0, tau_max=tau,
                                          **common),
      "koloskova_constant": theory.koloskova_constant_rate(
          T, tau_c=tau + 1, tau_max=tau, **common)} for tau in taus}
  c = {k: theory.fit_constant(measured[0].mean(0), raw[0][k])
       for k in raw[0]}
  pred = {tau: {k: c[k] * v for k, v in raw[tau].items()} for tau in taus}
  # Drift (tracker) at one horizon.
  drift = {}
  eta_d = eta0 * np.sqrt(horizons[0] / drift_T)
  for i, tau in enumerate(taus):
    d, g, w = drift_runs(p, tau, T=drift_T, seeds=drift_seeds, alpha=alpha,
                         eta=eta_d, seed_offset=500_000 + i)
    bound = theory.drift_bound(tau, gamma=alpha * eta_d, sigma2=s2,
                               grad_sq=g)
    drift[tau] = {"measured": d, "grad_sq": g, "bound": bound,
                  "wall_s": w}
  last = len(horizons) - 1
  # End-of-run level: mean ||grad F||^2 over the last 10% of versions.
  final_at_last = {tau: float(np.mean([
      r["final_grad_sq"] for r in records
      if r["tau_bound"] == tau and r["T"] == horizons[last]]))
      for tau in taus}
  return SimpleNamespace(**{k: v for k, v in locals().items()
                            if k != "args"})


UNPACK = ("horizons seeds drift_T drift_seeds taus alpha p eta0 T timer "
          "measured fits records walls realised tails f0 s2 gamma0 c pred "
          "drift last final_at_last").split()


def summary(ns):
  """The JSON summary."""
  (horizons, seeds, drift_T, drift_seeds, taus, alpha, p, eta0, T, timer,
   measured, fits, records, walls, realised, tails, f0, s2, gamma0, c, pred,
   drift, last, final_at_last) = (getattr(ns, k) for k in UNPACK)
  return {
      "problem": {"name": p.name, "L": p.lipschitz, "mu": p.mu,
                  "sigma2": p.sigma2, "zeta2": p.zeta2},
      "setup": {"horizons": horizons, "seeds": seeds, "taus": taus,
                "alpha": alpha, "eta0": eta0, "T0": horizons[0],
                "concurrency": "tau_max + 1", "speeds": "constant",
                "jitter": "none"},
      "f0_gap": f0, "sigma2_eff": s2, "gamma0": gamma0, "fitted_c": c,
      "per_tau": {tau: {
          "slope": fits[tau].slope,
          "ci": [fits[tau].ci_low, fits[tau].ci_high],
          "tail_slope": tails[tau].slope,
          "tail_ci": [tails[tau].ci_low, tails[tau].ci_high],
          "measured_mean": measured[tau].mean(0),
          "measured_sd": measured[tau].std(0, ddof=1),
          "predicted": pred[tau], "realised": realised[tau],
          "drift": drift[tau], "sweep_wall_s": walls[tau]} for tau in taus},
      "end_level_at_largest_T": final_at_last,
      "drift_T": drift_T, "drift_seeds": drift_seeds, "wall_s": timer(),
  }


def plot(ns, path):
  (horizons, seeds, drift_T, drift_seeds, taus, alpha, p, eta0, T, timer,
   measured, fits, records, walls, realised, tails, f0, s2, gamma0, c, pred,
   drift, last, final_at_last) = (getattr(ns, k) for k in UNPACK)
  plt = tc.pyplot()
  if plt is None:
    return
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  ax = axes[0]
  for i, tau in enumerate(taus):
    ax.plot(T, measured[tau].mean(0), "o-", color=f"C{i}",
            label=f"tau={tau}: slope {fits[tau].slope:.2f}")
    ax.plot(T, pred[tau]["koloskova_constant"], ":", color=f"C{i}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_minor_formatter(plt.NullFormatter())
  ax.set_xlabel("T")
  ax.set_ylabel("(1/T) sum ||grad F(w_t)||^2")
  ax.set_title("measured (o-) and Koloskova x c (:)")
  ax.legend(fontsize=7)
  ax = axes[1]
  tau_axis = np.asarray(taus, float)
  for j in (0, len(horizons) - 1):
    m = np.array([measured[t].mean(0)[j] for t in taus])
    ax.plot(tau_axis, m / m[0], "ko-" if j else "ks-",
            label=f"measured, T={horizons[j]}")
    for k, st in (("sqrt_t_bound", "--"), ("koloskova_constant", ":")):
      pr = np.array([pred[t][k][j] for t in taus])
      ax.plot(tau_axis, pr / pr[0], st, color="C0" if j else "C3",
              label=f"{k}, T={horizons[j]}")
  ax.set_xscale("symlog", linthresh=1)
  ax.set_yscale("log")
  ax.set_xlabel("tau_max")
  ax.set_ylabel("relative to tau_max = 0")
  ax.set_title("dependence on tau_max")
  ax.legend(fontsize=6)
  ax = axes[2]
  ax.plot(tau_axis[1:], [drift[t]["measured"] for t in taus[1:]], "ko-",
          label="measured E||w_t - w_{t-tau}||^2")
  ax.plot(tau_axis[1:], [drift[t]["bound"] for t in taus[1:]], "C0--",
          label="drift_bound (no fitted constant)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("tau")
  ax.set_title(f"drift at T={drift_T}, second half")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def markdown(ns, name):
  """The markdown body (the text the recorded file was written with)."""
  (horizons, seeds, drift_T, drift_seeds, taus, alpha, p, eta0, T, timer,
   measured, fits, records, walls, realised, tails, f0, s2, gamma0, c, pred,
   drift, last, final_at_last) = (getattr(ns, k) for k in UNPACK)
  last = len(horizons) - 1
  rows = []
  for tau in taus:
    f = fits[tau]
    m = measured[tau].mean(0)
    rows.append([
        tau, f"{realised[tau]['tau_avg']:.2f} / {realised[tau]['tau_max']}",
        f"{f.slope:.3f} [{f.ci_low:.3f}, {f.ci_high:.3f}]",
        f"{tails[tau].slope:.3f} [{tails[tau].ci_low:.3f}, "
        f"{tails[tau].ci_high:.3f}]", tc.fmt(m[0]),
        tc.fmt(m[last]), tc.fmt(final_at_last[tau]),
        tc.fmt(m[last] / measured[0].mean(0)[last], 3),
        tc.fmt(pred[tau]["sqrt_t_bound"][last] /
               pred[0]["sqrt_t_bound"][last], 3),
        tc.fmt(pred[tau]["koloskova_constant"][last] /
               pred[0]["koloskova_constant"][last], 3)])
  drows = [[tau, tc.fmt(drift[tau]["measured"]), tc.fmt(drift[tau]["bound"]),
            tc.fmt(drift[tau]["measured"] / drift[tau]["bound"], 3)
            if tau else "-"] for tau in taus]
  body = f"""Problem: {p.name} (as experiment 1): L = {p.lipschitz:.4g}, mu =
{p.mu:.4g}, sigma^2 = {p.sigma2:.4g}, zeta^2 = {p.zeta2:.4g}, F0 = {f0:.4g}.
FedAsync alpha = {alpha}, client step eta(T) = {eta0:.4g} sqrt({horizons[0]}
/ T), one local step. Staleness pinned: identical speeds, no jitter, C =
tau_max + 1 (after the first C arrivals tau = tau_max exactly). {seeds}
seeds per (tau_max, T), one `sweep.sweep` per pair.

{tc.md_table(["tau_max", "tau_avg / max (realised)", "slope [95% CI]",
              f"slope over T >= {horizons[-3:][0]}",
              f"avg ||grad||^2 at T={horizons[0]}",
              f"at T={horizons[last]}",
              f"end level at T={horizons[last]}", "measured ratio to tau=0",
              "sqrt_t_bound ratio", "koloskova_constant ratio"], rows)}

"avg" is the averaged squared gradient norm over the run (the bounds'
quantity); "end level" is the mean over the last 10% of versions (the noise
floor reached at the end). End level at T = {horizons[last]} by tau_max:
{', '.join(f'{t}: {final_at_last[t]:.3g}' for t in taus)}; whole-run
average: {', '.join(f'{t}: {measured[t].mean(0)[last]:.3g}' for t in taus)}.
A reading (not a proven claim): under FedAsync's mixing, w <- (1 - alpha) w
+ alpha w_client, a stale client model is built from an older iterate, and
mixing it in averages over past iterates, which can damp the noise floor
(an implicit averaging), while a large tau_max slows the transient; the
delayed-SGD bounds only ever charge for staleness.

Predicted ratios use one constant per bound fitted on tau_max = 0 (c =
{', '.join(f'{k}: {v:.3g}' for k, v in c.items())}); `sqrt_t_bound` =
c (2 F0/(g0 sqrt T) + L g0 s2/sqrt T + 2 L^2 g0^2 s2 tau_max / T) with the
effective step g0/sqrt(T) = alpha eta(T) (g0 = {gamma0:.4g}) and s2 = zeta^2
+ sigma^2 = {s2:.4g}; `koloskova_constant` = the exact inverse of c (L F0 s2
/ eps^2 + L F0 sqrt(tau_C tau_max) / eps) with tau_C = C.

Drift ||w_t - w_(t-tau)||^2 (AFL Definition 1 / Assumption 4), measured
exactly for every update with `theory.track_many` (ring buffer of the last
tau_max + 1 versions) at T = {drift_T}, {drift_seeds} seeds, mean over the
second half, against `theory.drift_bound` = 2 g^2 (tau^2 G^2 + tau s2) with
g = alpha eta, G^2 the measured mean ||grad F||^2 (no fitted constant):

{tc.md_table(["tau", "measured drift", "drift_bound", "measured / bound"],
             drows)}

Timing: total {timer():.1f} s (sweeps: {', '.join(
    f'tau={t}: {walls[t]:.1f} s' for t in taus)}). Plot: `{name}.png`;
per-seed numbers: `{name}.csv`; everything: `{name}.json`.
"""
  return body


def main():
  args = tc.parser(__doc__).parse_args()
  ns = measure(args)
  out = tc.out_dir(args)
  name = tc.run_name("theory_staleness_bound", args)
  tc.write_csv(out / f"{name}.csv", ns.records)
  tc.write_json(out / f"{name}.json", summary(ns))
  plot(ns, out / f"{name}.png")
  body = markdown(ns, name)
  tc.write_md(out / f"{name}.md",
              "Experiment 2: effect of the staleness bound tau_max", body)
  print(body)


if __name__ == "__main__":
  main()
