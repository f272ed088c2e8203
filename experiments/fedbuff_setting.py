"""The fixed setting of experiment 7 (``fedbuff_comparison.py``): the
methods compared (FedBuff, FedAsync, FedAvgM and FedAvgM with a round
deadline and/or over-selection) with their labels and colours, the rules'
fixed hyperparameters (staleness weight, FedAsync's alpha, FedBuff's K),
the deadline and over-selection, and FedAvgM's tuning grids.
"""

from __future__ import annotations

POLY_A = 0.5            # staleness weight (1 + tau)^-a of both async rules
FEDASYNC_ALPHA = 0.6
BUFFER_K = 10
OVER_SELECTION = 0.3    # extra clients per round, as a fraction of C
DEADLINE_QUANTILE = 0.9  # the deadline: this quantile of task durations
SERVER_LRS = (1.0, 2.0, 4.0)        # FedAvgM's grid (default)
FULL_SERVER_LRS = (0.5, 1.0, 2.0, 4.0, 8.0)  # (--full)
MOMENTA = (0.0, 0.5, 0.9)

# name: (rule, round deadline?, over-selection?)
VARIANTS = {
    "fedbuff": ("fedbuff", False, False),
    "fedasync": ("fedasync", False, False),
    "fedavgm": ("fedavgm", False, False),
    "fedavgm_deadline": ("fedavgm", True, False),
    "fedavgm_oversel": ("fedavgm", False, True),
    "fedavgm_deadline_oversel": ("fedavgm", True, True),
}
LABELS = {
    "fedbuff": "FedBuff (K=10)",
    "fedasync": "FedAsync",
    "fedavgm": "FedAvgM",
    "fedavgm_deadline": "FedAvgM + deadline",
    "fedavgm_oversel": "FedAvgM + over-selection",
    "fedavgm_deadline_oversel": "FedAvgM + deadline + over-selection",
}
COLORS = {"fedbuff": "C0", "fedasync": "C1", "fedavgm": "C3",
          "fedavgm_deadline": "C2", "fedavgm_oversel": "C4",
          "fedavgm_deadline_oversel": "C5"}
