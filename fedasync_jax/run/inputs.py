"""The input files a run reads, and their digests.

A checkpoint records the SHA-256 of every file its configuration names
(``config_files.PATH_FIELDS``: ``data.path``, ``delays.trace_path``,
``delays.availability_trace``; a folder such as a TFDS ``data.data_dir`` is
not hashed), and a resume whose file changed since is refused
(``checkpoints.verify``): a run resumed on other data would mix two data
sets.

Example:
  >>> import os, tempfile
  >>> p = os.path.join(tempfile.mkdtemp(), "d.npz")
  >>> _ = open(p, "wb").write(b"data")
  >>> list(input_digests({"data": {"path": p}}))
  ['data.path']
"""

from __future__ import annotations

import hashlib
import os

from fedasync_jax.run import config_files

_FILE_DIGESTS: dict = {}  # (path, size, mtime_ns) -> SHA-256


def file_digest(path) -> str:
  """SHA-256 of a file's bytes (kept per path, size and modification time,
  so a run's checkpoints do not read its data again)."""
  st = os.stat(path)
  key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
  if key not in _FILE_DIGESTS:
    h = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    _FILE_DIGESTS[key] = h.hexdigest()
  return _FILE_DIGESTS[key]


def input_digests(config: dict) -> dict:
  """``{"data.path": sha256, ...}``: the files a configuration (a run's, or
  a sweep's ``base``) reads, among ``config_files.PATH_FIELDS`` (a folder,
  such as a TFDS ``data.data_dir``, is not hashed).

  Example:
    >>> input_digests({"data": {"path": None}})
    {}
  """
  return {field: file_digest(path)
          for field, path in input_paths(config).items()
          if os.path.isfile(path)}


def check_present(config: dict) -> None:
  """Every path a configuration (a run's, or a sweep's ``base``) names
  exists: a folder for ``data.data_dir`` (unless ``data.download`` lets
  tensorflow-datasets make it), a file for the others. Checked before an
  output folder is made, so a mistyped path costs nothing.

  Raises:
    ValueError: naming the field and the path.

  Example:
    >>> check_present({"data": {"path": "/no/such/data.npz"}})
    Traceback (most recent call last):
    ...
    ValueError: data.path: no file /no/such/data.npz
  """
  base = config.get("base", config)
  downloads = isinstance(base.get("data"), dict) and \
      base["data"].get("download") is True
  for field, path in input_paths(config).items():
    folder = field == "data.data_dir"
    if folder and downloads:
      continue
    where = os.path.abspath(path)
    if not os.path.exists(path):
      raise ValueError(f"{field}: no {'folder' if folder else 'file'} "
                       f"{where}")
    if os.path.isdir(path) != folder:
      raise ValueError(f"{field}: {where} is a "
                       f"{'file' if folder else 'folder'}, not a "
                       f"{'folder' if folder else 'file'}")


def input_paths(config: dict) -> dict:
  """``{"data.path": path, ...}``: the paths set in a configuration."""
  base = config.get("base", config) if isinstance(config, dict) else {}
  out = {}
  for sec, name in config_files.PATH_FIELDS:
    values = base.get(sec) if isinstance(base, dict) else None
    path = values.get(name) if isinstance(values, dict) else None
    if isinstance(path, str) and path:
      out[f"{sec}.{name}"] = path
  return out
