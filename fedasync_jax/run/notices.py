"""Warnings, not silence: settings that do nothing, runs that learned nothing.

``config_warnings(cfg)`` lists the fields set away from their default that
the chosen members or schedule never read. Which fields apply is derived
from the schema wherever it can be:

* a ``Bound`` field (``rule.buffer_size``, ``delays.sigma``...) applies when
  the member its ``Choice`` names declares the parameter (and, for a field
  bound to one member, is that member);
* the choices a rule takes as inputs (``rule.staleness`` feeds the rule's
  ``staleness_fn``, ``rule.server_optimizer`` its ``server_optimizer``)
  apply when the chosen rule declares that input, and so do the fields
  bound to them and ``INPUT_FIELDS``;
* ``data.partition`` and ``data.alpha`` do not apply to a data set that
  comes federated (``datasets.DATASETS`` member ``info["federated"]``),
  nor a loader's field (``data.path``, ``data_dir``, ``download``) to a
  data set whose member does not declare it;
* ``SYNCHRONOUS_ONLY`` lists the schedule fields of synchronous rules;
* ``client.epochs`` does nothing with fixed ``client.steps``, and
  ``EPOCH_FIELDS`` nothing with a single pass (``steps``, or one epoch);
* the trace settings (``traces.TRACE_PARAMS``, ``delays.trace_mapping``)
  apply only to the trace files that read them (``_unused_trace_fields``).

``sweep_warnings(cfg, grid)`` adds a sweep's grid fields that its members
never read, whatever their values.

``result_warnings(summary)`` lists what a finished run should not hide: no
update applied at all, every update quarantined, no server version applied,
a final loss or accuracy that is not finite, a clock that never moved.

Example:
  >>> from fedasync_jax.run import config
  >>> cfg = config.from_dict({"run": {"deadline": 5.0},
  ...                         "rule": {"buffer_size": 4}})
  >>> for w in config_warnings(cfg): print(w)
  rule.buffer_size=4 does nothing with rule.name 'fedasync' (it applies to rule.name fedbuff)
  run.deadline=5.0 does nothing with rule.name 'fedasync' (it applies to synchronous rules: fedavg)
  >>> result_warnings({"client_updates": 5, "dropped_updates": 5,
  ...                  "quarantined_updates": 5})
  ['all 5 client updates were quarantined (NaN or Inf): the model never changed']
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Optional

from fedasync_jax.core import rules
from fedasync_jax.core.checks import show
from fedasync_jax.run import members, schema
from fedasync_jax.run.grid import get_field
from fedasync_jax.sim import traces

INPUTS = {"staleness": "staleness_fn", "server_optimizer": "server_optimizer"}
"""``rule`` choices that a rule takes as an input, by the input's name."""
INPUT_FIELDS = {"staleness": ("max_staleness",)}
"""Own fields that only serve a rule input's choice."""
SYNCHRONOUS_ONLY = ("num_rounds", "over_selection", "deadline")
"""``run`` fields that only synchronous rules read."""
_FEDERATED_ONLY = ("partition", "alpha")
_PICKLES = (".pkl", ".pickle")
_TABLE = ("a device table in delays.trace_path: .pkl, .json, or .csv with a "
          "computation column")
EPOCH_FIELDS = ("epoch_decay", "patience")
"""``client`` fields that act between local epochs: nothing with one."""


def _default(sec: str, name: str):
  return schema.param(sec, name).default


def _set(values, sec: str, name: str) -> bool:
  """Whether ``sec.name`` differs from its default."""
  v = getattr(values, name)
  if isinstance(schema.spec(sec, name), schema.Extra):
    return bool(v)
  return v != _default(sec, name)


def _users(sec: str, b) -> list:
  """The members of ``b``'s choice that read the bound field."""
  fam = schema.family(sec, b.choice)
  if not isinstance(fam, schema.Registry):
    return []
  return [m.name for m in fam.members()
          if (b.member in (None, m.name))
          and any(p.name == b.param for p in m.params)]


def _rules_with(input_name: str) -> list:
  return [m.name for m in rules.RULES.members() if input_name in m.inputs]


def _unused_by_choice(cfg) -> list:
  """``(field, why)`` of the rule inputs' fields the chosen rule ignores."""
  out = []
  rule = rules.RULES[cfg.rule.name]
  for choice, inp in INPUTS.items():
    if inp in rule.inputs:
      continue
    users = ", ".join(_rules_with(inp))
    fields = [choice, *INPUT_FIELDS.get(choice, ()),
              *(f.name for f in schema.section("rule").fields
                if isinstance(f, (schema.Bound, schema.Extra))
                and f.choice == choice)]
    out += [(f, f"it applies to rule.name {users}") for f in fields]
  return [("rule", f, "name", why) for f, why in out]


