"""Smoke test of every script in experiments/ and benchmarks/.

A *script* is a ``.py`` file directly in ``experiments/`` or
``benchmarks/`` with a top-level ``if __name__ == "__main__":`` block; the
other files there are helper modules that scripts import (``common.py``,
``command_line.py``, ``theory_common.py``, ``device_trace.py``, ...) and are
exempt. Scripts are found
with a glob, so a new one is covered (and must follow the rules) without
editing this file. Every script must:

* take ``--smoke --out DIR``: a tiny configuration on generated data that
  runs its real code path in seconds and writes only into ``DIR`` (a new,
  empty folder: the scripts refuse a non-empty one without ``--force``);
* name what that run writes with a module constant ``SMOKE_OUTPUT``, a
  glob relative to ``DIR`` (e.g. ``"summary.md"``);
* declare optional third-party needs in ``SMOKE_REQUIRES`` (e.g.
  ``("torch",)``); when one is missing the script must still exit 0 with a
  message, and its test is skipped.

The scripts run as subprocesses (each with a timeout), started when
collection ends (``conftest.pytest_collection_finish``), at a lower CPU
priority (``nice -n 5``): one at a time beside the rest of the suite, whose tests mostly keep one core busy
(compiling), and two at a time once the first test here asks for a
result, so that both cores stay busy. The 21 scripts of 2026-12 take about 300 s of CPU time in all (6-48 s
each): about 2.5 minutes of the project's 2-core CPU when nothing else
runs (estimated from that CPU time), 4-5 minutes measured while other jobs
loaded it. A script whose smoke run gets
slow should be made smaller, not skipped.
"""

from __future__ import annotations

import ast
import concurrent.futures
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_DIRS = ("benchmarks", "experiments")
TIMEOUT_S = 170
# The smoke runs' command prefix (the ``nice`` program where there is one;
# a ``preexec_fn`` is unsafe with the threads that start them).
NICE = ("nice", "-n", "5") if shutil.which("nice") else ()
WORKERS = 2


def _is_main_guard(node) -> bool:
  test = getattr(node, "test", None)
  return (isinstance(node, ast.If) and isinstance(test, ast.Compare)
          and isinstance(test.left, ast.Name)
          and test.left.id == "__name__"
          and any(isinstance(c, ast.Constant) and c.value == "__main__"
                  for c in test.comparators))


def _constants(tree) -> dict:
  out = {}
  for node in tree.body:
    if isinstance(node, ast.Assign):
      for t in node.targets:
        if isinstance(t, ast.Name) and t.id.startswith("SMOKE_"):
          out[t.id] = ast.literal_eval(node.value)
  return out


def discover():
  """``{relative path: constants}`` of every script (see the module doc)."""
  found = {}
  for d in SCRIPT_DIRS:
    for path in sorted((ROOT / d).glob("*.py")):
      tree = ast.parse(path.read_text(), filename=str(path))
      if any(_is_main_guard(n) for n in tree.body):
        found[str(path.relative_to(ROOT))] = _constants(tree)
  return found


SCRIPTS = discover()


def _missing(script) -> list:
  return [m for m in SCRIPTS[script].get("SMOKE_REQUIRES", ())
          if importlib.util.find_spec(m) is None]


