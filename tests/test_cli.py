"""Configuration files, the run command, its outputs, interrupt and resume."""

import csv
import json

import numpy as np
import pytest

from conftest import interrupt_after_checkpoint, write_image_npz
from fedasync_jax import cli, config

# The plots take longer than these runs; the tests that look at them ask.
TINY = {"data": {"num_clients": 20},
        "client": {"batch_size": 20},
        "run": {"num_updates": 120, "concurrency": 4, "eval_every": 40,
                "chunk_steps": 8, "plots": False}}


def test_config_round_trip_json_and_yaml(tmp_path):
  j = tmp_path / "c.json"
  j.write_text(json.dumps({"rule": {"name": "fedbuff", "buffer_size": 3}}))
  y = tmp_path / "c.yaml"
  y.write_text("rule:\n  name: fedbuff\n  buffer_size: 3\n")
  a, b = config.load(j), config.load(y)
  assert a == b and a.rule.buffer_size == 3
  c = config.apply_overrides(a, ["rule.alpha=0.25", "client.steps=none",
                                 "client.epoch_decay=true"])
  assert c.rule.alpha == 0.25 and c.client.steps is None
  assert c.client.epoch_decay is True
  assert config.from_dict(config.to_dict(c)) == c


@pytest.mark.parametrize("d, match", [
    ({"rules": {}}, "unknown section 'rules'"),
    ({"rule": {"alhpa": 0.5}}, "unknown field rule.alhpa"),
    ({"rule": {"alpha": 1.5}}, r"rule.alpha must be in \[0, 1\], got 1.5"),
    ({"rule": {"alpha": "high"}}, "rule.alpha must be a number"),
    ({"rule": {"name": "fedsgd"}}, "rule.name must be one of"),
    ({"client": {"batch_size": 2.5}}, "client.batch_size must be an integer"),
    ({"client": {"lr": 0}}, r"client.lr must be in \(0, 1e\+18\]"),
    ({"delays": {"dropout": 1.0}}, r"delays.dropout must be in \[0, 1\)"),
    ({"run": {"concurrency": 500}}, "run.concurrency must be <= "
                                    "data.num_clients"),
    ({"data": {"name": "npz"}}, "data.path"),
    ({"data": {"name": "mnist"}, "model": {"name": "resnet20"}}, "resnet20"),
    ({"rule": {"name": "fedavg"}, "run": {"poisson_rate": 2.0}},
     "poisson_rate"),
    ([1, 2], "mapping"),
    # A parameter of another member: which member takes it (the message
    # said to clear a mapping that --grid had set, naming no member).
    ({"rule": {"staleness_params": {"n": 3}}},
     r"rule.staleness_params: staleness 'polynomial' takes no parameter\(s\) "
     r"\['n'\] \(it takes none here; it reads rule.staleness_a\); 'n' is a "
     r"parameter of staleness 'mishchenko' \(set rule.staleness to use "
     r"it\); remove it from rule.staleness_params"),
    # A misspelt one is named before a required one is missed.
    ({"rule": {"staleness": "koloskova", "staleness_params": {
        "tau_c": 1, "lr": 0.1, "lipshitz": 3}}},
     r"takes no parameter\(s\) \['lipshitz'\] \(it takes \['tau_c', "
     r"'lipschitz', 'lr'\] here\) \(did you mean 'lipschitz'\?\)"),
])
def test_bad_config_names_the_field(d, match):
  with pytest.raises(config.ConfigError, match=match):
    config.from_dict(d)


def test_bad_override_and_file(tmp_path):
  with pytest.raises(config.ConfigError, match="section.field=value"):
    config.apply_overrides(config.Config(), ["alpha=3"])
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(config.ConfigError, match="bad.json"):
    config.load(bad)
  with pytest.raises(config.ConfigError, match="cannot read"):
    config.load(tmp_path / "missing.json")


def _write_cfg(tmp_path, d):
  p = tmp_path / "cfg.json"
  p.write_text(json.dumps(d))
  return p


@pytest.mark.parametrize("rule", ["fedasync", "fedbuff", "fedavg", "afl"])
def test_run_writes_outputs(tmp_path, capsys, rule):
  # The default draws the plots (one rule here); run.plots=false does not.
  plots = rule == "fedasync"
  run = {k: v for k, v in TINY["run"].items() if k != "plots" or not plots}
  cfg = _write_cfg(tmp_path, {**TINY, "run": run,
                              "rule": {"name": rule, "buffer_size": 2}})
  out = tmp_path / "out"
  assert cli.main(["run", "--config", str(cfg), "--out", str(out),
                   "--set", "run.seed=1"]) == 0
  for f in ("config.json", "history.csv", "arrivals.csv",
            "participation.csv", "summary.json", "final_params.msgpack"):
    assert (out / f).exists(), f
  pngs = ("test_accuracy.png", "test_loss.png",
          "staleness_participation.png", "clients.png")
  assert sorted(p.name for p in out.glob("*.png")) == sorted(
      pngs if plots else ()), rule
  assert not (out / "checkpoint.msgpack").exists()
  resolved = json.loads((out / "config.json").read_text())
  assert resolved["run"]["seed"] == 1 and resolved["rule"]["name"] == rule
  rows = list(csv.DictReader(open(out / "history.csv")))
  assert list(rows[0]) == ["version", "simulated_time", "client_updates",
                           "client_train_loss", "test_loss", "test_accuracy",
                           "mean_staleness", "bytes_to_clients",
                           "bytes_from_clients"]
  assert int(rows[-1]["client_updates"]) == 120
  # logistic regression 60 -> 10: 610 float32 parameters per update.
  assert int(rows[-1]["bytes_from_clients"]) == 120 * 610 * 4
  arrivals = list(csv.DictReader(open(out / "arrivals.csv")))
  assert len(arrivals) == 120
  assert {a["status"] for a in arrivals} <= {"applied", "dropped"}
  summary = json.loads((out / "summary.json").read_text())
  assert summary["client_updates"] == 120
  # FedAvg's rounds draw ``uniform`` without replacement, and say so
  assert summary["selection"] == ("without_replacement" if rule == "fedavg"
                                  else "uniform")
  # the time writing the outputs (a sweep's summary had it, a run's not)
  assert 0 < summary["output_time_s"] < summary["wall_time_s"] + 60
  assert "final test accuracy" in capsys.readouterr().out


