"""What a run leaves behind: CSV/JSON files and plots.

``write_outputs`` writes a finished (or interrupted) run's
``history.csv``, ``arrivals.csv``, ``staleness.csv`` (histogram of applied
updates), ``participation.csv``, ``summary.json``
and, when matplotlib is installed, its PNG plots (the progress bar is
``run/progress.py``'s).

Example:
  >>> staleness_summary({"staleness": np.array([1, 3]),
  ...                    "applied": np.array([True, True])})["mean"]
  2.0
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from fedasync_jax.core import types
from fedasync_jax.data import partition
from fedasync_jax.run import results
from fedasync_jax.sim import scheduler


def attempt(problems: list, what: str, write: Callable[[], None], *,
            errors=(OSError,), stream=None) -> None:
  """Runs ``write``; an error of ``errors`` becomes a warning (printed,
  and appended to ``problems``) so that what was already computed and
  written is kept. A missing optional package (``ImportError``) is
  skipped silently.

  Example:
    >>> import io
    >>> problems = []
    >>> def full(): raise OSError(28, "No space left on device")
    >>> attempt(problems, "plots", full, stream=io.StringIO())
    >>> problems
    ['plots not written (OSError: [Errno 28] No space left on device)']
  """
  try:
    write()
  except ImportError:
    pass
  except errors as e:
    msg = f"{what} not written ({type(e).__name__}: {e})"
    problems.append(msg)
    print(f"\nfedasync-jax: warning: {msg}", file=stream or sys.stderr)


def with_final_eval(out: types.RunResult, eval_fn) -> types.RunResult:
  """``out`` with an evaluation of its final model appended, unless its
  last evaluation is already of the final version (the simulators evaluate
  every ``eval_every`` versions only). The entry is placed after the last
  arrival, so the history's last row, and ``final_test_accuracy``, are
  the final model's.

  Args:
    out: a finished run's result.
    eval_fn: the run's evaluator (``models.make_evaluator``).
  """
  if eval_fn is None or not out.evals:
    return out
  version = int(out.state.version)
  if out.evals[-1]["version"] == version:
    return out
  from fedasync_jax.sim import driver
  arr = out.arrivals
  n = len(arr["client"])
  ev = driver.initial_eval(
      eval_fn, out.state.params, getattr(eval_fn, "data", None),
      version=version, client_updates=n,
      simulated_time=float(arr["simulated_time"][-1]) if n else 0.0,
      arrivals=arr, since=out.evals[-1]["client_updates"])
  return out._replace(evals=[*out.evals, ev])


def history_rows(s, out: types.RunResult, param_bytes: int) -> list:
  """One row per evaluation: the evaluation (``RunResult.evals``, in
  ``types.COLUMNS``), then the mean staleness so far and the bytes sent
  each way so far."""
  sched = s.schedule
  stale_cum = np.cumsum(out.arrivals["staleness"])
  rows = []
  for e in out.evals:
    received = e["client_updates"]
    a = received - 1
    t = e["simulated_time"]
    sent = int(np.sum(sched.dispatch_time <= t)) if a >= 0 else 0
    rows.append({
        **e,
        "mean_staleness": float(stale_cum[a] / (a + 1)) if a >= 0 else 0.0,
        "bytes_to_clients": sent * param_bytes,
        "bytes_from_clients": received * param_bytes})
  return rows


def arrival_columns(arrivals: dict) -> dict:
  """A run's arrivals (``RunResult.arrivals``) as the columns of an
  arrivals file (``types.ARRIVAL_COLUMNS``, in that order).

  Example:
    >>> import numpy as np
    >>> cols = arrival_columns({
    ...     "client": np.array([3]), "simulated_time": np.array([1.5]),
    ...     "staleness": np.array([2]), "applied": np.array([False]),
    ...     "version": np.array([0]), "train_loss": np.array([0.25])})
    >>> list(cols) == list(types.ARRIVAL_COLUMNS), cols["status"].tolist()
    (True, ['dropped'])
  """
  cols = {k: arrivals[k] for k in types.ARRIVAL_COLUMNS if k != "status"}
  cols["status"] = np.where(arrivals["applied"], "applied", "dropped")
  return {k: cols[k] for k in types.ARRIVAL_COLUMNS}


def _executor_stats(stats: dict, resumed_s: float) -> dict:
  """The executor's statistics over the whole run: the wall time before a
  resume is added, and the throughput scaled to match. A sweep member's
  throughput is the sweep's (every member's updates), so it is named
  ``sweep_updates_per_s`` there, apart from the member's own."""
  ex = dict(stats)
  wall = ex.get("wall_time_s")
  if resumed_s > 0 and isinstance(wall, (int, float)):
    ex["wall_time_s"] = wall + resumed_s
    if "updates_per_s" in ex:
      ex["updates_per_s"] = ex["updates_per_s"] * wall / max(
          ex["wall_time_s"], 1e-9)
  if "member" in ex and "updates_per_s" in ex:
    ex["sweep_updates_per_s"] = ex.pop("updates_per_s")
  return ex


