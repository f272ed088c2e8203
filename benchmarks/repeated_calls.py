#!/usr/bin/env python
"""Many small ``simulate`` calls in one process: how much is compilation?

Workload (a theory loop): ``theory.least_squares`` with 50 clients of 20
examples, dimension 10; 1 local step of batch 5, SGD 0.05; FedAsync
alpha 0.6 with polynomial staleness ``a``; closed-loop concurrency 10,
lognormal speeds; ``--updates`` (200) client updates per call; ``--calls``
(32) calls one after another.

Styles:

* ``new_rule_each_call``: ``simulate(rules.fedasync(0.6,
  staleness.polynomial(a_i)), ...)``: a new rule object per call, each a
  new program (what every call cost before programs were cached);
* ``rule_function``: ``simulate(make_rule, ..., rule_hp={"a": a_i})``: one
  function of the hyperparameters, compiled once;
* ``same_rule_new_schedules``: one rule object, a new schedule (seed) per
  call: compiled once (buffer sizes are bucketed, so schedules of one
  configuration share a program).

Target (issue "the simulator as a JAX function"): ``rule_function`` >= 5x
less wall time than ``new_rule_each_call``. The two give the same
parameters (checked).

Each of ``--repeats`` (3) rounds times every style once, in an order
rotated round by round (every program cache emptied before each style);
the result gives each style's median and the medians of the per-round
ratios.

The LAST line printed is one JSON object, also written to
``<--out>/repeated_calls_<date>[_quick|_smoke].json`` (default
``runs/benchmarks/``, untracked; ``--out benchmarks/results`` records the run).

Usage:
  python benchmarks/repeated_calls.py
  python benchmarks/repeated_calls.py --smoke --out /tmp/x
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "repeated_calls_*_smoke.json"


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  C.add_output_args(ap)
  ap.add_argument("--calls", type=int, default=None)
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--repeats", type=int, default=None,
                  help="rounds of every style (default 3; --smoke 1)")
  args = ap.parse_args(argv)
  args.repeats = args.repeats or (1 if args.smoke else 3)
  if args.repeats < 1:
    ap.error(f"--repeats must be >= 1, got {args.repeats}")
  args.calls = args.calls or (4 if args.smoke else 32)
  args.updates = args.updates or (30 if args.smoke else 200)
  return args


class Workload:
  """The theory problem, its client update and schedules."""

  def __init__(self, args):
    import jax.numpy as jnp
    import numpy as np
    import optax
    from fedasync_jax import client, delays, scheduler, theory
    self.p = theory.least_squares(num_clients=50, examples_per_client=20,
                                  dim=10, batch_size=5)
    self.upd = client.local_update(self.p.loss, optax.sgd(0.05),
                                   batch_size=5, max_examples=20, steps=1)
    dm = delays.delay_model(delays.device_speeds("lognormal", 50, sigma=1.0,
                                                 seed=0), np.ones(50))
    self.sched = lambda seed: scheduler.asynchronous(
        dm, num_updates=args.updates, concurrency=10, seed=seed)
    self.w0 = jnp.zeros(10, jnp.float32)
    self.exponents = np.linspace(0.0, 2.0, args.calls)

  def run(self, style):
    """Runs the calls of one style; (wall s, final params per call)."""
    import jax
    from fedasync_jax import executor, rules, staleness
    from fedasync_jax.sim import program
    program.clear_cache()
    make_rule = lambda hp: rules.fedasync(  # noqa: E731
        0.6, staleness.polynomial(hp["a"]))
    same = rules.fedasync(0.6, staleness.polynomial(0.5))
    s0 = self.sched(0)
    finals = []
    t = time.perf_counter()
    for i, a in enumerate(self.exponents):
      key = jax.random.key(i)
      if style == "new_rule_each_call":
        out = executor.simulate(rules.fedasync(0.6, staleness.polynomial(
            float(a))), self.upd, self.w0, self.p.data, s0, key=key)
      elif style == "rule_function":
        out = executor.simulate(make_rule, self.upd, self.w0, self.p.data,
                                s0, key=key, rule_hp={"a": float(a)})
      else:
        out = executor.simulate(same, self.upd, self.w0, self.p.data,
                                self.sched(i), key=key)
      finals.append(jax.device_get(out.state.params))
    return time.perf_counter() - t, finals


def main(argv=None):
  import numpy as np
  args = parse_args(argv)
  started, load_start = time.perf_counter(), C.loadavg()
  w = Workload(args)
  styles = ("new_rule_each_call", "rule_function",
            "same_rule_new_schedules")
  walls, finals = {s: [] for s in styles}, {}
  for r in range(args.repeats):
    for style in styles[r % 3:] + styles[:r % 3]:  # rotated each round
      wall, finals[style] = w.run(style)
      walls[style].append(wall)
      C.log(f"round {r + 1}: {style}: {wall:.2f} s for {args.calls} calls")
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
      finals["new_rule_each_call"], finals["rule_function"]))

  def paired(style):
    return C.median([a / b for a, b in zip(walls["new_rule_each_call"],
                                           walls[style])])
  result = {"calls": args.calls, "updates_per_call": args.updates,
            "repeats": args.repeats, "style_wall_s_each": walls,
            "style_wall_s": {s: C.median(v) for s, v in walls.items()},
            "speedup_rule_function": paired("rule_function"),
            "speedup_same_rule": paired("same_rule_new_schedules"),
            "max_abs_param_diff_rule_function": diff}
  C.finish("repeated_calls", result, args=args, started=started,
           load_start=load_start)
  return 0


if __name__ == "__main__":
  sys.exit(main())
