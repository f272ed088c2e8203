"""Delay-model fields of the configuration: validation, overrides, effect."""

import json

import numpy as np
import pytest
import yaml

from fedasync_jax import cli, config, delays, experiment

SMALL = {"data": {"num_clients": 20},
         "run": {"num_updates": 40, "concurrency": 4}}


def _cfg(**delay_fields):
  return config.from_dict({**SMALL, "delays": delay_fields})


def _durations(cfg):
  fed = experiment.load_data(cfg)
  rule = experiment.make_rule_from(cfg, fed)
  s = experiment.make_schedule(cfg, fed, rule)
  return s, s.arrival_time - s.dispatch_time, fed


def test_delay_fields_reach_the_delay_model():
  cfg = _cfg(speeds="pareto", pareto_shape=3.5, jitter="lognormal",
             jitter_sigma=0.25, comm_time=0.5)
  fed = experiment.load_data(cfg)
  m = experiment.make_delays(cfg, fed)
  assert m.jitter == "lognormal" and m.jitter_sigma == 0.25
  assert m.comm_time == 0.5
  np.testing.assert_array_equal(
      m.speed, delays.device_speeds("pareto", 20, seed=0, shape=3.5))
  assert not np.array_equal(
      m.speed, delays.device_speeds("pareto", 20, seed=0, shape=2.0))


def test_uniform_bounds_reach_the_speeds():
  cfg = _cfg(speeds="uniform", uniform_low=2.0, uniform_high=3.0)
  m = experiment.make_delays(cfg, experiment.load_data(cfg))
  assert m.speed.min() >= 2.0 and m.speed.max() <= 3.0


def test_jitter_sigma_zero_gives_exact_durations():
  cfg = _cfg(speeds="lognormal", jitter="lognormal", jitter_sigma=0.0)
  s, dur, fed = _durations(cfg)
  m = experiment.make_delays(cfg, fed)
  np.testing.assert_allclose(dur, (m.speed * m.work)[s.client], rtol=1e-9)
  # ... and a positive sigma spreads them.
  _, dur2, _ = _durations(_cfg(jitter="lognormal", jitter_sigma=0.8))
  assert not np.allclose(dur2, (m.speed * m.work)[s.client], rtol=1e-3)


def test_trace_speeds_from_csv_and_npy(tmp_path):
  csv = tmp_path / "speeds.csv"
  csv.write_text("1.0, 2.0\n4.0\n")
  cfg = _cfg(speeds="trace", trace_path=str(csv), jitter="none")
  m = experiment.make_delays(cfg, experiment.load_data(cfg))
  np.testing.assert_array_equal(m.speed[:6], [1, 2, 4, 1, 2, 4])
  npy = tmp_path / "speeds.npy"
  np.save(npy, np.array([3.0, 5.0]))
  cfg = _cfg(speeds="trace", trace_path=str(npy))
  m = experiment.make_delays(cfg, experiment.load_data(cfg))
  np.testing.assert_array_equal(m.speed[:4], [3, 5, 3, 5])


@pytest.mark.parametrize("content, match", [
    (None, "cannot read"), ("1.0, x", "cannot read"),
    ("1.0, -2.0", "finite and > 0"), ("", "at least one")])
def test_bad_trace_file_names_the_field(tmp_path, content, match):
  p = tmp_path / "t.txt"
  if content is not None:
    p.write_text(content)
  cfg = _cfg(speeds="trace", trace_path=str(p))
  with pytest.raises(config.ConfigError, match="delays.trace_path") as e:
    experiment.make_delays(cfg, experiment.load_data(cfg))
  assert match in str(e.value)


def test_availability_windows_are_respected():
  cfg = _cfg(availability_period=10.0, availability_on_fraction=0.3)
  s, _, fed = _durations(cfg)
  m = experiment.make_delays(cfg, fed)
  assert m.availability is not None
  assert m.availability.on_fraction == 0.3
  assert np.all(m.availability.available(s.client, s.dispatch_time))
  # Without the windows some dispatches would fall outside them.
  s0, _, _ = _durations(_cfg())
  assert not np.all(m.availability.available(s0.client, s0.dispatch_time))


