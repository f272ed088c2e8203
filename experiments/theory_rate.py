"""Experiment 1: does the averaged squared gradient norm fall like 1/sqrt(T)?

FedAsync (arXiv:1903.03934) with bounded staleness (a cutoff at
``tau_max``) on a least-squares problem with known constants
(``theory.least_squares``), client step size ``eta(T) = eta0 sqrt(T0 / T)``
(mixing weight ``alpha`` fixed, so the effective step ``alpha eta`` is
``~ 1/sqrt(T)``). For every horizon ``T`` the seeds run as ONE vectorized
sweep (``sweep.sweep``, per-member keys and schedules); the exact
``||grad F(w_v)||^2`` is evaluated at every version inside the compiled scan
(``eval_every=1``). The measured average ``(1/V) sum_{v<V} ||grad F(w_v)||^2``
is fitted on ``log T`` (bootstrap interval over seeds) and drawn next to the
bounds of ``theory`` (the delayed-SGD / FedAsync-AFL ``O(1/sqrt(T))`` bound
and Koloskova et al.'s rates, arXiv:2206.08307), each with one fitted
multiplicative constant.

Recorded (experiments/results/theory/theory_rate.*): ``python
experiments/theory_rate.py --out experiments/results/theory``.
``--smoke``: T in {50, 100}, 2 seeds, written
to ``--out``.

Run: ``.venv/bin/python experiments/theory_rate.py [--quick | --smoke]``
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

SMOKE_OUTPUT = "theory_rate_smoke.md"


def make_problem():
  return theory.least_squares(
      num_clients=100, examples_per_client=20, dim=10, lipschitz=1.0,
      mu=0.25, zeta2=1.0, sigma2=1.0, batch_size=5, shift="linear",
      w_star_scale=3.0, seed=0)


def run(horizons, seeds, *, concurrency, tau_max, alpha, eta0, problem,
        jitter="exponential", seed_offset=0):
  """Per-seed averaged grad norms ``(seeds, K)`` plus run records."""
  p = problem
  N = p.num_clients
  upd = client.local_update(p.loss, optax.sgd(eta0), batch_size=p.batch_size,
                            max_examples=p.examples_per_client, steps=1)
  dm = delays.delay_model(np.ones(N), np.ones(N), jitter=jitter)
  s_fn = (staleness.cutoff(staleness.constant(), tau_max)
          if tau_max is not None else staleness.constant())
  make_rule = lambda hp: rules.fedasync(hp["alpha"], s_fn)  # noqa: E731
  T0 = horizons[0]
  vals = np.zeros((seeds, len(horizons)))
  records = []
  wall = 0.0
  for j, T in enumerate(horizons):
    scheds = [scheduler.asynchronous(
        dm, num_updates=T, concurrency=concurrency, max_staleness=tau_max,
        seed=seed_offset + 10_000 * j + s) for s in range(seeds)]
    keys = jax.random.split(jax.random.key(seed_offset + j), seeds)
    timer = tc.Timer()
    outs = sweep.sweep(make_rule, {"alpha": jnp.full(seeds, alpha)}, upd,
                       jnp.zeros(p.dim), p.data, scheds, keys=keys,
                       client_lr_scale=np.full(seeds, np.sqrt(T0 / T)),
                       eval_fn=theory.metrics_fn(p), eval_every=1,
                       chunk_steps=256)
    wall += timer()
    for s, o in enumerate(outs):
      g = theory.per_version(o.evals, "grad_sq")
      gap = theory.per_version(o.evals, "gap")
      st = theory.staleness_stats(o)
      V = len(g) - 1
      vals[s, j] = g[:-1].mean()
      records.append({
          "T": T, "seed": s, "versions": V,
          "avg_grad_sq": g[:-1].mean(),
          "final_grad_sq": g[-max(1, V // 10):].mean(),
          "final_gap": gap[-max(1, V // 10):].mean(),
          "tau_max": st.tau_max, "tau_avg": st.tau_avg,
          "dropped": st.num_dropped, "eta": eta0 * np.sqrt(T0 / T),
          "alpha": alpha})
  return vals, records, wall


def predictions(T, *, p, alpha, eta0, T0, tau_max, tau_c, tau_avg, measured):
  """Predicted curves (raw, c = 1) and their fitted constants."""
  f0 = float(p.full_loss(jnp.zeros(p.dim))) - p.f_star
  s2 = theory.effective_variance(p)
  gamma0 = alpha * eta0 * np.sqrt(T0)      # effective step = gamma0/sqrt(T)
  common = dict(lipschitz=p.lipschitz, f0_gap=f0, sigma2=s2)
  raw = {
      "sqrt_t_bound": theory.sqrt_t_bound(T, gamma0=gamma0, tau_max=tau_max,
                                          **common),
      "koloskova_constant": theory.koloskova_constant_rate(
          T, tau_c=tau_c, tau_max=tau_max, **common),
      "koloskova_adaptive": theory.koloskova_adaptive_rate(
          T, tau_avg=tau_avg, **common),
  }
  fitted = {}
  for k, v in raw.items():
    c = theory.fit_constant(measured, v)
    fitted[k] = {"c": c, "curve": c * v,
                 "slope": float(np.polyfit(np.log(T), np.log(v), 1)[0])}
  return {"f0_gap": f0, "sigma2_eff": s2, "gamma0": gamma0, "raw": raw,
          "fitted": fitted}


def sizes(args):
  """(horizons, seeds) of the run."""
  if args.smoke:
    return [50, 100], 2
  if args.quick:
    return [250, 500, 1000, 2000, 4000], 8
  return [500, 1000, 2000, 4000, 8000, 16000], 32


def measure(args):
  """The sweeps, the fits and the predictions (a namespace)."""
  horizons, seeds = sizes(args)
  conc, tau_max, alpha = 8, 16, 0.5
  p = make_problem()
  eta0 = 0.8 / p.client_lipschitz
  timer = tc.Timer()
  vals, records, sweep_wall = run(horizons, seeds, concurrency=conc,
                                  tau_max=tau_max, alpha=alpha, eta0=eta0,
                                  problem=p)
  nb = 200 if args.smoke else 4000
  fit = theory.loglog_slope(horizons, vals, num_boot=nb, seed=0)
  # The 1/T terms (staleness, transient) steepen the slope at small T: fit
  # the largest three horizons too.
  tail = theory.loglog_slope(horizons[-3:], vals[:, -3:], num_boot=nb,
                             seed=1)
  T = np.asarray(horizons, float)
  mean = vals.mean(0)
  tau_avg = float(np.mean([r["tau_avg"] for r in records]))
  tau_real = int(max(r["tau_max"] for r in records))
  pred = predictions(T, p=p, alpha=alpha, eta0=eta0, T0=horizons[0],
                     tau_max=tau_real, tau_c=conc, tau_avg=tau_avg,
                     measured=mean)
  return SimpleNamespace(
      horizons=horizons, seeds=seeds, conc=conc, tau_max=tau_max,
      alpha=alpha, p=p, eta0=eta0, vals=vals, records=records,
      sweep_wall=sweep_wall, fit=fit, tail=tail, T=T, mean=mean,
      local=np.diff(np.log(mean)) / np.diff(np.log(horizons)),
      tau_avg=tau_avg, tau_real=tau_real, pred=pred, timer=timer,
      n_updates=int(sum(horizons) * seeds))


def summary(m):
  """The JSON summary."""
  p, fit, tail, pred = m.p, m.fit, m.tail, m.pred
  return {
      "problem": {"name": p.name, "L": p.lipschitz, "mu": p.mu,
                  "sigma2": p.sigma2, "zeta2": p.zeta2, "f_star": p.f_star,
                  "client_lipschitz": p.client_lipschitz},
      "setup": {"horizons": m.horizons, "seeds": m.seeds,
                "concurrency": m.conc, "tau_max_cutoff": m.tau_max,
                "alpha": m.alpha, "eta0": m.eta0, "T0": m.horizons[0],
                "speeds": "constant", "jitter": "exponential",
                "local_steps": 1},
      "measured_mean": m.mean, "measured_std": m.vals.std(0, ddof=1),
      "slope": fit.slope, "ci": [fit.ci_low, fit.ci_high],
      "tail_slope": tail.slope, "tail_ci": [tail.ci_low, tail.ci_high],
      "tail_horizons": m.horizons[-3:], "local_slopes": m.local,
      "level": fit.level, "seed_slope_mean": fit.seed_mean,
      "seed_slope_se": fit.seed_se, "tau_avg": m.tau_avg,
      "tau_max": m.tau_real,
      "predictions": {k: {"c": v["c"], "slope_over_range": v["slope"],
                          "curve_fitted": v["curve"],
                          "curve_raw": pred["raw"][k]}
                      for k, v in pred["fitted"].items()},
      "f0_gap": pred["f0_gap"], "sigma2_eff": pred["sigma2_eff"],
      "gamma0": pred["gamma0"], "updates": m.n_updates,
      "sweep_wall_s": m.sweep_wall, "wall_s": m.timer(),
  }


def plot(m, path):
  plt = tc.pyplot()
  if plt is None:
    return
  fit, T = m.fit, m.T
  fig, ax = plt.subplots(figsize=(6, 4.2))
  for s in range(m.seeds):
    ax.plot(T, m.vals[s], color="0.8", lw=0.6, zorder=1)
  ax.plot(T, m.mean, "ko-", label=f"measured (mean of {m.seeds} seeds), "
          f"slope {fit.slope:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}]",
          zorder=3)
  styles = {"sqrt_t_bound": "C0--", "koloskova_constant": "C1-.",
            "koloskova_adaptive": "C2:"}
  for k, v in m.pred["fitted"].items():
    ax.plot(T, v["curve"], styles[k], label=f"{k} x c={v['c']:.3g}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_minor_formatter(plt.NullFormatter())
  ax.set_xlabel("T (arrivals; client step ~ 1/sqrt(T))")
  ax.set_ylabel("(1/T) sum_t ||grad F(w_t)||^2")
  ax.set_title("FedAsync, tau <= 16: averaged squared gradient norm")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def markdown(m, name):
  """The markdown body (the text the recorded file was written with)."""
  p, fit, tail, pred, horizons = m.p, m.fit, m.tail, m.pred, m.horizons
  alpha, tau_max, conc, eta0, seeds = (m.alpha, m.tau_max, m.conc, m.eta0,
                                       m.seeds)
  tau_avg, tau_real, local, timer = m.tau_avg, m.tau_real, m.local, m.timer
  n_updates, sweep_wall = m.n_updates, m.sweep_wall
  rows = [[int(t), tc.fmt(mu), tc.fmt(sd), tc.fmt(
      pred["fitted"]["sqrt_t_bound"]["curve"][i]), tc.fmt(
      pred["fitted"]["koloskova_constant"]["curve"][i])]
      for i, (t, mu, sd) in enumerate(zip(m.T, m.mean,
                                          m.vals.std(0, ddof=1)))]
  body = f"""Problem: {p.name}, L = {p.lipschitz:.4g}, mu = {p.mu:.4g},
