"""Experiment 2: the AFL paper (arXiv:2508.01675) on CIFAR-10 with ResNet-20.

10 clients, Dirichlet(0.5) (JPEG-decoded CIFAR-10), Adam 1e-3 with the
delay-aware rate, `afl` rule; M = 3, 5, 8 clients per round and
synchronous FedAvg at M = 5, three seeds; the paper's "server loss" and
the server model's test loss, side by side with the paper's values. See
afl_paper.py.

Recorded (experiments/results/afl_cifar10/): ``python
experiments/afl_cifar10.py --out experiments/results/afl_cifar10`` (the
default: 10 rounds of 8 local steps; 75 min at load 4).

    python experiments/afl_cifar10.py --quick   # minutes on a 2-core CPU
    python experiments/afl_cifar10.py           # about an hour
    python experiments/afl_cifar10.py --full    # the paper's length (days)
    python experiments/afl_cifar10.py --smoke --out /tmp/x   # seconds
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import afl_paper  # noqa: E402

SMOKE_OUTPUT = "summary.md"

if __name__ == "__main__":
  afl_paper.main("cifar10")
