"""Building a run from its configuration: data, model, rule, delays, schedule.

Every factory here reads a validated ``config.Config``; the families behind
the names (rules, staleness functions, optimizers, speed distributions,
selections, models) are built through their registries (``members``), so a
member registered anywhere runs from a configuration without a change here.

Example:
  >>> from fedasync_jax import config
  >>> cfg = config.from_dict({"data": {"num_clients": 8},
  ...                         "rule": {"name": "fedbuff", "buffer_size": 2},
  ...                         "run": {"num_updates": 10, "concurrency": 2}})
  >>> s = setup(cfg)
  >>> s.rule.arrivals_per_version, s.schedule.num_arrivals
  (2, 10)
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import jax
import numpy as np
import optax

from fedasync_jax import data, models
from fedasync_jax.core import checks, client, robust, rules
from fedasync_jax.data import datasets, images, synthetic
from fedasync_jax.run import members, memory, schema
from fedasync_jax.run.members import (  # noqa: F401  (re-exported)
    make_staleness, make_update)
from fedasync_jax.run.schema import ConfigError
from fedasync_jax.sim import delays, scheduler, tasks, trace_files, traces
from fedasync_jax.sim.selection import needs_weights


class Setup(NamedTuple):
  """Everything a run is built from (deterministic given the config)."""
  fed: data.FederatedData
  model: models.ModelFns
  update: client.ClientUpdate
  rule: rules.ServerRule
  schedule: scheduler.Schedule
  hparams: client.ClientHParams
  params: object
  eval_fn: Callable
  eval_every_versions: int
  trace_mapping: tuple = ()
  """With trace files: rows ``client, <file>_row, <file>_id`` (header
  first) saying which trace row each client follows (``load_traces``)."""


# The one place that standardizes images is data/images.py.
normalization = images.normalization
image_transform = images.image_transform
with_image_inputs = images.with_image_inputs


def load_data(cfg) -> data.FederatedData:
  """Loads and federates the configured data set, after
  ``memory.check_memory``.

  Training images stay uint8 on the host and on the device (4x less
  memory); they are standardized on the device, per minibatch, by the model
  (``images.with_image_inputs``). The small test set is standardized here.
  """
  d = cfg.data
  memory.check_memory(cfg)
  if d.name == "synthetic":
    with naming("data.synthetic_alpha / synthetic_beta / num_clients / "
                "synthetic_max_examples"):
      return synthetic.synthetic(d.synthetic_alpha, d.synthetic_beta,
                                 num_clients=d.num_clients, seed=d.seed,
                                 max_examples=d.synthetic_max_examples)
  with naming(f"data.name={d.name!r} (data.path / data.data_dir)"):
    central = datasets.load(d.name, path=d.path, data_dir=d.data_dir,
                            download=d.download)
  x_test = central.x_test
  if x_test.dtype == np.uint8:
    mean, std = images.normalization(d.name)
    x_test = images.normalize(x_test, mean=mean, std=std)
  with naming("data.num_clients / partition / alpha"):
    return datasets.federate(
        central.x_train, central.y_train, x_test.astype(np.float32),
        central.y_test, num_clients=d.num_clients, partition=d.partition,
        alpha=d.alpha, seed=d.seed, num_classes=central.num_classes,
        name=central.name or d.name)


@contextlib.contextmanager
def naming(fields: str):
  """Turns a ``ValueError`` (or a missing file) raised while building from
  the configuration into a ``ConfigError`` that names the ``fields`` it
  came from.

  Example:
    >>> try:
    ...   with naming("delays.sigma"):
    ...     raise ValueError("speeds are not finite")
    ... except ConfigError as e:
    ...   print(e)
    delays.sigma: speeds are not finite
  """
  try:
    yield
  except ConfigError:
    raise
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(f"{fields}: {e}") from None


def make_optimizer(values, section: str = "client",
                   choice: str = "optimizer") -> optax.GradientTransformation:
  """The optimizer a configuration section names (``client.optimizer`` by
  default; ``rule.server_optimizer``), with its bound fields' values.

  Example:
    >>> from fedasync_jax import config
    >>> opt = make_optimizer(config.Config().client)
    >>> callable(opt.update)
    True
  """
  return members.make_optimizer(values, section, choice)


def _optimizer(name: str, lr, momentum=0.0) -> optax.GradientTransformation:
  """``OPTIMIZERS[name]`` with ``lr`` (and ``momentum`` where declared)."""
  from fedasync_jax.core.optimizers import OPTIMIZERS
  declared = {p.name for p in OPTIMIZERS[name].params}
  given = {"lr": lr, "momentum": momentum}
  return OPTIMIZERS.build(name, **{k: v for k, v in given.items()
                                   if k in declared})


def make_model(cfg, fed: data.FederatedData) -> models.ModelFns:
  """The configured model for ``fed``.

  The member of ``models.MODELS`` gets the data's ``input_dim`` and
  ``num_classes`` where it declares them. When the training images are
  uint8 (real image data from ``load_data``), the model standardizes uint8
  inputs itself (``images.with_image_inputs``), so ``model.loss`` can be
  given to ``client.local_update`` as it is.

  Raises:
    ConfigError: a label of the data (training or test) is not below the
      model's number of classes (``checks.labels``), or the model does not
      take the data's examples (:func:`check_fits`).
  """
  name = cfg.model.name
  given = {"input_dim": int(np.prod(fed.train.x.shape[1:])),
           "num_classes": fed.num_classes}
  declared = {p.name for p in models.MODELS[name].params}
  model = models.MODELS.build(name, **{k: v for k, v in given.items()
                                       if k in declared})
  for key, y in (("y_train", fed.train.y), ("y_test", fed.y_test)):
    try:
      checks.labels(key, y, model.num_classes,
                    what=f"model.name {name!r}")
    except ValueError as e:
      raise ConfigError(f"data.name {cfg.data.name!r}: {e}") from None
  if fed.train.x.dtype == np.uint8:
    model = images.with_image_inputs(model, cfg.data.name)
  check_fits(model, fed.train.x, fed.train.y,
             what=f"model.name {name!r} with data.name {cfg.data.name!r}")
  return model


def check_fits(model: models.ModelFns, x, y, *, what: str = "model") -> None:
  """Checks that ``model`` trains on examples like ``x[:1]``, ``y[:1]``.

  Traces the model's ``init`` and ``loss`` abstractly (``jax.eval_shape``:
  nothing is computed or compiled), so a model that does not fit the data
  is refused before a run writes anything, not when its first program is
  compiled.

  Args:
    model: the model.
    x, y: training examples and labels (only their first row's shape and
      dtype are used).
    what: how the message names the pair, e.g. the config fields.

  Raises:
    ConfigError: ``model.loss`` refuses the examples, naming ``what``, the
      example shape and the model's own message.

  Example:
    >>> from fedasync_jax import models
    >>> check_fits(models.mnist_cnn(), np.zeros((3, 60), np.float32),
    ...            np.zeros(3, np.int32), what="mnist_cnn")
    Traceback (most recent call last):
    ...
    fedasync_jax.run.schema.ConfigError: mnist_cnn does not fit the data (examples of shape (60,), float32): mnist_cnn: x must have shape (B, H, W, 1) or (B, H, W), got (1, 60)
  """
  x1, y1 = np.asarray(x[:1]), np.asarray(y[:1])
  try:
    params = jax.eval_shape(model.init, jax.random.key(0))
    jax.eval_shape(model.loss, params, x1, y1, np.ones(1, np.float32))
  except (ValueError, TypeError) as e:
    raise ConfigError(
        f"{what} does not fit the data (examples of shape "
        f"{tuple(x1.shape[1:])}, {x1.dtype}): {e}") from None


def make_rule_from(cfg, fed: data.FederatedData) -> rules.ServerRule:
  """The configured rule (a member of ``rules.RULES`` built with its
  parameters and inputs), guarded (quarantine, norm bound, noise) as set."""
  rule = members.build_rule(cfg, fed)
  r = cfg.rule
  if r.quarantine or r.max_update_norm is not None:
    rule = robust.guard(
        rule, quarantine=r.quarantine, max_norm=r.max_update_norm,
        noise_multiplier=r.noise_multiplier,
        key=jax.random.fold_in(jax.random.key(cfg.run.seed), 0x5EED))
  return rule


def load_trace(path) -> np.ndarray:
  r"""Per-client speeds (seconds per unit of work) from a trace file.

  ``.npy`` holds an array; ``.csv`` / ``.txt`` hold numbers separated by
  commas, spaces or newlines. The values are cycled over the clients.

  Raises:
    config.ConfigError: naming ``delays.trace_path`` when the file cannot be
      read or does not hold finite numbers ``> 0``.

  Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "speeds.csv")
    >>> _ = open(p, "w").write("0.5, 1.0\n2.0\n")
    >>> load_trace(p).tolist()
    [0.5, 1.0, 2.0]
  """
  p = Path(path)
  try:
    if p.suffix == ".npy":
      t = np.load(p, allow_pickle=False)
    else:
      t = np.array(p.read_text().replace(",", " ").split(), dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).ravel()
  except (OSError, ValueError) as e:
    raise ConfigError(
        f"delays.trace_path: cannot read speeds from {p}: {e}") from None
  if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
    raise ConfigError(
        f"delays.trace_path: {p} must hold at least one speed, all finite "
        f"and > 0")
  return t


def make_delays(cfg, fed: data.FederatedData, *,
                loaded: Optional[trace_files.Loaded] = None
                ) -> delays.DelayModel:
  """The configured delay model: device speeds, work, jitter, availability.

  Work per task is the client's examples x ``client.epochs``, or
  ``client.steps x client.batch_size`` with fixed local steps. ``loaded``:
  the run's trace files already read (``load_traces``), else they are read
  here.

  Example:
    >>> from fedasync_jax import config
    >>> cfg = config.from_dict({"data": {"num_clients": 20},
    ...                         "delays": {"speeds": "pareto",
    ...                                    "pareto_shape": 3.0,
    ...                                    "jitter": "lognormal",
    ...                                    "jitter_sigma": 0.2}})
    >>> m = make_delays(cfg, load_data(cfg))
    >>> m.num_clients, m.jitter, m.jitter_sigma
    (20, 'lognormal', 0.2)
  """
  d, run, c = cfg.delays, cfg.run, cfg.client
  n = fed.train.num_clients
  loaded = load_traces(cfg, fed) if loaded is None else loaded
  comm = d.comm_time
  if loaded.speed is not None:  # a device table: FedScale's completion time
    speeds, comm = loaded.speed, loaded.comm_time + d.comm_time
  else:
    _, params = schema.member_values(d, "delays", "speeds")
    if "trace" in schema.family("delays", "speeds")[d.speeds].inputs:
      params["trace"] = load_trace(d.trace_path)
    # ``mean`` also floors every distribution's speeds (see device_speeds).
    with naming(f"delays.speeds={d.speeds!r} (its parameters)"):
      speeds = delays.device_speeds(d.speeds, n, seed=run.seed,
                                    **{"mean": d.mean, **params})
  work = (fed.train.counts * float(c.epochs) if c.steps is None
          else np.full(n, float(c.steps * c.batch_size)))
  avail = loaded.availability
  if d.availability_period is not None:
    if avail is not None:
      raise ConfigError("delays.availability_period and "
                        "delays.availability_trace: give one of them")
    with naming("delays.availability_period / availability_on_fraction"):
      avail = delays.availability(n, period=d.availability_period,
                                  on_fraction=d.availability_on_fraction,
                                  seed=run.seed + 1)
  if d.lose_offline and avail is None:
    raise ConfigError("delays.lose_offline needs delays.availability_trace "
                      "or delays.availability_period")
  with naming("delays"):
    return delays.delay_model(
        speeds, work, jitter=d.jitter, jitter_sigma=d.jitter_sigma,
        comm_time=comm, dropout=d.dropout, availability=avail,
        lose_offline=d.lose_offline)


def load_traces(cfg, fed: data.FederatedData) -> trace_files.Loaded:
  """The device table (``delays.speeds=trace`` with a table in
  ``delays.trace_path``) and availability trace (``delays.availability_trace``)
  of a run, mapped onto its clients; ``mapping`` records which trace row
  each client follows.

  Raises:
    config.ConfigError: naming the field whose file is unreadable or invalid.
  """
  d = cfg.delays
  table = (d.trace_path if d.speeds == "trace" and d.trace_path is not None
           and traces.is_device_table(d.trace_path) else None)
  kbit = d.model_kbit
  if table is not None and kbit is None:  # float32 parameters, in kbit
    shapes = jax.eval_shape(make_model(cfg, fed).init, jax.random.key(0))
    kbit = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes)) \
        * 32 / 1024
  out = trace_files.Loaded(None, None, None, [])
  for field, path in (("trace_path", table),
                      ("availability_trace", d.availability_trace)):
    if path is None:
      continue
    try:
      got = trace_files.load(
          fed.train.num_clients, mapping=d.trace_mapping, seed=cfg.run.seed,
          trust_pickle=d.trust_pickle, model_kbit=kbit or 0.0,
          augmentation=d.augmentation, period=d.trace_period,
          **({"device_path": path} if field == "trace_path"
             else {"availability_path": path}))
    except ValueError as e:
      raise ConfigError(f"delays.{field}: {e}") from None
    out = out._replace(**{k: v for k, v in got._asdict().items()
                          if v is not None and k != "mapping"},
                       mapping=_join(out.mapping, got.mapping))
  return out


def _join(a: list, b: list) -> list:
  """Two mapping tables side by side (same clients, first column once)."""
  if not a:
    return b
  return [ra + rb[1:] for ra, rb in zip(a, b)]


def make_schedule(cfg, fed: data.FederatedData, rule: rules.ServerRule, *,
                  delay_model: Optional[delays.DelayModel] = None,
                  progress=None) -> scheduler.Schedule:
  """The run's schedule: synchronous rounds when ``rule.synchronous``, else
  asynchronous arrivals, drawn from ``delay_model`` (default:
  ``make_delays(cfg, fed)``); ``progress``: ``scheduler.asynchronous``'s."""
  run = cfg.run
  dm = make_delays(cfg, fed) if delay_model is None else delay_model
  kind = ("without_replacement" if rule.synchronous
          and run.selection == "uniform" else run.selection)
  weights = fed.train.counts * 1.0 if needs_weights(kind) else None
  if rule.synchronous:
    rounds = run.num_rounds or max(1, run.num_updates // run.concurrency)
    return scheduler.synchronous(
        dm, num_rounds=rounds, cohort_size=run.concurrency,
        over_selection=run.over_selection, deadline=run.deadline,
        selection=kind, weights=weights, seed=run.seed)
  try:
    return scheduler.asynchronous(
        dm, num_updates=run.num_updates,
        concurrency=None if run.poisson_rate else run.concurrency,
        poisson_rate=run.poisson_rate, selection=kind,
        weights=weights, arrivals_per_version=rule.arrivals_per_version,
        max_staleness=rule.max_staleness, seed=run.seed, progress=progress)
  except scheduler.Stuck as e:
    d = cfg.delays
    if d.availability_trace is None:
      raise
    raise ConfigError(
        f"{e}: delays.availability_trace {d.availability_trace} has no "
        f"client online from some time on (its windows end; "
        f"delays.trace_period is {d.trace_period}: a period repeats them)"
        ) from None


def eval_every_versions(cfg, rule: rules.ServerRule) -> int:
  """``run.eval_every`` (client updates) in server versions."""
  per_version = (rule.arrivals_per_version if rule.arrivals_per_version
                 else cfg.run.concurrency)
  return max(1, math.ceil(cfg.run.eval_every / per_version))


class Seeded(NamedTuple):
  """What a run's seed draws (``seeded``)."""
  schedule: scheduler.Schedule
  hparams: client.ClientHParams
  params: object
  trace_mapping: tuple = ()


def seeded(cfg, fed: data.FederatedData, model: models.ModelFns,
           rule: rules.ServerRule, *, progress=None) -> Seeded:
  """The parts of a run that ``cfg.run.seed`` draws: the trace rows its
  clients follow, its delays and schedule (``progress``: see
  ``make_schedule``), its tasks' values and the initial parameters. A
  sweep calls it once per seed, a run once.

  Example:
    >>> from fedasync_jax import config
    >>> cfg = config.from_dict({"data": {"num_clients": 8},
    ...                         "run": {"num_updates": 6, "concurrency": 2}})
    >>> s = setup(cfg, per_run=False)
    >>> drawn = seeded(cfg, s.fed, s.model, s.rule)
    >>> drawn.schedule.num_arrivals, drawn.trace_mapping  # no trace files
    (6, ())
  """
  c = cfg.client
  loaded = load_traces(cfg, fed)
  dm = make_delays(cfg, fed, loaded=loaded)
  sched = make_schedule(cfg, fed, rule, delay_model=dm, progress=progress)
  hparams = tasks.task_hparams(
      sched, prox_rho=c.prox_rho, delay_beta=c.delay_beta,
      delay=dm if c.delay_beta is not None else None)
  return Seeded(sched, hparams, model.init(jax.random.key(cfg.run.seed)),
                tuple(tuple(r) for r in loaded.mapping))


def setup(cfg, *, progress=None, per_run: bool = True) -> Setup:
  """Builds a run's pieces from its configuration (``progress``: see
  ``make_schedule``); ``per_run=False`` leaves out what a sweep draws per
  seed (``seeded``): ``schedule``, ``hparams``, ``params`` None,
  ``trace_mapping`` ()."""
  fed = load_data(cfg)
  model = make_model(cfg, fed)
  update = make_update(cfg, model, fed)
  rule = make_rule_from(cfg, fed)
  drawn = (seeded(cfg, fed, model, rule, progress=progress) if per_run
           else Seeded(None, None, None))
  eval_fn = models.make_evaluator(model, fed.x_test, fed.y_test)
  return Setup(fed, model, update, rule, drawn.schedule, drawn.hparams,
               drawn.params, eval_fn, eval_every_versions(cfg, rule),
               drawn.trace_mapping)