def test_run_result_evals_are_the_rows_of_history_csv(tmp_path):
  """``RunResult.evals`` (executor and reference) have the names of the
  history a run writes (``types.COLUMNS``; the file adds staleness and
  bytes), and the same values (with the final model's evaluation)."""
  import jax
  from fedasync_jax import executor, experiment, reference, types
  from fedasync_jax.run import outputs
  cfg = config.from_dict({**TINY, "rule": {"name": "fedasync",
                                           "max_staleness": 2}})
  out = tmp_path / "out"
  experiment.train_and_evaluate(cfg, out, show_progress=False)
  rows = list(csv.DictReader(open(out / "history.csv")))
  extras = ["mean_staleness", "bytes_to_clients", "bytes_from_clients"]
  assert [c for c in rows[0] if c not in extras] == list(types.COLUMNS)
  lines = [json.loads(x) for x in
           (out / "metrics.jsonl").read_text().splitlines()]
  assert [list(x) for x in lines] == [list(rows[0])] * len(rows)
  s = experiment.setup(cfg)
  kw = dict(key=jax.random.key(cfg.run.seed), hparams=s.hparams,
            eval_fn=s.eval_fn, eval_every=s.eval_every_versions)
  ex = executor.simulate(s.rule, s.update, s.params, s.fed.train,
                         s.schedule, **kw)
  ref = reference.run(s.rule, s.update, s.params, s.fed.train, s.schedule,
                      **kw)
  assert (~ex.arrivals["applied"]).any()  # the cutoff dropped some
  for res in (ex, ref):
    res = outputs.with_final_eval(res, s.eval_fn)
    assert [list(e) for e in res.evals] == [list(types.COLUMNS)] * len(
        res.evals)
    assert len(res.evals) == len(rows)
    for e, r in zip(res.evals, rows):
      for c in types.COLUMNS:
        assert float(r[c]) == pytest.approx(e[c], rel=1e-5, nan_ok=True), c
    assert res.evals[0]["client_updates"] == 0
    assert np.isnan(res.evals[0]["client_train_loss"])


def test_run_rejects_bad_override_before_work(tmp_path, capsys):
  out = tmp_path / "never"
  assert cli.main(["run", "--out", str(out), "--set",
                   "run.concurrency=0"]) == 2
  assert "run.concurrency must be in [1, 2147483647]" in \
      capsys.readouterr().err
  assert not out.exists()


def test_help_is_there(capsys):
  with pytest.raises(SystemExit):
    cli.main(["run", "--help"])
  text = capsys.readouterr().out
  assert "--resume" in text and "rule.alpha" in text
  with pytest.raises(SystemExit):
    cli.main(["sweep", "--help"])
  text = capsys.readouterr().out
  assert "--resume DIR" in text and "summary.csv" in text


def test_run_never_writes_into_another_runs_folder(tmp_path, capsys):
  out = tmp_path / "taken"
  out.mkdir()
  (out / "config.json").write_text("{}")
  assert cli.main(["run", "--out", str(out)]) == 2
  assert ("already holds the outputs of a run or sweep (config.json); choose "
          "another --out (nothing is overwritten), or pass --force to "
          "replace them") in capsys.readouterr().err
  assert (out / "config.json").read_text() == "{}"
  assert sorted(p.name for p in out.iterdir()) == ["config.json"]
  (out / "checkpoint.msgpack").write_bytes(b"x")
  assert cli.main(["sweep", "--out", str(out)]) == 2
  assert f"fedasync-jax sweep --resume {out}" in capsys.readouterr().err


