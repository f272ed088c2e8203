"""Stopping and resuming a run: signals, checkpoints, the final parameters.

SIGINT and SIGTERM set a flag (``stop_on_signals``); the checkpoint writer
that the executor calls between chunks saves the checkpoint (atomically)
every ``every_s`` seconds and whenever the flag is set, and then tells the
executor to stop. ``read_resume`` loads a run's saved configuration and
checkpoint; a resumed run ends with the same parameters as an
uninterrupted one.

Example:
  >>> import tempfile, pathlib
  >>> d = pathlib.Path(tempfile.mkdtemp())
  >>> read_resume(d)
  Traceback (most recent call last):
  ...
  ValueError: --resume: no checkpoint at .../checkpoint.msgpack
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

from fedasync_jax.run import config as config_lib
from fedasync_jax.run import results

CHECKPOINT = "checkpoint.msgpack"
FINAL_PARAMS = "final_params.msgpack"


class Interrupted(RuntimeError):
  """The run was stopped by a signal after saving its checkpoint."""


@contextlib.contextmanager
def stop_on_signals(flag: dict):
  """While inside, SIGINT and SIGTERM set ``flag["signal"]`` (their name)
  instead of stopping the process; the previous handlers come back after.

  Example:
    >>> flag = {}
    >>> with stop_on_signals(flag):
    ...   signal.raise_signal(signal.SIGINT)
    >>> flag
    {'signal': 'SIGINT'}
  """
  def on_signal(signum, frame):
    del frame
    flag["signal"] = signal.Signals(signum).name

  handlers = {}
  for sig in (signal.SIGINT, signal.SIGTERM):
    try:
      handlers[sig] = signal.signal(sig, on_signal)
    except ValueError:  # not the main thread
      pass
  try:
    yield flag
  finally:
    for sig, h in handlers.items():
      signal.signal(sig, h)


def checkpoint_writer(path: Path, flag: dict, every_s: float):
  """The executor's ``checkpoint`` callback: writes the checkpoint every
  ``every_s`` seconds (0: every chunk) and when a signal came; returns
  whether to stop."""
  last = [time.perf_counter()]

  def write(ck) -> bool:
    now = time.perf_counter()
    if flag.get("signal") or now - last[0] >= every_s:
      results.atomic_write_bytes(path, ck.to_bytes())
      last[0] = now
    return bool(flag.get("signal"))
  return write


def read_checkpoint(workdir: Path):
  """The checkpoint saved in ``workdir`` (a run's or a sweep's).

  Raises:
    ValueError: no checkpoint, or one this program cannot read.
  """
  from fedasync_jax.sim import executor
  ck_path = Path(workdir) / CHECKPOINT
  if not ck_path.exists():
    raise ValueError(f"--resume: no checkpoint at {ck_path}")
  try:
    return executor.Checkpoint.from_bytes(ck_path.read_bytes())
  except Exception as e:  # noqa: BLE001 - any decoding failure
    raise ValueError(f"--resume: the checkpoint {ck_path} is unreadable "
                     f"({type(e).__name__}: {e}); it was not written by "
                     f"this program or is damaged") from None


def differences(here: dict, saved: dict, prefix: str = "") -> list:
  """The fields (``section.field``) whose values differ between two
  configuration dicts, each as ``"field: here X, saved Y"``.

  Example:
    >>> differences({"rule": {"alpha": 0.5, "a": 1}},
    ...             {"rule": {"alpha": 0.6, "a": 1}})
    ['rule.alpha: 0.5 here, 0.6 saved']
  """
  out = []
  for k in list(dict.fromkeys([*here, *saved])):
    a, b = here.get(k), saved.get(k)
    name = f"{prefix}{k}"
    if isinstance(a, dict) and isinstance(b, dict) and prefix == "":
      out += differences(a, b, prefix=f"{name}.")
    elif a != b:
      out.append(f"{name}: {a!r} here, {b!r} saved")
  return out


def check_same(workdir: Path, what: str, here, saved) -> None:
  """Refuses to resume ``workdir`` with a configuration, grid or seeds that
  differ from those saved there (``here`` ``None``: nothing to check).

  Raises:
    ValueError: naming every difference.
  """
  both = isinstance(here, dict) and isinstance(saved, dict)
  if here is None or (here == saved and (not both or
                                         list(here) == list(saved))):
    return
  if both:
    detail = "; ".join(differences(here, saved)) or (
        f"the same fields in another order: {', '.join(here)} here, "
        f"{', '.join(saved)} saved")
  else:
    detail = f"{here!r} here, {saved!r} saved"
  raise ValueError(f"--resume: {workdir} was started with another {what} "
                   f"({detail}); resume it with its own, or start a new "
                   f"folder")


def read_resume(workdir: Path, cfg=None):
  """The saved configuration and checkpoint of an interrupted run.

  Args:
    workdir: the run's folder.
    cfg: the configuration the caller expects (``None``: the saved one);
      a different one is refused.

  Returns:
    ``(config, checkpoint)``.

  Raises:
    ValueError: no checkpoint, one this program cannot read, a sweep's
      folder, or a configuration that differs from the saved one.
  """
  workdir = Path(workdir)
  if not (workdir / CHECKPOINT).exists():
    read_checkpoint(workdir)  # raises: no checkpoint
  saved = results.read_json(workdir / "config.json")
  if isinstance(saved, dict) and "grid" in saved and "base" in saved:
    raise ValueError(f"--resume: {workdir} holds a sweep; continue it with: "
                     f"fedasync-jax sweep --resume {workdir}")
  saved_cfg = config_lib.load(workdir / "config.json")
  check_same(workdir, "configuration", None if cfg is None else
             config_lib.to_dict(cfg), config_lib.to_dict(saved_cfg))
  return saved_cfg, read_checkpoint(workdir)


def claim_folder(workdir: Path, command: str = "run") -> Path:
  """Creates ``workdir`` for a new run or sweep, refusing one that already
  holds a run's or a sweep's files (nothing is ever overwritten); an
  existing empty folder, or one with other files, is fine.

  Args:
    workdir: the output folder.
    command: ``"run"`` or ``"sweep"``, for the message.

  Returns:
    ``workdir`` as a ``Path``.

  Raises:
    ValueError: ``workdir`` holds ``config.json`` or a checkpoint.

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
  if (workdir / CHECKPOINT).exists():
    raise ValueError(
        f"{workdir} holds an interrupted run or sweep "
        f"({CHECKPOINT}); continue it with: fedasync-jax {command} --resume "
        f"{workdir}, or choose another --out (nothing is overwritten)")
  if (workdir / "config.json").exists():
    raise ValueError(
        f"{workdir} already holds the outputs of a run or sweep "
        f"(config.json); choose another --out (nothing is overwritten)")
  workdir.mkdir(parents=True, exist_ok=True)
  return workdir


def write_params(path: Path, params) -> None:
  """Writes parameters (flax serialization), atomically."""
  from flax import serialization
  results.atomic_write_bytes(path, serialization.to_bytes(params))


def remove_checkpoint(workdir: Path) -> None:
  """Removes ``workdir``'s checkpoint (the run or sweep is complete)."""
  ck = Path(workdir) / CHECKPOINT
  if ck.exists():
    ck.unlink()


def finish(workdir: Path, params) -> None:
  """Writes the final parameters and removes the checkpoint."""
  write_params(Path(workdir) / FINAL_PARAMS, params)
  remove_checkpoint(workdir)
