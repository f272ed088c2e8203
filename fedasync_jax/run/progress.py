"""The progress a run or sweep shows: the bar, its stage lines, and the
schedule's draw.

``ProgressBar`` takes the progress dict every simulator reports
(``arrivals_done``, ``num_arrivals``, ``version``, ``wall_time_s``,
``last_eval``); ``stage`` writes a line for a step before training
(loading data, compiling); ``ProgressBar.drawing`` reports how far a long
schedule draw got.

Example:
  >>> import io
  >>> bar = ProgressBar(stream=io.StringIO())
  >>> bar({"arrivals_done": 5, "num_arrivals": 10, "version": 5,
  ...      "wall_time_s": 1.0, "last_eval": {"test_accuracy": 0.5}})
  >>> "5/10 updates" in bar.stream.getvalue()
  True
"""

from __future__ import annotations

import math
import sys
import time
from typing import Optional


class ProgressBar:
  """A one-line progress bar: updates, simulated time, accuracy, ETA.

  The ETA is measured from the first report on (so neither compilation
  nor the work done before a resume counts): ``?`` until a second report.
  On a terminal the bar is redrawn in place (a carriage return); elsewhere
  (a log file, a pipe) it writes plain lines: the first report, then at
  most one every ``every_s`` seconds, and the last. ``stage`` writes a line
  for a step before the first report (loading data, compiling).

  Args:
    total: the number of arrivals (default: the dict's ``num_arrivals``).
    schedule: the run's ``Schedule``, for the simulated time (optional).
    stream: where to draw (default stderr).
    width: characters of the bar.
    label: words before the bar (e.g. ``"sweep of 8 members"``).
    tty: redraw in place (default: whether ``stream`` is a terminal).
    every_s: seconds between plain lines when not ``tty``.

  Example:
    >>> import io
    >>> bar = ProgressBar(4, stream=io.StringIO(), every_s=60)
    >>> bar.stage("compiling")
    >>> for done in (1, 2, 4):
    ...   bar({"arrivals_done": done, "wall_time_s": 1.0, "last_eval": None})
    >>> [line[:12] for line in bar.stream.getvalue().splitlines()]
    ['fedasync-jax', '[######-----', '[###########']
  """

  def __init__(self, total: Optional[int] = None, schedule=None, *,
               stream=None, width: int = 24, label: str = "",
               tty: Optional[bool] = None, every_s: float = 10.0):
    self.total, self.schedule = total, schedule
    self.stream = stream or sys.stderr
    self.width, self.label = width, label
    if tty is None:
      isatty = getattr(self.stream, "isatty", None)
      tty = bool(isatty()) if callable(isatty) else False
    self.tty, self.every_s = tty, every_s
    self.t0 = time.perf_counter()
    self.start_done = None
    self.t_first = self.t0
    self.t_line = None
    self._t_drawn = self.t0  # (the schedule's draw: ``drawing``)

  def stage(self, text: str) -> None:
    """Writes ``fedasync-jax: <text>`` on a line of its own."""
    self.stream.write(f"fedasync-jax: {text}\n")
    self.stream.flush()

  def drawing(self, done: int, total: int, *,
              what: str = "the schedule") -> None:
    """How far the draw of ``what`` got (``scheduler.asynchronous``'s
    ``progress``): a line at most every ``every_s`` seconds."""
    now = time.perf_counter()
    if now - self._t_drawn < self.every_s:
      return
    self._t_drawn = now
    self.stage(f"drawing {what}: {done:,} of {total:,} updates "
               f"({now - self.t0:.0f} s)")

  def _sim_time(self, done: int) -> Optional[float]:
    s = self.schedule
    if s is None or not done:
      return None if s is None else 0.0
    return float(s.arrival_time[s.arrival_task[done - 1]])

  def __call__(self, info: dict) -> None:
    done = int(info["arrivals_done"])
    total = int(self.total if self.total is not None
                else info.get("num_arrivals", done))
    now = time.perf_counter()
    if self.start_done is None:  # the first report (maybe after a resume)
      self.start_done = done
      self.t_first = now
    elif not self.tty and done < total and now - self.t_line < self.every_s:
      return
    self.t_line = now
    elapsed = info.get("wall_time_s", now - self.t0)
    rate_done = done - self.start_done
    eta = ((now - self.t_first) / rate_done * (total - done)
           if rate_done > 0 else 0.0 if done >= total else math.nan)
    acc_text = _accuracy_text(info)
    eta_text = "     ?" if math.isnan(eta) else f"{eta:6.1f}"
    filled = int(self.width * done / max(total, 1))
    bar = "#" * filled + "-" * (self.width - filled)
    sim_t = self._sim_time(done)
    sim = "" if sim_t is None else f" | sim time {sim_t:9.1f}"
    label = f"{self.label} " if self.label else ""
    self.stream.write(f"{chr(13) if self.tty else ''}{label}[{bar}] "
                      f"{done}/{total} updates{sim} | {acc_text} | "
                      f"{elapsed:6.1f} s elapsed, ETA {eta_text} s ")
    if done >= total or not self.tty:
      self.stream.write("\n")
    self.stream.flush()


def _accuracy_text(info: dict) -> str:
  """``test acc 0.750 at 200`` (the evaluation after 200 updates: the
  last one made, which the final model's may differ from); for a sweep
  (``members`` in ``info``) the mean over the members evaluated so far and
  their range.

  Example:
    >>> _accuracy_text({"last_eval": {"test_accuracy": 0.75}})
    'test acc  0.750'
    >>> _accuracy_text({"last_eval": {"test_accuracy": 0.75,
    ...                               "client_updates": 200}})
    'test acc  0.750 at 200'
    >>> _accuracy_text({"members": [{"last_eval": {"test_accuracy": a}}
    ...                             for a in (0.5, 0.75, 1.0)]})
    'test acc  0.750 mean (0.500-1.000)'
  """
  members = info.get("members")
  if not members:
    last = info.get("last_eval") or {}
    at = last.get("client_updates")
    return (f"test acc {last.get('test_accuracy', math.nan):6.3f}"
            + ("" if at is None else f" at {at}"))
  accs = [(m.get("last_eval") or {}).get("test_accuracy") for m in members]
  accs = [float(a) for a in accs if a is not None and not math.isnan(a)]
  if not accs:
    return f"test acc {math.nan:6.3f}"
  return (f"test acc {sum(accs) / len(accs):6.3f} mean "
          f"({min(accs):.3f}-{max(accs):.3f})")


def stage(progress, text: str) -> None:
  """``progress.stage(text)`` when ``progress`` is a ``ProgressBar`` (any
  other progress callable, or ``None``, gets nothing)."""
  fn = getattr(progress, "stage", None)
  if callable(fn):
    fn(text)
