#!/usr/bin/env python
"""W1 throughput: executor vs reference vs pure compute, on real MNIST.

Workload W1 (fixed; see benchmarks/README.md and ``common.W1``): MNIST
(``../shared/data/mnist.npz`` beside the project, or ``--data``), pixels
/255 then ``(x - 0.1307) / 0.3081``, flattened to 784; 1000 clients,
Dirichlet(0.5) labels (seed 0); the 784-200-200-10 ReLU MLP, 1 local epoch,
batch 10, SGD lr 0.05 (``client.local_update``); FedAsync alpha 0.6,
polynomial staleness a = 0.5; closed-loop concurrency 100, lognormal device
speeds (sigma 1, seed 0), work = example counts; 5000 client updates; test
accuracy on the 10,000 test images.

What it measures, through the public API only, in ONE process, the systems
run whole in rotating order ``--repeats`` times (medians; ratios are medians
of per-repeat paired ratios):

* ``executor``: ``executor.simulate`` as a user calls it, at the wave width
  ``plan.default_width(C)`` = 20 by default (``--width 1``: the direct
  path); its ``progress`` callback times every chunk: the first chunk holds
  the compilation (``compile_s``), "steady" is the rest, counting as a
  chunk's work the clients it trains (``trained_per_chunk``);
* ``reference``: ``reference.run`` (one jitted call per client); its first
  arrival holds the compilation;
* ``pure_compute``: the limit. The same ``client.local_update`` on the
  schedule's trained clients, ``width`` clients per group batched the
  executor's way (``lax.map`` / ``vmap``), a ``lax.scan`` over groups inside
  one jit, all from the initial parameters: no scheduling, mixing, slots or
  padding;
* the check that executor and reference end bit-identical
  (``max_rel_diff_vs_reference``) with the same test accuracy;
* ``profile.bookkeeping_only``: the executor driven by a client that does
  not train (the per-update cost of gathering start parameters, mixing and
  snapshot writes), paired with the real executor; full runs also time
  ``chunk_steps`` 16..256;
* ``--sweep-widths``: each batching in ``executor.BATCHINGS`` x widths 4,
  8, 16, 20, 32 with its pure compute, in one rotating group per batching
  holding the anchor ``map``/8 (``vs_anchor_map_8_same_group``).

Prototypes of library changes that have since landed (dynamic-length wave
and arrival loops, skipping masked local steps, vmap lanes, the empty-step
cost of the old fixed-width step) were removed from this script; their
findings are recorded in benchmarks/README.md.

The LAST line printed is one JSON object; the same object, with machine
information, the date and the command line, is written to
``<--out>/W1_<date>[_quick].json`` (default ``runs/benchmarks/``, untracked;
``--out benchmarks/results`` records the run).

Recorded (benchmarks/README.md): ``results/W1_2026-11-22T040645Z.json`` by
``python benchmarks/throughput.py --sweep-widths`` and
``results/W1_2026-11-22T070654Z_quick.json`` by
``python benchmarks/throughput.py --quick`` (earlier versions of this
script, with the prototypes and chunk-by-chunk interleaving).

Usage:
  python benchmarks/throughput.py --quick          # 1000 updates, ~1 min
  python benchmarks/throughput.py                  # 5000 updates
  python benchmarks/throughput.py --sweep-widths   # + batching x width
  python benchmarks/throughput.py --smoke --out /tmp/x   # seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402  (also puts the repository on sys.path)
from common import log, median  # noqa: E402

SMOKE_OUTPUT = "W1_*_smoke.json"


# ---------------------------------------------------------------------------
# Workload.


class Setup:
  """Everything the measurements share (W1, or its ``--smoke`` shrink)."""

  def __init__(self, data_path, w1):
    import jax
    from fedasync_jax import models
    self.w1 = w1
    self.ds, x_test, y_test = C.w1_data(data_path, w1["num_clients"])
    self.model, self.params, self.update, self.rule, self.key = \
        C.w1_pieces(self.ds)
    self.delay_model = C.w1_delay_model(self.ds)
    self._eval = jax.jit(models.make_evaluator(self.model, x_test, y_test))
    self._schedules = {}

  def schedule(self, n):
    from fedasync_jax import scheduler
    if n not in self._schedules:
      self._schedules[n] = scheduler.asynchronous(
          self.delay_model, num_updates=n,
          concurrency=self.w1["concurrency"], seed=self.w1["schedule_seed"])
    return self._schedules[n]

  def accuracy(self, params):
    return float(self._eval(params)["accuracy"])


def null_update(update):
  """A client that does no training (returns its start parameters): the
  executor driven with it measures the per-update bookkeeping alone."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax import ClientResult, client

  def fn(params, data, key, hparams):
    dtype = jax.tree.leaves(params)[0].dtype
    delta = jax.tree.map(jnp.zeros_like, params)
    z = jnp.zeros((), dtype)
    return (ClientResult(params, delta, jnp.asarray(data.count, dtype)),
            {"loss": z, "steps": jnp.zeros((), jnp.int32),
             "epochs": jnp.zeros((), jnp.int32)})
  return client.ClientUpdate(fn, update.num_steps, update.max_examples,
                             update.batch_size)


