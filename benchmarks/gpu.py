#!/usr/bin/env python
"""Everything an accelerator session should measure, in one command.

On one GPU (or whatever ``jax.devices()[0]`` is) this runs, within
``--budget-s`` seconds (default 480; cases that would start after it are
skipped and listed; W1 may use half of it and the sweeps half of what is
then left, so that each section is measured within a device lease):

1. **W1** (MNIST over 1000 Dirichlet(0.5) clients, MLP 784-200-200-10, one
   local epoch of SGD 0.05 at batch 10, FedAsync(0.6, polynomial(0.5)),
   lognormal speeds) at concurrency 100 and 1000: ``vmap`` waves and
   ``refill`` lanes (one local step per plan step, a lane refilled as soon
   as its client is done) at the library's default width and at 32 and 64
   lanes, and ``map`` (the one-client-at-a-time path); client updates per second end to end and
   steady, compile time, lane utilisation of the plan (useful client steps
   over executed lane-steps, ``sim.lanes``), peak device memory, and each
   variant's largest parameter difference to the ``map`` run of the same
   schedule (``rel_diff_to_map``: float32 reassociation only).
2. **Sweeps** on W1 (C=100): 16 and 64 members (alpha x seeds, every seed
   its own schedule) as one ``sweep.sweep`` with ``members="vmap"`` and
   ``"map"``, against separate ``executor.simulate`` runs of the first
   ``--separate`` members (the rest extrapolated, and said so).
3. **The AFL paper's models** (``models.mnist_cnn``, 19,146 parameters;
   ``models.resnet20``) trained by the executor on generated images of the
   real shapes (speed does not depend on pixel values): client examples per
   second, vmap and map.

Data: MNIST from ``--data`` or the shared copy beside the checkout. A
device machine has neither unless it is carried (the folder beside the
checkout does not travel), so where the file is absent this runs on a
generated stand-in of MNIST's shapes (60,000 + 10,000 28x28 images, ten
balanced classes, so Dirichlet(0.5) client sizes alike) instead of
skipping: every figure here is a speed, which does not depend on pixel
values, and the JSON's ``data`` says which was used. To measure on the real
file there, from the repository root here::

  mkdir -p .data && cp ../shared/data/mnist.npz .data/ \
      && echo /.data/ >> .git/info/exclude

then run ``PYTHONPATH=. python3 benchmarks/gpu.py --data .data/mnist.npz
--out $OUT`` with ``.data`` carried (the device machine's image has JAX,
flax, optax and chex).

A case that fails is logged with its traceback and listed under
``errors`` (the exit status is then 1), and the others still run; each
case's figures are also logged as a ``case {...}`` JSON line when it ends,
so that a run stopped early keeps them.

The LAST line printed is one JSON object (device named), also written to
``<--out>/gpu_<date>[_quick|_smoke].json`` (default ``runs/benchmarks/``,
untracked; ``--out benchmarks/results`` records the run). ``--smoke`` runs
every case tiny (the paper's CNN only, no ResNet-20), on CPU too, in seconds
(tests/test_scripts.py).

Usage:
  python benchmarks/gpu.py                     # on the GPU machine
  python benchmarks/gpu.py --smoke --out /tmp/x
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
import device_trace  # noqa: E402
from fedasync_jax.sim import xla_cpu  # noqa: E402

SMOKE_OUTPUT = "gpu_*_smoke.json"


def parse_args(argv):
  ap = C.mnist_parser(__doc__)
  ap.add_argument("--budget-s", type=float, default=480.0)
  ap.add_argument("--separate", type=int, default=None,
                  help="separate runs timed per sweep size (default 4)")
  ap.add_argument("--only", default=",".join(SECTIONS),
                  help=f"comma-separated sections to run, of {SECTIONS} "
                  "(default: all)")
  ap.add_argument("--concurrency", type=_positive_ints, default=None,
                  help="W1 concurrencies, comma-separated (default "
                  "1000,100)")
  ap.add_argument("--widths", type=_positive_ints, default=None,
                  help="W1 lane widths beside the default, comma-separated "
                  "(default 32,64)")
  ap.add_argument("--sweep-sizes", type=_positive_ints, default=None,
                  help="members per sweep, comma-separated (default 16,64)")
  ap.add_argument("--sweep-updates", type=int, default=None,
                  help="updates per sweep member (default 1000)")
  ap.add_argument("--sweep-batching", default=None,
                  help="each sweep member's batching (default: the "
                  "library's for the device: vmap waves on accelerators, "
                  "the direct path on CPU)")
  ap.add_argument("--profile", action="store_true",
                  help="also trace one W1 run with JAX's profiler: the "
                  "device's busy share, kernels per update and the "
                  "costliest kernels go into the JSON, the trace beside it")
  args = ap.parse_args(argv)
  only = [x for x in args.only.split(",") if x]
  if not only or set(only) - set(SECTIONS):
    ap.error(f"--only takes sections of {SECTIONS}, got {args.only!r}")
  args.only = only
  s, q = args.smoke, args.quick
  args.clients = 20 if s else C.W1["num_clients"]
  # C = 1000 first: issue 16's GPU target is measured there.
  args.concurrency = args.concurrency or ([5] if s else [1000, 100])
  args.sweep_concurrency = 5 if s else 100
  args.updates = 60 if s else 2000 if q else 5000
  args.profile_updates = 60 if s else 1000
  args.widths = args.widths or ([] if s else [32, 64])
  args.sweep_sizes = args.sweep_sizes or ([2] if s else [16, 64])
  args.sweep_updates = args.sweep_updates or (20 if s else 500 if q
                                              else 1000)
  args.separate = args.separate or (1 if s else 4)
  args.cnn_updates = 4 if s else 100
  # Two plan steps per chunk: a steady state to measure from 100 updates
  # (a map run's plan step is one arrival, a vmap run's one wave).
  args.model_chunk_steps = 1 if s else 2
  # --smoke: one step per chunk, so that its short runs have a steady
  # state to measure.
  args.chunk_steps = 1 if s else 64
  # --smoke: the paper's CNN only, one way (ResNet-20 compiles for minutes
  # on CPU).
  args.models = ["mnist_cnn"] if s else ["mnist_cnn", "resnet20"]
  args.model_batchings = ["map"] if s else ["vmap", "map"]
  return args


SECTIONS = ("w1", "sweeps", "models")


def _positive_ints(text):
  """argparse type: comma-separated integers >= 1."""
  try:
    out = [int(x) for x in text.split(",") if x]
  except ValueError:
    out = []
  if not out or min(out) < 1:
    raise argparse.ArgumentTypeError(
        f"takes positive integers separated by commas, got {text!r}")
  return out


class Budget:
  """Skips what would start after ``seconds``, or after the deadline of
  the current section (:meth:`section`), so that a slow first section
  leaves the later ones their share of a device lease."""

  def __init__(self, seconds):
    self.end, self.skipped = time.perf_counter() + seconds, []
    self.section_end = self.end

  def section(self, share):
    """Starts a section that may use ``share`` of the time left."""
    now = time.perf_counter()
    self.section_end = now + share * max(0.0, self.end - now)

  def ok(self, name):
    if time.perf_counter() < min(self.end, self.section_end):
      return True
    self.skipped.append(name)
    C.log(f"skipped (over budget): {name}")
    return False


def attempt(name, fn, errors):
  """``fn()``, or ``None`` with the error logged and kept in ``errors``:
  one case that fails (a JAX release the library was not tried on, say)
  costs a device lease that case only, not the run's other numbers."""
  try:
    return fn()
  except Exception as e:  # noqa: BLE001 (recorded, run goes on)
    import traceback
    C.log(f"{name}: FAILED: {type(e).__name__}: {e}\n"
          + "".join(traceback.format_exc().splitlines(True)[-12:]))
    errors.append({"case": name, "error": f"{type(e).__name__}: {e}"})
    return None


