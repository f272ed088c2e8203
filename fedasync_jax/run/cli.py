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
import functools
import math
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from fedasync_jax.sim import xla_cpu
from fedasync_jax.run import folders, interrupts
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


RUN_EPILOG = """\
configuration:
  A JSON or YAML file with any of the sections data, model, client, rule,
  delays, run; fields left out keep their defaults. To start one:

    fedasync-jax config > my.yaml   # every field: default, meaning, range

  A smaller example (real MNIST, 100 Dirichlet clients, FedAsync):

    data:   {{name: mnist, path: ../shared/data/mnist.npz, num_clients: 100,
             partition: dirichlet, alpha: 0.5}}
    model:  {{name: mlp}}
    client: {{optimizer: sgd, lr: 0.05, batch_size: 10, epochs: 1}}
    rule:   {{name: fedasync, alpha: 0.6, staleness: polynomial,
             staleness_a: 0.5}}
    delays: {{speeds: pareto, pareto_shape: 1.5, jitter: lognormal,
             jitter_sigma: 0.3}}
    run:    {{concurrency: 20, num_updates: 2000, eval_every: 100, seed: 0}}

  Every field can be overridden with --set SECTION.FIELD=VALUE, repeated:
    --set rule.alpha=0.9 --set run.seed=3 --set client.steps=null
  (booleans: true/false; an optional field is unset with null). Parameters
  without a field of their own go in a mapping, one entry at a time:
    --set rule.staleness=koloskova --set rule.staleness_params.tau_c=4
  Without --config the defaults run FedAsync on Synthetic(1,1).

{families}
  Relative paths in a file (data.path, data.data_dir, delays.trace_path,
  delays.availability_trace) are relative to the file's folder; with --set
  they are relative to the current folder.

outputs (in --out):
  config.json, history.csv (version, simulated_time, client_updates,
  client_train_loss, test_loss, test_accuracy, ...), metrics.jsonl (the
  same as JSON lines, written as the run goes), arrivals.csv,
  participation.csv, summary.json (with "warnings"), final_params.msgpack,
  and PNG plots (against client updates and simulated time) when
  matplotlib is installed. With --set run.tensorboard=true also
  tensorboard/: the metrics as TensorBoard events, step = client updates,
  written as the run goes (tensorboard --logdir OUT/tensorboard).
  Ctrl-C (or SIGTERM) saves checkpoint.msgpack; --resume DIR continues
  (refused, naming what changed, if config.json was edited since or the
  checkpoint is damaged). --out must be new or empty (or --force); a
  folder is locked while a run writes into it.
"""


def _families_text() -> str:
  """The rules and staleness functions with their one-line docs and where
  their parameters are set, read from the registries."""
  from fedasync_jax.run import schema
  out = []
  for field, title in (("name", "rules"), ("staleness",
                                           "staleness functions")):
    out.append(f"{title} (rule.{field}):")
    for m in schema.family("rule", field).members():
      where = []
      for p in m.params:
        b = schema.bound_field("rule", field, m.name, p.name)
        ex = schema.extra_field("rule", field)
        where.append(f"rule.{b.name}" if b else f"rule.{ex.name}.{p.name}")
      sets = f" [{', '.join(where)}]" if where else ""
      out.append(f"  {m.name:<11} {m.doc}{sets}")
    out.append("")
  return "\n".join(out)


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
  if extra:
    raise ValueError(extra)


def _run(args) -> int:
  from fedasync_jax.run import config as config_lib
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
    cfg = (config_lib.load(args.config) if args.config is not None
           else config_lib.Config())
    cfg = config_lib.apply_overrides(cfg, args.set)
    call = functools.partial(experiment.train_and_evaluate, cfg,
                             force=args.force)
  with folders.output_folder(args.resume or args.out, "run") as out:
    if args.resume is None:
      print(f"output folder: {out}", file=sys.stderr)
    try:
      summary = call(out)
    except experiment.Interrupted as e:
      return _interrupted(e, "run", out)
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


