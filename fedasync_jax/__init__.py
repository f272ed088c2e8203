"""fedasync_jax: a JAX-accelerated, vectorized simulator of asynchronous FL.

The package is layered; each layer imports only the ones above it:

* ``fedasync_jax.core``: pure pieces with no simulator (``tree``,
  ``checks``, ``registry``, ``types``, ``staleness``, ``rules``,
  ``robust``, ``client``, ``arrival``);
* ``fedasync_jax.sim``: event schedules in numpy (``delays``,
  ``scheduler``, ``faults``), per-task inputs (``tasks``), the vectorized executor (``plan``,
  ``executor``, ``sweep``), the oracle (``reference``) and
  ``compile_cache``;
* ``fedasync_jax.data`` (``synthetic``, ``datasets``, ``partition``) and
  ``fedasync_jax.models`` (``conv``);
* ``fedasync_jax.theory``: problems with known constants, tracking, bounds;
* ``fedasync_jax.run``: ``config``, ``experiment``, ``results``, ``demo``,
  ``cli``.

The public API is what ``__all__`` names: those modules (reachable as
``fedasync_jax.<name>`` after ``import fedasync_jax``) and the entry points
and types below.

Example:
  >>> import fedasync_jax as fj
  >>> rule = fj.rules.fedasync(0.6, fj.staleness.polynomial(0.5))
  >>> callable(fj.simulate) and callable(fj.run_reference)
  True
"""

from fedasync_jax import data, models, theory
from fedasync_jax.core import (arrival, checks, client, registry, robust,
                               rules, staleness, tree, types)
from fedasync_jax.data import datasets, partition, synthetic
from fedasync_jax.models import conv
from fedasync_jax.run import cli, config, demo, experiment, results
from fedasync_jax.sim import (compile_cache, delays, executor, faults, plan,
                              reference, scheduler, sweep, tasks)
from fedasync_jax.core.client import ClientHParams, ClientRef, local_update
from fedasync_jax.data import ClientDataset, FederatedData
from fedasync_jax.sim.executor import simulate
from fedasync_jax.core.types import RunResult
from fedasync_jax.sim.tasks import task_hparams
from fedasync_jax.sim.reference import run as run_reference
from fedasync_jax.core.rules import (ClientResult, ServerRule, afl, fedasync,
                                     fedavg, fedbuff)
from fedasync_jax.sim.scheduler import Schedule
from fedasync_jax.sim.sweep import sweep as run_sweep

__version__ = "0.1.0"

__all__ = [
    # modules
    "arrival", "checks", "cli", "client", "compile_cache", "config", "conv",
    "data", "datasets", "demo",
    "delays", "executor", "experiment", "faults", "models", "partition",
    "plan", "reference", "registry", "results", "robust", "rules",
    "scheduler", "staleness", "sweep", "synthetic", "tasks", "theory",
    "tree", "types",
    # entry points and types
    "simulate", "run_sweep", "run_reference", "task_hparams", "RunResult",
    "Schedule", "ClientDataset", "FederatedData", "ClientHParams",
    "ClientRef", "local_update", "ClientResult", "ServerRule", "fedasync",
    "fedbuff", "fedavg", "afl",
]
