"""What a configuration holds, derived from the registries.

``SECTIONS`` is the one table of configuration fields. A field is one of:

* ``Choice``: names a member of a family (``rule.staleness`` names a
  ``core.staleness.STALENESS`` member); the allowed names are the
  registry's, read when checked, so a member registered later is allowed;
* ``Bound``: holds a parameter of the chosen member (``rule.staleness_a``
  is the ``a`` of the staleness function); its default, range, meaning and
  whether a sweep may vary it come from the member's ``Param``;
* ``Extra``: a mapping for the chosen member's parameters that have no
  field of their own (``rule.staleness_params``: ``{tau_c: 4, ...}`` for
  ``koloskova``; ``rule.params`` for a rule's);
* ``Own``: a setting of the configuration only (``run.seed``,
  ``data.num_clients``), with its ``Param`` here or in the module it
  configures (``robust.GUARD_PARAMS``, ``delays.DELAY_PARAMS``...).

A newcomer's staleness function or rule needs nothing here: its parameters
are read from the fields bound to their names, else from the ``Extra``
mapping, else their defaults. ``member_values`` does that;
``run.members`` builds the members (and the configured rule) from it.

Example:
  >>> import types
  >>> r = types.SimpleNamespace(staleness="hinge", staleness_a=10.0,
  ...                           staleness_b=4.0, staleness_params={})
  >>> member_values(r, "rule", "staleness")[1]
  {'a': 10.0, 'b': 4.0}
  >>> describe(param("rule", "staleness_params"))
  'mapping of parameter names to values'
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from fedasync_jax import models
from fedasync_jax.core import checks, optimizers, robust, rules, staleness
from fedasync_jax.core.registry import REQUIRED, Param, Registry
from fedasync_jax.data import datasets, partition
from fedasync_jax.sim import delays, scheduler, strategies, traces


class ConfigError(ValueError):
  """A configuration value is missing, unknown, of the wrong type or out of
  range."""


# ---------------------------------------------------------------------------
# The families the configuration names, read from their registries.


def names(family) -> tuple:
  """The member names of a family (a ``Registry`` or a sequence)."""
  return family.names() if isinstance(family, Registry) else tuple(family)


# ---------------------------------------------------------------------------
# Kinds of fields.

_UNSET = object()


class Own(NamedTuple):
  """A field of the configuration only; ``name`` renames ``param``."""
  param: Param
  rename: Optional[str] = None

  @property
  def name(self) -> str:
    return self.rename or self.param.name


class Choice(NamedTuple):
  """A field naming a member of ``family()``; ``also``: other names
  accepted (``"auto"``)."""
  name: str
  family: Callable[[], Any]
  default: str
  meaning: str
  also: tuple = ()


class Bound(NamedTuple):
  """A field holding parameter ``param`` of the member that field
  ``choice`` names (of every member declaring it, or of ``member`` only).

  ``default`` and ``prefix`` (words before the declared meaning) adapt the
  declaration to this use; ``fallback`` serves until the family declares
  the parameter.
  """
  name: str
  choice: str
  param: str
  member: Optional[str] = None
  default: Any = _UNSET
  prefix: str = ""
  fallback: Optional[Param] = None


class Extra(NamedTuple):
  """A mapping of the chosen member's parameters without a field."""
  name: str
  choice: str


class Section(NamedTuple):
  name: str
  class_name: str
  doc: str
  fields: tuple


MAX_CLIENTS = 10**6
"""The largest population (per-client arrays, partitions, speeds)."""
MAX_TASKS = 10**7
"""The most client tasks a schedule may draw (``run.num_updates``, rounds
x cohort, and the tasks lost to ``delays.dropout``): about a gigabyte of
schedule and a few minutes of drawing it."""
MAX_SEED = 2**31 - 1
_GUARD = {p.name: p for p in robust.GUARD_PARAMS}
_DELAY = {p.name: p for p in delays.DELAY_PARAMS}