def _unused_trace_fields(d) -> dict:
  """``{field: (the field it depends on, why)}`` of the ``delays`` trace
  settings that no trace file of the run reads."""
  takes = "trace" in schema.family("delays", "speeds")[d.speeds].inputs
  path = d.trace_path if takes else None
  table = path if path and traces.is_device_table(path) else None
  avail = d.availability_trace
  out = {}
  if table is None:
    dep, why = (("trace_path", "a list of speeds, cycled over the clients; "
                 "it applies to " + _TABLE) if path else
                ("speeds", "it applies with delays.speeds trace to "
                 + _TABLE))
    out.update({f: (dep, why) for f in ("augmentation", "model_kbit")})
  if avail is None or Path(avail).suffix != ".csv":
    out["trace_period"] = ("availability_trace", (
        "FedScale's traces repeat with their finish_time; it applies to a "
        ".csv availability trace" if avail else
        "it applies to a .csv availability trace"))
  if table is None and avail is None:
    out["trace_mapping"] = ("availability_trace", (
        "it applies to an availability trace or to " + _TABLE))
  if not any(Path(p).suffix in _PICKLES for p in (table, avail) if p):
    out["trust_pickle"] = (
        "trace_path" if table else "availability_trace",
        "no trace file of the run is a pickle, .pkl or .pickle")
  return out


def unused_fields(cfg) -> dict:
  """The fields the run never reads, whatever their values.

  Returns:
    ``{"section.field": "with CHOICE 'VALUE' (why)"}``.

  Example:
    >>> from fedasync_jax.run import config
    >>> unused_fields(config.Config())["rule.buffer_size"]
    "with rule.name 'fedasync' (it applies to rule.name fedbuff)"
  """
  found = {}  # (section, field) -> (the choice it depends on, why)
  for sec, f, choice, why in _unused_by_choice(cfg):
    found[(sec, f)] = (choice, why)
  for sec in schema.SECTIONS:
    values = getattr(cfg, sec.name)
    for f in sec.fields:
      if not isinstance(f, schema.Bound) or (sec.name, f.name) in found:
        continue
      users = _users(sec.name, f)
      if getattr(values, f.choice) not in users:
        found[(sec.name, f.name)] = (f.choice, (
            f"it applies to {sec.name}.{f.choice} {', '.join(users)}"))
  family = schema.family("data", "name")
  ds = family[cfg.data.name]
  if ds.info.get("federated"):
    for f in _FEDERATED_ONLY:
      found.setdefault(("data", f), ("name", "the data set comes "
                                         "federated"))
  # the loaders' own fields (path, data_dir, download) that this one lacks
  own = {f.name for f in schema.section("data").fields
         if not isinstance(f, schema.Bound)}
  read = {p.name for p in ds.params}
  for f in sorted({p.name for n in family.names() for p in family[n].params}
                  & own - read):
    users = [n for n in family.names() if f in {p.name for p in
                                                family[n].params}]
    found.setdefault(("data", f), ("name", f"it applies to data.name "
                                           f"{', '.join(users)}"))
  for f, dep in _unused_trace_fields(cfg.delays).items():
    found[("delays", f)] = dep
  c = cfg.client
  if c.steps is not None or c.epochs == 1:  # one pass of local training
    by = "client.steps" if c.steps is not None else "client.epochs"
    for f in (("epochs",) if c.steps is not None else ()) + EPOCH_FIELDS:
      found.setdefault(("client", f), (by, (
          "fixed local steps are one pass" if c.steps is not None else
          "one epoch") + "; it acts from the second epoch on"
          if f != "epochs" else "fixed local steps replace epochs"))
  if cfg.run.poisson_rate is not None:
    found.setdefault(("run", "concurrency"), (
        "poisson_rate", "an open loop dispatches at that rate; "
        "run.concurrency is the closed loop's tasks in flight"))
  if not members.build_rule(cfg).synchronous:
    sync = [m for m in rules.RULES.names() if _synchronous(cfg, m)]
    for f in SYNCHRONOUS_ONLY:
      found[("run", f)] = ("rule.name", "it applies to synchronous rules: "
                           + ", ".join(sync))
  out = {}
  for (sec, f), (choice, why) in found.items():
    where = choice if "." in choice else f"{sec}.{choice}"
    s_, c_ = where.split(".")
    out[f"{sec}.{f}"] = (f"with {where} {getattr(getattr(cfg, s_), c_)!r} "
                         f"({why})")
  return out


def config_warnings(cfg) -> list:
  """Fields set away from their default that the run never reads.

  Returns:
    One sentence per field (``"run.deadline=5.0 does nothing with ..."``).
  """
  out = _unused_updates(cfg) + _sizes_twice(cfg) + _adaptive_at_one(cfg)
  for key, ctx in unused_fields(cfg).items():
    sec, f = key.split(".")
    values = getattr(cfg, sec)
    if _set(values, sec, f):
      out.append(f"{key}={getattr(values, f)!r} does nothing {ctx}")
  return sorted(out, key=_order(cfg))


