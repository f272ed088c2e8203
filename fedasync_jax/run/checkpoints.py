"""Stopping and resuming a run: signals, verified checkpoints, final params.

SIGINT and SIGTERM set a flag (``stop_on_signals``); the checkpoint writer
that the executor calls between chunks saves the checkpoint (atomically)
every ``every_s`` seconds and whenever the flag is set, and then tells the
executor to stop. ``read_resume`` loads a run's saved configuration and
checkpoint; a resumed run ends with the same parameters as an
uninterrupted one.

A checkpoint verifies itself. Its file (``encode``) starts with a format
line and the SHA-256 of everything after it; then a JSON line of metadata:
the library version, whether JAX runs in 64-bit mode (``x64``), the
resolved configuration it belongs to and its SHA-256, the chunk it
continues from and the wall time spent so far; then the executor's arrays
(``executor.Checkpoint.to_bytes``). Resuming refuses, in one line naming
what differs, a damaged file, another library version or x64 mode, and a
``config.json`` edited since the checkpoint was written
(``verify``). The writer refuses to replace a checkpoint with an
inconsistent one (``check_consistent``) and writes atomically.

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
import hashlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from fedasync_jax.core.checks import show
from fedasync_jax.run import config as config_lib
from fedasync_jax.run import results
from fedasync_jax.run.inputs import input_digests, input_paths
from fedasync_jax.run.folders import (CHECKPOINT, claim_folder,  # noqa: F401
                                      no_checkpoint)

FINAL_PARAMS = "final_params.msgpack"
MAGIC = b"fedasync-jax checkpoint 2\n"


class Interrupted(RuntimeError):
  """The run was stopped by a signal after saving its checkpoint."""


class Saved(NamedTuple):
  """A checkpoint read back: the executor's ``Checkpoint`` and the
  metadata it was written with (``encode``)."""
  checkpoint: Any
  meta: dict

  @property
  def elapsed_s(self) -> float:
    """Wall time the run had spent when the checkpoint was written."""
    return float(self.meta.get("elapsed_s", 0.0))


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


def config_digest(config: dict) -> str:
  """SHA-256 of a configuration dict as canonical JSON (sorted keys).

  Example:
    >>> config_digest({"a": 1, "b": [1, 2]}) == config_digest(
    ...     {"b": [1, 2], "a": 1})
    True
  """
  plain = json.loads(json.dumps(config, default=results.plain))
  text = json.dumps(plain, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def stamp(config: dict) -> dict:
  """What a checkpoint must match to be resumed here: the library version,
  the x64 mode, the configuration's digest and its input files' digests."""
  import fedasync_jax
  return {"library_version": fedasync_jax.__version__,
          "x64": bool(jax.config.read("jax_enable_x64")),
          "config_sha256": config_digest(config),
          "inputs": input_digests(config)}


def check_consistent(ck, *, chunk_steps: int, step_axis: int = 0) -> None:
  """Checks that a checkpoint holds the outputs of exactly the chunks it
  says were run: every output array has ``next_chunk * chunk_steps``
  steps along ``step_axis`` (0 for a run, 1 for a sweep).

  Raises:
    ValueError: naming the inconsistency.
  """
  steps = int(ck.next_chunk) * int(chunk_steps)
  if int(ck.next_chunk) < 1:
    raise ValueError(f"the checkpoint continues from chunk "
                     f"{ck.next_chunk}; it must be >= 1")
  for path, leaf in jax.tree_util.tree_leaves_with_path(ck.outputs):
    shape = np.shape(leaf)
    if len(shape) <= step_axis or shape[step_axis] != steps:
      name = jax.tree_util.keystr(path)
      raise ValueError(
          f"the checkpoint's outputs{name} have shape {shape}, but "
          f"{ck.next_chunk} chunks of {chunk_steps} steps need {steps} "
          f"steps along axis {step_axis}")


def encode(ck, *, config: dict, elapsed_s: float) -> bytes:
  """A checkpoint's file: format line, SHA-256 line, metadata, arrays."""
  payload = ck.to_bytes()
  meta = {**stamp(config), "config": config,
          "next_chunk": int(ck.next_chunk), "elapsed_s": float(elapsed_s)}
  body = (json.dumps(meta, sort_keys=True, default=results.plain).encode()
          + b"\n" + payload)
  return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def decode(blob: bytes, where="the checkpoint") -> Saved:
  """Reads ``encode``'s bytes back, checking the format and the checksum.

  Raises:
    ValueError: ``--resume: the checkpoint ... is unreadable (why)``.
  """
  from fedasync_jax.sim import executor

  def unreadable(why):
    return ValueError(f"--resume: the checkpoint {where} is unreadable "
                      f"({why}); it was not written by this version of "
                      f"fedasync-jax or is damaged; start a new folder")
  if not blob.startswith(MAGIC):
    raise unreadable("no fedasync-jax checkpoint header")
  digest, _, body = blob[len(MAGIC):].partition(b"\n")
  if hashlib.sha256(body).hexdigest().encode() != digest:
    raise unreadable("its checksum does not match its contents")
  head, _, payload = body.partition(b"\n")
  try:
    meta = json.loads(head)
    ck = executor.Checkpoint.from_bytes(payload)
  except Exception as e:  # noqa: BLE001 - any decoding failure
    raise unreadable(f"{type(e).__name__}: {e}") from None
  if not isinstance(meta, dict) or meta.get("next_chunk") != ck.next_chunk:
    raise unreadable("its metadata does not match its arrays")
  return Saved(ck, meta)


