"""The simulator as a JAX function: three uses, runnable.

Workload: FedProx Synthetic(1, 1) (embedded, no download), 100 clients,
logistic regression 60 -> 10, 1 local epoch of batch 10, SGD 0.01 (a
client built with ``fixed_steps=True``, which reverse mode needed when
these results were recorded; the default client now differentiates the same
way);
FedAsync ``alpha`` with polynomial staleness ``a``; closed-loop concurrency
10, lognormal speeds; ``--updates`` (200) client updates; float64.
The objective is the final test loss (mean cross-entropy on the 20% test
split of the data).

A caution measured here: with client SGD 0.05 instead of 0.01, the same
200-update run is chaotic in ``alpha``: ``jacfwd`` gives -9.5e6 while
central differences give 0.15, 20 and 1,299 for steps 1e-3, 1e-5, 1e-7
(at 40 and 100 updates all agree to 1e-9). Exact derivatives of a long
unrolled simulation can be useless for optimisation; compare with finite
differences at several steps before trusting them.

1. Hyperparameter gradient: ``d loss / d alpha`` and ``d loss / d a`` by
   ``jax.jacfwd`` and by ``jax.grad``, against central finite differences
   (step 1e-5).
2. ``jax.vmap`` over 32 staleness exponents ``a`` in [0, 4]: the final
   test loss of each, in one compiled call.
3. A simulation inside the user's own jitted training loop: 10 steps of
   ``optax.adam(0.05)`` on ``(alpha, a)`` (alpha through a sigmoid),
   each step a ``jax.jit``-compiled ``value_and_grad`` of a whole run.

Writes ``summary.md`` and ``results.json`` to ``--out`` (default: a new
``runs/jax_function-<UTC time>/``; recorded with ``--out
experiments/results/jax_function``). ``--quick``: 100 updates, 8
exponents, 3 optimizer steps; ``--smoke``: 16 updates, 2 exponents, 1
optimizer step.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SMOKE_OUTPUT = "summary.md"


def parse_args(argv):
  p = common.base_parser(__doc__.splitlines()[0], reads_data=False)
  p.add_argument("--updates", type=common.positive_int, default=None,
                 help="client updates of the simulated run (quick 100, "
                      "full 200)")
  return common.parse(p, argv, resolve)


def resolve(args):
  """Fills in the sizes of ``--smoke`` / ``--quick`` / the full length."""
  args.updates = args.updates or (16 if args.smoke else 100 if args.quick
                                  else 200)
  args.num_a = 2 if args.smoke else 8 if args.quick else 32
  args.meta_steps = 1 if args.smoke else 3 if args.quick else 10


LENGTH_OPTIONS = {"--updates": "updates", "exponents": "num_a",
                  "optimizer steps": "meta_steps"}


def length(args) -> str:
  """The summary's length line (``common.run_length``)."""
  return common.run_length(args, parse_args, LENGTH_OPTIONS,
                           smoke=args.smoke, quick=args.quick)


def setup(args):
  """The workload's pieces and ``loss(hp) -> final test loss``."""
  import jax
  import jax.numpy as jnp
  import optax
  from fedasync_jax import (client, delays, models, pure, rules, scheduler,
                            staleness, synthetic)
  fed = synthetic.synthetic(1.0, 1.0, num_clients=100, seed=0)
  model = models.logistic_regression(60, 10)
  params = jax.tree.map(lambda a: a.astype(jnp.float64),
                        model.init(jax.random.key(0)))
  upd = client.local_update(model.loss, optax.sgd(0.01), batch_size=10,
                            max_examples=fed.train.max_count,
                            fixed_steps=True)
  speeds = delays.device_speeds("lognormal", 100, sigma=1.0, seed=0)
  sched = scheduler.asynchronous(
      delays.delay_model(speeds, fed.train.counts.astype(float)),
      num_updates=args.updates, concurrency=10, seed=0)
  prep = pure.prepare(sched)
  x_test = jnp.asarray(fed.x_test, jnp.float64)
  y_test = jnp.asarray(fed.y_test)
  mask = jnp.ones(y_test.shape[0], jnp.float64)

  def make_rule(hp):
    return rules.fedasync(hp["alpha"], staleness.polynomial(hp["a"]))

  def loss(hp):
    state, _ = pure.run(make_rule, upd, params, prep, rule_hp=hp,
                        key=jax.random.key(0), data=fed.train)
    return model.loss(state.params, x_test, y_test, mask)
  return loss


