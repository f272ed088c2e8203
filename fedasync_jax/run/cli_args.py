"""The ``fedasync-jax`` command line's parser and help texts.

``build_parser(commands)`` builds the parser of the four commands (``demo``,
``run``, ``sweep``, ``config``); ``cli`` holds what they do. The help
texts are read from the registries (rules, staleness functions, sweepable
fields, the seed's range), so they list a member registered anywhere.

Example:
  >>> p = build_parser({"demo": print, "run": print, "sweep": print,
  ...                   "config": print})
  >>> p.parse_args(["run", "--set", "rule.alpha=0.9"]).set
  ['rule.alpha=0.9']
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedasync_jax.sim import compile_cache, xla_cpu


RUN_EPILOG = """\
configuration:
  A JSON or YAML file with any of the sections data, model, client, rule,
  delays, run; fields left out keep their defaults. To start one:

    fedasync-jax config > my.yaml   # every field: default, meaning, range

  A smaller example (real MNIST, 100 Dirichlet clients, FedAsync):

    data:   {{name: mnist, path: mnist.npz, num_clients: 100,
             partition: dirichlet, alpha: 0.5}}
    model:  {{name: mlp}}
    client: {{optimizer: sgd, lr: 0.05, batch_size: 10, epochs: 1}}
    rule:   {{name: fedasync, alpha: 0.6, staleness: polynomial,
             staleness_a: 0.5}}
    delays: {{speeds: pareto, pareto_shape: 1.5, jitter: lognormal,
             jitter_sigma: 0.3}}
    run:    {{concurrency: 20, num_updates: 2000, eval_every: 100, seed: 0}}

  (data.path: an .npz with x_train, y_train, x_test, y_test, here beside
  the file; without data.path, mnist is read with tensorflow-datasets.)

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
  staleness.csv, participation.csv, trace_mapping.csv (with trace files),
  summary.json (with "warnings"), final_params.msgpack,
  and PNG plots (against client updates and simulated time) when
  matplotlib is installed (none with --set run.plots=false). With --set
  run.tensorboard=true also tensorboard/: the metrics as TensorBoard
  events, step = client updates, written as the run goes (tensorboard
  --logdir OUT/tensorboard).
  Ctrl-C (or SIGTERM) saves checkpoint.msgpack; --resume DIR continues
  (refused, naming what changed, if config.json was edited since or the
  checkpoint is damaged). --out must be new or empty (or --force); a
  folder is locked while a run writes into it.
"""


LIST_OPTIONS = ("--seeds",)
"""Options whose value is a comma-separated list of numbers, which may
start with ``-``: argparse takes ``--seeds -1,2`` for an option with no
value and another option, so ``Parser`` reads it as ``--seeds=-1,2`` and
the value's own check names the range."""


