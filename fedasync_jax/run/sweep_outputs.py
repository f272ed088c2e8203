"""What a sweep leaves behind: one long history, a summary over seeds, one
folder per member and plots with a band over seeds.

``write_sweep`` writes, into the sweep's folder (every file atomically):

* ``history.csv``: long format, one row per evaluation of every member:
  ``member``, each grid field's value, ``seed``, ``version``,
  ``simulated_time``, ``client_updates``, ``client_train_loss`` (the mean
  local training loss of the client updates received since the previous
  evaluation), ``test_loss``, ``test_accuracy``, ``mean_staleness`` and the
  bytes sent each way so far;
* ``summary.csv``: one row per grid point: each grid field's value,
  ``seeds`` (how many), the mean and 95% interval over seeds (Student t) of
  the final test accuracy and loss (``final_test_accuracy_mean``,
  ``..._ci95_low``, ``..._ci95_high``; clipped to the quantity's range,
  ``RANGES``; with one seed the interval is NaN and the ``interval`` column
  says so), the fewest client updates of its members and whether any
  stopped early;
* ``sweep.csv``: one row per member: settings, final metrics, folder;
* ``summary.json``: members, wall time, client updates, throughput,
  whether the sweep stopped early and the seconds spent writing outputs;
* one folder per member, named by its values (``alpha=0.3,seed=1``), with
  the ``history.csv``, ``arrivals.csv``, ``participation.csv`` and
  ``summary.json`` of a single run (``outputs.write_outputs``); ``m<i>``
  links to member ``i``'s folder;
* ``test_accuracy.png`` and ``test_loss.png`` (when matplotlib is
  installed): per grid point, the mean over seeds with its 95% band
  (clipped as the intervals), against client updates and against simulated
  time.

Before a new run or sweep writes into a folder (``--force``),
``remove_previous`` removes what a previous run or sweep wrote there (its
files and plots, member folders, ``m<i>`` links, TensorBoard events), so
that the folder describes the new one only.

Example:
  >>> grid = {"rule.alpha": [0.3, 1.0], "client.lr": [0.01]}
  >>> member_folders(grid, [({"rule.alpha": 0.3, "client.lr": 0.01}, 1),
  ...                       ({"rule.alpha": 1.0, "client.lr": 0.01}, 1)])
  ['alpha=0.3,lr=0.01,seed=1', 'alpha=1,lr=0.01,seed=1']
  >>> mean, low, high = interval([0.5, 0.7])
  >>> round(float(mean), 3), round(float(high - mean), 3)
  (0.6, 1.271)
  >>> [float(x) for x in interval([0.5, 0.7], bounds=RANGES["test_accuracy"])]
  [0.6, 0.0, 1.0]
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from pathlib import Path

import jax
import numpy as np

from fedasync_jax.run import metrics, results, tensorboard
from fedasync_jax.run.checkpoints import (CHECKPOINT, FINAL_PARAMS,
                                          remove_checkpoint)
from fedasync_jax.run.grid import members
from fedasync_jax.run.outputs import (PLOTS, attempt, history_rows,
                                      write_outputs)

FINALS = ("final_test_accuracy", "final_test_loss")
RANGES = {"test_accuracy": (0.0, 1.0), "test_loss": (0.0, None)}
"""Where each reported quantity lies: ``(low, high)``, ``None`` for no
limit. Accuracies are fractions; test losses are cross-entropies (the
models' negative log-likelihood), never negative."""
MEMBER_FILES = ("summary.json", "history.csv", metrics.METRICS,
                "arrivals.csv", "staleness.csv", "trace_mapping.csv",
                "participation.csv", FINAL_PARAMS)
"""The files a sweep may write in a member's folder (``write_outputs``
with ``plots=False``, and the final parameters); a run writes them too."""
SWEEP_FILES = ("sweep.csv", "summary.csv")
"""A sweep's own files, besides those a run also writes (``history.csv``,
``summary.json``, the metrics' plots)."""
_LINK = re.compile(r"m[0-9]+")
_MEMBER = re.compile(r"(?:[^/]+,)?seed=[0-9]+")


def labels(keys) -> dict:
  """Short names of grid fields for folder names and legends: the last part
  (``alpha``), or the whole field when two fields share it."""
  last = [k.rsplit(".", 1)[-1] for k in keys]
  return {k: (s if last.count(s) == 1 and s != "seed" else k)
          for k, s in zip(keys, last)}


def format_value(v) -> str:
  """A grid value as written in names: shortest exact float, no ``.0``."""
  if isinstance(v, (float, np.floating)):
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text
  return str(v)


def point_label(values: dict, names: dict) -> str:
  """``alpha=0.3,lr=0.01`` for one grid point (``names``: ``labels``)."""
  return ",".join(f"{names[k]}={format_value(v)}" for k, v in values.items())


def member_folders(grid: dict, grid_members) -> list:
  """Each member's folder name: its grid values and seed."""
  names = labels(list(grid))
  return [",".join(filter(None, [point_label(values, names),
                                 f"seed={seed}"]))
          for values, seed in grid_members]


def interval(values, axis: int = 0, bounds=(None, None)):
  """Mean and 95% Student t interval of the mean along ``axis``.

  Args:
    values: the samples.
    axis: the axis of the samples.
    bounds: ``(low, high)`` the quantity lies in (``RANGES``; ``None``:
      no limit): the interval is clipped to it.

  Returns:
    ``(mean, low, high)``; ``low`` and ``high`` are NaN with one value.
  """
  a = np.asarray(values, np.float64)
  n = a.shape[axis]
  mean = a.mean(axis=axis)
  if n < 2:
    nan = np.full_like(mean, np.nan)
    return mean, nan, nan
  from scipy.special import stdtrit  # Student t quantile (light import)
  half = stdtrit(n - 1, 0.975) * a.std(axis=axis, ddof=1) / math.sqrt(n)
  lo, hi = bounds
  low, high = mean - half, mean + half
  if lo is not None:
    low, high = np.maximum(low, lo), np.maximum(high, lo)
  if hi is not None:
    low, high = np.minimum(low, hi), np.minimum(high, hi)
  return mean, low, high


def _member_history(s, out) -> list:
  """The member's history rows (as a single run's: ``history_rows``, with
  the clients' training loss after ``client_updates``)."""
  param_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(s.params))
  return history_rows(s, out, param_bytes)