def staleness_summary(arrivals: dict) -> dict:
  """Mean, percentiles and maximum of the staleness of applied updates.

  Example:
    >>> import numpy as np
    >>> staleness_summary({"staleness": np.array([0, 2, 4, 9]),
    ...                    "applied": np.array([1, 1, 1, 0], bool)})["p50"]
    2.0
  """
  st = np.asarray(arrivals["staleness"])[np.asarray(arrivals["applied"])]
  if st.size == 0:
    return {"applied": 0}
  return {"applied": int(st.size), "mean": float(st.mean()),
          **{f"p{q}": float(np.percentile(st, q)) for q in (50, 90, 99)},
          "max": int(st.max())}


def _lost_updates(schedule, out: types.RunResult) -> int:
  """Tasks whose update never reached the server (``delays.dropout``, a
  synchronous round's deadline or over-selection), up to where the run
  got: they are not arrivals, so ``arrivals.csv`` has no row for them."""
  until = _reached(out)
  if until is None:
    return int(schedule.stats.get("lost_updates", 0))
  return int((schedule.lost & (schedule.arrival_time <= until)).sum())


def _reached(out: types.RunResult) -> Optional[float]:
  """The simulated time a stopped run got to (its last arrival's); None
  for a run that finished its schedule."""
  if not out.stats.get("stopped_early", False):
    return None
  times = out.arrivals["simulated_time"]
  return float(times[-1]) if len(times) else 0.0


def _skipped_dispatches(schedule, out: types.RunResult) -> int:
  """Open-loop dispatches that found no idle, available client (0 in a
  closed loop), up to where the run got."""
  until = _reached(out)
  if until is None or "skip_times" not in schedule.stats:
    return int(schedule.stats.get("skipped_dispatches", 0))
  counts = schedule.stats["skip_counts"][schedule.stats["skip_times"] <= until]
  return sum(map(int, counts))  # (Python ints: int64 can overflow)


def _realised_concurrency(schedule, out: types.RunResult) -> float:
  """Tasks in flight over the simulated time the run got through (a
  stopped run's, not the whole schedule's)."""
  until = _reached(out)
  if until is None:
    return float(schedule.stats["realised_concurrency"])
  return scheduler.in_flight(schedule.dispatch_time, schedule.arrival_time,
                             until)