def trained_per_chunk(sched, stats, chunk_steps, n_chunks):
  """Clients trained by each chunk of the executor's run, rebuilt from the
  public plan functions and the run's ``stats`` (width, direct path).
  Falls back to arrivals per chunk if the plan does not say."""
  import numpy as np
  from fedasync_jax import plan as plan_lib
  try:
    p = (plan_lib.make_direct_plan(sched) if stats.get("direct") else
         plan_lib.make_plan(sched, width=stats["width"],
                            arrivals_per_step=stats["arrivals_per_step"]))
    per_step = np.asarray(p.wave_valid).sum(axis=1)
  except (AttributeError, KeyError, TypeError):
    return None
  out = np.zeros(n_chunks * chunk_steps, np.int64)
  out[:min(len(per_step), len(out))] = per_step[:len(out)]
  return out.reshape(n_chunks, chunk_steps).sum(axis=1)


# ---------------------------------------------------------------------------
# Measurements.


def rates_from_marks(t0, marks, n_total):
  """(end-to-end, steady, first-chunk seconds, compile estimate) from
  ``[(time, done_so_far), ...]`` after each chunk/arrival."""
  times = [t0] + [m[0] for m in marks]
  done = [0] + [m[1] for m in marks]
  total = times[-1] - t0
  e2e = n_total / total if total > 0 else float("nan")
  first = times[1] - times[0] if len(times) > 1 else float("nan")
  if len(times) > 2 and times[-1] > times[1]:
    steady = (done[-1] - done[1]) / (times[-1] - times[1])
    compile_s = max(0.0, first - done[1] / steady) if steady > 0 else first
  else:  # a single chunk: no steady state to separate from compilation
    steady, compile_s = float("nan"), float("nan")
  return e2e, steady, first, compile_s


def run_executor(st, sched, *, update=None, **kw):
  """``executor.simulate`` timed chunk by chunk (``progress``)."""
  import jax
  import numpy as np
  from fedasync_jax import executor
  times, done = [], []
  t0 = time.perf_counter()
  out = executor.simulate(
      st.rule, update or st.update, st.params, st.ds, sched, key=st.key,
      progress=lambda info: (times.append(time.perf_counter()),
                             done.append(info["arrivals_done"])), **kw)
  jax.block_until_ready(out.state.params)
  trained = trained_per_chunk(sched, out.stats, kw["chunk_steps"],
                              len(times))
  work = np.cumsum(trained) if trained is not None else done
  e2e, steady, first, comp = rates_from_marks(
      t0, list(zip(times, (int(w) for w in work))), sched.num_arrivals)
  return {"updates_per_s": steady, "updates_per_s_end_to_end": e2e,
          "first_chunk_s": first, "compile_s": comp,
          "wall_s": time.perf_counter() - t0,
          "stats": out.stats, "params": out.state.params}