SECTIONS = (
    Section("data", "DataConfig", "The data set and its split over clients.", (
        Choice("name", lambda: datasets.DATASETS, "synthetic", "data set"),
        Own(Param("path", None, kind=str, optional=True,
                  meaning=".npz file with x_train, y_train, x_test, y_test")),
        Own(Param("data_dir", None, kind=str, optional=True,
                  meaning="tensorflow-datasets folder (else $TFDS_DATA_DIR)")),
        Own(Param("download", False, kind=bool,
                  meaning="let tfds download a missing data set")),
        Own(Param("num_clients", 100, low=1, high=MAX_CLIENTS, kind=int,
                  meaning="population size")),
        Choice("partition", lambda: partition.PARTITIONS, "dirichlet",
               "how examples are split over clients"),
        Bound("alpha", "partition", "alpha", member="dirichlet", default=0.5,
              prefix="(partition=dirichlet) ", fallback=Param(
                  "alpha", 0.5, low=0, low_open=True,
                  meaning="Dirichlet concentration")),
        Bound("synthetic_alpha", "name", "alpha", member="synthetic",
              default=1.0, prefix="Synthetic(alpha, beta): ",
              fallback=Param("alpha", 1.0, low=0, meaning="model skew")),
        Bound("synthetic_beta", "name", "beta", member="synthetic",
              default=1.0, prefix="Synthetic(alpha, beta): ",
              fallback=Param("beta", 1.0, low=0, meaning="data skew")),
        Bound("synthetic_max_examples", "name", "max_examples",
              member="synthetic", prefix="Synthetic: "),
        Own(Param("seed", 0, low=0, high=MAX_SEED, kind=int,
                  meaning="seed of the partition / synthetic data")),
    )),
    Section("model", "ModelConfig", "The model.", (
        Choice("name", lambda: models.MODELS, "logistic_regression",
               "model"),
    )),
    Section("client", "ClientConfig", "Local training of one task.", (
        Choice("optimizer", lambda: optimizers.OPTIMIZERS, "sgd",
               "local optimizer (fresh state per task)"),
        Bound("lr", "optimizer", "lr", prefix="local "),
        Bound("momentum", "optimizer", "momentum"),
        Own(Param("batch_size", 10, low=1, high=10**5, kind=int,
                  meaning="examples per local step")),
        Own(Param("epochs", 1, low=1, high=10**4, kind=int,
                  meaning="local epochs over the client's data")),
        Own(Param("steps", None, low=1, high=10**6, kind=int, optional=True,
                  meaning="fixed local steps instead of epochs")),
        Own(Param("prox_rho", 0.0, low=0,
                  meaning="proximal weight (FedProx / FedAsync)")),
        Own(Param("delay_beta", None, low=0, optional=True,
                  meaning="AFL delay-aware rate lr / (1 + beta delay)")),
        Own(Param("epoch_decay", False, kind=bool,
                  meaning="AFL: rate of epoch e divided by sqrt(e+1)")),
        Own(Param("patience", None, low=1, kind=int, optional=True,
                  meaning="early stopping after this many epochs")),
    )),
    Section("rule", "RuleConfig", "The server rule, its staleness function "
            "and its guards.", (
        Choice("name", lambda: rules.RULES, "fedasync", "server rule"),
        Bound("alpha", "name", "alpha"),
        Extra("params", "name"),
        Choice("staleness", lambda: staleness.STALENESS, "polynomial",
               "staleness function s(tau)"),
        Bound("staleness_a", "staleness", "a"),
        Bound("staleness_b", "staleness", "b"),
        Extra("staleness_params", "staleness"),
        Own(staleness.CUTOFF),
        Bound("buffer_size", "name", "buffer_size"),
        Choice("server_optimizer", lambda: optimizers.OPTIMIZERS, "sgd",
               "FedBuff / FedAvg server optimizer (FedOpt: fedadam...)"),
        Bound("server_lr", "server_optimizer", "lr", default=1.0,
              prefix="server "),
        Bound("server_momentum", "server_optimizer", "momentum",
              prefix="server "),
        Extra("server_params", "server_optimizer"),
        Bound("afl_lr", "name", "lr", member="afl"),
        Own(_GUARD["quarantine"]),
        Own(_GUARD["max_norm"], "max_update_norm"),
        Own(_GUARD["noise_multiplier"]),
    )),
    Section("delays", "DelayConfig", """How long a client task takes (see ``fedasync_jax.sim.delays``).

  A task of client ``c`` takes ``speed[c] * work[c] * jitter + comm_time``
  simulated seconds; ``work`` is the client's examples x local epochs (or
  local steps x batch size). ``speed`` is drawn once per client from
  ``speeds``; ``jitter`` is drawn per task (mean 1).
  """, (
        Choice("speeds", lambda: delays.SPEEDS, "lognormal",
               "device speeds (seconds per unit of work)"),
        Bound("sigma", "speeds", "sigma", member="lognormal",
              prefix="lognormal speeds: "),
        Bound("mean", "speeds", "mean"),
        Bound("pareto_shape", "speeds", "shape", member="pareto",
              prefix="pareto speeds: "),
        Bound("uniform_low", "speeds", "low", member="uniform",
              prefix="uniform speeds: "),
        Bound("uniform_high", "speeds", "high", member="uniform",
              prefix="uniform speeds: "),
        Own(Param("trace_path", None, kind=str, optional=True,
                  meaning="speeds=trace: a device table (FedScale .pkl/"
                  ".json, or .csv with a computation column) or a list of "
                  "speeds (.npy/.csv/.txt)")),
        *(Own(p) for p in traces.TRACE_PARAMS),
        Choice("trace_mapping", lambda: traces.MAPPINGS, "cycle",
               "how clients are mapped to trace rows (seeded by run.seed)"),
        Choice("jitter", lambda: delays.JITTERS, "exponential",
               "per-task duration factor (mean 1)"),
        Bound("jitter_sigma", "jitter", "sigma", member="lognormal",
              prefix="lognormal jitter: "),
        Own(_DELAY["comm_time"]),
        Own(_DELAY["dropout"]),
        Own(Param("availability_period", None, low=0, low_open=True,
                  optional=True,
                  meaning="on/off cycle length (null: always on)")),
        Own(Param("availability_on_fraction", 1.0, low=0, high=1,
                  low_open=True,
                  meaning="fraction of a cycle a client is available")),
    )),
    Section("run", "RunConfig", "The schedule, evaluation, seed and executor "
            "settings.", (
        Own(Param("concurrency", 10, low=1, kind=int,
                  meaning="clients in flight / synchronous cohort size")),
        Own(Param("poisson_rate", None, low=0, low_open=True, optional=True,
                  meaning="open loop: dispatches per second instead")),
        Choice("selection", lambda: scheduler.SELECTIONS, "uniform",
               "how idle clients are drawn"),
        Own(Param("num_updates", 1000, low=1, high=MAX_TASKS, kind=int,
                  meaning="client updates (asynchronous rules)")),
        Own(Param("num_rounds", None, low=1, high=MAX_TASKS, kind=int,
                  optional=True,
                  meaning="synchronous rounds (default updates / cohort)")),
        Own(Param("over_selection", 0, low=0, kind=int,
                  meaning="synchronous: extra clients per round")),
        Own(Param("deadline", None, low=0, low_open=True, optional=True,
                  meaning="synchronous: round deadline in seconds")),
        Own(Param("eval_every", 100, low=1, kind=int,
                  meaning="evaluate every this many client updates")),
        Own(Param("seed", 0, low=0, high=MAX_SEED, kind=int,
                  meaning="seed of schedule, init and training")),
        Own(Param("chunk_steps", 64, low=1, high=10**5, kind=int,
                  meaning="executor steps per compiled chunk")),
        Choice("batching", lambda: strategies.BATCHINGS, "auto",
               "how a wave of clients is batched", also=("auto",)),
        Own(Param("width", None, low=1, high=10**4, kind=int, optional=True,
                  meaning="clients per wave (default: automatic)")),
        Own(Param("checkpoint_every_s", 30.0, low=0,
                  meaning="seconds between checkpoints")),
        Own(Param("tensorboard", False, kind=bool,
                  meaning="also write the metrics as TensorBoard events")),
        Own(Param("plots", True, kind=bool,
                  meaning="draw the PNG plots (with matplotlib)")),
    )),
)