sigma^2 = {p.sigma2:.4g} (minibatch of {p.batch_size} at w*), zeta^2 =
{p.zeta2:.4g}, max client smoothness {p.client_lipschitz:.4g}, F0 = F(0) - F*
= {pred['f0_gap']:.4g}.

Setup: FedAsync, alpha = {alpha}, constant s(tau) with a cutoff at tau_max =
{tau_max} (scheduler and rule), closed loop C = {conc}, identical device
speeds with exponential per-task jitter (no participation bias), one local
SGD step on a minibatch of {p.batch_size}, client step eta(T) = {eta0:.4g} *
sqrt({horizons[0]} / T). Realised staleness: tau_avg = {tau_avg:.3f}, tau_max
= {tau_real}. {seeds} seeds per horizon, run as one `sweep.sweep` per
horizon (per-member keys and schedules); exact ||grad F||^2 at every
version (`eval_every=1`).

**Fitted log-log slope: {fit.slope:.3f}, {int(fit.level * 100)}% bootstrap
CI [{fit.ci_low:.3f}, {fit.ci_high:.3f}]** (per-seed slopes: mean
{fit.seed_mean:.3f} +- {fit.seed_se:.3f} s.e.). Expected: -1/2.
Over the largest three horizons ({', '.join(map(str, horizons[-3:]))}):
**{tail.slope:.3f} [{tail.ci_low:.3f}, {tail.ci_high:.3f}]**; local slopes
between consecutive horizons: {', '.join(f'{x:.3f}' for x in local)}. Terms
of order 1/T in the bounds (staleness, the transient from w_0) steepen the
slope at small T; compare the local slopes with -1/2.

