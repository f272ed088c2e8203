"""Shared pieces of the theory-lab experiments (experiments/theory_*.py).

Results go to ``--out``: by default a new, untracked
``runs/theory-<UTC time>/`` (``--smoke``: a new temporary folder), never
the recorded results, which are written with ``--out
experiments/results/theory --force`` (several scripts share that folder,
so a folder is refused without ``--force`` only when it already holds this
run's own files); every written file records the exact command that
produced it: the markdown and JSON inside, each CSV in a sidecar
``<name>.csv.provenance.txt`` (the CSV itself is plain, header first).
``--seed S`` moves every replicate draw of a run into its own block of
seeds (0, the default, is the recorded results' draws); the file names do
not say the seed, the recorded command and a non-zero seed's markdown
line do.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from command_line import SEED_MAX as _LIBRARY_SEED_MAX

RESULTS = Path(__file__).resolve().parent / "results" / "theory"

SEED_GAP = 1_000_000
"""The seeds of one ``--seed`` value: each script derives its draws' seeds
as ``seed_base`` plus less than this, so two values share no draw."""
SEED_MAX = (_LIBRARY_SEED_MAX + 1) // SEED_GAP - 1
"""The largest ``--seed`` (2146): its draws' seeds stay in the library's
range, ``[0, 2**31 - 1]``."""


def seed_base(args) -> int:
  """What a run adds to each of its literal seeds: ``--seed`` blocks of
  ``SEED_GAP`` (0 for ``--seed 0``, the recorded draws).

  Example:
    >>> from types import SimpleNamespace
    >>> seed_base(SimpleNamespace(seed=0)), seed_base(SimpleNamespace(seed=2))
    (0, 2000000)
  """
  return args.seed * SEED_GAP


def command() -> str:
  """The exact command line that is running (from the repository root)."""
  script = os.path.relpath(os.path.abspath(sys.argv[0]),
                           Path(__file__).resolve().parent.parent)
  args = " ".join(shlex.quote(a) for a in sys.argv[1:])
  return f"cd /work/main && .venv/bin/python {script} {args}".rstrip()


def parser(doc: str) -> common.Parser:
  """The command line every theory experiment shares (``--out`` and
  ``--force`` as every experiment's: ``common.add_output_args``)."""
  ap = common.Parser(description=doc.split("\n")[0])
  ap.add_argument("--quick", action="store_true", help="a smaller run")
  ap.add_argument("--smoke", action="store_true",
                  help="a tiny run (seconds), written to --out (default: a "
                       "new temporary folder)")
  # One integer moves every replicate draw, so a verdict can be rerun on
  # other draws; 0 keeps the recorded results' draws bit for bit.
  ap.add_argument("--seed", type=common.int_in(0, SEED_MAX), default=0,
                  metavar="S",
                  help=f"which random draws the run makes (schedules, "
                       f"training keys, device speeds, Monte-Carlo "
                       f"samples, bootstraps and theory_sampling's client "
                       f"population; each script's docstring says which; "
                       f"the training experiments' problems stay fixed): "
                       f"an integer in [0, {SEED_MAX}], each value's draws "
                       f"disjoint from every other's; the recorded results "
                       f"use 0")
  return common.add_output_args(
      ap, what="theory", refused="a folder that holds this run's files "
      "is refused (the theory scripts share one folder: other files there "
      "are kept)")


def parse_args(doc: str, base: str, argv=None):
  """The parsed command line of theory script ``base``; an ``--out``
  folder that already holds this run's files (``run_name``) is refused
  without ``--force`` (one line, exit status 2), before anything is
  written."""
  return common.parse(parser(doc), argv, clashes=lambda args, folder: sorted(
      folder.glob(run_name(base, args) + ".*")))


def out_dir(args=None) -> Path:
  """The folder a run writes into, made before any computing (so that a
  folder that cannot be made stops the run at once): a new partial sibling
  (``common.partial_dir``) of ``--out``, of a temporary folder for
  ``--smoke``, else of a new ``runs/theory-<UTC time>`` (never
  ``RESULTS``, the recorded results, unless ``--out`` names it);
  ``finish`` moves this run's files into place, leaving the other
  scripts' files there."""
  if args is not None and args.out is not None:
    path = Path(args.out)
  elif args is not None and args.smoke:
    path = Path(tempfile.mkdtemp(prefix="smoke_theory_"))
  else:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS.parents[2] / "runs" / f"theory-{stamp}"
    i = 1
    while path.exists():
      path, i = path.with_name(f"theory-{stamp}-{i}"), i + 1
  return common.partial_dir(path)


def interruptible(out: Path):
  """Inside, Ctrl-C or SIGTERM stops the run with one line on stderr
  saying so and that the folder ``out`` was to replace is unchanged, and
  exit status 130 (``common.interruptible``)."""
  return common.interruptible(out)


def finish(out: Path) -> Path:
  """Moves the run's partial folder into place (``common.finish``);
  returns the final folder."""
  return common.finish(out)


SMOKE_TEXT = ("SMOKE RUN (`--smoke`): the full run's problem at the smallest "
              "sizes, to check that the script runs; its numbers and "
              "verdicts mean nothing.")
"""A theory smoke run's length line (``common.SMOKE_TEXT`` says its data
are generated; a theory run's problem is the full run's)."""


def length_line(args, sizes) -> str:
  """The run's length line, first in its markdown (as every summary's:
  ``common.run_length``): ``SMOKE RUN ...``, ``Full-length run.`` or
  ``SHORTENED RUN (`--quick`): <size> <value> (full <value>), ...`` naming
  every size that differs from the full run's; ``sizes(args)`` gives the
  run's sizes (a dict), the full run's for an ``args`` without
  ``--quick`` and ``--smoke``."""
  from types import SimpleNamespace
  if args.smoke:
    return SMOKE_TEXT
  used = sizes(args)
  full = sizes(SimpleNamespace(**{**vars(args), "quick": False,
                                  "smoke": False}))

  def shown(v):
    if isinstance(v, (list, tuple, np.ndarray)):
      return ",".join(f"{x:g}" for x in np.asarray(v, float).tolist())
    return f"{v:,}" if isinstance(v, int) else str(v)
  off = [k for k in used if shown(used[k]) != shown(full[k])]
  if not off:
    return common.FULL_TEXT + "."
  return ("SHORTENED RUN" + (" (`--quick`)" if args.quick else "") + ": "
          + ", ".join(f"{k} {shown(used[k])} (full {shown(full[k])})"
                      for k in off) + ".")


def run_name(base: str, args) -> str:
  """``base`` with ``_smoke`` / ``_quick`` for those runs."""
  return base + ("_smoke" if args.smoke else "_quick" if args.quick else "")


def provenance_path(path: Path) -> Path:
  """The sidecar that names the command which wrote the CSV ``path``."""
  return Path(path).with_name(Path(path).name + ".provenance.txt")


def write_csv(path: Path, rows: list[dict]) -> None:
  """A plain CSV (header first, readable by ``csv.DictReader`` and
  ``np.genfromtxt(names=True)``) and its ``provenance_path`` sidecar."""
  text = io.StringIO(newline="")
  w = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
  w.writeheader()
  w.writerows(rows)
  common.write_text(path, text.getvalue())
  common.write_text(provenance_path(path), f"produced by: {command()}\n")


def _plain(x):
  if isinstance(x, dict):
    return {str(k): _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  if isinstance(x, np.ndarray):
    return _plain(x.tolist())
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, float) and not np.isfinite(x):
    return str(x)
  return x


def write_json(path: Path, obj: dict) -> None:
  obj = {"command": command(), **obj}
  common.write_text(path, json.dumps(_plain(obj), indent=1))


def seed_line(seed: int) -> str:
  """The markdown's seed line: empty for ``--seed 0`` (the recorded
  results' draws), else the seed the run's draws start at.

  Example:
    >>> seed_line(0), seed_line(7)[:26]
    ('', 'SEED 7 (`--seed 7`): other')
  """
  if not seed:
    return ""
  return (f"SEED {seed} (`--seed {seed}`): other random draws than the "
          f"recorded results' (`--seed 0`).")


def write_md(path: Path, title: str, body: str, length: str = "",
             seed: int = 0) -> None:
  """The run's markdown, written atomically; ``length`` (the run's length
  line, ``length_line``) comes first, after the title, then the seed line
  of a run with a non-zero ``seed`` (``seed_line``)."""
  head = "".join(f"{x}\n\n" for x in (length, seed_line(seed)) if x)
  common.write_text(path, f"# {title}\n\n{head}Produced by:\n\n"
                          f"    {command()}\n\n{body}\n")


def main(doc: str, base: str, *, title: str, measure, summary, plot,
         markdown, length) -> str:
  """An experiment's whole command: parse the options, check the output
  folder before any work, ``measure(args)`` (a result with ``records``),
  then write ``<name>.csv``, ``.json`` (``summary(result)``), ``.png``
  (``plot(result, path)``) and ``.md`` (``markdown(result, name)`` under
  ``title``, the length line ``length(args)`` and, for a non-zero
  ``--seed``, the seed line) into a partial folder
  moved into place at the end; Ctrl-C leaves the target unchanged.
  Prints and returns the markdown's body."""
  args = parse_args(doc, base)
  out = out_dir(args)  # before the work: a bad folder stops it at once
  with interruptible(out):
    result = measure(args)
    name = run_name(base, args)
    write_csv(out / f"{name}.csv", result.records)
    write_json(out / f"{name}.json", summary(result))
    plot(result, out / f"{name}.png")
    body = markdown(result, name)
    write_md(out / f"{name}.md", title, body, length(args), args.seed)
    finish(out)
  print(body)
  return body


def pyplot():
  """matplotlib.pyplot with the Agg backend, or None if not installed."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
  except ImportError:  # plotting is an optional extra
    return None


class Timer:
  def __init__(self):
    self.t0 = time.perf_counter()

  def __call__(self) -> float:
    return time.perf_counter() - self.t0


def fmt(x, digits=4) -> str:
  return f"{x:.{digits}g}"


def md_table(header: list[str], rows: list[list]) -> str:
  out = ["| " + " | ".join(header) + " |",
         "|" + "|".join("---" for _ in header) + "|"]
  for r in rows:
    out.append("| " + " | ".join(str(v) for v in r) + " |")
  return "\n".join(out)
