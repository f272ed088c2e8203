"""Where an experiment run writes until it finishes (not part of the
library): a new partial folder beside its target, moved into place only
when everything is written (``partial_dir``, ``finish``), its log
(``Log``), Ctrl-C that says how far the runs got (``interruptible``), and
files written atomically (``write_text``). Used through ``common.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from pathlib import Path

from fedasync_jax import results


def _stamp() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y%m%dT%H%M%SZ")


_TARGETS: dict = {}
"""``{partial folder: the folder it becomes}`` of the runs in progress."""


def partial_dir(target: Path) -> Path:
  """A new, empty sibling of ``target``, ``<target>.partial-<UTC time>``,
  that a run writes into; ``finish`` moves it into place when the run has
  written everything, so a run stopped midway (Ctrl-C, an error, a lost
  machine) leaves ``target`` as it was and its own files under that
  clearly named folder."""
  target = Path(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  base = target.with_name(f"{target.name}.partial-{_stamp()}")
  out, i = base, 1
  while True:
    try:
      out.mkdir()
      break
    except FileExistsError:
      out, i = Path(f"{base}-{i}"), i + 1
  _TARGETS[out] = target
  return out


def target_of(out: Path) -> Path:
  """The folder that the partial folder ``out`` becomes (``out`` itself
  when it is not one)."""
  return _TARGETS.get(Path(out), Path(out))


def finish(out: Path) -> Path:
  """Moves a run's partial folder ``out`` (``partial_dir``) into place and
  returns where it is now. Each step is a rename on one file system: the
  earlier folder, if any, is renamed aside (``<target>.replaced-<UTC
  time>``), the partial folder renamed to the target, then the earlier
  folder's entries that this run did not write (another script's files in
  a shared folder: ``--force`` replaces only the same names) are moved
  back in and the rest of the earlier folder is removed."""
  import shutil
  out = Path(out)
  target = _TARGETS.pop(out, None)
  if target is None:
    return out
  old = None
  if target.exists():
    old = target.with_name(f"{target.name}.replaced-{_stamp()}")
    os.replace(target, old)
  os.replace(out, target)
  if old is not None:
    for entry in sorted(old.iterdir()):
      if not (target / entry.name).exists():
        os.replace(entry, target / entry.name)
    shutil.rmtree(old)
  return target


class Log:
  """Prints to stderr and to ``<out>/log.txt``; its first line says where
  a run in a partial folder (``partial_dir``) writes and where its results
  go when it finishes."""

  def __init__(self, out: Path):
    self.out = Path(out)
    self.total, self.done = None, 0  # runs planned and completed
    self.file = open(Path(out) / "log.txt", "w")
    target = target_of(out)
    if target != Path(out):
      self(f"writing into {out}; it replaces {target} when the run "
           f"finishes (a run stopped before then leaves {target} as it was "
           f"and this run's files in {out})")

  def __call__(self, msg: str):
    print(msg, file=sys.stderr, flush=True)
    print(msg, file=self.file, flush=True)

  def close(self):
    self.file.close()

  def plan(self, total: int) -> None:
    """The number of runs this script will do (``interruptible``)."""
    self.total, self.done = int(total), 0

  def run_done(self) -> None:
    """One more run completed (and written to history.csv)."""
    self.done += 1


@contextlib.contextmanager
def interruptible(say, where: str = "history.csv"):
  """Inside, Ctrl-C (SIGINT) or SIGTERM stops the script at once
  (``fedasync_jax.run.interrupts.interrupt_on_signals``: even inside JAX's
  callbacks) with the line ``interrupted after N of M runs; completed
  runs are in history.csv`` in ``log.txt`` (``say.plan`` / ``run_done``
  count them), naming where that file is and that the folder the run was
  to replace is unchanged, and exit status 130. ``say`` is the run's
  ``Log``, or, for a script that keeps none, its partial folder
  (``partial_dir``): the line then goes to stderr alone."""
  from fedasync_jax.run.interrupts import interrupt_on_signals
  try:
    with interrupt_on_signals():
      yield
  except KeyboardInterrupt as e:
    name = str(e) if str(e).startswith("SIG") else "SIGINT"
    log = say if isinstance(say, Log) else None
    out = log.out if log else Path(say)
    target = target_of(out)
    kept = (f"; {target} is unchanged" if target != out else "")
    runs = (f"after {log.done} of {log.total} runs; completed runs are in "
            f"{where}" if log and log.total is not None else
            "before its results were written")
    msg = f"interrupted ({name}) {runs} (in {out}{kept})"
    if log:
      log(msg)
      log.close()
    else:
      print(msg, file=sys.stderr, flush=True)
    sys.exit(130)


def write_text(path, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (a temporary file renamed over
  it: ``results.atomic_write_bytes``), as the CSV and JSON writers do."""
  results.atomic_write_bytes(Path(path), text.encode("utf-8"))
