"""Helpers shared by the experiment scripts (not part of the library).

* the command line every experiment shares (``--quick``, ``--smoke``,
  ``--data-dir``, ``--out``, ``--force``, argument types, one-line errors
  and ``run_length``: defined in ``command_line.py``, used through this
  module) and where a run reads and writes
  (``prepare``): the real data in ``--data-dir`` (skipping cleanly when it
  is absent), or, for ``--smoke``, a tiny generated stand-in, with the
  outputs in ``--out``: by default a new, untracked
  ``runs/<name>-<UTC time>/`` (a new temporary folder for ``--smoke``), so
  that no run overwrites the recorded ``experiments/results/`` unless
  given ``--out experiments/results/<name> --force`` (a non-empty
  ``--out`` is refused without ``--force``);
* building a run from a ``fedasync_jax.config.Config`` through the
  library's public pieces (``experiment.load_data`` / ``make_model`` /
  ``make_rule_from`` / ``make_schedule`` / ``make_update``,
  ``tasks.task_hparams``) and running it with ``executor.simulate``,
  optionally evaluating on a test subset (cheaper evaluations on this
  2-core CPU);
* provenance (command, machine, date, wall time) for the summaries;
* where a run writes until it finishes, its log, Ctrl-C and atomic files:
  defined in ``run_folder.py``, used through this module.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (REPO, HERE):  # a checkout without installing; command_line
  if str(_path) not in sys.path:
    sys.path.insert(0, str(_path))
RESULTS = HERE / "results"

from fedasync_jax import results, tasks  # noqa: E402
from fedasync_jax.run.sweep_outputs import RANGES  # noqa: E402

# The shared command line (``command_line.py``), used through this module.
from command_line import (  # noqa: E402,F401
    DEFAULT_DATA, FULL_TEXT, SMOKE_TEXT, Parser, add_output_args,
    base_parser, check_out, existing_file, int_in, int_list, name_list,
    non_negative_int, number, number_list, parse, positive_int,
    positive_int_list, positive_ints, run_length)
# Where a run writes until it finishes (``run_folder.py``), also used
# through this module.
from run_folder import (  # noqa: E402,F401
    Log, finish, interruptible, partial_dir, target_of, write_text)


def new_run_dir(name: str) -> Path:
  """A new folder ``runs/<name>-<UTC time>`` in the repository (untracked:
  ``runs/`` is in ``.gitignore``); a suffix keeps it new."""
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y%m%dT%H%M%SZ")
  base = REPO / "runs" / f"{name}-{stamp}"
  out, i = base, 1
  while out.exists():
    out, i = Path(f"{base}-{i}"), i + 1
  return out


def require(data_dir: Path, filename: str) -> Path:
  """The data file's path, or exit(0) with a message when it is absent."""
  path = Path(data_dir) / filename
  if not path.is_file():
    print(f"SKIPPED: {path} not found. This experiment needs the real data "
          f"file {filename}; pass --data-dir DIR to point at a folder that "
          f"has it (or --smoke for a tiny run on generated data).",
          file=sys.stderr)
    sys.exit(0)
  return path.resolve()


def output_dir(args, name: str) -> Path:
  """The folder a run writes into: a new partial sibling (``partial_dir``)
  of ``--out``, else of a new temporary folder for ``--smoke``, else of a
  new ``runs/<name>-<UTC time>`` (``new_run_dir``); ``finish`` moves it
  into place at the end. The recorded results
  (``experiments/results/<name>``) are written only when ``--out`` names
  them; a non-empty ``--out`` was refused without ``--force`` when the
  arguments were parsed (``parse``)."""
  if args.out is not None:
    out = Path(args.out)
  elif args.smoke:
    out = Path(tempfile.mkdtemp(prefix=f"smoke_{name}_"))
  else:
    out = new_run_dir(name)
  return partial_dir(out)


