"""Experiment 1: does the averaged squared gradient norm fall like 1/sqrt(T)?

FedAsync (arXiv:1903.03934) with bounded staleness (a cutoff at
``tau_max``) on a least-squares problem with known constants
(``theory.least_squares``), client step size ``eta(T) = eta0 sqrt(T0 / T)``
(mixing weight ``alpha`` fixed, so the effective step ``alpha eta`` is
``~ 1/sqrt(T)``). For every horizon ``T`` the seeds run as ONE vectorized
sweep (``sweep.sweep``, per-member keys and schedules); the exact
``||grad F(w_v)||^2`` is evaluated at every version inside the compiled scan
(``eval_every=1``).

The measured average ``(1/V) sum_{v<V} ||grad F(w_v)||^2`` is fitted three
ways, side by side, each with a bootstrap interval over seeds and its
goodness of fit (log residuals, chi-square against the seed noise,
``theory.goodness_of_fit``): the straight log-log line
(``theory.loglog_slope``), the weighted pure power ``A T^-p`` and the
weighted curve ``A T^-p + B / T`` (``theory.rate_fit``), the shape of the
bounds (a slow term and a ``1/T`` term), whose exponent is reported when it
fits. The bounds of ``theory.bounds`` are not drawn here: they are theorems
about asynchronous SGD (the stale gradient added to the current model),
and FedAsync's mixing is of that form only when ``tau = 0``; their
step-size conditions are reported (experiment 2 runs them inside them).

Recorded (experiments/results/theory/theory_rate.*): ``python
experiments/theory_rate.py --out experiments/results/theory``.
``--smoke``: T in {50, 100, 200}, 2 seeds, written
to ``--out``.

``--seed S`` (default 0, the recorded draws) moves the schedules, the
training keys and the bootstraps (their literal seeds plus ``S x
1,000,000``); the problem (``make_problem``, seed 0) is the one studied
and stays fixed.

Run: ``.venv/bin/python experiments/theory_rate.py [--quick | --smoke]
[--seed S]``
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

import theory_claims
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
  """Per-seed averaged grad norms ``(seeds, K)`` plus run records; the
  schedules' seeds are ``seed_offset + 10_000 j + s`` and horizon ``j``'s
  keys split from ``seed_offset + j`` (``theory_common.seed_base``)."""
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
      g = theory.per_version(o.evals, "test_grad_sq")
      gap = theory.per_version(o.evals, "test_gap")
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


def conditions(T, *, p, alpha, eta0, T0, tau_max):
  """Lian et al.'s step condition (``theory.delayed_sgd_condition``) for
  the effective step ``alpha eta(T)``, as if the run were delayed SGD."""
  g = alpha * eta0 * np.sqrt(T0 / np.asarray(T, float))
  return [theory.delayed_sgd_condition(np.full(int(t), gi),
                                       lipschitz=p.lipschitz,
                                       tau_max=tau_max).value
          for t, gi in zip(T, g)]


def sizes(args):
  """(horizons, seeds) of the run."""
  if args.smoke:
    return [50, 100, 200], 2
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
                                  problem=p, seed_offset=tc.seed_base(args))
  nb = 200 if args.smoke else 4000
  boot = tc.seed_base(args)  # the bootstraps' seeds: boot + 0 .. 3
  fit = theory.loglog_slope(horizons, vals, num_boot=nb, seed=boot)
  # The 1/T terms (staleness, transient) steepen the slope at small T: fit
  # the largest three horizons too.
  tail = theory.loglog_slope(horizons[-3:], vals[:, -3:], num_boot=nb,
                             seed=boot + 1)
  T = np.asarray(horizons, float)
  mean = vals.mean(0)
  tau_avg = float(np.mean([r["tau_avg"] for r in records]))
  tau_real = int(max(r["tau_max"] for r in records))
  # The curve A T^-p + B/T and the pure power, weighted by the seed noise;
  # the straight line's residuals through the same goodness of fit.
  curve = theory.rate_fit(horizons, vals, num_boot=nb, seed=boot + 2)
  power = theory.rate_fit(horizons, vals, inverse_t=False, num_boot=nb,
                          seed=boot + 3)
  line_q = theory.goodness_of_fit(
      horizons, vals, np.exp(fit.intercept) * T ** fit.slope, num_params=2)
  f0 = float(p.full_loss(jnp.zeros(p.dim))) - p.f_star
  return SimpleNamespace(
      horizons=horizons, seeds=seeds, seed=args.seed, conc=conc,
      tau_max=tau_max, alpha=alpha, p=p, eta0=eta0, vals=vals,
      records=records, sweep_wall=sweep_wall, fit=fit, tail=tail, T=T,
      mean=mean,
      local=np.diff(np.log(mean)) / np.diff(np.log(horizons)),
      tau_avg=tau_avg, tau_real=tau_real, curve=curve, power=power,
      line_q=line_q, f0=f0,
      lian=conditions(T, p=p, alpha=alpha, eta0=eta0, T0=horizons[0],
                      tau_max=tau_real),
      timer=timer, n_updates=int(sum(horizons) * seeds))


def _fits(m):
  """The three fits as rows: (name, p, ci, quality, extra)."""
  f = m.fit
  return [
      ("straight line (OLS on log mean)", -f.slope, (-f.ci_high, -f.ci_low),
       m.line_q, {"intercept": f.intercept}),
      ("A T^-p (weighted)", m.power.p, (m.power.ci_low, m.power.ci_high),
       m.power.quality, {"a": m.power.a, "at_bound": m.power.at_bound}),
      ("A T^-p + B/T (weighted)", m.curve.p,
       (m.curve.ci_low, m.curve.ci_high), m.curve.quality,
       {"a": m.curve.a, "b": m.curve.b, "at_bound": m.curve.at_bound}),
  ]


def _verdict(q) -> str:
  """Whether a fit passes the chi-square test at the 1% level."""
  if not np.isfinite(q.p_value):
    return "not testable (no degree of freedom left, or one seed)"
  if q.p_value >= 0.01:
    return (f"fits within the seed noise at the 1% level "
            f"(p = {q.p_value:.2g} >= 0.01)")
  return (f"does not fit at the 1% level (p = {q.p_value:.2g} < 0.01)")


def summary(m):
  """The JSON summary."""
  p, fit, tail = m.p, m.fit, m.tail
  return {
      "problem": {"name": p.name, "L": p.lipschitz, "mu": p.mu,
                  "sigma2": p.sigma2, "zeta2": p.zeta2, "f_star": p.f_star,
                  "client_lipschitz": p.client_lipschitz},
      "setup": {"horizons": m.horizons, "seeds": m.seeds, "seed": m.seed,
                "concurrency": m.conc, "tau_max_cutoff": m.tau_max,
                "alpha": m.alpha, "eta0": m.eta0, "T0": m.horizons[0],
                "speeds": "constant", "jitter": "exponential",
                "local_steps": 1},
      "measured_mean": m.mean, "measured_std": m.vals.std(0, ddof=1),
      "slope": fit.slope, "ci": [fit.ci_low, fit.ci_high],
      "tail_slope": tail.slope, "tail_ci": [tail.ci_low, tail.ci_high],
      "tail_horizons": m.horizons[-3:], "local_slopes": m.local,
      "level": fit.level, "seed_slope_mean": fit.seed_mean,
      "seed_slope_se": fit.seed_se,
      "fits": [{"model": name, "p": pv, "ci": list(ci),
                "log_residuals": q.log_residuals, "z": q.z, "rmse": q.rmse,
                "chi2": q.chi2, "dof": q.dof, "p_value": q.p_value, **extra}
               for name, pv, ci, q, extra in _fits(m)],
      "exponent": {"model": "A T^-p + B/T", "p": m.curve.p,
                   "ci": [m.curve.ci_low, m.curve.ci_high]},
      "tau_avg": m.tau_avg, "tau_max": m.tau_real, "f0_gap": m.f0,
      "bounds": {"drawn": False,
                 "reason": "FedAsync's mixing is asynchronous SGD (the "
                           "algorithm of every bound) only when tau = 0",
                 "lian_condition_if_delayed_sgd": m.lian},
      "updates": m.n_updates, "sweep_wall_s": m.sweep_wall,
      "wall_s": m.timer(),
  }


def plot(m, path):
  plt = tc.pyplot()
  if plt is None:
    return
  T = m.T
  fig, (ax, rx) = plt.subplots(1, 2, figsize=(11, 4.2))
  for s in range(m.seeds):
    ax.plot(T, m.vals[s], color="0.8", lw=0.6, zorder=1)
  ax.plot(T, m.mean, "ko", label=f"measured (mean of {m.seeds} seeds)",
          zorder=3)
  Tf = np.geomspace(T[0], T[-1], 200)
  f, c, pw = m.fit, m.curve, m.power
  ax.plot(Tf, np.exp(f.intercept) * Tf ** f.slope, "C0--",
          label=f"line: p = {-f.slope:.3f}")
  ax.plot(Tf, pw.a * Tf ** -pw.p, "C2:", label=f"A T^-p: p = {pw.p:.3f}")
  ax.plot(Tf, c.a * Tf ** -c.p + c.b / Tf, "C1-",
          label=f"A T^-p + B/T: p = {c.p:.3f} [{c.ci_low:.3f}, "
                f"{c.ci_high:.3f}]")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_minor_formatter(plt.NullFormatter())
  ax.set_xlabel("T (arrivals; client step ~ 1/sqrt(T))")
  ax.set_ylabel("(1/T) sum_t ||grad F(w_t)||^2")
  ax.set_title(f"FedAsync, tau <= {m.tau_max}: averaged squared gradient norm")
  ax.legend(fontsize=7)
  for (name, _, _, q, _), st in zip(_fits(m), ("C0o--", "C2s:", "C1^-")):
    rx.errorbar(T, q.log_residuals, yerr=1.96 * q.se, fmt=st, ms=4,
                capsize=2, label=f"{name}: chi2 {q.chi2:.1f} / {q.dof}")
  rx.axhline(0, color="k", lw=0.6)
  rx.set_xscale("log")
  rx.set_xlabel("T")
  rx.set_ylabel("log(measured) - log(fit)  (+- 1.96 se)")
  rx.set_title("residuals")
  rx.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def markdown(m, name):
  """The markdown body (the text the recorded file was written with)."""
  p, fit, tail, horizons, c = m.p, m.fit, m.tail, m.horizons, m.curve
  rows = [[int(t), tc.fmt(mu), tc.fmt(sd),
           tc.fmt(np.exp(fit.intercept) * t ** fit.slope),
           tc.fmt(c.a * t ** -c.p + c.b / t)]
          for t, mu, sd in zip(m.T, m.mean, m.vals.std(0, ddof=1))]
  frows = [[name, f"{pv:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
            + (" (at bound)" if extra.get("at_bound") else ""),
            f"{q.chi2:.1f} / {q.dof}", tc.fmt(q.p_value, 3),
            f"{q.rmse:.4f}",
            ", ".join(f"{x:+.3f}" for x in q.log_residuals)]
           for name, pv, ci, q, extra in _fits(m)]
  verdicts = {name: _verdict(q) for name, _, _, q, _ in _fits(m)}
  head = theory_claims.rate(c)
  body = head + f"""Problem: {p.name}, L = {p.lipschitz:.4g}, mu = {p.mu:.4g},
