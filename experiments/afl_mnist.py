"""Experiment 1: the AFL paper (arXiv:2508.01675) on MNIST with its CNN.

10 clients, Dirichlet(0.5), 5 clients per round, Adam 1e-3 with the
delay-aware rate, `afl` rule; figures: server loss, participation, 3..8
clients per round, AFL vs FedAvg. See afl_paper.py.

Recorded (experiments/results/afl_mnist/): ``python experiments/afl_mnist.py
--rounds 12 --epochs 1 --ms 3,5,8 --test-subset 2000 --compare-afl-lr 0.2
--out experiments/results/afl_mnist``.

    python experiments/afl_mnist.py --quick   # minutes on a 2-core CPU
    python experiments/afl_mnist.py           # full length (hours)
    python experiments/afl_mnist.py --smoke --out /tmp/x   # seconds
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import afl_paper  # noqa: E402

SMOKE_OUTPUT = "summary.md"

if __name__ == "__main__":
  afl_paper.main("mnist")
