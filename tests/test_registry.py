"""Families register once; the configuration, CLI and sweeps derive from it.

A staleness function and a server rule registered here (and removed after)
run from a config dict and from ``fedasync-jax run --set``; every existing
member (``koloskova`` and ``mishchenko`` included) is reachable; unknown
names list the allowed ones; integer checks agree everywhere.
"""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from fedasync_jax import (cli, client, config, delays, experiment, models,
                          rules, scheduler, staleness)
from fedasync_jax.core import optimizers, registry
from fedasync_jax.core.registry import REQUIRED, Param
from fedasync_jax.data import datasets, partition
from fedasync_jax.run import grid, schema
from fedasync_jax.sim import strategies

# The plots take longer than these runs; the tests that look at them ask.
TINY = {"data": {"num_clients": 12},
        "client": {"batch_size": 20},
        "run": {"num_updates": 24, "concurrency": 3, "eval_every": 8,
                "chunk_steps": 8, "plots": False}}


@pytest.fixture
def new_members():
  """Registers staleness ``scaled`` (``s = level``) and rule ``mixer``
  (FedAsync with weight ``w``); removes them afterwards."""

  @staleness.STALENESS.register("scaled", params=(
      Param("level", REQUIRED, low=0, high=1, sweepable=True,
            meaning="the weight of every update"),))
  def scaled(level):
    staleness.STALENESS.check("scaled", level=level)
    return lambda tau: level * jnp.ones_like(jnp.asarray(tau, jnp.float32))

  @rules.RULES.register("mixer", params=(
      Param("w", 0.5, low=0, high=1, sweepable=True,
            meaning="mixing weight"),), inputs=("staleness_fn",))
  def mixer(w, staleness_fn=None):
    """FedAsync under another name: mix with weight w s(tau)."""
    return rules.fedasync(w, staleness_fn)

  try:
    yield
  finally:
    staleness.STALENESS.remove("scaled")
    rules.RULES.remove("mixer")
  assert "scaled" not in staleness.STALENESS
  assert "mixer" not in rules.RULES


def _cfg(**rule):
  return config.from_dict({**TINY, "rule": rule})


def _final_params(out):
  return jax.tree.leaves(serialization.msgpack_restore(
      (out / "final_params.msgpack").read_bytes()))


def _assert_initial(cfg, leaves):
  init = jax.tree.leaves(experiment.setup(cfg).params)
  assert len(init) == len(leaves)
  for a, b in zip(init, leaves):
    np.testing.assert_array_equal(a, b)


def test_new_members_run_from_a_config_dict(tmp_path, new_members):
  frozen = _cfg(name="mixer", params={"w": 0.7}, staleness="scaled",
                staleness_params={"level": 0})
  assert frozen.rule.staleness_params == {"level": 0.0}
  experiment.train_and_evaluate(frozen, tmp_path / "frozen",
                                show_progress=False)
  # s(tau) = 0: no update moves the model.
  _assert_initial(frozen, _final_params(tmp_path / "frozen"))
  # s(tau) = 1 with weight 0.7 is FedAsync(0.7) with constant staleness.
  summaries = {}
  for name, cfg in [
      ("new", _cfg(name="mixer", params={"w": 0.7}, staleness="scaled",
                   staleness_params={"level": 1.0})),
      ("builtin", _cfg(name="fedasync", alpha=0.7, staleness="constant"))]:
    summaries[name] = experiment.train_and_evaluate(
        cfg, tmp_path / name, show_progress=False)
  new, builtin = (_final_params(tmp_path / n) for n in ("new", "builtin"))
  with pytest.raises(AssertionError):  # this one did train
    _assert_initial(frozen, new)
  for a, b in zip(new, builtin):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert summaries["new"]["client_updates"] == 24