@pytest.mark.parametrize("fields, match", [
    ({"pareto_shape": 0}, r"delays.pareto_shape must be in \[0\.5, 1e\+18\], "
                          r"got 0.0"),
    ({"pareto_shape": "heavy"}, "delays.pareto_shape must be a number"),
    ({"jitter_sigma": -0.1}, r"delays.jitter_sigma must be in \[0, 5\]"),
    ({"uniform_low": 0}, r"delays.uniform_low must be in \(0, 1e\+18\]"),
    ({"uniform_low": 2.0, "uniform_high": 1.0},
     r"delays.uniform_high must be >= delays.uniform_low \(2.0\), got 1.0"),
    ({"speeds": "trace"},
     "delays.trace_path must name a device table .* or a file"),
    ({"trace_path": "x.csv"}, "delays.trace_path is only used with "
                              "delays.speeds 'trace'"),
    ({"speeds": "weibull"}, "delays.speeds must be one of"),
    ({"jitter": "gamma"}, "delays.jitter must be one of"),
    ({"availability_on_fraction": 0.5},
     "availability_on_fraction < 1 needs delays.availability_period"),
    ({"availability_on_fraction": 0, "availability_period": 5},
     r"delays.availability_on_fraction must be in \(0, 1\]"),
    ({"availability_period": 0}, r"delays.availability_period must be in "
                                 r"\(0, 1e\+18\]"),
])
def test_bad_delay_fields_name_the_field(fields, match):
  with pytest.raises(config.ConfigError, match=match):
    _cfg(**fields)


def test_overrides_set_the_new_fields():
  cfg = config.apply_overrides(config.from_dict(SMALL), [
      "delays.speeds=pareto", "delays.pareto_shape=1.5",
      "delays.jitter=lognormal", "delays.jitter_sigma=0.2",
      "delays.availability_period=24", "delays.availability_on_fraction=0.5"])
  d = cfg.delays
  assert (d.speeds, d.pareto_shape, d.jitter, d.jitter_sigma) == \
      ("pareto", 1.5, "lognormal", 0.2)
  assert (d.availability_period, d.availability_on_fraction) == (24.0, 0.5)
  back = config.apply_overrides(cfg, ["delays.availability_period=null",
                                      "delays.availability_on_fraction=1"])
  assert back.delays.availability_period is None
  with pytest.raises(config.ConfigError, match="delays.pareto_shape"):
    config.apply_overrides(cfg, ["delays.pareto_shape=-1"])


def test_cli_override_changes_the_schedule(tmp_path, capsys):
  base = {**SMALL, "client": {"batch_size": 20},
          "run": {**SMALL["run"], "eval_every": 20}}
  p = tmp_path / "c.json"
  p.write_text(json.dumps(base))
  outs = {}
  for shape in ("4", "1.2"):
    out = tmp_path / f"shape{shape}"
    assert cli.main(["run", "--config", str(p), "--out", str(out), "--set",
                     "delays.speeds=pareto", "--set",
                     f"delays.pareto_shape={shape}"]) == 0
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["delays"]["pareto_shape"] == float(shape)
    outs[shape] = json.loads((out / "summary.json").read_text())
  assert outs["4"]["simulated_time"] != outs["1.2"]["simulated_time"]


def test_cli_rejects_bad_delay_override(tmp_path, capsys):
  out = tmp_path / "never"
  assert cli.main(["run", "--out", str(out), "--set",
                   "delays.jitter_sigma=-1"]) == 2
  assert "delays.jitter_sigma must be in [0, 5]" in capsys.readouterr().err
  assert not out.exists()


def test_to_yaml_lists_every_field_and_loads_back():
  cfg = config.apply_overrides(config.Config(), ["delays.pareto_shape=3",
                                                 "client.steps=7"])
  text = config.to_yaml(cfg)
  assert config.from_dict(yaml.safe_load(text)) == cfg
  for sec, fields in config.to_dict(cfg).items():
    for name in fields:
      assert f"  {name}: " in text, name
      assert (sec, name) in config.MEANING, (sec, name)
  assert "# pareto speeds" in text and "number in [0.5, 1e+18]" in text


