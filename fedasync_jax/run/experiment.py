"""One run from a configuration: ``train_and_evaluate(config, workdir)``.

Builds the data, model, client update, rule, delay model and schedule from
a ``config.Config``, runs the vectorized executor with a progress bar,
checkpoints between chunks (atomically, with flax serialization), and
writes into ``workdir``:

* ``config.json``: the resolved configuration;
* ``history.csv``: per evaluation: version, simulated time, client updates,
  test loss and accuracy, mean staleness so far, bytes sent to and from
  clients so far;
* ``arrivals.csv``: per arrival: client, time, staleness, applied/dropped,
  version;
* ``participation.csv``: applied updates and examples per client;
* ``summary.json``: final metrics and run statistics;
* plots (PNG, when matplotlib is installed): accuracy and loss against
  versions and simulated time, staleness and participation histograms,
  examples and labels per client.

SIGINT and SIGTERM stop the run at the next chunk boundary after saving the
checkpoint; ``train_and_evaluate(..., resume=True)`` continues it and ends
with the same parameters as an uninterrupted run.

Example:
  >>> from fedasync_jax import config
  >>> cfg = config.from_dict({"run": {"num_updates": 200}})
  >>> summary = train_and_evaluate(cfg, "/tmp/run")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedasync_jax.core import client
from fedasync_jax.run import config as config_lib
from fedasync_jax import data
from fedasync_jax.data import datasets
from fedasync_jax.sim import delays
from fedasync_jax.sim import executor
from fedasync_jax import models
from fedasync_jax.data import partition
from fedasync_jax.sim import reference
from fedasync_jax.run import results
from fedasync_jax.core import robust
from fedasync_jax.core import rules
from fedasync_jax.sim import scheduler
from fedasync_jax.core import staleness
from fedasync_jax.data import synthetic
from fedasync_jax.sim import tasks
from fedasync_jax.core import types

CHECKPOINT = "checkpoint.msgpack"


class Interrupted(RuntimeError):
  """The run was stopped by a signal after saving its checkpoint."""


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


def _shared_data_dir() -> Path:
  return Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def load_data(cfg: config_lib.Config) -> data.FederatedData:
  """Loads and federates the configured data set."""
  d = cfg.data
  if d.name == "synthetic":
    return synthetic.synthetic(d.synthetic_alpha, d.synthetic_beta,
                               num_clients=d.num_clients, seed=d.seed)
  if d.name == "npz" or d.path:
    if d.name == "cifar10" and str(d.path).endswith("jpeg_bytes.npz"):
      central = datasets.load_cifar10_jpeg(d.path)
    else:
      raw = datasets.load_npz(d.path)
      central = datasets.CentralData(raw.x_train, raw.y_train, raw.x_test,
                                     raw.y_test, raw.num_classes,
                                     d.name if d.name != "npz" else
                                     Path(d.path).stem)
  else:
    name = "emnist/balanced" if d.name == "emnist" else d.name
    central = datasets.load_tfds(name, data_dir=d.data_dir,
                                 download=d.download)
  # Training images stay uint8 on the host and on the device (4x less
  # memory); they are standardized on the device, per minibatch, by the
  # loss (see ``image_transform``). The small test set is standardized here.
  x_test = central.x_test
  if x_test.dtype == np.uint8:
    mean, std = normalization(d.name)
    x_test = datasets.normalize(x_test, mean=mean, std=std)
  return datasets.federate(
      central.x_train, central.y_train, x_test.astype(np.float32),
      central.y_test, num_clients=d.num_clients, partition=d.partition,
      alpha=d.alpha, seed=d.seed, num_classes=central.num_classes,
      name=central.name or d.name)


def normalization(name: str):
  """(mean, std) of a data set's images after scaling to [0, 1]."""
  return datasets.NORMALIZATION.get(name, ((0.0,), (1.0,)))


