"""TensorBoard event files, written without TensorFlow or TensorBoard.

A run with ``run.tensorboard: true`` writes its evaluations into
``<out>/tensorboard/events.out.tfevents.<time>.<host>``, a file that
``tensorboard --logdir <out>/tensorboard`` reads (a sweep: one folder per
member under ``<out>/tensorboard/``). The file is a sequence of TFRecords,
each holding one ``Event`` protocol buffer, encoded here by hand:

* a record is ``length`` (uint64, little-endian), the masked CRC-32C of
  those 8 bytes (uint32), the ``length`` bytes of data and their masked
  CRC-32C (``frame``);
* the first event holds ``file_version: "brain.Event:2"``; every other
  one holds ``wall_time``, ``step`` and a ``summary`` whose values are
  ``(tag, simple_value)`` pairs, one per metric (``encode_event``).

``read_events`` reads such a file back (checking every checksum). Values
are stored as float32, as TensorBoard's ``simple_value`` is.

Example:
  >>> blob = frame(encode_event(wall_time=1.0, step=3,
  ...                           scalars={"test_accuracy": 0.5}))
  >>> [decode_event(r) for r in read_records(blob)]
  [{'wall_time': 1.0, 'step': 3, 'scalars': {'test_accuracy': 0.5}}]
"""

from __future__ import annotations

import bisect
import math
import numbers
import socket
import struct
import time
from pathlib import Path
from typing import Mapping, Optional

from fedasync_jax.run import results

FILE_VERSION = "brain.Event:2"
"""The ``file_version`` of the first event of every event file."""
PREFIX = "events.out.tfevents."
"""How TensorBoard recognises an event file by its name."""
FOLDER = "tensorboard"
"""The folder of a run's event file, in its output folder."""


def _crc32c_table() -> tuple:
  poly = 0x82F63B78  # Castagnoli's polynomial, bit-reversed
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ poly if c & 1 else c >> 1
    table.append(c)
  return tuple(table)