def test_new_members_run_from_the_command_line(tmp_path, capsys,
                                               new_members):
  base = ["--set=data.num_clients=12", "--set=client.batch_size=20",
          "--set=run.num_updates=24", "--set=run.concurrency=3",
          "--set=run.eval_every=8"]
  out = tmp_path / "cli"
  assert cli.main(["run", "--out", str(out), "--set", "rule.staleness=scaled",
                   "--set", "rule.staleness_params.level=0", "--set",
                   "rule.name=mixer", "--set", "rule.params.w=0.4",
                   *base]) == 0
  resolved = json.loads((out / "config.json").read_text())["rule"]
  assert resolved["name"] == "mixer" and resolved["params"] == {"w": 0.4}
  assert resolved["staleness_params"] == {"level": 0.0}
  _assert_initial(config.load(out / "config.json"), _final_params(out))
  # Out-of-range and unknown parameters are rejected before any work.
  bad = tmp_path / "never"
  for item, match in [
      ("rule.staleness_params.level=2",
       "rule.staleness_params.level must be in [0, 1], got 2.0"),
      ("rule.staleness_params.bogus=1", "takes no parameter(s) ['bogus']"),
      ("rule.params.w=x", "rule.params.w must be a number")]:
    assert cli.main(["run", "--out", str(bad), "--set",
                     "rule.staleness=scaled", "--set", "rule.name=mixer",
                     "--set", "rule.staleness_params.level=0.5", "--set",
                     item, *base]) == 2
    assert match in capsys.readouterr().err
    assert not bad.exists()


def test_new_members_are_documented_and_sweepable(new_members, capsys):
  assert "scaled" in config.STALENESS and "mixer" in config.RULES
  assert grid.SWEEPABLE["rule.staleness_params.level"] == \
      "staleness_params.level"
  assert grid.SWEEPABLE["rule.params.w"] == "params.w"
  assert cli.main(["config"]) == 0
  text = capsys.readouterr().out
  assert "scaled.level: the weight of every update; number in [0, 1]; " \
         "required" in text
  assert "mixer: FedAsync under another name" in text
  with pytest.raises(config.ConfigError,
                     match="rule.staleness_params.level is required by "
                           "staleness 'scaled'"):
    _cfg(staleness="scaled")
  with pytest.raises(ValueError, match="already registered"):
    staleness.STALENESS.add("scaled", staleness.constant)


def test_sweep_varies_a_new_members_parameter(tmp_path, new_members):
  cfg = _cfg(staleness="scaled", staleness_params={"level": 0.5})
  rows = experiment.sweep_and_evaluate(
      cfg, grid.parse_grid(["rule.staleness_params.level=0,1"]), [0],
      tmp_path, show_progress=False)
  assert [r["rule.staleness_params.level"] for r in rows] == [0.0, 1.0]
  losses = []
  for i in range(2):
    with open(tmp_path / f"m{i}" / "history.csv") as f:
      losses.append([float(r["test_loss"]) for r in csv.DictReader(f)])
  assert len(set(losses[0])) == 1       # s = 0: the model never moves
  assert len(set(losses[1])) > 1


def test_a_new_synchronous_rule_gets_rounds():
  @rules.RULES.register("slow_avg", params=(
      Param("step", 0.5, low=0, low_open=True, meaning="server step"),))
  def slow_avg(step):
    return rules.fedavg(optax.sgd(step))

  try:
    cfg = _cfg(name="slow_avg", params={"step": 0.25})
    fed = experiment.load_data(cfg)
    rule = experiment.make_rule_from(cfg, fed)
    assert rule.synchronous
    sched = experiment.make_schedule(cfg, fed, rule)
    assert sched.synchronous and sched.stats["num_versions"] == 24 // 3
    with pytest.raises(config.ConfigError, match="'slow_avg' is synchronous"):
      config.apply_overrides(cfg, ["run.poisson_rate=2"])
  finally:
    rules.RULES.remove("slow_avg")