def image_transform(name: str):
  """``x_uint8 -> standardized float32``, traced inside the compiled step.

  Args:
    name: the data set, a key of ``datasets.NORMALIZATION`` (``mnist``,
      ``fashion_mnist``, ``cifar10``); any other name only scales to [0, 1].

  Example:
    >>> import numpy as np
    >>> t = image_transform("mnist")
    >>> round(float(t(np.zeros((1, 2), np.uint8))[0, 0]), 4)
    -0.4242
  """
  mean, std = (np.asarray(v, np.float32) for v in normalization(name))

  def transform(x):
    shape = (1,) * (x.ndim - 1) + (-1,)
    return ((x.astype(jnp.float32) / 255.0 - mean.reshape(shape))
            / std.reshape(shape))
  return transform


def with_image_inputs(model: models.ModelFns, name: str) -> models.ModelFns:
  """``model`` whose ``apply``, ``loss`` and ``evaluate`` standardize uint8
  images themselves.

  ``load_data`` keeps training images uint8 (4x less memory) and returns a
  standardized float32 test set. A model wrapped here takes either: uint8
  inputs go through ``image_transform(name)`` inside the compiled step,
  float inputs are used as they are (the choice is made from the dtype
  when tracing, so it costs nothing). ``make_model`` wraps the model this
  way whenever the training images are uint8, so ``model.loss`` is the right
  training loss and ``models.make_evaluator(model, fed.x_test, fed.y_test)``
  the right evaluator.

  Args:
    model: any ``models.ModelFns``.
    name: the data set, for its normalization (see ``image_transform``).

  Example:
    >>> import jax, numpy as np
    >>> m = with_image_inputs(models.logistic_regression(4, 2), "mnist")
    >>> p = m.init(jax.random.key(0))
    >>> x8 = np.full((1, 4), 255, np.uint8)
    >>> xf = np.asarray(image_transform("mnist")(x8))
    >>> bool(np.allclose(m.apply(p, x8), m.apply(p, xf)))
    True
  """
  transform = image_transform(name)

  def prepare(x):
    dtype = x.dtype if hasattr(x, "dtype") else jnp.asarray(x).dtype
    return transform(x) if dtype == jnp.uint8 else x

  def apply(params, x, *args, **kwargs):
    return model.apply(params, prepare(x), *args, **kwargs)

  def loss(params, x, *args, **kwargs):
    return model.loss(params, prepare(x), *args, **kwargs)

  def evaluate(params, x, *args, **kwargs):
    return model.evaluate(params, prepare(x), *args, **kwargs)
  return model._replace(apply=apply, loss=loss, evaluate=evaluate)


def _optimizer(name, lr, momentum=0.0):
  if name == "sgd":
    return optax.sgd(lr, momentum=momentum or None)
  return {"adam": optax.adam, "yogi": optax.yogi,
          "adagrad": optax.adagrad}[name](lr)


def make_model(cfg: config_lib.Config,
               fed: data.FederatedData) -> models.ModelFns:
  """The configured model for ``fed``.

  When the training images are uint8 (real image data from ``load_data``),
  the model standardizes uint8 inputs itself (``with_image_inputs``), so
  ``model.loss`` can be given to ``client.local_update`` as it is.
  """
  name = cfg.model.name
  shape = fed.train.x.shape[1:]
  if name == "logistic_regression":
    model = models.logistic_regression(int(np.prod(shape)), fed.num_classes)
  elif name == "mlp":
    model = models.mlp(num_classes=fed.num_classes,
                       input_dim=int(np.prod(shape)))
  else:
    model = models.get_model(name, num_classes=fed.num_classes)
  if fed.train.x.dtype == np.uint8:
    model = with_image_inputs(model, cfg.data.name)
  return model


def make_staleness(r: config_lib.RuleConfig):
  kw = {"polynomial": {"a": r.staleness_a}, "exponential": {"a":
        r.staleness_a}, "hinge": {"a": r.staleness_a, "b": r.staleness_b},
        "constant": {}}[r.staleness]
  if r.max_staleness is not None:
    kw["max_staleness"] = r.max_staleness
  return staleness.get(r.staleness, **kw)


