"""Nothing lost, nothing silently wrong: bounds on every input.

Every numeric configuration field has a finite upper bound (declared, or
the implicit float32-safe limit of ``core.checks.limits``), checked before
any work; inputs that used to hang (a YAML alias bomb, a huge chunk, a
dropout that draws 1e8 tasks, an availability period below the float
resolution) fail fast or run fast; delays and data errors name their
parameter or file; an unknown name suggests the closest known one.
Tests of hangs use small inputs or a subprocess with a timeout.
"""

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fedasync_jax import config, datasets, delays, scheduler, staleness
from fedasync_jax.core import checks
from fedasync_jax.core.registry import Param
from fedasync_jax.run import schema

# ------------------------------------------------------------------ item 1


def _numeric_fields():
  for sec in schema.SECTIONS:
    for f in sec.fields:
      if isinstance(f, (schema.Choice, schema.Extra)):
        continue
      p = schema.param(sec.name, f.name)
      if p.kind in (int, float):
        yield sec.name, f.name, p


@pytest.mark.parametrize("sec, name, p", list(_numeric_fields()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_numeric_field_has_a_finite_upper_bound(sec, name, p):
  huge = 10**40 if p.kind is int else 1e39
  with pytest.raises(config.ConfigError) as e:
    config.from_dict({sec: {name: huge}})
  msg = str(e.value)
  assert f"{sec}.{name}" in msg and "must be" in msg, msg


@pytest.mark.parametrize("overrides, field, allowed", [
    (["rule.staleness=exponential", "rule.staleness_a=1e39"],
     "rule.staleness_a", "<= 1e+18"),
    (["rule.server_lr=1e39"], "rule.server_lr", "<= 1e+18"),
    (["rule.name=fedbuff", "rule.server_lr=1e39"], "rule.server_lr",
     "<= 1e+18"),
    (["run.width=1e7"], "run.width", "[1, 10000]"),
    (["data.num_clients=1e9"], "data.num_clients", "[1, 1000000]"),
    (["client.epochs=1e9"], "client.epochs", "[1, 10000]"),
    (["client.steps=1e9"], "client.steps", "[1, 1000000]"),
    (["client.batch_size=1e9"], "client.batch_size", "[1, 100000]"),
    (["run.num_updates=1e9"], "run.num_updates", "[1, 10000000]"),
    (["run.seed=1e30"], "run.seed", "[0, 2147483647]"),
    (["run.seed=-1"], "run.seed", "[0, 2147483647]"),
    (["data.seed=-5"], "data.seed", "[0, 2147483647]"),
    (["rule.max_staleness=1e30"], "rule.max_staleness", "<= 2147483647"),
    (["rule.staleness=mishchenko", "rule.staleness_params.n=1e300"],
     "rule.staleness_params.n", "<= 1e+18"),
    (["delays.availability_period=1e-300"], "delays.availability_period",
     ">= 1e-18"),
])
def test_overflowing_values_are_refused_naming_field_and_range(
    overrides, field, allowed):
  with pytest.raises(config.ConfigError) as e:
    config.apply_overrides(config.Config(), overrides)
  assert field in str(e.value) and allowed in str(e.value), str(e.value)


def test_ranges_show_the_real_limit_not_inf(capsys):
  """A range without a declared upper end showed ``inf`` where the limit
  is 1e18 (integers: 2**31 - 1), in errors and ``fedasync-jax config``."""
  with pytest.raises(config.ConfigError, match=r"client.lr must be in "
                     r"\(0, 1e\+18\], got 0.0"):
    config.from_dict({"client": {"lr": 0}})
  assert config.allowed("client", "patience") == \
      "integer in [1, 2147483647] or null"
  from fedasync_jax import cli
  assert cli.main(["config"]) == 0
  text = capsys.readouterr().out
  assert "inf]" not in text and "number in [0, 1e+18]" in text
  p = Param("a", 0.5, low=0)
  assert p.check(1e18) == 1e18
  with pytest.raises(ValueError, match=r"a must be <= 1e\+18"):
    p.check(1e19)


def test_staleness_functions_refuse_overflowing_parameters():
  with pytest.raises(ValueError, match=r"staleness 'exponential': a must be "
                     r"<= 1e\+18"):
    staleness.exponential(1e300)
  with pytest.raises(ValueError, match="max_staleness"):
    staleness.cutoff(staleness.constant(), 10**30)


def test_staleness_weights_stay_finite_at_the_limits():
  tau = np.array([0, 1, 10**6], np.int32)
  for m in staleness.STALENESS.members():
    for extreme in ("low", "high"):
      kwargs = {}
      for p in m.params:
        if extreme == "high":
          v = p.high if p.high is not None else checks.FLOAT_LIMIT
        else:
          v = checks.FLOAT_TINY if p.low_open else p.low
        kwargs[p.name] = v
      w = np.asarray(m.factory(**kwargs)(tau), np.float64)
      assert np.all(np.isfinite(w)) and np.all((w >= 0) & (w <= 1)), (
          m.name, kwargs, w)


# ------------------------------------------------------------------ item 2

_BOMB = ("rule:\n  alpha:\n    - &a [" + ", ".join(['"lol"'] * 9) + "]\n"
         ) + "".join(
    f"    - &{n} [{', '.join(['*' + p] * 9)}]\n"
    for p, n in zip("abcdefgh", "bcdefghi"))  # 9**9 strings once expanded


def test_yaml_alias_bomb_fails_fast(tmp_path):
  p = tmp_path / "bomb.yaml"
  p.write_text(_BOMB)
  code = ("import sys\nfrom fedasync_jax import config\n"
          "try:\n  config.load(sys.argv[1])\n"
          "except config.ConfigError as e:\n  print(str(e)[:2000])\n")
  try:
    out = subprocess.run([sys.executable, "-c", code, str(p)],
                         capture_output=True, text=True, timeout=45)
  except subprocess.TimeoutExpired:
    pytest.fail("loading a YAML alias bomb did not finish in 45 s")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "bomb.yaml" in out.stdout and "alias" in out.stdout, out.stdout


def test_error_messages_quote_values_shortened():
  leaf = ["lol"] * 9
  for _ in range(5):  # 9**6 strings if formatted in full
    leaf = [leaf] * 9
  for d in ({"rule": {"alpha": leaf}}, {"data": {"path": leaf}},
            {"rule": {"staleness": leaf}}, {"rule": {leaf[0][0][0][0][0][0]:
                                                     1, "x" * 10**6: 2}}):
    with pytest.raises(config.ConfigError) as e:
      config.from_dict(d)
    assert len(str(e.value)) < 1000, len(str(e.value))


def test_oversized_config_file_is_refused(tmp_path):
  p = tmp_path / "big.json"
  p.write_text('{"run": {"seed": 1}}' + " " * (2 << 20))
  with pytest.raises(config.ConfigError, match="big.json.*bytes"):
    config.load(p)


def test_chunk_steps_is_bounded():
  with pytest.raises(config.ConfigError,
                     match=r"run.chunk_steps must be in \[1, 100000\]"):
    config.apply_overrides(config.Config(), ["run.chunk_steps=100000000"])


def test_dropout_task_cap_names_both_fields():
  with pytest.raises(config.ConfigError) as e:
    config.apply_overrides(config.Config(), ["delays.dropout=0.999999"])
  assert "run.num_updates" in str(e.value) and "delays.dropout" in str(e.value)
  with pytest.raises(config.ConfigError, match="run.num_rounds"):
    config.apply_overrides(config.Config(), ["rule.name=fedavg",
                                             "run.num_rounds=9000000"])
  ok = config.apply_overrides(config.Config(), ["delays.dropout=0.9"])
  assert ok.delays.dropout == 0.9


def test_availability_refuses_a_vanishing_period():
  with pytest.raises(ValueError, match=r"period must be >= 1e-18"):
    delays.availability(4, period=1e-300, on_fraction=0.5)


def test_next_start_is_always_a_time_the_client_is_available():
  c = np.arange(4)
  # A period below the float resolution of t: windows cannot be placed.
  a = delays.Availability(1e-300, 0.5, np.zeros(4))
  for t in np.linspace(1.0, 100.0, 40):
    s = a.next_start(c, t)
    assert np.all(s >= t) and np.all(a.available(c, s)), (t, s)
  # Resolvable windows: an off client starts strictly later.
  b = delays.availability(64, period=1e-3, on_fraction=0.5, seed=0)
  c = np.arange(64)
  for t in (0.0, 1.0, 1e6, 1e9):
    s = b.next_start(c, t)
    off = ~b.available(c, t)
    assert np.all(s[off] > t) and np.all(s[~off] == t)


def test_scheduler_with_tiny_availability_period_finishes():
  code = textwrap.dedent("""\
      import numpy as np
      from fedasync_jax import delays, scheduler
      for period in (1e-300, 1e-12):
        a = delays.Availability(period, 0.5,
                                np.random.default_rng(0).uniform(0, period, 6))
        m = delays.delay_model(np.ones(6), np.full(6, 1e3), availability=a)
        s = scheduler.asynchronous(m, num_updates=100, concurrency=3, seed=0)
        r = scheduler.synchronous(m, num_rounds=10, cohort_size=3, seed=0)
        print(s.num_arrivals, r.num_arrivals)
      """)
  try:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
  except subprocess.TimeoutExpired:
    pytest.fail("the schedule with a tiny availability period hung")
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["100", "30", "100", "30"]


# ------------------------------------------------------------------ item 3


def test_speed_parameters_that_would_overflow_are_refused():
  """lognormal speeds with sigma 1e6 and Pareto speeds with shape 1e-12
  overflowed to infinite speeds; their bounds refuse them first."""
  with pytest.raises(ValueError, match=r"speeds 'lognormal': sigma must be "
                     r"a number in \[0, 5"):
    delays.device_speeds("lognormal", 5, sigma=1e6)
  with pytest.raises(ValueError, match=r"speeds 'pareto': shape must be a "
                     r"number >= 0.5"):
    delays.device_speeds("pareto", 50, shape=1e-12)
  for kind, p in (("lognormal", {"sigma": 5.0}), ("pareto", {"shape": 0.5})):
    s = delays.device_speeds(kind, 10**6, mean=1e3, seed=0, **p)
    assert np.all(np.isfinite(s.astype(np.float32))), kind


# ------------------------------------------------------------------ item 4


def _npz(path, y_train=(0, 1, 2, 1), y_test=(0, 1)):
  y_train, y_test = np.asarray(y_train), np.asarray(y_test)
  np.savez(path, x_train=np.ones((len(y_train), 8), np.float32),
           y_train=y_train, x_test=np.ones((len(y_test), 8), np.float32),
           y_test=y_test)
  return path


def test_corrupt_npz_names_the_file_and_key(tmp_path):
  path = _npz(tmp_path / "bad.npz", y_train=np.arange(400) % 3,
              y_test=np.arange(40) % 3)
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 3] ^= 0xFF  # inside x_train's data: a CRC mismatch
  path.write_bytes(bytes(raw))
  with pytest.raises(ValueError, match=r"bad.npz: key 'x_train' is corrupt"):
    datasets.load_npz(path)


def test_corrupt_jpeg_names_the_file_and_image(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  blobs = []
  for v in (0, 128, 255):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (v, v, v)).save(buf, "JPEG")
    blobs.append(np.frombuffer(buf.getvalue(), np.uint8).copy())
  blobs[1][:16] = 0  # not a JPEG any more
  blob = np.concatenate(blobs)
  offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
  path = tmp_path / "c_jpeg_bytes.npz"
  np.savez(path, jpeg_train=blob, offsets_train=offsets.astype(np.int64),
           y_train=np.array([0, 1, 2], np.uint8), jpeg_test=blob,
           offsets_test=offsets.astype(np.int64),
           y_test=np.array([0, 1, 2], np.uint8))
  with pytest.raises(ValueError) as e:
    datasets.load_cifar10_jpeg(path)
  msg = str(e.value)
  assert "c_jpeg_bytes.npz" in msg and "image 1" in msg and "\n" not in msg


def test_huge_label_is_refused_before_allocation(tmp_path):
  path = _npz(tmp_path / "huge.npz", y_train=(0, 1, 10**9, 1))
  with pytest.raises(ValueError, match=r"huge.npz: key 'y_train' has labels "
                     r"outside \[0, 100000\)"):
    datasets.load_npz(path)
  x = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match="num_classes"):
    datasets.federate(x, np.array([0, 1, 10**9, 1]), x, np.zeros(4, int),
                      num_clients=2)


