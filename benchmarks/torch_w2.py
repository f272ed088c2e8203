#!/usr/bin/env python
"""W2 (synchronous FedAvg on real MNIST): our executor vs a lean PyTorch loop.

Workload W2: W1's data, model and client training (MNIST over 1000
Dirichlet(0.5) clients, MLP 784-200-200-10, 1 local epoch, batch 10, SGD lr
0.05; see ``common.W1``); synchronous FedAvg: 50 clients per round sampled
without replacement (``scheduler.synchronous``, W1's lognormal device
speeds order the arrivals inside a round), 100 rounds (``--quick``: 20),
the server takes the example-count-weighted average of the clients'
parameters (``rules.fedavg()``); then test accuracy on the 10,000 test
images.

Systems (one process, ``--repeats`` repeats in rotating order, medians and
per-repeat paired ratios):

* ``ours_default``: ``executor.simulate(rules.fedavg(), ...)`` with the
  library defaults;
* ``ours_width1``: ``width=1, arrivals_per_step=1``;
* ``ours_width1_ragged``: the same with ``protos.ragged_update`` (local
  steps ``ceil(count / batch)`` instead of ``ceil(max_examples / batch)``);
* ``torch`` / ``torch_1thread``: ``common.TorchFed`` with ``rule="fedavg"``
  (walks the same schedule's events; one reusable model; accumulates
  ``n_k (w_k - w)`` and applies the weighted mean at the round's last
  arrival).

Equal work is checked exactly first: the torch loop with the library's
permutations reproduces our parameters after ``--check-rounds`` rounds.
OMP_WAIT_POLICY defaults to PASSIVE (see torch_w1.py).

The LAST line printed is one JSON object, also written to
``benchmarks/results/torch_w2_<date>[_quick].json``.

Usage:
  python benchmarks/torch_w2.py            # 100 rounds x 50 clients, 3 repeats
  python benchmarks/torch_w2.py --quick    # 20 rounds, 2 repeats
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ALL_SYSTEMS = ("ours_default", "ours_width1", "ours_width1_ragged",
               "ours_direct_ragged", "torch", "torch_1thread")


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--data", default=None)
  ap.add_argument("--rounds", type=int, default=None)
  ap.add_argument("--cohort", type=int, default=50)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--check-rounds", type=int, default=4)
  ap.add_argument("--torch-threads", type=int, default=2)
  ap.add_argument("--omp-wait-policy", default="PASSIVE")
  ap.add_argument("--systems", default=None)
  args = ap.parse_args(argv)
  if args.rounds is None:
    args.rounds = 20 if args.quick else 100
  if args.repeats is None:
    args.repeats = 2 if args.quick else 3
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.omp_wait_policy.lower() != "default":
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import common as C
  data_path = args.data or C.DEFAULT_MNIST
  if C.skip_if_no_mnist(data_path, "torch_w2"):
    return 0
  started, load0 = time.perf_counter(), C.loadavg()
  import jax
  import optax
  import protos
  from fedasync_jax import client, executor, models, rules, scheduler
  torch = C.torch_setup(args.torch_threads)

  ds, x_test, y_test = C.w1_data(data_path)
  model = models.mlp()
  params = model.init(jax.random.key(C.W1["model_seed"]))
  key = jax.random.key(C.W1["train_key"])
  kw_upd = dict(batch_size=C.W1["batch_size"], max_examples=ds.max_count,
                epochs=1)
  upd = client.local_update(model.loss, optax.sgd(C.W1["client_lr"]),
                            **kw_upd)
  ragged = protos.ragged_update(model.loss, optax.sgd(C.W1["client_lr"]),
                                **kw_upd)
  rule = rules.fedavg()

  def make_sched(rounds):
    return scheduler.synchronous(C.w1_delay_model(ds), num_rounds=rounds,
                                 cohort_size=args.cohort, seed=0)
  sched = make_sched(args.rounds)
  n = sched.num_arrivals
  evaluate = jax.jit(models.make_evaluator(model, x_test, y_test))
  C.log(f"W2: FedAvg {args.rounds} rounds x {args.cohort} clients = {n} "
        f"client updates")

  tf = C.TorchFed(C.torch_mlp_from_jax(jax.device_get(params)), ds,
                  lr=C.W1["client_lr"], batch_size=C.W1["batch_size"])
  chk = make_sched(args.check_rounds)
  p_ours = executor.simulate(rule, upd, params, ds, chk, key=key, width=1,
                             arrivals_per_step=1).state.params
  g_torch, _, _ = tf.run(chk, rule="fedavg",
                         perm=C.jax_perm_fn(key, ds.max_count))
  equal_work = {"rounds": args.check_rounds,
                "max_rel_param_diff": tf.rel_diff_to_jax(g_torch, p_ours)}
  C.log(f"equal-work check ({args.check_rounds} rounds, library "
        f"permutations): max rel param diff "
        f"{equal_work['max_rel_param_diff']:.2e}")

  finals = {}

  def ours(name, update, **kw):
    def run():
      res, out = C.simulate_timed(executor, rule, update, params, ds, sched,
                                  key, **kw)
      res["accuracy"] = float(evaluate(out.state.params)["accuracy"])
      res["version"] = int(out.state.version)
      finals[name] = jax.device_get(out.state.params)
      return res
    return run

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
      finals["ours_direct_ragged"] = jax.device_get(st.params)
      return res
    return run

  def torch_loop(threads):
    def run():
      torch.set_num_threads(threads)
      try:
        glob, taus, wall = tf.run(sched, rule="fedavg")
      finally:
        torch.set_num_threads(args.torch_threads)
      return {"updates_per_s": len(taus) / wall, "wall_s": wall,
              "accuracy": tf.accuracy(glob, x_test, y_test),
              "threads": threads}
    return run

  systems = {
      "ours_default": ours("ours_default", upd),
      "ours_width1": ours("ours_width1", upd, width=1, arrivals_per_step=1),
      "ours_width1_ragged": ours("ours_width1_ragged", ragged, width=1,
                                 arrivals_per_step=1),
      "ours_direct_ragged": direct(ragged),
      "torch": torch_loop(args.torch_threads),
      "torch_1thread": torch_loop(1),
  }
  names = args.systems.split(",") if args.systems else list(ALL_SYSTEMS)
  runs = {k: [] for k in names}
  for r in range(args.repeats):
    for name in names[r % len(names):] + names[:r % len(names)]:
      res = systems[name]()
      res["loadavg"] = C.loadavg()
      runs[name].append(res)
      C.log(f"  repeat {r + 1}/{args.repeats} {name}: "
            f"{res['updates_per_s']:.1f} updates/s"
            + (f" (steady {res['steady_updates_per_s']:.1f}, compile "
               f"{res['compile_s']:.1f} s)" if "compile_s" in res else "")
            + f", accuracy {res['accuracy']:.4f}, load {res['loadavg']}")

  def med(name, field):
    return C.median([x[field] for x in runs[name]])

  summary = {k: {"updates_per_s": med(k, "updates_per_s"),
                 "rounds_per_s": med(k, "updates_per_s") / args.cohort,
                 "accuracy": med(k, "accuracy")} for k in names}
  ratios = {}
  for k in names:
    if k.startswith("ours"):
      summary[k]["steady_updates_per_s"] = med(k, "steady_updates_per_s")
      summary[k]["compile_s"] = med(k, "compile_s")
      summary[k]["config"] = {f: runs[k][0][f] for f in (
          "width", "arrivals_per_step", "batching", "padding_waste")}
      if "torch" in runs:
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
  if "ours_default" in finals:
    ref = jax.tree.leaves(finals["ours_default"])
    scale = max(float(abs(b).max()) for b in ref)
    for k, p in finals.items():
      if k != "ours_default":
        diffs[k] = max(float(abs(a - b).max()) for a, b in
                       zip(jax.tree.leaves(p), ref)) / scale
  result = {
      "workload": "W2", "workload_config": dict(
          C.W1, rule="fedavg() (example-weighted mean)",
          rounds=args.rounds, cohort=args.cohort,
          selection="without_replacement", num_updates=n),
      "updates": n, "repeats": args.repeats, "summary": summary,
      "ratios": ratios, "equal_work_check": equal_work,
      "max_rel_param_diff_vs_ours_default": diffs,
      "target": "ours >= 1.5x torch updates/s, accuracy within 1 point",
      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
      "samples": runs,
      "method": "whole runs per system per repeat in rotating order; "
                "updates_per_s = client updates / wall time of the call "
                "(ours includes compilation); ratios = medians of "
                "per-repeat paired ratios",
  }
  C.finish("torch_w2", result, quick=args.quick, started=started,
           load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
