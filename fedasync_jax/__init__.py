"""fedasync_jax: a JAX-accelerated, vectorized simulator of asynchronous FL.

The public API, by module:

* ``staleness``: staleness functions ``s(tau)`` and the cutoff;
* ``rules``: server rules (FedAsync, FedBuff, FedAvg, AFL) as pure functions;
* ``client``: the local update of one client;
* ``delays``, ``scheduler``: delay models and the discrete-event schedule;
* ``reference``: the one-client-at-a-time oracle;
* ``plan``, ``executor``, ``sweep``: the vectorized executor and sweeps;
* ``data``, ``synthetic``, ``datasets``, ``partition``, ``models``: data and
  models;
* ``robust``, ``faults``: guarded rules and fault injection;
* ``theory``: problems with known constants, tracking and bounds;
* ``config``, ``experiment``, ``cli``: configured runs and the command line.

Example:
  >>> import fedasync_jax as fj
  >>> rule = fj.rules.fedasync(0.6, fj.staleness.polynomial(0.5))
  >>> callable(fj.simulate) and callable(fj.run_reference)
  True
"""

from fedasync_jax import (client, data, delays, executor, plan, reference,
                          robust, rules, scheduler, staleness, sweep,
                          synthetic, tree)
from fedasync_jax.client import ClientHParams, ClientRef, local_update
from fedasync_jax.data import ClientDataset, FederatedData
from fedasync_jax.executor import simulate
from fedasync_jax.reference import RunResult, task_hparams
from fedasync_jax.reference import run as run_reference
from fedasync_jax.rules import (ClientResult, ServerRule, afl, fedasync,
                                fedavg, fedbuff)
from fedasync_jax.scheduler import Schedule, asynchronous, synchronous
from fedasync_jax.sweep import sweep as run_sweep

__version__ = "0.1.0"