def test_config_command_prints_a_loadable_file(tmp_path, capsys):
  assert cli.main(["config", "--set", "rule.name=afl"]) == 0
  text = capsys.readouterr().out
  p = tmp_path / "c.yaml"
  p.write_text(text)
  assert config.load(p).rule.name == "afl"
  assert cli.main(["config", "--set", "rule.name=nope"]) == 2
  assert "rule.name must be one of" in capsys.readouterr().err
  # A --set path is relative to the current folder, not the saved file's:
  # printed as typed, the saved file named another file; it is printed
  # absolute, as a run saves it. Unread fields are warned about, as a run
  # warns about them.
  (tmp_path / "d").mkdir()
  (tmp_path / "d" / "m.npz").write_bytes(b"")
  sub = tmp_path / "sub"
  sub.mkdir()
  import os
  here = os.getcwd()
  os.chdir(tmp_path)
  try:
    assert cli.main(["config", "--set", "data.name=npz", "--set",
                     "data.path=d/m.npz", "--set", "run.deadline=5"]) == 0
  finally:
    os.chdir(here)
  got = capsys.readouterr()
  (sub / "c.yaml").write_text(got.out)
  assert config.load(sub / "c.yaml").data.path == str(tmp_path / "d" /
                                                      "m.npz")
  assert "warning: run.deadline=5.0 does nothing" in got.err


def test_numbers_with_an_exponent_load_from_yaml(tmp_path, capsys):
  """``config`` prints ``lr: 1e-07``, which YAML 1.1 reads as a string:
  its own output was refused ("got the string '1e-07'; write it without
  quotes"), as were ``1e-3`` and ``1e3`` written by hand."""
  assert cli.main(["config", "--set", "client.lr=1e-7"]) == 0
  p = tmp_path / "c.yaml"
  p.write_text(capsys.readouterr().out)
  assert "lr: 1e-07" in p.read_text()
  assert config.load(p).client.lr == 1e-7
  p.write_text("client: {lr: 1e-3}\nrun: {num_updates: 1e3}\n")
  cfg = config.load(p)
  assert (cfg.client.lr, cfg.run.num_updates) == (1e-3, 1000)
  p.write_text("client: {lr: '1e-3'}\n")  # quoted: still a string
  with pytest.raises(config.ConfigError, match="without quotes"):
    config.load(p)


def test_allowed_describes_choices_and_ranges():
  assert config.allowed("delays", "dropout") == "number in [0, 1)"
  assert config.allowed("client", "patience") == \
      "integer in [1, 2147483647] or null"
  assert config.allowed("client", "steps") == \
      "integer in [1, 1000000] or null"
  assert config.allowed("run", "selection").startswith("one of uniform")


def test_errors_raised_while_building_name_their_fields(tmp_path):
  """Values that fail only while the run is built (a data file that is not
  there) name the fields; speeds that would overflow (sigma 1e6, which
  used to fail there) are now refused by validation, naming the field."""
  from fedasync_jax import experiment
  with pytest.raises(config.ConfigError,
                     match=r"delays\.sigma must be in \[0, 5\]"):
    config.from_dict({"data": {"num_clients": 12},
                      "delays": {"speeds": "lognormal", "sigma": 1e6}})
  cfg = config.from_dict({"data": {"name": "mnist",
                                   "path": str(tmp_path / "none.npz")}})
  with pytest.raises(config.ConfigError, match=r"data\.name='mnist' \(data"
                     r"\.path"):
    experiment.load_data(cfg)


# ---------------------------------------------------------------------------
# Booleans: one rule for files and overrides.


@pytest.mark.parametrize("text, value", [
    ("true", True), ("false", False), ("FALSE", False), ("True", True)])
def test_override_booleans_are_true_or_false_in_any_case(text, value):
  cfg = config.apply_overrides(config.Config(), [f"rule.quarantine={text}"])
  assert cfg.rule.quarantine is value


@pytest.mark.parametrize("text", ["off", "no", "0", "1", "yes", "on", ""])
def test_other_override_booleans_are_refused(text):
  with pytest.raises(config.ConfigError) as e:
    config.apply_overrides(config.Config(), [f"rule.quarantine={text}"])
  assert str(e.value) == (f"rule.quarantine must be true or false, got "
                          f"{text!r}")


@pytest.mark.parametrize("value", [0, 1, "no", "false", "true", 0.0])
def test_file_booleans_must_be_real_booleans(value):
  assert config.from_dict({"rule": {"quarantine": False}}).rule.quarantine \
      is False
  with pytest.raises(config.ConfigError) as e:
    config.from_dict({"rule": {"quarantine": value}})
  assert str(e.value) == (f"rule.quarantine must be true or false, got "
                          f"{value!r}")