sigma^2 = {p.sigma2:.4g} (minibatch of {p.batch_size} at w*), zeta^2 =
{p.zeta2:.4g}, max client smoothness {p.client_lipschitz:.4g}, F0 = F(0) - F*
= {m.f0:.4g}.

Setup: FedAsync, alpha = {m.alpha}, constant s(tau) with a cutoff at tau_max =
{m.tau_max} (scheduler and rule), closed loop C = {m.conc}, identical device
speeds with exponential per-task jitter (no participation bias), one local
SGD step on a minibatch of {p.batch_size}, client step eta(T) = {m.eta0:.4g} *
sqrt({horizons[0]} / T). Realised staleness: tau_avg = {m.tau_avg:.3f}, tau_max
= {m.tau_real}. {m.seeds} seeds per horizon, run as one `sweep.sweep` per
horizon (per-member keys and schedules); exact ||grad F||^2 at every
version (`eval_every=1`).

The problem is strongly convex (mu > 0), so the averaged norm is a slow
term plus a 1/T term (the transient from w_0, staleness), and its log-log
plot is curved: a straight line over a range where the 1/T term still
matters mixes the two. Three fits side by side ({int(fit.level * 100)}%
bootstrap intervals over seeds; "p" is minus the log-log slope; the chi-square
compares each fit's log residuals with the standard error of the log mean
over seeds, so a small p-value means the model does not fit the curve):