def _summary(s, out: types.RunResult, final: dict, wall_time: float,
             resumed_s: float = 0.0) -> dict:
  arr = out.arrivals
  return {
      "final_test_accuracy": final["test_accuracy"],
      "final_test_loss": final["test_loss"],
      # (the final model's; a stopped run's last evaluation, made after)
      "final_eval_client_updates": int(final["client_updates"]),
      "versions": int(out.state.version),
      "client_updates": int(len(arr["client"])),
      "stopped_early": bool(out.stats.get("stopped_early", False)),
      "dropped_updates": int((~arr["applied"]).sum()),
      "lost_updates": _lost_updates(s.schedule, out),
      "skipped_dispatches": _skipped_dispatches(s.schedule, out),
      "quarantined_updates": int(getattr(out.state, "quarantined", 0)),
      "clipped_updates": int(getattr(out.state, "clipped", 0)),
      "simulated_time": (float(arr["simulated_time"][-1])
                         if len(arr["simulated_time"]) else 0.0),
      "realised_concurrency": _realised_concurrency(s.schedule, out),
      # as drawn (FedAvg draws ``uniform`` without replacement)
      "selection": s.schedule.stats.get("selection"),
      "mean_staleness": (float(arr["staleness"].mean())
                         if len(arr["staleness"]) else 0.0),
      "max_staleness": int(arr["staleness"].max(initial=0)),
      "staleness": staleness_summary(arr),
      "wall_time_s": wall_time,
      "updates_per_s": len(arr["client"]) / max(wall_time, 1e-9),
      "wall_time_before_resume_s": resumed_s,
      "executor": _executor_stats(out.stats, resumed_s),
      "data": s.fed.name, "num_clients": s.fed.train.num_clients,
      "backend": jax.default_backend(),
  }


def write_outputs(workdir: Path, cfg, s, out: types.RunResult, *,
                  wall_time: float, plots: bool = True,
                  resumed_s: float = 0.0, stream=None,
                  warnings: Sequence[str] = ()) -> dict:
  """Writes the summary, history, logs and plots of a finished (or
  interrupted) run, in that order.

  A run that applied no update, or whose every update was quarantined, is
  warned about (``notices.result_warnings``).

  Everything here runs after training, so nothing computed may be lost to
  a failing write: a disk error (``OSError``) writing a file, or any error
  drawing the plots, is a warning (on ``stream``, and listed under
  ``"warnings"`` in the summary) and the other files are still written.

  Args:
    workdir: the output folder.
    cfg: unused (the caller writes ``config.json``).
    s: the run's ``Setup`` (its schedule, data, initial parameters and,
      with trace files, ``trace_mapping``, written to ``trace_mapping.csv``).
    out: the run's result (complete, or stopped early).
    wall_time: seconds the run took over every resume, for
      ``summary.json``.
    plots: draw the PNG plots (when matplotlib is installed); a sweep's
      members leave them to the sweep's plots over seeds.
    resumed_s: seconds spent before the last resume (0: not resumed);
      added to the executor's wall time.
    stream: where warnings go (default stderr).
    warnings: warnings already printed (``notices.config_warnings``),
      listed first under ``"warnings"`` in ``summary.json``.

  Returns:
    The summary dict (also ``summary.json``).
  """
  from fedasync_jax.run import metrics, notices
  del cfg  # the configuration is written by the caller (config.json)
  t0 = time.perf_counter()
  workdir = Path(workdir)
  param_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(s.params))
  rows = history_rows(s, out, param_bytes)
  summary = _summary(s, out, rows[-1], wall_time, resumed_s)
  problems = list(warnings)
  stopped = summary["stopped_early"]
  notices.warn([] if stopped else notices.result_warnings(summary),
               stream=stream, into=problems)
  summary["warnings"] = list(problems)  # present, [] when there are none

  def save(what, fn, **kw):
    attempt(problems, what, fn, stream=stream, **kw)
  save("summary.json", lambda: results.write_json(workdir / "summary.json",
                                                  summary))
  save("history.csv", lambda: results.write_csv(workdir / "history.csv",
                                                rows))
  save(metrics.METRICS, lambda: metrics.write_jsonl(
      workdir / metrics.METRICS, rows))
  arr = out.arrivals
  save("arrivals.csv", lambda: results.write_columns(
      workdir / "arrivals.csv", arrival_columns(arr)))
  applied = arr["staleness"][arr["applied"]]
  hist = np.bincount(applied) if applied.size else np.zeros(0, int)
  save("staleness.csv", lambda: results.write_columns(
      workdir / "staleness.csv", {"staleness": np.flatnonzero(hist),
                                  "applied_updates": hist[hist > 0]}))
  mapping = s.trace_mapping
  if mapping:
    save("trace_mapping.csv", lambda: results.write_columns(
        workdir / "trace_mapping.csv",
        {k: [r[i] for r in mapping[1:]] for i, k in enumerate(mapping[0])}))
  save("participation.csv", lambda: results.write_columns(
      workdir / "participation.csv", {
          "client": np.arange(s.fed.train.num_clients),
          "applied_updates": out.participation,
          "examples": s.fed.train.counts}))
  if plots:
    save("plots", lambda: plot_run(workdir, s, out, rows),
         errors=(Exception,))
  # Written first (what was computed), then again with the time the
  # outputs took (plots of a large population take a while) and any
  # problem writing them.
  summary["warnings"] = problems
  summary["output_time_s"] = time.perf_counter() - t0
  attempt([], "summary.json", lambda: results.write_json(
      workdir / "summary.json", summary), stream=stream)
  return summary