def _brief(value) -> str:
  """A value in a difference: shortened, and a section of more than two
  fields (the other side has none) by its field count."""
  if isinstance(value, dict) and len(value) > 2:
    return f"{{{len(value)} fields}}"
  return show(value)


def differences(here: dict, saved: dict, prefix: str = "", *,
                names=("here", "saved")) -> list:
  """The fields (``section.field``) whose values or types differ between
  two configuration dicts, each as ``"field: X here, Y saved"``
  (``names``: the words for the two sides). ``100`` and ``100.0`` differ:
  they change the configuration's hash.

  Example:
    >>> differences({"rule": {"alpha": 0.5, "a": 1}},
    ...             {"rule": {"alpha": 0.6, "a": 1.0}})
    ['rule.alpha: 0.5 here, 0.6 saved', 'rule.a: 1 here, 1.0 saved']
  """
  out = []
  for k in list(dict.fromkeys([*here, *saved])):
    a, b = here.get(k), saved.get(k)
    name = f"{prefix}{k}"
    if isinstance(a, dict) and isinstance(b, dict):
      out += differences(a, b, prefix=f"{name}.", names=names)
    elif a != b or type(a) is not type(b):
      out.append(f"{name}: {_brief(a)} {names[0]}, {_brief(b)} {names[1]}")
  return out


def verify(saved: Saved, *, config: dict, workdir: Path) -> None:
  """Refuses to resume ``workdir`` from ``saved`` unless it was written by
  this library version, in this x64 mode, for ``config`` (the folder's
  ``config.json``).

  Raises:
    ValueError: one line naming what changed.
  """
  here, meta = stamp(config), saved.meta
  ck_path = Path(workdir) / CHECKPOINT
  for key, what in (("library_version", "fedasync_jax version"),
                    ("x64", "jax_enable_x64 (x64 mode)")):
    if meta.get(key) != here[key]:
      raise ValueError(
          f"--resume: {ck_path} was written with {what} {meta.get(key)!r}, "
          f"this process has {here[key]!r}; resume it with the same, or "
          f"start a new folder")
  if meta.get("config_sha256") != here["config_sha256"]:
    old = meta.get("config")
    changed = (differences(config, old, names=("in config.json",
                                               "in the checkpoint"))
               if isinstance(old, dict) else [])
    detail = "; ".join(changed[:5]) + (
        f"; and {len(changed) - 5} more" if len(changed) > 5 else "") or (
            "same values, other types")
    raise ValueError(
        f"--resume: {Path(workdir) / 'config.json'} changed after the "
        f"checkpoint was written ({detail}); restore it, or start a new "
        f"folder with the new configuration")
  old_inputs = meta.get("inputs")  # absent from older checkpoints
  if isinstance(old_inputs, dict):
    for field in sorted(set(old_inputs) | set(here["inputs"])):
      if old_inputs.get(field) != here["inputs"].get(field):
        path = input_paths(config).get(field)
        raise ValueError(
            f"--resume: {field} {path} changed or went missing after the "
            f"checkpoint was written (its SHA-256 differs); restore it, or "
            f"start a new folder: a run resumed on other data would mix "
            f"two data sets")


