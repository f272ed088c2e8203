"""Sweeps from the run layer: outputs, interrupt and resume, refusals."""

import csv
import json
import math
import os
import re
import signal
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import interrupt_after_checkpoint
from fedasync_jax import cli, config
from fedasync_jax.run import experiment, sweep_outputs, sweep_run

# The plots take longer than these runs; the tests that look at them ask.
TINY = {"data": {"num_clients": 20}, "client": {"batch_size": 20},
        "run": {"num_updates": 60, "concurrency": 4, "eval_every": 20,
                "chunk_steps": 8, "plots": False}}
GRID = {"rule.alpha": [0.3, 0.9]}
SWEPT = {**TINY, "run": {k: v for k, v in TINY["run"].items()
                         if k != "plots"}}  # the default plots


def _csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def _write_cfg(tmp_path, d):
  p = tmp_path / "cfg.json"
  p.write_text(json.dumps(d))
  return p


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  """A finished 2 x 3-seed sweep of ``SWEPT``: ``(folder, rows)``."""
  out = tmp_path_factory.mktemp("sweep") / "s"
  rows = experiment.sweep_and_evaluate(config.from_dict(SWEPT), GRID,
                                       [0, 1, 2], out, show_progress=False)
  return out, rows


def test_sweep_folder_layout(swept):
  out, rows = swept
  names = [f"alpha={a},seed={s}" for s in (0, 1, 2) for a in (0.3, 0.9)]
  assert [r["folder"] for r in rows] == names
  for i, name in enumerate(names):
    for f in ("history.csv", "arrivals.csv", "participation.csv",
              "summary.json", "final_params.msgpack"):
      assert (out / name / f).exists(), (name, f)
    assert (out / f"m{i}").resolve() == (out / name).resolve()
  for f in ("config.json", "history.csv", "summary.csv", "sweep.csv",
            "summary.json", "test_accuracy.png", "test_loss.png"):
    assert (out / f).exists(), f
  assert not (out / "checkpoint.msgpack").exists()
  saved = json.loads((out / "config.json").read_text())
  assert saved["grid"] == GRID and saved["seeds"] == [0, 1, 2]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["members"] == 6 and not summary["stopped_early"]
  assert summary["warnings"] == []  # always there
  for r in rows:
    member = json.loads((out / r["folder"] / "summary.json").read_text())
    assert member["warnings"] == []
    # the member's own rate, and the sweep's named as such
    assert member["updates_per_s"] == pytest.approx(
        member["client_updates"] / member["wall_time_s"])
    ex = member["executor"]
    assert "updates_per_s" not in ex
    assert ex["sweep_updates_per_s"] == pytest.approx(
        6 * 60 / ex["wall_time_s"], rel=1e-6)
  assert summary["client_updates"] == 6 * 60
  assert not list(out.glob(".*"))  # no temporary file left


def test_long_history_is_every_members_history(swept):
  out, _ = swept
  long = _csv(out / "history.csv")
  assert list(long[0])[:6] == ["member", "rule.alpha", "seed", "version",
                               "simulated_time", "client_updates"]
  for col in ("client_train_loss", "test_loss", "test_accuracy"):
    assert col in long[0]
  total = 0
  for r in _csv(out / "sweep.csv"):
    own = _csv(out / r["folder"] / "history.csv")
    mine = [x for x in long if x["member"] == r["member"]]
    assert len(mine) == len(own) > 1
    total += len(own)
    for a, b in zip(mine, own):
      assert (a["rule.alpha"], a["seed"]) == (r["rule.alpha"], r["seed"])
      for k in b:
        assert a[k] == b[k], k
    # the clients' training loss: none before the first update
    assert mine[0]["client_train_loss"] == "nan"
    assert all(math.isfinite(float(x["client_train_loss"]))
               for x in mine[1:])
  assert len(long) == total