ADAPTIVE = ("adam", "yogi", "adagrad", "fedadam", "fedyogi", "fedadagrad")
"""Server optimizers whose step moves each coordinate by about the rate."""


def _adaptive_at_one(cfg) -> list:
  """``rule.server_lr`` left at 1.0, the plain average's rate, with an
  adaptive server optimizer: each step then moves every coordinate by
  about 1.0, whatever the clients' updates."""
  r = cfg.rule
  rule = rules.RULES[r.name]
  if ("server_optimizer" not in rule.inputs or r.server_optimizer
      not in ADAPTIVE or _set(r, "rule", "server_lr")):
    return []
  return [f"rule.server_lr={r.server_lr} (its default, the plain "
          f"average's rate) with rule.server_optimizer="
          f"{r.server_optimizer!r} moves every coordinate by about "
          f"{r.server_lr} per server step, whatever the clients' updates; "
          f"set rule.server_lr (adaptive server rates are tuned, well "
          f"below 1)"]


def _sizes_twice(cfg) -> list:
  """FedAvg weights each update by its client's examples; drawing the
  clients by their examples as well counts a client's size twice."""
  if cfg.run.selection != "weighted" or cfg.rule.name != "fedavg":
    return []
  return ["run.selection='weighted' draws clients in proportion to their "
          "examples and FedAvg weights their updates by their examples too, "
          "so a client's size counts twice (McMahan et al. draw uniformly "
          "and weight by examples; FedProx's Algorithm 2 draws by weight "
          "and averages plainly)"]