{tc.md_table(["model", "exponent p [95% CI]", "chi2 / dof", "p-value",
              "rms log residual", "log residuals by T"], frows)}

**Exponent (A T^-p + B/T): p = {c.p:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]**,
A = {c.a:.4g}, B = {c.b:.4g}. Goodness of fit: {'; '.join(f'{k}: {v}' for k, v in verdicts.items())}.
Expected: p >= 1/2 (FedAsync's and AFL's O(1/sqrt(T)) is an upper bound).
For comparison, the straight line over all T gives slope {fit.slope:.3f}
[{fit.ci_low:.3f}, {fit.ci_high:.3f}], over the largest three horizons
({', '.join(map(str, horizons[-3:]))}) {tail.slope:.3f} [{tail.ci_low:.3f},
{tail.ci_high:.3f}]; local slopes between consecutive horizons:
{', '.join(f'{x:.3f}' for x in m.local)}.

{tc.md_table(["T", "measured mean", "sd over seeds", "line",
              "A T^-p + B/T"], rows)}

Bounds: not drawn. Every bound in `theory.bounds` is a theorem about
asynchronous SGD (the stale gradient added to the current model); FedAsync's
update w <- (1 - alpha) w + alpha w_client is of that form only when tau = 0
(realised tau_avg here {m.tau_avg:.2f}). Even read as delayed SGD with step
alpha eta(T), the run is outside Lian et al.'s step condition
(arXiv:1506.08272, Thm 1: L g + 2 L^2 tau_max sum g <= 1): its left-hand
side is {', '.join(f'{v:.3g}' for v in m.lian)} at T = {', '.join(map(str, horizons))}.
Experiment 2 (`theory_staleness_bound.py`) runs the bounds on asynchronous
SGD inside their conditions.

Timing: {m.n_updates} client updates, sweeps {m.sweep_wall:.1f} s, total
{m.timer():.1f} s (2-core CPU, shared). Plot: `{name}.png` (fits and
residuals); per-seed numbers: `{name}.csv`; everything: `{name}.json`.
"""
  return body


def main():
  return tc.main(__doc__, "theory_rate", title="Experiment 1: averaged "
                 "gradient norm vs T", measure=measure, summary=summary,
                 plot=plot, markdown=markdown, length=length)


def length(args) -> str:
  """The markdown's length line (``theory_common.length_line``)."""
  return tc.length_line(args, lambda a: dict(zip(("horizons T", "seeds"),
                                                 sizes(a))))


if __name__ == "__main__":
  main()