def prepare(args, name: str, filename: Optional[str] = "mnist.npz"):
  """``(output folder, data file)`` of a run: the real ``filename`` in
  ``--data-dir`` (exit(0) when absent, before the output folder is made),
  or with ``--smoke`` a generated stand-in written into the output
  folder. Before JAX starts, it also makes the library's CPU choice
  (``fedasync_jax.configure_cpu()``: convolutions on every core), as
  ``fedasync-jax`` does; a choice in ``XLA_FLAGS`` wins."""
  from fedasync_jax.sim import xla_cpu
  if not xla_cpu.backend_started():
    xla_cpu.configure_cpu()
  if filename is not None and not args.smoke:  # before any folder is made
    data = require(args.data_dir, filename)
  out = output_dir(args, name)
  if filename is None:
    return out, None
  if args.smoke:
    return out, smoke_data(out, "cifar10" if "cifar" in filename
                           else "mnist")
  return out, data


def fake_images(n, shape, seed=0, num_classes=10):
  """``n`` uint8 images of ``shape`` whose class is a bright horizontal
  band (class c at rows 2c..2c+2) on noise, and their int64 labels."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, num_classes, n)
  x = rng.integers(0, 60, (n,) + tuple(shape)).astype(np.uint8)
  rows = np.arange(shape[0])[None, :]
  x[(rows >= 2 * y[:, None]) & (rows < 2 * y[:, None] + 3)] += np.uint8(150)
  return x, y.astype(np.int64)


def smoke_data(folder: Path, kind: str = "mnist") -> Path:
  """Writes a tiny MNIST- or CIFAR-10-shaped ``.npz`` (``x_train, y_train,
  x_test, y_test``, uint8 ``fake_images``) into ``folder``; returns it.
  The CIFAR stand-in is not named ``*jpeg_bytes.npz``, so
  ``experiment.load_data`` reads it as a plain ``.npz``."""
  shape, n = ((28, 28), 2000) if kind == "mnist" else ((32, 32, 3), 600)
  path = Path(folder) / f"{kind}_smoke.npz"
  if not path.exists():
    x, y = fake_images(n, shape, seed=0)
    xt, yt = fake_images(200, shape, seed=1)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
  return path.resolve()


def machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  import jax
  try:
    load = os.getloadavg()[0]
    load_s = f", load average at start {load:.1f}"
  except OSError:
    load_s = ""
  return (f"{os.cpu_count()}-core CPU ({cpu}), shared with other jobs"
          f"{load_s}; Python {platform.python_version()}, JAX "
          f"{jax.__version__} ({jax.default_backend()})")


class Provenance:
  """Remembers the command, machine and start time of a script."""

  def __init__(self):
    self.t0 = time.perf_counter()
    self.date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    rel = os.path.relpath(sys.argv[0], REPO)
    self.command = " ".join(["python", shlex.quote(rel)] +
                            [shlex.quote(a) for a in sys.argv[1:]])
    self.machine = machine()

  def wall(self) -> float:
    return time.perf_counter() - self.t0

  def markdown(self) -> str:
    w = self.wall()
    return (f"- command (from the repository root): `{self.command}`\n"
            f"- machine: {self.machine}\n"
            f"- date: {self.date}\n"
            f"- wall time: {w:.0f} s ({w / 60:.1f} min)\n")


def fmt(x, nd=3) -> str:
  if x is None or (isinstance(x, float) and not np.isfinite(x)):
    return "n/a"
  return f"{x:.{nd}f}"


# ---------------------------------------------------------------------------
# Running one configuration.


class Setup(NamedTuple):
  """A run's pieces (the fields of ``experiment.Setup``)."""
  fed: object
  model: object
  update: object
  rule: object
  schedule: object
  hparams: object
  params: object
  eval_fn: object
  eval_every_versions: int


class Run(NamedTuple):
  setup: Setup
  out: object       # types.RunResult
  history: list     # RunResult.evals: the columns of types.COLUMNS
  wall_s: float


def history_of(out) -> list:
  """A run's history rows: its evaluations, named as every history
  (``types.COLUMNS``: version, simulated_time, client_updates,
  client_train_loss, test_loss, test_accuracy)."""
  return [dict(e) for e in out.evals]