def test_interrupt_and_resume_end_with_same_params(tmp_path):
  d = {**TINY, "model": {"name": "mlp"},
       "data": {"num_clients": 40, "synthetic_alpha": 0.5},
       "run": {**TINY["run"], "num_updates": 200, "concurrency": 8,
               "chunk_steps": 4, "checkpoint_every_s": 0}}
  cfg = _write_cfg(tmp_path, d)
  full, cut = tmp_path / "full", tmp_path / "cut"
  # The uninterrupted run checkpoints every 30 s, not after every chunk
  # (3.5 s of this test): checkpoints, like the interruption, must change
  # nothing.
  assert cli.main(["run", "--config", str(cfg), "--out", str(full),
                   "--set", "run.checkpoint_every_s=30"]) == 0
  rc, err = interrupt_after_checkpoint(
      ["run", "--config", str(cfg), "--out", str(cut)], cut)
  assert rc == 130, err[-2000:]
  assert "--resume" in err
  assert (cut / "checkpoint.msgpack").exists()
  assert not (cut / "final_params.msgpack").exists()
  # The history so far was written too.
  partial = json.loads((cut / "summary.json").read_text())
  assert partial["stopped_early"] and 0 < partial["client_updates"] < 200
  # Its "final" metrics are the last evaluation's, made after these updates
  # (a multiple of eval_every, as the history's last row says).
  last_row = list(csv.DictReader(open(cut / "history.csv")))[-1]
  assert partial["final_eval_client_updates"] == int(
      last_row["client_updates"]) <= partial["client_updates"]
  assert partial["final_test_accuracy"] == pytest.approx(
      float(last_row["test_accuracy"]), rel=1e-6)
  rows = list(csv.DictReader(open(cut / "arrivals.csv")))
  assert len(rows) == partial["client_updates"]
  assert cli.main(["run", "--resume", str(cut)]) == 0
  assert (cut / "final_params.msgpack").read_bytes() == \
      (full / "final_params.msgpack").read_bytes()
  assert (cut / "history.csv").read_text() == \
      (full / "history.csv").read_text()
  done = json.loads((cut / "summary.json").read_text())
  assert done["final_eval_client_updates"] == done["client_updates"] == 200


def test_a_run_piped_into_a_reader_that_stops_early_still_finishes(
    tmp_path):
  """``fedasync-jax run ... 2>&1 | head -1``: once the reader is gone,
  output is dropped and the run writes its folder (a BrokenPipeError
  stopped it with exit status 1, and the new folder was removed)."""
  import os
  import subprocess
  import sys
  cfg, out = _write_cfg(tmp_path, TINY), tmp_path / "piped"
  proc = subprocess.Popen(
      [sys.executable, "-m", "fedasync_jax.run.cli", "run", "--config",
       str(cfg), "--out", str(out)], stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
  assert proc.stdout.readline().startswith(b"output folder: ")
  proc.stdout.close()  # the reader goes away, as head does
  assert proc.wait(timeout=120) == 0
  summary = json.loads((out / "summary.json").read_text())
  assert summary["client_updates"] == 120
  assert (out / "final_params.msgpack").exists()


def test_sweep_command_members_match_single_runs(tmp_path, capsys):
  cfg = _write_cfg(tmp_path, {**TINY, "rule": {
      "staleness": "koloskova", "staleness_params": {
          "tau_c": 1, "lipschitz": 1.3, "lr": 0.37}}})
  out = tmp_path / "sweep"
  assert cli.main(["sweep", "--config", str(cfg), "--out", str(out),
                   "--grid", "rule.alpha=0.3,0.9", "--grid",
                   "client.lr=0.01,0.05", "--grid",
                   "rule.staleness_params.lipschitz=1.3,2.9",
                   "--seeds", "0,1"]) == 0
  rows = list(csv.DictReader(open(out / "sweep.csv")))
  assert len(rows) == 16
  member = rows[-1]  # seed 1, alpha 0.9, lr 0.05, L 2.9
  assert (member["seed"], member["rule.alpha"], member["client.lr"],
          member["rule.staleness_params.lipschitz"]) == \
      ("1", "0.9", "0.05", "2.9")
  single = tmp_path / "single"
  assert cli.main(["run", "--config", str(cfg), "--out", str(single),
                   "--set", "run.seed=1", "--set", "rule.alpha=0.9",
                   "--set", "client.lr=0.05", "--set",
                   "rule.staleness_params.lipschitz=2.9"]) == 0
  assert member["folder"] == "alpha=0.9,lr=0.05,lipschitz=2.9,seed=1"
  # bit for bit, over a client.lr grid too (its members scale a client
  # update built at rate 1; they scaled one at the base rate by lr / base)
  # and a staleness parameter (koloskova's 4 L gamma was folded by XLA in
  # a run, computed step by step in a sweep)
  for name in ("history.csv", "final_params.msgpack"):
    assert (out / member["folder"] / name).read_bytes() == \
        (single / name).read_bytes(), name


@pytest.mark.parametrize("grid, match", [
    ("run.concurrency=2,3", "cannot vary"),
    ("rule.alpha=0.5,x", "numbers"),
    ("rule.alpha=0.5,1.5", r"rule.alpha must be in \[0, 1\]"),
])
def test_sweep_rejects_bad_grid(tmp_path, capsys, grid, match):
  assert cli.main(["sweep", "--out", str(tmp_path / "s"), "--grid",
                   grid]) == 2
  import re
  assert re.search(match, capsys.readouterr().err)
  assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_resume_says_why_there_is_no_checkpoint(tmp_path, capsys, command):
  """A finished folder used to get "no checkpoint at ...", as if the run
  had never saved one; so did a folder a live run holds before its first
  checkpoint."""
  out = tmp_path / "done"
  assert cli.main([command, "--resume", str(out)]) == 2
  assert f"--resume: no folder {out}" in capsys.readouterr().err
  out.mkdir()
  assert cli.main([command, "--resume", str(out)]) == 2
  assert (f"--resume: no checkpoint at {out / 'checkpoint.msgpack'}"
          in capsys.readouterr().err)
  # a live run there, before its first checkpoint: named, lock kept
  import os
  import socket
  from fedasync_jax.run import folders
  lock = out / folders.LOCK
  lock.write_text(f"{os.getppid()}\n{socket.gethostname()}\n")
  assert cli.main([command, "--resume", str(out)]) == 2
  assert (f"{out} is in use by another fedasync-jax process (pid "
          f"{os.getppid()}" in capsys.readouterr().err)
  assert lock.read_text().startswith(f"{os.getppid()}\n")
  lock.unlink()
  (out / "summary.json").write_text("{}")
  assert cli.main([command, "--resume", str(out)]) == 2
  assert (f"--resume: {out} holds a finished run or sweep (summary.json is "
          f"written and its checkpoint removed); there is nothing to resume"
          in capsys.readouterr().err)
  assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_resume_with_corrupt_or_missing_checkpoint(tmp_path, capsys):
  out = tmp_path / "run"
  assert cli.main(["run", "--resume", str(out)]) == 2
  assert "no folder" in capsys.readouterr().err
  out.mkdir()
  (out / "config.json").write_text(json.dumps(config.to_dict(
      config.from_dict(TINY))))
  (out / "checkpoint.msgpack").write_bytes(b"\x93garbage")
  assert cli.main(["run", "--resume", str(out)]) == 2
  assert "unreadable" in capsys.readouterr().err


def test_resume_refuses_another_config(tmp_path):
  from fedasync_jax import experiment
  out = tmp_path / "run"
  out.mkdir()
  (out / "config.json").write_text(json.dumps(config.to_dict(
      config.from_dict(TINY))))
  (out / "checkpoint.msgpack").write_bytes(b"placeholder")
  other = config.apply_overrides(config.from_dict(TINY), ["rule.alpha=0.9"])
  with pytest.raises(ValueError, match=r"another configuration "
                                       r"\(rule.alpha: 0.9 here, 0.6 saved"):
    experiment.train_and_evaluate(other, out, resume=True)
  with pytest.raises(ValueError, match="holds a single run, not a sweep"):
    experiment.sweep_and_evaluate(None, None, None, out, resume=True)


def test_image_data_stays_uint8_and_trains(tmp_path):
  from fedasync_jax import experiment
  path = write_image_npz(tmp_path / "img.npz")
  cfg = config.from_dict({
      "data": {"name": "npz", "path": str(path), "num_clients": 10},
      "client": {"lr": 0.1, "batch_size": 8},
      "run": {"num_updates": 60, "concurrency": 3, "eval_every": 20}})
  fed = experiment.load_data(cfg)
  assert fed.train.x.dtype == np.uint8          # kept compact on the host
  assert fed.x_test.dtype == np.float32         # standardized test set
  summary = experiment.train_and_evaluate(cfg, tmp_path / "out",
                                          show_progress=False)
  assert summary["final_test_accuracy"] > 0.9


def _error_line(capsys) -> str:
  """The one line of an error on stderr (after any ``output folder`` or
  ``resuming`` note, or the progress's ``loading data`` line)."""
  lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()
           and not x.startswith(("output folder: ", "resuming ",
                                 "fedasync-jax: loading data"))]
  assert len(lines) == 1 and lines[0].startswith("fedasync-jax: error: "), \
      lines
  return lines[0]