def save_checkpoint(path: Path, ck, *, config: dict, chunk_steps: int,
                    step_axis: int = 0, elapsed_s: float = 0.0) -> None:
  """Writes a checkpoint after checking it (``check_consistent``) and
  reading its bytes back (``decode``), atomically: a failure at any point
  leaves the previous checkpoint as it was.

  Raises:
    ValueError: an inconsistent checkpoint (nothing is written).
    OSError: the disk refused it (the previous checkpoint is kept).
  """
  check_consistent(ck, chunk_steps=chunk_steps, step_axis=step_axis)
  blob = encode(ck, config=config, elapsed_s=elapsed_s)
  decode(blob, path)
  results.atomic_write_bytes(path, blob)


def checkpoint_writer(path: Path, flag: dict, every_s: float, *,
                      config: dict, chunk_steps: int, step_axis: int = 0,
                      elapsed: Optional[Callable[[], float]] = None,
                      stream=None):
  """The executor's ``checkpoint`` callback: writes the checkpoint every
  ``every_s`` seconds (0: every chunk) and when a signal came; returns
  whether to stop.

  Args:
    path: the checkpoint's file.
    flag: set by ``stop_on_signals``.
    every_s: seconds between checkpoints.
    config: the resolved configuration (``config.json``) it belongs to.
    chunk_steps: steps per compiled chunk (``check_consistent``).
    step_axis: the outputs' step axis (0 for a run, 1 for a sweep).
    elapsed: the wall time the run has spent so far, over every resume
      (stored in the checkpoint; default 0).
    stream: where a failed write is reported (default stderr); the run
      goes on and the previous checkpoint is kept.
  """
  last = [time.perf_counter()]
  warned = []

  def write(ck) -> bool:
    now = time.perf_counter()
    if flag.get("signal") or now - last[0] >= every_s:
      try:
        save_checkpoint(path, ck, config=config, chunk_steps=chunk_steps,
                        step_axis=step_axis,
                        elapsed_s=elapsed() if elapsed else 0.0)
      except OSError as e:
        if not warned:
          warned.append(e)
          print(f"\nfedasync-jax: warning: checkpoint not written ({e}); "
                f"the previous one is kept and the run goes on",
                file=stream or sys.stderr)
      last[0] = now
    return bool(flag.get("signal"))
  return write


def read_checkpoint(workdir: Path) -> Saved:
  """The checkpoint saved in ``workdir`` (a run's or a sweep's), checked
  against its checksum (``decode``) but not yet against a configuration
  (``verify``).

  Raises:
    ValueError: no checkpoint, or one this program cannot read.
  """
  ck_path = Path(workdir) / CHECKPOINT
  if not ck_path.is_file():
    raise ValueError(no_checkpoint(workdir))
  try:
    blob = ck_path.read_bytes()
  except OSError as e:
    raise ValueError(f"--resume: cannot read {ck_path}: {e}") from None
  return decode(blob, ck_path)


def read_verified(workdir: Path, *, config: dict, chunk_steps: int,
                  step_axis: int = 0, saved: Optional[Saved] = None
                  ) -> Saved:
  """``read_checkpoint`` (unless ``saved`` is given), then ``verify``
  against ``config`` and ``check_consistent`` (its error prefixed with
  ``--resume``)."""
  saved = saved if saved is not None else read_checkpoint(workdir)
  verify(saved, config=config, workdir=workdir)
  try:
    check_consistent(saved.checkpoint, chunk_steps=chunk_steps,
                     step_axis=step_axis)
  except ValueError as e:
    raise ValueError(f"--resume: {Path(workdir) / CHECKPOINT}: {e}; start "
                     f"a new folder") from None
  return saved


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
  other = "other" if what.endswith("s") else "another"  # seeds, grid
  raise ValueError(f"--resume: {workdir} was started with {other} {what} "
                   f"({detail}); resume it with its own, or start a new "
                   f"folder")


