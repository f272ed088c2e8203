"""Run configuration: small dataclasses, loaded from JSON or YAML.

A configuration has six sections (``data``, ``model``, ``client``,
``rule``, ``delays``, ``run``). Their fields, defaults, ranges and
meanings are not listed here: they come from ``schema.SECTIONS``, which
reads the registries (``rules.RULES``, ``staleness.STALENESS``,
``optimizers.OPTIMIZERS``, ``delays.SPEEDS``...), so a staleness function
or rule registered anywhere is a valid choice with its parameters checked.

Files give any subset; command-line overrides are ``section.field=value``
strings (``section.mapping.key=value`` for an entry of ``rule.params`` or
``rule.staleness_params``). Booleans (``true``/``false`` only) and numbers
are real ones in a file, text in an override. Unknown sections or fields,
wrong types and out-of-range values raise ``ConfigError`` (a
``ValueError``) naming the field, the value and what is allowed, first.

Example:
  >>> cfg = from_dict({"rule": {"name": "fedbuff", "buffer_size": 5}})
  >>> cfg = apply_overrides(cfg, ["rule.alpha=0.9", "run.num_updates=200"])
  >>> cfg.rule.name, cfg.rule.alpha, cfg.run.num_updates
  ('fedbuff', 0.9, 200)
  >>> cfg = apply_overrides(cfg, ["rule.staleness=mishchenko",
  ...                             "rule.staleness_params.n=8"])
  >>> cfg.rule.staleness_params
  {'n': 8.0}
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import typing
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.checks import show as _show
_Q = "'"
from fedasync_jax.run import config_files, members, schema
from fedasync_jax.run.schema import ConfigError  # noqa: F401  (public)


def _make_section(sec: schema.Section):
  fields = []
  for f in sec.fields:
    p = schema.param(sec.name, f.name)
    if p.kind is dict:
      fields.append((p.name, dict, dataclasses.field(default_factory=dict)))
      continue
    t = Optional[p.kind] if p.optional else p.kind
    fields.append((p.name, t, dataclasses.field(default=p.default)))
  return dataclasses.make_dataclass(
      sec.class_name, fields, namespace={"__doc__": sec.doc,
                                         "__module__": __name__})


_CLASSES = {s.name: _make_section(s) for s in schema.SECTIONS}
DataConfig, ModelConfig, ClientConfig, RuleConfig, DelayConfig, RunConfig = (
    _CLASSES[n] for n in ("data", "model", "client", "rule", "delays", "run"))

Config = dataclasses.make_dataclass("Config", [
    (name, cls, dataclasses.field(default_factory=cls))
    for name, cls in _CLASSES.items()], namespace={
        "__doc__": "A run's configuration: one dataclass per section.",
        "__module__": __name__})

_FAMILY_LISTS = {
    "DATASETS": ("data", "name"), "PARTITIONS": ("data", "partition"),
    "MODELS": ("model", "name"), "OPTIMIZERS": ("client", "optimizer"),
    "RULES": ("rule", "name"), "STALENESS": ("rule", "staleness"),
    "SPEEDS": ("delays", "speeds"), "JITTERS": ("delays", "jitter"),
    "SELECTIONS": ("run", "selection"), "BATCHINGS": ("run", "batching"),
}


def _all_fields():
  for sec in schema.SECTIONS:
    for f in sec.fields:
      yield sec.name, f


def __getattr__(name: str):
  """``DATASETS``, ``RULES``... (names), ``CHOICES``, ``RANGES`` and
  ``MEANING``, read from the registries when asked."""
  if name in _FAMILY_LISTS:
    return schema.choices(*_FAMILY_LISTS[name])
  if name == "CHOICES":
    return {(s, f.name): schema.choices(s, f.name)
            for s, f in _all_fields() if isinstance(f, schema.Choice)}
  if name == "RANGES":
    return {(s, f.name): (p.low, p.high, p.low_open, p.high_open)
            for s, f in _all_fields()
            for p in [schema.param(s, f.name)]
            if p.low is not None or p.high is not None}
  if name == "MEANING":
    return {(s, f.name): schema.param(s, f.name).meaning
            for s, f in _all_fields()}
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Typed(str):
  """The text of an override (``--set section.field=TEXT``). Only such text
  spells a boolean (``true``/``false``, any case) or a number: a file gives
  real ones (YAML/JSON ``true``, ``0.5``), and its strings are strings."""

  __slots__ = ()


def _coerce_bool(field: str, value) -> bool:
  """A real boolean, or an override's ``true``/``false`` in any case;
  nothing else (``0``, ``"no"``, ``off``...) is one."""
  if isinstance(value, bool):
    return value
  if isinstance(value, _Typed) and value.lower() in ("true", "false"):
    return value.lower() == "true"
  raise ConfigError(f"{field} must be true or false, got {_show(value)}")


def _coerce(field: str, value, p) -> Any:
  """Converts ``value`` (from a file or a string override) to the kind of
  ``p``, or raises ``ConfigError`` naming ``field``."""
  if p.kind is dict and value is None:
    return {}
  if value is None or (p.optional and isinstance(value, str)
                       and value.lower() in ("none", "null")):
    if p.optional:
      return None
    raise ConfigError(f"{field} must not be empty")
  if p.kind is bool:
    return _coerce_bool(field, value)
  if p.kind in (int, float):
    return _coerce_number(field, value, p.kind)
  if p.kind is str:
    if not isinstance(value, str):
      raise ConfigError(f"{field} must be a string, got {_show(value)}")
    return str(value)  # an override's text loses its ``_Typed`` mark
  if p.kind is dict:
    if not isinstance(value, dict) or not all(isinstance(k, str)
                                              for k in value):
      raise ConfigError(f"{field} must be a mapping of parameter names to "
                        f"values, got {_show(value)}")
    return dict(value)
  raise ConfigError(f"{field}: unsupported kind {p.kind}")  # pragma: no cover


def _coerce_number(field: str, value, kind):
  what = "an integer" if kind is int else "a number"
  v = value
  if isinstance(v, str) and not isinstance(v, _Typed):
    # A file's number is a number; quoted, it is a string (as with booleans).
    raise ConfigError(f"{field} must be {what}, got the string "
                      f"{_show(value)}; write it without quotes")
  if isinstance(v, str):
    try:
      v = float(v)
    except ValueError:
      raise ConfigError(f"{field} must be {what}, got {_show(value)}") \
          from None
  if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
    raise ConfigError(f"{field} must be {what}, got {_show(value)}")
  if kind is int:
    try:
      return checks.integer(field, v)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  try:
    f = float(v)
  except OverflowError:
    f = math.inf
  if not math.isfinite(f):
    raise ConfigError(f"{field} must be finite, got {_show(value)}")
  return f


def _in_range(field: str, v, p) -> None:
  """The declared range of ``p``, then its implicit ``p.limits``."""
  if v is None or p.kind not in (int, float):
    return
  bad = ((p.low is not None and (v < p.low or (p.low_open and v == p.low)))
         or (p.high is not None and (v > p.high
                                     or (p.high_open and v == p.high))))
  if bad:
    raise ConfigError(f"{field} must be in {schema.interval(p)}, got {v!r}")
  try:
    p.limits(v, field)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _member_params(values, sec: str, choice: str):
  """The chosen member's parameters read from an ``Extra`` mapping, with
  their ``Param``s (type and range checked)."""
  m, got = schema.member_values(values, sec, choice)
  ex = schema.extra_field(sec, choice)
  given = getattr(values, ex.name) or {}
  for p in m.params:
    if p.name in given:
      label = f"{sec}.{ex.name}.{p.name}"
      _in_range(label, _coerce(label, given[p.name], p), p)
  return got


def _check_choices(cfg) -> None:
  for sec, f in _all_fields():
    if isinstance(f, schema.Choice):
      v = getattr(getattr(cfg, sec), f.name)
      allowed_names = schema.choices(sec, f.name)
      if v not in allowed_names:
        raise ConfigError(f"{sec}.{f.name} must be one of "
                          f"{list(allowed_names)}, got {_show(v)}"
                          f"{checks.suggest(v, allowed_names)}")


def _check_fields(cfg) -> None:
  """Types and ranges of every field; the parameters of every member
  chosen through a field with an ``Extra`` mapping."""
  for sec, f in _all_fields():
    values = getattr(cfg, sec)
    chosen = (getattr(values, f.choice) if isinstance(f, schema.Bound)
              else None)
    p = schema.param(sec, f.name, chosen)
    label = f"{sec}.{f.name}"
    _in_range(label, _coerce(label, getattr(values, f.name), p), p)
  for sec, f in _all_fields():
    if isinstance(f, schema.Extra):
      _member_params(getattr(cfg, sec), sec, f.choice)


def _check_delays(dl) -> None:
  if dl.uniform_high < dl.uniform_low:
    raise ConfigError(f"delays.uniform_high must be >= delays.uniform_low "
                      f"({dl.uniform_low}), got {dl.uniform_high}")
  takes_trace = "trace" in schema.family("delays", "speeds")[dl.speeds].inputs
  if takes_trace and not dl.trace_path:
    raise ConfigError(f"delays.trace_path must name a device table "
                      f"(FedScale .pkl/.json, or .csv with a computation "
                      f"column) or a file of per-client speeds (.npy, .csv "
                      f"or .txt) when delays.speeds is {dl.speeds!r}")
  if dl.trace_path and not takes_trace:
    raise ConfigError(f"delays.trace_path is only used with delays.speeds "
                      f"'trace', got delays.speeds {dl.speeds!r}")
  if dl.availability_on_fraction < 1 and dl.availability_period is None:
    raise ConfigError("delays.availability_on_fraction < 1 needs "
                      "delays.availability_period (the length of one on/off "
                      "cycle, in simulated seconds)")


def _check_schedule(cfg) -> None:
  """Cross-field rules of the schedule; a synchronous rule is one whose
  built rule has an ``end_round``. An asynchronous rule that applies a
  version every ``arrivals_per_version`` updates (FedBuff's buffer) must
  fill it at least once within ``run.num_updates``."""
  r, run, d = cfg.rule, cfg.run, cfg.data
  try:
    rule = members.build_rule(cfg)
  except (ValueError, TypeError) as e:
    raise (e if isinstance(e, ConfigError) else ConfigError(
        f"rule {r.name!r}: {e}")) from None
  synchronous, k = rule.synchronous, rule.arrivals_per_version
  if not synchronous and k and k > run.num_updates:  # never fills
    field = schema.per_version_field(r.name)
    what = f"{field}={k}" if field else f"rule {r.name!r}: {k}"
    raise ConfigError(
        f"{what} client updates per server version is more than "
        f"run.num_updates ({run.num_updates}): no version would be applied; "
        f"lower it or raise run.num_updates")
  if not synchronous and run.poisson_rate is None and \
      run.concurrency > d.num_clients:
    raise ConfigError(f"run.concurrency must be <= data.num_clients "
                      f"({d.num_clients}), got {run.concurrency}")
  if synchronous:
    if run.poisson_rate is not None:
      raise ConfigError(f"run.poisson_rate is for asynchronous rules; "
                        f"{r.name!r} is synchronous and uses "
                        f"run.concurrency as its cohort size")
    if run.concurrency + run.over_selection > d.num_clients:
      raise ConfigError(
          f"run.concurrency + run.over_selection must be <= data.num_clients"
          f" ({d.num_clients}), got {run.concurrency + run.over_selection}")
    rounds = run.num_rounds or max(1, run.num_updates // run.concurrency)
    if rounds * (run.concurrency + run.over_selection) > schema.MAX_TASKS:
      raise ConfigError(
          f"run.num_rounds ({rounds}) x (run.concurrency + run.over_selection)"
          f" must be <= {schema.MAX_TASKS:g} client tasks")
  elif run.num_updates / (1 - cfg.delays.dropout) > schema.MAX_TASKS:
    raise ConfigError(
        f"run.num_updates / (1 - delays.dropout) (the tasks drawn to get "
        f"{run.num_updates} updates when {cfg.delays.dropout:g} of them are "
        f"lost) must be <= {schema.MAX_TASKS:g}; lower run.num_updates or "
        f"delays.dropout")


def validate(cfg) -> Any:
  """Checks every field's choices and ranges and the cross-field rules.

  Raises:
    ConfigError: naming the field, the value and what is allowed.
  """
  _check_choices(cfg)
  _check_fields(cfg)
  r, d = cfg.rule, cfg.data
  _check_delays(cfg.delays)
  if r.noise_multiplier is not None and r.max_update_norm is None:
    raise ConfigError("rule.noise_multiplier needs rule.max_update_norm (the "
                      "clip norm C of the Gaussian noise z*C)")
  if d.name == "npz" and not d.path:
    raise ConfigError("data.path must name an .npz file when data.name is "
                      "'npz'")
  takes = {p.name for p in schema.family("data", "name")[d.name].params}
  for f in ("path", "data_dir"):
    if getattr(d, f) and f not in takes:
      raise ConfigError(f"data.{f} is unused with data.name {d.name!r} (its "
                        f"own data); set data.name: 'npz', 'mnist', ...")
  _check_schedule(cfg)
  # TODO(models): these belong to the models' declarations (input shapes).
  if d.name in ("mnist", "fashion_mnist", "emnist") and cfg.model.name == \
      "resnet20":
    raise ConfigError("model.name 'resnet20' needs 3-channel 32x32 images "
                      "(cifar10), got data.name " + repr(d.name))
  if d.name == "cifar10" and cfg.model.name in ("mnist_cnn",):
    raise ConfigError("model.name 'mnist_cnn' needs 28x28 grey images, got "
                      "data.name 'cifar10'")
  return cfg


def _coerce_extras(cfg) -> None:
  """Converts ``Extra`` mapping entries (``"4"`` from the command line) to
  the kinds the chosen member declares."""
  for sec, f in _all_fields():
    if not isinstance(f, schema.Extra):
      continue
    values = getattr(cfg, sec)
    fam = schema.family(sec, f.choice)
    chosen = getattr(values, f.choice)
    if chosen not in fam:
      continue  # validate names the bad choice
    declared = {p.name: p for p in fam[chosen].params}
    given = getattr(values, f.name)
    setattr(values, f.name, {
        k: (_coerce(f"{sec}.{f.name}.{k}", v, declared[k])
            if k in declared else v) for k, v in given.items()})


def from_dict(d: Optional[dict]):
  """Builds and validates a ``Config`` from nested dicts (a parsed file)."""
  d = d or {}
  if not isinstance(d, dict):
    raise ConfigError(f"a configuration must be a mapping of sections, got "
                      f"{type(d).__name__}")
  kwargs = {}
  classes = typing.get_type_hints(Config)
  for sec, values in d.items():
    if sec not in classes:
      raise ConfigError(f"unknown section {_show(sec)}; sections are "
                        f"{sorted(classes)}{checks.suggest(sec, classes)}")
    if values is None:
      values = {}
    if not isinstance(values, dict):
      raise ConfigError(f"section {sec!r} must be a mapping, got "
                        f"{_show(values)}")
    known = {f.name for f in schema.section(sec).fields}
    fields = {}
    for name, v in values.items():
      if name not in known:
        raise ConfigError(f"unknown field {sec}.{_show(name).strip(_Q)}; fields"
                          f" are {sorted(known)}"
                          f"{checks.suggest(name, known)}")
      fields[name] = _coerce(f"{sec}.{name}", v, schema.param(sec, name))
    kwargs[sec] = classes[sec](**fields)
  cfg = Config(**kwargs)
  _coerce_extras(cfg)
  return validate(cfg)


def to_dict(cfg) -> dict:
  """The configuration as nested dicts (for ``config.json``)."""
  return dataclasses.asdict(cfg)


def load(path):
  """Loads a JSON or YAML file; its relative paths are relative to its folder.

  Raises:
    ConfigError: unreadable, oversized file, bad syntax, YAML aliases,
      duplicate keys (``config_files.read``) or bad values (the message
      names the file).
  """
  p = Path(path)
  raw = config_files.read_resolved(p)
  try:
    return from_dict(raw)
  except ConfigError as e:
    raise ConfigError(f"{p}: {e}") from None


def absolute_paths(cfg):
  """``cfg`` with the relative paths of ``config_files.PATH_FIELDS`` made
  absolute against the current folder, as ``config.json`` saves them (a
  ``--resume`` from any folder then reads the same files)."""
  return from_dict(config_files.resolve_paths(to_dict(cfg), os.getcwd()))


def allowed(section: str, name: str) -> str:
  """What a field accepts, in words (for help texts and error messages).

  Example:
    >>> allowed("rule", "alpha")
    'number in [0, 1]'
    >>> allowed("delays", "jitter")
    'one of none, exponential, lognormal'
  """
  f = schema.spec(section, name)
  if isinstance(f, schema.Choice):
    return "one of " + ", ".join(schema.choices(section, name))
  return schema.describe(schema.param(section, name))


def apply_overrides(cfg, overrides):
  """Applies ``section.field=value`` strings and validates the result.

  ``section.field.key=value`` sets one entry of a mapping field
  (``rule.staleness_params.tau_c=4``); a mapping field itself takes JSON
  (``rule.params={}``).
  """
  d = to_dict(cfg)
  for item in overrides or ():
    if "=" not in item or "." not in item.split("=", 1)[0]:
      raise ConfigError(f"an override must look like section.field=value, "
                        f"got {item!r}")
    key, value = item.split("=", 1)
    section, name = key.strip().split(".", 1)
    name, _, entry = name.partition(".")
    if section not in d:
      raise ConfigError(f"unknown section {section!r} in override {item!r}; "
                        f"sections are {sorted(d)}{checks.suggest(section, d)}")
    if name not in d[section]:
      raise ConfigError(f"unknown field {section}.{name} in override "
                        f"{item!r}; fields are {sorted(d[section])}"
                        f"{checks.suggest(name, d[section])}")
    is_map = isinstance(schema.spec(section, name), schema.Extra)
    if entry and not is_map:
      raise ConfigError(f"{section}.{name} is not a mapping; an override "
                        f"must look like section.field=value, got {item!r}")
    text = _Typed(value.strip())
    if entry:
      d[section][name] = {**(d[section][name] or {}), entry: text}
    elif is_map:
      d[section][name] = _parse_mapping(f"{section}.{name}", text)
    else:
      d[section][name] = text
  return from_dict(d)


def _parse_mapping(field: str, text: str) -> dict:
  if text.lower() in ("", "none", "null"):
    return {}
  try:
    value = json.loads(text)
  except ValueError:
    raise ConfigError(f"{field} takes a JSON mapping (e.g. "
                      f"'{{\"tau_c\": 4}}') or entries {field}.NAME=VALUE, "
                      f"got {text!r}") from None
  return value


def to_yaml(cfg=None) -> str:
  """A YAML file of every field, its value, its meaning and what it accepts,
  with the members of every family and their parameters as comments.

  ``fedasync-jax config > my.yaml`` writes the defaults this way, as a
  starting point; ``load`` reads the text back to the same ``Config``.

  Example:
    >>> text = to_yaml()
    >>> print([l for l in text.splitlines() if "num_clients" in l][0])
      num_clients: 100               # population size; integer in [1, 1000000]
    >>> from_dict(__import__("yaml").safe_load(text)) == Config()
    True
  """
  cfg = cfg if cfg is not None else Config()
  lines = [f"# ranges show the real limits: {checks.FLOAT_LIMIT:g} for a "
           f"number (integers {checks.INT_LIMIT}) that has no other; > 0 "
           f"means >= {checks.FLOAT_TINY:g}"]
  for sec in schema.SECTIONS:
    lines.append(f"{sec.name}:")
    values = getattr(cfg, sec.name)
    for f in sec.fields:
      value = config_files.yaml_scalar(getattr(values, f.name))
      item = f"  {f.name}: {value}"
      meaning = schema.param(sec.name, f.name).meaning
      note = f"{meaning}; " if meaning else ""
      lines.append(f"{item:<32} # {note}{allowed(sec.name, f.name)}")
      if isinstance(f, (schema.Choice, schema.Extra)):
        lines.extend(config_files.member_lines(sec.name, f))
  return "\n".join(lines) + "\n"
