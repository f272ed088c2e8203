"""The ``fedasync-jax`` command line.

Example:
  $ fedasync-jax demo                 # FedAsync, FedBuff, FedAvg demo
  $ fedasync-jax config > my.yaml     # every field, its default and range
  $ fedasync-jax run --config my.yaml --set rule.alpha=0.9 --out runs/a
  $ fedasync-jax run --resume runs/a  # continue an interrupted run
  $ fedasync-jax sweep --grid rule.alpha=0.3,0.9 --seeds 0,1 --out runs/s
  $ fedasync-jax sweep --resume runs/s  # continue an interrupted sweep

Ctrl-C (or SIGTERM) stops a run or sweep at the next chunk after saving
its checkpoint and outputs so far, with exit status 130. Before training
starts (parsing, loading data) it stops at once with one line and status
130, writing nothing.

Compiled programs are kept on disk between runs (``compile_cache``);
``--compile-cache off`` before the command turns that off.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from fedasync_jax.sim import xla_cpu
from fedasync_jax.run import cli_args, folders, interrupts
from fedasync_jax.sim import compile_cache


# The demo's arguments as run_demo names them, and as its options.
_DEMO_OPTIONS = {"num_updates": "--updates", "num_clients": "--clients",
                 "client_lr": "--client-lr", "concurrency": "--concurrency",
                 "seed": "--seed"}


def _demo(args) -> int:
  from fedasync_jax.run import demo
  try:
    with folders.output_folder(_folder(args, "out"), "demo") as out:
      demo.run_demo(out, num_updates=args.updates,
                    concurrency=args.concurrency, num_clients=args.clients,
                    seed=args.seed, client_lr=args.client_lr,
                    force=args.force)
  except ValueError as e:  # name the options the user gave
    text = str(e)
    name = text.split(" ", 1)[0]
    raise ValueError(_DEMO_OPTIONS[name] + text[len(name):]
                     if name in _DEMO_OPTIONS else text) from None
  return 0


def _interrupted(e, command: str, out) -> int:
  """The message and exit code (130, as for Ctrl-C) of a stopped run."""
  print(f"\n{e}; continue with: fedasync-jax {command} --resume {out}",
        file=sys.stderr)
  return 130


def _folder(args, name: str) -> Optional[Path]:
  """``args.<name>`` (``--out`` or ``--resume``) as a ``Path``, refusing an
  empty one (``Path("")`` would be the current folder)."""
  text = getattr(args, name)
  if text is None:
    return None
  if not str(text).strip():
    raise ValueError(f"--{name} must name a folder, got {str(text)!r}")
  return Path(text)


def _check_folder_args(args, command: str, extra: str) -> None:
  """Refuses ``--force`` with ``--resume`` and the options a resume
  ignores."""
  if args.resume is None:
    return
  if args.force:
    raise ValueError("--force starts a new " + command + "; --resume "
                     "continues one: pass one of them")
  if args.out is not None:
    raise ValueError(f"--resume continues the {command} in its own folder "
                     f"({args.resume}) and writes nowhere else; do not pass "
                     f"--out with it")
  if extra:
    raise ValueError(extra)


def _in_folder(args, command: str, call):
  """``call(out)`` in the folder of ``--resume``, ``--out`` or a new
  default one (``folders.output_folder``): ``(result, out, None)``, or
  ``(None, out, 130)`` when a signal stopped it."""
  from fedasync_jax.run import experiment
  with folders.output_folder(args.resume or args.out, command) as out:
    if args.resume is None:
      print(f"output folder: {out}", file=sys.stderr)
    try:
      return call(out), out, None
    except experiment.Interrupted as e:
      return None, out, _interrupted(e, command, out)


def _base_config(args, grid=None):
  """``--config`` (or the defaults) with the ``--set`` overrides. A
  sweep's ``grid`` entry of a mapping field that neither sets (such as
  ``rule.staleness_params.n``, which mishchenko's staleness requires)
  takes its first grid value there, so the grid alone can give it; every
  other field keeps its base value (each member sets its own anyway)."""
  from fedasync_jax.run import config as config_lib
  from fedasync_jax.run import grid as grid_lib
  cfg = (config_lib.load(args.config) if args.config is not None
         else config_lib.Config())
  d = config_lib.to_dict(cfg)
  given = {item.split("=", 1)[0].strip() for item in args.set or ()}

  def unset_entry(key: str) -> bool:
    return key.count(".") >= 2 and grid_lib.get_field(d, key) is None
  first = [f"{k}={vals[0]}" for k, vals in (grid or {}).items()
           if vals and k not in given and unset_entry(k)]
  return config_lib.apply_overrides(cfg, [*first, *(args.set or ())])


def _run(args) -> int:
  from fedasync_jax.run import experiment
  args.out, args.resume = _folder(args, "out"), _folder(args, "resume")
  _check_folder_args(args, "run", (
      "--resume continues a run with its saved config; do not pass "
      "--config or --set with it") if args.config is not None or args.set
      else "")
  if args.resume is not None:
    print(f"resuming {args.resume}", file=sys.stderr)
    call = functools.partial(experiment.train_and_evaluate, None,
                             resume=True)
  else:
    cfg = experiment.ready(_base_config(args))  # before the folder
    call = functools.partial(experiment.train_and_evaluate, cfg,
                             force=args.force)
  summary, out, stopped = _in_folder(args, "run", call)
  if stopped is not None:
    return stopped
  print(f"final test accuracy {summary['final_test_accuracy']:.4f}, "
        f"loss {summary['final_test_loss']:.4f}, "
        f"{summary['client_updates']} client updates, "
        f"{summary['versions']} versions, simulated time "
        f"{summary['simulated_time']:.1f} s; wrote {out}")
  return 0


def _print_sweep(rows, out) -> None:
  """The members' settings and final metrics, one line each."""
  keys = [k for k in rows[0] if k not in (
      "versions", "client_updates", "stopped_early", "folder")]
  print(" | ".join(f"{k:>20}" for k in keys))
  for r in rows:
    print(" | ".join(f"{r[k]:>20.4g}" if isinstance(r[k], float)
                     else f"{r[k]:>20}" for k in keys))
  print(f"wrote {out}: history.csv, summary.csv, sweep.csv, plots and one "
        f"folder per member ({rows[0]['folder']}/, ...)")


