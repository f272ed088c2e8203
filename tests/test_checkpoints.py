"""Checkpoints verify themselves: a damaged file, another library version or
x64 mode, or a config.json edited between interrupt and resume is refused
in one line naming what changed; writes are atomic and never replace a good
checkpoint with an inconsistent one; a resumed run's totals cover the whole
run."""

import json
import re
import shutil
import signal
import time

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from fedasync_jax import cli, config
from fedasync_jax.run import checkpoints, experiment, inputs, results
from fedasync_jax.sim import executor

# (No plots: they take longer than these runs, and no test here looks.)
CFG = {"data": {"num_clients": 20}, "client": {"batch_size": 20},
       "run": {"num_updates": 120, "concurrency": 4, "eval_every": 40,
               "chunk_steps": 8, "checkpoint_every_s": 0, "plots": False}}
SLEEP_S = 1.0  # wall time the interrupted part spends before its signal


def interrupt_in_process(call, module, *, sleep_s: float = 0.0):
  """Runs ``call()`` with ``module.ProgressBar`` replaced by one that waits
  ``sleep_s`` and then sends SIGTERM to this process at the first report
  (the run stops at the next chunk boundary); returns the ``Interrupted``
  raised."""
  class Bar:
    def __init__(self, *args, **kwargs):
      del args, kwargs
      self.calls = 0

    def __call__(self, info):
      del info
      self.calls += 1
      if self.calls == 1:
        time.sleep(sleep_s)
        signal.raise_signal(signal.SIGTERM)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(module, "ProgressBar", Bar)
    with pytest.raises(experiment.Interrupted) as e:
      call()
  return e.value


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """``(full, cut)``: an uninterrupted run and the same run interrupted
  after its second chunk (checkpoint saved)."""
  root = tmp_path_factory.mktemp("ck")
  cfg = config.from_dict(CFG)
  full, cut = root / "full", root / "cut"
  experiment.train_and_evaluate(cfg, full, show_progress=False)
  interrupt_in_process(lambda: experiment.train_and_evaluate(cfg, cut),
                       experiment, sleep_s=SLEEP_S)
  assert (cut / "checkpoint.msgpack").exists()
  return full, cut


def _copy(cut, tmp_path, name="c"):
  dst = tmp_path / name
  shutil.copytree(cut, dst)
  return dst


def one_error_line(err: str) -> str:
  """The one line of a refusal (after the ``resuming DIR`` note)."""
  lines = [x for x in err.splitlines()
           if x.strip() and not x.startswith("resuming ")]
  assert len(lines) == 1 and lines[0].startswith("fedasync-jax: error: "), err
  return lines[0]


def _fake_checkpoint(next_chunk=2, steps=8):
  return executor.Checkpoint(
      [np.arange(3.0), np.int32(7)], next_chunk,
      {"applied": np.ones(next_chunk * steps, bool),
       "version": np.arange(next_chunk * steps),
       "eval": {"accuracy": np.zeros((next_chunk * steps, 2))}})


def test_checkpoint_stores_config_hash_version_x64_and_checksum():
  d = config.to_dict(config.from_dict(CFG))
  blob = checkpoints.encode(_fake_checkpoint(), config=d, elapsed_s=3.5)
  saved = checkpoints.decode(blob)
  import fedasync_jax
  assert saved.meta["library_version"] == fedasync_jax.__version__
  assert saved.meta["x64"] is False
  assert saved.meta["config_sha256"] == checkpoints.config_digest(d)
  assert saved.meta["config"] == json.loads(json.dumps(d))
  assert saved.elapsed_s == 3.5 and saved.checkpoint.next_chunk == 2
  np.testing.assert_array_equal(saved.checkpoint.carry_leaves[0],
                                np.arange(3.0))
  checkpoints.verify(saved, config=d, workdir="w")  # the same: accepted
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(fedasync_jax, "__version__", "99.0")
    with pytest.raises(ValueError, match=rf"fedasync_jax version "
                       rf"'{re.escape(saved.meta['library_version'])}', "
                       r"this process has '99\.0'"):
      checkpoints.verify(saved, config=d, workdir="w")
  with jax.enable_x64(True):
    with pytest.raises(ValueError, match=r"x64 mode\) False, this process "
                                         r"has True"):
      checkpoints.verify(saved, config=d, workdir="w")