def make_rule_from(cfg: config_lib.Config, fed: data.FederatedData):
  """The configured rule, guarded (quarantine, norm bound, noise) as set."""
  rule = _base_rule(cfg, fed)
  r = cfg.rule
  if r.quarantine or r.max_update_norm is not None:
    rule = robust.guard(
        rule, quarantine=r.quarantine, max_norm=r.max_update_norm,
        noise_multiplier=r.noise_multiplier,
        key=jax.random.fold_in(jax.random.key(cfg.run.seed), 0x5EED))
  return rule


def _base_rule(cfg: config_lib.Config, fed: data.FederatedData):
  r = cfg.rule
  s = make_staleness(r)
  server = _optimizer(r.server_optimizer, r.server_lr, r.server_momentum)
  if r.name == "fedasync":
    return rules.fedasync(r.alpha, s)
  if r.name == "fedbuff":
    return rules.fedbuff(r.buffer_size, server, s)
  if r.name == "afl":
    return rules.afl(lr=r.afl_lr, mean_examples=float(
        fed.train.counts.mean()), staleness_fn=s)
  return rules.fedavg(server)


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
    raise config_lib.ConfigError(
        f"delays.trace_path: cannot read speeds from {p}: {e}") from None
  if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
    raise config_lib.ConfigError(
        f"delays.trace_path: {p} must hold at least one speed, all finite "
        f"and > 0")
  return t


def make_delays(cfg: config_lib.Config,
                fed: data.FederatedData) -> delays.DelayModel:
  """The configured delay model: device speeds, work, jitter, availability.

  Work per task is the client's examples x ``client.epochs``, or
  ``client.steps x client.batch_size`` with fixed local steps.

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
  trace = load_trace(d.trace_path) if d.speeds == "trace" else None
  speeds = delays.device_speeds(d.speeds, n, seed=run.seed, mean=d.mean,
                                sigma=d.sigma, low=d.uniform_low,
                                high=d.uniform_high, shape=d.pareto_shape,
                                trace=trace)
  work = (fed.train.counts * float(c.epochs) if c.steps is None
          else np.full(n, float(c.steps * c.batch_size)))
  avail = None
  if d.availability_period is not None:
    avail = delays.availability(n, period=d.availability_period,
                                on_fraction=d.availability_on_fraction,
                                seed=run.seed + 1)
  return delays.delay_model(speeds, work, jitter=d.jitter,
                            jitter_sigma=d.jitter_sigma,
                            comm_time=d.comm_time, dropout=d.dropout,
                            availability=avail)


def make_schedule(cfg: config_lib.Config, fed: data.FederatedData,
                  rule: rules.ServerRule) -> scheduler.Schedule:
  """The schedule of the run: asynchronous, or synchronous rounds for
  ``rule.name == "fedavg"``."""
  run = cfg.run
  dm = make_delays(cfg, fed)
  weights = fed.train.counts.astype(float)
  if cfg.rule.name == "fedavg":
    rounds = run.num_rounds or max(1, run.num_updates // run.concurrency)
    return scheduler.synchronous(
        dm, num_rounds=rounds, cohort_size=run.concurrency,
        over_selection=run.over_selection, deadline=run.deadline,
        selection=run.selection if run.selection != "uniform" else
        "without_replacement", weights=weights, seed=run.seed)
  return scheduler.asynchronous(
      dm, num_updates=run.num_updates,
      concurrency=None if run.poisson_rate else run.concurrency,
      poisson_rate=run.poisson_rate, selection=run.selection,
      weights=weights, arrivals_per_version=rule.arrivals_per_version,
      max_staleness=rule.max_staleness, seed=run.seed)


def setup(cfg: config_lib.Config) -> Setup:
  """Builds a run's pieces from its configuration."""
  fed = load_data(cfg)
  model = make_model(cfg, fed)
  c = cfg.client
  update = client.local_update(
      model.loss, _optimizer(c.optimizer, c.lr, c.momentum),
      batch_size=c.batch_size, max_examples=fed.train.max_count,
      epochs=c.epochs, steps=c.steps, epoch_decay=c.epoch_decay,
      patience=c.patience, stateful=model.stateful)
  rule = make_rule_from(cfg, fed)
  sched = make_schedule(cfg, fed, rule)
  hparams = tasks.task_hparams(sched, prox_rho=c.prox_rho,
                                   delay_beta=c.delay_beta)
  params = model.init(jax.random.key(cfg.run.seed))
  eval_fn = models.make_evaluator(model, fed.x_test, fed.y_test)
  per_version = (rule.arrivals_per_version if rule.arrivals_per_version
                 else cfg.run.concurrency)
  every = max(1, math.ceil(cfg.run.eval_every / per_version))
  return Setup(fed, model, update, rule, sched, hparams, params, eval_fn,
               every)