def _link(workdir: Path, i: int, folder: str) -> None:
  """``m<i>`` -> ``folder`` (a relative symlink, replaced atomically;
  skipped where links cannot be made)."""
  link = workdir / f"m{i}"
  if link.exists() and not link.is_symlink():
    return
  tmp = workdir / f".m{i}.{os.getpid()}.link"
  try:
    if tmp.is_symlink():
      tmp.unlink()
    os.symlink(folder, tmp, target_is_directory=True)
    os.replace(tmp, link)
  except OSError:
    pass


def _links(workdir: Path) -> list:
  """The ``m<i>`` symbolic links in ``workdir`` that name a member's
  folder, as ``(link, folder name)``."""
  out = []
  for p in workdir.iterdir():
    if _LINK.fullmatch(p.name) and p.is_symlink():
      target = os.readlink(p)
      if _MEMBER.fullmatch(target):
        out.append((p, target))
  return out


def _previous_members(workdir: Path) -> set:
  """The member folders of the sweep that last wrote into ``workdir``: named
  by its ``config.json`` (when it is a sweep's) and by its ``m<i>``
  links."""
  names = {target for _, target in _links(workdir)}
  try:
    saved = results.read_json(workdir / "config.json")
    names.update(member_folders(saved["grid"], members(saved["grid"],
                                                       saved["seeds"])))
  except (ValueError, KeyError, TypeError, AttributeError):
    pass  # no sweep's config.json: the links name its members
  return {n for n in names if _MEMBER.fullmatch(n)}


def _remove_files(folder: Path, names) -> None:
  """Removes ``names`` from ``folder``, then ``folder`` if left empty (a
  folder holding other files keeps them)."""
  if folder.is_symlink() or not folder.is_dir():
    return
  for name in names:
    (folder / name).unlink(missing_ok=True)
  with contextlib.suppress(OSError):
    folder.rmdir()


