"""Helpers shared by the experiment scripts (not part of the library).

* locating the shared real data (``--data-dir``) and skipping cleanly when it
  is absent;
* building a run from a ``fedasync_jax.run.config.Config`` through the library's
  own ``experiment.setup`` and running it with ``executor.simulate``,
  optionally evaluating on a test subset (cheaper evaluations on this 2-core
  CPU);
* provenance (command, machine, date, wall time) for the summaries.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from fedasync_jax import results
from fedasync_jax import tasks, types

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def base_parser(description: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--quick", action="store_true",
                 help="a short run that finishes in minutes on a 2-core CPU")
  p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                 help="folder with mnist.npz / cifar10_jpeg_bytes.npz "
                      "(default: ../shared/data beside the repository)")
  p.add_argument("--out", type=Path, default=None,
                 help="output folder (default: experiments/results/<name>)")
  return p


def require(data_dir: Path, filename: str) -> Path:
  """The data file's path, or exit(0) with a message when it is absent."""
  path = Path(data_dir) / filename
  if not path.is_file():
    print(f"SKIPPED: {path} not found. This experiment needs the real data "
          f"file {filename}; pass --data-dir DIR to point at a folder that "
          f"has it.", file=sys.stderr)
    sys.exit(0)
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


class Run(NamedTuple):
  setup: object     # experiment.Setup (with any substitutions)
  out: object       # types.RunResult
  history: list     # dicts: version, updates, time, loss, accuracy
  wall_s: float


def history_of(out) -> list:
  return [{"version": e["version"], "updates": e["updates"],
           "time": e["time"], "loss": e["loss"], "accuracy": e["accuracy"]}
          for e in out.evals]


def training_loss(model, fed, cfg):
  """``model.loss``, with uint8 training images standardized inside it the
  way ``experiment.make_model`` does (the library keeps training images
  uint8 on the device and standardizes each minibatch;
  ``experiment.with_image_inputs`` passes float inputs through, so wrapping
  an already wrapped model changes nothing)."""
  from fedasync_jax import experiment
  if fed.train.x.dtype != np.uint8:
    return model.loss
  return experiment.with_image_inputs(model, cfg.data.name).loss


def build(cfg, *, test_subset: Optional[int] = None, fed=None):
  """``experiment.setup(cfg)`` with optional substitutions.

  The models are the library's as they are (``experiment.make_model``; on
  CPU ``models.mnist_cnn`` / ``models.resnet20`` use the loop-friendly
  convolution of ``fedasync_jax.models.conv`` by default).

  Args:
    cfg: a validated ``config.Config``.
    test_subset: evaluate on the first ``test_subset`` test examples.
    fed: reuse already loaded ``FederatedData`` (same ``cfg.data``).
  """
  import jax
  from fedasync_jax import client, experiment, models, reference
  if fed is None:
    s = experiment.setup(cfg)
  else:
    model = experiment.make_model(cfg, fed)
    rule = experiment.make_rule_from(cfg, fed)
    sched = experiment.make_schedule(cfg, fed, rule)
    c = cfg.client
    s = experiment.Setup(
        fed, model, None, rule, sched,
        tasks.task_hparams(sched, prox_rho=c.prox_rho,
                               delay_beta=c.delay_beta),
        model.init(jax.random.key(cfg.run.seed)), None, 1)
    per_version = (rule.arrivals_per_version if rule.arrivals_per_version
                   else cfg.run.concurrency)
    s = s._replace(eval_every_versions=max(
        1, -(-cfg.run.eval_every // per_version)))
  model = s.model
  c = cfg.client
  update = client.local_update(
      training_loss(model, s.fed, cfg),
      experiment._optimizer(c.optimizer, c.lr, c.momentum),
      batch_size=c.batch_size, max_examples=s.fed.train.max_count,
      epochs=c.epochs, steps=c.steps, epoch_decay=c.epoch_decay,
      patience=c.patience, stateful=model.stateful)
  n = len(s.fed.y_test) if test_subset is None else int(test_subset)
  eval_fn = models.make_evaluator(model, s.fed.x_test[:n], s.fed.y_test[:n])
  return s._replace(model=model, update=update, eval_fn=eval_fn,
                    params=model.init(jax.random.key(cfg.run.seed)))


def simulate(s, cfg, *, label: str = "", log=None) -> Run:
  """Runs a setup with the vectorized executor, printing progress."""
  import jax
  from fedasync_jax import executor
  t0 = time.perf_counter()
  total = s.schedule.num_arrivals

  def progress(info):
    acc = (info.get("last_eval") or {}).get("accuracy", float("nan"))
    msg = (f"  [{label}] {info['arrivals_done']}/{total} updates, "
           f"{time.perf_counter() - t0:.0f} s, last test acc {acc:.3f}")
    print(msg, file=log or sys.stderr, flush=True)
  batching = None if cfg.run.batching == "auto" else cfg.run.batching
  out = executor.simulate(
      s.rule, s.update, s.params, s.fed.train, s.schedule,
      key=jax.random.key(cfg.run.seed), hparams=s.hparams,
      width=cfg.run.width, batching=batching, chunk_steps=cfg.run.chunk_steps,
      eval_fn=s.eval_fn, eval_every=s.eval_every_versions, progress=progress)
  wall = time.perf_counter() - t0
  return Run(s, out, history_of(out), wall)


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


def participation_stats(counts) -> dict:
  c = np.asarray(counts, float)
  return {"min": int(c.min()), "max": int(c.max()), "mean": float(c.mean()),
          "std": float(c.std()),
          "cv": float(c.std() / c.mean()) if c.mean() > 0 else float("nan")}
