"""The command line every experiment script shares (used through
``common``): a parser whose errors are one line, argparse types for
positive integers and seed lists, ``--out`` / ``--force`` (a non-empty
output folder is refused without ``--force``), the wrapper ``parse`` that
turns a ``ValueError`` (or ``ConfigError``) raised while checking the
arguments into one line and exit status 2 before anything is written, and
``run_length``, the sentence that says how a run's length compares with
the script's default and full settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data"


class Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors are one line, ``<script>: error:
  <message>`` (exit status 2), without the usage text."""

  def error(self, message):
    if message.startswith("argument "):  # "argument --x: msg" -> "--x msg"
      message = message[len("argument "):].replace(": ", " ", 1)
    self.exit(2, f"{self.prog}: error: {message}\n")


def _int_of(text: str, minimum: int, what: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = None
  if value is None or value < minimum:
    raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
  return value


def positive_int(text: str) -> int:
  """argparse type: an integer >= 1.

  Example:
    >>> positive_int("3")
    3
  """
  return _int_of(text, 1, "a positive integer")


def int_list(text: str, *, minimum: int = 0) -> list:
  """argparse type: comma-separated integers >= ``minimum`` (at least
  one), e.g. seeds.

  Example:
    >>> int_list("0,1,2")
    [0, 1, 2]
  """
  what = (f"comma-separated integers >= {minimum}" if minimum else
          "comma-separated non-negative integers")
  parts = [x.strip() for x in str(text).split(",")]
  if not parts or any(not x for x in parts):
    raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
  try:
    return [_int_of(x, minimum, what) for x in parts]
  except argparse.ArgumentTypeError:
    raise argparse.ArgumentTypeError(f"must be {what}, got {text}") from None


def positive_int_list(text: str) -> list:
  """argparse type: comma-separated integers >= 1."""
  return int_list(text, minimum=1)


def add_output_args(p: argparse.ArgumentParser, *, what: str = "<name>"
                    ) -> argparse.ArgumentParser:
  """``--out`` and ``--force``, shared by every experiment script."""
  p.add_argument("--out", type=Path, default=None,
                 help=f"output folder (default: a new runs/{what}-<UTC "
                      f"time>/; the recorded results are written with "
                      f"--out experiments/results/{what} --force)")
  p.add_argument("--force", action="store_true",
                 help="write into a non-empty --out folder (replacing the "
                      "files there of the same names); without it such a "
                      "folder is refused")
  return p


def base_parser(description: str, *, reads_data: bool = True
                ) -> argparse.ArgumentParser:
  """``--quick``, ``--smoke``, ``--out``, ``--force`` and, for a script
  that reads data files (``reads_data``), ``--data-dir``; errors are one
  line (``Parser``)."""
  p = Parser(description=description)
  p.add_argument("--quick", action="store_true",
                 help="a short run that finishes in minutes on a 2-core CPU")
  p.add_argument("--smoke", action="store_true",
                 help="a tiny run on generated data (seconds) that writes "
                      "to --out (default: a new temporary folder)")
  if reads_data:
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                   help="folder with mnist.npz / cifar10_jpeg_bytes.npz "
                        "(default: ../shared/data beside the repository)")
  return add_output_args(p)


def check_out(args, *, clashes=None) -> None:
  """Raises ``ValueError`` when ``--out`` is a non-empty folder and
  ``--force`` is not given (so no earlier results are replaced by
  accident). ``clashes(args, folder)``, when given, lists the files of
  that folder the run would replace (for a folder that several scripts
  share); by default any entry counts."""
  out = getattr(args, "out", None)
  if out is None or getattr(args, "force", False) or not Path(out).is_dir():
    return
  found = (sorted(Path(out).iterdir()) if clashes is None
           else clashes(args, Path(out)))
  if found and clashes is None:
    raise ValueError(
        f"--out {out} is not empty ({len(found)} entries, e.g. "
        f"{found[0].name}); pass --force to write into it anyway")
  if found:
    raise ValueError(
        f"--out {out} already holds this run's files ({len(found)}, e.g. "
        f"{found[0].name}); pass --force to replace them")


def parse(p: argparse.ArgumentParser, argv, resolve=None, *, clashes=None):
  """Parses ``argv`` with ``p``, then ``resolve(args)`` (fills in the
  script's defaults and checks the values together) and ``check_out``; a
  ``ValueError`` (``ConfigError`` is one) raised there becomes one line,
  ``<script>: error: <message>``, and exit status 2, before any folder is
  made."""
  args = p.parse_args(argv)
  try:
    if resolve is not None:
      resolve(args)
    check_out(args, clashes=clashes)
  except ValueError as e:
    p.error(str(e))
  return args


SMOKE_TEXT = "SMOKE RUN (`--smoke`): generated data; the numbers mean nothing."
FULL_TEXT = "Full-length run"


def _shown(v) -> str:
  if isinstance(v, bool):
    return "on" if v else "off"
  if isinstance(v, (list, tuple)):
    return ",".join(_shown(x) for x in v)
  if isinstance(v, float):
    return f"{v:g}"
  return str(v)


def run_length(used, settings, options: dict, *, has_full: bool = False,
               smoke: bool = False, quick: bool = False) -> str:
  """The sentence that says how long a run was against the script's own
  settings: ``"Full-length run."``, ``"Default-length run, shorter than
  `--full`: ..."``, or ``"SHORTENED RUN: --updates 500 (full 30000),
  ..."``, naming every option of ``options`` whose value differs from the
  full run's (with the default's where that differs too).

  Args:
    used: the run's settings (an object with the attributes of
      ``options``' values, after the script filled in its defaults).
    settings: ``settings(argv)`` gives the same object for a run with only
      ``argv`` (``[]``: the default; ``["--full"]``: the full length).
    options: ``{"--option": attribute}`` of the settings that set the
      run's length and scope.
    has_full: the script has ``--full`` (else its default is full length).
    smoke, quick: the run's ``--smoke`` / ``--quick``.
  """
  if smoke:
    return SMOKE_TEXT
  default = settings([])
  full = settings(["--full"]) if has_full else default
  value = {o: getattr(used, a) for o, a in options.items()}
  off = [o for o, a in options.items() if value[o] != getattr(full, a)]
  if not off:
    return FULL_TEXT + (" (`--full`)." if has_full else ".")

  def reference(o):
    d, f = getattr(default, options[o]), getattr(full, options[o])
    if not has_full:
      return f"full {_shown(f)}"
    if d == f:
      return f"default and full {_shown(f)}"
    return f"default {_shown(d)}, full {_shown(f)}"
  if has_full and all(value[o] == getattr(default, a)
                      for o, a in options.items()):
    return ("Default-length run, shorter than `--full`: " + ", ".join(
        f"{o} {_shown(value[o])} (full {_shown(getattr(full, options[o]))})"
        for o in off) + ".")
  return (f"SHORTENED RUN{' (`--quick`)' if quick else ''}: " + ", ".join(
      f"{o} {_shown(value[o])} ({reference(o)})" for o in off) + ".")