_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
  """The CRC-32C (Castagnoli) of ``data``, continuing from ``crc``.

  Example:
    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
  """
  c = crc ^ 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The CRC-32C of ``data`` rotated right by 15 bits plus ``0xa282ead8``
  (mod 2**32): the checksum TFRecords store.

  Example:
    >>> hex(masked_crc32c(b""))
    '0xa282ead8'
  """
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
  """``data`` as one TFRecord: length, its masked CRC, data, their masked
  CRC.

  Example:
    >>> len(frame(b"abc"))  # 8 + 4 + 3 + 4
    19
  """
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


def complete_length(blob: bytes) -> int:
  """How many leading bytes of ``blob`` are whole, intact records (what is
  left when a writer was killed mid-record is cut off before appending).

  Example:
    >>> complete_length(frame(b"a") + frame(b"bc")[:7])
    17
  """
  pos = 0
  while len(blob) - pos >= 16:
    end = pos + 16 + struct.unpack("<Q", blob[pos:pos + 8])[0]
    if end > len(blob):
      break
    try:
      read_records(blob[pos:end])
    except ValueError:
      break
    pos = end
  return pos


def read_records(blob: bytes, *, name: str = "event file") -> list:
  """The data of every TFRecord in ``blob``, checking both checksums of
  each.

  Args:
    blob: the file's bytes.
    name: the file, for the error message.

  Raises:
    ValueError: a record is truncated or a checksum does not match
      (naming ``name`` and the byte offset).

  Example:
    >>> read_records(frame(b"a") + frame(b"bc"))
    [b'a', b'bc']
  """
  out, pos = [], 0
  while pos < len(blob):
    if len(blob) - pos < 12:
      raise ValueError(f"{name}: truncated record header at byte {pos}")
    head = blob[pos:pos + 8]
    (length,) = struct.unpack("<Q", head)
    (crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
    if crc != masked_crc32c(head):
      raise ValueError(f"{name}: bad length checksum at byte {pos}")
    end = pos + 12 + length
    if end + 4 > len(blob):
      raise ValueError(f"{name}: truncated record at byte {pos}")
    data = blob[pos + 12:end]
    (crc,) = struct.unpack("<I", blob[end:end + 4])
    if crc != masked_crc32c(data):
      raise ValueError(f"{name}: bad data checksum at byte {pos}")
    out.append(data)
    pos = end + 4
  return out


# ---------------------------------------------------------------------------
# Protocol buffer encoding of Event, Summary and Summary.Value.


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1  # a negative int64 as its two's complement
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _field(number: int, wire: int) -> bytes:
  return _varint(number << 3 | wire)


def _bytes_field(number: int, payload: bytes) -> bytes:
  return _field(number, 2) + _varint(len(payload)) + payload


def encode_event(*, wall_time: float, step: int = 0,
                 file_version: Optional[str] = None,
                 scalars: Optional[Mapping[str, float]] = None) -> bytes:
  """An ``Event`` message: ``wall_time`` (1, double), ``step`` (2, int64)
  and either ``file_version`` (3, string) or a ``summary`` (5) of one
  ``Value`` per scalar: ``tag`` (1, string), ``simple_value`` (2, float).

  Example:
    >>> encode_event(wall_time=0.0, file_version="x").hex()
    '0900000000000000001a0178'
  """
  out = _field(1, 1) + struct.pack("<d", float(wall_time))
  if step:
    out += _field(2, 0) + _varint(int(step))
  if file_version is not None:
    out += _bytes_field(3, file_version.encode())
  if scalars:
    summary = b"".join(
        _bytes_field(1, _bytes_field(1, str(tag).encode()) + _field(2, 5)
                     + struct.pack("<f", float(v)))
        for tag, v in scalars.items())
    out += _bytes_field(5, summary)
  return out


def _fields(msg: bytes):
  """``(number, wire type, value)`` of each field of a message."""
  pos = 0
  while pos < len(msg):
    key, pos = _read_varint(msg, pos)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, pos = _read_varint(msg, pos)
    elif wire == 1:
      value, pos = msg[pos:pos + 8], pos + 8
    elif wire == 2:
      n, pos = _read_varint(msg, pos)
      value, pos = msg[pos:pos + n], pos + n
    elif wire == 5:
      value, pos = msg[pos:pos + 4], pos + 4
    else:
      raise ValueError(f"unsupported protocol buffer wire type {wire}")
    if pos > len(msg):
      raise ValueError("truncated protocol buffer")
    yield number, wire, value


def _read_varint(msg: bytes, pos: int):
  n = shift = 0
  while True:
    if pos >= len(msg):
      raise ValueError("truncated protocol buffer")
    b = msg[pos]
    pos += 1
    n |= (b & 0x7F) << shift
    shift += 7
    if not b & 0x80:
      return n, pos


def decode_event(msg: bytes) -> dict:
  """The fields of an ``Event`` that ``encode_event`` writes:
  ``wall_time``, ``step`` and ``file_version`` or ``scalars`` (a dict of
  tag to value); other fields are skipped.

  Example:
    >>> decode_event(encode_event(wall_time=2.0, step=5, scalars={"a": 1}))
    {'wall_time': 2.0, 'step': 5, 'scalars': {'a': 1.0}}
  """
  event = {"wall_time": 0.0, "step": 0}
  for number, _, value in _fields(msg):
    if number == 1:
      event["wall_time"] = struct.unpack("<d", value)[0]
    elif number == 2:
      event["step"] = value - (1 << 64) if value >= 1 << 63 else value
    elif number == 3:
      event["file_version"] = value.decode()
    elif number == 5:
      scalars = event.setdefault("scalars", {})
      for n, _, v in _fields(value):
        if n != 1:
          continue
        tag, simple = None, None
        for vn, vw, vv in _fields(v):
          if vn == 1:
            tag = vv.decode()
          elif vn == 2 and vw == 5:
            simple = struct.unpack("<f", vv)[0]
        if tag is not None and simple is not None:
          scalars[tag] = simple
  return event


# ---------------------------------------------------------------------------
# Event files.


def event_file_name(wall_time: Optional[float] = None,
                    host: Optional[str] = None) -> str:
  """``events.out.tfevents.<seconds>.<host>``, TensorBoard's naming.

  Example:
    >>> event_file_name(1700000000.5, "node1")
    'events.out.tfevents.1700000000.node1'
  """
  t = time.time() if wall_time is None else wall_time
  return f"{PREFIX}{int(t):010d}.{host or socket.gethostname()}"


def find_event_file(logdir) -> Optional[Path]:
  """The event file in ``logdir`` (the last by name when several), or
  ``None``."""
  try:
    found = sorted(p for p in Path(logdir).iterdir()
                   if p.name.startswith(PREFIX) and p.is_file())
  except OSError:
    return None
  return found[-1] if found else None


def read_events(path) -> list:
  """Every event of the event file ``path`` (``decode_event``), checking
  each record's checksums.

  Raises:
    OSError: the file cannot be read.
    ValueError: a record is truncated or damaged (naming the file).
  """
  path = Path(path)
  return [decode_event(r) for r in read_records(path.read_bytes(),
                                                name=str(path))]


def row_scalars(row: Mapping, step_key: str) -> dict:
  """The values of a metrics row to plot: every finite number except
  ``step_key`` (booleans and ``None`` are left out).

  Example:
    >>> row_scalars({"client_updates": 4, "test_loss": 0.5,
    ...              "client_train_loss": None}, "client_updates")
    {'test_loss': 0.5}
  """
  out = {}
  for k, v in row.items():
    if k == step_key or isinstance(v, bool) or not isinstance(
        v, numbers.Real):
      continue
    if math.isfinite(v):
      out[k] = float(v)
  return out


def encode_rows(rows, *, step_key: str = "client_updates",
                wall_times: Optional[Mapping[int, float]] = None,
                now: Optional[float] = None) -> bytes:
  """A complete event file: the ``file_version`` event, then one event per
  row of metrics (``row_scalars``) at step ``row[step_key]``.

  Args:
    rows: dicts of metrics (``metrics.jsonl``'s lines).
    step_key: the row's key that is the event's step.
    wall_times: the wall time of each step already known (say, when it was
      streamed); another step gets that of the next known step after it
      (it was evaluated no later), else ``now``.
    now: the wall time of the rest (default: the current time).

  Example:
    >>> blob = encode_rows([{"client_updates": 2, "test_loss": 0.5},
    ...                     {"client_updates": 4, "test_loss": 0.25}],
    ...                    wall_times={4: 5.0}, now=7.0)
    >>> [(e["step"], e["wall_time"]) for e in map(decode_event,
    ...                                           read_records(blob))]
    [(0, 5.0), (2, 5.0), (4, 5.0)]
  """
  now = time.time() if now is None else float(now)
  wall_times = dict(wall_times or {})
  known = sorted(wall_times)

  def wall_time(step: int) -> float:
    if step in wall_times:
      return wall_times[step]
    k = bisect.bisect_right(known, step)
    return wall_times[known[k]] if k < len(known) else now
  steps = [int(row[step_key]) for row in rows]
  out = [frame(encode_event(
      wall_time=min([now] + [wall_time(t) for t in steps[:1]]),
      file_version=FILE_VERSION))]
  for step, row in zip(steps, rows):
    out.append(frame(encode_event(wall_time=wall_time(step), step=step,
                                  scalars=row_scalars(row, step_key))))
  return b"".join(out)


def write_rows(logdir, rows, *, step_key: str = "client_updates") -> Path:
  """Writes ``rows`` as the event file of ``logdir``, atomically, replacing
  the event file already there (and keeping the wall times of the steps it
  holds, when it is readable).

  Returns:
    The event file's path.
  """
  logdir = Path(logdir)
  path = find_event_file(logdir)
  known = {}
  if path is not None:
    try:
      known = {e["step"]: e["wall_time"] for e in read_events(path)
               if "scalars" in e}
    except (OSError, ValueError):
      known = {}
  else:
    path = logdir / event_file_name()
  results.atomic_write_bytes(path, encode_rows(rows, step_key=step_key,
                                               wall_times=known))
  return path


class EventFile:
  """Appends events to the event file of ``logdir`` as a run goes (created,
  with its ``file_version`` event, when missing), flushing each.

  Args:
    logdir: the folder (made when missing).
    step_key: the key of a row that is its step.

  Example:
    >>> import tempfile
    >>> events = EventFile(tempfile.mkdtemp())
    >>> events.add_row({"client_updates": 10, "test_accuracy": 0.25})
    >>> events.close()
    >>> [e.get("scalars") for e in read_events(events.path)]
    [None, {'test_accuracy': 0.25}]
  """

  def __init__(self, logdir, *, step_key: str = "client_updates"):
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    self.step_key = step_key
    self.path = find_event_file(logdir) or logdir / event_file_name()
    self.file = open(self.path, "ab")  # noqa: SIM115
    if self.file.tell():  # a resumed run: cut a record left half-written
      self.file.truncate(complete_length(self.path.read_bytes()))
      self.file.seek(0, 2)
    if self.file.tell() == 0:
      self._write(encode_event(wall_time=time.time(),
                               file_version=FILE_VERSION))

  def _write(self, event: bytes) -> None:
    self.file.write(frame(event))
    self.file.flush()

  def add_row(self, row: Mapping, wall_time: Optional[float] = None) -> None:
    """Appends one event: the row's scalars at its step."""
    self._write(encode_event(
        wall_time=time.time() if wall_time is None else wall_time,
        step=int(row[self.step_key]),
        scalars=row_scalars(row, self.step_key)))

  def close(self) -> None:
    self.file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