class ProgressBar:
  """A one-line progress bar on stderr: updates, simulated time, accuracy,
  ETA."""

  def __init__(self, total, schedule, *, stream=None, width=24):
    self.total, self.schedule = total, schedule
    self.stream = stream or sys.stderr
    self.width = width
    self.t0 = time.perf_counter()
    self.start_done = None

  def __call__(self, info):
    done = info["arrivals_done"]
    if self.start_done is None:
      self.start_done = done - 1 if done else 0
      self.t_first = time.perf_counter()
    frac = done / max(self.total, 1)
    el = time.perf_counter() - self.t0
    rate_done = done - self.start_done
    eta = ((time.perf_counter() - self.t_first) / max(rate_done, 1)
           * (self.total - done)) if rate_done > 0 else float("nan")
    sim_t = (float(self.schedule.arrival_time[
        self.schedule.arrival_task[done - 1]]) if done else 0.0)
    acc = (info.get("last_eval") or {}).get("accuracy", float("nan"))
    bar = "#" * int(self.width * frac) + "-" * (self.width - int(
        self.width * frac))
    self.stream.write(f"\r[{bar}] {done}/{self.total} updates | sim time "
                      f"{sim_t:9.1f} | test acc {acc:6.3f} | {el:6.1f} s "
                      f"elapsed, ETA {eta:6.1f} s ")
    self.stream.flush()
    if done >= self.total:
      self.stream.write("\n")


def _history_rows(s: Setup, out: types.RunResult, param_bytes: int):
  sched = s.schedule
  arr = out.arrivals
  stale_cum = np.cumsum(arr["staleness"])
  rows = []
  for e in out.evals:
    a = e["arrival"]
    t = e["time"]
    sent = int(np.sum(sched.dispatch_time <= t)) if a >= 0 else 0
    received = a + 1
    rows.append({
        "version": e["version"], "simulated_time": t,
        "client_updates": received,
        "test_loss": e["loss"], "test_accuracy": e["accuracy"],
        "mean_staleness": float(stale_cum[a] / (a + 1)) if a >= 0 else 0.0,
        "bytes_to_clients": sent * param_bytes,
        "bytes_from_clients": received * param_bytes})
  return rows