def test_labels_beyond_a_named_data_set_are_refused(tmp_path):
  path = _npz(tmp_path / "m.npz", y_train=(0, 1, 10, 1))
  with pytest.raises(ValueError, match=r"m.npz: key 'y_train' has labels "
                     r"outside \[0, 10\)"):
    datasets.load("mnist", path=path)
  assert datasets.load("npz", path=path).num_classes == 11


def test_data_path_without_a_data_set_name_is_refused(tmp_path):
  with pytest.raises(config.ConfigError, match="data.path.*data.name"):
    config.apply_overrides(config.Config(), [f"data.path={tmp_path}/a.npz"])
  with pytest.raises(config.ConfigError, match="data.data_dir.*data.name"):
    config.from_dict({"data": {"data_dir": str(tmp_path)}})
  cfg = config.from_dict({"data": {"name": "npz", "path": "a.npz"}})
  assert cfg.data.path == "a.npz"


# ------------------------------------------------------------------ item 5


@pytest.mark.parametrize("call, hint", [
    (lambda: config.from_dict({"rule": {"alhpa": 0.5}}), "'alpha'"),
    (lambda: config.from_dict({"rules": {}}), "'rule'"),
    (lambda: config.from_dict({"rule": {"staleness": "polynomal"}}),
     "'polynomial'"),
    (lambda: config.apply_overrides(config.Config(), ["run.sed=3"]),
     "'seed'"),
    (lambda: config.apply_overrides(config.Config(), ["rul.alpha=3"]),
     "'rule'"),
    (lambda: config.apply_overrides(config.Config(), [
        "rule.staleness=koloskova", "rule.staleness_params.tau_c=4",
        "rule.staleness_params.lipschitz=1", "rule.staleness_params.lr=0.1",
        "rule.staleness_params.lipschits=2"]), "'lipschitz'"),
    (lambda: staleness.STALENESS["hinj"], "'hinge'"),
    (lambda: staleness.get("hinge", a=1, bb=2), "'b'"),
    (lambda: scheduler.asynchronous(
        delays.delay_model(np.ones(2), np.ones(2)), num_updates=2,
        concurrency=1, selection="unifrom"), "'uniform'"),
])
def test_unknown_names_suggest_the_closest(call, hint):
  with pytest.raises(ValueError, match=f"did you mean {hint}"):
    call()