def test_a_new_rules_parameters_are_named_by_their_rule_params_entry():
  """A rule's ``per_version`` parameter, its factory's own checks and a
  boolean entry are named ``rule.params.<name>``; the boolean takes
  ``true``/``false`` from ``--set`` and a real boolean from a file."""
  @rules.RULES.register("batches", params=(
      Param("k", 4, low=1, kind=int, meaning="arrivals per version"),
      Param("flag", False, kind=bool, meaning="a switch")),
      inputs=("staleness_fn",), per_version="k")
  def batches(k, flag, staleness_fn=None):
    del flag
    if k % 2:
      raise ValueError(f"k must be even, got {k}")
    return rules.fedbuff(k, staleness_fn=staleness_fn)

  base = ["rule.name=batches", "run.num_updates=24"]
  try:
    cfg = config.apply_overrides(config.Config(),
                                 base + ["rule.params.flag=TRUE"])
    assert cfg.rule.params == {"flag": True}
    assert config.from_dict({"rule": {"name": "batches", "params": {
        "flag": False}}}).rule.params == {"flag": False}
    for extra, message in [
        (["rule.params.k=30"], "rule.params.k=30 client updates per server "
         "version is more than run.num_updates (24)"),
        (["rule.params.k=3"], "rule.params.k must be even, got 3"),
        (["rule.params.flag=1"],
         "rule.params.flag must be true or false, got '1'")]:
      with pytest.raises(config.ConfigError) as e:
        config.apply_overrides(config.Config(), base + extra)
      assert str(e.value).startswith(message), str(e.value)
    with pytest.raises(config.ConfigError) as e:
      config.from_dict({"rule": {"name": "batches", "params": {
          "flag": "true"}}})
    assert str(e.value) == ("rule.params.flag must be true or false, got "
                            "'true'")
  finally:
    rules.RULES.remove("batches")


@pytest.mark.parametrize("name, params, direct", [
    ("koloskova", {"tau_c": 2, "lipschitz": 1.0, "lr": 0.1},
     staleness.koloskova(tau_c=2, lipschitz=1.0, lr=0.1)),
    ("mishchenko", {"n": 3}, staleness.mishchenko(3.0)),
])
def test_koloskova_and_mishchenko_run_from_config(tmp_path, name, params,
                                                  direct):
  cfg = config.apply_overrides(
      config.from_dict(TINY),
      [f"rule.staleness={name}"] +
      [f"rule.staleness_params.{k}={v}" for k, v in params.items()])
  s = experiment.make_staleness(cfg.rule)
  taus = jnp.arange(12)
  np.testing.assert_allclose(s(taus), direct(taus), rtol=1e-6)
  assert not np.allclose(s(taus), 1.0)  # the function is not constant here
  summary = experiment.train_and_evaluate(cfg, tmp_path, show_progress=False)
  assert summary["client_updates"] == 24
  with pytest.raises(config.ConfigError,
                     match=f"staleness_params.{next(iter(params))} is "
                           f"required by staleness '{name}'"):
    config.from_dict({**TINY, "rule": {"staleness": name}})


@pytest.mark.parametrize("field, family", [
    ("staleness", staleness.STALENESS), ("name", rules.RULES),
    ("server_optimizer", optimizers.OPTIMIZERS)])
def test_unknown_name_lists_the_allowed_ones(field, family):
  with pytest.raises(config.ConfigError) as e:
    config.from_dict({"rule": {field: "nope"}})
  for name in family.names():
    assert name in str(e.value)
  with pytest.raises(ValueError) as e:
    family["nope"]
  assert all(name in str(e.value) for name in family.names())
  with pytest.raises(ValueError, match="koloskova"):
    staleness.get("nope")


def _registries():
  out = [staleness.STALENESS, rules.RULES, optimizers.OPTIMIZERS,
         delays.SPEEDS, delays.JITTERS, scheduler.SELECTIONS,
         strategies.BATCHINGS]
  for mod, name in ((models, "MODELS"), (datasets, "DATASETS"),
                    (partition, "PARTITIONS")):
    if isinstance(getattr(mod, name, None), registry.Registry):
      out.append(getattr(mod, name))
  return out