@pytest.mark.parametrize("text, shown", [
    ("no", "'no'"), ("off", "'off'"), ("yes", "'yes'"), ("0", "0"),
    ('"false"', "'false'")])
def test_yaml_booleans_are_true_and_false_only(tmp_path, text, shown):
  """YAML 1.1 reads ``no``/``off``/``yes`` as booleans; a configuration
  takes only ``true``/``false``, as JSON and ``--set`` do."""
  p = tmp_path / "c.yaml"
  p.write_text("rule:\n  quarantine: TRUE\n")
  assert config.load(p).rule.quarantine is True
  p.write_text(f"rule:\n  quarantine: {text}\n")
  with pytest.raises(config.ConfigError) as e:
    config.load(p)
  assert str(e.value) == (f"{p}: rule.quarantine must be true or false, "
                          f"got {shown}")


def test_cli_refuses_a_boolean_spelt_otherwise(tmp_path, capsys):
  out = tmp_path / "never"
  for text in ("off", "no"):
    assert cli.main(["run", "--out", str(out), "--set",
                     f"rule.quarantine={text}", "--set",
                     "run.num_updates=10"]) == 2
    assert (f"rule.quarantine must be true or false, got '{text}'"
            in capsys.readouterr().err)
  assert not out.exists()


@pytest.mark.parametrize("section, field, text, what", [
    ("rule", "alpha", '"0.5"', "a number"),
    ("run", "num_updates", "'10'", "an integer"),
    ("rule", "params", '{clients_per_round: "2"}', "an integer")])
def test_a_quoted_number_in_a_file_is_refused(tmp_path, section, field, text,
                                              what):
  """A file's number is a number: quoted, it is a string, as its booleans
  are (``--set`` text is read as a number)."""
  p = tmp_path / "c.yaml"
  extra = "  name: afl\n" if field == "params" else ""
  p.write_text(f"{section}:\n{extra}  {field}: {text}\n")
  with pytest.raises(config.ConfigError) as e:
    config.load(p)
  name = f"{section}.{field}" + (".clients_per_round" if field == "params"
                                  else "")
  assert f"{name} must be {what}, got the string" in str(e.value)
  assert "without quotes" in str(e.value)
  bare = text.replace('"', "").replace("'", "")
  p.write_text(f"{section}:\n{extra}  {field}: {bare}\n")
  assert config.load(p) is not None
  cfg = config.apply_overrides(config.Config(), ["rule.alpha=0.25"])
  assert cfg.rule.alpha == 0.25


# ---------------------------------------------------------------------------
# Duplicate keys in a configuration file.


@pytest.mark.parametrize("name, text, message", [
    ("c.yaml", "rule: {alpha: 0.5}\nrun: {seed: 1}\nrule: {alpha: 0.7}\n",
     "line 3: duplicate key rule (first on line 1)"),
    ("c.yaml", "rule:\n  alpha: 0.5\n  name: fedasync\n  alpha: 0.7\n",
     "line 4: duplicate key rule.alpha (first on line 2)"),
    ("c.yaml", "rule:\n  name: afl\n  params:\n    clients_per_round: 2\n"
     "    'clients_per_round': 3\n",
     "line 5: duplicate key rule.params.clients_per_round (first on line 4)"),
    ("c.json", '{"rule": {"alpha": 0.5}, "rule": {"alpha": 0.7}}',
     "duplicate key rule"),
    ("c.json", '{"run": {"seed": 1},\n "rule": {"alpha": 0.5, "alpha": 0.7}}',
     "duplicate key rule.alpha"),
])
def test_duplicate_keys_in_a_config_file_are_refused(tmp_path, name, text,
                                                     message):
  p = tmp_path / name
  p.write_text(text)
  with pytest.raises(config.ConfigError) as e:
    config.load(p)
  assert str(e.value) == f"cannot parse config file {p}: {message}"


def test_cli_refuses_a_config_file_with_a_duplicate_key(tmp_path, capsys):
  p = tmp_path / "c.yaml"
  p.write_text("rule: {alpha: 0.5}\nrule: {alpha: 0.7}\n")
  out = tmp_path / "never"
  assert cli.main(["run", "--config", str(p), "--out", str(out)]) == 2
  err = capsys.readouterr().err
  assert f"{p}: line 2: duplicate key rule (first on line 1)" in err
  assert not out.exists()
