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
  what a run's inputs must satisfy (``contract``),
  the vectorized executor (``plan``, ``strategies``, ``program``,
  ``driver``, ``executor``, ``sweep``), the simulator as one pure function
  (``pure``), the oracle (``reference``) and ``compile_cache``;
* ``fedasync_jax.theory``: problems with known constants, tracking, bounds
  and fits (re-exported by the package);
* ``fedasync_jax.run``: ``schema``, ``config``, ``setup``, ``outputs``,
  ``checkpoints``, ``grid``, ``experiment``, ``results``, ``demo``, ``cli``
  (and ``launch``, the console script, which imports ``cli``).

Public: the modules named in ``__all__`` (reachable as ``fedasync_jax.<name>``
after ``import fedasync_jax``) and the entry points and types after them.
The other modules are the layers' internals, documented but free to change.

Example:
  >>> import fedasync_jax as fj
  >>> rule = fj.rules.fedasync(0.6, fj.staleness.polynomial(0.5))
  >>> callable(fj.simulate) and callable(fj.run_reference)
  True
"""

import importlib

# Where each public name lives: a module of a layer, or ``(module, name)``.
# Loaded when a public name is first used (PEP 562), so that ``import
# fedasync_jax`` is cheap and the command line can take the signals before
# JAX is imported (``run/launch.py``).
_MODULES = {
    **{m: f"fedasync_jax.{m}" for m in ("data", "models", "theory")},
    **{m: f"fedasync_jax.core.{m}" for m in (
        "arrival", "checks", "client", "optimizers", "registry", "robust",
        "rules", "staleness", "tree", "types")},
    **{m: f"fedasync_jax.data.{m}" for m in (
        "datasets", "partition", "synthetic")},
    "conv": "fedasync_jax.models.conv",
        **{m: f"fedasync_jax.run.{m}" for m in (
        "cli", "config", "demo", "experiment", "results")},
    **{m: f"fedasync_jax.sim.{m}" for m in (
        "compile_cache", "contract", "delays", "executor", "faults", "plan",
        "prescribed", "pure", "reference", "scheduler", "selection",
        "sweep", "tasks", "xla_cpu")},
}
_NAMES = {
    **{n: ("fedasync_jax.core.client", n) for n in (
        "ClientHParams", "ClientRef", "local_update")},
    **{n: ("fedasync_jax.core.rules", n) for n in (
        "afl", "fedasync", "fedavg", "fedbuff")},
    **{n: ("fedasync_jax.core.types", n) for n in (
        "ClientResult", "RunResult", "ServerRule")},
    **{n: ("fedasync_jax.data", n) for n in (
        "ClientDataset", "FederatedData")},
    "configure_cpu": ("fedasync_jax.sim.xla_cpu", "configure_cpu"),
    "simulate": ("fedasync_jax.sim.executor", "simulate"),
    "run_reference": ("fedasync_jax.sim.reference", "run"),
    "Schedule": ("fedasync_jax.sim.scheduler", "Schedule"),
    "run_sweep": ("fedasync_jax.sim.sweep", "sweep"),
    "task_hparams": ("fedasync_jax.sim.tasks", "task_hparams"),
}


_LAYERS = ("core", "sim", "run")  # the layers' packages, for attribute access


def __getattr__(name):
  # Only what is asked for is imported: the library's own modules import
  # names from this package while they load, so loading everything here
  # would be circular.
  if name in _LAYERS:
    # ``fedasync_jax.sim.executor`` and the like: the layer's public
    # modules become its attributes, as after an eager import.
    for module in _MODULES.values():
      if module.startswith(f"fedasync_jax.{name}."):
        importlib.import_module(module)
    value = importlib.import_module(f"fedasync_jax.{name}")
  elif name in _MODULES:
    value = importlib.import_module(_MODULES[name])
  elif name in _NAMES:
    module, attr = _NAMES[name]
    value = getattr(importlib.import_module(module), attr)
  else:
    raise AttributeError(f"module 'fedasync_jax' has no attribute {name!r}")
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_LAYERS) | set(_MODULES) | set(_NAMES))


__version__ = "0.2.0"

__all__ = [*_MODULES, *_NAMES]