{tc.md_table(["T", "measured mean", "sd over seeds", "sqrt_t_bound x c",
              "koloskova_constant x c"], rows)}

Predicted curves (formulas in `fedasync_jax.theory`; every hidden constant
set to 1, then one multiplicative constant c fitted in log space):

{tc.md_table(["bound", "fitted c", "local slope over the range"],
             [[k, tc.fmt(v['c']), f"{v['slope']:.3f}"]
              for k, v in pred['fitted'].items()])}

`sqrt_t_bound` uses the effective step alpha*eta(T) = {pred['gamma0']:.4g} /
sqrt(T) and the effective noise zeta^2 + sigma^2 = {pred['sigma2_eff']:.4g}
(`theory.effective_variance`); the Koloskova rates are for the tuned step
with tau_C = C = {conc} and the realised tau_max / tau_avg. A fitted c below
1 means the bound (with unit constants) is above the measurement.

Timing: {n_updates} client updates, sweeps {sweep_wall:.1f} s, total
{timer():.1f} s (2-core CPU, shared). Plot: `{name}.png`; per-seed numbers:
`{name}.csv`; everything: `{name}.json`.
"""
  return body


def main():
  args = tc.parser(__doc__).parse_args()
  m = measure(args)
  out = tc.out_dir(args)
  name = tc.run_name("theory_rate", args)
  tc.write_csv(out / f"{name}.csv", m.records)
  tc.write_json(out / f"{name}.json", summary(m))
  plot(m, out / f"{name}.png")
  body = markdown(m, name)
  tc.write_md(out / f"{name}.md", "Experiment 1: averaged gradient norm vs T",
              body)
  print(body)


if __name__ == "__main__":
  main()