def build(cfg, *, fed=None, test_subset: Optional[int] = None) -> Setup:
  """A run's pieces from ``cfg`` through the library's public builders.

  The models are the library's as they are (``experiment.make_model``; on
  CPU ``models.mnist_cnn`` / ``models.resnet20`` use the loop-friendly
  convolution of ``fedasync_jax.models.conv`` by default; uint8 training
  images are standardized by the model).

  Args:
    cfg: a validated ``config.Config``.
    fed: reuse already loaded ``FederatedData`` (same ``cfg.data``).
    test_subset: evaluate on the first ``test_subset`` test examples.
  """
  import jax
  from fedasync_jax import experiment, models
  from fedasync_jax.run import setup as setup_lib
  if fed is None:
    fed = experiment.load_data(cfg)
  model = experiment.make_model(cfg, fed)
  rule = experiment.make_rule_from(cfg, fed)
  dm = experiment.make_delays(cfg, fed)
  sched = experiment.make_schedule(cfg, fed, rule, delay_model=dm)
  c = cfg.client
  update = experiment.make_update(cfg, model, fed)
  n = len(fed.y_test) if test_subset is None else int(test_subset)
  return Setup(
      fed, model, update, rule, sched,
      tasks.task_hparams(sched, prox_rho=c.prox_rho,
                         delay_beta=c.delay_beta,
                         delay=dm),
      model.init(jax.random.key(cfg.run.seed)),
      models.make_evaluator(model, fed.x_test[:n], fed.y_test[:n]),
      setup_lib.eval_every_versions(cfg, rule))


def simulate(s: Setup, cfg, *, label: str = "", log=None) -> Run:
  """Runs a setup with the vectorized executor, printing progress; the
  history ends with an evaluation at the last update (``final_eval``)."""
  import jax
  from fedasync_jax import executor
  t0 = time.perf_counter()
  total = s.schedule.num_arrivals

  def progress(info):
    acc = (info.get("last_eval") or {}).get("test_accuracy", float("nan"))
    msg = (f"  [{label}] {info['arrivals_done']}/{total} updates, "
           f"{time.perf_counter() - t0:.0f} s, last test acc {acc:.3f}")
    print(msg, file=getattr(log, "file", log) or sys.stderr, flush=True)
  batching = None if cfg.run.batching == "auto" else cfg.run.batching
  out = executor.simulate(
      s.rule, s.update, s.params, s.fed.train, s.schedule,
      key=jax.random.key(cfg.run.seed), hparams=s.hparams,
      width=cfg.run.width, batching=batching, chunk_steps=cfg.run.chunk_steps,
      eval_fn=s.eval_fn, eval_every=s.eval_every_versions, progress=progress)
  out = final_eval(out, s.eval_fn)
  return Run(s, out, history_of(out), time.perf_counter() - t0)


def final_eval(out, eval_fn):
  """``out`` whose history ends with an evaluation of its last update
  (``fedasync_jax.run.outputs.with_final_eval``, as the CLI does): the
  simulators evaluate every ``eval_every`` versions only."""
  from fedasync_jax.run.outputs import with_final_eval
  return with_final_eval(out, eval_fn)


def mnist_mlp_config(data_path, *, num_clients: int, concurrency: int,
                     num_updates: int, eval_every: int, lr: float = 0.05,
                     seed: int = 0, delays: Optional[dict] = None):
  """The cross-device MNIST setting of experiments 4 and 6: Dirichlet(0.5)
  clients, the 784-200-200-10 MLP, one local epoch of SGD at batch 10,
  FedAsync(0.6, polynomial(0.5)), and FedBuff's K = 10 with server lr 1
  when the rule is switched (``with_fields``); validated."""
  from fedasync_jax import config as config_lib
  d = {"data": {"name": "mnist", "path": str(data_path),
                "num_clients": num_clients, "partition": "dirichlet",
                "alpha": 0.5, "seed": 0},
       "model": {"name": "mlp"},
       "client": {"optimizer": "sgd", "lr": lr, "batch_size": 10,
                  "epochs": 1},
       "rule": {"name": "fedasync", "alpha": 0.6, "staleness": "polynomial",
                "staleness_a": 0.5, "buffer_size": 10, "server_lr": 1.0},
       "run": {"concurrency": concurrency, "num_updates": num_updates,
               "eval_every": eval_every, "seed": seed}}
  if delays:
    d["delays"] = dict(delays)
  return config_lib.from_dict(d)