def record(rec):
  """Logs one case's figures as a JSON line, so that a run stopped before
  its end (a lease's time limit) keeps what it measured in its log."""
  import json
  C.log("case " + json.dumps(C.clean(rec), separators=(",", ":")))


def peak_memory():
  """Peak bytes in use on the first device (None where not reported)."""
  import jax
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def w1_cases(args, ds, budget, errors):
  from fedasync_jax import executor, plan, scheduler
  from fedasync_jax.sim import lanes
  _, params, upd, rule, key = C.w1_pieces(ds)
  steps = lanes.client_steps(ds.counts, batch_size=C.W1["batch_size"],
                             epochs=C.W1["epochs"])
  out = []
  for conc in args.concurrency:
    sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                   num_updates=args.updates,
                                   concurrency=conc, seed=0)
    # vmap and refill alternate at each width, so that a lease that runs
    # short still has both at the widths it reached.
    variants = ([(b, w) for w in [None] + args.widths
                 for b in ("vmap", "refill")]
                + [("map", None)])
    finals = {}

    def case(batching, width, name):
      res, o = C.simulate_timed(executor, rule, upd, params, ds, sched, key,
                                batching=batching, width=width,
                                chunk_steps=args.chunk_steps)
      finals[name] = o.state.params
      rec = {"case": name, "concurrency": conc, **res,
             "peak_bytes": peak_memory()}
      if not o.stats.get("direct"):
        rec["lane_utilisation"] = lanes.utilisation(plan.make_plan(
            sched, width=res["width"], steps_of_client=(
                steps if batching == "refill" else None)),
            steps)["utilisation"]
      C.log(f"{name}: {C.rate(res['steady_updates_per_s'])} steady, "
            f"compile {C.seconds(res['compile_s'])}, lanes "
            f"{rec.get('lane_utilisation', 1.0):.2f}")
      return rec

    recs = []
    for batching, width in variants:
      name = f"w1 C={conc} {batching} width={width or 'default'}"
      if budget.ok(name):
        rec = attempt(name, lambda: case(batching, width, name), errors)
        if rec is not None:
          recs.append(rec)
          record(rec)
    # Every variant trains the same schedule: on an accelerator too, its
    # parameters agree with the one-client-at-a-time path's to float32
    # reassociation (the exact float64 checks are the test suite's).
    base = next((r["case"] for r in recs if r["batching"] == "map"), None)
    for rec in recs:
      if base is not None:
        rec["rel_diff_to_map"] = C.rel_diff(finals[rec["case"]],
                                            finals[base])
    out += recs
  return out


