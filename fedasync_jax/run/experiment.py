"""One run from a configuration: ``train_and_evaluate(config, workdir)``.

Builds the data, model, client update, rule, delay model and schedule from
a ``config.Config`` (``setup``), runs the vectorized executor with a
progress bar (``progress.ProgressBar``), checkpoints between chunks
(``checkpoints``), and writes into ``workdir``:

* ``config.json``: the resolved configuration;
* ``history.csv``: per evaluation: version, simulated time, client updates,
  clients' training loss since the previous evaluation, test loss and
  accuracy (``types.COLUMNS``), mean staleness so far, bytes sent to and
  from clients so far;
* ``metrics.jsonl``: the same, one JSON object per line, appended as the
  run goes (``metrics``);
* ``arrivals.csv``: per arrival (``types.ARRIVAL_COLUMNS``): client,
  simulated_time, staleness, status (applied/dropped), version, train_loss;
* ``participation.csv``: applied updates and examples per client;
* ``summary.json``: final metrics and run statistics;
* plots (PNG, when matplotlib is installed): accuracy and loss against
  client updates and simulated time, staleness and participation
  histograms, examples and labels per client.

Fields that do nothing with the chosen rule or setting, and a run that
applied no update, are warned about (``notices``).

SIGINT and SIGTERM stop the run at the next chunk boundary after saving the
checkpoint; ``train_and_evaluate(..., resume=True)`` continues it and ends
with the same parameters as an uninterrupted run. The checkpoint verifies
itself: a damaged one, or one whose folder's ``config.json`` was edited,
is refused (``checkpoints.verify``). A new run writes only into a new or
empty folder (``force=True``: any folder), and a folder is locked while a
run writes into it (``folders``). The final parameters are written first
when training ends; a disk or plotting error after that is a warning that
keeps them (``outputs.write_outputs``).
``sweep_and_evaluate`` (``sweep_run``) runs a grid of sweepable settings
(``grid.SWEEPABLE``) x seeds as one compiled program, and is interrupted
and resumed the same way.

The pieces live in ``setup`` (building), ``outputs`` (progress bar, files,
plots), ``checkpoints`` (signals, checkpoints), ``folders`` (claiming and
locking output folders), ``grid`` (grids),
``sweep_run`` and ``sweep_outputs`` (sweeps); this module re-exports their
public names.

Example:
  >>> from fedasync_jax import config
  >>> cfg = config.from_dict({"run": {"num_updates": 200}})
  >>> summary = train_and_evaluate(cfg, "/tmp/run")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Optional

import jax

from fedasync_jax.run import config as config_lib
from fedasync_jax.run import (inputs, metrics, notices, results,
                              sweep_outputs)
from fedasync_jax.run import tensorboard as tensorboard_lib
from fedasync_jax.run.checkpoints import (CHECKPOINT,  # noqa: F401
                                          FINAL_PARAMS, Interrupted,
                                          checkpoint_writer, claim_folder,
                                          finish, read_resume,
                                          remove_checkpoint,
                                          stop_on_signals, write_params)
from fedasync_jax.run.folders import open_folder
from fedasync_jax.run.grid import (SWEEPABLE, members,  # noqa: F401
                                   parse_grid, set_field, sweepable,
                                   with_rule_values)
from fedasync_jax.run.outputs import (attempt, history_rows,  # noqa: F401
                                      plot_run, with_final_eval,
                                      write_outputs)
from fedasync_jax.run.progress import ProgressBar, stage
from fedasync_jax.run.memory import check_memory
from fedasync_jax.run.setup import (Setup, _optimizer,  # noqa: F401
                                    eval_every_versions,
                                    image_transform,
                                    load_data, load_trace, make_delays,
                                    make_model, make_optimizer, make_update,
                                    make_rule_from, make_schedule,
                                    make_staleness, normalization, setup,
                                    with_image_inputs)
from fedasync_jax.run.sweep_run import sweep_and_evaluate  # noqa: F401
from fedasync_jax.sim import executor

_history_rows = history_rows
_checkpoint_writer = checkpoint_writer


def _batching(cfg) -> Optional[str]:
  return None if cfg.run.batching == "auto" else cfg.run.batching


def ready(cfg):
  """Checks a new run's configuration before any folder is made: its
  fields (``config.validate``), the files it names (``inputs.check_present``)
  and its memory (``memory.check_memory``). Returns ``cfg``.

  Raises:
    ValueError: naming the field and what is wrong.
  """
  config_lib.validate(cfg)
  inputs.check_present(config_lib.to_dict(cfg))
  check_memory(cfg)
  return cfg


def train_and_evaluate(cfg: Optional[config_lib.Config], workdir, *,
                       resume: bool = False, force: bool = False,
                       show_progress: bool = True) -> dict:
  """Runs one configuration and writes its outputs into ``workdir``.

  Args:
    cfg: the configuration (validated).
    workdir: output folder: a new or empty one (``force``: any), locked
      while the run writes into it (``folders.open_folder``).
    resume: continue from ``workdir/checkpoint.msgpack`` with the config
      saved there (``cfg``, when given, must equal it); the checkpoint
      must belong to that config (``checkpoints.verify``).
    force: write into a non-empty folder (a checkpoint and the outputs of
      a previous run or sweep there are removed:
      ``sweep_outputs.remove_previous``; other files are kept).
    show_progress: draw the progress bar on stderr.

  Checkpoints are written every ``cfg.run.checkpoint_every_s`` seconds (and
  always when a signal stops the run). ``config.json`` is written only
  once the data are loaded, so a run that fails to start replaces nothing;
  in a new or empty folder, a run that fails before it computed anything
  (say, while compiling) removes what it wrote.
  When training ends, the final parameters are written first, then the
  summary, logs and plots (a disk or plotting error there is a warning).

  Returns:
    The summary dict (also ``summary.json``).

  Raises:
    Interrupted: a signal stopped the run (after its checkpoint and the
      history so far were written).
    ValueError: a bad configuration, a population larger than the
      available memory (``memory.check_memory``), a taken or locked folder,
      or a checkpoint that cannot be resumed (naming why).
  """
  workdir = Path(workdir)
  if cfg is not None:  # config.json saves absolute paths
    cfg = config_lib.absolute_paths(cfg)
  if not resume:
    ready(cfg)  # before any folder is made
  fresh = not resume and (not workdir.is_dir() or not any(workdir.iterdir()))
  with open_folder(workdir, command="run", resume=resume, force=force), \
      contextlib.ExitStack() as signals:
    t0 = time.perf_counter()
    saved = None
    if resume:
      cfg, saved = read_resume(workdir, cfg)
      config_lib.validate(cfg)
    before = saved.elapsed_s if saved is not None else 0.0
    warned = notices.warn(notices.config_warnings(cfg))
    bar = None
    if show_progress:
      bar = ProgressBar()
    stage(bar, f"loading data ({cfg.data.name}, {cfg.data.num_clients} "
          f"clients) and drawing the schedule")
    # (loads the data: may fail, before anything is written)
    s = setup(cfg, progress=getattr(bar, "drawing", None))
    # Until here Ctrl-C raises KeyboardInterrupt and nothing is written;
    # from here on it stops the run at the next chunk, after a checkpoint.
    flag = signals.enter_context(stop_on_signals({}))
    cfg_dict = config_lib.to_dict(cfg)
    if not resume:  # (with force, another run's or sweep's outputs go)
      notices.warn(sweep_outputs.remove_previous(workdir), into=warned)
      results.write_json(workdir / "config.json", cfg_dict)
    if bar is not None:
      bar.total, bar.schedule = s.schedule.num_arrivals, s.schedule
    stage(bar, f"compiling (the first progress line follows the first "
          f"{cfg.run.chunk_steps} steps)")

    def elapsed() -> float:
      return before + time.perf_counter() - t0
    with _unwritten_on_failure(workdir, fresh), \
        _metrics_stream(workdir, s, resume,
                        tensorboard=cfg.run.tensorboard) as stream:
      out = executor.simulate(
          s.rule, s.update, s.params, s.fed.train, s.schedule,
          key=jax.random.key(cfg.run.seed), hparams=s.hparams,
          width=cfg.run.width, batching=_batching(cfg),
          chunk_steps=cfg.run.chunk_steps, eval_fn=s.eval_fn,
          eval_every=s.eval_every_versions,
          progress=metrics.fan_out(stream, bar),
          checkpoint=checkpoint_writer(
              workdir / CHECKPOINT, flag, cfg.run.checkpoint_every_s,
              config=cfg_dict, chunk_steps=cfg.run.chunk_steps,
              elapsed=elapsed),
          resume=None if saved is None else saved.checkpoint)
    stopped = bool(out.stats["stopped_early"])
    if not stopped:  # what was computed, first
      _write_final_params(workdir, out.state.params)
      out = with_final_eval(out, s.eval_fn)
    summary = write_outputs(workdir, cfg, s, out, wall_time=elapsed(),
                            resumed_s=before, warnings=warned,
                            plots=cfg.run.plots)
    if cfg.run.tensorboard:
      _write_tensorboard(workdir, workdir / tensorboard_lib.FOLDER)
    if not stopped:
      remove_checkpoint(workdir)
  if stopped:
    raise Interrupted(f"stopped by {flag.get('signal')} after "
                      f"{summary['client_updates']} of "
                      f"{s.schedule.num_arrivals} updates; history so far "
                      f"and checkpoint saved in {workdir}")
  return summary


@contextlib.contextmanager
def _unwritten_on_failure(workdir: Path, fresh: bool):
  """Where a run in a new or empty folder fails before it computed
  anything (no checkpoint, no metrics line: say, while compiling), removes
  what it wrote there, so the folder is left as it was found."""
  try:
    yield
  except Exception:
    stream = workdir / metrics.METRICS
    if fresh and not (workdir / CHECKPOINT).exists() and (
        not stream.exists() or stream.stat().st_size == 0):
      with contextlib.suppress(OSError):
        for name in ("config.json", metrics.METRICS):
          (workdir / name).unlink(missing_ok=True)
        shutil.rmtree(workdir / tensorboard_lib.FOLDER, ignore_errors=True)
    raise


@contextlib.contextmanager
def _metrics_stream(workdir: Path, s: Setup, resume: bool, *,
                    tensorboard: bool = False):
  """``metrics.MetricsStream`` appending to ``workdir/metrics.jsonl`` (a new
  run starts it afresh) and, with ``tensorboard``, to the event file in
  ``workdir/tensorboard/``; ``None`` where the file cannot be opened (the
  complete files are written at the end anyway)."""
  path = workdir / metrics.METRICS
  after = metrics.last_written(path) if resume else None
  try:
    f = open(path, "a" if resume else "w")  # noqa: SIM115
  except OSError:
    yield None
    return
  with contextlib.ExitStack() as stack:
    stack.callback(f.close)
    events = None
    if tensorboard:
      logdir = workdir / tensorboard_lib.FOLDER
      with contextlib.suppress(OSError):
        old = tensorboard_lib.find_event_file(logdir)
        if old is not None and not resume:  # another run's (--force)
          old.unlink()
        events = stack.enter_context(tensorboard_lib.EventFile(logdir))
    yield metrics.MetricsStream(f, s.schedule,
                                eval_every=s.eval_every_versions, after=after,
                                tensorboard=events)


def _write_tensorboard(folder: Path, logdir: Path, *, stream=None) -> None:
  """Writes ``folder/metrics.jsonl`` as the TensorBoard event file in
  ``logdir`` (``metrics.write_tensorboard``); a disk error is a warning."""
  attempt([], "TensorBoard events", lambda: metrics.write_tensorboard(
      folder / metrics.METRICS, logdir), errors=(OSError, ValueError),
          stream=stream)


def _write_final_params(workdir: Path, params) -> None:
  """Writes ``final_params.msgpack``; on a disk error the checkpoint is
  kept and the error says how to continue."""
  try:
    write_params(workdir / FINAL_PARAMS, params)
  except OSError as e:
    kept = ("the checkpoint is kept: free space and continue with "
            f"fedasync-jax run --resume {workdir}"
            if (workdir / CHECKPOINT).exists() else "no checkpoint was kept")
    raise OSError(e.errno, f"{workdir / FINAL_PARAMS} not written "
                  f"({e.strerror}); {kept}") from None
