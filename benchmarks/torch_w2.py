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
per-repeat paired ratios; ``common.versus_torch``):

* ``ours_default``: ``executor.simulate(rules.fedavg(), ...)`` with the
  library defaults (on CPU: the direct path);
* ``ours_waves``: the wave path at ``plan.default_width(50)`` = 15 clients
  per step;
* ``torch`` / ``torch_1thread``: ``common.TorchFed`` with ``rule="fedavg"``
  (walks the same schedule's events; one reusable model; accumulates
  ``n_k (w_k - w)`` and applies the weighted mean at the round's last
  arrival).

Equal work is checked exactly first: the torch loop with the library's
permutations reproduces our parameters after 4 rounds. OMP_WAIT_POLICY
defaults to PASSIVE (see torch_w1.py).

Needs torch (``pip install -e '.[bench]'``); without it the script says so and
exits 0. The LAST line printed is one JSON object, also written to
``<--out>/torch_w2_<date>[_quick].json`` (default ``runs/benchmarks/``,
untracked; ``--out benchmarks/results`` records the run).

Recorded: ``results/torch_w2_2026-11-22T060741Z.json`` by
``python benchmarks/torch_w2.py``.

Usage:
  python benchmarks/torch_w2.py            # 100 rounds x 50 clients, 3 repeats
  python benchmarks/torch_w2.py --quick    # 20 rounds, 2 repeats
  python benchmarks/torch_w2.py --smoke --out /tmp/x   # 20 clients, seconds
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

SMOKE_OUTPUT = "torch_w2_*_smoke.json"
SMOKE_REQUIRES = ("torch",)
COHORT, SMOKE_COHORT = 50, 5


def main(argv=None):
  args = C.versus_torch_args(sys.argv[1:] if argv is None else argv,
                             __doc__, sizes={"rounds": (100, 20, 3)},
                             size_help="FedAvg rounds of 50 clients")
  if C.skip_if_no_torch("torch_w2"):
    return 0
  args.data_path = C.mnist_path(args, C.out_dir(args) if args.smoke else None)
  if C.skip_if_no_mnist(args.data_path, "torch_w2"):
    return 0
  from fedasync_jax import plan, rules, scheduler
  cohort = SMOKE_COHORT if args.smoke else COHORT

  def make_sched(ds, rounds=args.rounds):
    return scheduler.synchronous(C.w1_delay_model(ds), num_rounds=rounds,
                                 cohort_size=cohort, seed=0)
  C.versus_torch(
      "W2", args, rule=rules.fedavg(), torch_rule={"rule": "fedavg"},
      make_sched=make_sched,
      check_sched=lambda ds: make_sched(ds, min(4, args.rounds)),
      target="ours >= 1.5x torch updates/s, accuracy within 1 point",
      workload_config=dict(C.W1_SMOKE if args.smoke else C.W1,
                           rule="fedavg() (example-weighted mean)",
                           rounds=args.rounds, cohort=cohort,
                           selection="without_replacement"),
      waves_width=plan.default_width(cohort))
  return 0


if __name__ == "__main__":
  sys.exit(main())