def sweep_cases(args, ds, budget, errors):
  import jax
  import jax.numpy as jnp
  from fedasync_jax import executor, rules, scheduler, staleness, sweep
  _, params, upd, _, key = C.w1_pieces(ds)
  dm = C.w1_delay_model(ds)
  out = []
  for m in args.sweep_sizes:
    scheds = [scheduler.asynchronous(dm, num_updates=args.sweep_updates,
                                     concurrency=args.sweep_concurrency,
                                     seed=i) for i in range(m)]
    alphas = [0.3 + 0.6 * (i % 4) / 3 for i in range(m)]
    rec = {"case": f"sweep {m} members", "members": m,
           "concurrency": args.sweep_concurrency,
           "batching": args.sweep_batching or "default"}

    def together(mode):
      t = time.perf_counter()
      outs = sweep.sweep(
          lambda h: rules.fedasync(h["alpha"], staleness.polynomial(0.5)),
          {"alpha": jnp.asarray(alphas, jnp.float32)}, upd, params, ds,
          scheds, keys=key, members=mode, batching=args.sweep_batching)
      jax.block_until_ready(outs[-1].state.params)
      return time.perf_counter() - t

    def separate(k):
      t = time.perf_counter()
      for i in range(k):
        o = executor.simulate(rules.fedasync(alphas[i],
                                             staleness.polynomial(0.5)),
                              upd, params, ds, scheds[i], key=key,
                              batching=args.sweep_batching)
        jax.block_until_ready(o.state.params)
      return time.perf_counter() - t

    for mode in ("map",) if args.smoke else ("vmap", "map"):
      if budget.ok(f"sweep {m} {mode}"):
        rec[f"{mode}_s"] = attempt(f"sweep {m} {mode}",
                                   lambda: together(mode), errors)
    if budget.ok(f"sweep {m} separate"):
      k = min(args.separate, m)
      took = attempt(f"sweep {m} separate", lambda: separate(k), errors)
      if took is not None:
        rec["separate_timed"] = k
        rec["separate_s_extrapolated"] = took * m / k
        for mode in ("vmap", "map"):
          if rec.get(f"{mode}_s"):
            rec[f"{mode}_speedup"] = (rec["separate_s_extrapolated"]
                                      / rec[f"{mode}_s"])
    rec["peak_bytes"], rec["peak_rss_mb"] = peak_memory(), C.peak_rss_mb()
    C.log(f"sweep {m}: " + ", ".join(f"{k} {v:.3g}" for k, v in rec.items()
                                      if isinstance(v, float)))
    record(rec)
    out.append(rec)
  return out


