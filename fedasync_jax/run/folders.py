"""Output folders: claiming one for a new run or sweep, and locking it.

A new run or sweep writes only into a new or empty folder (``--force``
lets it write into a non-empty one); a resumed one into the folder it
continues. While a process writes into a folder it holds ``LOCK`` there:
the file names its process id, and a second process that finds a live
lock is refused, naming the folder. A lock left by a process that died
(its process id no longer runs on this machine) is taken over.

Example:
  >>> import tempfile, pathlib
  >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
  >>> with open_folder(d, command="run") as f:
  ...   (f / LOCK).exists()
  True
  >>> d.exists(), (d / LOCK).exists()  # nothing written: no folder left
  (False, False)
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

LOCK = ".fedasync-jax.lock"
CHECKPOINT = "checkpoint.msgpack"


def _pid_alive(pid: int) -> bool:
  """Whether process ``pid`` runs on this machine."""
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it runs, as another user
    return True
  return True


def _unwritable(workdir: Path, e: OSError) -> ValueError:
  return ValueError(f"cannot write into {workdir} "
                    f"({e.strerror or type(e).__name__}); choose another "
                    f"--out")


def _holder(lock: Path):
  """``(pid, host)`` written in a lock file, or ``None`` if unreadable."""
  try:
    pid, host = lock.read_text().split("\n")[:2]
    return int(pid), host
  except (OSError, ValueError):
    return None


def acquire_lock(workdir: Path) -> Path:
  """Creates ``workdir/LOCK`` holding this process's id, taking over a
  lock whose process has died.

  Returns:
    The lock's path.

  Raises:
    ValueError: a live process holds the lock, or the folder cannot be
      written (each naming the folder).
  """
  workdir = Path(workdir)
  lock = workdir / LOCK
  text = f"{os.getpid()}\n{socket.gethostname()}\n".encode()
  for _ in range(3):
    try:
      fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      held = _holder(lock)
      if held is not None and (held[1] != socket.gethostname()
                               or _pid_alive(held[0])):
        raise ValueError(
            f"{workdir} is in use by another fedasync-jax process (pid "
            f"{held[0]} on {held[1]}, lock {lock}); wait for it to end, or "
            f"choose another --out") from None
      with contextlib.suppress(FileNotFoundError):  # a dead holder's lock
        lock.unlink()
      continue
    except OSError as e:
      raise _unwritable(workdir, e) from None
    try:
      os.write(fd, text)
    finally:
      os.close(fd)
    return lock
  raise ValueError(f"{workdir}: could not take the lock {lock}; another "
                   f"process keeps taking it")


def release_lock(lock: Path) -> None:
  """Removes ``lock`` if this process still holds it."""
  held = _holder(lock)
  if held is not None and held[0] == os.getpid():
    with contextlib.suppress(OSError):
      lock.unlink()


def _contents(workdir: Path) -> list:
  return sorted(p.name for p in workdir.iterdir() if p.name != LOCK)


def claim_folder(workdir: Path, command: str = "run", *,
                 force: bool = False) -> Path:
  """Creates ``workdir`` for a new run or sweep and locks it.

  An existing folder must be empty unless ``force`` (the caller then
  removes a checkpoint left there once its run can start, so that it is
  not resumed with the new run's configuration).

  Args:
    workdir: the output folder.
    command: ``"run"`` or ``"sweep"``, for the messages.
    force: write into a non-empty folder.

  Returns:
    The lock's path (``release_lock`` frees it).

  Raises:
    ValueError: ``workdir`` is a file, cannot be written, is locked by a
      live process, or is not empty (naming what it holds).

  Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text("{}")
    >>> claim_folder(d)
    Traceback (most recent call last):
    ...
    ValueError: ... already holds the outputs of a run or sweep ...
  """
  workdir = Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f"--out {workdir} is a file, not a folder; choose "
                     f"another --out")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise _unwritable(workdir, e) from None
  lock = acquire_lock(workdir)
  try:
    held = _contents(workdir)
    if held and not force:
      if CHECKPOINT in held:
        raise ValueError(
            f"{workdir} holds an interrupted run or sweep ({CHECKPOINT}); "
            f"continue it with: fedasync-jax {command} --resume {workdir}, "
            f"or choose another --out (nothing is overwritten)")
      if "config.json" in held:
        raise ValueError(
            f"{workdir} already holds the outputs of a run or sweep "
            f"(config.json); choose another --out (nothing is overwritten)")
      shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
      raise ValueError(
          f"--out {workdir} is not empty ({shown}); choose a new or empty "
          f"folder, or pass --force to write into it")
  except BaseException:
    release_lock(lock)
    raise
  return lock


@contextlib.contextmanager
def open_folder(workdir: Path, *, command: str = "run", resume: bool = False,
                force: bool = False):
  """Holds ``workdir`` for one run or sweep: claims it (a new one) or
  locks it (``resume``), and frees it after.

  A new folder that is still empty when the body fails (say, while
  loading data) is removed again, so nothing is left behind.

  Raises:
    ValueError: as ``claim_folder``; with ``resume``, no checkpoint in
      ``workdir``.
  """
  workdir = Path(workdir)
  if resume:
    if not (workdir / CHECKPOINT).is_file():
      raise ValueError(f"--resume: no checkpoint at {workdir / CHECKPOINT}")
    lock = acquire_lock(workdir)
    new = False
  else:
    new = not workdir.exists()
    lock = claim_folder(workdir, command, force=force)
  try:
    yield workdir
  finally:
    release_lock(lock)
    if new:
      with contextlib.suppress(OSError):
        workdir.rmdir()  # only if nothing was written

