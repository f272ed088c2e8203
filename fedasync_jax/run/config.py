"""Run configuration: small dataclasses, loaded from JSON or YAML.

A configuration has six sections (``data``, ``model``, ``client``,
``rule``, ``delays``, ``run``). Files give any subset; command-line
overrides are ``section.field=value`` strings. Unknown sections or fields,
wrong types and out-of-range values raise ``ConfigError`` (a ``ValueError``)
naming the field, the value and what is allowed, before anything is
computed.

Example:
  >>> cfg = from_dict({"rule": {"name": "fedbuff", "buffer_size": 5}})
  >>> cfg = apply_overrides(cfg, ["rule.alpha=0.9", "run.num_updates=200"])
  >>> cfg.rule.name, cfg.rule.alpha, cfg.run.num_updates
  ('fedbuff', 0.9, 200)
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, Optional

DATASETS = ("synthetic", "mnist", "fashion_mnist", "cifar10", "emnist",
            "npz")
PARTITIONS = ("iid", "dirichlet", "shards", "power_law")
MODELS = ("logistic_regression", "mlp", "mnist_cnn", "resnet20")
OPTIMIZERS = ("sgd", "adam", "yogi", "adagrad")
RULES = ("fedasync", "fedbuff", "fedavg", "afl")
STALENESS = ("constant", "polynomial", "hinge", "exponential")
SPEEDS = ("constant", "uniform", "exponential", "lognormal", "pareto",
          "trace")
JITTERS = ("none", "exponential", "lognormal")
SELECTIONS = ("uniform", "without_replacement", "weighted")
BATCHINGS = ("auto", "vmap", "map", "map_batched")


class ConfigError(ValueError):
  """A configuration value is missing, unknown, of the wrong type or out of
  range."""


@dataclasses.dataclass
class DataConfig:
  name: str = "synthetic"
  path: Optional[str] = None          # .npz file (name="npz", mnist, ...)
  data_dir: Optional[str] = None      # tfds data_dir (else $TFDS_DATA_DIR)
  download: bool = False
  num_clients: int = 100
  partition: str = "dirichlet"
  alpha: float = 0.5                  # Dirichlet concentration
  synthetic_alpha: float = 1.0
  synthetic_beta: float = 1.0
  seed: int = 0


@dataclasses.dataclass
class ModelConfig:
  name: str = "logistic_regression"


@dataclasses.dataclass
class ClientConfig:
  optimizer: str = "sgd"
  lr: float = 0.01
  momentum: float = 0.0
  batch_size: int = 10
  epochs: int = 1
  steps: Optional[int] = None         # fixed local steps instead of epochs
  prox_rho: float = 0.0               # FedProx / FedAsync proximal weight
  delay_beta: Optional[float] = None  # AFL delay-aware rate
  epoch_decay: bool = False           # AFL: lr / sqrt(epoch + 1)
  patience: Optional[int] = None      # early stopping (epochs)


@dataclasses.dataclass
class RuleConfig:
  name: str = "fedasync"
  alpha: float = 0.6                  # FedAsync mixing weight
  staleness: str = "polynomial"
  staleness_a: float = 0.5
  staleness_b: float = 4.0
  max_staleness: Optional[int] = None
  buffer_size: int = 10               # FedBuff K
  server_optimizer: str = "sgd"       # FedBuff / FedAvg (FedOpt)
  server_lr: float = 1.0
  server_momentum: float = 0.0
  afl_lr: float = 1.0
  quarantine: bool = True             # do not apply NaN/Inf updates
  max_update_norm: Optional[float] = None   # norm bound (robustness, DP)
  noise_multiplier: Optional[float] = None  # client-level DP noise z


@dataclasses.dataclass
class DelayConfig:
  """How long a client task takes (see ``fedasync_jax.sim.delays``).

  A task of client ``c`` takes ``speed[c] * work[c] * jitter + comm_time``
  simulated seconds; ``work`` is the client's examples x local epochs (or
  local steps x batch size). ``speed`` is drawn once per client from
  ``speeds``; ``jitter`` is drawn per task (mean 1).
  """
  speeds: str = "lognormal"           # device-speed distribution
  sigma: float = 1.0                  # lognormal speeds: log std
  mean: float = 1.0                   # median (lognormal) / mean speed
  pareto_shape: float = 2.0           # pareto speeds: Lomax tail index
  uniform_low: float = 0.5            # uniform speeds on [low, high]
  uniform_high: float = 1.5
  trace_path: Optional[str] = None    # speeds=trace: .npy/.csv/.txt file
  jitter: str = "exponential"         # per-task factor
  jitter_sigma: float = 0.5           # lognormal jitter: log std
  comm_time: float = 0.0              # added to every task
  dropout: float = 0.0                # probability an update never arrives
  availability_period: Optional[float] = None  # on/off cycle length
  availability_on_fraction: float = 1.0        # fraction of it available


@dataclasses.dataclass
class RunConfig:
  concurrency: int = 10               # clients in flight / FedAvg cohort
  poisson_rate: Optional[float] = None
  selection: str = "uniform"
  num_updates: int = 1000             # asynchronous: client updates
  num_rounds: Optional[int] = None    # FedAvg rounds (default from updates)
  over_selection: int = 0
  deadline: Optional[float] = None
  eval_every: int = 100               # in client updates
  seed: int = 0
  chunk_steps: int = 64
  batching: str = "auto"
  width: Optional[int] = None
  checkpoint_every_s: float = 30.0    # 0: after every chunk


@dataclasses.dataclass
class Config:
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  client: ClientConfig = dataclasses.field(default_factory=ClientConfig)
  rule: RuleConfig = dataclasses.field(default_factory=RuleConfig)
  delays: DelayConfig = dataclasses.field(default_factory=DelayConfig)
  run: RunConfig = dataclasses.field(default_factory=RunConfig)


CHOICES = {
    ("data", "name"): DATASETS, ("data", "partition"): PARTITIONS,
    ("model", "name"): MODELS, ("client", "optimizer"): OPTIMIZERS,
    ("rule", "name"): RULES, ("rule", "staleness"): STALENESS,
    ("rule", "server_optimizer"): OPTIMIZERS, ("delays", "speeds"): SPEEDS,
    ("delays", "jitter"): JITTERS, ("run", "selection"): SELECTIONS,
    ("run", "batching"): BATCHINGS,
}
# (low, high, low_open, high_open); None means unbounded.
RANGES = {
    ("data", "num_clients"): (1, None, False, False),
    ("data", "alpha"): (0, None, True, False),
    ("data", "synthetic_alpha"): (0, None, False, False),
    ("data", "synthetic_beta"): (0, None, False, False),
    ("client", "lr"): (0, None, True, False),
    ("client", "momentum"): (0, 1, False, True),
    ("client", "batch_size"): (1, None, False, False),
    ("client", "epochs"): (1, None, False, False),
    ("client", "steps"): (1, None, False, False),
    ("client", "prox_rho"): (0, None, False, False),
    ("client", "delay_beta"): (0, None, False, False),
    ("client", "patience"): (1, None, False, False),
    ("rule", "alpha"): (0, 1, False, False),
    ("rule", "staleness_a"): (0, None, False, False),
    ("rule", "staleness_b"): (0, None, False, False),
    ("rule", "max_staleness"): (0, None, False, False),
    ("rule", "buffer_size"): (1, None, False, False),
    ("rule", "server_lr"): (0, None, True, False),
    ("rule", "server_momentum"): (0, 1, False, True),
    ("rule", "afl_lr"): (0, None, False, False),
    ("rule", "max_update_norm"): (0, None, True, False),
    ("rule", "noise_multiplier"): (0, None, False, False),
    ("delays", "sigma"): (0, None, False, False),
    ("delays", "mean"): (0, None, True, False),
    ("delays", "pareto_shape"): (0, None, True, False),
    ("delays", "uniform_low"): (0, None, True, False),
    ("delays", "uniform_high"): (0, None, True, False),
    ("delays", "jitter_sigma"): (0, None, False, False),
    ("delays", "availability_period"): (0, None, True, False),
    ("delays", "availability_on_fraction"): (0, 1, True, False),
    ("delays", "comm_time"): (0, None, False, False),
    ("delays", "dropout"): (0, 1, False, True),
    ("run", "concurrency"): (1, None, False, False),
    ("run", "poisson_rate"): (0, None, True, False),
    ("run", "num_updates"): (1, None, False, False),
    ("run", "num_rounds"): (1, None, False, False),
    ("run", "over_selection"): (0, None, False, False),
    ("run", "deadline"): (0, None, True, False),
    ("run", "eval_every"): (1, None, False, False),
    ("run", "chunk_steps"): (1, None, False, False),
    ("run", "width"): (1, None, False, False),
    ("run", "checkpoint_every_s"): (0, None, False, False),
}


# What each field means, in a few words (``to_yaml`` and ``--help``).
MEANING = {
    ("data", "name"): "data set",
    ("data", "path"): ".npz file with x_train, y_train, x_test, y_test",
    ("data", "data_dir"): "tensorflow-datasets folder (else $TFDS_DATA_DIR)",
    ("data", "download"): "let tfds download a missing data set",
    ("data", "num_clients"): "population size",
    ("data", "partition"): "how examples are split over clients",
    ("data", "alpha"): "Dirichlet concentration (partition=dirichlet)",
    ("data", "synthetic_alpha"): "Synthetic(alpha, beta): model skew",
    ("data", "synthetic_beta"): "Synthetic(alpha, beta): data skew",
    ("data", "seed"): "seed of the partition / synthetic data",
    ("model", "name"): "model",
    ("client", "optimizer"): "local optimizer (fresh state per task)",
    ("client", "lr"): "local learning rate",
    ("client", "momentum"): "sgd momentum",
    ("client", "batch_size"): "examples per local step",
    ("client", "epochs"): "local epochs over the client's data",
    ("client", "steps"): "fixed local steps instead of epochs",
    ("client", "prox_rho"): "proximal weight (FedProx / FedAsync)",
    ("client", "delay_beta"): "AFL delay-aware rate lr / (1 + beta delay)",
    ("client", "epoch_decay"): "AFL: rate of epoch e divided by sqrt(e+1)",
    ("client", "patience"): "early stopping after this many epochs",
    ("rule", "name"): "server rule",
    ("rule", "alpha"): "FedAsync mixing weight",
    ("rule", "staleness"): "staleness function s(tau)",
    ("rule", "staleness_a"): "a of polynomial / hinge / exponential",
    ("rule", "staleness_b"): "b of hinge",
    ("rule", "max_staleness"): "drop updates staler than this",
    ("rule", "buffer_size"): "FedBuff K (updates per server step)",
    ("rule", "server_optimizer"): "FedBuff / FedAvg server optimizer",
    ("rule", "server_lr"): "server learning rate",
    ("rule", "server_momentum"): "server sgd momentum",
    ("rule", "afl_lr"): "AFL mixing rate",
    ("rule", "quarantine"): "do not apply NaN/Inf updates",
    ("rule", "max_update_norm"): "clip updates to this norm",
    ("rule", "noise_multiplier"): "client-level DP noise z (needs the clip)",
    ("delays", "speeds"): "device speeds (seconds per unit of work)",
    ("delays", "sigma"): "lognormal speeds: log std",
    ("delays", "mean"): "speed scale: median (lognormal), mean (others)",
    ("delays", "pareto_shape"): "pareto speeds: tail index (smaller: heavier)",
    ("delays", "uniform_low"): "uniform speeds: low",
    ("delays", "uniform_high"): "uniform speeds: high",
    ("delays", "trace_path"): "speeds=trace: .npy/.csv/.txt of speeds",
    ("delays", "jitter"): "per-task duration factor (mean 1)",
    ("delays", "jitter_sigma"): "lognormal jitter: log std",
    ("delays", "comm_time"): "seconds added to every task",
    ("delays", "dropout"): "probability an update never arrives",
    ("delays", "availability_period"): "on/off cycle length (null: always "
                                       "on)",
    ("delays", "availability_on_fraction"): "fraction of a cycle a client is "
                                            "available",
    ("run", "concurrency"): "clients in flight / FedAvg cohort size",
    ("run", "poisson_rate"): "open loop: dispatches per second instead",
    ("run", "selection"): "how idle clients are drawn",
    ("run", "num_updates"): "client updates (asynchronous rules)",
    ("run", "num_rounds"): "FedAvg rounds (default updates / cohort)",
    ("run", "over_selection"): "FedAvg: extra clients per round",
    ("run", "deadline"): "FedAvg: round deadline in seconds",
    ("run", "eval_every"): "evaluate every this many client updates",
    ("run", "seed"): "seed of schedule, init and training",
    ("run", "chunk_steps"): "executor steps per compiled chunk",
    ("run", "batching"): "how a wave of clients is batched",
    ("run", "width"): "clients per wave (default: automatic)",
    ("run", "checkpoint_every_s"): "seconds between checkpoints",
}


def _range_text(lo, hi, lo_open, hi_open):
  left = "(" if lo_open else "["
  right = ")" if hi_open else "]"
  lo_s = "-inf" if lo is None else repr(lo)
  hi_s = "inf" if hi is None else repr(hi)
  return f"{left}{lo_s}, {hi_s}{right}"


def _field_type(cls, name):
  hints = typing.get_type_hints(cls)
  t = hints[name]
  optional = False
  if typing.get_origin(t) is typing.Union:
    args = [a for a in typing.get_args(t) if a is not type(None)]
    optional = True
    t = args[0]
  return t, optional


def _coerce(section, name, value, cls):
  """Converts ``value`` (from a file or a string override) to the field's
  type, or raises ``ConfigError``."""
  t, optional = _field_type(cls, name)
  field = f"{section}.{name}"
  if value is None or (isinstance(value, str) and value.lower() in (
      "none", "null") and optional):
    if optional:
      return None
    raise ConfigError(f"{field} must not be empty")
  if t is bool:
    if isinstance(value, bool):
      return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
      return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no"):
      return False
    raise ConfigError(f"{field} must be true or false, got {value!r}")
  if t is int:
    if isinstance(value, bool):
      raise ConfigError(f"{field} must be an integer, got {value!r}")
    try:
      f = float(value)
    except (TypeError, ValueError):
      raise ConfigError(f"{field} must be an integer, got {value!r}") \
          from None
    if not math.isfinite(f) or f != int(f):
      raise ConfigError(f"{field} must be an integer, got {value!r}")
    return int(f)
  if t is float:
    if isinstance(value, bool):
      raise ConfigError(f"{field} must be a number, got {value!r}")
    try:
      f = float(value)
    except (TypeError, ValueError):
      raise ConfigError(f"{field} must be a number, got {value!r}") from None
    if not math.isfinite(f):
      raise ConfigError(f"{field} must be finite, got {value!r}")
    return f
  if t is str:
    if not isinstance(value, str):
      raise ConfigError(f"{field} must be a string, got {value!r}")
    return value
  raise ConfigError(f"{field}: unsupported type {t}")  # pragma: no cover


def validate(cfg: Config) -> Config:
  """Checks every field's choices and ranges and the cross-field rules.

  Raises:
    ConfigError: naming the field, the value and what is allowed.
  """
  for (section, name), allowed in CHOICES.items():
    v = getattr(getattr(cfg, section), name)
    if v not in allowed:
      raise ConfigError(f"{section}.{name} must be one of {list(allowed)}, "
                        f"got {v!r}")
  for (section, name), (lo, hi, lo_open, hi_open) in RANGES.items():
    v = getattr(getattr(cfg, section), name)
    if v is None:
      continue
    bad = ((lo is not None and (v < lo or (lo_open and v == lo))) or
           (hi is not None and (v > hi or (hi_open and v == hi))))
    if bad:
      raise ConfigError(f"{section}.{name} must be in "
                        f"{_range_text(lo, hi, lo_open, hi_open)}, got {v!r}")
  r, run, d, dl = cfg.rule, cfg.run, cfg.data, cfg.delays
  if dl.uniform_high < dl.uniform_low:
    raise ConfigError(f"delays.uniform_high must be >= delays.uniform_low "
                      f"({dl.uniform_low}), got {dl.uniform_high}")
  if dl.speeds == "trace" and not dl.trace_path:
    raise ConfigError("delays.trace_path must name a file of per-client "
                      "speeds (.npy, .csv or .txt) when delays.speeds is "
                      "'trace'")
  if dl.trace_path and dl.speeds != "trace":
    raise ConfigError(f"delays.trace_path is only used with delays.speeds "
                      f"'trace', got delays.speeds {dl.speeds!r}")
  if dl.availability_on_fraction < 1 and dl.availability_period is None:
    raise ConfigError("delays.availability_on_fraction < 1 needs "
                      "delays.availability_period (the length of one on/off "
                      "cycle, in simulated seconds)")
  if r.noise_multiplier is not None and r.max_update_norm is None:
    raise ConfigError("rule.noise_multiplier needs rule.max_update_norm (the "
                      "clip norm C of the Gaussian noise z*C)")
  if d.name == "npz" and not d.path:
    raise ConfigError("data.path must name an .npz file when data.name is "
                      "'npz'")
  if r.name != "fedavg" and run.poisson_rate is None and \
      run.concurrency > d.num_clients:
    raise ConfigError(f"run.concurrency must be <= data.num_clients "
                      f"({d.num_clients}), got {run.concurrency}")
  if r.name == "fedavg":
    if run.poisson_rate is not None:
      raise ConfigError("run.poisson_rate is for asynchronous rules; fedavg "
                        "uses run.concurrency as its cohort size")
    if run.concurrency + run.over_selection > d.num_clients:
      raise ConfigError(
          f"run.concurrency + run.over_selection must be <= data.num_clients"
          f" ({d.num_clients}), got {run.concurrency + run.over_selection}")
  if d.name in ("mnist", "fashion_mnist", "emnist") and cfg.model.name == \
      "resnet20":
    raise ConfigError("model.name 'resnet20' needs 3-channel 32x32 images "
                      "(cifar10), got data.name " + repr(d.name))
  if d.name == "cifar10" and cfg.model.name in ("mnist_cnn",):
    raise ConfigError("model.name 'mnist_cnn' needs 28x28 grey images, got "
                      "data.name 'cifar10'")
  return cfg


def from_dict(d: Optional[dict]) -> Config:
  """Builds and validates a ``Config`` from nested dicts (a parsed file)."""
  d = d or {}
  if not isinstance(d, dict):
    raise ConfigError(f"a configuration must be a mapping of sections, got "
                      f"{type(d).__name__}")
  sections = {f.name: f.type for f in dataclasses.fields(Config)}
  kwargs = {}
  for section, values in d.items():
    if section not in sections:
      raise ConfigError(f"unknown section {section!r}; sections are "
                        f"{sorted(sections)}")
    cls = typing.get_type_hints(Config)[section]
    if values is None:
      values = {}
    if not isinstance(values, dict):
      raise ConfigError(f"section {section!r} must be a mapping, got "
                        f"{values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {}
    for name, v in values.items():
      if name not in names:
        raise ConfigError(f"unknown field {section}.{name}; fields are "
                          f"{sorted(names)}")
      fields[name] = _coerce(section, name, v, cls)
    kwargs[section] = cls(**fields)
  return validate(Config(**kwargs))


def to_dict(cfg: Config) -> dict:
  """The configuration as nested dicts (for ``config.json``)."""
  return dataclasses.asdict(cfg)


def load(path) -> Config:
  """Loads a JSON (``.json``) or YAML (``.yaml``/``.yml``) file.

  Raises:
    ConfigError: unreadable file, bad syntax, or bad values (the message
      names the file).
  """
  p = Path(path)
  try:
    text = p.read_text()
  except OSError as e:
    raise ConfigError(f"cannot read config file {p}: {e}") from None
  try:
    if p.suffix in (".yaml", ".yml"):
      import yaml
      raw = yaml.safe_load(text)
    else:
      raw = json.loads(text)
  except Exception as e:  # noqa: BLE001 - any parse error becomes one message
    raise ConfigError(f"cannot parse config file {p}: {e}") from None
  try:
    return from_dict(raw)
  except ConfigError as e:
    raise ConfigError(f"{p}: {e}") from None


def allowed(section: str, name: str) -> str:
  """What a field accepts, in words (for help texts and error messages).

  Example:
    >>> allowed("rule", "alpha")
    'number in [0, 1]'
    >>> allowed("delays", "jitter")
    'one of none, exponential, lognormal'
  """
  cls = typing.get_type_hints(Config)[section]
  t, optional = _field_type(cls, name)
  if (section, name) in CHOICES:
    text = "one of " + ", ".join(CHOICES[section, name])
  else:
    text = {bool: "true or false", int: "integer", float: "number",
            str: "string"}[t]
    if (section, name) in RANGES:
      text += " in " + _range_text(*RANGES[section, name])
  return text + (" or null" if optional else "")


def _yaml_scalar(v) -> str:
  if v is None:
    return "null"
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, str):
    return json.dumps(v)
  return repr(v)


def to_yaml(cfg: Optional[Config] = None) -> str:
  """A YAML file of every field, its value and what it accepts.

  ``fedasync-jax config > my.yaml`` writes the defaults this way, as a
  starting point; ``load`` reads the text back to the same ``Config``.

  Example:
    >>> text = to_yaml()
    >>> print(text.splitlines()[5])
      num_clients: 100               # population size; integer in [1, inf]
    >>> from_dict(__import__("yaml").safe_load(text)) == Config()
    True
  """
  cfg = cfg if cfg is not None else Config()
  lines = []
  for sec in dataclasses.fields(Config):
    lines.append(f"{sec.name}:")
    values = getattr(cfg, sec.name)
    for f in dataclasses.fields(values):
      item = f"  {f.name}: {_yaml_scalar(getattr(values, f.name))}"
      meaning = MEANING.get((sec.name, f.name))
      note = f"{meaning}; " if meaning else ""
      lines.append(f"{item:<32} # {note}{allowed(sec.name, f.name)}")
  return "\n".join(lines) + "\n"


def apply_overrides(cfg: Config, overrides) -> Config:
  """Applies ``section.field=value`` strings and validates the result."""
  d = to_dict(cfg)
  for item in overrides or ():
    if "=" not in item:
      raise ConfigError(f"an override must look like section.field=value, "
                        f"got {item!r}")
    key, value = item.split("=", 1)
    if "." not in key:
      raise ConfigError(f"an override must look like section.field=value, "
                        f"got {item!r}")
    section, name = key.strip().split(".", 1)
    if section not in d:
      raise ConfigError(f"unknown section {section!r} in override {item!r}; "
                        f"sections are {sorted(d)}")
    if name not in d[section]:
      raise ConfigError(f"unknown field {section}.{name} in override "
                        f"{item!r}; fields are {sorted(d[section])}")
    d[section][name] = value.strip()
  return from_dict(d)