def test_every_members_one_line_doc_is_a_whole_sentence(capsys):
  """``run --help`` and the config file's comments print each member's doc;
  afl's stopped mid-sentence ("... size- and staleness-weighted") when only
  its docstring's first line was taken."""
  for family in (rules.RULES, staleness.STALENESS):
    for m in family.members():
      assert m.doc.endswith("."), (family.family, m.name, m.doc)
  with pytest.raises(SystemExit):
    cli.main(["run", "--help"])
  out = capsys.readouterr().out
  assert ("staleness-weighted average of each round's ``M`` returned models."
          in out)


def _ok_int(p):
  n = int(p.low) + 2 if p.low is not None else 3
  return min(n, int(p.high)) if p.high is not None else n


def test_integer_checks_agree_across_registry_params():
  seen = 0
  for reg in _registries():
    for m in reg.members():
      for p in m.params:
        if p.kind not in (int, float):
          continue
        with pytest.raises(ValueError, match=p.name):
          p.check(True)
        if p.kind is int:
          n = _ok_int(p)
          assert p.check(float(n)) == n and type(p.check(float(n))) is int
          with pytest.raises(ValueError, match=p.name):
            p.check(n + 0.5)
          seen += 1
  assert seen >= 3  # buffer_size, batching's batch_size, partitions...


def test_integer_checks_agree_in_config_and_factories():
  for sec, name in [("rule", "buffer_size"), ("run", "concurrency"),
                    ("client", "batch_size"), ("rule", "max_staleness")]:
    for bad in (True, 3.5):
      with pytest.raises(config.ConfigError, match=f"{sec}.{name}"):
        config.from_dict({sec: {name: bad}})
    assert getattr(getattr(config.from_dict({sec: {name: 3.0}}), sec),
                   name) == 3
  m = delays.delay_model(np.ones(4), np.ones(4))
  fn = staleness.constant()
  for call in (lambda v: rules.fedbuff(v).arrivals_per_version,
               lambda v: staleness.cutoff(fn, v).max_staleness,
               lambda v: scheduler.asynchronous(
                   m, num_updates=v, concurrency=2).num_arrivals,
               lambda v: client.local_update(
                   lambda *a: 0.0, optax.sgd(0.1), batch_size=v,
                   max_examples=4).batch_size,
               lambda v: delays.device_speeds("constant", v).size):
    assert call(3.0) == 3
    for bad in (True, 3.5):
      with pytest.raises(ValueError):
        call(bad)
  with pytest.raises(ValueError, match="alpha"):
    rules.fedasync(True)


def test_config_ranges_and_meanings_come_from_the_declarations():
  p = rules.RULES["fedasync"].param("alpha")
  assert config.allowed("rule", "alpha") == schema.describe(p)
  assert config.MEANING["rule", "alpha"] == p.meaning
  shape = delays.SPEEDS["pareto"].param("shape")
  assert config.RANGES["delays", "pareto_shape"] == (
      shape.low, shape.high, shape.low_open, shape.high_open)
  assert config.Config().rule.buffer_size == \
      rules.RULES["fedbuff"].param("buffer_size").default
  assert config.SELECTIONS == scheduler.SELECTIONS.names()
  assert set(strategies.BATCHINGS.names()) < set(config.BATCHINGS)
  assert set(grid.SWEEPABLE) >= {"rule.alpha", "rule.staleness_a",
                                 "rule.staleness_b", "rule.server_lr",
                                 "rule.afl_lr", "client.lr",
                                 "rule.staleness_params.n"}
  assert "rule.buffer_size" not in grid.SWEEPABLE
  assert "rule.server_momentum" not in grid.SWEEPABLE
