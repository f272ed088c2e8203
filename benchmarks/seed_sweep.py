#!/usr/bin/env python
"""Seed sweeps: members with different schedules as one compiled program
vs the same runs one after another.

Workload (W1-sized): MNIST over 1000 Dirichlet(0.5) clients, MLP
784-200-200-10, 1 local epoch, batch 10, SGD 0.05; FedAsync with
polynomial staleness; closed-loop concurrency 100, lognormal speeds
(sigma 1), work = example counts; ``--updates`` client updates per member
(default 300); test accuracy every ``--eval-every`` versions (default 100)
on the 10,000 test images. Each seed has its own schedule (seed k), PRNG
key and initial parameters are shared.

Cases:

* ``grid_x_seeds``: alpha in {0.3, 0.9} x a in {0.5, 1.0} x 4 seeds (16
  members, 4 schedules);
* ``seeds``: alpha 0.6, a 0.5, 16 seeds (16 members, 16 schedules).

Systems (wall time including compilation, as a user sees it):

* ``separate``: one ``executor.simulate`` per member, written as a user
  would: one rule object per grid point, reused for its seeds (the
  in-process program cache then compiles once per grid point);
* ``sweep``: one ``sweep.sweep`` over all members.

Each of ``--repeats`` (3) rounds times both systems, in an order that
alternates round by round, each after the in-process program cache is
emptied (so every round compiles as a first call does); a case gives each
system's median and the median of the per-round ratios. Each member of
the sweep is compared with its separate run (largest relative parameter
difference). Targets (issue "the simulator as a JAX
function"): both cases >= 3x separate.

``compute_floor`` measures what no sweep can share between members with
different parameters: their client SGD steps (the case's total, from the
schedules and client sizes) and their test-set evaluations, each timed
alone as a compiled loop, plus how much faster XLA runs those SGD steps
batched over the members (``vmap``) than one member after another. The
bound ``separate_s / (floor_s / batching_gain)`` is the most any sweep
can gain on this machine.

The LAST line printed is one JSON object, also written to
``<--out>/seed_sweep_<date>[_quick|_smoke].json`` (default
``runs/benchmarks/``, untracked; ``--out benchmarks/results`` records the run).

Usage:
  python benchmarks/seed_sweep.py               # 300 updates per member
  python benchmarks/seed_sweep.py --devices 2   # members split over 2 cores
  python benchmarks/seed_sweep.py --quick       # 150 updates
  python benchmarks/seed_sweep.py --smoke --out /tmp/x   # seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "seed_sweep_*_smoke.json"


def parse_args(argv):
  ap = C.mnist_parser(__doc__)
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--eval-every", type=int, default=None)
  ap.add_argument("--seeds", type=int, default=None,
                  help="seeds per case (default 4 for the grid, 16 alone)")
  ap.add_argument("--devices", type=int, default=1,
                  help="CPU devices (one per core) for the sweep: its "
                       "members are split over them (shard_map); the "
                       "separate runs then run in a child process with the "
                       "usual single device, the sweep in another")
  ap.add_argument("--repeats", type=int, default=None,
                  help="rounds of both systems (default 3; --smoke and "
                       "--devices N: 1)")
  ap.add_argument("--part", choices=("separate", "sweep"), default=None,
                  help=argparse.SUPPRESS)  # a child of --devices N
  args = ap.parse_args(argv)
  args.repeats = args.repeats or (1 if args.smoke or args.devices > 1
                                  else 3)
  if args.repeats < 1 or (args.devices > 1 and args.repeats != 1):
    ap.error(f"--repeats must be >= 1 (1 with --devices N), got "
             f"{args.repeats}")
  if args.updates is None:
    args.updates = 10 if args.smoke else 150 if args.quick else 300
  args.eval_every = args.eval_every or (10 if args.smoke else 100)
  args.clients = 20 if args.smoke else C.W1["num_clients"]
  args.concurrency = 5 if args.smoke else 100
  # SGD steps per timed loop of compute_floor (unoptimised smoke programs
  # run them slowly; the smoke run only checks the code path).
  args.floor_steps = 10 if args.smoke else 500
  return args


def cases(args):
  """``{name: [(alpha, a, seed), ...]}``."""
  grid_seeds = args.seeds or (1 if args.smoke else 4)
  seeds = args.seeds or (2 if args.smoke else 16)
  return {"grid_x_seeds": [(al, a, s) for al in (0.3, 0.9)
                           for a in (0.5, 1.0) for s in range(grid_seeds)],
          "seeds": [(0.6, 0.5, s) for s in range(seeds)]}


class Workload:
  """W1's data, model and client update; one schedule per seed."""

  def __init__(self, args, path):
    import jax
    from fedasync_jax import delays, models, scheduler
    self.ds, xt, yt = C.w1_data(path, num_clients=args.clients)
    model, self.params, self.upd, _, self.key = C.w1_pieces(self.ds)
    self.eval_fn = models.make_evaluator(model, xt, yt)
    dm = C.w1_delay_model(self.ds)
    self.scheds = {}
    self.make = lambda s: scheduler.asynchronous(
        dm, num_updates=args.updates, concurrency=args.concurrency, seed=s)
    self.eval_every = args.eval_every
    self.floor_steps = args.floor_steps
    del jax, delays

  def sched(self, seed):
    if seed not in self.scheds:
      self.scheds[seed] = self.make(seed)
    return self.scheds[seed]

  def separate(self, members):
    """One ``executor.simulate`` per member; (wall s, final params)."""
    import jax
    from fedasync_jax import executor, rules, staleness
    t = time.perf_counter()
    rule_of, finals = {}, []
    for al, a, s in members:
      if (al, a) not in rule_of:
        rule_of[(al, a)] = rules.fedasync(al, staleness.polynomial(a))
      out = executor.simulate(rule_of[(al, a)], self.upd, self.params,
                              self.ds, self.sched(s), key=self.key,
                              eval_fn=self.eval_fn,
                              eval_every=self.eval_every)
      finals.append(jax.device_get(out.state.params))
    return time.perf_counter() - t, finals

  def swept(self, members):
    """All members as one ``sweep.sweep``; (wall s, final params)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fedasync_jax import rules, staleness, sweep
    hp = {"alpha": jnp.asarray([m[0] for m in members], jnp.float32),
          "a": jnp.asarray([m[1] for m in members], jnp.float32)}

    def make_rule(h):
      return rules.fedasync(h["alpha"], staleness.polynomial(h["a"]))
    t = time.perf_counter()
    mesh = (jax.sharding.Mesh(np.array(jax.devices()), ("members",))
            if len(jax.devices()) > 1 else None)
    outs = sweep.sweep(make_rule, hp, self.upd, self.params, self.ds,
                       [self.sched(m[2]) for m in members], keys=self.key,
                       eval_fn=self.eval_fn, eval_every=self.eval_every,
                       mesh=mesh, members="map")
    return time.perf_counter() - t, [o.state.params for o in outs]


def _timed(fn, *args, repeats=3):
  """Median wall seconds of ``fn(*args)`` after one warm-up call."""
  import jax
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return C.median(times)


def compute_floor(w, members, *, steps=None):
  """The members' unshareable compute, timed alone (see the docstring);
  ``steps`` SGD steps per timed loop (default ``w.floor_steps``)."""
  steps = steps or w.floor_steps
  import jax
  import jax.numpy as jnp
  import numpy as np
  from fedasync_jax import models
  model = models.mlp()
  B, lr = C.W1["batch_size"], C.W1["client_lr"]
  x, y = jnp.asarray(w.ds.x[:5000]), jnp.asarray(w.ds.y[:5000])
  mask = jnp.ones((B,), bool)

  def sgd_step(p, i):
    idx = (i * B + jnp.arange(B)) % x.shape[0]
    g = jax.grad(model.loss)(p, x[idx], y[idx], mask)
    return jax.tree.map(lambda a, b: a - lr * b, p, g)

  one = jax.jit(lambda p: jax.lax.fori_loop(0, steps, lambda i, q:
                                            sgd_step(q, i), p))
  many = jax.jit(lambda p: jax.lax.fori_loop(
      0, steps, lambda i, q: jax.vmap(lambda r: sgd_step(r, i))(q), p))
  n = len(members)
  stacked = jax.tree.map(lambda a: jnp.stack([a] * n), w.params)
  step_s = _timed(one, w.params) / steps
  batched_step_s = _timed(many, stacked) / (steps * n)
  eval_s = _timed(jax.jit(w.eval_fn), w.params)
  counts = np.asarray(w.ds.counts)
  sgd_steps = sum(int(np.sum(-(-counts[w.sched(m[2]).arrival_client] // B)))
                  * C.W1["epochs"] for m in members)
  evals = sum(1 + -(-w.sched(m[2]).num_arrivals // w.eval_every)
              for m in members)  # version 0, every eval_every, the last
  floor = sgd_steps * step_s + evals * eval_s
  return {"sgd_steps": sgd_steps, "sgd_step_s": step_s,
          "batched_sgd_step_s": batched_step_s,
          "batching_gain": step_s / batched_step_s,
          "evaluations": evals, "eval_s": eval_s, "floor_s": floor}


def run_case(w, name, members, *, repeats=1):
  """``repeats`` rounds of the separate runs and the sweep (the order
  alternating, each compiling afresh); the case's record."""
  from fedasync_jax.sim import program
  for m in members:  # schedules are drawn before either system is timed
    w.sched(m[2])
  times = {"separate": [], "sweep": []}
  for r in range(repeats):
    for system in (("separate", "sweep") if r % 2 == 0
                   else ("sweep", "separate")):
      program.clear_cache()
      secs, finals = (w.separate if system == "separate" else w.swept)(
          members)
      times[system].append(secs)
      if system == "separate":
        sep = finals
      else:
        sw = finals
      C.log(f"{name}: round {r + 1}: {system} {secs:.1f} s")
  sep_s, sw_s = C.median(times["separate"]), C.median(times["sweep"])
  speedup = C.median([a / b for a, b in zip(times["separate"],
                                            times["sweep"])])
  C.log(f"{name}: separate {sep_s:.1f} s, sweep {sw_s:.1f} s (medians), "
        f"{speedup:.2f}x (median of the rounds' ratios)")
  n = sum(w.sched(m[2]).num_arrivals for m in members)
  floor = compute_floor(w, members)
  bound = sep_s / (floor["floor_s"] / max(floor["batching_gain"], 1.0))
  C.log(f"{name}: unshareable compute {floor['floor_s']:.1f} s, batching "
        f"gain {floor['batching_gain']:.2f}x -> bound {bound:.2f}x")
  return {"compute_floor": floor, "speedup_bound": bound,
          "members": len(members),
          "schedules": len({m[2] for m in members}), "repeats": repeats,
          "separate_s_each": times["separate"],
          "sweep_s_each": times["sweep"],
          "separate_s": sep_s, "sweep_s": sw_s, "speedup": speedup,
          "separate_updates_per_s": n / sep_s,
          "sweep_updates_per_s": n / sw_s,
          "max_rel_param_diff": max(C.rel_diff(a, b) for a, b in zip(sw, sep))}


