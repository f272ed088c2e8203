"""The TensorBoard event files (``run/tensorboard.py``) and ``run.tensorboard``.

The files are read back here with a reader of this test's own (record
framing, a bit-by-bit CRC-32C, protocol buffer fields), independent of the
module's encoder and decoder.
"""

import json
import re
import struct

import numpy as np
import pytest

from fedasync_jax import cli
from fedasync_jax.run import metrics, tensorboard

TINY = {"data": {"num_clients": 20},
        "client": {"batch_size": 20},
        "run": {"num_updates": 120, "concurrency": 4, "eval_every": 40,
                "chunk_steps": 8, "tensorboard": True, "plots": False}}


# ------------------------------------------------------- an independent reader


def _crc32c_bitwise(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc ^= b
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
  c = _crc32c_bitwise(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) % 2**32


def _records(blob: bytes) -> list:
  """Each TFRecord's data; asserts its length and both checksums."""
  out, pos = [], 0
  while pos < len(blob):
    length = struct.unpack("<Q", blob[pos:pos + 8])[0]
    assert struct.unpack("<I", blob[pos + 8:pos + 12])[0] == _masked(
        blob[pos:pos + 8])
    data = blob[pos + 12:pos + 12 + length]
    assert len(data) == length
    end = pos + 12 + length
    assert struct.unpack("<I", blob[end:end + 4])[0] == _masked(data)
    out.append(data)
    pos = end + 4
  assert pos == len(blob)
  return out


def _proto(msg: bytes) -> list:
  """``(field number, value)`` pairs: varints as ints, fixed64/fixed32 as
  raw bytes, length-delimited as bytes."""
  out, pos = [], 0

  def varint():
    nonlocal pos
    n, shift = 0, 0
    while True:
      b = msg[pos]
      pos += 1
      n |= (b & 0x7F) << shift
      shift += 7
      if b < 0x80:
        return n
  while pos < len(msg):
    key = varint()
    wire = key & 7
    if wire == 0:
      value = varint()
    elif wire == 1:
      value, pos = msg[pos:pos + 8], pos + 8
    elif wire == 5:
      value, pos = msg[pos:pos + 4], pos + 4
    else:
      assert wire == 2, wire
      n = varint()
      value, pos = msg[pos:pos + n], pos + n
    out.append((key >> 3, wire, value))
  assert pos == len(msg)
  return out


def _events(path) -> list:
  """``(wall_time, step, file_version or {tag: value})`` of each event."""
  out = []
  for rec in _records(path.read_bytes()):
    wall, step, what = None, 0, None
    for number, wire, value in _proto(rec):
      if number == 1:
        assert wire == 1
        wall = struct.unpack("<d", value)[0]
      elif number == 2:
        assert wire == 0
        step = value
      elif number == 3:
        what = value.decode()
      elif number == 5:
        what = {}
        for n, w, v in _proto(value):
          assert (n, w) == (1, 2)
          fields = {vn: vv for vn, _, vv in _proto(v)}
          what[fields[1].decode()] = struct.unpack("<f", fields[2])[0]
    out.append((wall, step, what))
  return out


# ------------------------------------------------------------------ the module


@pytest.mark.parametrize("data, crc", [
    (b"123456789", 0xE3069283),
    (b"", 0),
    (bytes(32), 0x8A9136AA),                    # RFC 3720, B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
], ids=["digits", "empty", "zeros", "ones", "ascending", "descending"])
def test_crc32c_matches_known_vectors(data, crc):
  assert tensorboard.crc32c(data) == crc
  assert _crc32c_bitwise(data) == crc
  assert tensorboard.masked_crc32c(data) == _masked(data)


def test_crc32c_continues_over_pieces():
  whole = tensorboard.crc32c(b"123456789")
  assert tensorboard.crc32c(b"6789", tensorboard.crc32c(b"12345")) == whole


def test_written_events_read_back_independently(tmp_path):
  rows = [{"version": 0, "simulated_time": 0.0, "client_updates": 0,
           "client_train_loss": None, "test_loss": 2.5,
           "test_accuracy": 0.125},
          {"version": 40, "simulated_time": 12.75, "client_updates": 300,
           "client_train_loss": 1.5, "test_loss": 0.75,
           "test_accuracy": 0.875, "flag": True, "name": "x"},
          {"client_updates": 2**40, "test_loss": float("nan"),
           "test_accuracy": 1.0}]
  path = tensorboard.write_rows(tmp_path / "tb", rows)
  assert re.fullmatch(r"events\.out\.tfevents\.\d{10}\.\S+", path.name)
  events = _events(path)
  assert events[0][2] == "brain.Event:2" and events[0][1] == 0
  assert [e[1] for e in events[1:]] == [0, 300, 2**40]
  assert events[1][2] == {"version": 0.0, "simulated_time": 0.0,
                          "test_loss": 2.5, "test_accuracy": 0.125}
  assert events[2][2] == {"version": 40.0, "simulated_time": 12.75,
                          "client_train_loss": 1.5, "test_loss": 0.75,
                          "test_accuracy": 0.875}
  assert events[3][2] == {"test_accuracy": 1.0}  # NaN left out
  assert all(isinstance(e[0], float) and e[0] > 1.6e9 for e in events)
  # The module's own reader agrees.
  mine = tensorboard.read_events(path)
  assert [(e["step"], e.get("scalars", e.get("file_version")))
          for e in mine] == [(e[1], e[2]) for e in events]


def test_a_damaged_event_file_is_refused_naming_it(tmp_path):
  path = tensorboard.write_rows(tmp_path, [{"client_updates": 1,
                                            "test_loss": 0.5}])
  blob = bytearray(path.read_bytes())
  blob[-6] ^= 1
  path.write_bytes(bytes(blob))
  with pytest.raises(ValueError, match="bad data checksum"):
    tensorboard.read_events(path)
  path.write_bytes(bytes(blob[:-3]))
  with pytest.raises(ValueError, match=f"{path.name}: truncated record"):
    tensorboard.read_events(path)


def test_the_stream_appends_each_row_at_once_and_the_rewrite_keeps_it(
    tmp_path):
  import io

  class S:  # a schedule: 4 arrivals, one version each
    version_after = np.array([1, 2, 3, 4])
    arrival_time = np.array([0.5, 1.0, 2.0, 4.0])
    arrival_task = np.array([0, 1, 2, 3])
  logdir = tmp_path / "tensorboard"
  events = tensorboard.EventFile(logdir)
  stream = metrics.MetricsStream(io.StringIO(), S(), eval_every=2,
                                 tensorboard=events)
  stream({"arrivals_done": 2, "last_eval": {"test_loss": 0.5,
                                            "test_accuracy": 0.75}})
  got = _events(events.path)  # before closing: flushed at once
  assert [(e[1], e[2]) for e in got] == [
      (0, "brain.Event:2"),
      (2, {"version": 2.0, "simulated_time": 1.0, "test_loss": 0.5,
           "test_accuracy": 0.75})]
  streamed_at = got[1][0]
  stream({"arrivals_done": 4, "last_eval": {"test_loss": 0.25,
                                            "test_accuracy": 1.0}})
  events.close()
  assert [e[1] for e in _events(events.path)] == [0, 2, 4]
  # The end of a run: every row, rewritten in place, one file.
  jsonl = tmp_path / "metrics.jsonl"
  metrics.write_jsonl(jsonl, [
      {"client_updates": 0, "test_loss": 1.0},
      {"client_updates": 2, "client_train_loss": 0.9, "test_loss": 0.5},
      {"client_updates": 4, "client_train_loss": 0.3, "test_loss": 0.25}])
  path = metrics.write_tensorboard(jsonl, logdir)
  assert path == events.path and len(list(logdir.iterdir())) == 1
  final = _events(path)
  assert [(e[1], e[2]) for e in final[1:]] == [
      (0, {"test_loss": 1.0}),
      (2, {"client_train_loss": pytest.approx(0.9), "test_loss": 0.5}),
      (4, {"client_train_loss": pytest.approx(0.3), "test_loss": 0.25})]
  assert final[2][0] == streamed_at  # the streamed wall time is kept
  assert final[1][0] == streamed_at  # and an earlier step is not later


def test_a_half_written_record_is_cut_before_a_resumed_run_appends(
    tmp_path):
  """A run killed while appending leaves part of a record; the resumed
  run's stream cuts it off, so the file still reads to its end."""
  with tensorboard.EventFile(tmp_path) as events:
    events.add_row({"client_updates": 8, "test_loss": 0.5})
  whole = events.path.read_bytes()
  events.path.write_bytes(whole + tensorboard.frame(b"lost")[:9])
  with tensorboard.EventFile(tmp_path) as again:
    again.add_row({"client_updates": 16, "test_loss": 0.25})
  assert again.path == events.path
  assert [(e[1], e[2]) for e in _events(events.path)] == [
      (0, "brain.Event:2"), (8, {"test_loss": 0.5}),
      (16, {"test_loss": 0.25})]


def _write_cfg(tmp_path, d):
  p = tmp_path / "cfg.json"
  p.write_text(json.dumps(d))
  return p


def test_run_and_sweep_write_the_metrics_as_tensorboard_events(tmp_path):
  cfg = _write_cfg(tmp_path, TINY)
  out, sweep = tmp_path / "run", tmp_path / "sweep"
  assert cli.main(["run", "--config", str(cfg), "--out", str(out)]) == 0
  assert cli.main(["sweep", "--config", str(cfg), "--out", str(sweep),
                   "--seeds", "0,1"]) == 0
  for folder, logdir in ((out, out / "tensorboard"),
                         (sweep / "seed=0", sweep / "tensorboard" / "seed=0"),
                         (sweep / "seed=1", sweep / "tensorboard" / "seed=1")):
    files = list(logdir.iterdir())
    assert len(files) == 1 and files[0].name.startswith(
        "events.out.tfevents."), files
    events = _events(files[0])
    assert events[0][2] == "brain.Event:2"
    rows = [json.loads(x) for x in
            (folder / "metrics.jsonl").read_text().splitlines()]
    assert [e[1] for e in events[1:]] == [r["client_updates"]
                                          for r in rows] == [0, 40, 80, 120]
    for (_, _, scalars), row in zip(events[1:], rows):
      want = {k: float(np.float32(v)) for k, v in row.items()
              if k != "client_updates" and v is not None}
      assert scalars == want
      assert {"test_accuracy", "test_loss", "version",
              "simulated_time"} <= set(scalars)


def test_tensorboard_is_off_by_default():
  from fedasync_jax import config
  assert config.Config().run.tensorboard is False
  assert "tensorboard: false" in config.to_yaml(config.Config())


def test_an_event_file_that_cannot_be_written_is_a_warning(tmp_path, capsys):
  from fedasync_jax.run import experiment
  experiment._write_tensorboard(tmp_path, tmp_path / "tensorboard")
  err = capsys.readouterr().err  # (no metrics.jsonl to read here)
  assert "fedasync-jax: warning: TensorBoard events not written " \
         "(FileNotFoundError" in err, err
  assert not (tmp_path / "tensorboard").exists()
