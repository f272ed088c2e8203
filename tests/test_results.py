"""Result files: CSV columns from every row, JSON of configurations."""

import csv
import json

import numpy as np

from fedasync_jax import config, results


def test_csv_columns_are_every_key_in_first_seen_order(tmp_path):
  path = tmp_path / "r.csv"
  results.write_csv(path, [{"a": 1, "b": np.float32(0.5)},
                           {"b": 2, "c": "x"}])
  with open(path) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["a", "b", "c"]
  assert rows == [{"a": "1", "b": "0.5", "c": ""},
                  {"a": "", "b": "2", "c": "x"}]


def test_json_converts_configs_and_numpy(tmp_path):
  path = tmp_path / "s.json"
  cfg = config.from_dict({"rule": {"alpha": 0.9}})
  results.write_json(path, {"config": cfg, "n": np.int64(3),
                            "v": np.arange(2)})
  got = json.loads(path.read_text())
  assert got["config"]["rule"]["alpha"] == 0.9
  assert got["n"] == 3 and got["v"] == [0, 1]
  assert not list(tmp_path.glob(".s.json.*"))  # no temporary file left


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
  import os
  from fedasync_jax.run import results
  path = tmp_path / "a.json"
  results.write_json(path, {"a": 1})
  umask = os.umask(0)
  os.umask(umask)
  assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