def _split_cpu(n: int) -> None:
  """``--devices N``: the CPU as N devices; only before JAX starts."""
  if n < 1 or n > 256:
    raise ValueError(f"--devices must be in [1, 256], got {n}")
  if n == 1:
    return
  import jax
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:
    raise ValueError("--devices: JAX has already started in this process; "
                     "run `fedasync-jax sweep --devices N` as its own "
                     "command") from None


def _sweep(args) -> int:
  from fedasync_jax.run import config as config_lib
  from fedasync_jax.run import experiment
  from fedasync_jax.run import grid as grid_lib
  _split_cpu(args.devices)
  args.out, args.resume = _folder(args, "out"), _folder(args, "resume")
  _check_folder_args(args, "sweep", (
      "--resume continues a sweep with its saved config, grid and seeds; do "
      "not pass --config, --set, --grid or --seeds with it")
      if args.config is not None or args.set or args.grid
      or args.seeds is not None else "")
  if args.resume is not None:
    print(f"resuming {args.resume}", file=sys.stderr)
    call = functools.partial(experiment.sweep_and_evaluate, None, None,
                             None, resume=True)
  else:
    cfg = (config_lib.load(args.config) if args.config is not None
           else config_lib.Config())
    cfg = config_lib.apply_overrides(cfg, args.set)
    grid = grid_lib.parse_grid(args.grid)
    seeds = (grid_lib.parse_seeds(args.seeds) if args.seeds is not None
             else None)
    members = math.prod(len(v) for v in grid.values()) * len(seeds or [0])
    if members % args.devices:
      raise ValueError(f"--devices {args.devices}: the number of members "
                       f"({members}) must be a multiple of it")
    call = functools.partial(experiment.sweep_and_evaluate, cfg, grid,
                             seeds, force=args.force)
  with folders.output_folder(args.resume or args.out, "sweep") as out:
    if args.resume is None:
      print(f"output folder: {out}", file=sys.stderr)
    try:
      rows = call(out)
    except experiment.Interrupted as e:
      return _interrupted(e, "sweep", out)
  _print_sweep(rows, out)
  return 0


def _config(args) -> int:
  from fedasync_jax.run import config as config_lib
  cfg = (config_lib.load(args.config) if args.config is not None
         else config_lib.Config())
  cfg = config_lib.apply_overrides(cfg, args.set)
  sys.stdout.write(config_lib.to_yaml(cfg))
  return 0


SWEEP_EPILOG = """\
examples:
  # 3 x 3 staleness settings x 2 seeds = 18 members, one compiled program
  fedasync-jax sweep --grid rule.alpha=0.3,0.6,0.9 \\
      --grid rule.staleness_a=0,0.5,1 --seeds 0,1 --set run.num_updates=1000

  # a base configuration file plus a learning-rate grid
  fedasync-jax sweep --config my.yaml --grid client.lr=0.01,0.03,0.1 \\
      --out runs/lr

  # continue it after Ctrl-C
  fedasync-jax sweep --resume runs/lr

outputs (in --out):
  history.csv (long format: one row per evaluation of every member: member,
  grid values, seed, version, simulated time, client updates, client
  training loss, test loss and accuracy), summary.csv (per grid point: seeds,
  mean and 95% interval over seeds of the final test accuracy and loss,
  clipped to where they lie: accuracy to [0, 1], loss to 0 and above),
  sweep.csv (one row per member: settings, final metrics, folder),
  config.json (base config, grid, seeds), summary.json (wall time),
  test_accuracy.png and test_loss.png (mean and band over seeds against
  client updates and simulated time, the band clipped as in summary.csv;
  with matplotlib), and one folder per member named by its values
  (alpha=0.3,seed=1/; m<i> links to it) with history.csv, arrivals.csv,
  participation.csv, summary.json and final_params.msgpack. Every member
  equals its own `fedasync-jax run` with the same values (--set ...). Grid
  fields that the base configuration never reads are warned about (on
  stderr and in summary.json), as --set fields are. With --set
  run.tensorboard=true also tensorboard/<member folder>/: each member's
  metrics as TensorBoard events (written when the sweep ends or is
  stopped).

  Ctrl-C (or SIGTERM) stops at the next chunk (run.chunk_steps steps shared
  out over the members on CPU) and saves checkpoint.msgpack and the outputs
  so far; --resume DIR continues and ends as an uninterrupted sweep would.
  --force into a previous sweep's folder first removes that sweep's member
  folders (the files a sweep writes there), their m<i> links and
  TensorBoard events; other files in the folder are kept.

Fields that change shapes or the schedule (data, model, rule.name,
run.concurrency, ...) cannot vary inside one program: run one sweep per
value instead.
"""