def test_out_must_be_new_or_empty_unless_force(tmp_path, capsys):
  cfg = _write_cfg(tmp_path, TINY)
  out = tmp_path / "notes"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  for command in ("run", "sweep"):
    assert cli.main([command, "--config", str(cfg), "--out", str(out)]) == 2
    err = _error_line(capsys)
    assert f"--out {out} is not empty (notes.txt)" in err and "--force" in err
  assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
  # An interrupted run's checkpoint goes with --force, and the user is told.
  (out / "checkpoint.msgpack").write_bytes(b"an interrupted run's")
  capsys.readouterr()
  assert cli.main(["run", "--config", str(cfg), "--out", str(out),
                   "--force"]) == 0
  notice = (f"--force: {out} held an interrupted run or sweep; its "
            f"checkpoint (checkpoint.msgpack) is removed")
  assert notice in capsys.readouterr().err
  assert (out / "notes.txt").read_text() == "mine"
  assert (out / "summary.json").exists()
  summary = json.loads((out / "summary.json").read_text())
  assert any(w.startswith(notice) for w in summary["warnings"])
  capsys.readouterr()
  assert cli.main(["run", "--resume", str(out), "--force"]) == 2
  assert "pass one of them" in _error_line(capsys)
  # --out beside --resume was ignored: the run went on in its own folder.
  other = tmp_path / "other"
  for command in ("run", "sweep"):
    assert cli.main([command, "--resume", str(out), "--out",
                     str(other)]) == 2
    assert "do not pass --out with it" in _error_line(capsys)
  assert not other.exists()


