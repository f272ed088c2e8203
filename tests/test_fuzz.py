"""Fuzzing the inputs: any input runs or fails with the documented error.

The config loader and the public factories either accept an input or raise
``ValueError`` (``ConfigError`` is one) with a message; never another
exception from deep inside JAX or numpy, never a hang.
"""

import numpy as np
import optax
from hypothesis import HealthCheck, given, settings, strategies as st

from fedasync_jax import (client, config, delays, rules, scheduler,
                          staleness)

values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))

FIELDS = {s: [f.name for f in config.dataclasses.fields(
    config.typing.get_type_hints(config.Config)[s])]
    for s in ("data", "model", "client", "rule", "delays", "run")}

section_dicts = st.dictionaries(
    st.sampled_from(sorted(FIELDS)),
    st.one_of(values, st.dictionaries(
        st.sampled_from(sorted({f for v in FIELDS.values() for f in v})
                        + ["bogus"]), values, max_size=4)),
    max_size=4)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(d=st.one_of(section_dicts, values))
def test_config_loader_accepts_or_raises_config_error(d):
  try:
    cfg = config.from_dict(d)
  except config.ConfigError as e:
    assert str(e)
    return
  assert isinstance(cfg, config.Config)
  assert config.from_dict(config.to_dict(cfg)) == cfg


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_config_files_with_garbage(tmp_path_factory, text):
  p = tmp_path_factory.mktemp("cfg") / "c.yaml"
  p.write_text(text)
  try:
    config.load(p)
  except config.ConfigError as e:
    assert str(e)


@settings(max_examples=200, deadline=None)
@given(override=st.text(max_size=40))
def test_overrides(override):
  try:
    config.apply_overrides(config.Config(), [override])
  except config.ConfigError as e:
    assert str(e)


# Any float, except integral values between 100 and 1e12: those are valid
# event counts that would simply run long (above 1e9 they are rejected).
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda x: not (100 < abs(x) < 1e12 and float(x).is_integer())),
    st.integers(-100, 100), st.integers(10**12, 10**30))

FACTORIES = [
    lambda a, b: staleness.polynomial(a),
    lambda a, b: staleness.hinge(a, b),
    lambda a, b: staleness.exponential(a),
    lambda a, b: staleness.cutoff(staleness.constant(), a),
    lambda a, b: staleness.koloskova(tau_c=a, lipschitz=b, lr=0.1),
    lambda a, b: staleness.mishchenko(a),
    lambda a, b: rules.fedasync(a),
    lambda a, b: rules.fedbuff(a),
    lambda a, b: rules.afl(clients_per_round=a, lr=b),
    lambda a, b: rules.size_weighted_mix(lr=a, mean_examples=b),
    lambda a, b: client.local_update(lambda *x: 0.0, optax.sgd(0.1),
                                     batch_size=a, max_examples=b),
    lambda a, b: client.local_update(lambda *x: 0.0, optax.sgd(0.1),
                                     batch_size=2, max_examples=4, epochs=a,
                                     patience=b),
    lambda a, b: delays.device_speeds("lognormal", 5, mean=a, sigma=b),
    lambda a, b: delays.device_speeds("pareto", 5, shape=a),
    lambda a, b: delays.device_speeds("uniform", 5, low=a, high=b),
    lambda a, b: delays.availability(5, period=a, on_fraction=b),
    lambda a, b: delays.delay_model(np.ones(3), np.ones(3), comm_time=a,
                                    dropout=b),
    lambda a, b: scheduler.asynchronous(
        delays.delay_model(np.ones(4), np.ones(4)), num_updates=a,
        concurrency=b),
    lambda a, b: scheduler.asynchronous(
        delays.delay_model(np.ones(4), np.ones(4)), num_updates=5,
        poisson_rate=a, max_staleness=b),
    lambda a, b: scheduler.synchronous(
        delays.delay_model(np.ones(4), np.ones(4)), num_rounds=a,
        cohort_size=b),
    lambda a, b: scheduler.synchronous(
        delays.delay_model(np.ones(4), np.ones(4)), num_rounds=2,
        cohort_size=2, deadline=a, over_selection=b),
]


@settings(max_examples=400, deadline=None)
@given(i=st.integers(0, len(FACTORIES) - 1), a=numbers, b=numbers)
def test_public_factories_accept_or_raise_value_error(i, a, b):
  # A numpy warning (inf - inf, overflow, x / 0) means an accepted input
  # computed something non-finite: fail instead of passing it on silently.
  # (Underflow to zero is ordinary rounding.)
  with np.errstate(invalid="raise", over="raise", divide="raise"):
    try:
      FACTORIES[i](a, b)
    except ValueError as e:
      assert str(e)


def test_a_binary_config_file_is_one_line_naming_it(tmp_path, capsys):
  from fedasync_jax import cli
  p = tmp_path / "garbage.yaml"
  p.write_bytes(bytes(range(128, 256)) + b"\xff\xfe\x00\x01")
  out = tmp_path / "never"
  assert cli.main(["run", "--config", str(p), "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.splitlines() == [err], err
  assert err.startswith(f"fedasync-jax: error: cannot read config file "
                        f"{p}: 'utf-8' codec can't decode"), err
  assert not out.exists()


def test_a_yaml_file_named_otherwise_says_it_was_read_as_json(tmp_path,
                                                              capsys):
  """A YAML file named my.txt failed with a bare JSON decoder error."""
  from fedasync_jax import cli
  p = tmp_path / "my.txt"
  p.write_text("run:\n  num_updates: 40\n")
  assert cli.main(["config", "--config", str(p)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.splitlines() == [err], err
  assert err.startswith(f"fedasync-jax: error: cannot parse config file "
                        f"{p} (read as JSON: a file not named .yaml, .yml "
                        f"or .json is read as JSON; name a YAML file .yaml "
                        f"or .yml): Expecting value"), err