_BY_SECTION = {s.name: s for s in SECTIONS}


def section(name: str) -> Section:
  return _BY_SECTION[name]


def spec(section_name: str, field: str):
  """The table entry of ``section.field`` (``KeyError`` if none)."""
  for f in _BY_SECTION[section_name].fields:
    if f.name == field:
      return f
  raise KeyError(f"{section_name}.{field}")


def family(section_name: str, choice: str):
  """The family (a ``Registry`` or a tuple of names) behind a ``Choice``."""
  return spec(section_name, choice).family()


def choices(section_name: str, choice: str) -> tuple:
  """The names a ``Choice`` field accepts, read now."""
  s = spec(section_name, choice)
  return tuple(s.also) + tuple(n for n in names(s.family())
                               if n not in s.also)


def _declared(fam, b: Bound, chosen: Optional[str]) -> Optional[Param]:
  """The ``Param`` a ``Bound`` field stands for: the named member's, else
  the chosen member's, else the first member's that declares it."""
  if not isinstance(fam, Registry):
    return b.fallback
  order = ([b.member] if b.member else
           ([chosen] if chosen in fam else []) + list(fam.names()))
  for name in order:
    if name in fam and any(p.name == b.param for p in fam[name].params):
      return fam[name].param(b.param)
  return b.fallback