def test_a_locked_folder_is_refused_and_a_stale_lock_taken_over(tmp_path,
                                                                capsys):
  import socket
  import subprocess
  import sys
  from fedasync_jax.run import folders
  cfg = _write_cfg(tmp_path, TINY)
  out, cut = tmp_path / "locked", tmp_path / "cut"
  out.mkdir()
  cut.mkdir()
  (cut / "checkpoint.msgpack").write_bytes(b"placeholder")
  holder = subprocess.Popen([sys.executable, "-c",
                             "import time; time.sleep(120)"])
  try:
    for d in (out, cut):
      (d / folders.LOCK).write_text(f"{holder.pid}\n{socket.gethostname()}\n")
    for argv in (["run", "--config", str(cfg), "--out", str(out)],
                 ["sweep", "--config", str(cfg), "--out", str(out)],
                 ["run", "--resume", str(cut)]):
      assert cli.main(argv) == 2
      d = cut if "--resume" in argv else out
      assert (f"{d} is in use by another fedasync-jax process (pid "
              f"{holder.pid}") in _error_line(capsys)
  finally:
    holder.kill()
    holder.wait()
  # Its holder is gone: the lock is stale and taken over.
  assert cli.main(["run", "--config", str(cfg), "--out", str(out)]) == 0
  assert (out / "final_params.msgpack").exists()
  assert not (out / folders.LOCK).exists()


def test_bad_out_gives_one_line_error(tmp_path, capsys, monkeypatch):
  import errno
  import os
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)  # where an empty --out would write
  for argv in (["run", "--out", ""], ["sweep", "--out", " "],
               ["run", "--resume", ""], ["sweep", "--resume", ""]):
    assert cli.main(argv) == 2
    assert "must name a folder, got" in _error_line(capsys)
  assert list(cwd.iterdir()) == []
  f = tmp_path / "file"
  f.write_text("x")
  assert cli.main(["run", "--out", str(f)]) == 2
  assert f"--out {f} is a file, not a folder" in _error_line(capsys)
  assert f.read_text() == "x"
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o555)
  real_open = os.open

  def deny(path, *args, **kwargs):  # as root, chmod alone does not deny
    if str(path).startswith(str(ro)):
      raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real_open(path, *args, **kwargs)
  monkeypatch.setattr(os, "open", deny)
  assert cli.main(["run", "--out", str(ro)]) == 2
  assert f"cannot write into {ro} (Permission denied)" in _error_line(capsys)
  assert list(ro.iterdir()) == []


def test_a_run_that_fails_to_load_data_replaces_nothing(tmp_path, capsys):
  cfg = _write_cfg(tmp_path, TINY)
  done = tmp_path / "done"
  assert cli.main(["run", "--config", str(cfg), "--out", str(done)]) == 0
  before = {p.name: p.read_bytes() for p in done.iterdir()}
  capsys.readouterr()
  bad = ["--set", "data.name=npz", "--set",
         f"data.path={tmp_path / 'missing.npz'}"]
  assert cli.main(["run", "--config", str(cfg), "--out", str(done),
                   "--force", *bad]) == 2
  assert "missing.npz" in _error_line(capsys)
  assert {p.name: p.read_bytes() for p in done.iterdir()} == before
  new = tmp_path / "new"
  assert cli.main(["sweep", "--config", str(cfg), "--out", str(new),
                   *bad]) == 2
  assert "missing.npz" in _error_line(capsys)
  assert not new.exists()


def test_a_model_that_does_not_fit_the_data_replaces_nothing(tmp_path,
                                                             capsys):
  """A CNN on Synthetic's flat examples is refused while the run is set
  up, naming both fields and the shapes, before anything is written: a
  finished run's folder under --force keeps every byte, and neither a new
  run's nor a new sweep's folder is left behind."""
  cfg = _write_cfg(tmp_path, TINY)
  done = tmp_path / "done"
  assert cli.main(["run", "--config", str(cfg), "--out", str(done)]) == 0
  before = {p.name: p.read_bytes() for p in done.iterdir()}
  capsys.readouterr()
  bad = ["--set", "model.name=mnist_cnn"]
  assert cli.main(["run", "--config", str(cfg), "--out", str(done),
                   "--force", *bad]) == 2
  err = _error_line(capsys)
  assert ("model.name 'mnist_cnn' with data.name 'synthetic' does not fit "
          "the data (examples of shape (60,), float32)") in err, err
  assert {p.name: p.read_bytes() for p in done.iterdir()} == before
  for command in ("run", "sweep"):
    new = tmp_path / f"new_{command}"
    assert cli.main([command, "--config", str(cfg), "--out", str(new),
                     *bad]) == 2
    assert "does not fit the data" in _error_line(capsys)
    assert not new.exists()


def test_a_run_that_fails_while_compiling_leaves_its_folder_as_found(
    tmp_path, capsys, monkeypatch):
  """A failure after config.json is written but before anything is
  computed (here: the executor raising at once, as a compile error would)
  removes what the run wrote: a new folder goes, an empty one stays
  empty."""
  from fedasync_jax.run import experiment

  def fail(*args, **kwargs):
    raise ValueError("compile failed")
  monkeypatch.setattr(experiment.executor, "simulate", fail)
  cfg = _write_cfg(tmp_path, TINY)
  new, empty = tmp_path / "new", tmp_path / "empty"
  empty.mkdir()
  for out in (new, empty):
    assert cli.main(["run", "--config", str(cfg), "--out", str(out),
                     "--set", "run.tensorboard=true"]) == 2
    assert "fedasync-jax: error: compile failed" in capsys.readouterr().err
  assert not new.exists()
  assert list(empty.iterdir()) == []


