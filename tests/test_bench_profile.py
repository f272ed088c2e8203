"""``benchmarks/paper_cnn.py --profile``: grouping XLA:CPU's trace events.

The smoke run (tests/test_scripts.py) runs the profiler itself; this checks
the arithmetic on hand-made events, where the right answer is known.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper_cnn():
  spec = importlib.util.spec_from_file_location(
      "paper_cnn_under_test", ROOT / "benchmarks" / "paper_cnn.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def ev(name, ts, dur):
  return {"ph": "X", "name": name, "ts": ts, "dur": dur}


def test_groups_ops_by_name_and_times_them_to_their_end(paper_cnn):
  events = [
      # A convolution handed to the pool: launched in 10 us, ends at 6 ms.
      ev("conv_general_dilated.1", 0, 10), ev("end: conv_general_dilated.1",
                                              5_990, 10),
      ev("conv_general_dilated.2", 8_000, 10),
      ev("end: conv_general_dilated.2", 9_000, 1_000),
      # A fusion that runs in place, overlapping the first convolution.
      ev("add_maximum_fusion.3", 1_000, 2_000),
      # Left out: a container, Python and executor frames, a counter.
      ev("while.4", 0, 10_000), ev("$api.py:1 block_until_ready", 0, 10_000),
      ev("ThunkExecutor::Execute", 0, 10_000),
      {"ph": "C", "name": "copy.5", "ts": 0},
  ]
  out = paper_cnn.group_thunk_events(events, steps=2)
  # conv: 6 ms + 2 ms over 2 steps; the fusion 2 ms over 2 steps.
  assert out["ops_ms"] == {"conv_general_dilated": 4.0,
                           "add_maximum_fusion": 1.0}
  assert list(out["ops_ms"]) == ["conv_general_dilated", "add_maximum_fusion"]
  # Busy: [0, 6 ms] and [8, 10 ms]; the fusion lies inside the first.
  assert out["busy_ms"] == 4.0


def test_unmatched_end_events_fall_back_to_durations(paper_cnn):
  events = [ev("copy.1", 0, 500), ev("copy.1", 1_000, 500),
            ev("end: copy.1", 3_000, 0)]  # one end for two starts
  out = paper_cnn.group_thunk_events(events, steps=1)
  assert out["ops_ms"] == {"copy": 1.0}
  assert out["busy_ms"] == 1.0


def test_no_events_is_zero_not_an_error(paper_cnn):
  assert paper_cnn.group_thunk_events([], steps=0) == {"ops_ms": {},
                                                       "busy_ms": 0.0}
