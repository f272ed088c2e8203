"""How much memory a run's population needs, and a refusal before any work
when the machine does not have it.

Example:
  >>> from fedasync_jax import config
  >>> cfg = config.from_dict({"data": {"num_clients": 100}})
  >>> check_memory(cfg)  # 100 default clients fit
"""

from __future__ import annotations

import os
from typing import Optional

from fedasync_jax.data import synthetic
from fedasync_jax.run.schema import ConfigError


POPULATION_BYTES = 128
"""Bytes per client of the population's arrays besides its examples
(sizes, offsets, speeds, work, phases, participation... about 16 of 8
bytes)."""
DATA_COPIES = 3.5
"""Copies of the examples' bytes at the run's peak (the per-client arrays
and their concatenation while they are generated, the device copy and the
run's own). Measured 2026-12-04, 2-core CPU, peak RSS of ``fedasync-jax
run`` less ``PROCESS_BYTES``: default Synthetic(1,1) sizes at 10,000
clients 3.2 copies (4.04 GB for 1.1 GB of examples), a million clients of
at most 5 examples 2.4 while loading; 2 copies let a 100,000-client run
that needs about 38 GB start on a 24 GB machine."""

PROCESS_BYTES = 500_000_000
"""A run's memory besides its data: Python, JAX, XLA and the compiled
programs (0.47 GB peak for 100 clients)."""


def available_memory(*, meminfo="/proc/meminfo") -> Optional[int]:
  """Bytes of memory available to a new run: ``MemAvailable`` of
  ``meminfo``, else the free physical pages (``os.sysconf``), else
  ``None`` (unknown).

  Example:
    >>> m = available_memory()
    >>> m is None or m > 0
    True
  """
  try:
    with open(meminfo) as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (AttributeError, OSError, ValueError):
    return None


def estimate_bytes(cfg) -> int:
  """About how many bytes the configured population needs at its peak:
  ``PROCESS_BYTES``, ``DATA_COPIES`` x the synthetic examples
  (``synthetic.expected_bytes``; a data set from files is sized by its
  files) and ``POPULATION_BYTES`` per client.

  Example:
    >>> from fedasync_jax import config
    >>> cfg = config.from_dict({"data": {"num_clients": 10**5}})
    >>> round(estimate_bytes(cfg) / 1e9, 1)  # ~11 GB of examples, x 3.5
    39.2
  """
  d = cfg.data
  n = PROCESS_BYTES + d.num_clients * POPULATION_BYTES
  if d.name == "synthetic":
    n += DATA_COPIES * synthetic.expected_bytes(
        d.num_clients, max_examples=d.synthetic_max_examples)
  return n


def check_memory(cfg) -> None:
  """Refuses, before anything is generated, a population that needs more
  memory than is available (``estimate_bytes``, ``available_memory``;
  nothing is refused when that is unknown).

  Raises:
    ConfigError: one line naming ``data.num_clients``,
      ``data.synthetic_max_examples`` and both amounts.
  """
  need, have = estimate_bytes(cfg), available_memory()
  if have is None or need <= have:
    return
  d = cfg.data
  cap = "null" if d.synthetic_max_examples is None else \
      d.synthetic_max_examples
  raise ConfigError(
      f"data.num_clients={d.num_clients} with data.synthetic_max_examples="
      f"{cap} needs about {need / 1e9:.1f} GB of memory, but "
      f"{have / 1e9:.1f} GB is available; lower data.num_clients or "
      f"data.synthetic_max_examples (each client's examples)")
