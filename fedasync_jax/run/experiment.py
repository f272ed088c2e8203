"""One run from a configuration: ``train_and_evaluate(config, workdir)``.

Builds the data, model, client update, rule, delay model and schedule from
a ``config.Config`` (``setup``), runs the vectorized executor with a
progress bar (``outputs.ProgressBar``), checkpoints between chunks
(``checkpoints``), and writes into ``workdir``:

* ``config.json``: the resolved configuration;
* ``history.csv``: per evaluation: version, simulated time, client updates,
  test loss and accuracy, mean staleness so far, bytes sent to and from
  clients so far;
* ``arrivals.csv``: per arrival: client, time, staleness, applied/dropped,
  version;
* ``participation.csv``: applied updates and examples per client;
* ``summary.json``: final metrics and run statistics;
* plots (PNG, when matplotlib is installed): accuracy and loss against
  versions and simulated time, staleness and participation histograms,
  examples and labels per client.

SIGINT and SIGTERM stop the run at the next chunk boundary after saving the
checkpoint; ``train_and_evaluate(..., resume=True)`` continues it and ends
with the same parameters as an uninterrupted run. A new run never writes
into a folder that holds another run's or sweep's files.
``sweep_and_evaluate`` (``sweep_run``) runs a grid of sweepable settings
(``grid.SWEEPABLE``) x seeds as one compiled program, and is interrupted
and resumed the same way.

The pieces live in ``setup`` (building), ``outputs`` (progress bar, files,
plots), ``checkpoints`` (signals, checkpoints), ``grid`` (grids),
``sweep_run`` and ``sweep_outputs`` (sweeps); this module re-exports their
public names.

Example:
  >>> from fedasync_jax import config
  >>> cfg = config.from_dict({"run": {"num_updates": 200}})
  >>> summary = train_and_evaluate(cfg, "/tmp/run")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import jax

from fedasync_jax.run import config as config_lib
from fedasync_jax.run import results
from fedasync_jax.run.checkpoints import (CHECKPOINT, Interrupted,  # noqa: F401
                                          checkpoint_writer, claim_folder,
                                          finish, read_resume,
                                          stop_on_signals)
from fedasync_jax.run.grid import (SWEEPABLE, members,  # noqa: F401
                                   parse_grid, set_field, sweepable,
                                   with_rule_values)
from fedasync_jax.run.outputs import (ProgressBar, history_rows,  # noqa: F401
                                      plot_run, write_outputs)
from fedasync_jax.run.setup import (Setup, _optimizer,  # noqa: F401
                                    eval_every_versions, image_transform,
                                    load_data, load_trace, make_delays,
                                    make_model, make_optimizer,
                                    make_rule_from, make_schedule,
                                    make_staleness, normalization, setup,
                                    with_image_inputs)
from fedasync_jax.run.sweep_run import sweep_and_evaluate  # noqa: F401
from fedasync_jax.sim import executor

_history_rows = history_rows
_checkpoint_writer = checkpoint_writer


def _batching(cfg) -> Optional[str]:
  return None if cfg.run.batching == "auto" else cfg.run.batching


def train_and_evaluate(cfg: Optional[config_lib.Config], workdir, *,
                       resume: bool = False, show_progress: bool = True
                       ) -> dict:
  """Runs one configuration and writes its outputs into ``workdir``.

  Args:
    cfg: the configuration (validated).
    workdir: output folder; a new run refuses one that holds another
      run's or sweep's files (``checkpoints.claim_folder``).
    resume: continue from ``workdir/checkpoint.msgpack`` with the config
      saved there (``cfg``, when given, must equal it).
    show_progress: draw the progress bar on stderr.

  Checkpoints are written every ``cfg.run.checkpoint_every_s`` seconds (and
  always when a signal stops the run).

  Returns:
    The summary dict (also ``summary.json``).

  Raises:
    Interrupted: a signal stopped the run (after its checkpoint and the
      history so far were written).
  """
  workdir = Path(workdir)
  resume_from = None
  if resume:
    cfg, resume_from = read_resume(workdir, cfg)
  config_lib.validate(cfg)
  if not resume:
    claim_folder(workdir, "run")
  results.write_json(workdir / "config.json", config_lib.to_dict(cfg))
  t0 = time.perf_counter()
  with stop_on_signals({}) as flag:
    s = setup(cfg)
    bar = (ProgressBar(s.schedule.num_arrivals, s.schedule)
           if show_progress else None)
    out = executor.simulate(
        s.rule, s.update, s.params, s.fed.train, s.schedule,
        key=jax.random.key(cfg.run.seed), hparams=s.hparams,
        width=cfg.run.width, batching=_batching(cfg),
        chunk_steps=cfg.run.chunk_steps, eval_fn=s.eval_fn,
        eval_every=s.eval_every_versions, progress=bar,
        checkpoint=checkpoint_writer(workdir / CHECKPOINT, flag,
                                     cfg.run.checkpoint_every_s),
        resume=resume_from)
    summary = write_outputs(workdir, cfg, s, out,
                            wall_time=time.perf_counter() - t0)
  if out.stats["stopped_early"]:
    raise Interrupted(f"stopped by {flag.get('signal')} after "
                      f"{summary['client_updates']} of "
                      f"{s.schedule.num_arrivals} updates; history so far "
                      f"and checkpoint saved in {workdir}")
  finish(workdir, out.state.params)
  return summary
