"""The demo entry point on a tiny run: files written, tables printed."""

import contextlib
import csv
import io
import json
import math

import pytest

from fedasync_jax import cli, types
from fedasync_jax.run import demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  """A tiny demo: its output folder and what it printed."""
  out = tmp_path_factory.mktemp("demo") / "demo"
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    rc = cli.main(["demo", "--out", str(out), "--updates", "200",
                   "--clients", "30", "--concurrency", "4"])
  assert rc == 0
  return out, printed.getvalue()


def test_demo_writes_histories_and_summary(demo_run):
  out, text = demo_run
  summary = json.loads((out / "summary.json").read_text())
  assert set(summary["runs"]) == {"fedasync", "fedbuff", "fedavg"}
  for name, r in summary["runs"].items():
    assert 0.0 <= r["final_test_accuracy"] <= 1.0
    rows = list(csv.DictReader(open(out / f"history_{name}.csv")))
    # the vocabulary of `fedasync-jax run` and of sweeps
    assert list(rows[0]) == ["version", "simulated_time", "client_updates",
                             "client_train_loss", "test_loss",
                             "test_accuracy"]
    assert rows[0]["client_train_loss"] == "nan"  # the initial model
    assert all(0 < float(x["client_train_loss"]) < 10 for x in rows[1:])
    assert int(rows[-1]["client_updates"]) == 200
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(
        r["final_test_accuracy"])
    assert float(rows[-1]["test_loss"]) == pytest.approx(
        r["final_test_loss"])
  # FedAsync: one version per update; FedAvg: one per round of 4.
  assert summary["runs"]["fedasync"]["versions"] == 200
  assert summary["runs"]["fedavg"]["versions"] == 50
  assert "test accuracy at the last evaluation by N client updates" in text
  assert "simulated time" in text


def test_demo_tables_read_the_evaluation_each_column_names():
  """With 300 updates the columns were 75, 150, 225 and 300: the column
  "after 75 updates" showed the initial model's accuracy, "150" the one at
  100. Columns now lie on the evaluation grid, and a cell that can only
  show the initial model says so."""
  def history(every, n, t_per_update):
    return [{"client_updates": u, "simulated_time": u * t_per_update,
             "test_accuracy": u / 1000} for u in range(0, n + 1, every)]
  histories = {"fast": history(100, 300, 0.1), "slow": history(100, 300, 1.0)}
  summary = {"runs": {"fast": {"simulated_time": 30.0},
                      "slow": {"simulated_time": 300.0}}}
  t1, t2 = demo._report(summary, histories, 300)
  assert summary["accuracy_by_updates"]["fast"] == {
      "100": 0.1, "200": 0.2, "300": 0.3}
  # by 7.5 s of simulated time the slow run has not evaluated an update
  assert summary["accuracy_by_time"]["slow"]["7.5"] == 0.0
  slow_row = [x for x in t2.splitlines() if x.strip().startswith("slow")][0]
  assert slow_row.count("*") == 4 and "initial model" in t2
  assert "*" not in t1
  summary = {"runs": {"a": {"simulated_time": 1.0}}}
  demo._report(summary, {"a": history(100, 3000, 0.1)}, 3000)
  assert list(summary["accuracy_by_updates"]["a"]) == [
      "800", "1500", "2300", "3000"]


def test_demo_writes_metrics_jsonl_with_the_history_columns(demo_run):
  """``metrics.jsonl``: every algorithm's history rows, in order, each
  line ``algorithm`` then ``types.COLUMNS`` (NaN written as null)."""
  out, _ = demo_run
  lines = [json.loads(x) for x in
           (out / "metrics.jsonl").read_text().splitlines()]
  assert all(list(x) == ["algorithm", *types.COLUMNS] for x in lines)
  for name in ("fedasync", "fedbuff", "fedavg"):
    rows = list(csv.DictReader(open(out / f"history_{name}.csv")))
    mine = [x for x in lines if x["algorithm"] == name]
    assert len(mine) == len(rows) > 1
    assert mine[0]["client_train_loss"] is None
    for x, r in zip(mine, rows):
      for c in types.COLUMNS:
        want = float(r[c])
        got = math.nan if x[c] is None else x[c]
        assert got == pytest.approx(want, nan_ok=True), (name, c)
  assert [x["algorithm"] for x in lines] == sorted(
      (x["algorithm"] for x in lines),
      key=["fedasync", "fedbuff", "fedavg"].index)