def _meaning(fam, b: Bound, p: Param) -> str:
  if b.member or not isinstance(fam, Registry):
    return b.prefix + p.meaning
  using = [(m.name, m.param(b.param).meaning) for m in fam.members()
           if any(q.name == b.param for q in m.params)]
  if len({text for _, text in using}) <= 1:
    return b.prefix + p.meaning
  return b.prefix + f"{b.param} of " + ", ".join(
      f"{name} ({text})" for name, text in using)


def param(section_name: str, field: str, chosen: Optional[str] = None
          ) -> Param:
  """The ``Param`` of a field, named as the field: its default, kind,
  range and meaning. ``chosen``: the member its ``Choice`` names (a
  ``Bound`` field takes that member's declaration)."""
  s = spec(section_name, field)
  if isinstance(s, Own):
    return s.param._replace(name=s.name)
  if isinstance(s, Choice):
    return Param(s.name, s.default, kind=str, meaning=s.meaning)
  if isinstance(s, Extra):
    return Param(s.name, None, kind=dict, meaning=(
        f"parameters of {section_name}.{s.choice} without a field of "
        f"their own, by name"))
  fam = family(section_name, s.choice)
  p = _declared(fam, s, chosen)
  if p is None:
    raise KeyError(f"{section_name}.{field}: no member of "
                   f"{section_name}.{s.choice} declares {s.param!r}")
  default = p.default if s.default is _UNSET else s.default
  return p._replace(name=s.name, default=default,
                    meaning=_meaning(fam, s, p))


def describe(p: Param) -> str:
  """What a ``Param`` accepts, in words (``"number in [0, 1)"``).

  Example:
    >>> describe(Param("k", 1, low=1, kind=int, optional=True))
    'integer in [1, 2147483647] or null'
  """
  if p.kind is dict:
    return "mapping of parameter names to values"
  text = {bool: "true or false", int: "integer", float: "number",
          str: "string"}.get(p.kind, p.kind.__name__)
  if p.low is not None or p.high is not None:
    text += " in " + interval(p)
  return text + (" or null" if p.optional else "")


def interval(p: Param) -> str:
  """``[low, high]`` with open ends as ``(``/``)``; a missing end is the
  implicit limit (``checks.FLOAT_LIMIT``, integers ``checks.INT_LIMIT``)."""
  top = checks.INT_LIMIT if p.kind is int else checks.FLOAT_LIMIT
  lo = checks.number_text(-top if p.low is None else p.low)
  hi = checks.number_text(top if p.high is None else p.high)
  return (f"{'(' if p.low_open else '['}{lo}, "
          f"{hi}{')' if p.high_open else ']'}")


def bound_field(section_name: str, choice: str, member: str,
                name: str) -> Optional[Bound]:
  """The field that holds parameter ``name`` of ``member`` (None: none)."""
  hits = [f for f in _BY_SECTION[section_name].fields
          if isinstance(f, Bound) and f.choice == choice and f.param == name
          and f.member in (None, member)]
  hits.sort(key=lambda f: f.member is None)
  return hits[0] if hits else None


