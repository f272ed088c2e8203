"""A sweep from a configuration: ``sweep_and_evaluate(cfg, grid, seeds,
workdir)``.

Runs a grid of sweepable settings (``grid.SWEEPABLE``) x seeds as one
compiled program (``sim.sweep.sweep``) and writes the outputs that
``sweep_outputs`` describes, plus ``config.json`` (the base configuration,
grid, seeds and chunk size) and each member's ``final_params.msgpack``.

SIGINT and SIGTERM stop the sweep at the next chunk boundary: the
checkpoint (``checkpoint.msgpack``) and the outputs so far are written and
``Interrupted`` is raised. ``sweep_and_evaluate(..., resume=True)``
(``fedasync-jax sweep --resume DIR``) continues with the configuration,
grid and seeds saved in the folder and ends bit-identical to an
uninterrupted sweep. The machinery is the single run's (``checkpoints``:
the checkpoint verifies itself against the folder's ``config.json``;
``folders``: a new sweep needs a new or empty folder, locked while it
runs). With ``force``, once the data are loaded, the checkpoint and what
a previous run or sweep wrote there are removed
(``sweep_outputs.remove_previous``), so that the folder describes the new
sweep only.

Chunks: on CPU a chunk runs the members one after another
(``members="map"``), so the sweep's chunk is ``ceil(run.chunk_steps /
members)`` steps: about as much work as one run's chunk, and a signal is
acted on as quickly. On an accelerator the members run batched and the
chunk is ``run.chunk_steps``.

Example:
  >>> from fedasync_jax.run import config
  >>> cfg = config.from_dict({"run": {"num_updates": 200}})
  >>> rows = sweep_and_evaluate(cfg, {"rule.alpha": [0.3, 0.9]}, [0, 1],
  ...                           "/tmp/sweep")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.run import config as config_lib
from fedasync_jax.run import schema
from fedasync_jax.run.schema import ConfigError
from fedasync_jax.run import (inputs, metrics, notices, results,
                              sweep_outputs, tensorboard)
from fedasync_jax.run.checkpoints import (CHECKPOINT, FINAL_PARAMS,
                                          Interrupted, check_same,
                                          check_kind, checkpoint_writer,
                                          read_checkpoint, read_kind,
                                          read_verified,
                                          remove_checkpoint,
                                          stop_on_signals, verify,
                                          write_params)
from fedasync_jax.run.folders import open_folder
from fedasync_jax.run.grid import (members, refuse_repeats, set_field,
                                   sweepable, with_rule_values)
from fedasync_jax.run.outputs import attempt, with_final_eval
from fedasync_jax.run.progress import ProgressBar, stage
from fedasync_jax.run.setup import (Setup, make_rule_from, make_update,
                                    seeded, setup)


def members_mode() -> str:
  """How the compiled chunk runs the members here: ``"map"`` (one after
  another) on CPU, ``"vmap"`` (batched) on an accelerator."""
  return "map" if jax.default_backend() == "cpu" else "vmap"


def member_mesh(num_members: int):
  """The devices the members are split over: every CPU device when the
  CPU was split (``fedasync-jax sweep --devices N``), else ``None``.

  Raises:
    ConfigError: when the members cannot be shared out evenly.
  """
  devs = jax.devices()
  if jax.default_backend() != "cpu" or len(devs) < 2:
    return None
  if num_members % len(devs):
    raise ConfigError(f"--devices {len(devs)}: the number of members "
                      f"({num_members}) must be a multiple of it")
  return jax.sharding.Mesh(np.array(devs), ("members",))


def chunk_steps_for(cfg, num_members: int,
                    mode: Optional[str] = None) -> int:
  """The sweep's steps per compiled chunk: ``run.chunk_steps`` shared out
  over the members when they run one after another, so a chunk does about
  as much work as a single run's.

  Example:
    >>> from fedasync_jax.run import config
    >>> cfg = config.from_dict({"run": {"chunk_steps": 64}})
    >>> chunk_steps_for(cfg, 18, "map"), chunk_steps_for(cfg, 18, "vmap")
    (4, 64)
  """
  steps = cfg.run.chunk_steps
  if (mode or members_mode()) == "vmap":
    return steps
  return max(1, -(-steps // max(1, num_members)))


def _check_members(cfg, grid: dict, seeds) -> None:
  """Validates every grid point's values through the configuration, before
  any work, and every seed against ``run.seed``'s range.

  ``run.seed`` is a setting of its own that no other field's check reads,
  so a grid point is checked once (with the first seed), not once per seed:
  a 100-point grid over 400 seeds takes 100 configuration checks of about
  2 ms each, not 40,000.
  """
  p = schema.param("run", "seed")
  for s in seeds:
    checks.integer("seeds: run.seed", s, low=p.low, high=p.high)
  for values, seed in members(grid, seeds[:1]):
    d = config_lib.to_dict(cfg)
    for k, v in values.items():
      set_field(d, k, v)
    d["run"]["seed"] = seed
    config_lib.from_dict(d)


SAY_CHECKING = 1000
"""From this many grid points ``checked`` says that it checks them (about
2 ms each on a 2-core CPU)."""

_LAST_CHECKED: list = []
"""``checked``'s last inputs (as JSON) and result: the command line checks
before it makes the folder, then the sweep again; at 4,000 members each
check took 8-12 s."""


def checked(cfg, grid: dict, seeds):
  """The grid (values as floats) and seeds (ints, default ``run.seed``)
  after checking them and every member's configuration (the last call's
  result is reused for equal inputs).

  Returns:
    ``(grid, seeds, grid_members)``.

  Raises:
    ValueError: a repeated value or seed, a member's invalid value, or a
      file the configuration names that is not there.
  """
  key = json.dumps([config_lib.to_dict(cfg), grid, seeds], sort_keys=True,
                   default=results.plain)
  if _LAST_CHECKED and _LAST_CHECKED[0] == key:
    return _LAST_CHECKED[1]
  result = _checked(cfg, grid, seeds)
  _LAST_CHECKED[:] = [key, result]
  return result


def _checked(cfg, grid: dict, seeds):
  config_lib.validate(cfg)
  inputs.check_present(config_lib.to_dict(cfg))
  grid = {str(k): [float(v) for v in vals] for k, vals in (grid or
                                                           {}).items()}
  seeds = list(seeds if seeds is not None and len(seeds)
               else [cfg.run.seed])
  for name, vals in [*grid.items(), ("seeds", seeds)]:
    refuse_repeats(name, vals)
  points = math.prod(len(v) for v in grid.values())
  if points >= SAY_CHECKING:
    print(f"fedasync-jax: checking the configurations of {points} grid "
          f"points", file=sys.stderr)
  _check_members(cfg, grid, seeds)
  seeds = [int(s) for s in seeds]
  return grid, seeds, members(grid, seeds)


def read_sweep_resume(workdir: Path, cfg=None, grid=None, seeds=None):
  """The saved configuration, grid, seeds, chunk size and verified
  checkpoint of an interrupted sweep.

  Args:
    workdir: the sweep's folder.
    cfg, grid, seeds: what the caller expects (``None``: the saved ones);
      any that differ from the saved ones are refused.

  Returns:
    ``(config, grid, seeds, chunk_steps, checkpoints.Saved)``.

  Raises:
    ValueError: no checkpoint or an unreadable one, a single run's folder,
      a configuration, grid or seeds that differ (naming them), or a
      checkpoint that does not belong to the folder's ``config.json``
      (``checkpoints.verify``).
  """
  workdir = Path(workdir)
  saved = read_kind(workdir, "sweep")
  if not {"base", "grid", "seeds"} <= set(saved):
    verify(read_checkpoint(workdir), config=saved,
           workdir=workdir)  # names what is missing
  if cfg is not None:
    check_same(workdir, "configuration", config_lib.to_dict(cfg),
               config_lib.to_dict(config_lib.from_dict(saved["base"])))
  check_same(workdir, "grid", None if grid is None else
             {str(k): [float(v) for v in vs] for k, vs in grid.items()},
             saved["grid"])
  check_same(workdir, "seeds", None if seeds is None else
             [int(s) for s in seeds], saved["seeds"])
  ck = read_checkpoint(workdir)
  check_kind(ck.meta.get("config"), "sweep", workdir)
  verify(ck, config=saved, workdir=workdir)  # config.json is unchanged
  saved_cfg = config_lib.from_dict(saved["base"])
  chunk = saved.get("chunk_steps") or chunk_steps_for(
      saved_cfg, len(members(saved["grid"], saved["seeds"])))
  ck = read_verified(workdir, config=saved, chunk_steps=int(chunk),
                     step_axis=1, saved=ck)
  return saved_cfg, saved["grid"], saved["seeds"], int(chunk), ck


def _per_seed(cfg, base: Setup, seeds, *, progress=None) -> dict:
  """``{seed: setup.Seeded}`` (schedule, task values, initial parameters,
  trace mapping); ``progress``: a ``ProgressBar.drawing`` for the
  schedules' draws."""
  out = {}
  for seed in seeds:
    c = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed))
    drawing = None if progress is None else functools.partial(
        progress, what=f"seed {seed}'s schedule")
    out[seed] = seeded(c, base.fed, base.model, base.rule, progress=drawing)
  return out


