"""The vectorized executor: many clients per compiled call, exact order.

``simulate`` runs a schedule through the compiled program
(``program.make_program``): a ``lax.scan`` over the fixed-shape steps of a
``plan.Plan``. Each step trains clients from the snapshot buffer (the
strategy of ``strategies.choose``: one arriving client on the direct path,
or a wave of clients kept in result slots) and applies the step's arrivals
in order through ``core.arrival.arrive``, writing the versions that later
clients start from into the snapshot buffer. The result equals the
one-client-at-a-time reference simulator up to float reassociation.

The scan runs in chunks of ``chunk_steps`` steps, one compiled program for
every chunk, so that Python can report progress, checkpoint and stop
between chunks (``driver.run_loop``). Evaluations at the versions the
reference evaluates run inside the scan, so the history is exact whatever
the chunking.

Example:
  >>> import jax, jax.numpy as jnp, numpy as np, optax
  >>> from fedasync_jax import client, data, delays, rules, scheduler
  >>> ds = data.from_client_arrays([np.ones((2, 1), np.float32)] * 4,
  ...                              [np.ones(2, np.float32)] * 4)
  >>> def loss(w, x, y, m):
  ...   return jnp.sum(m * (x @ w - y) ** 2) / jnp.maximum(m.sum(), 1)
  >>> upd = client.local_update(loss, optax.sgd(0.1), batch_size=2,
  ...                           max_examples=2)
  >>> sched = scheduler.asynchronous(
  ...     delays.delay_model(np.ones(4), np.ones(4)), num_updates=6,
  ...     concurrency=2, seed=0)
  >>> out = simulate(rules.fedasync(0.5), upd, jnp.zeros(1), ds, sched,
  ...                key=jax.random.key(0))
  >>> int(out.state.version)
  6
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp

from fedasync_jax.core import checks
from fedasync_jax.core.client import ClientHParams, ClientUpdate
from fedasync_jax.core.types import RunResult, ServerRule
from fedasync_jax.data import ClientDataset
from fedasync_jax.sim import driver, strategies
from fedasync_jax.sim.checkpoint import Checkpoint, run_digest  # noqa: F401
from fedasync_jax.sim.program import (cached, device_data, make_program,
                                      signature, strong_arrays)
from fedasync_jax.sim.scheduler import Schedule
from fedasync_jax.sim.strategies import BATCHINGS, default_batching  # noqa: F401
from fedasync_jax.sim.contract import (check_client_fits,
                                       check_rule_contract, check_rule_fits,
                                       check_schedules)
from fedasync_jax.sim.tasks import (check_eval_every, check_hparams,
                                    check_params_fit, pad_tasks, rule_maker,
                                    task_hparams)


def simulate(rule: Union[ServerRule, Callable[[Any], ServerRule]],
             client: ClientUpdate, params, data: ClientDataset,
             schedule: Schedule, *, key, rule_hp=None,
             hparams: Optional[ClientHParams] = None,
             width: Optional[int] = None,
             arrivals_per_step: Optional[int] = None,
             batching: Optional[str] = None, map_batch_size: int = 8,
             chunk_steps: int = 64, eval_fn: Optional[Callable] = None,
             eval_every: Optional[int] = None,
             progress: Optional[Callable[[dict], None]] = None,
             checkpoint: Optional[Callable[[Checkpoint], None]] = None,
             resume: Optional[Checkpoint] = None,
             num_classes: Optional[int] = None) -> RunResult:
  """Runs a schedule with the vectorized executor.

  Args:
    rule: the server rule, or a function ``rule_hp -> ServerRule`` (called
      inside the compiled program with ``rule_hp`` as traced arrays).
      Compiled programs are kept in memory: a call whose rule (the same
      object, or the same function with other ``rule_hp`` values), client
      update, evaluation function and shapes equal an earlier call's
      compiles nothing.
    client: the client update.
    params: initial server parameters.
    data: the population's examples (placed on the device once).
    schedule: the events.
    key: PRNG key; task ``k`` trains with ``jax.random.fold_in(key, k)``
      (as in the reference simulator).
    rule_hp: the hyperparameters passed to ``rule`` when it is a function
      (a pytree of numbers or arrays).
    hparams: per-task client hyperparameters (``tasks.task_hparams``).
    width: clients trained per step (lanes with ``"refill"``). Default: 1
      with ``"map"`` batching (the direct path), the schedule's
      parallelism with ``"refill"`` (``driver.refill_layout``), else
      ``plan.default_width`` of the concurrency (``strategies.choose``).
    arrivals_per_step: arrivals applied per step (default ``2 * width``,
      or 1 on the direct path).
    batching: ``"vmap"``, ``"map"``, ``"refill"``, ``"devices"`` or
      ``"map_batched"`` (``strategies.BATCHINGS``; default by backend and
      number of devices: ``strategies.default_batching``).
    map_batch_size: the batch size of ``"map_batched"``.
    chunk_steps: plan steps per compiled call.
    eval_fn: jit-traceable ``params -> dict of scalars``; if it has an
      attribute ``data`` (``models.make_evaluator``), it is called as
      ``eval_fn(params, eval_fn.data)`` with the data passed as an argument
      of the compiled program rather than baked into it.
    eval_every: evaluation interval in versions, an int >= 1 (``None``:
      none but the initial one); needs ``eval_fn``.
    progress: called after every chunk with a dict (``arrivals_done``,
      ``num_arrivals``, ``version``, ``wall_time_s``, ``last_eval``).
    checkpoint: called after every chunk with a ``Checkpoint`` (host
      copies of the carry and the outputs so far); the caller decides
      whether to write it (``Checkpoint.to_bytes``). If it returns True the
      run stops there and the result holds the history so far
      (``stats["stopped_early"]``).
    resume: a ``Checkpoint`` of the same run (same arguments) to continue
      from; the result equals the uninterrupted run's. Its
      ``run_digest`` (schedule, plan, key, hyperparameters,
      ``chunk_steps``) must match this call's, else a ``ValueError``.
    num_classes: the model's number of classes (``ModelFns.num_classes``);
      default ``eval_fn.num_classes`` where the evaluator has one. When
      known, integer labels of ``data`` (``y_train``) and of the
      evaluator's data (``y_test``) must lie in ``[0, num_classes)``
      (``check_labels``): a label beyond the model's outputs trains to NaN
      losses with no error. Neither the client update nor a plain
      ``eval_fn`` says what the model outputs, so without it the labels
      are not checked.

  Returns:
    A ``RunResult``; ``stats`` holds the plan shape and ``padding_waste``.

  Raises:
    ValueError: bad arguments, naming the argument (``params``,
      ``chunk_steps``, ``y_train``...).
  """
  checks.float_params("params", params)
  checks.prng_key("key", key)
  check_labels(data, eval_fn, num_classes)
  chunk_steps = driver.check_chunk_steps(chunk_steps)
  check_schedules([schedule], data.num_clients)
  rule_hp = strong_arrays(rule_hp, like=params)
  make_rule, built = rule_maker(rule, rule_hp)
  check_rule_fits(built, [schedule])
  check_client_fits(client, data)
  check_eval_every(eval_every, has_eval_fn=eval_fn is not None)
  width_given = width is not None
  strategy, width = strategies.choose(
      batching, width=width, arrivals_per_step=arrivals_per_step,
      concurrency=schedule.stats.get("realised_concurrency", 1.0),
      map_batch_size=map_batch_size)
  checks.prng_key("key", key, vmapped_by=strategy.vmapped and
                  f"batching={strategy.name!r}")
  t0 = time.perf_counter()
  steps_of_client, width = driver.refill_layout(
      strategy, client, data, [schedule], width, width_given)
  plans = driver.make_plans([schedule], strategy, width=width,
                            arrivals_per_step=arrivals_per_step,
                            chunk_steps=chunk_steps,
                            steps_of_client=steps_of_client)
  plan_time = time.perf_counter() - t0
  hp_table = jax.tree.map(jnp.asarray, pad_tasks(
      check_hparams(hparams, schedule) if hparams is not None
      else task_hparams(schedule),
      driver.bucket(schedule.num_tasks)))
  dev = device_data(data, eval_fn)

  options = driver.program_options(strategy)

  def build():
    check_params_fit(client, params, dev, hp_table, key)
    check_rule_contract(built, params)
    prog = make_program(make_rule, client, strategy, eval_fn=eval_fn,
                        params_like=params, data_like=dev)
    return prog, driver.jit_program(prog.run_chunk, options,
                                    donate_argnums=0)
  # Compile once per shape: equal calls reuse the jitted program.
  prog, run_chunk = cached(
      ("simulate", rule, client, strategy, eval_fn, plans.num_snaps,
       plans.num_slots, signature(params), signature(dev),
       signature(hp_table), signature(rule_hp), options), build)
  carry = prog.init(params, plans.like, rule_hp, key=key)
  steps, axes = driver.steps_for(plans, [schedule], eval_every)
  digest = ("" if checkpoint is None and resume is None else
            run_digest([schedule], steps, key, hp_table, rule_hp,
                       chunk_steps=chunk_steps))
  first_chunk, outs = 0, []
  if resume is not None:
    carry, first_chunk, outs = resume.restore(carry, digest)
  init_eval = (driver.initial_eval(eval_fn, params, dev.eval_data)
               if eval_fn is not None else None)
  loop = driver.Loop(
      lambda c, chunk: run_chunk(c, chunk, key, hp_table, dev, rule_hp),
      members=None, axes=axes)
  carry, outs = driver.run_loop(
      loop, carry, steps, chunk_steps=chunk_steps,
      num_arrivals=schedule.num_arrivals, first_chunk=first_chunk, outs=outs,
      progress=progress, checkpoint=checkpoint, last_eval=init_eval, t0=t0,
      run_digest=digest)
  state = jax.block_until_ready(carry.state)
  wall = time.perf_counter() - t0
  real, padded = plans.real[0], plans.members[0]

  def stats(_):
    return {"wall_time_s": wall, "plan_time_s": plan_time,
            "num_arrivals": schedule.num_arrivals,
            "updates_per_s": schedule.num_arrivals / max(wall, 1e-9),
            "num_steps": real.num_steps, "padded_steps": padded.num_steps,
            "width": padded.width,
            "arrivals_per_step": padded.arrivals_per_step,
            "result_slots": real.num_slots,
            "snapshot_slots": real.num_snaps,
            "padding_waste": real.padding_waste,
            "batching": batching or default_batching(),
            "direct": strategy.direct,
            "trained_clients": int(padded.wave_valid.sum())}
  return driver.results_for(
      [schedule], plans, [driver.merged_outputs(outs, False)], [state],
      eval_every=eval_every, eval_fn=eval_fn, init_evals=[init_eval],
      stats=stats)[0]


def check_labels(data: ClientDataset, eval_fn: Optional[Callable] = None,
                 num_classes: Optional[int] = None) -> None:
  """Refuses labels outside ``[0, num_classes)`` (and float labels that
  are not whole numbers, ``checks.labels``): ``data.y`` (named
  ``y_train``) and the labels of ``eval_fn.data`` (``y_test``;
  ``models.make_evaluator`` pads them with 0). ``num_classes`` defaults to
  ``eval_fn.num_classes``; with neither (a regression, a plain
  ``eval_fn``), nothing is checked.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import data
    >>> ds = data.from_client_arrays([np.ones((2, 1), np.float32)] * 2,
    ...                              [np.array([0, 4], np.int32)] * 2)
    >>> check_labels(ds, num_classes=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: y_train holds labels up to 4, but the model has 3 classes ...
  """
  if num_classes is None:
    num_classes = getattr(eval_fn, "num_classes", None)
  if num_classes is None:
    return
  num_classes = checks.integer("num_classes", num_classes, low=1)
  checks.labels("y_train", data.y, num_classes)
  test = getattr(eval_fn, "data", None)
  if isinstance(test, (tuple, list)) and len(test) == 3:
    checks.labels("y_test", test[1], num_classes)