def _split_cpu(n: int, *, members: Optional[int] = None) -> None:
  """``--devices N``: the CPU as N devices; only before JAX starts. A new
  sweep's ``members`` must split evenly: checked first, so that it is
  refused with its own reason wherever JAX has started."""
  if n < 1 or n > 256:
    raise ValueError(f"--devices must be in [1, 256], got {n}")
  if members is not None and members % n:
    raise ValueError(f"--devices {n}: the number of members ({members}) "
                     f"must be a multiple of it")
  if n == 1:
    return
  cores = xla_cpu.usable_cores()
  if n > cores:
    print(f"fedasync-jax: warning: --devices {n} splits the CPU into more "
          f"devices than the {cores} cores this process may use, so devices "
          f"share cores and run slower; --devices {cores} gives one core "
          f"each", file=sys.stderr)
  import jax
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:
    raise ValueError("--devices: JAX has already started in this process; "
                     "run `fedasync-jax sweep --devices N` as its own "
                     "command") from None


def _sweep(args) -> int:
  from fedasync_jax.run import experiment
  from fedasync_jax.run import grid as grid_lib
  from fedasync_jax.run import sweep_run
  args.out, args.resume = _folder(args, "out"), _folder(args, "resume")
  _check_folder_args(args, "sweep", (
      "--resume continues a sweep with its saved config, grid and seeds; do "
      "not pass --config, --set, --grid or --seeds with it")
      if args.config is not None or args.set or args.grid
      or args.seeds is not None else "")
  if args.resume is not None:
    _split_cpu(args.devices)
    print(f"resuming {args.resume}", file=sys.stderr)
    call = functools.partial(experiment.sweep_and_evaluate, None, None,
                             None, resume=True)
  else:
    grid = grid_lib.parse_grid(args.grid)
    seeds = (grid_lib.parse_seeds(args.seeds) if args.seeds is not None
             else None)
    # (Before the configuration, whose checks start JAX.)
    _split_cpu(args.devices, members=math.prod(
        len(v) for v in grid.values()) * len(seeds or [0]))
    cfg = _base_config(args, grid)
    sweep_run.checked(cfg, grid, seeds)  # before the folder
    call = functools.partial(experiment.sweep_and_evaluate, cfg, grid,
                             seeds, force=args.force)
  rows, out, stopped = _in_folder(args, "sweep", call)
  if stopped is not None:
    return stopped
  _print_sweep(rows, out)
  return 0