def test_the_summary_counts_updates_lost_on_the_way(tmp_path):
  """Tasks lost to dropout never arrive (no row in arrivals.csv); the
  summary counts them, as many as the schedule lost."""
  from fedasync_jax import experiment
  cfg = config.from_dict({**TINY, "delays": {"dropout": 0.5}})
  summary = experiment.train_and_evaluate(cfg, tmp_path / "out",
                                          show_progress=False)
  lost = experiment.setup(cfg).schedule.lost
  assert summary["lost_updates"] == int(lost.sum()) > 0
  with open(tmp_path / "out" / "arrivals.csv") as f:
    assert len(list(csv.DictReader(f))) == summary["client_updates"]


def test_default_folders_never_collide_and_a_failure_leaves_none(
    tmp_path, capsys, monkeypatch):
  """Two runs without --out in the same second get two folders (the name
  has one-second resolution; the second used to be refused as in use);
  a run that fails before writing leaves no empty default folder."""
  from fedasync_jax.run import folders
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(folders.time, "strftime",
                      lambda fmt, *a: fmt.replace("%Y%m%d-%H%M%S", "same"))
  cfg = _write_cfg(tmp_path, TINY)
  for _ in range(2):
    assert cli.main(["run", "--config", str(cfg)]) == 0
  assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
      "run-same", "run-same-2"]
  assert all((tmp_path / "runs" / n / "summary.json").exists()
             for n in ("run-same", "run-same-2"))
  capsys.readouterr()
  for command in ("run", "sweep"):
    assert cli.main([command, "--config", str(cfg), "--set",
                     "model.name=mnist_cnn"]) == 2
    assert "does not fit the data" in _error_line(capsys)
  assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
      "run-same", "run-same-2"]


def test_a_missing_input_is_refused_before_any_folder(tmp_path, capsys,
                                                     monkeypatch):
  """A path the configuration names that is not there is refused with the
  field's name before an output folder is announced or made."""
  monkeypatch.chdir(tmp_path)
  cfg = _write_cfg(tmp_path, TINY)
  for command in ("run", "sweep"):
    for setting, message in (
        (["data.name=npz", "data.path=nope.npz"],
         f"data.path: no file {tmp_path / 'nope.npz'}"),
        (["data.name=mnist", "data.data_dir=nodir"],
         f"data.data_dir: no folder {tmp_path / 'nodir'}"),
        (["delays.speeds=trace", "delays.trace_path=t.csv"],
         f"delays.trace_path: no file {tmp_path / 't.csv'}"),
        (["delays.speeds=trace", f"delays.trace_path={tmp_path}"],
         f"delays.trace_path: {tmp_path} is a folder, not a file")):
      argv = [command, "--config", str(cfg)]
      for s in setting:
        argv += ["--set", s]
      assert cli.main(argv) == 2, argv
      err = capsys.readouterr().err
      assert "output folder" not in err, err
      assert err.strip().endswith(message), err
  # A failure found once the folder is made (the model does not fit the
  # data) removes it, and the runs/ folder made for it.
  assert cli.main(["run", "--config", str(cfg), "--set",
                   "model.name=mnist_cnn"]) == 2
  err = capsys.readouterr().err
  assert "output folder: runs" in err and "does not fit the data" in err
  assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json"]


def test_demo_options_are_named_as_given_and_force_is_one(tmp_path,
                                                           capsys):
  for argv, message in (
      (["--updates", "150"],
       "--updates must be a multiple of 100 in [100, 1000000]"),
      (["--client-lr", "0"], "--client-lr must be a number > 0"),
      (["--clients", "5", "--concurrency", "6"],
       "--concurrency must be an integer in [1, 5]"),
      (["--seed", "-3"], "--seed must be an integer in [0, 2147483647]")):
    assert cli.main(["demo", "--out", str(tmp_path / "d"), *argv]) == 2
    assert message in _error_line(capsys), argv
  assert not (tmp_path / "d").exists()
  notes = tmp_path / "notes"
  notes.mkdir()
  (notes / "notes.txt").write_text("mine")
  small = ["--updates", "100", "--clients", "20", "--concurrency", "4"]
  assert cli.main(["demo", "--out", str(notes), *small]) == 2
  assert "--force" in _error_line(capsys)
  assert cli.main(["demo", "--out", str(notes), "--force", *small]) == 0
  assert (notes / "summary.json").exists()