def _is_sweep(config) -> bool:
  return isinstance(config, dict) and "base" in config and "grid" in config


def check_kind(config, command: str, workdir: Path) -> None:
  """Refuses to let ``command`` (``"run"`` or ``"sweep"``) resume the other
  command's folder, naming the command that continues it; ``config`` is the
  checkpoint's own configuration (or, when the checkpoint is unreadable,
  the folder's ``config.json``)."""
  is_sweep = _is_sweep(config)
  if is_sweep != (command == "sweep"):
    held, other = (("a sweep", "sweep") if is_sweep
                   else ("a single run, not a sweep", "run"))
    raise ValueError(f"--resume: {workdir} holds {held}; continue it with: "
                     f"fedasync-jax {other} --resume {workdir}")


def read_kind(workdir: Path, command: str) -> dict:
  """``config.json`` of a folder that ``command`` (``"run"`` or
  ``"sweep"``) resumes. A file that is not of that command's kind (a
  damaged or another command's) is judged by the checkpoint's own
  configuration (``check_kind``).

  Raises:
    ValueError: no checkpoint; the other command's folder; a
      ``config.json`` that is not a JSON object.
  """
  workdir = Path(workdir)
  if not (workdir / CHECKPOINT).is_file():
    read_checkpoint(workdir)  # raises: no checkpoint (and why)
  saved = results.read_json(workdir / "config.json")
  if isinstance(saved, dict) and _is_sweep(saved) == (command == "sweep"):
    return saved
  try:
    own = read_checkpoint(workdir).meta.get("config")
  except ValueError:
    if isinstance(saved, dict):  # config.json says what it is, then
      check_kind(saved, command, workdir)
    raise
  check_kind(own, command, workdir)
  if not isinstance(saved, dict):
    raise ValueError(f"--resume: {workdir / 'config.json'} holds a JSON "
                     f"{type(saved).__name__}, not a configuration; restore "
                     f"the file the {command} wrote there")
  return saved


def read_resume(workdir: Path, cfg=None):
  """The saved configuration and verified checkpoint of an interrupted
  run.

  Args:
    workdir: the run's folder.
    cfg: the configuration the caller expects (``None``: the saved one);
      a different one is refused.

  Returns:
    ``(config, Saved)``.

  Raises:
    ValueError: no checkpoint, one this program cannot read, a sweep's
      folder, a configuration that differs from the saved one, or a
      checkpoint that does not belong to the saved configuration
      (``verify``).
  """
  workdir = Path(workdir)
  saved = read_kind(workdir, "run")
  if cfg is not None:
    check_same(workdir, "configuration", config_lib.to_dict(cfg),
               config_lib.to_dict(config_lib.load(workdir / "config.json")))
  ck = read_checkpoint(workdir)
  check_kind(ck.meta.get("config"), "run", workdir)
  verify(ck, config=saved, workdir=workdir)  # config.json is unchanged
  saved_cfg = config_lib.load(workdir / "config.json")
  return saved_cfg, read_verified(workdir, config=saved,
                                  chunk_steps=saved_cfg.run.chunk_steps,
                                  saved=ck)


def write_params(path: Path, params) -> None:
  """Writes parameters (flax serialization), atomically."""
  from flax import serialization
  results.atomic_write_bytes(path, serialization.to_bytes(params))


def remove_checkpoint(workdir: Path) -> bool:
  """Removes ``workdir``'s checkpoint (the run or sweep is complete, or
  ``--force`` starts a new one there); returns whether there was one."""
  ck = Path(workdir) / CHECKPOINT
  if ck.exists():
    ck.unlink()
    return True
  return False


def finish(workdir: Path, params) -> None:
  """Writes the final parameters and removes the checkpoint."""
  write_params(Path(workdir) / FINAL_PARAMS, params)
  remove_checkpoint(workdir)