def _run_sweep(cfg, base: Setup, grid_members, per_seed, *, chunk_steps,
               progress=None, checkpoint=None, resume=None):
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
  update, lr_scale = base.update, None
  if any("client.lr" in v for v, _ in grid_members):
    # The members' rates scale one client update built at rate 1: an
    # optimizer's rate multiplies its step last, so a member at rate v
    # then computes v * (-g), bit for bit what a run at rate v computes.
    update = make_update(dataclasses.replace(cfg, client=dataclasses.replace(
        cfg.client, lr=1.0)), base.model, base.fed)
    lr_scale = [v["client.lr"] for v, _ in grid_members]
  params = jax.tree.map(lambda *xs: jnp.stack(xs),
                        *[per_seed[s].params for _, s in grid_members])
  return sweep_lib.sweep(
      make_rule, rule_hp, update, params, base.fed.train,
      [per_seed[s].schedule for _, s in grid_members],
      keys=jnp.stack([jax.random.key(s) for _, s in grid_members]),
      hparams=[per_seed[s].hparams for _, s in grid_members],
      client_lr_scale=lr_scale, width=cfg.run.width,
      batching=None if cfg.run.batching == "auto" else cfg.run.batching,
      chunk_steps=chunk_steps, eval_fn=base.eval_fn,
      eval_every=base.eval_every_versions, member_params=True,
      progress=progress, checkpoint=checkpoint, resume=resume,
      members=members_mode(), mesh=member_mesh(len(grid_members)))