def test_force_leaves_only_the_new_runs_outputs_and_the_users_files(
    tmp_path):
  """A run forced over a sweep's folder, and over a run that wrote
  TensorBoard events, ends with exactly the files a run writes in a new
  folder, plus the user's own file (they used to stay mixed: the sweep's
  members and sweep.csv, the old run's events)."""
  import shutil
  cfg = _write_cfg(tmp_path, TINY)
  fresh = tmp_path / "fresh"
  assert cli.main(["run", "--config", str(cfg), "--out", str(fresh)]) == 0
  assert not list(fresh.glob("*.png"))  # TINY leaves out the plots

  def names(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
  # The earlier outputs hold plots, which the forced run (no plots) must
  # remove too.
  for before in (["sweep", "--seeds", "0,1", "--set", "run.plots=true"],
                 ["run", "--set", "run.tensorboard=true", "--set",
                  "run.plots=true"]):
    out = tmp_path / before[0]
    assert cli.main([before[0], "--config", str(cfg), "--out", str(out),
                     *before[1:]]) == 0
    (out / "notes.txt").write_text("mine")
    assert cli.main(["run", "--config", str(cfg), "--out", str(out),
                     "--force"]) == 0
    assert names(out) == sorted(names(fresh) + ["notes.txt"]), before
    assert (out / "notes.txt").read_text() == "mine"
    shutil.rmtree(out)


def test_plot_or_disk_error_after_training_keeps_what_was_computed(
    tmp_path, capsys, monkeypatch):
  import errno
  from fedasync_jax.run import outputs, sweep_outputs

  def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(outputs, "plot_run", no_space)
  monkeypatch.setattr(sweep_outputs, "plot_sweep", no_space)
  cfg = _write_cfg(tmp_path, {**TINY, "run": {**TINY["run"], "plots": True}})
  warning = ("warning: plots not written (OSError: [Errno 28] No space left "
             "on device)")
  for command, out in (("run", tmp_path / "r"), ("sweep", tmp_path / "s")):
    assert cli.main([command, "--config", str(cfg), "--out", str(out)]) == 0
    assert warning in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warnings"] == [warning[len("warning: "):]]
    assert not (out / "checkpoint.msgpack").exists()
    for f in ("history.csv", "config.json"):
      assert (out / f).exists(), f
  assert (tmp_path / "r" / "final_params.msgpack").exists()
  assert (tmp_path / "s" / "seed=0" / "final_params.msgpack").exists()


def test_the_final_model_is_always_evaluated(tmp_path):
  """150 updates, evaluated every 100 (a run) or every 1000 (a sweep's
  member): the last evaluation is of the final model, at version 150."""
  from flax import serialization
  from fedasync_jax import experiment

  def cfg_of(eval_every):
    return config.from_dict({**TINY, "run": {
        **TINY["run"], "num_updates": 150, "eval_every": eval_every}})
  run, sweep = tmp_path / "run", tmp_path / "sweep"
  summary = experiment.train_and_evaluate(cfg_of(100), run,
                                          show_progress=False)
  rows = experiment.sweep_and_evaluate(cfg_of(1000), {}, [0], sweep,
                                       show_progress=False)
  member = sweep / rows[0]["folder"]
  s = experiment.setup(cfg_of(100))
  for out, versions in ((run, [0, 100, 150]), (member, [0, 150])):
    history = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["version"]) for r in history] == versions
    assert int(history[-1]["client_updates"]) == 150
    final = json.loads((out / "summary.json").read_text())
    assert final["final_test_accuracy"] == \
        float(history[-1]["test_accuracy"])
    params = serialization.from_bytes(
        s.params, (out / "final_params.msgpack").read_bytes())
    ev = s.eval_fn(params)
    assert final["final_test_loss"] == pytest.approx(float(ev["loss"]),
                                                     rel=1e-6)
    assert final["final_test_accuracy"] == pytest.approx(
        float(ev["accuracy"]), rel=1e-6)
  assert summary["final_test_accuracy"] == rows[0]["final_test_accuracy"]