def test_demo_and_run_write_the_same_arrival_columns(demo_run, tmp_path):
  out, _ = demo_run
  cfg = tmp_path / "cfg.json"
  cfg.write_text(json.dumps({
      "data": {"num_clients": 20}, "client": {"batch_size": 20},
      "run": {"num_updates": 40, "concurrency": 4, "eval_every": 20}}))
  run_out = tmp_path / "run"
  with contextlib.redirect_stdout(io.StringIO()):
    assert cli.main(["run", "--config", str(cfg), "--out",
                     str(run_out)]) == 0
  header = next(csv.reader(open(run_out / "arrivals.csv")))
  assert header == list(types.ARRIVAL_COLUMNS)
  for name in ("fedasync", "fedbuff", "fedavg"):
    rows = list(csv.DictReader(open(out / f"arrivals_{name}.csv")))
    assert list(rows[0]) == header
    assert len(rows) == 200
    assert {r["status"] for r in rows} <= {"applied", "dropped"}
    assert all(0 < float(r["train_loss"]) < 10 for r in rows)


@pytest.mark.parametrize("option, value, message", [
    ("--updates", "150", "--updates must be a multiple of 100 in [100, "
     "1000000]"),
    # (these ran for minutes, silently, taking gigabytes)
    ("--updates", "100000000", "--updates must be a multiple of 100 in "
     "[100, 1000000] (fedasync-jax run takes longer runs), got 100000000"),
    ("--clients", "100000000", "--clients must be"),
])
def test_demo_rejects_bad_input(tmp_path, capsys, option, value, message):
  rc = cli.main(["demo", "--out", str(tmp_path / "d"), option, value])
  assert rc == 2
  err = capsys.readouterr().err
  assert message in err and "100000" in err, err
  assert not (tmp_path / "d").exists()


def test_a_demo_stopped_before_writing_leaves_no_folder(tmp_path,
                                                        monkeypatch):
  """A demo interrupted while it draws its data left a folder holding an
  empty metrics.jsonl, which refused the same --out again."""
  def stop(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(demo.synthetic, "synthetic", stop)
  with pytest.raises(KeyboardInterrupt):
    demo.run_demo(tmp_path / "d", num_updates=100, log=lambda s: None)
  assert not (tmp_path / "d").exists()


def test_demo_checks_its_arguments_before_announcing_the_folder(tmp_path):
  logged = []
  with pytest.raises(ValueError, match="client_lr must be a number > 0"):
    demo.run_demo(tmp_path / "d", num_updates=100, client_lr=float("nan"),
                  log=logged.append)
  assert logged == []
  assert not (tmp_path / "d").exists()


def test_demo_never_writes_into_another_runs_folder(demo_run, tmp_path):
  """The demo's folder rule is the run's: a folder holding outputs is
  refused with every byte kept, a non-empty one needs force."""
  out, _ = demo_run
  before = {p.name: p.read_bytes() for p in out.iterdir()}
  with pytest.raises(ValueError, match="is not empty .*--force"):
    demo.run_demo(out, num_updates=100, num_clients=30, concurrency=4,
                  log=lambda s: None)
  assert {p.name: p.read_bytes() for p in out.iterdir()} == before
  notes = tmp_path / "notes"
  notes.mkdir()
  (notes / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="is not empty"):
    demo.run_demo(notes, num_updates=100, num_clients=30, concurrency=4,
                  log=lambda s: None)
  demo.run_demo(notes, num_updates=100, num_clients=30, concurrency=4,
                log=lambda s: None, force=True)
  assert (notes / "notes.txt").read_text() == "mine"
  assert (notes / "summary.json").exists()


def test_force_leaves_only_the_new_commands_outputs(demo_run, tmp_path):
  """``run --force`` over a demo's folder kept the demo's histories and
  tables beside the run's files, and ``demo --force`` over a run's folder
  kept the run's; each now removes the other's outputs (the user's own
  files stay)."""
  import shutil
  out, _ = demo_run
  written = {p.name for p in out.iterdir()}
  assert written == set(demo.FILES) | {"summary.json", "metrics.jsonl"}
  folder = tmp_path / "f"
  shutil.copytree(out, folder)
  (folder / "notes.txt").write_text("mine")
  assert cli.main(["run", "--out", str(folder), "--force", "--set",
                   "data.num_clients=10", "--set", "run.num_updates=40",
                   "--set", "run.concurrency=2"]) == 0
  after_run = {p.name for p in folder.iterdir()}
  assert not after_run & set(demo.FILES)
  assert {"notes.txt", "config.json", "history.csv"} <= after_run
  demo.run_demo(folder, num_updates=100, num_clients=30, concurrency=4,
                log=lambda s: None, force=True)
  assert {p.name for p in folder.iterdir()} == written | {"notes.txt"}


def test_demo_help_names_every_file_the_demo_writes(capsys):
  """``demo --help`` listed its outputs without tables.txt."""
  from fedasync_jax.run import cli, demo
  with pytest.raises(SystemExit):
    cli.main(["demo", "--help"])
  text = " ".join(capsys.readouterr().out.split())
  for f in ("summary.json", "metrics.jsonl", "history CSVs", "arrivals CSVs"):
    assert f in text, f
  assert [f for f in demo.FILES if not f.endswith(".csv")] == ["tables.txt"]
  assert "tables.txt" in text