def _config(args) -> int:
  from fedasync_jax.run import config as config_lib
  from fedasync_jax.run import notices
  # Paths absolute as a run saves them (a --set path is relative to the
  # current folder, which a saved file's folder need not be), and the
  # fields the configuration never reads warned about, as a run does.
  cfg = config_lib.absolute_paths(_base_config(args))
  notices.warn(notices.config_warnings(cfg))
  sys.stdout.write(config_lib.to_yaml(cfg))
  return 0


def build_parser() -> argparse.ArgumentParser:
  """The parser of ``fedasync-jax`` (``cli_args.build_parser``) wired to
  this module's commands."""
  return cli_args.build_parser({"demo": _demo, "run": _run, "sweep": _sweep,
                                "config": _config})


def _choose_cpu_conv(args) -> None:
  """``--cpu-conv``: set before JAX starts (a process's first command);
  when ``main`` runs again in a process where JAX has started, only an
  explicit choice is attempted (and warned about)."""
  if args.command == "config":
    return
  # `sweep --devices N` splits the CPU: 'auto' then decides per device
  # (an out-of-range N is reported by the sweep itself).
  devices = getattr(args, "devices", 1)
  devices = devices if isinstance(devices, int) and 1 <= devices <= 256 else 1
  if args.cpu_conv != "auto" or not xla_cpu.backend_started():
    xla_cpu.configure_cpu(conv=args.cpu_conv, devices=devices)


def _enable_compile_cache(args) -> None:
  choice = args.compile_cache or os.environ.get(compile_cache.ENV_VAR, "")
  if choice.strip().lower() == "off" or args.command == "config":
    return
  try:
    compile_cache.enable(choice or None)
  except OSError as e:  # a read-only home must not stop a run
    print(f"fedasync-jax: warning: compilation cache off ({e})",
          file=sys.stderr)


class _SurvivesClosedPipe:
  """A text stream that forwards to ``stream`` until its reader goes away
  (a pipe closed early, as by ``fedasync-jax run ... | head``), and then
  drops what is written, so that the run goes on and writes its folder
  (a ``BrokenPipeError`` stopped it, and a run in a new folder left
  nothing). The file descriptor then points at ``/dev/null``, so that
  Python's own flush at exit fails neither."""

  def __init__(self, stream):
    self._stream, self._gone = stream, False

  def _guard(self, call, *args):
    if self._gone:
      return None
    try:
      return call(*args)
    except BrokenPipeError:
      self._gone = True
      with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)
      return None

  def write(self, text):
    self._guard(self._stream.write, text)
    return len(text)

  def flush(self):
    self._guard(self._stream.flush)

  def __getattr__(self, name):
    return getattr(self._stream, name)


@contextlib.contextmanager
def _output_survives_closed_pipes():
  """``sys.stdout`` and ``sys.stderr`` as ``_SurvivesClosedPipe`` while
  inside; the streams come back after."""
  out, err = sys.stdout, sys.stderr
  sys.stdout, sys.stderr = _SurvivesClosedPipe(out), _SurvivesClosedPipe(err)
  try:
    yield
  finally:
    sys.stdout, sys.stderr = out, err


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs ``fedasync-jax`` with ``argv`` (default: the process's); returns
  the exit status: 0, 2 for bad input, 1 for a disk error, 130 when
  stopped by Ctrl-C or SIGTERM (each with one line on stderr).

  Example:
    >>> main(["config", "--set", "run.seed=-1"])  # error on stderr
    2
  """
  with _output_survives_closed_pipes():
    return _main(argv)


def _main(argv: Optional[Sequence[str]]) -> int:
  command = None
  try:
    with interrupts.interrupt_on_signals():
      args = build_parser().parse_args(argv)
      command = args.command
      _choose_cpu_conv(args)
      _enable_compile_cache(args)
      return args.func(args)
  except (ValueError, FileNotFoundError) as e:
    print(f"fedasync-jax: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # a disk or permission error: one line, no traceback
    print(f"fedasync-jax: error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt as e:  # before a run could catch the signal
    print(f"\n{interrupts.stopped_line(e, command)}", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
