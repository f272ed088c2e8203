"""The command line every experiment script shares (used through
``common``): a parser whose errors are one line, argparse types for
positive integers, lists of distinct integers (seeds), numbers in a range
(``number``, ``number_list``: NaN and infinities refused) and existing
files, ``--out`` / ``--force`` (a non-empty output folder is refused
without ``--force``, a file always), the wrapper ``parse`` that refuses
options that cannot go together (``EXCLUSIVE``), turns a ``ValueError``
(or ``ConfigError``) raised while checking the arguments into one line
naming the option the user typed (a configuration field such as
``client.lr`` becomes ``--lr``: ``FIELD_FLAGS``) and exit status 2, all
before anything is written, and ``run_length``, the sentence that says
how a run's length compares with the script's default and full settings.
"""

from __future__ import annotations

import argparse
import math
import re
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


SEED_MAX = 2**31 - 1
"""The largest seed (``run.seed``'s range)."""


def int_in(low: int, high: int):
  """An argparse type: an integer in ``[low, high]``; the message gives
  the interval.

  Example:
    >>> int_in(0, 9)("3"), int_in(0, 9).__name__
    (3, 'an integer in [0, 9]')
  """
  what = f"an integer in [{low}, {high}]"

  def parse_int(text):
    value = _int_of(text, low, what)
    if value > high:
      raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value
  parse_int.__name__ = what
  return parse_int


def non_negative_int(text: str) -> int:
  """argparse type: an integer in [0, ``SEED_MAX``] (a seed).

  Example:
    >>> non_negative_int("0")
    0
  """
  return int_in(0, SEED_MAX)(text)