class Parser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` that reads a ``LIST_OPTIONS`` value
  starting with ``-`` as that option's value."""

  def parse_known_args(self, args=None, namespace=None):
    args = list(sys.argv[1:] if args is None else args)
    for i in reversed(range(len(args) - 1)):
      if args[i] in LIST_OPTIONS and args[i + 1][:2].lstrip("-").isdigit():
        args[i:i + 2] = [f"{args[i]}={args[i + 1]}"]
    return super().parse_known_args(args, namespace)

  def parse_args(self, args=None, namespace=None):
    ns, extra = self.parse_known_args(args, namespace)
    if extra:
      own = [a.split("=")[0] for a in extra
             if a.split("=")[0] in self._option_string_actions]
      if own:  # an option of fedasync-jax itself, given after the command
        self.error(f"{own[0]} is an option of {self.prog} itself: put it "
                   f"before the command ({self.prog} {own[0]} ... "
                   f"{getattr(ns, 'command', None) or 'COMMAND'} ...)")
      self.error(f"unrecognized arguments: {' '.join(extra)}")
    return ns


def families_text() -> str:
  """The rules and staleness functions with their one-line docs and where
  their parameters are set, read from the registries."""
  from fedasync_jax.run import schema
  out = []
  for field, title in (("name", "rules"), ("staleness",
                                           "staleness functions")):
    out.append(f"{title} (rule.{field}):")
    for m in schema.family("rule", field).members():
      where = [schema.member_field("rule", field, m.name, p.name)
               for p in m.params]
      sets = f" [{', '.join(where)}]" if where else ""
      out.append(f"  {m.name:<11} {m.doc}{sets}")
    out.append("")
  return "\n".join(out)


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
  training loss, test loss and accuracy, mean staleness, bytes to and from
  clients), summary.csv (per grid point: seeds,
  mean and 95% interval over seeds of the final test accuracy and loss,
  clipped to where they lie: accuracy to [0, 1], loss to 0 and above),
  sweep.csv (one row per member: settings, final metrics, folder),
  config.json (base config, grid, seeds), summary.json (wall time),
  test_accuracy.png and test_loss.png (mean and band over seeds against
  client updates and simulated time, the band clipped as in summary.csv;
  with matplotlib, unless run.plots=false), and one folder per member
  named by its values (alpha=0.3,seed=1/; m<i> links to it) with
  history.csv, arrivals.csv, staleness.csv, participation.csv,
  trace_mapping.csv (with trace files), metrics.jsonl, summary.json and
  final_params.msgpack. Every member equals its own `fedasync-jax run` with
  the same values (--set ...), bit for bit (over a client.lr grid with
  client.delay_beta or client.epoch_decay: up to rounding).
  Grid fields that the base configuration never reads, and
  base values that the grid or --seeds replace, are warned about (on
  stderr and in summary.json), as --set fields are. With --set
  run.tensorboard=true also tensorboard/<member folder>/: each member's
  metrics as TensorBoard events (written when the sweep ends or is
  stopped).

  Ctrl-C (or SIGTERM) stops at the next chunk (run.chunk_steps steps shared
  out over the members on CPU) and saves checkpoint.msgpack and the outputs
  so far; --resume DIR continues and ends as an uninterrupted sweep would.
  --force into a previous run's or sweep's folder first removes what it
  wrote (its files, member folders, m<i> links and TensorBoard events);
  other files in the folder are kept.

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


def build_parser(commands: dict) -> argparse.ArgumentParser:
  """The parser of ``fedasync-jax``: ``demo``, ``run``, ``sweep``,
  ``config``, each calling ``commands[name](args)``; the help texts list
  the registered rules, staleness functions and sweepable fields."""
  p = Parser(
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
  _add_demo(sub, commands)
  _add_run(sub, commands)
  _add_sweep(sub, commands)
  _add_config(sub, commands)
  return p


def _add_demo(sub, commands: dict) -> None:
  d = sub.add_parser(
      "demo", help="run FedAsync, FedBuff and FedAvg on the embedded "
                   "Synthetic(1,1) data (no download)",
      description="Runs FedAsync (polynomial staleness, a=0.5), FedBuff and "
                  "synchronous FedAvg on FedProx's Synthetic(1,1) with "
                  "lognormal device speeds; prints test accuracy against "
                  "client updates and simulated time; writes history CSVs, "
                  "metrics.jsonl, arrivals CSVs, summary.json and tables.txt "
                  "(the printed tables) into the output folder.")
  d.add_argument("--out", default=None,
                 help="output folder, new or empty (default: "
                      "runs/demo-<date>-<time>)")
  d.add_argument("--force", action="store_true",
                 help="write into a non-empty --out (its files may be "
                      "replaced)")
  d.add_argument("--updates", type=int, default=3000,
                 help="client updates per algorithm, a multiple of 100 "
                      "up to 1000000 (default: 3000)")
  d.add_argument("--concurrency", type=int, default=10,
                 help="clients in flight / FedAvg cohort (default: 10)")
  d.add_argument("--clients", type=int, default=100,
                 help="population size, up to 100000 (default: 100)")
  d.add_argument("--client-lr", type=float, default=0.01,
                 help="client SGD learning rate (default: 0.01)")
  d.add_argument("--seed", type=int, default=0,
                 help="random seed (default: 0)")
  d.set_defaults(func=commands["demo"])


def _add_run(sub, commands: dict) -> None:
  r = sub.add_parser(
      "run", help="run one configuration (JSON/YAML file plus overrides)",
      description="Runs one simulation from a configuration file and "
                  "command-line\noverrides, with a progress bar (updates, "
                  "simulated time, test accuracy,\nETA), checkpoints, and "
                  "results written to an output folder.",
      epilog=RUN_EPILOG.format(families=families_text()),
      formatter_class=argparse.RawDescriptionHelpFormatter)
  _config_args(r, "configuration file (.json, .yaml or .yml)",
               "override one field, e.g. rule.alpha=0.9 or "
               "delays.pareto_shape=1.5 (repeatable)")
  _folder_options(r, "run", "continue the interrupted run in DIR")
  r.set_defaults(func=commands["run"])


FORCE_HELP = ("write into a non-empty --out: a checkpoint and what a "
              "previous run or sweep wrote there (its files, member "
              "folders, m<i> links, TensorBoard events) are removed first; "
              "other files are kept")


def _folder_options(p, command: str, resume_help: str) -> None:
  """``--out``, ``--force`` and ``--resume`` of ``run`` and ``sweep``."""
  p.add_argument("--out", default=None,
                 help=f"output folder, new or empty (default: "
                      f"runs/{command}-<date>-<time>)")
  p.add_argument("--force", action="store_true", help=FORCE_HELP)
  p.add_argument("--resume", default=None, metavar="DIR", help=resume_help)


def _add_sweep(sub, commands: dict) -> None:
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
                      "once per field); FIELD=@FILE reads them from a file "
                      "(separated by commas, spaces or line breaks)")
  w.add_argument("--seeds", default=None, metavar="S1,S2,...",
                 help=f"comma-separated distinct integer seeds in "
                      f"{_seed_range()} (default: run.seed); @FILE reads "
                      f"them from a file")
  _folder_options(w, "sweep", "continue the interrupted sweep in DIR (with "
                  "its saved config, grid and seeds)")
  w.add_argument("--devices", type=int, default=1, metavar="N",
                 help="CPU only: split the members over N devices, one per "
                      "core (the number of members must be a multiple of "
                      "N; a 16-seed sweep ran 1.5x faster on 2 cores)")
  w.set_defaults(func=commands["sweep"])


def _add_config(sub, commands: dict) -> None:
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
  c.set_defaults(func=commands["config"])
