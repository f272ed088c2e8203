#!/usr/bin/env python
"""W1 (asynchronous FedAsync on real MNIST): our executor vs a lean PyTorch loop.

Workload W1 (see ``common.W1``): MNIST over 1000 clients, Dirichlet(0.5)
labels (seed 0), pixels /255 then (x-0.1307)/0.3081; MLP 784-200-200-10
ReLU; 1 local epoch, batch 10, SGD lr 0.05; FedAsync alpha 0.6 with
polynomial staleness a = 0.5; closed-loop concurrency 100, lognormal device
speeds (sigma 1, seed 0), work = example counts; 5000 client updates
(``--quick``: 1000); then test accuracy on the 10,000 test images.

Systems, measured in ONE process, repeated ``--repeats`` times in rotating
order (medians and per-repeat paired ratios are reported;
``common.versus_torch``):

* ``ours_default``: ``executor.simulate`` exactly as a user calls it (on
  CPU: the direct path, one arrival per step, trained and applied at once).
* ``ours_waves``: the wave path at ``plan.default_width(100)`` = 20 clients
  per step with result slots (the default before the direct path).
* ``torch``: the lean PyTorch loop (``common.TorchFed``),
  ``torch.set_num_threads(--torch-threads)`` (default 2 = both cores). It
  walks ``schedule.events``: a dispatch snapshots the current global
  parameters (one clone per version, shared by the clients that downloaded
  it, freed after the last one arrives); an arrival copies that snapshot
  into ONE reusable model, trains the client's pre-made tensors (no
  DataLoader; ``torch.randperm`` shuffle per epoch, batch 10, plain SGD as
  one vector op on a flat parameter buffer) and mixes into the global
  parameters with ``alpha * (1 + tau)^-a``, ``tau`` from its own version
  counter (checked equal to the schedule's staleness).
* ``torch_1thread``: the same loop with one thread (on a loaded 2-core
  machine one thread can be faster).

Both sides start from the same initial weights (the JAX init copied into
torch), and equal work is checked exactly first: the torch loop fed the
library's permutations reproduces our parameters after 200 updates. Rates:
``updates_per_s`` = updates / wall time of the whole call (ours includes
compilation, as a user sees it); ours also reports the steady rate (chunks
after the first) and the compile estimate.

OMP_WAIT_POLICY defaults to PASSIVE here (set before torch is imported):
on this shared, oversubscribed 2-core machine PyTorch's default active
OpenMP spin-wait with 2 threads collapsed to 4-17 updates/s (100 ms per
MLP step instead of 0.4 ms); passive waiting is the fair baseline.
``--omp-wait-policy default`` keeps the library default.

Needs torch (``pip install -e '.[bench]'``); without it the script says so and
exits 0. The LAST line printed is one JSON object, also written to
``<--out>/torch_w1_<date>[_quick].json`` (default ``runs/benchmarks/``,
untracked; ``--out benchmarks/results`` records the run).

Recorded: ``results/torch_w1_2026-11-22T061117Z.json`` by
``python benchmarks/torch_w1.py --repeats 5``.

Usage:
  python benchmarks/torch_w1.py            # 5000 updates, 3 repeats
  python benchmarks/torch_w1.py --quick    # 1000 updates, 2 repeats
  python benchmarks/torch_w1.py --smoke --out /tmp/x   # 20 clients, seconds
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "torch_w1_*_smoke.json"
SMOKE_REQUIRES = ("torch",)


def main(argv=None):
  args = C.versus_torch_args(sys.argv[1:] if argv is None else argv,
                             __doc__, sizes={"updates": (5000, 1000, 100)},
                             size_help="client updates")
  if C.skip_if_no_torch("torch_w1"):
    return 0
  args.data_path = C.mnist_path(args, C.out_dir(args) if args.smoke else None)
  if C.skip_if_no_mnist(args.data_path, "torch_w1"):
    return 0
  from fedasync_jax import plan, rules, scheduler, staleness
  w1 = dict(C.W1_SMOKE if args.smoke else C.W1, num_updates=args.updates)

  def make_sched(ds, n=args.updates):
    return scheduler.asynchronous(C.w1_delay_model(ds), num_updates=n,
                                  concurrency=w1["concurrency"],
                                  seed=w1["schedule_seed"])
  C.versus_torch(
      "W1", args, rule=rules.fedasync(0.6, staleness.polynomial(0.5)),
      torch_rule={"rule": "fedasync", "alpha": 0.6, "staleness_a": 0.5},
      make_sched=make_sched,
      check_sched=lambda ds: make_sched(ds, min(200, args.updates)),
      target="ours >= 2x torch updates/s, accuracy within 1 point",
      workload_config=w1, waves_width=plan.default_width(w1["concurrency"]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
