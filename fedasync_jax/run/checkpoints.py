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


def read_resume(workdir: Path):
  """The saved configuration and checkpoint of an interrupted run.

  Returns:
    ``(config, checkpoint)``.

  Raises:
    ValueError: no checkpoint, or one this program cannot read.
  """
  from fedasync_jax.sim import executor
  ck_path = Path(workdir) / CHECKPOINT
  if not ck_path.exists():
    raise ValueError(f"--resume: no checkpoint at {ck_path}")
  cfg = config_lib.load(Path(workdir) / "config.json")
  try:
    ck = executor.Checkpoint.from_bytes(ck_path.read_bytes())
  except Exception as e:  # noqa: BLE001 - any decoding failure
    raise ValueError(f"--resume: the checkpoint {ck_path} is unreadable "
                     f"({type(e).__name__}: {e}); it was not written by "
                     f"this program or is damaged") from None
  return cfg, ck


def finish(workdir: Path, params) -> None:
  """Writes the final parameters and removes the checkpoint."""
  from flax import serialization
  results.atomic_write_bytes(Path(workdir) / FINAL_PARAMS,
                             serialization.to_bytes(params))
  ck = Path(workdir) / CHECKPOINT
  if ck.exists():
    ck.unlink()