def test_summary_is_the_mean_and_interval_over_seeds(swept):
  out, _ = swept
  finals = {}
  for r in _csv(out / "sweep.csv"):
    s = json.loads((out / r["folder"] / "summary.json").read_text())
    finals.setdefault(float(r["rule.alpha"]), []).append(s)
  rows = _csv(out / "summary.csv")
  assert [float(r["rule.alpha"]) for r in rows] == [0.3, 0.9]
  bounds = {"final_test_accuracy": (0.0, 1.0),
            "final_test_loss": (0.0, np.inf)}
  for r in rows:
    members = finals[float(r["rule.alpha"])]
    assert int(r["seeds"]) == len(members) == 3
    for m in ("final_test_accuracy", "final_test_loss"):
      v = np.array([s[m] for s in members])
      half = stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
      low, high = np.clip([v.mean() - half, v.mean() + half], *bounds[m])
      assert float(r[f"{m}_mean"]) == pytest.approx(v.mean(), rel=1e-12)
      assert float(r[f"{m}_ci95_low"]) == pytest.approx(low, rel=1e-9)
      assert float(r[f"{m}_ci95_high"]) == pytest.approx(high, rel=1e-9)
    assert "over 3 seeds" in r["interval"]


def test_one_seed_has_no_interval_and_plots_are_optional(tmp_path,
                                                         monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
  out = tmp_path / "s"
  experiment.sweep_and_evaluate(config.from_dict(SWEPT), GRID, [4], out,
                                show_progress=False)
  rows = _csv(out / "summary.csv")
  assert len(rows) == 2 and {r["seeds"] for r in rows} == {"1"}
  for r in rows:
    assert r["final_test_accuracy_ci95_low"] == "nan"
    assert "one seed" in r["interval"]
    assert float(r["final_test_accuracy_mean"]) > 0
  assert not list(out.glob("*.png"))
  assert (out / "alpha=0.3,seed=4" / "final_params.msgpack").exists()


def test_names_and_intervals():
  names = sweep_outputs.member_folders(
      {"rule.alpha": [1.0], "client.lr": [1e-5], "rule.params.lr": [0.5]},
      [({"rule.alpha": 1.0, "client.lr": 1e-5, "rule.params.lr": 0.5}, 3)])
  assert names == ["alpha=1,client.lr=1e-05,rule.params.lr=0.5,seed=3"]
  assert sweep_outputs.member_folders({}, [({}, 0), ({}, 1)]) == \
      ["seed=0", "seed=1"]
  mean, low, high = sweep_outputs.interval([[1.0, 2.0], [3.0, 2.0]])
  np.testing.assert_allclose(mean, [2.0, 2.0])
  np.testing.assert_allclose(high - mean, [stats.t.ppf(0.975, 1) * 2 ** 0.5
                                           / 2 ** 0.5, 0.0])
  x, m, lo, hi = sweep_outputs.mean_band([
      (np.array([0.0, 10.0, 20.0]), np.array([0.0, 1.0, 2.0])),
      (np.array([0.0, 5.0, 15.0]), np.array([2.0, 2.0, 2.0]))])
  np.testing.assert_array_equal(x, [0.0, 5.0, 10.0, 15.0])
  np.testing.assert_allclose(m, [1.0, 1.25, 1.5, 1.75])


def test_intervals_are_clipped_to_the_quantitys_range(tmp_path,
                                                     monkeypatch):
  """Two seeds' 95% interval is 12.7 standard errors each side: it would
  leave [0, 1] for accuracies and go below 0 for losses (cross-entropies),
  in summary.csv and in the plots' bands."""
  grid_members = [({"rule.alpha": 0.3}, 0), ({"rule.alpha": 0.3}, 1)]
  finals = [(0.05, 0.1), (0.95, 0.3)]
  rows = [{"final_test_accuracy": a, "final_test_loss": loss,
           "client_updates": 60, "stopped_early": False}
          for a, loss in finals]
  row, = sweep_outputs.summary_rows(grid_members, rows)
  assert row["final_test_accuracy_mean"] == pytest.approx(0.5)
  assert row["final_test_accuracy_ci95_low"] == 0.0
  assert row["final_test_accuracy_ci95_high"] == 1.0
  assert row["final_test_loss_ci95_low"] == 0.0
  assert row["final_test_loss_ci95_high"] == pytest.approx(
      0.2 + stats.t.ppf(0.975, 1) * 0.1, rel=1e-9)  # not clipped above
  pytest.importorskip("matplotlib")
  from matplotlib.axes import Axes
  bands, fill_between = [], Axes.fill_between

  def spy(self, x, low, high, **kw):
    bands.append((np.asarray(low), np.asarray(high)))
    return fill_between(self, x, low, high, **kw)
  monkeypatch.setattr(Axes, "fill_between", spy)
  histories = [[{"client_updates": 0, "simulated_time": 0.0,
                 "test_accuracy": 0.1, "test_loss": 2.0},
                {"client_updates": 10, "simulated_time": 1.0,
                 "test_accuracy": a, "test_loss": loss}]
               for a, loss in finals]
  sweep_outputs.plot_sweep(tmp_path, {"rule.alpha": [0.3]}, grid_members,
                           histories)
  assert len(bands) == 4  # accuracy, then loss; two x axes each
  for low, high in bands[:2]:
    np.testing.assert_allclose(low, [0.1, 0.0])
    np.testing.assert_allclose(high, [0.1, 1.0])
  for low, high in bands[2:]:
    np.testing.assert_allclose(low, [2.0, 0.0])
    assert high[1] > 1.0
  assert (tmp_path / "test_accuracy.png").exists()


def test_a_sweep_of_many_grid_points_names_them_in_summary_csv(
    tmp_path, monkeypatch):
  """Beyond LEGEND_POINTS the plots draw no legend and say where the
  values are (250 names filled the figure, and matplotlib warned that it
  could not lay it out)."""
  import warnings
  pytest.importorskip("matplotlib")
  from matplotlib.axes import Axes
  from matplotlib.figure import Figure
  legends, titles = [], []
  monkeypatch.setattr(sweep_outputs, "LEGEND_POINTS", 3)
  monkeypatch.setattr(Axes, "legend", lambda self, *a, **k: legends.append(1))
  suptitle = Figure.suptitle
  monkeypatch.setattr(Figure, "suptitle", lambda self, t, **k: (
      titles.append(t), suptitle(self, t, **k))[1])
  alphas = [0.1, 0.2, 0.3, 0.4]
  grid_members = [({"rule.alpha": a}, 0) for a in alphas]
  histories = [[{"client_updates": c, "simulated_time": float(c),
                 "test_accuracy": a, "test_loss": 1.0} for c in (0, 10)]
               for a in alphas]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    sweep_outputs.plot_sweep(tmp_path, {"rule.alpha": alphas}, grid_members,
                             histories)
  assert legends == []
  assert all("4 grid points, too many to name: summary.csv" in t
             for t in titles) and len(titles) == 2


def test_force_over_a_previous_sweep_leaves_only_the_new_one(swept,
                                                             tmp_path):
  """A 1-member sweep forced into a copy of a 6-member one: the old
  members' folders, m<i> links and TensorBoard events go; what a sweep
  does not write stays."""
  import shutil
  old, _ = swept
  out = tmp_path / "s"
  shutil.copytree(old, out, symlinks=True)
  (out / "notes.txt").write_text("mine")
  (out / "alpha=0.9,seed=1" / "notes.txt").write_text("mine")
  (out / "alpha=0.5,seed=7").mkdir()  # named like a member; not the sweep's
  (out / "alpha=0.5,seed=7" / "summary.json").write_text("{}")
  logs = out / "tensorboard"
  for name in ("alpha=0.9,seed=2", "mine"):
    (logs / name).mkdir(parents=True)
    (logs / name / "events.out.tfevents.1.host").write_bytes(b"")
  rows = experiment.sweep_and_evaluate(
      config.from_dict(TINY), {"rule.alpha": [0.3]}, [0], out, force=True,
      show_progress=False)
  assert [r["folder"] for r in rows] == ["alpha=0.3,seed=0"]
  # the old sweep's plots went, and run.plots=false drew none
  assert not list(out.glob("*.png"))
  assert sorted(p.name for p in out.iterdir() if p.is_symlink()) == ["m0"]
  assert sorted(p.name for p in out.iterdir()
                if p.is_dir() and not p.is_symlink()) == [
                    "alpha=0.3,seed=0", "alpha=0.5,seed=7",
                    "alpha=0.9,seed=1", "tensorboard"]
  assert [p.name for p in (out / "alpha=0.9,seed=1").iterdir()] == \
      ["notes.txt"]
  assert (out / "notes.txt").read_text() == "mine"
  assert (out / "alpha=0.5,seed=7" / "summary.json").read_text() == "{}"
  assert [p.name for p in logs.iterdir()] == ["mine"]
  assert len(_csv(out / "sweep.csv")) == len(_csv(out / "summary.csv")) == 1
  saved = json.loads((out / "config.json").read_text())
  assert (saved["grid"], saved["seeds"]) == ({"rule.alpha": [0.3]}, [0])
  assert {p.name for p in (out / "alpha=0.3,seed=0").iterdir()} == \
      {p.name for p in (old / "alpha=0.3,seed=0").iterdir()}
  for r in _csv(old / "sweep.csv"):  # every file a member folder gets
    assert {p.name for p in (old / r["folder"]).iterdir()} <= \
        set(sweep_outputs.MEMBER_FILES)


def test_sweep_refuses_a_taken_folder_and_repeated_values(tmp_path, swept):
  out, _ = swept
  with pytest.raises(ValueError, match="already holds"):
    experiment.sweep_and_evaluate(config.from_dict(TINY), GRID, [0], out)
  with pytest.raises(ValueError, match=r"seeds lists \[1\] more than once"):
    experiment.sweep_and_evaluate(config.from_dict(TINY), GRID, [1, 1],
                                  tmp_path / "x")
  assert not (tmp_path / "x").exists()
  with pytest.raises(ValueError, match="holds a sweep; continue it with: "
                                       "fedasync-jax sweep --resume"):
    _fake_checkpoint_then(lambda: experiment.train_and_evaluate(
        None, out, resume=True), out)


def _fake_checkpoint_then(fn, folder):
  """Calls ``fn`` with a placeholder checkpoint in ``folder`` (the checks
  that refuse a folder come before the checkpoint is read)."""
  ck = folder / "checkpoint.msgpack"
  ck.write_bytes(b"placeholder")
  try:
    return fn()
  finally:
    ck.unlink()


def test_resume_refuses_another_config_grid_or_seeds(swept, capsys):
  out, _ = swept
  cfg = config.from_dict(SWEPT)
  cases = [
      (cfg, {"rule.alpha": [0.3, 0.6]}, [0, 1, 2],
       r"another grid \(rule.alpha: \[0.3, 0.6\] here, \[0.3, 0.9\] saved"),
      (cfg, GRID, [0, 1], r"with other seeds \(\[0, 1\] here, \[0, 1, 2\]"),
      (config.apply_overrides(cfg, ["rule.alpha=0.5"]), GRID, [0, 1, 2],
       r"another configuration \(rule.alpha: 0.5 here, 0.6 saved\)")]
  for c, g, s, match in cases:
    with pytest.raises(ValueError, match=match):
      _fake_checkpoint_then(lambda: experiment.sweep_and_evaluate(
          c, g, s, out, resume=True), out)
  assert cli.main(["sweep", "--resume", str(out)]) == 2
  assert "nothing to resume" in capsys.readouterr().err
  assert cli.main(["sweep", "--resume", str(out), "--grid",
                   "rule.alpha=0.3"]) == 2
  assert "do not pass --config, --set, --grid" in capsys.readouterr().err


def test_chunk_is_shared_out_over_members_on_cpu():
  cfg = config.from_dict({"run": {"chunk_steps": 64}})
  assert sweep_run.chunk_steps_for(cfg, 1, "map") == 64
  assert sweep_run.chunk_steps_for(cfg, 16, "map") == 4
  assert sweep_run.chunk_steps_for(cfg, 100, "map") == 1
  assert sweep_run.chunk_steps_for(cfg, 100, "vmap") == 64


def test_sigterm_stops_and_resume_in_process_matches(swept, tmp_path,
                                                      monkeypatch):
  full, _ = swept
  reports = []

  class Bar:
    """Sends SIGTERM to this process at the first progress report."""

    def __init__(self, *args, **kwargs):
      del args, kwargs

    def __call__(self, info):
      reports.append(info)
      if len(reports) == 1:
        signal.raise_signal(signal.SIGTERM)

  monkeypatch.setattr(sweep_run, "ProgressBar", Bar)
  out = tmp_path / "s"
  with pytest.raises(experiment.Interrupted, match="stopped by SIGTERM"):
    experiment.sweep_and_evaluate(config.from_dict(TINY), GRID, [0, 1, 2],
                                  out)
  assert len(reports) == 2  # stopped at the next chunk boundary
  assert (out / "checkpoint.msgpack").exists()
  assert json.loads((out / "summary.json").read_text())["stopped_early"]
  monkeypatch.undo()
  _edits_of_an_interrupted_sweep_are_refused(out, tmp_path)
  rows = experiment.sweep_and_evaluate(None, None, None, out, resume=True,
                                       show_progress=False)
  summary = json.loads((out / "summary.json").read_text())
  assert summary["wall_time_before_resume_s"] > 0
  assert summary["wall_time_s"] > summary["wall_time_before_resume_s"]
  assert len(rows) == 6 and not (out / "checkpoint.msgpack").exists()
  for name in ("history.csv", "summary.csv", "sweep.csv"):
    assert (out / name).read_text() == (full / name).read_text(), name
  for r in rows:
    assert (out / r["folder"] / "final_params.msgpack").read_bytes() == \
        (full / r["folder"] / "final_params.msgpack").read_bytes()


def test_members_stream_their_metrics_as_the_sweep_goes(swept, tmp_path,
                                                        monkeypatch):
  """A killed sweep kept no member's metrics: they were written at the
  end only. Each member's ``metrics.jsonl`` now grows as the sweep goes,
  and a resume appends to it without repeating a line."""
  full, rows = swept
  folders = [r["folder"] for r in rows]
  seen, infos = [], []

  class Crash(Exception):
    pass

  class Bar:
    """Reads every member's stream at each report; crashes at the first
    past 30 of each member's 60 updates (evaluated every 20), after its
    checkpoint: nothing is written at the end, as after a kill."""

    def __init__(self, *args, **kwargs):
      del args, kwargs

    def __call__(self, info):
      seen.append([_jsonl(out / f / "metrics.jsonl") for f in folders])
      infos.append(info)
      if crash and info["members"][0]["arrivals_done"] > 30:
        raise Crash

  monkeypatch.setattr(sweep_run, "ProgressBar", Bar)
  out = tmp_path / "s"
  d = {**TINY, "run": {**TINY["run"], "checkpoint_every_s": 0}}
  crash = True
  with pytest.raises(Crash):
    experiment.sweep_and_evaluate(config.from_dict(d), GRID, [0, 1, 2], out)
  killed = [_jsonl(out / f / "metrics.jsonl") for f in folders]
  assert all(len(lines) >= 1 for lines in killed), killed
  assert not (out / "sweep.csv").exists()  # nothing else was written
  finals = [_jsonl(full / f / "metrics.jsonl") for f in folders]
  for lines, final in zip(killed, finals):
    by_updates = {x["client_updates"]: x for x in final}
    for x in lines:  # each streamed line is the finished sweep's
      assert x["test_accuracy"] == pytest.approx(
          by_updates[x["client_updates"]]["test_accuracy"], rel=1e-6)
      assert x["version"] == by_updates[x["client_updates"]]["version"]
  # Before any member evaluates an update, the first report holds every
  # member's initial evaluation (the bar read 'test acc nan').
  assert infos[0]["members"][0]["arrivals_done"] < 20
  assert all(m["last_eval"]["client_updates"] == 0
             for m in infos[0]["members"])
  assert all(lines[0]["client_updates"] == 0 for lines in killed)
  # The members differ (their own evaluations, not member 0's).
  assert len({x["test_loss"] for m in killed for x in m[-1:]}) > 1
  crash, seen[:] = False, []
  experiment.sweep_and_evaluate(None, None, None, out, resume=True)
  for before, after in zip(killed, seen[-1]):  # appended, none repeated
    assert after[:len(before)] == before and len(after) > len(before)
    ups = [x["client_updates"] for x in after]
    assert ups == sorted(set(ups))
  for f, final in zip(folders, finals):  # then the complete file
    assert _jsonl(out / f / "metrics.jsonl") == final


def _jsonl(path):
  """The rows of a ``metrics.jsonl`` ([] where there is none)."""
  if not path.exists():
    return []
  return [json.loads(x) for x in path.read_text().splitlines()]


def _edits_of_an_interrupted_sweep_are_refused(out, tmp_path):
  """Copies of the interrupted sweep ``out`` with an edited config.json or
  a damaged checkpoint are refused, naming what changed."""
  import shutil
  saved = json.loads((out / "config.json").read_text())
  edits = [(("base", "client", "lr"), 0.02,
            "base.client.lr: 0.02 in config.json, 0.01 in the checkpoint"),
           (("seeds",), [0, 1], "seeds: [0, 1] in config.json, [0, 1, 2]"),
           (("grid", "rule.alpha"), [0.3, 0.6], "grid.rule.alpha: [0.3, 0.6]"),
           (("chunk_steps",), 1, "chunk_steps: 1 in config.json")]
  for i, (keys, value, match) in enumerate(edits):
    c = tmp_path / f"edit{i}"
    shutil.copytree(out, c)
    d = json.loads(json.dumps(saved))
    target = d
    for k in keys[:-1]:
      target = target[k]
    target[keys[-1]] = value
    (c / "config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=re.escape(match)):
      experiment.sweep_and_evaluate(None, None, None, c, resume=True,
                                    show_progress=False)
  c = tmp_path / "flipped"
  shutil.copytree(out, c)
  blob = bytearray((c / "checkpoint.msgpack").read_bytes())
  blob[-5] ^= 0x01
  (c / "checkpoint.msgpack").write_bytes(bytes(blob))
  with pytest.raises(ValueError, match="checksum does not match"):
    experiment.sweep_and_evaluate(None, None, None, c, resume=True,
                                  show_progress=False)


def test_sweep_interrupt_and_resume_are_bit_identical(tmp_path, capsys):
  d = {**TINY, "data": {"num_clients": 40, "synthetic_alpha": 0.5},
       "run": {**TINY["run"], "num_updates": 200, "concurrency": 8,
               "eval_every": 40, "chunk_steps": 4,
               "checkpoint_every_s": 0}}
  cfg = _write_cfg(tmp_path, d)
  args = ["--config", str(cfg), "--grid", "rule.alpha=0.3,0.9", "--seeds",
          "0,1"]
  full, cut = tmp_path / "full", tmp_path / "cut"
  assert cli.main(["sweep", *args, "--out", str(full)]) == 0
  rc, err = interrupt_after_checkpoint(
      ["sweep", *args, "--out", str(cut)], cut,
      env=dict(os.environ, FEDASYNC_JAX_CACHE_DIR="off"), timeout=180)
  assert rc == 130, err[-2000:]
  assert "Traceback" not in err, err[-2000:]
  assert f"fedasync-jax sweep --resume {cut}" in err
  assert (cut / "checkpoint.msgpack").exists()
  # The outputs so far were written too.
  partial = json.loads((cut / "summary.json").read_text())
  assert partial["stopped_early"] and 0 < partial["client_updates"] < 800
  members = _csv(cut / "sweep.csv")
  assert len(members) == 4
  assert sum(int(r["client_updates"]) for r in members) == \
      partial["client_updates"]
  for r in members:
    assert not (cut / r["folder"] / "final_params.msgpack").exists()
    assert len(_csv(cut / r["folder"] / "arrivals.csv")) == \
        int(r["client_updates"])
  # A new sweep cannot take the folder; the resume must be the same sweep.
  assert cli.main(["sweep", *args, "--out", str(cut)]) == 2
  assert "--resume" in capsys.readouterr().err
  with pytest.raises(ValueError, match="another grid"):
    experiment.sweep_and_evaluate(None, {"rule.alpha": [0.3, 0.6]}, None,
                                  cut, resume=True)
  assert cli.main(["sweep", "--resume", str(cut)]) == 0
  # The bar shows the members' mean accuracy and range (member 0's alone
  # before).
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert re.search(r"800/800 updates .*test acc +0\.\d+ mean "
                   r"\(0\.\d+-[01]\.\d+\)", last), last
  assert not (cut / "checkpoint.msgpack").exists()
  for name in ("history.csv", "summary.csv", "sweep.csv"):
    assert (cut / name).read_text() == (full / name).read_text(), name
  for r in _csv(full / "sweep.csv"):
    for name in ("final_params.msgpack", "history.csv", "arrivals.csv"):
      assert (cut / r["folder"] / name).read_bytes() == \
          (full / r["folder"] / name).read_bytes(), (r["folder"], name)