def _run(script, out, *extra):
  # Smoke runs check that the scripts work, not their speed: XLA's cheap
  # compilation (JAX_DISABLE_MOST_OPTIMIZATIONS) cuts their CPU time by a
  # third, most of which is compiling.
  # They run at a lower CPU priority (``nice -n 5``: about a quarter of a
  # core against a busy test) so that the suite's main lane, its critical
  # path, keeps the cores it uses and the smoke runs fill the rest.
  env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  try:
    p = subprocess.run([*NICE, sys.executable, script, "--smoke", "--out",
                        out, *extra],
                       cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    return p.returncode, p.stdout, p.stderr
  except subprocess.TimeoutExpired as e:
    return "timeout", e.stdout or "", e.stderr or ""


# Runs started at the end of collection: {script: (future, out dir)}, with
# the pool, the gate that lets a second run start, and the output root.
_STARTED = {"runs": {}, "pool": None, "gate": threading.Semaphore(1),
            "root": None}


def _gated_run(script, out):
  with _STARTED["gate"]:
    return _run(script, out)


def start_smoke_runs(session) -> None:
  """Starts the smoke run of every selected script, one at a time until
  ``smoke_runs`` opens the second lane (called by conftest once the
  session's tests are collected)."""
  selected = [item.callspec.params["script"] for item in session.items
              if getattr(item, "originalname", "") == "test_script_smoke"
              and hasattr(item, "callspec")]
  if not selected or _STARTED["pool"] is not None:
    return
  _STARTED["root"] = root = tempfile.mkdtemp(prefix="fedasync-smoke-")
  _STARTED["pool"] = pool = concurrent.futures.ThreadPoolExecutor(
      max_workers=WORKERS)
  for script in selected:
    out = Path(tempfile.mkdtemp(prefix=Path(script).stem + "_", dir=root))
    _STARTED["runs"][script] = (pool.submit(_gated_run, script, str(out)),
                                out)


def stop_smoke_runs() -> None:
  """Cancels what has not started and removes the outputs (session end)."""
  if _STARTED["pool"] is not None:
    _STARTED["pool"].shutdown(wait=False, cancel_futures=True)
  if _STARTED["root"] is not None:
    shutil.rmtree(_STARTED["root"], ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_runs(request):
  """``{script: (future, out dir)}`` of the runs started at collection;
  from here on two run at a time."""
  if _STARTED["pool"] is None:  # (collected without the conftest hook)
    start_smoke_runs(request.session)
  for _ in range(WORKERS - 1):
    _STARTED["gate"].release()
  return _STARTED["runs"]


def test_scripts_are_found():
  names = {Path(s).name for s in SCRIPTS}
  assert {"throughput.py", "time_to_accuracy.py"} <= names, SCRIPTS
  assert "common.py" not in names  # helper modules are exempt


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_declares_its_smoke_output(script):
  assert isinstance(SCRIPTS[script].get("SMOKE_OUTPUT"), str), (
      f"{script} has a main but no SMOKE_OUTPUT (the glob of what "
      f"`--smoke --out DIR` writes into DIR)")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_smoke(script, smoke_runs):
  future, out = smoke_runs[script]
  rc, stdout, stderr = future.result()
  tail = f"\n--- stdout ---\n{stdout[-3000:]}\n--- stderr ---\n{stderr[-3000:]}"
  assert rc == 0, f"{script} --smoke exited with {rc}{tail}"
  missing = _missing(script)
  if missing:  # it must have said so and exited cleanly
    assert any(m in stdout + stderr for m in missing), tail
    pytest.skip(f"{script} needs {', '.join(missing)}, not installed")
  pattern = SCRIPTS[script]["SMOKE_OUTPUT"]
  assert glob.glob(str(out / pattern)), (
      f"{script} --smoke wrote no {pattern} into {out}: "
      f"{sorted(p.name for p in out.iterdir())}{tail}")


def _smoke_output(script, smoke_runs, tmp_path, *extra) -> Path:
  """The output folder of ``script``'s smoke run: the one started at
  collection, or a new run (with ``extra`` options, or when that test was
  not selected)."""
  if not extra and script in smoke_runs:
    future, out = smoke_runs[script]
    rc, stdout, stderr = future.result()
  else:
    out = tmp_path / "out"
    rc, stdout, stderr = _run(script, str(out), *extra)
  assert rc == 0, f"{script} exited with {rc}\n{stderr[-3000:]}"
  return out


def _rows(path) -> list:
  import csv
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _last_evaluated(history, keys) -> dict:
  """``{run: client_updates of its last history row}``."""
  return {tuple(r[k] for k in keys): int(r["client_updates"])
          for r in _rows(history)}


def test_fedasync_staleness_histories_end_at_the_last_update(
    smoke_runs, tmp_path):
  """FedAvg's smoke run at max 4 has 13 rounds of 3 and is evaluated
  every 3 rounds: its curve must still end at update 39 (the final
  evaluation), as every FedAsync member's ends at 40."""
  out = _smoke_output("experiments/fedasync_staleness.py", smoke_runs,
                      tmp_path)
  keys = ("max_staleness", "seed", "run")
  last = _last_evaluated(out / "history.csv", keys)
  rows = _rows(out / "results.csv")
  assert {tuple(r[k] for k in keys): int(r["applied"]) for r in rows} == last
  assert {v for (mx, _, run), v in last.items()
          if run == "FedAvg" and mx == "4"} == {39}


def test_fedbuff_comparison_histories_end_at_the_last_update(smoke_runs,
                                                            tmp_path):
  """The smoke run's budget of 50: FedAvgM's rounds of at most 4 updates,
  evaluated every 3 rounds, end between evaluations; FedBuff's K = 10
  divides 50 (a buffered rule's last evaluation is of its last version)."""
  out = _smoke_output("experiments/fedbuff_comparison.py", smoke_runs,
                      tmp_path)
  keys = ("phase", "concurrency", "method", "seed", "server_lr", "momentum")
  assert _last_evaluated(out / "history.csv", keys) == {
      tuple(r[k] for k in keys): int(r["updates_run"])
      for r in _rows(out / "results.csv")}


def test_time_to_accuracy_history_ends_at_the_last_update(smoke_runs,
                                                          tmp_path):
  """The smoke run's evaluations every 15 do not divide its 100 updates."""
  out = _smoke_output("experiments/time_to_accuracy.py", smoke_runs,
                      tmp_path)
  last = _last_evaluated(out / "history.csv", ("rule",))
  assert last == {("fedasync",): 100, ("fedavg",): 100}
  final = {r["rule"]: r["final_accuracy"]
           for r in _rows(out / "time_to_accuracy.csv")}
  hist = {r["rule"]: r["test_accuracy"] for r in _rows(out / "history.csv")}
  assert final == hist


def test_afl_summary_clips_its_intervals(smoke_runs, tmp_path):
  """Two seeds make wide intervals: accuracy's stay in [0, 1] and the
  losses' and times' at or above 0; ``history.csv`` is one file with a
  ``seed`` column."""
  import re
  out = _smoke_output("experiments/afl_mnist.py", smoke_runs, tmp_path)
  md = (out / "summary.md").read_text()
  assert "in a `seed` column" in md and "(per seed)" not in md
  assert "fits in about an hour" not in md
  assert {r["seed"] for r in _rows(out / "history.csv")} == {"0", "1"}
  table = md.split("## Results at round")[1].split("\n\n")[1]
  for line in table.splitlines()[2:]:
    cells = [c.strip() for c in line.strip("|").split("|")][1:5]
    for i, cell in enumerate(cells):
      m = re.match(r"([-\d.]+) (?:\+- ([\d.]+)|\[([-\d.]+), ([-\d.]+)\])",
                   cell)
      mean = float(m[1])
      low, high = ((mean - float(m[2]), mean + float(m[2])) if m[2]
                   else (float(m[3]), float(m[4])))
      assert low >= -1e-9, line
      if i == 2:  # test accuracy
        assert high <= 1 + 1e-9, line


def test_benchmarks_write_outside_the_recorded_results_by_default(
    tmp_path, monkeypatch):
  """A benchmark without ``--out`` writes into the untracked
  ``runs/benchmarks/``; only ``--out benchmarks/results`` records."""
  import argparse
  spec = importlib.util.spec_from_file_location(
      "bench_common", ROOT / "benchmarks" / "common.py")
  common = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(common)
  assert common.DEFAULT_OUT == ROOT / "runs" / "benchmarks"
  assert "runs/" in (ROOT / ".gitignore").read_text().split()
  args = common.add_output_args(argparse.ArgumentParser()).parse_args([])
  assert args.out is None
  monkeypatch.setattr(common, "DEFAULT_OUT", tmp_path / "default")
  assert common.out_dir(args) == tmp_path / "default"
  recorded = common.add_output_args(argparse.ArgumentParser()).parse_args(
      ["--out", str(tmp_path / "results")])
  assert common.out_dir(recorded) == tmp_path / "results"
  path = common.write_json("x", {"a": 1}, quick=False,
                           folder=common.out_dir(args))
  assert path.parent == tmp_path / "default"


def test_gpu_benchmark_smoke_run_measures_a_steady_state(smoke_runs,
                                                        tmp_path):
  """``--smoke`` runs one step per chunk, so its short runs still have the
  steady rates and compile times that a GPU run records (they were NaN,
  printed as 'nan updates/s', with one chunk per run)."""
  import json
  out = _smoke_output("benchmarks/gpu.py", smoke_runs, tmp_path)
  [record] = out.glob("gpu_*_smoke.json")
  rec = json.loads(record.read_text())
  cases = rec["w1"] + rec["models"]
  assert cases and all(c["chunks"] > 2 for c in cases), cases
  for c in cases:
    assert c["steady_updates_per_s"] > 0 and c["compile_s"] >= 0, c
  assert all(c["examples_per_s_steady"] > 0 for c in rec["models"])
  # Every batching trained the same schedule to float32 reassociation.
  assert {c["batching"] for c in rec["w1"]} == {"vmap", "refill", "map"}
  assert all(c["rel_diff_to_map"] < 1e-5 for c in rec["w1"]), rec["w1"]
  assert rec["errors"] == [] and rec["skipped"] == []


def _gpu_module():
  sys.path.insert(0, str(ROOT / "benchmarks"))
  try:
    spec = importlib.util.spec_from_file_location(
        "gpu_bench", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
  finally:
    sys.path.remove(str(ROOT / "benchmarks"))
  return gpu


def test_gpu_benchmark_keeps_going_past_a_failed_case_and_shares_its_time(
    capsys):
  """On a device lease a case that fails (a JAX release the library was
  not tried on) is logged and listed, and the run goes on; a section may
  use only its share of the time left, so later sections are measured."""
  gpu = _gpu_module()
  errors = []

  def boom():
    raise RuntimeError("no such option")

  assert gpu.attempt("w1 C=1000 vmap", boom, errors) is None
  assert gpu.attempt("w1 C=100 map", lambda: 3, errors) == 3
  assert errors == [{"case": "w1 C=1000 vmap",
                     "error": "RuntimeError: no such option"}]
  assert "w1 C=1000 vmap: FAILED" in capsys.readouterr().err
  budget = gpu.Budget(100.0)
  budget.section(0.0)  # a section with no time: its cases are skipped
  assert not budget.ok("w1 case")
  budget.section(0.5)  # the next section has half of what is left
  assert budget.ok("sweep case")
  assert budget.skipped == ["w1 case"]
  assert 40 < budget.section_end - time.perf_counter() <= 50


def test_gpu_benchmark_measures_on_a_stand_in_where_mnist_is_absent(
    tmp_path):
  """On a device machine the shared MNIST copy does not travel:
  ``benchmarks/gpu.py`` then generates a stand-in of MNIST's shapes in a
  new temporary folder (never into ``--out``) and names it in its record,
  instead of skipping; a present file is used as it is."""
  import numpy as np
  gpu = _gpu_module()
  out = tmp_path / "out"
  out.mkdir()
  args = gpu.parse_args(["--data", str(tmp_path / "absent.npz"),
                         "--out", str(out)])
  path, what = gpu.data_path(args, out, n_train=300, n_test=50)
  assert what.startswith("generated stand-in") and "absent.npz" in what
  assert Path(path).parent != out and not list(out.iterdir())
  with np.load(path) as f:
    assert f["x_train"].shape == (300, 28, 28)
    assert f["x_test"].shape == (50, 28, 28)
    assert sorted(set(f["y_train"].tolist())) == list(range(10))
  real = tmp_path / "mnist.npz"
  np.savez(real, x_train=np.zeros((2, 28, 28), np.uint8))
  args = gpu.parse_args(["--data", str(real), "--out", str(out)])
  assert gpu.data_path(args, out) == (real, f"MNIST ({real})")


def test_gpu_trace_summary_separates_the_device_waiting_on_the_host(
    tmp_path):
  """The profile's figures: device events only (not the host's), busy time
  as the union of overlapping events, the gap after each device-to-host
  copy apart from the others, and gaps over 1 ms (the host between calls)
  apart from both."""
  import gzip
  import json
  gpu = _gpu_module()
  ev = [{"ph": "M", "name": "process_name", "pid": 1,
         "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "name": "process_name", "pid": 2,
         "args": {"name": "/host:CPU"}},
        {"ph": "X", "pid": 2, "name": "launch", "ts": 0, "dur": 5000},
        {"ph": "X", "pid": 1, "name": "dot", "ts": 0, "dur": 10},
        {"ph": "X", "pid": 1, "name": "add", "ts": 5, "dur": 10},  # overlaps
        {"ph": "X", "pid": 1, "name": "MemcpyD2H", "ts": 17, "dur": 1},
        {"ph": "X", "pid": 1, "name": "dot", "ts": 48, "dur": 2},
        {"ph": "X", "pid": 1, "name": "dot", "ts": 3050, "dur": 50}]
  path = tmp_path / "t.json.gz"
  with gzip.open(path, "wt") as f:
    json.dump({"traceEvents": ev}, f)
  s = gpu.device_trace.summary(path, wall_s=0.01, updates=2)
  assert s["device_events"] == 5
  assert s["processes"]["/host:CPU"] == {"events": 1, "us": 5000.0}
  assert s["device_busy_s"] == pytest.approx(68e-6)  # 15 + 1 + 2 + 50
  assert s["device_span_s"] == pytest.approx(3100e-6)
  assert s["device_to_host_per_update"] == 0.5
  assert s["gap_after_device_to_host_us"] == {"count": 1, "median": 30.0,
                                               "total": 30.0}
  # dot -> add overlaps (gap 0); add -> copy 2 us.
  assert s["other_gaps_under_1ms_us"]["total"] == pytest.approx(2.0)
  assert s["gaps_over_1ms_us"]["count"] == 1
  assert list(s["costliest_device_events_us"])[0] == "dot"
  # "dot" ran 3 times, "add" and the copy once each.
  assert s["device_event_groups_by_count"] == {
      "3": {"names": 1, "us": 62.0}, "1": {"names": 2, "us": 11.0}}