def int_list(text: str, *, minimum: int = 0, distinct: bool = True) -> list:
  """argparse type: distinct comma-separated integers in [``minimum``,
  ``SEED_MAX``] (at least one), e.g. seeds; a repeated value is refused
  (it would run the same configuration twice and count it twice) unless
  ``distinct`` is false.

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
    values = [_int_of(x, minimum, what) for x in parts]
  except argparse.ArgumentTypeError:
    raise argparse.ArgumentTypeError(f"must be {what}, got {text}") from None
  if max(values) > SEED_MAX:
    raise argparse.ArgumentTypeError(
        f"must be {what} up to {SEED_MAX}, got {text}")
  if distinct and len(set(values)) < len(values):
    raise argparse.ArgumentTypeError(
        f"must not repeat a value, got {text}")
  return values


def positive_int_list(text: str) -> list:
  """argparse type: distinct comma-separated integers >= 1."""
  return int_list(text, minimum=1)


def positive_ints(text: str) -> list:
  """argparse type: comma-separated integers >= 1, repeats allowed (one
  value per entry of another list, e.g. a budget per concurrency)."""
  return int_list(text, minimum=1, distinct=False)


def name_list(text: str) -> list:
  """argparse type: distinct comma-separated names (which names are known
  is checked later, by the configuration or the script).

  Example:
    >>> name_list("fedasync,fedavg")
    ['fedasync', 'fedavg']
  """
  parts = [x.strip() for x in str(text).split(",")]
  if any(not x for x in parts):
    raise argparse.ArgumentTypeError(
        f"must be comma-separated names, got {text!r}")
  if len(set(parts)) < len(parts):
    raise argparse.ArgumentTypeError(f"must not repeat a name, got {text}")
  return parts


def _interval(low, high, low_open, high_open) -> str:
  def end(v, default):
    return default if v is None else f"{v:g}"
  return (f"{'(' if low_open or low is None else '['}{end(low, '-inf')}, "
          f"{end(high, 'inf')}{')' if high_open or high is None else ']'}")


def _number_of(text: str, low, high, low_open, high_open):
  """The finite float ``text`` in the interval, else ``None``."""
  try:
    v = float(text)
  except ValueError:
    return None
  if not math.isfinite(v):
    return None
  if low is not None and (v < low or (low_open and v == low)):
    return None
  if high is not None and (v > high or (high_open and v == high)):
    return None
  return v


def number(low=None, high=None, *, low_open: bool = False,
           high_open: bool = False):
  """An argparse type: a finite number in the interval from ``low`` to
  ``high`` (open at an end when ``low_open`` / ``high_open``); NaN and
  infinities are refused, and the message gives the interval.

  Example:
    >>> number(0, 1, high_open=True)("0.5")
    0.5
    >>> number(0, low_open=True).__name__
    'a number in (0, inf)'
  """
  what = f"a number in {_interval(low, high, low_open, high_open)}"

  def parse_number(text):
    v = _number_of(text, low, high, low_open, high_open)
    if v is None:
      raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return v
  parse_number.__name__ = what
  return parse_number


def number_list(low=None, high=None, *, low_open: bool = False,
                high_open: bool = False):
  """An argparse type: distinct comma-separated numbers, each as
  ``number`` takes it (at least one).

  Example:
    >>> number_list(0, 1, high_open=True)("0,0.5,0.9")
    [0.0, 0.5, 0.9]
  """
  what = (f"comma-separated numbers in "
          f"{_interval(low, high, low_open, high_open)}")

  def parse_numbers(text):
    parts = [x.strip() for x in str(text).split(",")]
    values = [_number_of(x, low, high, low_open, high_open) for x in parts]
    if not parts or any(v is None for v in values):
      raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    if len(set(values)) < len(values):
      raise argparse.ArgumentTypeError(
          f"must not repeat a value, got {text}")
    return values
  parse_numbers.__name__ = what
  return parse_numbers


def existing_file(text: str) -> Path:
  """argparse type: the path of an existing, readable file (checked when
  the arguments are parsed, not when the file is first needed)."""
  path = Path(text)
  if not path.is_file():
    raise argparse.ArgumentTypeError(
        f"must be an existing file, got {text}"
        + (" (a folder)" if path.is_dir() else " (not found)"))
  try:
    with open(path, "rb"):
      pass
  except OSError as e:
    raise argparse.ArgumentTypeError(
        f"must be a readable file, got {text} ({e.strerror})") from None
  return path


def add_output_args(p: argparse.ArgumentParser, *, what: str = "<name>",
                    refused: str = "such a folder is refused"
                    ) -> argparse.ArgumentParser:
  """``--out`` and ``--force``, shared by every experiment script;
  ``refused`` says which folders need ``--force``."""
  p.add_argument("--out", type=Path, default=None,
                 help=f"output folder (default: a new runs/{what}-<UTC "
                      f"time>/; the recorded results are written with "
                      f"--out experiments/results/{what} --force)")
  p.add_argument("--force", action="store_true",
                 help=f"write into a non-empty --out folder (replacing "
                      f"the files there of the same names); without it "
                      f"{refused}")
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
  if out is None:
    return
  for place in (Path(out), *Path(out).parents):
    if place.exists() and not place.is_dir():
      raise ValueError(
          f"--out {out} must name a folder, but "
          f"{'it' if place == Path(out) else place} is a file")
  if getattr(args, "force", False) or not Path(out).is_dir():
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


EXCLUSIVE = (("--smoke", "--quick"), ("--smoke", "--full"),
             ("--quick", "--full"), ("--epochs", "--steps"))
"""Pairs of options that cannot go together (one would silently win over
the other): ``parse`` refuses a command line that gives both."""

FIELD_FLAGS = {
    "client.lr": ("--lr",), "client.delay_beta": ("--delay-beta",),
    "client.prox_rho": ("--prox-rho",), "client.steps": ("--steps",),
    "client.epochs": ("--epochs",), "client.batch_size": ("--batch",),
    "rule.afl_lr": ("--afl-lr",), "rule.name": ("--rules",),
    "rule.server_lr": ("--server-lrs",),
    "rule.server_momentum": ("--momenta",),
    "run.seed": ("--seed", "--seeds", "--tune-seed"),
    "run.concurrency": ("--concurrency",),
    "run.num_updates": ("--updates",), "run.eval_every": ("--eval-every",),
    "delays.speeds": ("--speeds",),
    "delays.trace_path": ("--device-trace",),
    "delays.availability_trace": ("--behaviour-trace",),
}
"""The option that sets each configuration field, where a script has it
(the first of the tuple that the parser knows): ``parse`` names the
option, not the field, in an error (``client.delay_beta must be ...``
becomes ``--delay-beta must be ...``)."""


def _given(p: argparse.ArgumentParser, args, option: str) -> bool:
  action = p._option_string_actions.get(option)  # noqa: SLF001
  return (action is not None and
          getattr(args, action.dest, None) != p.get_default(action.dest))


def _flags_for_fields(p: argparse.ArgumentParser, message: str) -> str:
  """``message`` with each configuration field of ``FIELD_FLAGS`` that
  this parser has an option for replaced by that option."""
  for field in sorted(FIELD_FLAGS, key=len, reverse=True):
    flag = next((f for f in FIELD_FLAGS[field]
                 if f in p._option_string_actions), None)  # noqa: SLF001
    if flag is not None:
      message = re.sub(rf"(?<![\w.]){re.escape(field)}(?!\w)", flag,
                       message)
  return message


def parse(p: argparse.ArgumentParser, argv, resolve=None, *, clashes=None):
  """Parses ``argv`` with ``p``; refuses options that cannot go together
  (``EXCLUSIVE``); then ``resolve(args)`` (fills in the script's defaults
  and checks the values together) and ``check_out``. A ``ValueError``
  (``ConfigError`` is one) raised there becomes one line, ``<script>:
  error: <message>`` naming the option the user typed (``FIELD_FLAGS``),
  and exit status 2, before any folder is made."""
  args = p.parse_args(argv)
  for a, b in EXCLUSIVE:
    if _given(p, args, a) and _given(p, args, b):
      p.error(f"{a} and {b} cannot be given together (choose one)")
  try:
    if resolve is not None:
      resolve(args)
    check_out(args, clashes=clashes)
  except ValueError as e:
    p.error(_flags_for_fields(p, str(e)))
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