def remove_previous(workdir) -> list:
  """Removes what a previous run or sweep wrote into ``workdir``, before
  a new run or sweep writes there (``--force``), so that the folder
  describes the new one only: an interrupted one's checkpoint; a run's
  files (``MEMBER_FILES``, ``PLOTS``) and TensorBoard events; a sweep's
  own files (``SWEEP_FILES``), each member folder's ``MEMBER_FILES``, the
  folder once empty, its ``m<i>`` link and its TensorBoard events; the
  demo's files (``demo.FILES``); ``config.json`` (a new run or sweep
  writes its own next). Files none of them writes are kept.

  Returns:
    The warnings to give: a removed checkpoint (the run or sweep it
    belonged to can no longer be resumed).

  Raises:
    OSError: a file that cannot be removed.
  """
  from fedasync_jax.run import demo  # (here: the demo imports this module)
  workdir = Path(workdir)
  said = ([f"--force: {workdir} held an interrupted run or sweep; its "
           f"checkpoint ({CHECKPOINT}) is removed, so it can no longer be "
           f"resumed"] if remove_checkpoint(workdir) else [])
  names = _previous_members(workdir)
  for link, target in _links(workdir):
    if target in names:
      link.unlink()
  for name in (*MEMBER_FILES, *PLOTS, *SWEEP_FILES, *demo.FILES,
               "config.json"):
    (workdir / name).unlink(missing_ok=True)
  logdir = workdir / tensorboard.FOLDER
  if logdir.is_dir():  # a run's events
    for p in logdir.iterdir():
      if p.name.startswith(tensorboard.PREFIX) and p.is_file():
        p.unlink()
  for name in sorted(names):
    _remove_files(workdir / name, MEMBER_FILES)
    if (logdir / name).is_dir():
      _remove_files(logdir / name, [
          p.name for p in (logdir / name).iterdir()
          if p.name.startswith(tensorboard.PREFIX)])
  with contextlib.suppress(OSError):
    logdir.rmdir()
  return said


def points(grid_members) -> dict:
  """``{grid values (tuple): [member indices]}``, in grid order."""
  out = {}
  for i, (values, _) in enumerate(grid_members):
    out.setdefault(tuple(values.items()), []).append(i)
  return out


def summary_rows(grid_members, rows: list) -> list:
  """One row per grid point: seeds, mean and 95% interval over seeds of the
  final test accuracy and loss (``rows``: one per member, ``sweep.csv``)."""
  out = []
  for key, idx in points(grid_members).items():
    row = dict(key)
    row["seeds"] = len(idx)
    for m in FINALS:
      mean, low, high = interval([rows[i][m] for i in idx],
                                 bounds=RANGES[m.removeprefix("final_")])
      row.update({f"{m}_mean": float(mean), f"{m}_ci95_low": float(low),
                  f"{m}_ci95_high": float(high)})
    row["interval"] = (f"95% Student t interval of the mean over "
                       f"{len(idx)} seeds" if len(idx) > 1 else
                       "none: one seed (low and high are NaN)")
    row["client_updates"] = min(rows[i]["client_updates"] for i in idx)
    row["stopped_early"] = any(rows[i]["stopped_early"] for i in idx)
    out.append(row)
  return out


def write_sweep(workdir, base, per_seed: dict, grid: dict, grid_members,
                outs: list, *, wall_time: float, resumed_s: float = 0.0,
                stream=None, warnings=(), plots: bool = True) -> list:
  """Writes every output of a finished (or interrupted) sweep.

  As for a single run (``outputs.write_outputs``), a disk error writing a
  file, or any error drawing the plots, is a warning (on ``stream``, and
  listed in ``summary.json``): the other files are still written.

  Args:
    workdir: the sweep's folder.
    base: the base ``Setup`` (data, model, evaluator).
    per_seed: ``{seed: setup.Seeded}``.
    grid: ``{field: [values]}``.
    grid_members: ``[(values, seed)]``, one per member (``grid.members``).
    outs: one ``RunResult`` per member.
    wall_time: seconds the sweep ran, over every resume.
    resumed_s: seconds spent before the last resume (0: not resumed).
    stream: where warnings go (default stderr).
    warnings: warnings already printed (``notices.config_warnings``), listed
      first under ``"warnings"`` in ``summary.json``.
    plots: draw the sweep's plots (``plot_sweep``, with matplotlib).

  Returns:
    One row dict per member (as in ``sweep.csv``).
  """
  t0 = time.perf_counter()
  workdir = Path(workdir)
  folders = member_folders(grid, grid_members)
  rows, history, histories = [], [], []
  for i, ((values, seed), out, folder) in enumerate(
      zip(grid_members, outs, folders)):
    drawn = per_seed[seed]  # (the trace rows each seed's clients follow)
    s_i = base._replace(schedule=drawn.schedule, params=drawn.params,
                        trace_mapping=drawn.trace_mapping)
    summary = write_outputs(workdir / folder, None, s_i, out,
                            wall_time=wall_time, plots=False,
                            resumed_s=resumed_s, stream=stream)
    _link(workdir, i, folder)
    member_rows = _member_history(s_i, out)
    histories.append(member_rows)
    head = {"member": i, **values, "seed": seed}
    history.extend({**head, **r} for r in member_rows)
    rows.append({"member": i, "seed": seed, **values,
                 **{m: summary[m] for m in FINALS},
                 "versions": summary["versions"],
                 "mean_staleness": summary["mean_staleness"],
                 "client_updates": summary["client_updates"],
                 "stopped_early": summary["stopped_early"],
                 "folder": folder})
  problems = list(warnings)

  def save(what, fn, **kw):
    attempt(problems, what, fn, stream=stream, **kw)
  save("history.csv", lambda: results.write_csv(workdir / "history.csv",
                                                history))
  save("sweep.csv", lambda: results.write_csv(workdir / "sweep.csv", rows))
  save("summary.csv", lambda: results.write_csv(
      workdir / "summary.csv", summary_rows(grid_members, rows)))
  if plots:
    save("plots", lambda: plot_sweep(workdir, grid, grid_members,
                                     histories), errors=(Exception,))
  total = sum(r["client_updates"] for r in rows)
  summary = {
      "members": len(grid_members), "wall_time_s": wall_time,
      "wall_time_before_resume_s": resumed_s,
      "client_updates": total, "updates_per_s": total / max(wall_time, 1e-9),
      "stopped_early": any(r["stopped_early"] for r in rows),
      "output_time_s": time.perf_counter() - t0,
      "backend": jax.default_backend(),
      "devices": (outs[0].stats.get("devices", 1) if outs else 1)}
  summary["warnings"] = problems  # present, [] when there are none
  save("summary.json", lambda: results.write_json(workdir / "summary.json",
                                                  summary))
  return rows