def model_cases(args, budget, errors):
  """Client examples/s of the paper's CNN and ResNet-20 in the executor."""
  import jax
  import numpy as np
  import optax
  from fedasync_jax import client, data, delays, executor, models, rules
  from fedasync_jax import scheduler
  out = []
  for name, build, shape in (("mnist_cnn", models.mnist_cnn, (28, 28, 1)),
                             ("resnet20", models.resnet20, (32, 32, 3))):
    if name not in args.models:
      continue
    rng = np.random.default_rng(0)
    n_clients, per = 10, 64 * (1 if args.smoke else 4)
    xs = [rng.normal(size=(per,) + shape).astype(np.float32)
          for _ in range(n_clients)]
    ys = [rng.integers(0, 10, per).astype(np.int32) for _ in range(n_clients)]
    ds = data.from_client_arrays(xs, ys)
    model = build()
    upd = client.local_update(model.loss, optax.adam(1e-3), batch_size=64,
                              max_examples=per, stateful=model.stateful)
    sched = scheduler.asynchronous(
        delays.delay_model(np.ones(n_clients), np.full(n_clients, 1.0)),
        num_updates=args.cnn_updates, concurrency=5, seed=0)

    def case(batching, label):
      res, _ = C.simulate_timed(
          executor, rules.fedasync(0.6), upd,
          model.init(jax.random.key(0)), ds, sched, jax.random.key(0),
          batching=batching, width=None if batching == "map" else 5,
          chunk_steps=args.model_chunk_steps)
      ex = res["steady_updates_per_s"] * per
      C.log(f"{label}: {C.rate(ex, 'client examples/s')} steady")
      return {"case": label, **res, "examples_per_s_steady": ex,
              "peak_bytes": peak_memory()}

    for batching in args.model_batchings:
      label = f"{name} {batching}"
      if budget.ok(label):
        rec = attempt(label, lambda: case(batching, label), errors)
        if rec is not None:
          record(rec)
          out.append(rec)
  return out


