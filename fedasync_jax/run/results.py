"""Writing run results to files people can open: CSV and JSON.

Every file is written atomically (to a temporary file in the same folder,
then renamed), so an interrupted run never leaves a half-written file.

Example:
  >>> import tempfile, pathlib
  >>> d = pathlib.Path(tempfile.mkdtemp())
  >>> write_csv(d / "h.csv", [{"version": 0, "accuracy": 0.1}])
  >>> (d / "h.csv").read_text().splitlines()[0]
  'version,accuracy'
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np


def atomic_write_bytes(path, payload: bytes) -> None:
  """Writes ``payload`` to ``path`` atomically: into a temporary file in
  the same folder, flushed to disk (``fsync``), then renamed over
  ``path`` (``os.replace``) and the folder synced. On any error the
  temporary file is removed and ``path`` is left as it was."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates 0600; give the file the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
  """Flushes a folder's entries (a rename) to disk, where supported."""
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _plain(v):
  if dataclasses.is_dataclass(v) and not isinstance(v, type):
    return dataclasses.asdict(v)
  if isinstance(v, (np.integer,)):
    return int(v)
  if isinstance(v, (np.floating,)):
    return float(v)
  if isinstance(v, np.ndarray):
    return v.tolist()
  if isinstance(v, np.bool_):
    return bool(v)
  return v


plain = _plain  # public: converts what ``write_json`` converts


def json_ready(obj):
  """``obj`` with numpy values, dataclasses, tuples and nested containers
  converted (``plain``) and every NaN or infinite float replaced by
  ``None``: JSON has no ``NaN``/``Infinity``, so ``write_json`` writes
  ``null`` for them, as ``metrics.jsonl`` does.

  Example:
    >>> json_ready({"loss": float("inf"), "x": (np.float32(1.5), np.nan)})
    {'loss': None, 'x': [1.5, None]}
  """
  obj = _plain(obj)
  if isinstance(obj, dict):
    return {k: json_ready(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_ready(v) for v in obj]
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def write_json(path, obj) -> None:
  """Writes ``obj`` as indented, strict JSON (``json_ready``: numpy values
  and dataclasses such as configurations converted, NaN and infinities
  written as ``null``)."""
  text = json.dumps(json_ready(obj), indent=2, default=_plain,
                    sort_keys=False, allow_nan=False)
  atomic_write_bytes(path, (text + "\n").encode())


def read_json(path):
  """Reads a JSON file.

  Raises:
    ValueError: the file is missing or is not JSON (naming it).
  """
  try:
    return json.loads(Path(path).read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read {path}: {e}") from None


def write_csv(path, rows: Iterable[Mapping]) -> None:
  """Writes a list of dicts as CSV: the columns are every key, in the order
  first seen; a row without a key leaves that cell empty."""
  rows = list(rows)
  buf = io.StringIO()
  if rows:
    names = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    w.writeheader()
    for r in rows:
      w.writerow({k: _plain(v) for k, v in r.items()})
  atomic_write_bytes(path, buf.getvalue().encode())


def write_figure(path, fig, dpi: int = 100) -> None:
  """Saves a matplotlib figure as PNG, atomically."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  atomic_write_bytes(path, buf.getvalue())


def write_columns(path, columns: Mapping[str, np.ndarray]) -> None:
  """Writes equal-length arrays as the columns of a CSV file (the same
  text as ``write_csv`` of the rows, written column-wise: fast for long
  logs)."""
  names = list(columns)
  buf = io.StringIO()
  if names:
    cols = [np.asarray(columns[k]).tolist() for k in names]
    if len(cols[0]):
      w = csv.writer(buf, lineterminator="\n")
      w.writerow(names)
      w.writerows(zip(*cols))
  atomic_write_bytes(path, buf.getvalue().encode())
