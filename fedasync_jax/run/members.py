"""The configured members built: staleness function, optimizers, rule,
the client update.

``build_member`` builds the member a ``Choice`` field names with the
parameters ``schema.member_values`` reads (its bound fields, the ``Extra``
mapping, the defaults); a parameter the member refuses is named by the
field that sets it (``rule.params.average must be ...``). ``build_rule``
builds the configured rule, with stand-in inputs before any data exist,
enough to ask it whether it is ``synchronous``.

Example:
  >>> from fedasync_jax.run import config
  >>> cfg = config.from_dict({"rule": {"name": "fedbuff", "buffer_size": 3}})
  >>> build_rule(cfg).arrivals_per_version
  3
"""

from __future__ import annotations

from typing import Optional

import optax

from fedasync_jax.core import client, rules, staleness
from fedasync_jax.run.schema import (ConfigError, family, member_field,
                                     member_values)


def build_member(values, section_name: str, choice: str, **inputs):
  """Builds the member that ``values.<choice>`` names from the configured
  parameters (``member_values``) and the ``inputs`` it declares."""
  m, params = member_values(values, section_name, choice)
  fam = family(section_name, choice)
  try:
    return fam.build(m.name, **params, **{k: v for k, v in inputs.items()
                                          if k in m.inputs})
  except ValueError as e:
    named = (None if isinstance(e, ConfigError) else
             _name_field(str(e), section_name, choice, fam, m))
    if named is None:
      raise
    raise ConfigError(named) from None


def _name_field(message: str, section_name: str, choice: str, fam,
                m) -> Optional[str]:
  """``message`` of a member's refused parameter (``"rule 'afl': average
  must be ..."``, ``"average must be ..."``) naming the field that sets
  it instead (``"rule.params.average must be ..."``); ``None`` when it
  starts with no parameter of ``m``."""
  where = f"{fam.family} {m.name!r}: "
  text = message[len(where):] if message.startswith(where) else message
  for p in m.params:
    field = member_field(section_name, choice, m.name, p.name)
    if field and text.startswith(p.name + " "):
      return field + text[len(p.name):]
  return None


def make_staleness(rule_cfg) -> staleness.StalenessFn:
  """The configured staleness function, cut off at ``max_staleness``."""
  fn = build_member(rule_cfg, "rule", "staleness")
  if rule_cfg.max_staleness is None:
    return fn
  return staleness.cutoff(fn, rule_cfg.max_staleness)


def make_optimizer(values, section_name: str, choice: str
                   ) -> optax.GradientTransformation:
  """The optimizer a ``Choice`` field names (``client.optimizer``,
  ``rule.server_optimizer``), with its bound fields' values."""
  return build_member(values, section_name, choice)


def make_update(cfg, model, fed) -> client.ClientUpdate:
  """The client update ``cfg.client`` describes, training ``model`` on the
  clients of ``fed``. ``epoch_decay`` and ``patience`` act between local
  epochs, so they are passed only with several (with one, the
  configuration's notices warn that they do nothing)."""
  c = cfg.client
  many = c.steps is None and c.epochs > 1
  return client.local_update(
      model.loss, make_optimizer(c, "client", "optimizer"),
      batch_size=c.batch_size, max_examples=fed.train.max_count,
      steps=c.steps, epochs=c.epochs if c.steps is None else 1,
      stateful=model.stateful, epoch_decay=c.epoch_decay and many,
      patience=c.patience if many else None)


RULE_INPUTS = {
    "staleness_fn": lambda cfg, fed: make_staleness(cfg.rule),
    "server_optimizer": lambda cfg, fed: make_optimizer(
        cfg.rule, "rule", "server_optimizer"),
    "mean_examples": lambda cfg, fed: (
        1.0 if fed is None else float(fed.train.counts.mean())),
}
"""What a rule may take besides its parameters, from the configuration and
the data (``fed=None``: a stand-in, before any data exist)."""


def build_rule(cfg, fed=None) -> rules.ServerRule:
  """The configured rule, unguarded. With ``fed=None`` the data-dependent
  inputs are stand-ins: enough to ask the rule about itself
  (``synchronous``, ``arrivals_per_version``).

  Raises:
    ConfigError: the rule needs an input the configuration cannot supply.
  """
  m = rules.RULES[cfg.rule.name]
  missing = [i for i in m.inputs if i not in RULE_INPUTS]
  if missing:
    raise ConfigError(f"rule {m.name!r} takes input(s) {missing} that a "
                      f"configuration cannot supply; known inputs: "
                      f"{sorted(RULE_INPUTS)}")
  inputs = {i: RULE_INPUTS[i](cfg, fed) for i in m.inputs}
  return build_member(cfg.rule, "rule", "name", **inputs)