def device_profile(args, ds, out):
  """One W1 run (vmap at the first width, after a warm-up run) traced by
  JAX's profiler, summarised by ``device_trace.summary`` (the device's busy
  share of its span, events and device-to-host copies per update, the
  gaps, the costliest events). The trace is copied to
  ``<out>/gpu_trace.json.gz`` (Perfetto's JSON) when under 15 MiB."""
  import glob
  import jax
  from fedasync_jax import executor, scheduler
  _, params, upd, rule, key = C.w1_pieces(ds)
  sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                 num_updates=args.profile_updates,
                                 concurrency=args.concurrency[0], seed=0)
  kw = dict(key=key, batching="vmap", chunk_steps=args.chunk_steps,
            width=args.widths[0] if args.widths else None)
  jax.block_until_ready(executor.simulate(rule, upd, params, ds, sched,
                                          **kw).state.params)
  folder = tempfile.mkdtemp(prefix="gpu_trace_")
  t = time.perf_counter()
  with jax.profiler.trace(folder, create_perfetto_trace=True):
    o = executor.simulate(rule, upd, params, ds, sched, **kw)
    jax.block_until_ready(o.state.params)
  wall = time.perf_counter() - t
  [trace] = glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)
  if os.path.getsize(trace) < 15 * 2**20:
    shutil.copy(trace, Path(out) / "gpu_trace.json.gz")
  rec = {"case": f"profile w1 C={args.concurrency[0]} vmap width="
                 f"{kw['width'] or 'default'}",
         "updates": sched.num_arrivals, "wall_s": wall,
         **device_trace.summary(trace, wall_s=wall,
                                updates=sched.num_arrivals)}
  C.log(f"profile: device busy {rec['device_busy_s']:.3f} s of a "
        f"{rec['device_span_s']:.3f} s span, "
        f"{rec['device_events_per_update']:.1f} device events and "
        f"{rec['device_to_host_per_update']:.2f} device-to-host copies per "
        f"update")
  return rec


def data_path(args, out, *, n_train=60000, n_test=10000):
  """``(path, what)``: the MNIST file of this run, or, where it is absent,
  a generated stand-in of its shapes in a new temporary folder (see the
  module: speeds only)."""
  path = C.mnist_path(args, out)
  if args.smoke:
    return path, "generated (--smoke)"
  if Path(path).exists():
    return path, f"MNIST ({path})"
  C.log(f"no MNIST at {Path(path).resolve()}: measuring on a generated "
        f"stand-in of its shapes ({n_train} + {n_test} images); speeds "
        f"only, as every figure here")
  folder = tempfile.mkdtemp(prefix="gpu_mnist_")
  return (C.smoke_mnist(folder, n_train=n_train, n_test=n_test),
          f"generated stand-in of MNIST's shapes (no file at {path})")


def main(argv=None):
  args = parse_args(argv)
  xla_cpu.configure_cpu()  # the library's CPU choice, as fedasync-jax makes it
  started, load_start = time.perf_counter(), C.loadavg()
  out = C.out_dir(args)
  path, data_used = data_path(args, out)
  import jax
  budget = Budget(args.budget_s)
  ds, _, _ = C.w1_data(path, num_clients=args.clients)
  result = {"device": str(jax.devices()[0].device_kind),
            "backend": jax.default_backend(),
            "num_devices": len(jax.devices()), "data": data_used,
            "workload": {**C.W1, "num_clients": args.clients,
                         "num_updates": args.updates}}
  errors = []
  # Each section may use half of what is left, so that every section is
  # measured within a lease; what one leaves unused passes on.
  import jax
  result["matmul_precision"] = str(jax.config.jax_default_matmul_precision)
  sections = [k for k in SECTIONS if k in args.only]
  run = {"w1": lambda: w1_cases(args, ds, budget, errors),
         "sweeps": lambda: sweep_cases(args, ds, budget, errors),
         "models": lambda: model_cases(args, budget, errors)}
  for i, k in enumerate(sections):
    # Each section but the last may use half of what is left.
    budget.section(1.0 if i == len(sections) - 1 else 0.5)
    result[k] = run[k]()
  if args.profile:
    result["profile"] = attempt("profile", lambda: device_profile(
        args, ds, out), errors)
    if result["profile"]:
      record(result["profile"])
  result["skipped"], result["errors"] = budget.skipped, errors
  C.finish("gpu", result, args=args, started=started, load_start=load_start)
  return 1 if errors else 0


if __name__ == "__main__":
  sys.exit(main())
