#!/usr/bin/env python
"""One run's clients trained on several devices at once, against the
default one-client-at-a-time path.

W1 (MNIST over 1000 Dirichlet(0.5) clients, MLP 784-200-200-10, one local
epoch of SGD 0.05 at batch 10, FedAsync(0.6, polynomial(0.5)), lognormal
speeds, concurrency ``--concurrency``), ``--updates`` client updates, no
evaluation during the run. Two systems, each in its own process because
the number of CPU devices is fixed when JAX starts:

* ``direct``: the CPU default (one device; one client per compiled step);
* ``devices``: the CPU split into ``--devices`` devices (one per core);
  each step trains a wave of clients whose start versions exist, its lanes
  dealt over the devices balanced by example count
  (``batching="devices"``, ``strategies.deal_lanes``);
* ``devices_rr``: the same with the lanes dealt round-robin, as before
  ``deal_lanes`` (for a paired comparison).

The processes alternate (``--repeats`` each, medians reported); every
system's final parameters are compared with the first's (they must be
equal: the same client updates in the same order, up to float
reassociation where the processes' convolutions run on different XLA:CPU
paths).

``--systems`` adds two one-device systems that show what a Python user
gets who does not call ``configure_cpu``:

* ``plain``: the direct path in a process that calls nothing first; the
  executor compiles its program with ``xla_cpu.compiler_options`` (Eigen
  convolutions on two or more cores);
* ``ynnpack``: the same after ``configure_cpu(conv="ynnpack")``, which
  leaves XLA's own (one-thread YNNPACK) convolutions everywhere: what such
  a user got before the executor chose per compilation.

``--model cnn`` swaps W1's MLP for the AFL paper's MNIST CNN
(``models.mnist_cnn()``, 19,146 parameters, Adam 1e-3 at batch 64, one
local epoch; default 100 clients, concurrency 10, 60 updates), where each
client's training is long enough for the devices' per-step
synchronisation not to matter. Each process makes the library's CPU
convolution choice for its layout before JAX starts
(``configure_cpu(devices=...)``: Eigen on one device, YNNPACK's one-thread
convolutions on one-core devices).

The LAST line printed is one JSON object, also written to
``<--out>/devices_<date>[_quick|_smoke].json`` (default ``runs/benchmarks/``,
untracked; ``--out benchmarks/results`` records the run).

Recorded: ``results/devices_2026-12-02T032918Z.json`` (W1's MLP) by
``python benchmarks/devices.py --width 8``: 0.48x;
``results/devices_2026-12-02T204714Z.json`` (the CNN) by ``python
benchmarks/devices.py --model cnn --updates 200 --out benchmarks/results``:
0.94x (waves of 2.6 clients on average in 8 lanes, 68% padding). The
final parameters of the two processes differ there by up to 0.028: their
convolutions run on different XLA:CPU paths, and 200 Adam updates in
float32 amplify the last-bit differences.

``results/devices_2026-12-03T072817Z.json`` (the per-compilation choice:
``plain`` 1.23x ``ynnpack``) by ``python benchmarks/devices.py --model cnn
--systems plain,ynnpack --updates 60 --repeats 3 --out
benchmarks/results``, and ``..T073110Z.json`` (``plain`` against
``direct``, the process-wide flag: 1.00x, bit-identical parameters) by
the same with ``--systems direct,plain``.

``results/devices_2026-12-03T083858Z.json`` (FedAvg rounds of 6 CNN
clients: ``devices`` 1.05x ``direct``, ``devices_rr`` 1.00x) by ``python
benchmarks/devices.py --model cnn --schedule sync --updates 120 --repeats
3 --systems direct,devices,devices_rr --out benchmarks/results``;
``..T082707Z.json`` (1.04x, round-robin dealing; written to a scratch
folder and copied) by the same with ``--systems direct,devices`` before
``deal_lanes``.
``results/devices_2026-12-03T091717Z.json`` (asynchronous, concurrency
10: ``devices`` 1.05x, ``devices_rr`` 0.97x) by ``python
benchmarks/devices.py --model cnn --updates 120 --repeats 3 --systems
direct,devices,devices_rr --out benchmarks/results``.

Usage:
  python benchmarks/devices.py                 # 2000 updates, C=100
  python benchmarks/devices.py --model cnn     # the MNIST CNN instead
  python benchmarks/devices.py --model cnn --schedule sync  # FedAvg rounds
  python benchmarks/devices.py --model cnn --schedule sync \
      --systems direct,devices,devices_rr   # the deal, paired
  python benchmarks/devices.py --smoke --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "devices_*_smoke.json"
SYSTEMS = ("direct", "devices", "devices_rr", "plain", "ynnpack")


def parse_args(argv):
  ap = C.mnist_parser(__doc__)
  ap.add_argument("--updates", type=int, default=None)
  ap.add_argument("--concurrency", type=int, default=None)
  ap.add_argument("--schedule", choices=("async", "sync"), default="async",
                  help="async: FedAsync at --concurrency (default); sync: "
                  "FedAvg rounds of --cohort clients, so every wave is a "
                  "whole round")
  ap.add_argument("--cohort", type=int, default=None,
                  help="clients per FedAvg round with --schedule sync "
                  "(default 6, 4 with --smoke)")
  ap.add_argument("--devices", type=int, default=2)
  ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                  help="W1's MLP (default) or the AFL paper's MNIST CNN")
  ap.add_argument("--width", type=int, default=None,
                  help="wave width of the devices system (default: the "
                       "library's)")
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--systems", default="direct,devices",
                  help="comma-separated, from " + ",".join(SYSTEMS) +
                  "; ratios and parameter differences are taken against "
                  "the first")
  ap.add_argument("--system", choices=SYSTEMS, default=None,
                  help=argparse.SUPPRESS)  # a child process
  ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  args.systems = [x for x in args.systems.split(",") if x]
  bad = [x for x in args.systems if x not in SYSTEMS]
  if bad or len(args.systems) < 2:
    ap.error(f"--systems must name two or more of {SYSTEMS}, got "
             f"{args.systems}")
  cnn = args.model == "cnn"
  args.updates = args.updates or (
      (12 if cnn else 60) if args.smoke else 60 if cnn
      else 1000 if args.quick else 2000)
  args.concurrency = args.concurrency or (
      5 if args.smoke else 10 if cnn else 100)
  args.cohort = args.cohort or (4 if args.smoke else 6)
  if args.schedule == "sync" and not 1 <= args.cohort <= args.updates:
    ap.error(f"--cohort must be in [1, --updates={args.updates}], got "
             f"{args.cohort}")
  args.repeats = args.repeats or (1 if args.smoke else 2)
  args.clients = (20 if args.smoke else 100 if cnn
                  else C.W1["num_clients"])
  return args


def child(args, path):
  """One timed run of ``args.system``; writes its record and parameters."""
  from fedasync_jax.sim import xla_cpu
  split = args.system in ("devices", "devices_rr")
  devices = args.devices if split else 1
  if args.system == "ynnpack":
    xla_cpu.configure_cpu(conv="ynnpack")
  elif args.system != "plain":
    xla_cpu.configure_cpu(devices=devices)  # before JAX starts
  import jax
  if devices > 1:
    jax.config.update("jax_num_cpu_devices", devices)
  import numpy as np
  from fedasync_jax import executor, scheduler
  ds, _, _ = C.w1_data(path, num_clients=args.clients,
                       flat=args.model == "mlp")
  _, params, upd, rule, key = C.w1_pieces(ds)
  if args.model == "cnn":
    params, upd = cnn_pieces(ds)
  if args.schedule == "sync":
    from fedasync_jax import rules
    rule = rules.fedavg()
    sched = scheduler.synchronous(C.w1_delay_model(ds),
                                  num_rounds=args.updates // args.cohort,
                                  cohort_size=args.cohort, seed=0)
  else:
    sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                   num_updates=args.updates,
                                   concurrency=args.concurrency, seed=0)
  kw = {"batching": "devices", "width": args.width} if split else {}
  if args.system == "devices_rr":
    import jax.numpy as jnp
    from fedasync_jax.sim import strategies
    strategies.deal_lanes = lambda counts, d: jnp.arange(
        counts.shape[0]).reshape(-1, d).T.ravel()
  # A sync step of the devices system is a whole round: short chunks
  # there, so that a run of tens of rounds still has a steady rate.
  chunk = 2 if args.schedule == "sync" else 16
  res, out = C.simulate_timed(executor, rule, upd, params, ds, sched, key,
                              chunk_steps=chunk, **kw)
  res["devices"] = len(jax.devices())
  Path(args.result).write_text(json.dumps(res))
  np.savez(args.result + ".npz", *[np.asarray(a) for a in
                                   jax.tree.leaves(out.state.params)])


def cnn_pieces(ds):
  """The MNIST CNN's initial parameters and client update (Adam 1e-3,
  batch 64, one local epoch)."""
  import jax
  import optax
  from fedasync_jax import client, models
  model = models.mnist_cnn()
  params = model.init(jax.random.key(C.W1["model_seed"]))
  update = client.local_update(model.loss, optax.adam(1e-3), batch_size=64,
                               max_examples=ds.max_count, epochs=1)
  return params, update


def main(argv=None):
  args = parse_args(argv)
  started, load_start = time.perf_counter(), C.loadavg()
  out = C.out_dir(args)
  path = C.mnist_path(args, out)
  if C.skip_if_no_mnist(path, "devices"):
    return 0
  if args.system is not None:
    child(args, path)
    return 0
  import numpy as np
  work = Path(tempfile.mkdtemp(prefix="devices_bench_"))
  base = list(argv if argv is not None else sys.argv[1:])
  runs = {system: [] for system in args.systems}
  for r in range(args.repeats):
    for system in args.systems:
      res = work / f"{system}_{r}.json"
      subprocess.run([sys.executable, os.path.abspath(__file__), *base,
                      "--system", system, "--result", str(res),
                      "--data", str(path)], check=True)
      runs[system].append(json.loads(res.read_text()))
      C.log(f"{system} #{r}: "
            f"{C.rate(runs[system][-1]['steady_updates_per_s'])} steady, "
            f"{runs[system][-1]['updates_per_s']:.0f} end to end")
  first = args.systems[0]
  a = np.load(work / f"{first}_0.json.npz")
  diffs, ratios = {}, {}
  summary = {s: {k: C.median([x[k] for x in v]) for k in
                 ("steady_updates_per_s", "updates_per_s", "compile_s")}
             for s, v in runs.items()}
  for system in args.systems[1:]:
    b = np.load(work / f"{system}_0.json.npz")
    diffs[system] = max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files)
    ratios[system] = C.median([
        x["steady_updates_per_s"] / y["steady_updates_per_s"]
        for x, y in zip(runs[system], runs[first])])
    C.log(f"{system} / {first}, steady, paired: {ratios[system]:.2f}x; "
          f"max |param diff| {diffs[system]}")
  model = ({"model": "mnist_cnn (models.mnist_cnn)", "batch_size": 64,
            "client_lr": 1e-3, "client_optimizer": "adam(1e-3)"}
           if args.model == "cnn" else {})
  schedule = ({"rule": "fedavg() (example-weighted mean)",
               "schedule": "synchronous", "cohort": args.cohort,
               "rounds": args.updates // args.cohort}
              if args.schedule == "sync" else
              {"schedule": "asynchronous", "concurrency": args.concurrency})
  w1 = {k: v for k, v in C.W1.items() if k != "concurrency"}
  result = {"workload": {**w1, **model, "num_clients": args.clients,
                         **schedule, "num_updates": args.updates,
                         "eval": "none"},
            "devices": args.devices, "systems": args.systems, "runs": runs,
            "medians": summary,
            f"steady_ratios_over_{first}_paired": ratios,
            f"max_abs_param_diff_vs_{first}": diffs}
  C.finish("devices", result, args=args, started=started,
           load_start=load_start)
  return 0


if __name__ == "__main__":
  sys.exit(main())
