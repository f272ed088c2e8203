"""Output folders: claiming one for a new run or sweep, and locking it.

A new run or sweep writes only into a new or empty folder (``--force``
lets it write into a non-empty one); a resumed one into the folder it
continues. While a process writes into a folder it holds ``LOCK`` there:
the file names its process id, and a second process that finds a live
lock is refused, naming the folder. The lock appears with its content
(written beside it, then linked into place). A lock left by a process that
died (its process id no longer runs on this machine), or an empty one
older than ``LOCK_GRACE_S``, is taken over.

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
import errno
import itertools
import os
import socket
import time
from pathlib import Path

LOCK = ".fedasync-jax.lock"
LOCK_GRACE_S = 10.0
"""How long an unreadable (empty) lock counts as being written by its
creator rather than left by a dead process."""
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


def _place(lock: Path, text: bytes) -> None:
  """Creates ``lock`` holding ``text`` in one step: written to a temporary
  file beside it, then hard-linked into place (``os.link`` never replaces
  an existing file), so no process can find it empty. Where hard links
  are not supported, ``O_EXCL`` creation then one write.

  Raises:
    FileExistsError: ``lock`` exists.
    OSError: the folder cannot be written.
  """
  tmp = lock.with_name(f"{lock.name}.{os.getpid()}.tmp")
  with contextlib.suppress(FileNotFoundError):  # a dead namesake's
    os.unlink(tmp)
  try:
    _write_new(tmp, text)
    try:
      os.link(tmp, lock)
      return
    except FileExistsError:
      raise
    except OSError as e:
      if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                         errno.EXDEV, errno.EMLINK):
        raise
  finally:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
  _write_new(lock, text)


def _write_new(path: Path, text: bytes) -> None:
  """Creates ``path`` (``O_EXCL``: never an existing file) holding
  ``text``, mode 0644."""
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  try:
    os.write(fd, text)
  finally:
    os.close(fd)


def _age_s(path: Path) -> float:
  """Seconds since ``path`` was last modified (0 if it is gone)."""
  try:
    return time.time() - path.stat().st_mtime
  except OSError:
    return 0.0


def acquire_lock(workdir: Path) -> Path:
  """Creates ``workdir/LOCK`` holding this process's id (``_place``),
  taking over a lock whose process has died. A lock that cannot be read
  (empty: another process of an older version between creating and
  writing it) is in use while younger than ``LOCK_GRACE_S``, stale after.

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
      _place(lock, text)
    except FileExistsError:
      held = _holder(lock)
      young = held is None and _age_s(lock) < LOCK_GRACE_S
      if young or (held is not None and (held[1] != socket.gethostname()
                                         or _pid_alive(held[0]))):
        who = ("a lock being written" if held is None
               else f"pid {held[0]} on {held[1]}")
        raise ValueError(
            f"{workdir} is in use by another fedasync-jax process ({who}, "
            f"lock {lock}); wait for it to end, or use another folder"
        ) from None
      with contextlib.suppress(FileNotFoundError):  # a dead holder's lock
        lock.unlink()
      continue
    except OSError as e:
      raise _unwritable(workdir, e) from None
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
  """The names in ``workdir`` besides the lock (and a lock being placed)."""
  return sorted(p.name for p in workdir.iterdir()
                if p.name != LOCK and not p.name.startswith(LOCK + "."))


def claim_folder(workdir: Path, command: str = "run", *,
                 force: bool = False) -> Path:
  """Creates ``workdir`` for a new run or sweep and locks it.

  An existing folder must be empty unless ``force`` (the caller then
  removes a checkpoint left there once its run can start, so that it is
  not resumed with the new run's configuration).

  Args:
    workdir: the output folder.
    command: ``"run"``, ``"sweep"`` or ``"demo"``, for the messages.
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
        resumes = command if command in ("run", "sweep") else "run (or sweep)"
        raise ValueError(
            f"{workdir} holds an interrupted run or sweep ({CHECKPOINT}); "
            f"continue it with: fedasync-jax {resumes} --resume {workdir}, "
            f"or choose another --out (nothing is overwritten)")
      if "config.json" in held:
        raise ValueError(
            f"{workdir} already holds the outputs of a run or sweep "
            f"(config.json); choose another --out (nothing is overwritten), "
            f"or pass --force to replace them")
      shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
      raise ValueError(
          f"--out {workdir} is not empty ({shown}); choose a new or empty "
          f"folder, or pass --force to write into it")
  except BaseException:
    release_lock(lock)
    raise
  return lock


def _make_default(command: str, root: Path) -> Path:
  """Makes a new ``root/<command>-<date>-<time>`` folder, ``-2``, ``-3``...
  appended when the name is taken (``mkdir`` either makes the folder or
  fails, so two processes started in the same second get two folders)."""
  base = Path(root) / time.strftime(f"{command}-%Y%m%d-%H%M%S")
  for k in itertools.count(1):
    path = base if k == 1 else base.with_name(f"{base.name}-{k}")
    try:
      path.mkdir(parents=True)
    except FileExistsError:
      continue
    except OSError as e:
      raise _unwritable(path, e) from None
    return path


@contextlib.contextmanager
def output_folder(out, command: str, *, root: Path = Path("runs")):
  """``out`` as given, or, for ``None``, a new default folder
  ``root/<command>-<date>-<time>`` made for this process and removed again
  if it is still empty at the end (the command failed before writing),
  with ``root`` itself if this call made it and it is empty.

  Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with output_folder(None, "run", root=root) as a, \\
    ...     output_folder(None, "run", root=root) as b:
    ...   _ = (b / "x").write_text("")
    ...   a != b and b.name.startswith(a.name)
    True
    >>> a.exists(), b.exists()
    (False, True)
  """
  if out is not None:
    yield Path(out)
    return
  made_root = not Path(root).exists()
  path = _make_default(command, root)
  try:
    yield path
  finally:
    with contextlib.suppress(OSError):
      path.rmdir()  # only if nothing was written
      if made_root:
        Path(root).rmdir()  # (and ``root`` if this call made it)


def no_checkpoint(workdir: Path) -> str:
  """Why ``--resume`` finds no checkpoint in ``workdir``: no such folder, a
  finished run or sweep (its checkpoint is removed once its summary is
  written), or none written yet."""
  workdir = Path(workdir)
  if not workdir.is_dir():
    return f"--resume: no folder {workdir}"
  if (workdir / "summary.json").is_file():
    return (f"--resume: {workdir} holds a finished run or sweep (summary.json "
            f"is written and its checkpoint removed); there is nothing to "
            f"resume")
  return f"--resume: no checkpoint at {workdir / CHECKPOINT}"


@contextlib.contextmanager
def open_folder(workdir: Path, *, command: str = "run", resume: bool = False,
                force: bool = False):
  """Holds ``workdir`` for one run or sweep: claims it (a new one) or
  locks it (``resume``), and frees it after.

  A new folder that is still empty when the body fails (say, while
  loading data) is removed again, so nothing is left behind.

  Raises:
    ValueError: as ``claim_folder``; with ``resume``, a folder another
      process holds (``acquire_lock``, even before its first checkpoint)
      or no checkpoint in ``workdir``.
  """
  workdir = Path(workdir)
  if resume:
    if not workdir.is_dir():
      raise ValueError(no_checkpoint(workdir))
    lock = acquire_lock(workdir)  # a live run there: named first
    if not (workdir / CHECKPOINT).is_file():
      release_lock(lock)
      raise ValueError(no_checkpoint(workdir))
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