def _unused_updates(cfg) -> list:
  """``run.num_updates`` that the run cannot use in full: a synchronous
  rule runs whole rounds of ``run.concurrency`` updates (or
  ``run.num_rounds`` of them, and then ``num_updates`` is not read), and a
  rule that applies a version every ``K`` updates never applies the last
  ``num_updates % K``.

  Example:
    >>> from fedasync_jax.run import config
    >>> cfg = config.from_dict({"rule": {"name": "fedavg"},
    ...                         "run": {"num_updates": 255}})
    >>> print(_unused_updates(cfg)[0])
    run.num_updates=255 is not a multiple of run.concurrency=10, the updates in each round of the synchronous rule 'fedavg': the run has 25 rounds, 250 client updates (set run.num_rounds, or a multiple)
  """
  run = cfg.run
  try:
    rule = members.build_rule(cfg)
  except (ValueError, TypeError):
    return []  # (the configuration's own checks say why)
  n = run.num_updates
  if rule.synchronous:
    out = []
    if run.num_rounds is not None and _set(run, "run", "num_updates"):
      out.append(f"run.num_updates={n} does nothing with run.num_rounds="
                 f"{run.num_rounds} (the synchronous rule {cfg.rule.name!r} "
                 f"runs {run.num_rounds} rounds of at most run.concurrency="
                 f"{run.concurrency} updates)")
    if run.num_rounds is not None or n % run.concurrency == 0:
      return out
    rounds = max(1, n // run.concurrency)
    return [f"run.num_updates={n} is not a multiple of run.concurrency="
            f"{run.concurrency}, the updates in each round of the "
            f"synchronous rule {cfg.rule.name!r}: the run has {rounds} "
            f"rounds, {rounds * run.concurrency} client updates (set "
            f"run.num_rounds, or a multiple)", *out]
  k = rule.arrivals_per_version or 1
  if k == 1 or n % k == 0:
    return []
  field = schema.per_version_field(cfg.rule.name) or "the rule's updates"
  return [f"run.num_updates={n} is not a multiple of {field}={k}, the "
          f"client updates per server version: the last {n % k} fill no "
          f"version and are never applied"]


def sweep_warnings(cfg, grid: dict, seeds=None) -> list:
  """A sweep's ``config_warnings``: those of its base configuration, less
  the fields the grid replaces, then one per grid field that its members
  never read (members that differ only in it are identical), and one per
  base value that the grid or the seeds replace (``--set rule.alpha=0.9``
  beside ``--grid rule.alpha=0.3,0.6``: set, and used by no member).

  Args:
    cfg: the base configuration.
    grid: ``{field: [values]}`` (``grid.parse_grid``).
    seeds: the members' seeds (``None``: the base's ``run.seed``).

  Example:
    >>> from fedasync_jax.run import config
    >>> cfg = config.from_dict({"rule": {"name": "fedbuff"}})
    >>> for w in sweep_warnings(cfg, {"rule.alpha": [0.3, 0.9]}): print(w)
    --grid rule.alpha=0.3,0.9 does nothing with rule.name 'fedbuff' (it applies to rule.name fedasync); members that differ only in it are identical
  """
  unused = unused_fields(cfg)
  out = [w for w in config_warnings(cfg) if w.split("=", 1)[0] not in grid]
  for key, values in grid.items():
    ctx = unused.get(".".join(key.split(".")[:2]))
    if ctx is not None:
      out.append(f"--grid {key}={','.join(repr(v) for v in values)} does "
                 f"nothing {ctx}; members that differ only in it are "
                 f"identical")
  read = {k: v for k, v in grid.items()
          if unused.get(".".join(k.split(".")[:2])) is None}
  return out + _replaced_base_values(cfg, read, seeds)


def _replaced_base_values(cfg, grid: dict, seeds) -> list:
  """Base values, other than the defaults, that no member uses: a grid
  field's (not among its grid values) and ``run.seed`` (not among
  ``seeds``)."""
  default, out = type(cfg)(), []
  base, defaults = dataclasses.asdict(cfg), dataclasses.asdict(default)
  for key, values in grid.items():
    value = get_field(base, key)
    if value != get_field(defaults, key) and value not in values:
      out.append(f"{key}={show(value)} in the base configuration does "
                 f"nothing: --grid {key} gives every member its own value")
  seed = cfg.run.seed
  if seeds is not None and seed != default.run.seed and seed not in seeds:
    out.append(f"run.seed={seed} in the base configuration does nothing: "
               f"--seeds {','.join(str(s) for s in seeds)} gives every "
               f"member its own seed")
  return out


def _synchronous(cfg, name: str) -> bool:
  """Whether rule ``name``, with its own defaults, is synchronous (False
  when it cannot be built without parameters the configuration lacks)."""
  import dataclasses
  other = dataclasses.replace(cfg, rule=dataclasses.replace(
      cfg.rule, name=name, params={}))
  try:
    return members.build_rule(other).synchronous
  except (schema.ConfigError, ValueError):
    return False


def _order(cfg):
  """Sorts warnings in the order of the sections and fields."""
  del cfg
  rank = {f"{s.name}.{f.name}": (i, j) for i, s in enumerate(schema.SECTIONS)
          for j, f in enumerate(s.fields)}
  return lambda w: rank.get(w.split("=", 1)[0], (99, 0))


_DIVERGED = "the model diverged (lower client.lr or rule.server_lr)"


def result_warnings(summary: dict) -> list:
  """What a finished run's ``summary`` should not hide: no update applied,
  every update quarantined, no server version applied (a buffer that never
  filled), a final test loss or accuracy that is NaN or infinite, more
  open-loop dispatches skipped than client updates made, and simulated
  time that never advanced (every arrival at time 0).

  Example:
    >>> result_warnings({"client_updates": 8, "versions": 0})[0][:33]
    'no server version was applied (8 '
  """
  n = int(summary.get("client_updates", 0))
  dropped = int(summary.get("dropped_updates", 0))  # with the quarantined
  quarantined = int(summary.get("quarantined_updates", 0))
  if n and quarantined >= n:
    out = [f"all {n} client updates were quarantined (NaN or Inf): the "
           f"model never changed"]
  elif n - dropped <= 0:
    out = [f"no client update was applied ({n} received, "
           f"{dropped - quarantined} dropped as too stale, {quarantined} "
           f"quarantined): the model never changed"]
  elif summary.get("versions", 1) == 0:
    out = [f"no server version was applied ({n} client updates received, "
           f"none reached the model; a buffered rule's buffer never "
           f"filled?): the model never changed"]
  else:
    out = []
  for key in ("loss", "accuracy"):
    v = summary.get(f"final_test_{key}")
    if v is not None and not math.isfinite(float(v)):
      out.append(f"the final test {key} is {float(v)}: {_DIVERGED}")
  skipped = int(summary.get("skipped_dispatches") or 0)
  if n and skipped >= n:
    out.append(f"{skipped} open-loop dispatches found no idle, available "
               f"client and were skipped, against {n} client updates: "
               f"run.poisson_rate is above what the clients can serve (the "
               f"population, its availability and its speeds set the load)")
  if n > 1 and summary.get("simulated_time", 1.0) == 0:
    out.append(f"simulated time did not advance (every one of the {n} "
               f"client updates arrived at time 0): the delays are "
               f"degenerate (see delays.*)")
  return out


def warn(messages, stream=None, into: Optional[list] = None) -> list:
  """Prints each message as ``fedasync-jax: warning: ...`` (on ``stream``,
  default stderr) and appends it to ``into``; returns ``into``."""
  into = [] if into is None else into
  for m in messages:
    print(f"fedasync-jax: warning: {m}", file=stream or sys.stderr)
    into.append(m)
  return into
