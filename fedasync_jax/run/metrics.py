"""The metrics stream: ``metrics.jsonl``, one JSON object per evaluation.

A run appends to ``metrics.jsonl`` in its output folder as it goes: after
every compiled chunk that evaluated the model, one line with the latest
evaluation (``version``, ``simulated_time``, ``client_updates``,
``test_loss``, ``test_accuracy``: the names of ``types.COLUMNS``), flushed
at once, so ``tail -f`` follows a run. A chunk reports only its latest
evaluation, so when a chunk holds several, the earlier ones appear when the
run ends: ``write_jsonl`` then replaces the file (atomically) with every
evaluation of the history, each with its ``client_train_loss`` too.

With ``run.tensorboard: true`` the same rows also go to a TensorBoard event
file in ``<out>/tensorboard/`` (``tensorboard``), step = ``client_updates``:
appended as the run goes (``MetricsStream(tensorboard=...)``) and rewritten
from the final ``metrics.jsonl`` when it ends (``write_tensorboard``).

Example:
  >>> import io, json, numpy as np
  >>> class S:  # a schedule: 3 arrivals, one version each
  ...   version_after = np.array([1, 2, 3])
  ...   arrival_time = np.array([0.5, 1.0, 2.0])
  ...   arrival_task = np.array([0, 1, 2])
  >>> f = io.StringIO()
  >>> stream = MetricsStream(f, S(), eval_every=2)
  >>> stream({"arrivals_done": 3, "last_eval": {"test_loss": 0.5,
  ...                                           "test_accuracy": 0.75}})
  >>> json.loads(f.getvalue())
  {'version': 2, 'simulated_time': 1.0, 'client_updates': 2, 'test_loss': 0.5, 'test_accuracy': 0.75}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from fedasync_jax.run import results
from fedasync_jax.run import tensorboard as tensorboard_lib
from fedasync_jax.sim import tasks

METRICS = "metrics.jsonl"
"""The file name of the stream in a run's output folder."""


def json_line(row: dict) -> str:
  """One row as a line of JSON (NaN written as ``null``)."""
  return json.dumps(results.json_ready(row)) + "\n"


class MetricsStream:
  """A progress callable that appends each newly reported evaluation to a
  text stream (``metrics.jsonl``), one flushed line each.

  Args:
    file: an open text file (or any object with ``write`` and ``flush``).
    schedule: the run's ``Schedule`` (the version and time of an arrival).
    eval_every: the evaluation interval in versions (as given to the
      simulator): which arrival an evaluation followed.
    after: the last arrival already written (a resumed run: ``-1`` has the
      initial evaluation; ``None``: nothing yet).
    tensorboard: a ``tensorboard.EventFile`` that gets each row too (a
      disk error there stops it quietly; ``write_tensorboard`` reports).
    fields: columns written first in every line (e.g. the demo's
      ``{"algorithm": "fedasync"}``).
  """

  def __init__(self, file, schedule, *, eval_every: Optional[int],
               after: Optional[int] = None,
               tensorboard: Optional[tensorboard_lib.EventFile] = None,
               fields: Optional[dict] = None):
    self.file, self.schedule = file, schedule
    self.fields = dict(fields or {})
    self.tensorboard = tensorboard
    points = tasks.eval_points(np.asarray(schedule.version_after),
                               eval_every)
    self.points = np.flatnonzero(points)
    self.after = after

  def __call__(self, info: dict) -> None:
    ev = info.get("last_eval")
    if not ev:
      return
    done = int(info["arrivals_done"])
    k = int(np.searchsorted(self.points, done, side="left"))
    a = int(self.points[k - 1]) if k > 0 else -1
    if (self.after is not None and a <= self.after) or (
        ev.get("client_updates") == 0 and a != -1):  # nothing new evaluated
      return
    s = self.schedule
    row = {**self.fields,
           "version": int(s.version_after[a]) if a >= 0 else 0,
           "simulated_time": (float(s.arrival_time[s.arrival_task[a]])
                              if a >= 0 else 0.0),
           "client_updates": a + 1,
           **{k_: v for k_, v in ev.items() if k_.startswith("test_")}}
    self.file.write(json_line(row))
    self.file.flush()
    self.after = a
    if self.tensorboard is not None:
      try:
        self.tensorboard.add_row(row)
      except OSError:
        self.tensorboard = None


