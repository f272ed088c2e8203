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
from collections.abc import Mapping

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


def parse_grid(items) -> dict:
  """Parses ``section.field=v1,v2,...`` strings into ``{field: [values]}``.

  Only fields that can vary inside one compiled program are accepted
  (``SWEEPABLE``).

  Raises:
    ValueError: a field that cannot vary, or values that are not numbers.
  """
  grid = {}
  allowed = sweepable()
  for item in items or ():
    if "=" not in item:
      raise ValueError(f"a grid must look like section.field=v1,v2, got "
                       f"{item!r}")
    key, values = item.split("=", 1)
    key = key.strip()
    if key not in allowed:
      raise ValueError(f"{key} cannot vary inside one compiled sweep; "
                       f"sweepable fields are {sorted(allowed)} (and "
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


def members(grid: dict, seeds) -> list:
  """Every ``(values, seed)`` of the grid x seeds, seeds outermost."""
  names = list(grid)
  combos = list(itertools.product(*[grid[n] for n in names])) or [()]
  return [(dict(zip(names, c)), s) for s in seeds for c in combos]


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