# ------------------------------------------- issue 15 audit: bounds, memory


@pytest.mark.parametrize("overrides, field, allowed", [
    (["delays.sigma=1e6"], "delays.sigma", "[0, 5]"),
    (["delays.jitter=lognormal", "delays.jitter_sigma=1e6"],
     "delays.jitter_sigma", "[0, 5]"),
    (["delays.speeds=pareto", "delays.pareto_shape=0.01"],
     "delays.pareto_shape", "[0.5, 1e+18]"),
    (["data.synthetic_beta=1e18"], "data.synthetic_beta", "[0, 1000]"),
    (["data.synthetic_alpha=1e18"], "data.synthetic_alpha", "[0, 1000]"),
])
def test_values_that_break_a_run_inside_float32_are_refused(
    overrides, field, allowed):
  """Each passed validation and ended with exit 0: every arrival time 0.0
  (jitter), loss inf and ``Infinity`` in summary.json (synthetic_beta),
  an error naming delays.speeds after loading the data (sigma)."""
  with pytest.raises(config.ConfigError) as e:
    config.apply_overrides(config.Config(), overrides)
  msg = str(e.value)
  assert msg.startswith(f"{field} must be in {allowed}"), msg


def test_library_refuses_the_same_values_naming_the_parameter():
  from fedasync_jax import synthetic
  with pytest.raises(ValueError, match=r"sigma must be a number in \[0, 5"):
    delays.device_speeds("lognormal", 5, sigma=1e6)
  with pytest.raises(ValueError, match=r"jitter_sigma must be a number in "
                     r"\[0, 5"):
    delays.delay_model(np.ones(2), np.ones(2), jitter="lognormal",
                       jitter_sigma=1e6)
  with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1000"):
    synthetic.synthetic(1.0, 1e18, num_clients=2)
  with pytest.raises(ValueError, match=r"sigma must be a number in \[0, 5"):
    synthetic.client_sizes(3, mean_examples=100, min_examples=5, sigma=50)