def test_every_flipped_byte_is_refused():
  rng = np.random.default_rng(0)
  blob = checkpoints.encode(_fake_checkpoint(), config={"a": 1},
                            elapsed_s=0.0)
  positions = np.concatenate([np.arange(0, 120, 7),
                              rng.integers(0, len(blob), 30)])
  for pos in positions:
    bad = bytearray(blob)
    bad[pos] ^= 1 << int(rng.integers(8))
    with pytest.raises(ValueError, match="is unreadable"):
      checkpoints.decode(bytes(bad))
  with pytest.raises(ValueError, match="is unreadable"):
    checkpoints.decode(blob[:-1])  # truncated


def test_resume_refuses_a_damaged_checkpoint_file(runs, tmp_path, capsys):
  _, cut = runs
  c = _copy(cut, tmp_path)
  ck = c / "checkpoint.msgpack"
  blob = bytearray(ck.read_bytes())
  blob[len(blob) // 2] ^= 0x10
  ck.write_bytes(bytes(blob))
  assert cli.main(["run", "--resume", str(c)]) == 2
  err = one_error_line(capsys.readouterr().err)
  assert "checksum does not match" in err, err
  assert ck.read_bytes() == bytes(blob)  # nothing rewritten
  assert not (c / "final_params.msgpack").exists()


@pytest.mark.parametrize("field, value", [
    ("run.seed", 3), ("client.lr", 0.02), ("rule.server_lr", 0.5),
    ("run.chunk_steps", 4), ("run.num_updates", 40)])
def test_resume_refuses_an_edited_config_naming_the_field(
    runs, tmp_path, capsys, field, value):
  _, cut = runs
  c = _copy(cut, tmp_path)
  d = json.loads((c / "config.json").read_text())
  sec, name = field.split(".")
  old = d[sec][name]
  d[sec][name] = value
  (c / "config.json").write_text(json.dumps(d, indent=2))
  assert cli.main(["run", "--resume", str(c)]) == 2
  err = one_error_line(capsys.readouterr().err)
  assert (f"changed after the checkpoint was written ({field}: {value!r} "
          f"in config.json, {old!r} in the checkpoint)") in err, err
  assert not (c / "final_params.msgpack").exists()


@pytest.mark.parametrize("text, kind", [("[1, 2]", "list"), ('"x"', "str"),
                                        ("3", "int")])
def test_resume_refuses_a_config_json_that_is_not_an_object(
    runs, tmp_path, capsys, text, kind):
  """Valid JSON but no object used to end in an AttributeError traceback."""
  _, cut = runs
  c = _copy(cut, tmp_path)
  (c / "config.json").write_text(text)
  ck = (c / "checkpoint.msgpack").read_bytes()
  for command in ("run", "sweep"):
    code = cli.main([command, "--resume", str(c)])
    err = one_error_line(capsys.readouterr().err)
    assert code == 2
    if command == "run":
      assert (f"{c / 'config.json'} holds a JSON {kind}, not a "
              f"configuration; restore the file the run wrote there") in err
    else:  # the checkpoint, not config.json, says what the folder holds
      assert (f"holds a single run, not a sweep; continue it with: "
              f"fedasync-jax run --resume {c}") in err
  assert (c / "checkpoint.msgpack").read_bytes() == ck


def test_what_a_folder_holds_is_read_from_its_checkpoint(runs, tmp_path,
                                                         capsys):
  """A sweep's config.json without its ``grid`` was taken for a single run's
  (and ``run --resume`` then refused it as changed); a run's config.json
  replaced by another one listed every section as a whole dict in one
  line of kilobytes."""
  _, cut = runs
  run_cfg = json.loads((cut / "config.json").read_text())
  sweep_cfg = {"base": run_cfg, "grid": {"rule.alpha": [0.3, 0.6]},
               "seeds": [0], "chunk_steps": 8}
  s = tmp_path / "s"
  s.mkdir()
  (s / "checkpoint.msgpack").write_bytes(checkpoints.encode(
      _fake_checkpoint(), config=sweep_cfg, elapsed_s=0.0))
  damaged = {k: v for k, v in sweep_cfg.items() if k != "grid"}
  (s / "config.json").write_text(json.dumps(damaged))
  assert cli.main(["sweep", "--resume", str(s)]) == 2
  err = one_error_line(capsys.readouterr().err)
  assert ("config.json changed after the checkpoint was written (grid: None "
          "in config.json, {'rule.alpha': [0.3, 0.6]} in the checkpoint)"
          in err), err
  assert cli.main(["run", "--resume", str(s)]) == 2
  err = one_error_line(capsys.readouterr().err)
  assert (f"holds a sweep; continue it with: fedasync-jax sweep --resume "
          f"{s}") in err, err
  c = _copy(cut, tmp_path)
  (c / "config.json").write_text(json.dumps({"run": 5}))
  assert cli.main(["run", "--resume", str(c)]) == 2
  err = one_error_line(capsys.readouterr().err)
  assert "run: 5 in config.json, {" in err and "; and 1 more)" in err, err
  assert len(err) < 700, len(err)


def _changed(old):
  """A strategy of values that differ from ``old`` (in value, or in type
  only: ``100`` and ``100.0``)."""
  if isinstance(old, bool):
    return st.just(not old)
  if isinstance(old, int):
    return st.one_of(st.just(float(old)), st.integers(-3, 3).filter(
        lambda k: k != 0).map(lambda k: old + k))
  if isinstance(old, float):
    return st.floats(-1e3, 1e3, width=32).filter(lambda v: v != old)
  if isinstance(old, str):
    return st.text("abcxyz_", min_size=1, max_size=3).map(lambda t: old + t)
  if old is None:
    return st.floats(1, 5)
  return st.just({"x": 1.0})  # a mapping


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_config_edits_are_refused_or_end_bit_identical(
    runs, tmp_path_factory, data):
  """Any one field of ``config.json`` edited between the interrupt and the
  resume (hypothesis draws the field, a new value or the old one written
  back, and the file's indentation): a changed value or type is refused in
  one line naming the field, with the checkpoint untouched; the old value
  resumes to files bit-identical to the uninterrupted run's."""
  full, cut = runs
  d = json.loads((cut / "config.json").read_text())
  sec = data.draw(st.sampled_from(sorted(d)), label="section")
  name = data.draw(st.sampled_from(sorted(d[sec])), label="field")
  old = d[sec][name]
  keep = data.draw(st.integers(0, 4), label="one in five written back") == 0
  new = old if keep else data.draw(_changed(old), label="value")
  d[sec][name] = new
  c = _copy(cut, tmp_path_factory.mktemp("edit"))
  (c / "config.json").write_text(json.dumps(
      d, indent=data.draw(st.sampled_from([None, 1, 4]), label="indent")))
  ck = (c / "checkpoint.msgpack").read_bytes()
  changed = new != old or type(new) is not type(old)
  try:
    experiment.train_and_evaluate(None, c, resume=True, show_progress=False)
  except ValueError as e:
    msg = str(e)
    assert changed, (sec, name, msg)
    assert "\n" not in msg and f"{sec}.{name}" in msg, msg
    assert (c / "checkpoint.msgpack").read_bytes() == ck
    event("refused")
    return
  assert not changed, (sec, name, old, new)
  event("resumed bit-identical")
  for f in ("final_params.msgpack", "history.csv", "arrivals.csv"):
    assert (c / f).read_bytes() == (full / f).read_bytes(), (f, sec, name)


def test_checkpoint_writes_are_atomic_and_checked(tmp_path, monkeypatch):
  path = tmp_path / "checkpoint.msgpack"
  good = _fake_checkpoint(next_chunk=2)
  checkpoints.save_checkpoint(path, good, config={"a": 1}, chunk_steps=8)
  before = path.read_bytes()
  # An inconsistent checkpoint (outputs of 3 chunks, says 4) is refused.
  bad = good._replace(next_chunk=4, outputs=_fake_checkpoint(3).outputs)
  with pytest.raises(ValueError, match=r"need 32 steps"):
    checkpoints.save_checkpoint(path, bad, config={"a": 1}, chunk_steps=8)
  assert path.read_bytes() == before
  # A disk that fails at the last moment leaves the good one, and no
  # temporary file.
  import errno
  import os

  def full(*args):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(results.os, "replace", full)
  with pytest.raises(OSError):
    checkpoints.save_checkpoint(path, _fake_checkpoint(3), config={"a": 1},
                                chunk_steps=8)
  assert path.read_bytes() == before
  assert sorted(os.listdir(tmp_path)) == ["checkpoint.msgpack"]
  # The writer the executor calls warns and lets the run go on.
  import io
  stream = io.StringIO()
  write = checkpoints.checkpoint_writer(path, {}, 0.0, config={"a": 1},
                                        chunk_steps=8, stream=stream)
  assert write(_fake_checkpoint(3)) is False
  assert "checkpoint not written" in stream.getvalue()
  assert checkpoints.decode(path.read_bytes()).checkpoint.next_chunk == 2


def test_resumed_summary_counts_the_whole_run(runs, tmp_path):
  full, cut = runs
  c = _copy(cut, tmp_path)
  saved = checkpoints.read_checkpoint(c)
  assert saved.elapsed_s >= SLEEP_S
  # The part before the interrupt is recorded as 1000 s, far longer than
  # the resumed part can take, so the totals below cannot pass by timing.
  before = 1000.0
  checkpoints.save_checkpoint(
      c / checkpoints.CHECKPOINT, saved.checkpoint,
      config=json.loads((c / "config.json").read_text()),
      chunk_steps=CFG["run"]["chunk_steps"], elapsed_s=before)
  t0 = time.perf_counter()
  summary = experiment.train_and_evaluate(None, c, resume=True,
                                          show_progress=False)
  resumed = time.perf_counter() - t0
  assert before < summary["wall_time_s"] <= before + resumed
  assert summary["wall_time_before_resume_s"] == pytest.approx(before)
  assert summary["updates_per_s"] == pytest.approx(
      summary["client_updates"] / summary["wall_time_s"])
  ex = summary["executor"]
  assert before < ex["wall_time_s"] <= before + resumed
  assert ex["updates_per_s"] == pytest.approx(
      ex["num_arrivals"] / ex["wall_time_s"])
  assert (c / "final_params.msgpack").read_bytes() == \
      (full / "final_params.msgpack").read_bytes()


def test_ctrl_c_of_a_resumed_run_exits_cleanly(runs, tmp_path, capsys,
                                              monkeypatch):
  full, cut = runs
  c = _copy(cut, tmp_path)

  class Bar:
    def __init__(self, *args, **kwargs):
      del args, kwargs

    def __call__(self, info):
      del info
      signal.raise_signal(signal.SIGINT)
  monkeypatch.setattr(experiment, "ProgressBar", Bar)
  assert cli.main(["run", "--resume", str(c)]) == 130
  lines = [x for x in capsys.readouterr().err.splitlines()
           if x.strip() and not x.startswith("resuming ")]
  assert len(lines) == 1 and lines[0].startswith("stopped by SIGINT"), lines
  assert lines[0].endswith(f"continue with: fedasync-jax run --resume {c}")
  monkeypatch.undo()
  assert cli.main(["run", "--resume", str(c)]) == 0  # a second resume
  for f in ("final_params.msgpack", "history.csv", "arrivals.csv"):
    assert (c / f).read_bytes() == (full / f).read_bytes(), f


def test_output_files_get_the_usual_mode(runs):
  import os
  umask = os.umask(0)
  os.umask(umask)
  for folder in runs:
    files = [p for p in folder.iterdir()]
    assert len(files) >= 8
    for p in files:
      assert (p.stat().st_mode & 0o777) == (0o666 & ~umask), p


def test_a_type_only_edit_of_config_json_names_the_field(runs, tmp_path,
                                                         capsys):
  """``run.eval_every`` 40 -> 40.0 changes the hash but not the value; the
  refusal used to say only "(same values, other types)"."""
  _, cut = runs
  c = _copy(cut, tmp_path)
  d = json.loads((c / "config.json").read_text())
  d["run"]["eval_every"] = float(d["run"]["eval_every"])
  (c / "config.json").write_text(json.dumps(d, indent=2))
  assert cli.main(["run", "--resume", str(c)]) == 2
  err = one_error_line(capsys.readouterr().err)
  assert ("(run.eval_every: 40.0 in config.json, 40 in the checkpoint)"
          in err), err
  assert checkpoints.differences({"a": {"b": 1}}, {"a": {"b": 1.0}}) == [
      "a.b: 1 here, 1.0 saved"]


def test_a_lock_being_written_is_not_taken_over(tmp_path):
  """An empty lock file is one another process has just created and not
  yet written its pid into: young, it is in use; only an old one is
  stale."""
  import os
  from fedasync_jax.run import folders
  d = tmp_path / "f"
  d.mkdir()
  lock = d / folders.LOCK
  lock.write_bytes(b"")
  with pytest.raises(ValueError, match="is in use by another fedasync-jax "
                     "process"):
    folders.acquire_lock(d)
  assert lock.read_bytes() == b""  # left to its owner
  old = time.time() - 10 * folders.LOCK_GRACE_S
  os.utime(lock, (old, old))
  assert folders.acquire_lock(d) == lock  # stale: taken over
  assert lock.read_text().split("\n")[0] == str(os.getpid())
  folders.release_lock(lock)


def test_a_lock_appears_with_its_content(tmp_path, monkeypatch):
  """The lock is linked into place already written: no moment at which
  another process can find it empty."""
  import os
  from fedasync_jax.run import folders
  seen = []
  real_link = os.link

  def link(src, dst, *args, **kwargs):
    seen.append(open(src, "rb").read())
    return real_link(src, dst, *args, **kwargs)
  monkeypatch.setattr(os, "link", link)
  lock = folders.acquire_lock(tmp_path)
  assert seen and seen[0].split(b"\n")[0] == str(os.getpid()).encode()
  assert sorted(p.name for p in tmp_path.iterdir()) == [folders.LOCK]
  folders.release_lock(lock)


def test_a_relative_data_path_resumes_from_anywhere_and_changed_data_is_refused(
    tmp_path, monkeypatch):
  """A run given ``data.path=img.npz`` relative to the current folder saved
  it so in config.json, and ``--resume`` looked for it inside the run's
  folder: such a run could never be resumed. And data replaced between
  interrupt and resume used to be trained on silently (one run, two data
  sets)."""
  from conftest import write_image_npz
  data = tmp_path / "data"
  data.mkdir()
  write_image_npz(data / "img.npz", seed=0)
  monkeypatch.chdir(data)
  cfg = config.from_dict({**CFG, "data": {"name": "npz", "path": "img.npz",
                                          "num_clients": 20}})
  cut, other = tmp_path / "cut", tmp_path / "other"
  for out in (cut, other):
    interrupt_in_process(lambda: experiment.train_and_evaluate(cfg, out),
                         experiment)
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["path"] == str(data / "img.npz")
  monkeypatch.chdir(tmp_path)
  summary = experiment.train_and_evaluate(None, cut, resume=True,
                                          show_progress=False)
  assert summary["stopped_early"] is False
  write_image_npz(data / "img.npz", seed=1)  # other examples, same name
  with pytest.raises(ValueError, match=(
      rf"--resume: data.path {data / 'img.npz'} changed or went missing "
      r"after the checkpoint was written \(its SHA-256 differs\)")):
    experiment.train_and_evaluate(None, other, resume=True,
                                  show_progress=False)
  assert (other / "checkpoint.msgpack").is_file()  # kept for the old data


def test_a_sweeps_checkpoint_stamps_its_base_configurations_files(tmp_path):
  f = tmp_path / "d.npz"
  f.write_bytes(b"one")
  sweep_cfg = {"base": {"data": {"path": str(f)}, "delays": {}},
               "grid": {}, "seeds": [0]}
  first = checkpoints.stamp(sweep_cfg)["inputs"]
  assert list(first) == ["data.path"]
  f.write_bytes(b"two")
  assert checkpoints.stamp(sweep_cfg)["inputs"] != first
  assert inputs.input_digests({"base": {"data": {"path": None}}}) == {}
