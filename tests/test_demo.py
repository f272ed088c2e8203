"""The demo entry point on a tiny run: files written, tables printed."""

import csv
import json

import pytest

from fedasync_jax import cli


def test_demo_writes_histories_and_summary(tmp_path, capsys):
  out = tmp_path / "demo"
  rc = cli.main(["demo", "--out", str(out), "--updates", "200",
                 "--clients", "30", "--concurrency", "4"])
  assert rc == 0
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
  text = capsys.readouterr().out
  assert "test accuracy after N client updates" in text
  assert "simulated time" in text


def test_demo_rejects_bad_input(tmp_path, capsys):
  rc = cli.main(["demo", "--out", str(tmp_path / "d"), "--updates", "150"])
  assert rc == 2
  assert "multiple of 100" in capsys.readouterr().err