def write_outputs(workdir: Path, cfg: config_lib.Config, s: Setup,
                  out: types.RunResult, *, wall_time: float) -> dict:
  """Writes the history, logs, summary and plots of a finished run."""
  param_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(s.params))
  rows = _history_rows(s, out, param_bytes)
  results.write_csv(workdir / "history.csv", rows)
  arr = out.arrivals
  results.write_columns(workdir / "arrivals.csv", {
      "client": arr["client"], "time": arr["time"],
      "staleness": arr["staleness"],
      "status": np.where(arr["applied"], "applied", "dropped"),
      "version": arr["version"]})
  results.write_columns(workdir / "participation.csv", {
      "client": np.arange(s.fed.train.num_clients),
      "applied_updates": out.participation,
      "examples": s.fed.train.counts})
  final = rows[-1]
  summary = {
      "final_test_accuracy": final["test_accuracy"],
      "final_test_loss": final["test_loss"],
      "versions": int(out.state.version),
      "client_updates": int(len(arr["client"])),
      "stopped_early": bool(out.stats.get("stopped_early", False)),
      "dropped_updates": int((~arr["applied"]).sum()),
      "quarantined_updates": int(getattr(out.state, "quarantined", 0)),
      "clipped_updates": int(getattr(out.state, "clipped", 0)),
      "simulated_time": float(arr["time"][-1]) if len(arr["time"]) else 0.0,
      "realised_concurrency": float(s.schedule.stats["realised_concurrency"]),
      "mean_staleness": float(arr["staleness"].mean()),
      "max_staleness": int(arr["staleness"].max()),
      "wall_time_s": wall_time,
      "executor": {k: v for k, v in out.stats.items()},
      "data": s.fed.name, "num_clients": s.fed.train.num_clients,
      "backend": jax.default_backend(),
  }
  results.write_json(workdir / "summary.json", summary)
  try:
    plot_run(workdir, s, out, rows)
  except ImportError:
    pass
  return summary


def plot_run(workdir: Path, s: Setup, out: types.RunResult, rows):
  """Writes the PNG plots (needs matplotlib: the ``plots`` extra)."""
  from matplotlib.figure import Figure
  v = [r["version"] for r in rows]
  t = [r["simulated_time"] for r in rows]
  for metric in ("test_accuracy", "test_loss"):
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    y = [r[metric] for r in rows]
    ax1.plot(v, y, marker=".")
    ax1.set_xlabel("server version")
    ax2.plot(t, y, marker=".")
    ax2.set_xlabel("simulated time (s)")
    for ax in (ax1, ax2):
      ax.set_ylabel(metric.replace("_", " "))
      ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(workdir / f"{metric}.png", dpi=100)
  fig = Figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  st = out.arrivals["staleness"]
  ax1.hist(st, bins=min(50, int(st.max()) + 1))
  ax1.set_xlabel("staleness")
  ax1.set_ylabel("updates")
  ax2.bar(np.arange(len(out.participation)), out.participation)
  ax2.set_xlabel("client")
  ax2.set_ylabel("applied updates")
  fig.tight_layout()
  fig.savefig(workdir / "staleness_participation.png", dpi=100)
  ds = s.fed.train
  if np.issubdtype(ds.y.dtype, np.integer):
    st_ = partition.stats(ds.y, [np.arange(o, o + n) for o, n in
                                 zip(ds.offsets, ds.counts)],
                          num_classes=s.fed.num_classes)
    partition.plot(st_, workdir / "clients.png")


def _checkpoint_writer(path: Path, flag: dict, every_s: float):
  last = [time.perf_counter()]

  def write(ck: executor.Checkpoint):
    now = time.perf_counter()
    if flag.get("signal") or now - last[0] >= every_s:
      results.atomic_write_bytes(path, ck.to_bytes())
      last[0] = now
    return bool(flag.get("signal"))
  return write


