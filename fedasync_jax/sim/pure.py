"""The simulator as one pure JAX function: jit, vmap and differentiate a run.

A run splits in two:

1. ``prepare(schedule, ...)`` (host, numpy, once per schedule): the plan
   and its ``Steps``, the per-task client hyperparameters and the strategy.
   ``stack`` pads several of them to one shape and stacks them, so that a
   ``vmap`` can run different schedules (seeds) side by side.
2. ``run(make_rule, client, params, prepared, ...)`` (pure): the whole
   simulation as ``init`` plus one ``lax.scan`` over the steps. Rule
   hyperparameters enter as ``rule_hp`` (``make_rule(rule_hp)`` is called
   inside the trace), so ``jax.jit``, ``jax.vmap`` (over hyperparameters,
   initial parameters, keys and stacked plans) and ``jax.jacfwd`` work on
   it. Reverse mode (``jax.grad``) needs loops of fixed length: the direct
   path (the CPU default, or ``batching="map", width=1``), or ``vmap``
   waves with ``run(..., masked_writes=True)`` (a step's arrivals applied
   at every position, padding masked, not in a loop to their count,
   which JAX cannot transpose: its error names ``lax.while_loop`` or
   ``lax.fori_loop`` with dynamic start/stop values); a client from
   ``client.local_update`` is differentiated as its fixed-length form
   (``fixed_steps=True``) whichever it was built with.

``executor.simulate`` and ``sweep.sweep`` run the same program in chunks,
with progress, checkpoints and histories on the host.

A ``Prepared`` is not an argument of a jitted function: its buffer sizes
fix the program's shapes, so close over it (as the example does) and pass
what varies (``rule_hp``, ``params``, ``key``, and under ``vmap`` one
member's ``steps``, ``hparams`` and ``init_snap``) as arguments.

Example:
  >>> import jax, jax.numpy as jnp, numpy as np, optax
  >>> from fedasync_jax import client, data, delays, rules, scheduler
  >>> from fedasync_jax import staleness
  >>> ds = data.from_client_arrays([np.ones((2, 1), np.float32)] * 4,
  ...                              [np.ones(2, np.float32)] * 4)
  >>> def loss(w, x, y, m):
  ...   return jnp.sum(m * (x @ w - y) ** 2) / jnp.maximum(m.sum(), 1)
  >>> upd = client.local_update(loss, optax.sgd(0.1), batch_size=2,
  ...                           max_examples=2)
  >>> s = scheduler.asynchronous(delays.delay_model(np.ones(4), np.ones(4)),
  ...                            num_updates=8, concurrency=2, seed=0)
  >>> prep = prepare(s)
  >>> make_rule = lambda a: rules.fedasync(a, staleness.polynomial(0.5))
  >>> def final_w(alpha):
  ...   state, _ = run(make_rule, upd, jnp.zeros(1), prep, rule_hp=alpha,
  ...                  key=jax.random.key(0), data=ds)
  ...   return state.params[0]
  >>> w = jax.jit(final_w)(0.5)
  >>> ws = jax.vmap(final_w)(jnp.array([0.3, 0.5]))
  >>> bool(jnp.isclose(ws[1], w)), float(jax.jacfwd(final_w)(0.5)) != 0.0
  (True, True)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.client import ClientHParams, ClientUpdate
from fedasync_jax.core.types import ServerRule
from fedasync_jax.data import ClientDataset
from fedasync_jax.sim import driver, strategies
from fedasync_jax.sim import plan as plan_lib
from fedasync_jax.sim.program import DeviceData, device_data, make_program
from fedasync_jax.sim.scheduler import Schedule
from fedasync_jax.sim.contract import (check_client_fits,
                                       check_rule_contract, check_rule_fits,
                                       check_schedules)
from fedasync_jax.sim.tasks import (check_hparams, check_params_fit,
                                    pad_tasks, rule_maker, task_hparams)


class Prepared(NamedTuple):
  """A schedule planned for the pure run (host-side, numpy).

  Attributes:
    plan: the padded ``plan.Plan`` (its buffer sizes fix the carry's
      shapes; with a member axis after ``stack``).
    steps: the program's ``plan.Steps``.
    hparams: per-task ``ClientHParams``, padded to the plan's task count.
    strategy: the strategy object (``strategies.choose``).
    schedules: the schedule(s) planned.
  """
  plan: plan_lib.Plan
  steps: plan_lib.Steps
  hparams: ClientHParams
  strategy: Any
  schedules: tuple


def prepare(schedule: Schedule, *, batching: Optional[str] = None,
            width: Optional[int] = None,
            arrivals_per_step: Optional[int] = None,
            eval_every: Optional[int] = None,
            hparams: Optional[ClientHParams] = None,
            chunk_steps: int = 1) -> Prepared:
  """Plans one schedule for ``run`` (see ``executor.simulate`` for the
  arguments; ``chunk_steps`` pads the step count to a multiple of it).

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(3),
    ...     np.ones(3)), num_updates=5, concurrency=2, seed=0)
    >>> prepare(s).steps.arr_valid.shape
    (5, 1)
  """
  one = stack([schedule], batching=batching, width=width,
              arrivals_per_step=arrivals_per_step, eval_every=eval_every,
              hparams=None if hparams is None else [hparams],
              chunk_steps=chunk_steps)
  first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
  return one._replace(plan=one.plan._replace(
      init_snap=int(one.plan.init_snap[0])), steps=first(one.steps),
                      hparams=first(one.hparams))


def stack(schedules: Sequence[Schedule], *, batching: Optional[str] = None,
          width: Optional[int] = None,
          arrivals_per_step: Optional[int] = None,
          eval_every: Optional[int] = None,
          hparams: Optional[Sequence[ClientHParams]] = None,
          chunk_steps: int = 1) -> Prepared:
  """Plans several schedules to one shape, stacked on a leading member axis
  (``vmap`` ``run`` over ``steps``, ``hparams`` and ``plan.init_snap``).

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> m = delays.delay_model(np.ones(3), np.ones(3))
    >>> ss = [scheduler.asynchronous(m, num_updates=5, concurrency=2,
    ...                              seed=k) for k in range(3)]
    >>> stack(ss).steps.arr_valid.shape
    (3, 5, 1)
  """
  scheds = list(schedules)
  if not scheds:
    raise ValueError("schedules must hold at least one Schedule")
  strategy, width = strategies.choose(
      batching, width=width, arrivals_per_step=arrivals_per_step,
      concurrency=max(s.stats.get("realised_concurrency", 1.0)
                      for s in scheds))
  chunk_steps = driver.check_chunk_steps(chunk_steps)
  plans = driver.make_plans(scheds, strategy, width=width,
                            arrivals_per_step=arrivals_per_step,
                            chunk_steps=chunk_steps)
  hps = list(hparams) if hparams is not None else [task_hparams(s)
                                                   for s in scheds]
  if len(hps) != len(scheds):
    raise ValueError(f"hparams must hold {len(scheds)} entries, got "
                     f"{len(hps)}")
  if hparams is not None:
    hps = [check_hparams(h, s) for h, s in zip(hps, scheds)]
  n_tasks = max(s.num_tasks for s in scheds)
  hps = [pad_tasks(h, n_tasks) for h in hps]
  steps = driver.member_steps(plans, scheds, eval_every)
  like = plans.like._replace(
      init_snap=np.asarray([p.init_snap for p in plans.members], np.int32))
  return Prepared(like, steps, jax.tree.map(lambda *xs: np.stack(xs), *hps),
                  strategy, tuple(scheds))


def run(make_rule: Union[ServerRule, Callable[[Any], ServerRule]],
        client: ClientUpdate, params,
        prepared: Prepared, *, key, data, rule_hp=None,
        eval_fn: Optional[Callable] = None, steps=None, hparams=None,
        init_snap=None, masked_writes: bool = False):
  """The whole simulation as one pure function.

  Args:
    make_rule: ``rule_hp -> ServerRule`` (called inside the trace), or a
      built ``ServerRule`` (then no ``rule_hp``).
    client: the client update.
    params: initial parameters.
    prepared: from ``prepare`` (or one member of ``stack``: pass its
      ``steps``, ``hparams`` and ``init_snap`` explicitly under ``vmap``).
    key: PRNG key (task ``k`` trains with ``fold_in(key, k)``).
    data: a ``ClientDataset`` or ``program.DeviceData``.
    rule_hp: the rule's hyperparameters (any pytree; may be traced).
    eval_fn: optional ``params -> dict`` evaluated where ``steps.arr_eval``
      says.
    steps, hparams, init_snap: override ``prepared``'s (e.g. one member
      of a stacked ``Prepared`` under ``vmap``).
    masked_writes: write snapshots as masked scatters and apply every
      arrival position of a wave step, padding masked; pass True under a
      ``vmap`` over stacked plans (see ``core.arrival.write_snapshot``)
      and for ``jax.grad`` through ``vmap`` waves.

  Returns:
    ``(state, outputs)``: the final server state and the per-step
    ``program.StepOutputs`` (``applied``, ``version``, ``train_loss``,
    ``eval``), padding included (``steps.arr_valid`` marks real arrivals;
    ``eval`` holds zeros where ``steps.arr_eval`` is False).

  Raises:
    ValueError: when the function is traced, arguments that do not fit,
      naming the argument, as ``executor.simulate`` does: ``prepared``
      not from ``prepare``/``stack`` (or stacked without one member's
      ``steps``, ``hparams`` and ``init_snap``), ``key`` not one PRNG key,
      a rule the schedule was not drawn for (``contract.check_rule_fits``),
      data of another client count or with a client larger than
      ``client.max_examples``, an ``eval_fn`` that ``prepared`` never
      calls, ``params`` the client update cannot train
      (``tasks.check_params_fit``). Rule hyperparameters that are traced
      (under ``jit``, ``vmap`` or ``grad``) cannot be range-checked: an
      out-of-range value runs (docs/reliability.md).
  """
  make_rule = _check_run_inputs(
      make_rule, client, params, prepared, key=key, data=data,
      rule_hp=rule_hp, eval_fn=eval_fn, given=(steps, hparams, init_snap))
  dev = data if isinstance(data, DeviceData) else device_data(data, eval_fn)
  steps = prepared.steps if steps is None else steps
  hparams = prepared.hparams if hparams is None else hparams
  check_params_fit(client, params, dev, hparams, key)  # (once per trace)
  prog = make_program(make_rule, client, prepared.strategy, eval_fn=eval_fn,
                      params_like=params, data_like=dev,
                      masked_writes=masked_writes)
  first = prepared.plan.init_snap if init_snap is None else init_snap
  carry = prog.init(params, prepared.plan, rule_hp, init_snap=first,
                    key=key)
  steps = jax.tree.map(jnp.asarray, steps)
  carry, outs = prog.run_chunk(carry, steps, key,
                               jax.tree.map(jnp.asarray, hparams), dev,
                               rule_hp)
  return carry.state, outs


def _check_run_inputs(make_rule, client, params, prepared, *, key, data,
                      rule_hp, eval_fn, given) -> Callable[[Any], ServerRule]:
  """``run``'s checks (at trace time, on static facts only); returns the
  rule as a function of ``rule_hp``."""
  if not isinstance(prepared, Prepared):
    raise ValueError(f"prepared must be what pure.prepare(schedule) or "
                     f"pure.stack(schedules) returns, got "
                     f"{checks.show(prepared)}")
  checks.prng_key("key", key, vmapped_by=prepared.strategy.vmapped and
                  f"batching={prepared.strategy.name!r}")
  members = len(prepared.schedules)
  if np.ndim(prepared.plan.init_snap) == 1 and any(g is None for g in given):
    raise ValueError(
        f"prepared stacks {members} schedules (pure.stack): pass one "
        f"member's steps=, hparams= and init_snap= (e.g. under jax.vmap "
        f"over prepared.steps, prepared.hparams and prepared.plan.init_snap)"
        f", or plan one schedule with pure.prepare")
  make_rule, built = rule_maker(make_rule, rule_hp)
  check_rule_fits(built, prepared.schedules)
  check_rule_contract(built, params)
  if isinstance(data, ClientDataset):
    if any(isinstance(a, jax.core.Tracer) for a in (data.counts,
                                                     data.offsets)):
      raise ValueError(
          "data is a ClientDataset traced by jax.jit or jax.vmap (passed as "
          "an argument), but its client sizes are read on the host: close "
          "over it, or pass program.device_data(data) as the argument")
    check_schedules(prepared.schedules, data.num_clients)
    check_client_fits(client, data)
  elif isinstance(data, DeviceData):
    num = np.shape(data.counts)[0]
    check_schedules(prepared.schedules, num)
  else:
    raise ValueError(f"data must be a ClientDataset or a program.DeviceData"
                     f", got {checks.show(data)}")
  evals = prepared.steps.arr_eval if given[0] is None else None
  if eval_fn is not None and evals is not None and not np.any(evals):
    raise ValueError("eval_fn is given but prepared evaluates nowhere: plan "
                     "the run with pure.prepare(..., eval_every=N)")
  return make_rule
