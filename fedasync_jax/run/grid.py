"""Sweep grids: which fields may vary inside one compiled program.

A field is sweepable when the parameter it holds is declared
``Param(sweepable=True)`` (it may be a traced array): the rule's
hyperparameters (``rule.alpha``, ``rule.staleness_a``, ``rule.server_lr``,
``rule.afl_lr``...), the entries of ``rule.params`` and
``rule.staleness_params`` whose parameters are sweepable (e.g.
``rule.staleness_params.n`` of ``mishchenko``), and the client's learning
rate ``client.lr`` (varied as a scale of the local updates, which every
registered optimizer's update is linear in). ``SWEEPABLE`` is read from the
registries whenever it is used, so a newly registered member's sweepable
parameters are sweepable at once.

Example:
  >>> parse_grid(["rule.alpha=0.3,0.9", "client.lr=0.01"])
  {'rule.alpha': [0.3, 0.9], 'client.lr': [0.01]}
  >>> SWEEPABLE["rule.alpha"], SWEEPABLE["client.lr"]
  ('alpha', None)
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping

from fedasync_jax.core import checks
from fedasync_jax.core.registry import Registry
from fedasync_jax.run import schema


def sweepable() -> dict:
  """``{"section.field[.entry]": path in RuleConfig or None}``, read now.

  The path is the ``RuleConfig`` attribute (``"alpha"``) or mapping entry
  (``"staleness_params.n"``) the sweep replaces; ``None`` for ``client.lr``
  (a scale of the client's updates).
  """
  out = {}
  for f in schema.section("rule").fields:
    if isinstance(f, schema.Bound):
      fam = schema.family("rule", f.choice)
      members = ([fam[f.member]] if f.member else fam.members()) \
          if isinstance(fam, Registry) else []
      if any(p.name == f.param and p.sweepable
             for m in members for p in m.params):
        out[f"rule.{f.name}"] = f.name
    elif isinstance(f, schema.Extra):
      fam = schema.family("rule", f.choice)
      for m in fam.members():
        for p in m.params:
          if p.sweepable and schema.bound_field(
              "rule", f.choice, m.name, p.name) is None:
            out[f"rule.{f.name}.{p.name}"] = f"{f.name}.{p.name}"
  if schema.param("client", "lr").sweepable:
    out["client.lr"] = None
  return out


class _Sweepable(Mapping):
  """``sweepable()``, read from the registries on every use."""

  def __getitem__(self, key):
    return sweepable()[key]

  def __iter__(self):
    return iter(sweepable())

  def __len__(self):
    return len(sweepable())

  def __repr__(self):
    return repr(sweepable())


SWEEPABLE = _Sweepable()


GRID_FORM = "SECTION.FIELD=V1,V2,..."
"""What a ``--grid`` item looks like (or ``SECTION.FIELD=@FILE``)."""


def _entries(text: str, flag: str) -> tuple:
  """The comma-separated entries of ``text``, or of the file ``@PATH``.

  A file's entries are separated by commas, spaces or line breaks, and
  ``#`` starts a comment to the end of its line: one value per line works,
  and a grid of 25,000 values does not meet the shell's limit on one
  argument's length.

  Returns:
    ``(entries, shown)``: the stripped entries (possibly empty strings, for
    the caller to refuse) and how to name their source in an error.

  Raises:
    ValueError: naming ``flag`` and the file, when it cannot be read.
  """
  text = str(text).strip()
  if not text.startswith("@"):
    return [e.strip() for e in text.split(",")], repr(text)
  path = text[1:].strip()
  try:
    with open(path, encoding="utf-8") as f:
      body = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"{flag}: cannot read the values file {path!r} "
                     f"({e.__class__.__name__}: "
                     f"{getattr(e, 'strerror', None) or e})") from None
  lines = (line.partition("#")[0] for line in body.splitlines())
  entries = [e for line in lines for e in re.split(r"[,\s]+", line) if e]
  return (entries or [""]), f"the file {path!r}"


def _fields() -> list:
  """Every ``section.field`` of the configuration, and every
  ``section.mapping.entry`` a member of a mapping field's family takes."""
  out = []
  for sec in schema.SECTIONS:
    for f in sec.fields:
      out.append(f"{sec.name}.{f.name}")
      if isinstance(f, schema.Extra):
        out += [f"{sec.name}.{f.name}.{p.name}"
                for m in schema.family(sec.name, f.choice).members()
                for p in m.params]
  return out


WHOLE_SWEEP = ("run.plots", "run.tensorboard", "run.checkpoint_every_s")
"""Fields that say how the sweep writes, one value for all its members."""


def _not_sweepable(key: str, item: str, allowed) -> ValueError:
  """Why ``key`` cannot be a grid field: unknown (with a suggestion, as
  ``--set`` gives) or fixed inside one compiled program."""
  known = _fields()
  if key not in known:
    return ValueError(f"unknown field {key} in --grid {item!r}; sweepable "
                      f"fields are {sorted(allowed)}"
                      f"{checks.suggest(key, [*allowed, *known])}")
  if key == "run.seed":
    return ValueError("run.seed cannot vary inside one compiled sweep "
                      "through --grid: list the seeds with --seeds "
                      "S1,S2,... (one member per seed and grid point)")
  if key in WHOLE_SWEEP:
    return ValueError(f"{key} is a setting of the whole sweep's outputs, "
                      f"not of a member: give it once with --set "
                      f"{key}=VALUE")
  return ValueError(f"{key} cannot vary inside one compiled sweep (it "
                    f"changes the program or the schedule): run one sweep "
                    f"per value, each with --set {key}=VALUE; sweepable "
                    f"fields are {sorted(allowed)} (and seeds via --seeds)")


def parse_grid(items) -> dict:
  """Parses ``section.field=v1,v2,...`` strings into ``{field: [values]}``.

  ``section.field=@PATH`` reads the values from a file instead (separated
  by commas, spaces or line breaks; ``#`` comments). Only fields that can
  vary inside one compiled program are accepted (``SWEEPABLE``), each in
  one item.

  Raises:
    ValueError: an item that is not ``FIELD=V1,V2,...``, an unknown field
      (with a suggestion), a field that cannot vary or is given twice, or
      values that are not numbers.

  Example:
    >>> parse_grid(["rule.alhpa=0.3"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown field rule.alhpa ... (did you mean 'rule.alpha'?)
  """
  grid = {}
  allowed = sweepable()
  for item in items or ():
    key, eq, values = item.partition("=")
    key = key.strip()
    if not (eq and key):
      raise ValueError(f"a --grid item must look like {GRID_FORM}, got "
                       f"{item!r}")
    if key not in allowed:
      raise _not_sweepable(key, item, allowed)
    if key in grid:
      raise ValueError(f"--grid {key} is given twice; list all its values "
                       f"in one --grid {key}=V1,V2,...")
    entries, shown = _entries(values, f"--grid {key}")
    if not any(entries):
      raise ValueError(f"grid {key} has no values ({shown}); a --grid item "
                       f"must look like {GRID_FORM}")
    if not all(entries):
      raise ValueError(f"grid values of {key} must be numbers, got "
                       f"{shown} (an empty entry)")
    vals = []
    for entry in entries:
      try:
        vals.append(float(entry))
      except ValueError:
        raise ValueError(f"grid values of {key} must be numbers, got "
                         f"{entry!r} in {shown}") from None
    grid[key] = vals
  return grid


def refuse_repeats(name: str, values) -> None:
  """Refuses values listed more than once (each member must differ).

  Raises:
    ValueError: naming ``name`` and the repeated values.
  """
  values = list(values)
  dup = sorted({v for v in values if values.count(v) > 1})
  if dup:
    raise ValueError(f"{name} lists {dup} more than once; each member must "
                     f"differ")


def parse_seeds(text: str) -> list:
  """Parses ``--seeds S1,S2,...``: distinct integers in ``run.seed``'s
  range, no empty entry; ``@PATH`` reads them from a file (as
  ``parse_grid``'s values).

  Raises:
    ValueError: naming ``--seeds``, the range and the entry at fault.

  Example:
    >>> parse_seeds("0, 3")
    [0, 3]
    >>> parse_seeds("0,,1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --seeds must be ... in [0, 2147483647] (or @FILE), got '0,,1' (an empty entry)
  """
  p = schema.param("run", "seed")
  entries, shown = _entries(text, "--seeds")
  seeds = []
  for entry in entries:
    ok = re.fullmatch(r"[+-]?[0-9]+", entry) is not None
    if not (ok and p.low <= int(entry) <= p.high):
      raise ValueError(
          f"--seeds must be a comma-separated list of integers in "
          f"{schema.interval(p)} (or @FILE), got {shown} "
          f"({repr(entry) + ' is not one' if entry else 'an empty entry'})")
    seeds.append(int(entry))
  refuse_repeats("--seeds", seeds)
  return seeds


def members(grid: dict, seeds) -> list:
  """Every ``(values, seed)`` of the grid x seeds, seeds outermost."""
  names = list(grid)
  combos = list(itertools.product(*[grid[n] for n in names])) or [()]
  return [(dict(zip(names, c)), s) for s in seeds for c in combos]


def get_field(d: dict, key: str):
  """``section.field`` or ``section.mapping.entry`` of a config dict
  (``None`` for an entry the mapping lacks).

  Example:
    >>> get_field({"rule": {"params": {"n": 3}}}, "rule.params.n")
    3
  """
  sec, _, rest = key.partition(".")
  field, _, entry = rest.partition(".")
  value = d[sec].get(field)
  return (value or {}).get(entry) if entry else value


def set_field(d: dict, key: str, value) -> None:
  """Sets ``section.field`` or ``section.mapping.entry`` in a config dict."""
  sec, _, rest = key.partition(".")
  field, _, entry = rest.partition(".")
  if entry:
    d[sec][field] = {**(d[sec][field] or {}), entry: value}
  else:
    d[sec][field] = value


def with_rule_values(rule_cfg, values: dict):
  """``rule_cfg`` with ``{path: value}`` replaced (paths of ``SWEEPABLE``;
  values may be traced arrays)."""
  changes = {}
  for path, v in values.items():
    field, _, entry = path.partition(".")
    if entry:
      base = changes.get(field, getattr(rule_cfg, field))
      changes[field] = {**base, entry: v}
    else:
      changes[field] = v
  return dataclasses.replace(rule_cfg, **changes)