def first_reach(history, threshold):
  """``(simulated time, client updates)`` of the first evaluation at or
  above ``threshold`` test accuracy, or ``(None, None)``."""
  for e in history:
    if e["test_accuracy"] >= threshold:
      return e["simulated_time"], e["client_updates"]
  return None, None


def interval_of(values, bounds=(None, None)):
  """``(mean, low, high, n)``: the 95% Student t interval of the mean over
  the finite entries of ``values``, clipped to ``bounds``
  (``sweep_outputs.interval``; low and high NaN with fewer than two)."""
  from fedasync_jax.run.sweep_outputs import interval
  v = np.asarray(values, float)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return float("nan"), float("nan"), float("nan"), 0
  m, low, high = interval(v, bounds=bounds)
  return float(m), float(low), float(high), int(v.size)


def mean_ci(values):
  """``(mean, half-width of the 95% Student t interval, n)`` over the
  finite entries of ``values`` (``interval_of``; half-width NaN with fewer
  than two).

  Example:
    >>> m, h, n = mean_ci([1.0, 2.0, 3.0, float("nan")])
    >>> round(m, 3), round(h, 3), n
    (2.0, 2.484, 3)
  """
  m, _, high, n = interval_of(values)
  return m, high - m, n


BOUNDS = {**RANGES, "client_train_loss": (0.0, None),
          "simulated_time": (0.0, None)}
"""The range of each history column (``sweep_outputs.RANGES``, and the
other non-negative ones): intervals are clipped to it."""


def fmt_ci(values, digits: int = 2, bounds=(None, None)) -> str:
  """``"mean +- half-width (n=..)"`` of the 95% interval, or ``"mean
  [low, high] (n=..)"`` where ``bounds`` clip it (e.g. an accuracy's
  interval to [0, 1]).

  Example:
    >>> fmt_ci([0.0, 0.05, 0.25], 3, bounds=(0.0, 1.0))
    '0.100 [0.000, 0.429] (n=3)'
  """
  m, low, high, n = interval_of(values, bounds)
  if n == 0:
    return "n/a"
  if n == 1:
    return f"{m:.{digits}f} (n=1)"
  half = max(m - low, high - m)
  if np.isclose(m - low, half) and np.isclose(high - m, half):
    return f"{m:.{digits}f} +- {half:.{digits}f} (n={n})"
  return f"{m:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] (n={n})"


def with_fields(cfg, **sections):
  """A copy of ``cfg`` with ``section={field: value}`` replaced, validated."""
  from fedasync_jax import config as config_lib
  d = config_lib.to_dict(cfg)
  for sec, fields in sections.items():
    d[sec].update(fields)
  return config_lib.from_dict(d)


# ---------------------------------------------------------------------------
# Files.


# CSV and JSON go through the library's atomic writers.
write_rows = results.write_csv
write_json = results.write_json


def figure(*args, **kw):
  """A matplotlib ``Figure`` (no pyplot state; Agg-safe)."""
  from matplotlib.figure import Figure
  return Figure(*args, **kw)


GPU_UPDATES_PER_S = 20_000
"""An ASSUMED rate of MNIST MLP client updates per second on one GPU (the
target `benchmarks/gpu.py` checks for W1 at concurrency 1000); no GPU has
measured it yet. Low concurrency leaves a GPU's lanes idle, so estimates
from it are optimistic there."""


def gpu_estimate(updates: float) -> str:
  """A sentence estimating how long ``updates`` MLP client updates take on
  one GPU at ``GPU_UPDATES_PER_S``.

  Example:
    >>> gpu_estimate(2.4e6)[:42]
    'on one GPU about 2.0 min at an assumed 20,'
  """
  return (f"on one GPU about {updates / GPU_UPDATES_PER_S / 60:.1f} min at "
          f"an assumed {GPU_UPDATES_PER_S:,} client updates/s (not "
          f"measured: no GPU was lent; optimistic at low concurrency), "
          f"{updates:,.0f} client updates in all")


def participation_stats(counts) -> dict:
  c = np.asarray(counts, float)
  return {"min": int(c.min()), "max": int(c.max()), "mean": float(c.mean()),
          "std": float(c.std()),
          "cv": float(c.std() / c.mean()) if c.mean() > 0 else float("nan")}