def _start(cfg, grid, seeds, workdir: Path, resume: bool):
  """Checks the inputs (a new sweep) or reads what the folder saved (a
  resumed one; the folder is already locked).

  Returns:
    ``(cfg, grid, seeds, grid_members, chunk_steps, saved config dict,
    checkpoints.Saved or None)``.
  """
  if resume:
    cfg, grid, seeds, chunk, ck = read_sweep_resume(workdir, cfg, grid,
                                                    seeds)
    grid, seeds, grid_members = checked(cfg, grid, seeds)
    return (cfg, grid, seeds, grid_members, chunk,
            results.read_json(workdir / "config.json"), ck)
  grid, seeds, grid_members = checked(cfg, grid, seeds)
  chunk = chunk_steps_for(cfg, len(grid_members))
  saved = {"base": config_lib.to_dict(cfg), "grid": grid, "seeds": seeds,
           "chunk_steps": chunk}
  return cfg, grid, seeds, grid_members, chunk, saved, None


def sweep_and_evaluate(cfg, grid: dict, seeds, workdir, *,
                       resume: bool = False, force: bool = False,
                       show_progress: bool = True) -> list:
  """Runs the full grid x seeds as one compiled program and writes the
  sweep's outputs (``sweep_outputs``) into ``workdir``.

  Args:
    cfg: the base configuration (``None`` with ``resume``: the saved one).
    grid: ``{field: [values]}`` of sweepable fields (``grid.parse_grid``;
      ``None`` with ``resume``: the saved one).
    seeds: the seeds (default ``[cfg.run.seed]``; ``None`` with
      ``resume``: the saved ones).
    workdir: the output folder: a new or empty one (``force``: any),
      locked while the sweep writes into it.
    resume: continue the interrupted sweep in ``workdir`` (a ``cfg``,
      ``grid`` or ``seeds`` given must equal the saved ones).
    force: write into a non-empty folder (a checkpoint and a previous
      sweep's members there are removed: ``remove_previous``).
    show_progress: draw the progress bar on stderr.

  Returns:
    One row dict per member (as in ``sweep.csv``).

  Raises:
    Interrupted: a signal stopped the sweep (after its checkpoint and the
      outputs so far were written).
    ValueError: bad inputs, a taken or locked folder, or nothing to
      resume.
  """
  workdir = Path(workdir)
  if cfg is not None:  # config.json saves absolute paths
    cfg = config_lib.absolute_paths(cfg)
  if not resume:
    checked(cfg, grid, seeds)  # before any folder is made
  with open_folder(workdir, command="sweep", resume=resume, force=force), \
      contextlib.ExitStack() as signals:
    t0 = time.perf_counter()
    cfg, grid, seeds, grid_members, chunk, saved, ck = _start(
        cfg, grid, seeds, workdir, resume)
    before = ck.elapsed_s if ck is not None else 0.0
    warned = notices.warn(notices.sweep_warnings(cfg, grid, seeds))
    bar = None
    if show_progress:
      bar = ProgressBar(label=f"sweep of {len(grid_members)} members")
    stage(bar, f"loading data ({cfg.data.name}, {cfg.data.num_clients} "
          f"clients) and drawing {len(seeds)} schedule(s)")
    # (loads the data: may fail, before anything is written)
    base = setup(cfg, per_run=False)
    per_seed = _per_seed(cfg, base, seeds,
                         progress=getattr(bar, "drawing", None))
    # Until here Ctrl-C raises KeyboardInterrupt and nothing is written;
    # from here on it stops the sweep at the next chunk, after a checkpoint.
    flag = signals.enter_context(stop_on_signals({}))
    if not resume:  # (with force, another run's or sweep's outputs go)
      notices.warn(sweep_outputs.remove_previous(workdir), into=warned)
      results.write_json(workdir / "config.json", saved)
    stage(bar, f"compiling (the first progress line follows the first "
          f"{chunk} steps)")

    def elapsed() -> float:
      return before + time.perf_counter() - t0
    # Each member's evaluations stream to its folder's metrics.jsonl.
    streams = metrics.member_streams(
        [workdir / f / metrics.METRICS
         for f in sweep_outputs.member_folders(grid, grid_members)],
        [per_seed[seed].schedule for _, seed in grid_members],
        eval_every=base.eval_every_versions, resume=resume)
    outs = _run_sweep(
        cfg, base, grid_members, per_seed, chunk_steps=chunk,
        progress=metrics.fan_out(bar, streams),
        checkpoint=checkpoint_writer(
            workdir / CHECKPOINT, flag, cfg.run.checkpoint_every_s,
            config=saved, chunk_steps=chunk, step_axis=1, elapsed=elapsed),
        resume=None if ck is None else ck.checkpoint)
    stopped = any(o.stats["stopped_early"] for o in outs)
    if not stopped:  # what was computed, first
      for folder, out in zip(sweep_outputs.member_folders(grid,
                                                          grid_members),
                             outs):
        write_params(workdir / folder / FINAL_PARAMS, out.state.params)
      outs = [with_final_eval(o, base.eval_fn) for o in outs]
    rows = sweep_outputs.write_sweep(
        workdir, base, per_seed, grid, grid_members, outs,
        wall_time=elapsed(), resumed_s=before, warnings=warned,
        plots=cfg.run.plots)
    if cfg.run.tensorboard:  # one folder of events per member
      for r in rows:
        attempt([], f"TensorBoard events of {r['folder']}",
                functools.partial(
                    metrics.write_tensorboard,
                    workdir / r["folder"] / metrics.METRICS,
                    workdir / tensorboard.FOLDER / r["folder"]),
                errors=(OSError, ValueError))
    if not stopped:
      remove_checkpoint(workdir)
  if stopped:
    done = sum(r["client_updates"] for r in rows)
    total = sum(per_seed[s].schedule.num_arrivals for _, s in grid_members)
    raise Interrupted(f"stopped by {flag.get('signal')} after {done} of "
                      f"{total} client updates ({len(rows)} members); "
                      f"outputs so far and checkpoint saved in {workdir}")
  return rows