def run_part(args, path, out):
  """A child of ``--devices N``: one system over every case; writes the
  timings (JSON) and final parameters (npz) into ``out``."""
  import jax
  import numpy as np
  if args.part == "sweep":
    jax.config.update("jax_num_cpu_devices", args.devices)
  w = Workload(args, path)
  times, arrays = {}, {}
  for name, members in cases(args).items():
    for m in members:
      w.sched(m[2])
    if args.part == "separate":
      secs, finals = w.separate(members)
      times[name] = {"separate_s": secs,
                     "compute_floor": compute_floor(w, members),
                     "num_arrivals": sum(w.sched(m[2]).num_arrivals
                                         for m in members)}
    else:
      secs, finals = w.swept(members)
      times[name] = {"sweep_s": secs}
    C.log(f"{name}: {args.part} {secs:.1f} s ({len(jax.devices())} "
          f"device(s))")
    for i, f in enumerate(finals):
      for j, leaf in enumerate(jax.tree.leaves(f)):
        arrays[f"{name}.{i}.{j}"] = np.asarray(leaf)
  np.savez(out / f"{args.part}_params.npz", **arrays)
  (out / f"{args.part}.json").write_text(C.json.dumps(times))


def devices_cases(args, argv, out):
  """``--devices N``: the separate runs in a child with one device, the
  sweep in a child with N; the cases' records."""
  import shutil
  import subprocess
  import tempfile
  from pathlib import Path
  import numpy as np
  base = list(argv if argv is not None else sys.argv[1:])
  work = Path(tempfile.mkdtemp(prefix="seed_sweep_parts_"))
  for part in ("separate", "sweep"):
    subprocess.run([sys.executable, os.path.abspath(__file__), *base,
                    "--part", part, "--out", str(work)], check=True)
  out = work
  sep = C.json.loads((out / "separate.json").read_text())
  sw = C.json.loads((out / "sweep.json").read_text())
  pa = np.load(out / "separate_params.npz")
  pb = np.load(out / "sweep_params.npz")
  records = {}
  for name, members in cases(args).items():
    s, t, n = (sep[name]["separate_s"], sw[name]["sweep_s"],
               sep[name]["num_arrivals"])
    diff = max(float(np.max(np.abs(pb[k] - pa[k])) /
                     max(float(np.max(np.abs(pa[k]))), 1e-30))
               for k in pa.files if k.startswith(name + "."))
    C.log(f"{name}: separate {s:.1f} s, sweep on {args.devices} devices "
          f"{t:.1f} s ({s / t:.2f}x)")
    records[name] = {"members": len(members),
                     "schedules": len({m[2] for m in members}),
                     "separate_s": s, "sweep_s": t, "speedup": s / t,
                     "separate_updates_per_s": n / s,
                     "sweep_updates_per_s": n / t,
                     "compute_floor": sep[name]["compute_floor"],
                     "max_rel_param_diff": diff}
  shutil.rmtree(work, ignore_errors=True)
  return records


def main(argv=None):
  args = parse_args(argv)
  started, load_start = time.perf_counter(), C.loadavg()
  out = C.out_dir(args)
  path = C.mnist_path(args, out)
  if C.skip_if_no_mnist(path, "seed_sweep"):
    return 0
  if args.part is not None:
    run_part(args, path, out)
    return 0
  result = {"workload": {**C.W1, "num_clients": args.clients,
                         "concurrency": args.concurrency,
                         "num_updates": args.updates,
                         "eval_every": args.eval_every},
            "devices": args.devices, "cases": {}}
  if args.devices > 1:
    result["cases"] = devices_cases(args, argv, out)
  else:
    w = Workload(args, path)
    for name, members in cases(args).items():
      result["cases"][name] = run_case(w, name, members,
                                       repeats=args.repeats)
  C.finish("seed_sweep", result, args=args, started=started,
           load_start=load_start)
  return 0


if __name__ == "__main__":
  sys.exit(main())
