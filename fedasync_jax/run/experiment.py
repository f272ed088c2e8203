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
with the same parameters as an uninterrupted run. ``sweep_and_evaluate``
runs a grid of sweepable settings (``grid.SWEEPABLE``) x seeds as one
compiled program.

The pieces live in ``setup`` (building), ``outputs`` (progress bar, files,
plots), ``checkpoints`` (signals, checkpoints) and ``grid`` (grids); this
module re-exports their public names.

Example:
  >>> from fedasync_jax import config
  >>> cfg = config.from_dict({"run": {"num_updates": 200}})
  >>> summary = train_and_evaluate(cfg, "/tmp/run")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp

from fedasync_jax.run import config as config_lib
from fedasync_jax.run import results
from fedasync_jax.run.checkpoints import (CHECKPOINT, Interrupted,  # noqa: F401
                                          checkpoint_writer, finish,
                                          read_resume, stop_on_signals)
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
from fedasync_jax.sim import executor, tasks

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
    workdir: output folder.
    resume: continue from ``workdir/checkpoint.msgpack`` (the config saved
      there is used; it must exist).
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
    cfg, resume_from = read_resume(workdir)
  config_lib.validate(cfg)
  workdir.mkdir(parents=True, exist_ok=True)
  results.write_json(workdir / "config.json", config_lib.to_dict(cfg))
  t0 = time.perf_counter()
  s = setup(cfg)
  bar = ProgressBar(s.schedule.num_arrivals, s.schedule) if show_progress \
      else None
  with stop_on_signals({}) as flag:
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


def _check_members(cfg, grid_members) -> None:
  """Validates every member's values through the configuration, before
  any work."""
  for values, seed in grid_members:
    d = config_lib.to_dict(cfg)
    for k, v in values.items():
      set_field(d, k, v)
    d["run"]["seed"] = seed
    config_lib.from_dict(d)


def _per_seed(cfg, base: Setup, seeds) -> dict:
  """``{seed: (schedule, hparams, initial params)}``."""
  out = {}
  for seed in seeds:
    c = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed))
    sched = make_schedule(c, base.fed, base.rule)
    out[seed] = (sched, tasks.task_hparams(
        sched, prox_rho=cfg.client.prox_rho,
        delay_beta=cfg.client.delay_beta),
        base.model.init(jax.random.key(seed)))
  return out


def _run_sweep(cfg, base: Setup, grid_members, per_seed, show_progress):
  """The grid as one compiled program (``sweep.sweep``)."""
  from fedasync_jax.sim import sweep as sweep_lib
  paths = sweepable()
  rule_keys = [k for k in (grid_members[0][0] if grid_members else {})
               if paths[k] is not None]
  rule_hp = {paths[k]: jnp.asarray([v[k] for v, _ in grid_members],
                                   jnp.float32) for k in rule_keys}
  if not rule_hp:
    rule_hp = {"_": jnp.zeros(len(grid_members))}

  def make_rule(hp):
    r = with_rule_values(cfg.rule, {k: v for k, v in hp.items() if k != "_"})
    return make_rule_from(dataclasses.replace(cfg, rule=r), base.fed)
  lr_scale = [v.get("client.lr", cfg.client.lr) / cfg.client.lr
              for v, _ in grid_members]
  params = jax.tree.map(lambda *xs: jnp.stack(xs),
                        *[per_seed[s][2] for _, s in grid_members])
  bar = (ProgressBar(label=f"sweep of {len(grid_members)} members")
         if show_progress else None)
  return sweep_lib.sweep(
      make_rule, rule_hp, base.update, params, base.fed.train,
      [per_seed[s][0] for _, s in grid_members],
      keys=jnp.stack([jax.random.key(s) for _, s in grid_members]),
      hparams=[per_seed[s][1] for _, s in grid_members],
      client_lr_scale=lr_scale, width=cfg.run.width,
      batching=_batching(cfg), chunk_steps=cfg.run.chunk_steps,
      eval_fn=base.eval_fn, eval_every=base.eval_every_versions,
      member_params=True, progress=bar)


def sweep_and_evaluate(cfg: config_lib.Config, grid: dict, seeds, workdir,
                       *, show_progress: bool = True) -> list:
  """Runs the full grid x seeds as one compiled program (``sweep.sweep``).

  Every member gets a subfolder ``m<index>`` with its ``history.csv``,
  ``arrivals.csv`` and ``summary.json``; ``sweep.csv`` lists the members'
  settings and final metrics.

  Returns:
    One row dict per member (as in ``sweep.csv``).
  """
  config_lib.validate(cfg)
  seeds = [int(s) for s in (seeds or [cfg.run.seed])]
  grid_members = members(grid, seeds)
  _check_members(cfg, grid_members)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  results.write_json(workdir / "config.json", {
      "base": config_lib.to_dict(cfg), "grid": grid, "seeds": seeds})
  t0 = time.perf_counter()
  base = setup(cfg)
  per_seed = _per_seed(cfg, base, seeds)
  outs = _run_sweep(cfg, base, grid_members, per_seed, show_progress)
  wall = time.perf_counter() - t0
  rows = []
  for i, ((values, seed), out) in enumerate(zip(grid_members, outs)):
    s_i = base._replace(schedule=per_seed[seed][0], params=per_seed[seed][2])
    summary = write_outputs(workdir / f"m{i}", cfg, s_i, out, wall_time=wall)
    rows.append({"member": i, "seed": seed, **values,
                 "final_test_accuracy": summary["final_test_accuracy"],
                 "final_test_loss": summary["final_test_loss"],
                 "versions": summary["versions"],
                 "mean_staleness": summary["mean_staleness"]})
  total = sum(per_seed[s][0].num_arrivals for _, s in grid_members)
  results.write_csv(workdir / "sweep.csv", rows)
  results.write_json(workdir / "summary.json", {
      "members": len(grid_members), "wall_time_s": wall,
      "client_updates": total, "updates_per_s": total / wall})
  return rows