def member_field(section_name: str, choice: str, member: str,
                 name: str) -> Optional[str]:
  """Where parameter ``name`` of ``member`` is set: its field
  (``rule.buffer_size``), else its entry of the ``Extra`` mapping
  (``rule.params.clients_per_round``); ``None`` if neither.

  Example:
    >>> member_field("rule", "name", "afl", "clients_per_round")
    'rule.params.clients_per_round'
    >>> member_field("rule", "name", "afl", "lr")
    'rule.afl_lr'
  """
  b = bound_field(section_name, choice, member, name)
  if b is not None:
    return f"{section_name}.{b.name}"
  ex = extra_field(section_name, choice)
  return f"{section_name}.{ex.name}.{name}" if ex else None


def per_version_field(rule_name: str) -> Optional[str]:
  """The field setting rule ``rule_name``'s client updates per server
  version: where the parameter its registration names
  (``per_version="clients_per_round"``, else a ``buffer_size`` it declares)
  is set; ``None`` for a rule that names none.

  Example:
    >>> per_version_field("fedbuff"), per_version_field("afl")
    ('rule.buffer_size', 'rule.params.clients_per_round')
  """
  m = rules.RULES[rule_name]
  declared = [p.name for p in m.params]
  name = m.info.get("per_version",
                    "buffer_size" if "buffer_size" in declared else None)
  return member_field("rule", "name", rule_name, name) if name else None


def extra_field(section_name: str, choice: str) -> Optional[Extra]:
  for f in _BY_SECTION[section_name].fields:
    if isinstance(f, Extra) and f.choice == choice:
      return f
  return None


def member_values(values, section_name: str, choice: str):
  """The parameters of the member that ``values.<choice>`` names.

  Each is read from the field bound to it, else from the ``Extra`` mapping,
  else its declared default.

  Returns:
    ``(member, {param: value})``; ``(None, {})`` for a family that is only
    a list of names.

  Raises:
    ConfigError: a required parameter missing, or a mapping entry the
      member does not take or that has a field of its own.
  """
  fam = family(section_name, choice)
  if not isinstance(fam, Registry):
    return None, {}
  name = getattr(values, choice)
  m = fam[name]
  ex = extra_field(section_name, choice)
  given = dict(getattr(values, ex.name) or {}) if ex else {}
  where = f"{section_name}.{ex.name if ex else choice}"
  unknown = sorted(set(given) - {p.name for p in m.params})
  if unknown:  # (before a required one is missed: it may be misspelt)
    raise _not_taken(section_name, choice, fam, m, unknown, where)
  out = {}
  for p in m.params:
    b = bound_field(section_name, choice, m.name, p.name)
    if b is not None:
      if p.name in given:
        raise ConfigError(f"{where}.{p.name}: set {section_name}.{b.name} "
                          f"instead")
      out[p.name] = getattr(values, b.name)
    elif p.name in given:
      out[p.name] = given.pop(p.name)
    elif p.default is REQUIRED:
      raise ConfigError(f"{where}.{p.name} is required by {fam.family} "
                        f"{name!r} ({p.meaning}; {describe(p)})")
    else:
      out[p.name] = p.default
  return m, out


def _not_taken(section_name, choice, fam, m, unknown, where):
  """The error for mapping entries ``unknown`` that member ``m`` does not
  take: what it takes, which members take them, how to mend it."""
  def in_mapping(member):
    return [p.name for p in member.params if bound_field(
        section_name, choice, member.name, p.name) is None]
  takes = in_mapping(m)
  owners = [o.name for o in fam.members()
            if o.name != m.name and unknown[0] in in_mapping(o)]
  hint = (f"; {unknown[0]!r} is a parameter of {fam.family} "
          f"{' and '.join(repr(o) for o in owners)} (set "
          f"{section_name}.{choice} to use it)" if owners
          else checks.suggest(unknown[0], takes))
  bound = [f"{section_name}.{b.name}" for b in (
      bound_field(section_name, choice, m.name, p.name) for p in m.params)
           if b is not None]
  said = f"it takes {takes} here" if takes else "it takes none here"
  if bound:
    said += f"; it reads {', '.join(bound)}"
  return ConfigError(f"{where}: {fam.family} {m.name!r} takes no "
                     f"parameter(s) {checks.show(unknown)} ({said}){hint}; "
                     f"remove {'it' if len(unknown) == 1 else 'them'} from "
                     f"{where}")