def _plot_metric(workdir: Path, rows: list, metric: str) -> None:
  from matplotlib.figure import Figure
  fig = Figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  y = [r[metric] for r in rows]
  ax1.plot([r["client_updates"] for r in rows], y, marker=".")
  ax1.set_xlabel("client updates")
  ax2.plot([r["simulated_time"] for r in rows], y, marker=".")
  ax2.set_xlabel("simulated time (s)")
  for ax in (ax1, ax2):
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
  fig.tight_layout()
  results.write_figure(workdir / f"{metric}.png", fig)


PLOT_METRICS = ("test_accuracy", "test_loss")
PLOTS = tuple(f"{m}.png" for m in PLOT_METRICS) + (
    "staleness_participation.png", "clients.png")
"""The files ``plot_run`` writes (``clients.png`` for class labels)."""


BAR_CLIENTS = 200
"""Up to this many clients the participation plot has a bar per client;
beyond, a histogram over clients (a bar per client took 81 s and grew
without bound in memory at 100,000 clients, 10 minutes and more at a
million)."""


def _plot_participation(ax, participation: np.ndarray) -> None:
  """Applied updates per client: one bar each, or their histogram."""
  if len(participation) <= BAR_CLIENTS:
    ax.bar(np.arange(len(participation)), participation)
    ax.set_xlabel("client")
    ax.set_ylabel("applied updates")
    return
  most = int(participation.max(initial=0))
  ax.hist(participation, bins=np.arange(most + 2) if most < 50 else 50)
  ax.set_xlabel(f"applied updates per client ({len(participation)} "
                f"clients)")
  ax.set_ylabel("clients")


def plot_run(workdir: Path, s, out: types.RunResult, rows) -> None:
  """Writes the PNG plots, ``PLOTS`` (needs matplotlib: the ``plots``
  extra)."""
  from matplotlib.figure import Figure
  for metric in PLOT_METRICS:
    _plot_metric(workdir, rows, metric)
  fig = Figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  st = out.arrivals["staleness"]
  ax1.hist(st, bins=min(50, int(st.max(initial=0)) + 1))
  ax1.set_xlabel("staleness")
  ax1.set_ylabel("updates")
  _plot_participation(ax2, out.participation)
  fig.tight_layout()
  results.write_figure(workdir / PLOTS[2], fig)
  ds = s.fed.train
  if np.issubdtype(ds.y.dtype, np.integer):
    st_ = partition.stats(ds.y, [np.arange(o, o + n) for o, n in
                                 zip(ds.offsets, ds.counts)],
                          num_classes=s.fed.num_classes)
    partition.plot(st_, workdir / PLOTS[3])