def last_written(path) -> Optional[int]:
  """The last arrival (``client_updates - 1``) in a ``metrics.jsonl``, or
  ``None`` when there is none (for ``MetricsStream(after=...)``). A line
  torn by a kill is cut off first (the stream would append to it),
  atomically; the complete lines before it count.

  Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
    >>> _ = open(p, "w").write('{"client_updates": 8}\\n{"client_up')
    >>> last_written(p), open(p).read()
    (7, '{"client_updates": 8}\\n')
  """
  try:
    text = Path(path).read_text()
  except (OSError, ValueError):
    return None
  lines, last = text.splitlines(keepends=True), None
  keep = 0
  for line in lines:
    try:
      row = json.loads(line) if line.endswith("\n") else None
      last = int(row["client_updates"]) - 1
    except (LookupError, ValueError, TypeError):
      break
    keep += 1
  if keep < len(lines):
    try:
      results.atomic_write_bytes(path, "".join(lines[:keep]).encode())
    except OSError:
      return None
  return last


class _Appender:
  """A file object for ``MetricsStream`` that appends each line to
  ``path``, opening and closing it per write (a sweep of thousands of
  members would otherwise hold as many files open) and making its folder
  first. A disk error stops it quietly: the complete file is written when
  the run ends."""

  def __init__(self, path):
    self.path, self.broken = Path(path), False

  def write(self, text: str) -> None:
    if self.broken:
      return
    try:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      with open(self.path, "a") as f:
        f.write(text)
    except OSError:
      self.broken = True

  def flush(self) -> None:
    """Nothing to do: every write is closed."""


def member_streams(paths, schedules, *, eval_every: Optional[int],
                   resume: bool):
  """A sweep's progress callable that streams every member's evaluations
  to its own ``metrics.jsonl`` as the sweep goes: the ``members`` entries
  of the progress dict (``driver.run_loop``), member ``m`` to ``paths[m]``
  with its schedule ``schedules[m]``. A resumed sweep (``resume``)
  appends after each file's last complete line; a new one starts them.

  Example:
    >>> import json, os, tempfile, numpy as np
    >>> class S:  # a schedule: 3 arrivals, one version each
    ...   version_after = np.array([1, 2, 3])
    ...   arrival_time = np.array([0.5, 1.0, 2.0])
    ...   arrival_task = np.array([0, 1, 2])
    >>> d = tempfile.mkdtemp()
    >>> paths = [os.path.join(d, f"m{i}", METRICS) for i in range(2)]
    >>> call = member_streams(paths, [S(), S()], eval_every=1, resume=False)
    >>> call({"members": [
    ...     {"arrivals_done": 2, "last_eval": {"test_loss": 0.5}},
    ...     {"arrivals_done": 2, "last_eval": None}]})
    >>> open(paths[0]).read(), os.path.exists(paths[1])
    ('{"version": 2, "simulated_time": 1.0, "client_updates": 2, "test_loss": 0.5}\\n', False)
  """
  streams = [MetricsStream(_Appender(p), s, eval_every=eval_every,
                           after=last_written(p) if resume else None)
             for p, s in zip(paths, schedules)]

  def call(info: dict) -> None:
    for stream, member in zip(streams, info.get("members", ())):
      stream(member)
  return call


def write_jsonl(path, rows) -> None:
  """Writes every row (``outputs.history_rows``) as ``metrics.jsonl``,
  atomically."""
  text = "".join(json_line(r) for r in rows)
  results.atomic_write_bytes(path, text.encode())


def read_jsonl(path) -> list:
  """The rows of a ``metrics.jsonl`` (``null`` read as ``None``).

  Raises:
    OSError: it cannot be read.
    ValueError: a line is not a JSON object (naming the file and line).
  """
  rows = []
  for i, line in enumerate(Path(path).read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError as e:
      raise ValueError(f"{path}, line {i}: not JSON ({e})") from None
    if not isinstance(row, dict):
      raise ValueError(f"{path}, line {i}: not a JSON object")
    rows.append(row)
  return rows


def write_tensorboard(path, logdir) -> Path:
  """Writes the rows of the ``metrics.jsonl`` at ``path`` as the TensorBoard
  event file of ``logdir`` (``tensorboard.write_rows``: atomically, one
  event per row at step ``client_updates``, keeping the wall times of the
  steps already streamed there).

  Returns:
    The event file's path.

  Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_jsonl(d / METRICS, [{"client_updates": 0, "test_loss": 2.5},
    ...                           {"client_updates": 50, "test_loss": 0.75}])
    >>> events = tensorboard_lib.read_events(
    ...     write_tensorboard(d / METRICS, d / "tensorboard"))
    >>> [(e["step"], e["scalars"]) for e in events[1:]]
    [(0, {'test_loss': 2.5}), (50, {'test_loss': 0.75})]
  """
  return tensorboard_lib.write_rows(logdir, read_jsonl(path))


def fan_out(*callbacks):
  """One progress callable calling each of ``callbacks`` that is not
  ``None`` (``None`` when there are none)."""
  live = [c for c in callbacks if c is not None]
  if not live:
    return None
  if len(live) == 1:
    return live[0]

  def call(info):
    for c in live:
      c(info)
  return call