def mean_band(curves: list, bounds=(None, None)):
  """Mean and 95% band over seeds of curves ``[(x, y)]`` sampled at
  different ``x``: each is interpolated at the union of their ``x`` up to
  the smallest last ``x`` (no extrapolation); the band is clipped to
  ``bounds`` (``interval``).

  Returns:
    ``(x, mean, low, high)``.
  """
  stop = min(float(x[-1]) for x, _ in curves)
  xs = np.unique(np.concatenate([x for x, _ in curves]))
  xs = xs[xs <= stop]
  ys = np.stack([np.interp(xs, x, y) for x, y in curves])
  return (xs, *interval(ys, axis=0, bounds=bounds))


LEGEND_POINTS = 50
"""The most grid points a sweep's plots name in a legend (250 names filled
the figure: 23 showed, and matplotlib warned that it could not lay it
out)."""


def plot_sweep(workdir, grid: dict, grid_members, histories: list) -> None:
  """Writes ``test_accuracy.png`` and ``test_loss.png``: per grid point,
  the mean over seeds and its 95% band, against client updates and against
  simulated time (needs matplotlib: the ``plots`` extra).

  Args:
    workdir: the sweep's folder.
    grid: ``{field: [values]}``.
    grid_members: ``[(values, seed)]``, one per member.
    histories: per member, its history rows (``history_rows``).
  """
  from matplotlib.figure import Figure
  names = labels(list(grid))
  by_point = points(grid_members)
  n_seeds = len({s for _, s in grid_members})
  for metric in ("test_accuracy", "test_loss"):
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    for ax, x_key, x_label in zip(
        axes, ("client_updates", "simulated_time"),
        ("client updates", "simulated time (s)")):
      for key, idx in by_point.items():
        curves = [(np.asarray([r[x_key] for r in histories[i]], float),
                   np.asarray([r[metric] for r in histories[i]], float))
                  for i in idx]
        xs, mean, low, high = mean_band(curves, RANGES[metric])
        line, = ax.plot(xs, mean, label=point_label(dict(key), names)
                        or "all members")
        if len(idx) > 1:
          ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2,
                          linewidth=0)
      ax.set_xlabel(x_label)
      ax.set_ylabel(metric.replace("_", " "))
      ax.grid(alpha=0.3)
    if len(by_point) > LEGEND_POINTS:
      pass  # (the title says where the values are)
    elif len(by_point) <= 10:
      axes[1].legend(fontsize="small")
    else:  # beside the plot, so it hides no line
      axes[1].legend(fontsize="x-small", ncol=1 + len(by_point) // 25,
                     loc="upper left", bbox_to_anchor=(1.02, 1.0))
    band = "95% interval" if n_seeds > 1 else "no band: one seed"
    unnamed = ("" if len(by_point) <= LEGEND_POINTS else
               f"; {len(by_point)} grid points, too many to name: "
               f"summary.csv has their values")
    fig.suptitle(f"mean over {n_seeds} seed(s) per grid point ({band})"
                 f"{unnamed}")
    fig.tight_layout()
    results.write_figure(workdir / f"{metric}.png", fig)