def train_and_evaluate(cfg: Optional[config_lib.Config], workdir, *,
                       resume: bool = False, show_progress: bool = True
                       ) -> dict:
  """Runs one configuration and writes its outputs into ``workdir``.

  Args:
    cfg: the configuration (validated).
    workdir: output folder.
    resume: continue from ``workdir/checkpoint.msgpack`` (the config saved
      there is used; it must exist).
    show_progress: draw the progress bar on stderr.

  Checkpoints are written every ``cfg.run.checkpoint_every_s`` seconds (and
  always when a signal stops the run).

  Returns:
    The summary dict (also ``summary.json``).
  """
  workdir = Path(workdir)
  ck_path = workdir / CHECKPOINT
  resume_from = None
  if resume:
    if not ck_path.exists():
      raise ValueError(f"--resume: no checkpoint at {ck_path}")
    cfg = config_lib.load(workdir / "config.json")
    try:
      resume_from = executor.Checkpoint.from_bytes(ck_path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any decoding failure
      raise ValueError(f"--resume: the checkpoint {ck_path} is unreadable "
                       f"({type(e).__name__}: {e}); it was not written by "
                       f"this program or is damaged") from None
  config_lib.validate(cfg)
  workdir.mkdir(parents=True, exist_ok=True)
  results.write_json(workdir / "config.json", config_lib.to_dict(cfg))
  t0 = time.perf_counter()
  s = setup(cfg)
  flag = {}
  handlers = {}

  def on_signal(signum, frame):
    flag["signal"] = signal.Signals(signum).name

  for sig in (signal.SIGINT, signal.SIGTERM):
    try:
      handlers[sig] = signal.signal(sig, on_signal)
    except ValueError:  # not the main thread
      pass
  bar = ProgressBar(s.schedule.num_arrivals, s.schedule) if show_progress \
      else None
  batching = None if cfg.run.batching == "auto" else cfg.run.batching
  try:
    out = executor.simulate(
        s.rule, s.update, s.params, s.fed.train, s.schedule,
        key=jax.random.key(cfg.run.seed), hparams=s.hparams,
        width=cfg.run.width, batching=batching,
        chunk_steps=cfg.run.chunk_steps, eval_fn=s.eval_fn,
        eval_every=s.eval_every_versions, progress=bar,
        checkpoint=_checkpoint_writer(ck_path, flag,
                                      cfg.run.checkpoint_every_s),
        resume=resume_from)
  finally:
    for sig, h in handlers.items():
      signal.signal(sig, h)
  summary = write_outputs(workdir, cfg, s, out,
                          wall_time=time.perf_counter() - t0)
  if out.stats["stopped_early"]:
    raise Interrupted(f"stopped by {flag.get('signal')} after "
                      f"{summary['client_updates']} of "
                      f"{s.schedule.num_arrivals} updates; history so far "
                      f"and checkpoint saved in {workdir}")
  from flax import serialization
  results.atomic_write_bytes(workdir / "final_params.msgpack",
                             serialization.to_bytes(out.state.params))
  if ck_path.exists():
    ck_path.unlink()
  return summary


SWEEPABLE = {"rule.alpha": "alpha", "rule.staleness_a": "staleness_a",
             "rule.staleness_b": "staleness_b", "rule.server_lr": "server_lr",
             "rule.afl_lr": "afl_lr", "client.lr": None}


def parse_grid(items) -> dict:
  """Parses ``section.field=v1,v2,...`` strings into ``{field: [values]}``.

  Only fields that can vary inside one compiled program are accepted.
  """
  grid = {}
  for item in items or ():
    if "=" not in item:
      raise ValueError(f"a grid must look like section.field=v1,v2, got "
                       f"{item!r}")
    key, values = item.split("=", 1)
    key = key.strip()
    if key not in SWEEPABLE:
      raise ValueError(f"{key} cannot vary inside one compiled sweep; "
                       f"sweepable fields are {sorted(SWEEPABLE)} (and "
                       f"seeds via --seeds)")
    try:
      vals = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
      raise ValueError(f"grid values of {key} must be numbers, got "
                       f"{values!r}") from None
    if not vals:
      raise ValueError(f"grid {key} has no values")
    grid[key] = vals
  return grid


def sweep_and_evaluate(cfg: config_lib.Config, grid: dict, seeds, workdir,
                       *, show_progress: bool = True) -> list:
  """Runs the full grid x seeds as one compiled program (``sweep.sweep``).

  Every member gets a subfolder ``m<index>`` with its ``history.csv``,
  ``arrivals.csv`` and ``summary.json``; ``sweep.csv`` lists the members'
  settings and final metrics.

  Returns:
    One row dict per member (as in ``sweep.csv``).
  """
  import dataclasses
  import itertools
  import jax.numpy as jnp
  from fedasync_jax.sim import sweep as sweep_lib
  config_lib.validate(cfg)
  seeds = [int(s) for s in (seeds or [cfg.run.seed])]
  names = list(grid)
  combos = list(itertools.product(*[grid[n] for n in names])) or [()]
  members = [(dict(zip(names, c)), s) for s in seeds for c in combos]
  # Validate every member's values through the config before any work.
  for values, seed in members:
    d = config_lib.to_dict(cfg)
    for k, v in values.items():
      sec, f = k.split(".")
      d[sec][f] = v
    d["run"]["seed"] = seed
    config_lib.from_dict(d)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  results.write_json(workdir / "config.json", {
      "base": config_lib.to_dict(cfg), "grid": grid, "seeds": seeds})
  t0 = time.perf_counter()
  base = setup(cfg)
  per_seed = {}
  for seed in seeds:
    c = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed))
    sched = make_schedule(c, base.fed, base.rule)
    per_seed[seed] = (sched, tasks.task_hparams(
        sched, prox_rho=cfg.client.prox_rho, delay_beta=cfg.client.delay_beta),
        base.model.init(jax.random.key(seed)))
  rule_keys = [n for n in names if SWEEPABLE[n] is not None]
  rule_hp = {SWEEPABLE[n]: jnp.asarray([v[n] for v, _ in members],
                                       jnp.float32) for n in rule_keys}
  if not rule_hp:
    rule_hp = {"_": jnp.zeros(len(members))}

  def make_rule(hp):
    r = dataclasses.replace(cfg.rule, **{k: v for k, v in hp.items()
                                         if k != "_"})
    return make_rule_from(dataclasses.replace(cfg, rule=r), base.fed)
  lr_scale = [v.get("client.lr", cfg.client.lr) / cfg.client.lr
              for v, _ in members]
  params = jax.tree.map(lambda *xs: jnp.stack(xs),
                        *[per_seed[s][2] for _, s in members])
  total = sum(per_seed[s][0].num_arrivals for _, s in members)

  def progress(info):
    if show_progress:
      sys.stderr.write(f"\rsweep: {info['arrivals_done']}/{total} client "
                       f"updates over {len(members)} members, "
                       f"{info['wall_time_s']:.1f} s")
      sys.stderr.flush()
  batching = None if cfg.run.batching == "auto" else cfg.run.batching
  outs = sweep_lib.sweep(
      make_rule, rule_hp, base.update, params, base.fed.train,
      [per_seed[s][0] for _, s in members],
      keys=jnp.stack([jax.random.key(s) for _, s in members]),
      hparams=[per_seed[s][1] for _, s in members], client_lr_scale=lr_scale,
      width=cfg.run.width, batching=batching,
      chunk_steps=cfg.run.chunk_steps, eval_fn=base.eval_fn,
      eval_every=base.eval_every_versions, member_params=True,
      progress=progress)
  if show_progress:
    sys.stderr.write("\n")
  wall = time.perf_counter() - t0
  rows = []
  for i, ((values, seed), out) in enumerate(zip(members, outs)):
    s_i = base._replace(schedule=per_seed[seed][0],
                        params=per_seed[seed][2])
    summary = write_outputs(workdir / f"m{i}", cfg, s_i, out,
                            wall_time=wall)
    rows.append({"member": i, "seed": seed, **values,
                 "final_test_accuracy": summary["final_test_accuracy"],
                 "final_test_loss": summary["final_test_loss"],
                 "versions": summary["versions"],
                 "mean_staleness": summary["mean_staleness"]})
  results.write_csv(workdir / "sweep.csv", rows)
  results.write_json(workdir / "summary.json", {
      "members": len(members), "wall_time_s": wall,
      "client_updates": total, "updates_per_s": total / wall})
  return rows
