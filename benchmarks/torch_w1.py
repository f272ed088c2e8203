#!/usr/bin/env python
"""W1 (asynchronous FedAsync on real MNIST): our executor vs a lean PyTorch loop.

Workload W1 (see ``common.W1``): MNIST over 1000 clients, Dirichlet(0.5)
labels (seed 0), pixels /255 then (x-0.1307)/0.3081; MLP 784-200-200-10
ReLU; 1 local epoch, batch 10, SGD lr 0.05; FedAsync alpha 0.6 with
polynomial staleness a = 0.5; closed-loop concurrency 100, lognormal device
speeds (sigma 1, seed 0), work = example counts; 5000 client updates
(``--quick``: 1000); then test accuracy on the 10,000 test images.

Systems, measured in ONE process, repeated ``--repeats`` times in rotating
order (medians and per-repeat paired ratios are reported):

* ``ours_default``: ``executor.simulate`` exactly as a user calls it (default
  width, arrivals per step, batching and chunking).
* ``ours_width1``: ``executor.simulate(width=1, arrivals_per_step=1)``: a
  setting a user can pass today; on CPU with ``lax.map`` batching, waves
  bring no batching gain and the padded wave entries cost gathers/scatters
  of full parameter copies (proposal: make it the CPU default).
* ``ours_width1_ragged``: the same with ``protos.ragged_update`` (the
  proposed client update that runs ``ceil(count / batch)`` local steps
  instead of ``ceil(max_examples / batch)`` masked ones).
* ``torch``: the lean PyTorch loop, ``torch.set_num_threads(--torch-threads)``
  (default 2 = both cores). It walks ``schedule.events``: a dispatch
  snapshots the current global parameters (one clone per version, shared by
  the clients that downloaded it, freed after the last one arrives); an
  arrival copies that snapshot into ONE reusable model, trains the client's
  pre-made tensors (no DataLoader; ``torch.randperm`` shuffle per epoch,
  batch 10, plain SGD as one vector op on a flat parameter buffer) and mixes
  into the global parameters with ``alpha * (1 + tau)^-a``, ``tau`` from its
  own version counter (checked equal to the schedule's staleness).
* ``torch_1thread``: the same loop with one thread (information: on a
  loaded 2-core machine one thread can be faster).

Both sides start from the same initial weights (the JAX init copied into
torch). Rates: ``updates_per_s`` = updates / wall time of the whole call
(ours includes compilation, as a user sees it); ours also reports the
steady rate (chunks after the first) and the compile estimate.

OMP_WAIT_POLICY defaults to PASSIVE here (set before torch is imported):
on this shared, oversubscribed 2-core machine PyTorch's default active
OpenMP spin-wait with 2 threads collapsed to 4-17 updates/s (100 ms per
MLP step instead of 0.4 ms); passive waiting is the fair baseline.
``--omp-wait-policy default`` keeps the library default.

The LAST line printed is one JSON object, also written to
``benchmarks/results/torch_w1_<date>[_quick].json``.

Usage:
  python benchmarks/torch_w1.py            # 5000 updates, 3 repeats
  python benchmarks/torch_w1.py --quick    # 1000 updates, 2 repeats
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--data", default=None)
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--torch-threads", type=int, default=2)
  ap.add_argument("--omp-wait-policy", default="PASSIVE",
                  help="PASSIVE (default), ACTIVE, or 'default' (unset)")
  ap.add_argument("--check-updates", type=int, default=200,
                  help="updates of the exact equal-work check")
  ap.add_argument("--systems", default=None,
                  help="comma-separated subset of the systems")
  args = ap.parse_args(argv)
  if args.updates is None:
    args.updates = 1000 if args.quick else 5000
  if args.repeats is None:
    args.repeats = 2 if args.quick else 3
  return args


ALL_SYSTEMS = ("ours_default", "ours_width1", "ours_width1_ragged",
               "ours_direct_ragged", "torch", "torch_1thread")


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.omp_wait_policy.lower() != "default":
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import common as C
  data_path = args.data or C.DEFAULT_MNIST
  if C.skip_if_no_mnist(data_path, "torch_w1"):
    return 0
  started, load0 = time.perf_counter(), C.loadavg()
  import jax
  import numpy as np
  import optax
  import protos
  from fedasync_jax import (client, executor, models, rules, scheduler,
                            staleness)
  torch = C.torch_setup(args.torch_threads)

  ds, x_test, y_test = C.w1_data(data_path)
  model = models.mlp()
  params = model.init(jax.random.key(C.W1["model_seed"]))
  key = jax.random.key(C.W1["train_key"])
  upd = client.local_update(model.loss, optax.sgd(C.W1["client_lr"]),
                            batch_size=C.W1["batch_size"],
                            max_examples=ds.max_count, epochs=1)
  ragged = protos.ragged_update(model.loss, optax.sgd(C.W1["client_lr"]),
                                batch_size=C.W1["batch_size"],
                                max_examples=ds.max_count, epochs=1)
  same_diff, same_loss = protos.check_same(upd, ragged, params, ds)
  rule = rules.fedasync(0.6, staleness.polynomial(0.5))
  sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                 num_updates=args.updates,
                                 concurrency=C.W1["concurrency"],
                                 seed=C.W1["schedule_seed"])
  n = sched.num_arrivals
  evaluate = jax.jit(models.make_evaluator(model, x_test, y_test))
  C.log(f"W1: {ds.num_clients} clients, max {ds.max_count} examples "
        f"({upd.num_steps} scan steps/client, mean real "
        f"{np.mean(np.ceil(ds.counts[sched.arrival_client] / 10)):.2f}); "
        f"{n} updates; ragged-vs-library rel diff {same_diff:.2e}")

  def ours(update, **kw):
    def run():
      res, out = C.simulate_timed(executor, rule, update, params, ds, sched,
                                  key, **kw)
      res["accuracy"] = float(evaluate(out.state.params)["accuracy"])
      return res, out.state.params
    return run

  tf = C.TorchFed(C.torch_mlp_from_jax(jax.device_get(params)), ds,
                  lr=C.W1["client_lr"], batch_size=C.W1["batch_size"])

  def direct(update):
    """The proposed width-1 executor path (``protos.direct_simulate``):
    train and apply in the same step, no result-slot buffer."""
    def run():
      st, wall, marks = protos.direct_simulate(rule, update, params, ds,
                                               sched, key=key)
      steady = ((marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
                if len(marks) > 2 else float("nan"))
      res = {"updates_per_s": n / wall, "steady_updates_per_s": steady,
             "compile_s": max(0.0, (marks[0][0] - (marks[-1][0] - wall))
                              - marks[0][1] / steady),
             "wall_s": wall, "width": 1, "arrivals_per_step": 1,
             "batching": "direct (prototype)", "padding_waste": 0.0,
             "accuracy": float(evaluate(st.params)["accuracy"])}
      return res, st.params
    return run

  def torch_loop(threads):
    def run():
      torch.set_num_threads(threads)
      try:
        glob, taus, wall = tf.run(sched, rule="fedasync", alpha=0.6,
                                  staleness_a=0.5)
      finally:
        torch.set_num_threads(args.torch_threads)
      return {"updates_per_s": len(taus) / wall, "wall_s": wall,
              "accuracy": tf.accuracy(glob, x_test, y_test),
              "threads": threads}, None
    return run

  # Equal work, exactly: the torch loop with the library's permutations
  # gives our parameters up to float reassociation.
  n_check = min(args.check_updates, n)
  chk_sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                     num_updates=n_check,
                                     concurrency=C.W1["concurrency"],
                                     seed=C.W1["schedule_seed"])
  p_ours = executor.simulate(rule, upd, params, ds, chk_sched, key=key,
                             width=1, arrivals_per_step=1).state.params
  g_torch, _, _ = tf.run(chk_sched, rule="fedasync", alpha=0.6,
                         staleness_a=0.5,
                         perm=C.jax_perm_fn(key, ds.max_count))
  equal_work = {"updates": n_check,
                "max_rel_param_diff": tf.rel_diff_to_jax(g_torch, p_ours)}
  C.log(f"equal-work check (torch loop with the library's permutations, "
        f"{n_check} updates): max rel param diff "
        f"{equal_work['max_rel_param_diff']:.2e}")

  systems = {
      "ours_default": ours(upd),
      "ours_width1": ours(upd, width=1, arrivals_per_step=1),
      "ours_width1_ragged": ours(ragged, width=1, arrivals_per_step=1),
      "ours_direct_ragged": direct(ragged),
      "torch": torch_loop(args.torch_threads),
      "torch_1thread": torch_loop(1),
  }
  names = (args.systems.split(",") if args.systems else list(ALL_SYSTEMS))
  runs = {k: [] for k in names}
  final = {}
  for r in range(args.repeats):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      res, p = systems[name]()
      res["loadavg"] = C.loadavg()
      runs[name].append(res)
      if p is not None:
        final[name] = p
      C.log(f"  repeat {r + 1}/{args.repeats} {name}: "
            f"{res['updates_per_s']:.1f} updates/s"
            + (f" (steady {res['steady_updates_per_s']:.1f}, compile "
               f"{res['compile_s']:.1f} s)" if "compile_s" in res else "")
            + f", accuracy {res['accuracy']:.4f}, load {res['loadavg']}")

  def med(name, field):
    return C.median([x[field] for x in runs[name]])

  summary = {k: {"updates_per_s": med(k, "updates_per_s"),
                 "accuracy": med(k, "accuracy")} for k in names}
  for k in names:
    if k.startswith("ours"):
      summary[k]["steady_updates_per_s"] = med(k, "steady_updates_per_s")
      summary[k]["compile_s"] = med(k, "compile_s")
      summary[k]["config"] = {f: runs[k][0][f] for f in (
          "width", "arrivals_per_step", "batching", "padding_waste")}

  ratios = {}
  if "torch" in names:
    for k in names:
      if k.startswith("ours"):
        ratios[f"{k}_vs_torch"] = C.median(
            [a["updates_per_s"] / b["updates_per_s"]
             for a, b in zip(runs[k], runs["torch"])])
        ratios[f"{k}_steady_vs_torch"] = C.median(
            [a["steady_updates_per_s"] / b["updates_per_s"]
             for a, b in zip(runs[k], runs["torch"])])
        ratios[f"{k}_accuracy_minus_torch"] = (
            summary[k]["accuracy"] - summary["torch"]["accuracy"])
        if "torch_1thread" in runs:
          ratios[f"{k}_vs_best_torch"] = C.median(
              [a["updates_per_s"] / max(b["updates_per_s"], c["updates_per_s"])
               for a, b, c in zip(runs[k], runs["torch"],
                                  runs["torch_1thread"])])
  diffs = {}
  if "ours_default" in final:
    ref = jax.tree.leaves(final["ours_default"])
    for k, p in final.items():
      if k != "ours_default":
        la = jax.tree.leaves(p)
        diffs[k] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                       for a, b in zip(la, ref)) / max(
                           float(np.max(np.abs(np.asarray(b)))) for b in ref)
  result = {
      "workload": "W1", "workload_config": C.W1, "updates": n,
      "repeats": args.repeats, "summary": summary, "ratios": ratios,
      "target": "ours >= 2x torch updates/s, accuracy within 1 point",
      "max_rel_param_diff_vs_ours_default": diffs,
      "equal_work_check": equal_work,
      "ragged_update_check": {"max_rel_param_diff": same_diff,
                              "max_loss_diff": same_loss},
      "schedule": {"mean_staleness": float(sched.staleness.mean()),
                   "max_staleness": int(sched.staleness.max()),
                   "realised_concurrency":
                       sched.stats["realised_concurrency"],
                   "library_scan_steps_per_client": upd.num_steps,
                   "mean_real_steps_per_update": float(np.mean(np.ceil(
                       ds.counts[sched.arrival_client] / C.W1["batch_size"])))},
      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
      "samples": runs,
      "method": "each system runs the whole W1 once per repeat, systems in "
                "rotating order; updates_per_s = updates / wall time of the "
                "whole call (ours: executor.simulate including compilation); "
                "steady = after the first chunk; ratios are medians of "
                "per-repeat paired ratios",
  }
  C.finish("torch_w1", result, quick=args.quick, started=started,
           load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