def _sweepable_text() -> str:
  from fedasync_jax.run import grid
  return ", ".join(sorted(grid.sweepable()))


def _seed_range() -> str:
  from fedasync_jax.run import schema
  return schema.interval(schema.param("run", "seed"))


def _config_args(parser, config_help: str, set_help: str) -> None:
  parser.add_argument("--config", type=Path, default=None, help=config_help)
  parser.add_argument("--set", action="append", default=[],
                      metavar="SECTION.FIELD=VALUE", help=set_help)


def build_parser() -> argparse.ArgumentParser:
  """The parser of ``fedasync-jax``: ``demo``, ``run``, ``sweep``,
  ``config``; the help texts list the registered rules, staleness
  functions and sweepable fields."""
  p = argparse.ArgumentParser(
      prog="fedasync-jax",
      description="A JAX-accelerated, vectorized simulator of asynchronous "
                  "federated learning.")
  p.add_argument(
      "--compile-cache", metavar="DIR|off", default=None,
      help="keep compiled programs on disk so that a rerun, a resumed run "
           "or the next seed skips compilation (default: "
           f"${compile_cache.ENV_VAR} or ~/.cache/fedasync_jax/xla); 'off' "
           "turns it off")
  p.add_argument(
      "--cpu-conv", choices=xla_cpu.CPU_CONV_CHOICES, default="auto",
      help="XLA:CPU's convolution path: 'eigen' spreads each convolution "
           "over every core, 'ynnpack' (XLA's own choice in JAX 0.10) runs "
           "it on one thread; 'auto' (default) takes eigen when every CPU "
           "device has two or more cores (one device unless `sweep "
           "--devices N` splits the CPU) unless XLA_FLAGS already chooses")
  sub = p.add_subparsers(dest="command", required=True)
  _add_demo(sub)
  _add_run(sub)
  _add_sweep(sub)
  _add_config(sub)
  return p


def _add_demo(sub) -> None:
  d = sub.add_parser(
      "demo", help="run FedAsync, FedBuff and FedAvg on the embedded "
                   "Synthetic(1,1) data (no download)",
      description="Runs FedAsync (polynomial staleness, a=0.5), FedBuff and "
                  "synchronous FedAvg on FedProx's Synthetic(1,1) with "
                  "lognormal device speeds; prints test accuracy against "
                  "client updates and simulated time; writes history CSVs, "
                  "metrics.jsonl, arrivals CSVs and summary.json into the "
                  "output folder.")
  d.add_argument("--out", default=None,
                 help="output folder, new or empty (default: "
                      "runs/demo-<date>-<time>)")
  d.add_argument("--force", action="store_true",
                 help="write into a non-empty --out (its files may be "
                      "replaced)")
  d.add_argument("--updates", type=int, default=3000,
                 help="client updates per algorithm, a multiple of 100 "
                      "(default: 3000)")
  d.add_argument("--concurrency", type=int, default=10,
                 help="clients in flight / FedAvg cohort (default: 10)")
  d.add_argument("--clients", type=int, default=100,
                 help="population size (default: 100)")
  d.add_argument("--client-lr", type=float, default=0.01,
                 help="client SGD learning rate (default: 0.01)")
  d.add_argument("--seed", type=int, default=0, help="random seed")
  d.set_defaults(func=_demo)


