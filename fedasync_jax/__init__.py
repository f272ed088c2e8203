"""fedasync_jax: a JAX-accelerated, vectorized simulator of asynchronous FL.

The package is layered; each layer imports only the ones listed before it:

* ``fedasync_jax.core``: pure pieces with no simulator: ``tree``,
  ``checks``, ``registry``, ``types``, ``staleness``, ``rules``, ``robust``,
  ``optimizers``, ``client``, ``arrival``;
* ``fedasync_jax.data``: the population's examples (``dataset``, re-exported
  by the package), ``synthetic``, ``datasets``, ``partition`` (and
  ``images``, ``npz``, ``tfds_loader``, ``central`` behind ``datasets``);
* ``fedasync_jax.models``: ``base``, ``networks`` (re-exported by the
  package), ``conv``;
* ``fedasync_jax.sim``: event schedules in numpy (``delays``,
  ``selection``, ``scheduler``, ``faults``), per-task inputs (``tasks``),
  the vectorized executor (``plan``, ``strategies``, ``program``,
  ``driver``, ``executor``, ``sweep``), the simulator as one pure function
  (``pure``), the oracle (``reference``) and ``compile_cache``;
* ``fedasync_jax.theory``: problems with known constants, tracking, bounds
  and fits (re-exported by the package);
* ``fedasync_jax.run``: ``schema``, ``config``, ``setup``, ``outputs``,
  ``checkpoints``, ``grid``, ``experiment``, ``results``, ``demo``, ``cli``.

Public: the modules named in ``__all__`` (reachable as ``fedasync_jax.<name>``
after ``import fedasync_jax``) and the entry points and types after them.
The other modules are the layers' internals, documented but free to change.

Example:
  >>> import fedasync_jax as fj
  >>> rule = fj.rules.fedasync(0.6, fj.staleness.polynomial(0.5))
  >>> callable(fj.simulate) and callable(fj.run_reference)
  True
"""

from fedasync_jax import data, models, theory
from fedasync_jax.core import (arrival, checks, client, optimizers, registry,
                               robust, rules, staleness, tree, types)
from fedasync_jax.data import datasets, partition, synthetic
from fedasync_jax.models import conv
from fedasync_jax.run import cli, config, demo, experiment, results
from fedasync_jax.sim import (compile_cache, delays, executor, faults, plan,
                              prescribed, pure, reference, scheduler,
                              selection, sweep, tasks)
from fedasync_jax.core.client import ClientHParams, ClientRef, local_update
from fedasync_jax.core.rules import afl, fedasync, fedavg, fedbuff
from fedasync_jax.core.types import ClientResult, RunResult, ServerRule
from fedasync_jax.data import ClientDataset, FederatedData
from fedasync_jax.sim.executor import simulate
from fedasync_jax.sim.reference import run as run_reference
from fedasync_jax.sim.scheduler import Schedule
from fedasync_jax.sim.sweep import sweep as run_sweep
from fedasync_jax.sim.tasks import task_hparams

__version__ = "0.1.0"

__all__ = [
    # modules
    "arrival", "checks", "cli", "client", "compile_cache", "config", "conv",
    "data", "datasets", "delays", "demo", "executor", "experiment", "faults",
    "models", "optimizers", "partition", "plan", "prescribed", "pure",
    "reference",
    "registry", "results", "robust", "rules", "scheduler", "selection",
    "staleness", "sweep", "synthetic", "tasks", "theory", "tree", "types",
    # entry points and types
    "simulate", "run_sweep", "run_reference", "task_hparams", "RunResult",
    "Schedule", "ClientDataset", "FederatedData", "ClientHParams",
    "ClientRef", "local_update", "ClientResult", "ServerRule", "fedasync",
    "fedbuff", "fedavg", "afl",
]