def _stop_while_loading(argv, sig, *, timeout=60):
  """Starts ``fedasync-jax *argv`` in a subprocess (as its console script
  does) and sends it ``sig`` once it reports loading data; returns the
  process and its stderr so far. It is killed after ``timeout`` seconds."""
  import os
  import subprocess
  import sys
  import threading
  proc = subprocess.Popen(
      [sys.executable, "-c", "import sys; from fedasync_jax.run.cli import "
       "main; sys.exit(main())", *argv],
      env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  timer = threading.Timer(timeout, proc.kill)  # should it never get there
  timer.daemon = True
  timer.start()
  seen = []
  for line in proc.stderr:
    seen.append(line)
    if line.startswith("fedasync-jax: loading data"):
      proc.send_signal(sig)
      break
  timer.cancel()
  return proc, "".join(seen)


STOPPED_EARLY = ("before training started; nothing was written (the "
                 "output folder and a checkpoint there are unchanged)")


def _blocking_trace_cfg(tmp_path):
  """A configuration whose speed trace is a FIFO: loading the run's data
  blocks in reading it until something is written there."""
  import os
  fifo = tmp_path / "speeds.txt"
  os.mkfifo(fifo)
  return fifo, _write_cfg(tmp_path, {**TINY, "delays": {
      "speeds": "trace", "trace_path": str(fifo)}})


def test_ctrl_c_while_loading_data_stops_at_once_writing_nothing(tmp_path):
  """Ctrl-C while a run loads its data (here: blocked reading a speed
  trace) ends at once with one line and status 130, and a finished run's
  folder it was to replace (--force) is left as it was. (It used to wait
  for the data, then write over the folder with its first chunk.)"""
  import signal
  _, cfg = _blocking_trace_cfg(tmp_path)
  done = tmp_path / "done"
  done.mkdir()
  before = {"config.json": "{}", "history.csv": "version\n0\n",
            "summary.json": "{}", "checkpoint.msgpack": "x"}
  for name, text in before.items():
    (done / name).write_text(text)
  proc, seen = _stop_while_loading(["run", "--config", str(cfg), "--out",
                                    str(done), "--force"], signal.SIGINT)
  try:
    err = seen + proc.communicate(timeout=60)[1]
  finally:
    proc.kill()
    proc.wait()
  assert proc.returncode == 130, err[-3000:]
  assert "Traceback" not in err
  lines = [x for x in err.splitlines() if x.strip() and not x.startswith(
      ("output folder: ", "fedasync-jax: loading data"))]
  assert lines == [f"fedasync-jax: stopped by SIGINT {STOPPED_EARLY}"], err
  assert {p.name: p.read_text() for p in done.iterdir()} == before


def test_sigterm_while_a_sweep_loads_data_stops_at_once(tmp_path, capsys):
  """SIGTERM to a sweep blocked reading its speed trace (a FIFO held open
  with nothing written) stops it at once: one line, status 130, and the
  new output folder is not left behind. (It used to set the stop flag and
  go on reading; given an empty trace here, it then failed to load.)"""
  import os
  import signal
  import threading
  import time
  fifo, cfg = _blocking_trace_cfg(tmp_path)
  main_thread, finished = threading.get_ident(), threading.Event()

  def stop():
    deadline = time.time() + 60
    while not finished.is_set() and time.time() < deadline:
      try:  # succeeds once the sweep opens the FIFO to read it
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
      except OSError:  # ENXIO: no reader yet
        time.sleep(0.02)
        continue
      time.sleep(0.2)  # the sweep now waits in read()
      if not finished.is_set():
        signal.pthread_kill(main_thread, signal.SIGTERM)
      finished.wait(5)
      os.close(fd)  # end of file: what an old sweep read on
      return
  stopper = threading.Thread(target=stop)
  stopper.start()
  new = tmp_path / "new"
  try:
    rc = cli.main(["sweep", "--config", str(cfg), "--out", str(new),
                   "--seeds", "0,1"])
  finally:
    finished.set()
    stopper.join()
  err = capsys.readouterr().err
  assert rc == 130, err[-3000:]
  lines = [x for x in err.splitlines() if x.strip() and not x.startswith(
      ("output folder: ", "fedasync-jax: loading data"))]
  assert lines == [f"fedasync-jax: stopped by SIGTERM {STOPPED_EARLY}"], err
  assert not new.exists()


def test_an_interrupt_python_drops_is_raised_again(tmp_path, capsys):
  """Ctrl-C that lands in a garbage-collection callback (JAX has one) or a
  ``__del__`` is dropped by Python ("Exception ignored ...", and the
  command went on); before a run takes over the signals it is sent again,
  without that traceback, and ends a read that blocks (here: a FIFO)."""
  import os
  import threading
  import time
  from fedasync_jax.run import interrupts

  class Dropped:
    def __del__(self):
      raise KeyboardInterrupt("SIGINT")

  fifo = tmp_path / "fifo"
  os.mkfifo(fifo)

  def unblock():  # should the interrupt be lost, end the read after 60 s
    time.sleep(60)
    try:
      os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
      pass
  threading.Thread(target=unblock, daemon=True).start()
  t0 = time.perf_counter()
  with pytest.raises(KeyboardInterrupt, match="SIGINT"):
    with interrupts.interrupt_on_signals():
      Dropped()  # its __del__ runs here; Python drops what it raises
      fifo.read_text()  # blocks opening the FIFO: nobody writes to it
  assert time.perf_counter() - t0 < 30  # well before the unblocking
  assert "Exception ignored" not in capsys.readouterr().err


def test_ctrl_c_while_the_command_imports_jax_is_one_line(monkeypatch,
                                                          capsys):
  # The console script is run.launch:main. A Ctrl-C while it imports the
  # command line (and JAX) used to end in a traceback, an ImportError, or
  # nothing (dropped in JAX's GC callback, the run went on). Now it is
  # noted during the import and ends the command once the import is done.
  import signal
  import sys

  from fedasync_jax.run import launch

  class SignalsDuringImport:
    def find_spec(self, name, path=None, target=None):
      if name == "fedasync_jax.run.cli":
        signal.raise_signal(signal.SIGINT)
      return None

  handler = signal.getsignal(signal.SIGINT)
  monkeypatch.delitem(sys.modules, "fedasync_jax.run.cli")
  monkeypatch.setattr(sys, "meta_path", [SignalsDuringImport(),
                                         *sys.meta_path])
  assert launch.main(["config"]) == 130
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["fedasync-jax: stopped by SIGINT while starting; nothing "
                 "was written"]
  assert signal.getsignal(signal.SIGINT) is handler  # given back


def test_the_launcher_runs_the_command_when_not_interrupted(capsys):
  from fedasync_jax.run import launch
  assert launch.main(["config"]) == 0
  assert "rule:" in capsys.readouterr().out


def test_the_console_script_is_the_launcher():
  import tomllib
  from pathlib import Path
  meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
  assert meta["project"]["scripts"]["fedasync-jax"] == (
      "fedasync_jax.run.launch:main")


def test_a_global_option_after_the_command_says_where_it_goes(tmp_path,
                                                              capsys):
  """``fedasync-jax run --compile-cache off`` gave argparse's bare
  'unrecognized arguments'."""
  def refused(argv) -> str:
    with pytest.raises(SystemExit) as stop:
      cli.main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]
  for opt in (["--compile-cache", "off"], ["--cpu-conv=eigen"]):
    name = opt[0].split("=")[0]
    assert refused(["run", "--out", str(tmp_path / "x"), *opt]) == (
        f"fedasync-jax: error: {name} is an option of fedasync-jax itself: "
        f"put it before the command (fedasync-jax {name} ... run ...)")
  assert refused(["run", "--bogus"]) == ("fedasync-jax: error: unrecognized "
                                         "arguments: --bogus")
  assert not (tmp_path / "x").exists()