def _add_run(sub) -> None:
  r = sub.add_parser(
      "run", help="run one configuration (JSON/YAML file plus overrides)",
      description="Runs one simulation from a configuration file and "
                  "command-line\noverrides, with a progress bar (updates, "
                  "simulated time, test accuracy,\nETA), checkpoints, and "
                  "results written to an output folder.",
      epilog=RUN_EPILOG.format(families=_families_text()),
      formatter_class=argparse.RawDescriptionHelpFormatter)
  _config_args(r, "configuration file (.json, .yaml or .yml)",
               "override one field, e.g. rule.alpha=0.9 or "
               "delays.pareto_shape=1.5 (repeatable)")
  _folder_options(r, "run", "continue the interrupted run in DIR")
  r.set_defaults(func=_run)


FORCE_HELP = ("write into a non-empty --out (its files may be replaced; a "
              "checkpoint there is removed)")


def _folder_options(p, command: str, resume_help: str,
                    force_help: str = FORCE_HELP) -> None:
  """``--out``, ``--force`` and ``--resume`` of ``run`` and ``sweep``."""
  p.add_argument("--out", default=None,
                 help=f"output folder, new or empty (default: "
                      f"runs/{command}-<date>-<time>)")
  p.add_argument("--force", action="store_true", help=force_help)
  p.add_argument("--resume", default=None, metavar="DIR", help=resume_help)


def _add_sweep(sub) -> None:
  w = sub.add_parser(
      "sweep", help="run a grid of settings x seeds as ONE compiled program",
      description="Runs every combination of the --grid values and --seeds "
                  "as ONE compiled\nprogram (the vectorized sweep) on top "
                  "of a base configuration (--config,\n--set: as for "
                  "`fedasync-jax run`).\n\n"
                  f"Sweepable fields: {_sweepable_text()}.\nSeeds change "
                  "the schedule, the initial model and the training keys.",
      epilog=SWEEP_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  _config_args(w, "base configuration file (.json/.yaml)",
               "override one base field (repeatable)")
  w.add_argument("--grid", action="append", default=[],
                 metavar="SECTION.FIELD=V1,V2,...",
                 help="the values of one sweepable field (repeatable, "
                      "once per field)")
  w.add_argument("--seeds", default=None, metavar="S1,S2,...",
                 help=f"comma-separated distinct integer seeds in "
                      f"{_seed_range()} (default: run.seed)")
  _folder_options(w, "sweep", "continue the interrupted sweep in DIR (with "
                  "its saved config, grid and seeds)", force_help=(
                      "write into a non-empty --out (its files may be "
                      "replaced; a checkpoint and a previous sweep's member "
                      "folders, m<i> links and TensorBoard events there "
                      "are removed; other files are kept)"))
  w.add_argument("--devices", type=int, default=1, metavar="N",
                 help="CPU only: split the members over N devices, one per "
                      "core (the number of members must be a multiple of "
                      "N; a 16-seed sweep ran 1.5x faster on 2 cores)")
  w.set_defaults(func=_sweep)


def _add_config(sub) -> None:
  c = sub.add_parser(
      "config", help="print every configuration field with its default, "
                     "meaning and range (YAML)",
      description="Prints a complete configuration as YAML: every field, "
                  "its value (the default,\nor from --config / --set), "
                  "what it means and what it accepts. Start a new\n"
                  "configuration with: fedasync-jax config > my.yaml",
      formatter_class=argparse.RawDescriptionHelpFormatter)
  _config_args(c, "start from this file instead of the defaults",
               "override one field (repeatable)")
  c.set_defaults(func=_config)


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


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs ``fedasync-jax`` with ``argv`` (default: the process's); returns
  the exit status: 0, 2 for bad input, 1 for a disk error, 130 when
  stopped by Ctrl-C or SIGTERM (each with one line on stderr).

  Example:
    >>> main(["config", "--set", "run.seed=-1"])  # error on stderr
    2
  """
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