def gradients(loss, say):
  """Use 1: jacfwd and grad against finite differences."""
  import jax
  hp = {"alpha": 0.6, "a": 0.5}
  f = jax.jit(loss)
  t = time.perf_counter()
  fwd = jax.jacfwd(f)(hp)
  t_fwd = time.perf_counter() - t
  t = time.perf_counter()
  rev = jax.jit(jax.grad(loss))(hp)
  t_rev = time.perf_counter() - t
  h, rows = 1e-5, []
  for name in ("alpha", "a"):
    up = dict(hp, **{name: hp[name] + h})
    down = dict(hp, **{name: hp[name] - h})
    fd = (float(f(up)) - float(f(down))) / (2 * h)
    rows.append({"hyperparameter": name, "jacfwd": float(fwd[name]),
                 "grad": float(rev[name]), "finite_difference": fd,
                 "rel_err_jacfwd": abs(float(fwd[name]) - fd) / abs(fd),
                 "rel_err_grad": abs(float(rev[name]) - fd) / abs(fd)})
    say(f"[1] d loss / d {name}: jacfwd {float(fwd[name]):.6g}, grad "
        f"{float(rev[name]):.6g}, finite difference {fd:.6g}")
  return {"at": hp, "rows": rows, "jacfwd_s": t_fwd, "grad_s": t_rev}


def exponent_sweep(loss, num_a, say):
  """Use 2: vmap over staleness exponents."""
  import jax
  import jax.numpy as jnp
  a = jnp.linspace(0.0, 4.0, num_a)
  t = time.perf_counter()
  losses = jax.jit(jax.vmap(lambda e: loss({"alpha": 0.6, "a": e})))(a)
  losses = jax.device_get(losses)
  wall = time.perf_counter() - t
  best = int(losses.argmin())
  say(f"[2] {num_a} exponents in one call: {wall:.1f} s; best a = "
      f"{float(a[best]):.3f} (loss {float(losses[best]):.4f})")
  return {"a": a.tolist(), "loss": losses.tolist(), "wall_s": wall}


def tune(loss, steps, say):
  """Use 3: a jitted training loop over the hyperparameters."""
  import jax
  import jax.numpy as jnp
  import optax
  opt = optax.adam(0.05)

  def objective(z):
    return loss({"alpha": jax.nn.sigmoid(z["alpha"]), "a": z["a"]})

  @jax.jit
  def step(z, opt_state):
    value, g = jax.value_and_grad(objective)(z)
    updates, opt_state = opt.update(g, opt_state)
    return optax.apply_updates(z, updates), opt_state, value
  z = {"alpha": jnp.asarray(0.0, jnp.float64),
       "a": jnp.asarray(0.5, jnp.float64)}
  opt_state, trace = opt.init(z), []
  t = time.perf_counter()
  for i in range(steps):
    z, opt_state, value = step(z, opt_state)
    trace.append({"step": i, "loss": float(value),
                  "alpha": float(jax.nn.sigmoid(z["alpha"])),
                  "a": float(z["a"])})
  say(f"[3] {steps} jitted steps: loss {trace[0]['loss']:.4f} -> "
      f"{trace[-1]['loss']:.4f} (alpha {trace[-1]['alpha']:.3f}, a "
      f"{trace[-1]['a']:.3f}), {time.perf_counter() - t:.1f} s")
  return trace


def summary(args, res, prov) -> str:
  lines = ["# The simulator as a JAX function", "", length(args), "",
           f"Synthetic(1, 1), 100 clients, logistic regression, FedAsync "
           f"with polynomial staleness, {args.updates} updates, float64.",
           "", prov.markdown(),
           "## 1. Hyperparameter gradient of the final test loss", "",
           "| hyperparameter | jacfwd | grad | finite difference | rel. err "
           "(jacfwd) | rel. err (grad) |", "|---|---|---|---|---|---|"]
  for r in res["gradients"]["rows"]:
    lines.append(f"| {r['hyperparameter']} | {r['jacfwd']:.6g} | "
                 f"{r['grad']:.6g} | {r['finite_difference']:.6g} | "
                 f"{r['rel_err_jacfwd']:.1e} | {r['rel_err_grad']:.1e} |")
  ex = res["exponents"]
  best = min(range(len(ex["a"])), key=lambda i: ex["loss"][i])
  lines += ["", f"## 2. vmap over {len(ex['a'])} staleness exponents", "",
            f"One compiled call, {ex['wall_s']:.1f} s; lowest final test "
            f"loss {ex['loss'][best]:.4f} at a = {ex['a'][best]:.3f}.", "",
            "## 3. Inside a jitted training loop", "",
            "| step | loss | alpha | a |", "|---|---|---|---|"]
  lines += [f"| {t['step']} | {t['loss']:.4f} | {t['alpha']:.3f} | "
            f"{t['a']:.3f} |" for t in res["tuning"]]
  return "\n".join(lines) + "\n"


def main(argv=None):
  import jax
  args = parse_args(argv)
  prov = common.Provenance()
  out = common.output_dir(args, "jax_function")
  log = common.Log(out)
  with common.interruptible(log), jax.enable_x64(True):
    loss = setup(args)
    res = {"gradients": gradients(loss, log),
           "exponents": exponent_sweep(loss, args.num_a, log),
           "tuning": tune(loss, args.meta_steps, log)}
  common.results.write_json(out / "results.json", res)
  common.write_text(out / "summary.md", summary(args, res, prov))
  out = common.finish(out)
  log(f"wrote {out}")
  log.close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
