"""Experiment 2: the AFL paper (arXiv:2508.01675) on CIFAR-10 with ResNet-20.

10 clients, Dirichlet(0.5), 6 clients per round (JPEG-decoded CIFAR-10),
Adam 1e-3 with the delay-aware rate, `afl` rule; figures: server loss,
participation, 3..8 clients per round, AFL vs FedAvg. See afl_paper.py.

Recorded (experiments/results/afl_cifar10/): ``python
experiments/afl_cifar10.py --rounds 5 --epochs 1 --ms 3,6,8 --test-subset
1000 --out experiments/results/afl_cifar10``.

    python experiments/afl_cifar10.py --quick   # minutes on a 2-core CPU
    python experiments/afl_cifar10.py           # full length (hours)
    python experiments/afl_cifar10.py --smoke --out /tmp/x   # seconds
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import afl_paper  # noqa: E402

SMOKE_OUTPUT = "summary.md"

if __name__ == "__main__":
  afl_paper.main("cifar10")