def run_reference(st, sched):
  """``reference.run`` timed from its first to its last arrival."""
  import jax
  from fedasync_jax import reference
  marks = []
  t0 = time.perf_counter()

  def progress(info, n=None):
    # progress(dict) like executor.simulate's, or the older (done, total).
    a, n = ((info["arrivals_done"], info["num_arrivals"])
            if isinstance(info, dict) else (info, n))
    if a == 1 or a == n:
      marks.append((time.perf_counter(), a))
  out = reference.run(st.rule, st.update, st.params, st.ds, sched,
                      key=st.key, progress=progress)
  jax.block_until_ready(out.state.params)
  e2e, steady, _, comp = rates_from_marks(t0, marks, sched.num_arrivals)
  return {"updates_per_s": steady, "updates_per_s_end_to_end": e2e,
          "compile_s": comp, "wall_s": time.perf_counter() - t0,
          "params": out.state.params}


class PureCompute:
  """The schedule's trained clients, ``width`` per group batched like the
  executor (``batching``), a ``lax.scan`` over groups in one jitted call
  per unit, all from the initial parameters."""

  def __init__(self, st, sched, *, width, batching, n_units=8,
               map_batch_size=8):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fedasync_jax import ClientRef, tasks
    trained = sched.arrival_task[~sched.dropped]
    per_call = max(width, len(trained) // n_units // width * width)
    self.n_units = max(1, len(trained) // per_call)
    self.updates = self.n_units * per_call
    self.tasks = np.asarray(trained[:self.updates], np.int32).reshape(
        self.n_units, per_call // width, width)
    hp_table = jax.tree.map(jnp.asarray, tasks.task_hparams(sched))
    client_of = jnp.asarray(sched.client, jnp.int32)
    x, y = jnp.asarray(st.ds.x), jnp.asarray(st.ds.y)
    offsets = jnp.asarray(st.ds.offsets, jnp.int32)
    counts = jnp.asarray(st.ds.counts, jnp.int32)
    update, params, key = st.update, st.params, st.key

    def one(t):
      c = client_of[t]
      h = jax.tree.map(lambda a: a[t], hp_table)
      return update.update(params, ClientRef(x, y, offsets[c], counts[c]),
                           jax.random.fold_in(key, t), h)

    def group(acc, ts):
      if batching == "vmap":
        res, met = jax.vmap(one)(ts)
      elif batching == "map":
        res, met = jax.lax.map(one, ts)
      else:
        res, met = jax.lax.map(one, ts, batch_size=map_batch_size)
      # Consume every result so that nothing is dead code.
      check = sum(jnp.sum(leaf) for leaf in jax.tree.leaves(res.params))
      return acc + check + jnp.sum(met["loss"]), None

    self.fn = jax.jit(lambda ts: jax.lax.scan(
        group, jnp.zeros((), jnp.float32), ts)[0])

  def warm_up(self):
    import jax
    t = time.perf_counter()
    jax.block_until_ready(self.fn(self.tasks[0]))
    return time.perf_counter() - t

  def run(self):
    """One pass over all units; returns updates/s."""
    import jax
    t = time.perf_counter()
    for ts in self.tasks:
      jax.block_until_ready(self.fn(ts))
    return {"updates_per_s": self.updates / (time.perf_counter() - t)}


def summarize(samples):
  """Median of every numeric field over repeats."""
  keys = [k for k in samples[0] if isinstance(samples[0][k], (int, float))]
  return {k: median([s[k] for s in samples]) for k in keys}


def paired(runs, a, b, field="updates_per_s"):
  """Median over repeats of the paired ratio a/b."""
  return median([x[field] / y[field] for x, y in zip(runs[a], runs[b])])


def rotate(jobs, repeats, label=""):
  """Runs every job once per repeat, in rotating order; returns the samples
  per job and the last result's extras (``params``, ``stats``)."""
  names = list(jobs)
  runs, keep = {n: [] for n in names}, {}
  for r in range(repeats):
    for name in names[r % len(names):] + names[:r % len(names)]:
      res = jobs[name]()
      for extra in ("params", "stats"):
        if extra in res:
          keep[f"{name}_{extra}"] = res.pop(extra)
      runs[name].append(res)
      log(f"  {label}repeat {r + 1}/{repeats} {name}: "
          f"{res['updates_per_s']:.1f} updates/s"
          + (f" steady, {res['updates_per_s_end_to_end']:.1f} end to end, "
             f"compile {res['compile_s']:.2f} s"
             if "compile_s" in res else ""))
  return runs, keep


# ---------------------------------------------------------------------------
# The parts of a run.


def measure_main(args, st, sched, ref_sched, kw):
  """Executor, reference and pure compute, whole runs in rotating order."""
  same = args.ref_updates == args.updates
  pure = PureCompute(st, sched, width=kw["width"], batching=kw["batching"])
  pure_warm = pure.warm_up()
  jobs = {"executor": lambda: run_executor(st, sched, **kw),
          "reference": lambda: run_reference(st, ref_sched),
          "pure_compute": pure.run}
  if not same:
    jobs["executor_on_reference_schedule"] = lambda: run_executor(
        st, ref_sched, **kw)
  log("executor.simulate, reference.run and pure compute, whole runs")
  runs, keep = rotate(jobs, args.repeats)
  ex_ref = "executor" if same else "executor_on_reference_schedule"
  whole = {name: summarize(v) for name, v in runs.items()}
  acc = {"executor": st.accuracy(keep["executor_params"]),
         "reference": st.accuracy(keep["reference_params"])}
  if not same:
    acc["executor_at_reference_updates"] = st.accuracy(
        keep[f"{ex_ref}_params"])
  return {
      "runs": runs, "whole": whole, "stats": keep["executor_stats"],
      "pure_updates": pure.updates, "pure_compile_s": max(
          0.0, pure_warm - pure.updates / pure.n_units
          / whole["pure_compute"]["updates_per_s"]),
      "executor_vs_reference": paired(runs, ex_ref, "reference"),
      "executor_vs_reference_end_to_end": paired(
          runs, ex_ref, "reference", "updates_per_s_end_to_end"),
      "executor_vs_pure_compute": paired(runs, "executor", "pure_compute"),
      "max_rel_diff_vs_reference": C.rel_diff(keep[f"{ex_ref}_params"],
                                            keep["reference_params"]),
      "test_accuracy": acc}


def measure_profile(args, st, sched, kw, stats, main_runs):
  """Plan shape, bookkeeping alone (a client that does not train, paired
  with the real executor) and, in full runs, chunk_steps 16..256."""
  import numpy as np
  ds = st.ds
  trained = sched.arrival_task[~sched.dropped]
  profile = {
      "plan_time_s": stats.get("plan_time_s"),
      "plan": {k: stats.get(k) for k in (
          "num_steps", "padded_steps", "width", "arrivals_per_step",
          "result_slots", "snapshot_slots", "padding_waste", "batching",
          "trained_clients", "direct")},
      "mean_wave": stats.get("trained_clients", 0) / max(
          1, stats.get("num_steps", 1)),
      "local_steps_max_per_client": st.update.num_steps,
      "local_steps_needed_mean": float(np.mean(np.ceil(
          ds.counts[sched.client[trained]] / st.w1["batch_size"])))}
  log("profile: bookkeeping alone vs the executor")
  jobs = {"bookkeeping_only": lambda: run_executor(
      st, sched, update=null_update(st.update), **kw)}
  if not args.smoke:  # smoke: against the main runs' executor rate
    jobs["executor_again"] = lambda: run_executor(st, sched, **kw)
  runs, _ = rotate(jobs, 1 if args.quick or args.smoke else 2,
                   "bookkeeping ")
  bk = 1.0 / median([r["updates_per_s"] for r in runs["bookkeeping_only"]])
  ex = 1.0 / median([r["updates_per_s"] for r in runs.get(
      "executor_again", main_runs["executor"])])
  profile["bookkeeping_only"] = {
      "updates_per_s": 1.0 / bk, "us_per_update": 1e6 * bk,
      "executor_us_per_update": 1e6 * ex, "share_of_executor_time": bk / ex}
  if not (args.quick or args.smoke):
    log("profile: chunk_steps")
    cs_list = (16, 32, 64, 128, 256)
    runs, _ = rotate({f"chunk_steps={cs}": (
        lambda cs=cs: run_executor(st, sched, **dict(kw, chunk_steps=cs)))
        for cs in cs_list}, 1, "chunk_steps ")
    profile["chunk_steps"] = [
        {"chunk_steps": cs, **{k: runs[f"chunk_steps={cs}"][0][k] for k in (
            "updates_per_s", "compile_s")}} for cs in cs_list]
  return profile


def measure_sweep(args, st):
  """Each batching x width on the first ``--sweep-updates`` updates, with
  its pure compute; one rotating group per batching holding the anchor
  ``map``/8."""
  from fedasync_jax import executor
  widths = [int(w) for w in args.sweep_widths_list.split(",")]
  ssched = st.schedule(args.sweep_updates)
  anchor_w, rows = 8, []
  log(f"sweep: {executor.BATCHINGS} x widths {widths} on "
      f"{args.sweep_updates} updates, chunk_steps 32")
  for b in executor.BATCHINGS:
    jobs = {}

    def ex(batching, w):
      return lambda: run_executor(st, ssched, width=w,
                                  arrivals_per_step=2 * w,
                                  batching=batching, chunk_steps=32)
    jobs[f"anchor map/{anchor_w}"] = ex("map", anchor_w)
    pures = {}
    for w in widths:
      jobs[f"{b}/{w}"] = ex(b, w)
      pures[w] = PureCompute(st, ssched, width=w, batching=b)
      pures[w].warm_up()
      jobs[f"pure {b}/{w}"] = pures[w].run
    runs, keep = rotate(jobs, 1, f"sweep {b} ")
    anchor = runs[f"anchor map/{anchor_w}"][0]["updates_per_s"]
    for w in widths:
      r, s = runs[f"{b}/{w}"][0], keep[f"{b}/{w}_stats"]
      pc = runs[f"pure {b}/{w}"][0]["updates_per_s"]
      rows.append({"batching": b, "width": w, "arrivals_per_step": 2 * w,
                   "updates_per_s": r["updates_per_s"],
                   "vs_anchor_map_8_same_group": r["updates_per_s"] / anchor,
                   "compile_s": r["compile_s"],
                   "padding_waste": s.get("padding_waste"),
                   "num_steps": s.get("num_steps"),
                   "pure_compute_updates_per_s": pc,
                   "vs_pure_compute": r["updates_per_s"] / pc})
  return rows


# ---------------------------------------------------------------------------
# Main.


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="1000 updates, 2 repeats, a short profile")
  C.add_output_args(ap)
  ap.add_argument("--data", type=Path, default=None,
                  help="mnist.npz with x_train, y_train, x_test, y_test")
  ap.add_argument("--updates", type=int, default=None,
                  help="client updates for the executor and pure compute "
                  "(default 5000, --quick 1000)")
  ap.add_argument("--ref-updates", type=int, default=None,
                  help="client updates for the reference: the first N of "
                  "the schedule (default = --updates); the executor is also "
                  "run on that prefix for the difference and the ratio")
  ap.add_argument("--repeats", type=int, default=None,
                  help="whole runs of every system, medians reported "
                  "(default 3; --quick 2)")
  ap.add_argument("--width", type=int, default=None,
                  help="executor width (default: plan.default_width(C), "
                  "the wave path; 1: the direct path)")
  ap.add_argument("--arrivals-per-step", type=int, default=None)
  ap.add_argument("--batching", default=None,
                  help="executor batching (default: the library's)")
  ap.add_argument("--chunk-steps", type=int, default=None,
                  help="executor chunk_steps (default 64; --quick 32, so "
                  "that the short run has several chunks after the "
                  "compiling one)")
  ap.add_argument("--sweep-widths", action="store_true",
                  help="also sweep batching x width on W1")
  ap.add_argument("--sweep-updates", type=int, default=1000)
  ap.add_argument("--sweep-widths-list", default="4,8,16,20,32")
  ap.add_argument("--no-write", action="store_true",
                  help="do not write the result JSON")
  args = ap.parse_args(argv)
  w1 = C.W1_SMOKE if args.smoke else C.W1
  if args.updates is None:
    args.updates = (w1["num_updates"] if args.smoke else
                    1000 if args.quick else w1["num_updates"])
  args.ref_updates = min(args.ref_updates or args.updates, args.updates)
  if args.chunk_steps is None:
    args.chunk_steps = 8 if args.smoke else 32 if args.quick else 64
  if args.repeats is None:
    args.repeats = 1 if args.smoke else 2 if args.quick else 3
  if args.smoke:
    args.sweep_updates = min(args.sweep_updates, args.updates)
    args.sweep_widths_list = "2,4"
  return args, w1


def build_result(args, st, sched, main, profile, sweep, w1, kw):
  """The JSON object (the format benchmarks/README.md describes)."""
  ex, ref = main["whole"]["executor"], main["whole"]["reference"]
  pc = main["whole"]["pure_compute"]
  result = {
      "workload": "W1" if not args.smoke else "W1 (smoke)",
      "quick": bool(args.quick),
      "updates": {"executor": args.updates, "reference": args.ref_updates,
                  "pure_compute": main["pure_updates"],
                  "executor_vs_reference_on": args.ref_updates,
                  "reference_is_prefix": args.ref_updates != args.updates},
      "updates_per_s": {"executor": ex["updates_per_s"],
                        "reference": ref["updates_per_s"],
                        "pure_compute": pc["updates_per_s"]},
      "updates_per_s_end_to_end": {
          "executor": ex["updates_per_s_end_to_end"],
          "reference": ref["updates_per_s_end_to_end"]},
      "executor_simulate_steady_updates_per_s": ex["updates_per_s"],
      "compile_s": {"executor": ex["compile_s"],
                    "executor_first_chunk_s": ex["first_chunk_s"],
                    "reference": ref["compile_s"],
                    "pure_compute": main["pure_compile_s"]},
      **{k: main[k] for k in ("executor_vs_reference",
                              "executor_vs_reference_end_to_end",
                              "executor_vs_pure_compute")},
      "padding_waste": main["stats"].get("padding_waste"),
      "max_rel_diff_vs_reference": main["max_rel_diff_vs_reference"],
      "test_accuracy": main["test_accuracy"],
      "executor_config": {k: main["stats"].get(k) for k in (
          "batching", "width", "arrivals_per_step", "direct")}
      | {"chunk_steps": kw["chunk_steps"]},
      "repeats": {"whole_runs": args.repeats},
      "method": "whole runs of executor.simulate, reference.run and pure "
                "compute in rotating order; updates_per_s: steady state "
                "(after the first chunk / arrival), medians of the "
                "repeats; ratios are medians of per-repeat paired ratios",
      "profile": profile, "sweep": sweep,
      "samples": {"whole_runs": main["runs"]},
      "workload_config": dict(w1, num_updates=args.updates),
  }
  if sweep:
    best = max(sweep, key=lambda r: r["vs_anchor_map_8_same_group"])
    result["best_sweep"] = {k: best[k] for k in (
        "batching", "width", "updates_per_s", "vs_anchor_map_8_same_group",
        "padding_waste")}
  return result


def report(args, r):
  """The human-readable lines, then the JSON object (the last line)."""
  def f(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)
  print(f"W1 ({'quick, ' if args.quick else ''}{args.updates} updates; "
        f"reference {args.ref_updates}), medians:")
  print(f"  executor     {f(r['updates_per_s']['executor'])} updates/s "
        f"steady, {f(r['updates_per_s_end_to_end']['executor'])} end to "
        f"end, compile {f(r['compile_s']['executor'], '.2f')} s")
  print(f"  pure compute {f(r['updates_per_s']['pure_compute'])}")
  print(f"  reference    {f(r['updates_per_s']['reference'])} steady, "
        f"{f(r['updates_per_s_end_to_end']['reference'])} end to end")
  print(f"  executor/reference {f(r['executor_vs_reference'], '.3f')}, "
        f"executor/pure {f(r['executor_vs_pure_compute'], '.3f')}, waste "
        f"{f(r['padding_waste'], '.3f')}, max rel diff "
        f"{f(r['max_rel_diff_vs_reference'], '.3g')}, accuracy "
        f"{r['test_accuracy']}")
  bk = r["profile"]["bookkeeping_only"]
  print(f"  bookkeeping alone {f(bk['us_per_update'])} us/update = "
        f"{f(100 * bk['share_of_executor_time'])}% of the executor's time")
  if r.get("best_sweep"):
    print(f"  best sweep: {r['best_sweep']}")
  print(C.json.dumps(r, separators=(",", ":")))


def main(argv=None):
  args, w1 = parse_args(sys.argv[1:] if argv is None else argv)
  command, date, t_all = C.command_line(), C.now_iso(), time.perf_counter()
  data_path = C.mnist_path(args, C.out_dir(args) if args.smoke else None)
  if C.skip_if_no_mnist(data_path, "W1"):
    return 0
  from fedasync_jax import executor, plan as plan_lib
  lib_files, load0 = C.library_files(), C.loadavg()
  st = Setup(data_path, w1)
  sched, ref_sched = st.schedule(args.updates), st.schedule(args.ref_updates)
  kw = dict(width=args.width or plan_lib.default_width(
      sched.stats["realised_concurrency"]),
      arrivals_per_step=args.arrivals_per_step,
      batching=args.batching or executor.default_batching(),
      chunk_steps=args.chunk_steps)
  log(f"W1: {st.ds.num_clients} clients, {int(st.ds.counts.sum())} examples "
      f"(max {st.ds.max_count}/client), {args.updates} updates, reference "
      f"{args.ref_updates}; executor {kw['batching']} width {kw['width']}")
  main_res = measure_main(args, st, sched, ref_sched, kw)
  profile = measure_profile(args, st, sched, kw, main_res["stats"],
                            main_res["runs"])
  sweep = measure_sweep(args, st) if args.sweep_widths else None
  result = build_result(args, st, sched, main_res, profile, sweep, w1, kw)
  result.update({
      "machine": {**C.machine_info(), **C.versions()},
      "library_files": lib_files,
      "library_changed_during_run": C.library_files() != lib_files,
      "loadavg_start_end": [load0, C.loadavg()], "date": date,
      "command": command, "wall_s": time.perf_counter() - t_all})
  result = C.clean(result)
  if not args.no_write:
    path = C.write_json("W1", result, quick=args.quick,
                        folder=C.out_dir(args), smoke=args.smoke)
    log(f"wrote {path}")
  report(args, result)
  return 0


if __name__ == "__main__":
  sys.exit(main())