def test_delays_sigma_is_refused_by_the_cli_before_any_work(
    tmp_path, capsys, monkeypatch):
  from fedasync_jax import cli, experiment

  def no_work(*args, **kwargs):
    raise AssertionError("the data were loaded before the check")
  monkeypatch.setattr(experiment, "setup", no_work)
  out = tmp_path / "never"
  assert cli.main(["run", "--out", str(out), "--set",
                   "delays.sigma=1e6"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.splitlines() == [err], err
  assert "delays.sigma must be in [0, 5], got 1000000.0" in err, err
  assert "delays.speeds" not in err, err
  assert not out.exists()


def test_a_population_beyond_the_memory_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch):
  from fedasync_jax import cli
  from fedasync_jax.run import memory
  monkeypatch.setattr(memory, "available_memory", lambda: 8 * 2**30)
  cfg = config.apply_overrides(config.Config(), ["data.num_clients=1e6"])
  with pytest.raises(config.ConfigError) as e:
    memory.check_memory(cfg)
  msg = str(e.value)
  assert "data.num_clients" in msg and "data.synthetic_max_examples" in msg
  assert "GB" in msg and "\n" not in msg, msg
  # a cap on the clients' examples that fits is accepted
  memory.check_memory(config.apply_overrides(cfg, [
      "data.synthetic_max_examples=5"]))
  assert memory.estimate_bytes(cfg) > 100e9  # about 110 GB of examples
  out = tmp_path / "never"
  assert cli.main(["run", "--out", str(out), "--set",
                   "data.num_clients=1000000"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("fedasync-jax: error: data.num_clients=1000000 "
                            "with data.synthetic_max_examples=null needs "
                            "about 387"), err
  assert not out.exists()
  # unknown available memory: no refusal
  monkeypatch.setattr(memory, "available_memory", lambda: None)
  memory.check_memory(cfg)


def test_available_memory_reads_meminfo_or_falls_back(tmp_path,
                                                      monkeypatch):
  from fedasync_jax.run import memory
  p = tmp_path / "meminfo"
  p.write_text("MemTotal:  16000 kB\nMemAvailable:   2048 kB\n")
  assert memory.available_memory(meminfo=p) == 2048 * 1024
  got = memory.available_memory(meminfo=tmp_path / "missing")
  assert got is None or got > 0
