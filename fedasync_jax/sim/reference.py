"""The plain reference simulator: one client at a time, in event order.

This is the oracle for every speed-up. It walks the schedule's events in
order, keeps the parameters each in-flight client downloaded, trains a
client (one jitted call per client) when its update arrives, measures its
staleness from the server's own version counter, and applies the update
through ``core.arrival.arrive`` (the one arrival step every simulator
uses). It shares nothing with the vectorized executor but that step, the
rule, the client update and the schedule: no plan, no slots, no chunks.

Example:
  >>> import jax, jax.numpy as jnp, numpy as np, optax
  >>> from fedasync_jax import client, data, delays, rules, scheduler
  >>> ds = data.from_client_arrays([np.ones((2, 1), np.float32)] * 3,
  ...                              [np.ones(2, np.float32)] * 3)
  >>> def loss(w, x, y, m):
  ...   return jnp.sum(m * (x @ w - y) ** 2) / jnp.maximum(m.sum(), 1)
  >>> upd = client.local_update(loss, optax.sgd(0.1), batch_size=2,
  ...                           max_examples=2)
  >>> sched = scheduler.asynchronous(
  ...     delays.delay_model(np.ones(3), np.ones(3)), num_updates=5,
  ...     concurrency=2, seed=0)
  >>> out = run(rules.fedasync(0.5), upd, jnp.zeros(1), ds, sched,
  ...           key=jax.random.key(0))
  >>> int(out.state.version)
  5
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.arrival import arrive
from fedasync_jax.sim import scheduler as sched_lib
from fedasync_jax.core.client import ClientHParams, ClientRef, ClientUpdate
from fedasync_jax.data import ClientDataset
from fedasync_jax.core.types import RunResult, ServerRule, evaluation
from fedasync_jax.sim.contract import (check_client_fits, check_followed,
                                       check_rule_contract, check_rule_fits,
                                       check_schedules)
from fedasync_jax.sim.tasks import (check_eval_every, check_hparams,
                                    check_params_fit, task_hparams)


def _index(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def run(rule: ServerRule, client: ClientUpdate, params, data: ClientDataset,
        schedule: sched_lib.Schedule, *, key, hparams: Optional[
            ClientHParams] = None, eval_fn: Optional[Callable] = None,
        eval_every: Optional[int] = None, progress: Optional[
            Callable[[dict], None]] = None) -> RunResult:
  """Runs the schedule one client at a time.

  Args:
    rule: the server rule.
    client: the client update (``client.local_update``).
    params: initial server parameters.
    data: the population's examples.
    schedule: the events (``scheduler.asynchronous`` or ``synchronous``).
    key: PRNG key; task ``k`` trains with ``jax.random.fold_in(key, k)``.
    hparams: per-task client hyperparameters (default: all ones/zeros).
    eval_fn: ``params -> dict of scalars``, run when the version becomes a
      multiple of ``eval_every`` (and on the initial parameters).
    eval_every: evaluation interval in versions, an int >= 1 (``None``:
      none but the initial one); needs ``eval_fn``.
    progress: called after every arrival with a dict (``arrivals_done``,
      ``num_arrivals``, ``version``, ``wall_time_s``, ``last_eval``), as
      ``executor.simulate`` calls it after every chunk.

  Returns:
    A ``RunResult``.
  """
  if not isinstance(rule, ServerRule):
    raise ValueError(f"rule must be a ServerRule (reference.run takes no "
                     f"rule_hp -> ServerRule function: build the rule, "
                     f"e.g. make_rule(rule_hp)), got {checks.show(rule)}")
  checks.prng_key("key", key)
  check_schedules([schedule], data.num_clients)
  check_rule_fits(rule, [schedule])
  check_client_fits(client, data)
  hparams = (task_hparams(schedule) if hparams is None
             else check_hparams(hparams, schedule))
  eval_every = check_eval_every(eval_every, has_eval_fn=eval_fn is not None)
  check_params_fit(client, params, data, hparams, key)
  check_rule_contract(rule, params)
  x, y = jnp.asarray(data.x), jnp.asarray(data.y)
  offsets, counts = data.offsets, data.counts
  train = jax.jit(lambda p, o, c, k, h: client.update(
      p, ClientRef(x, y, o, c), k, h))
  step = jax.jit(lambda st, r, tau, end: arrive(rule, st, r, tau,
                                                ends_round=end))
  eval_jit = jax.jit(eval_fn) if eval_fn is not None else None

  t_start = time.perf_counter()
  state = rule.init(params)
  n_arr = schedule.num_arrivals
  arr = {k: np.zeros(n_arr, dt) for k, dt in (
      ("client", np.int64), ("simulated_time", np.float64),
      ("staleness", np.int64), ("applied", bool), ("version", np.int64),
      ("train_loss", np.float64))}
  evals = []
  if eval_jit is not None:
    evals.append(evaluation(0, 0.0, 0, eval_jit(state.params)))
  downloaded = {}
  a = 0
  for kind, k in schedule.events:
    if kind == sched_lib.DISPATCH:
      downloaded[k] = (state.params, int(state.version))
      continue
    start, v0 = downloaded.pop(k)
    if kind == sched_lib.LOST:
      continue
    c = int(schedule.client[k])
    result, metrics = train(start, offsets[c], counts[c],
                            jax.random.fold_in(key, k), _index(hparams, k))
    tau = int(state.version) - v0
    version_before = int(state.version)
    state, _, applied = step(state, result, tau,
                             bool(schedule.ends_round[a]))
    arr["client"][a] = c
    arr["simulated_time"][a] = schedule.arrival_time[k]
    arr["staleness"][a] = tau
    arr["applied"][a] = bool(applied)
    arr["version"][a] = int(state.version)
    arr["train_loss"][a] = float(metrics["loss"])
    if (eval_jit is not None and eval_every and int(state.version) !=
        version_before and int(state.version) % eval_every == 0):
      evals.append(evaluation(state.version, schedule.arrival_time[k], a + 1,
                              eval_jit(state.params), arr,
                              since=evals[-1]["client_updates"]))
    a += 1
    if progress is not None:
      progress({"arrivals_done": a, "num_arrivals": n_arr,
                "version": int(state.version),
                "wall_time_s": time.perf_counter() - t_start,
                "last_eval": evals[-1] if evals else None})
  jax.block_until_ready(state)
  check_followed(schedule, {"version": arr["version"][:a]})
  participation = np.bincount(arr["client"][arr["applied"]],
                              minlength=schedule.num_clients)
  stats = {"wall_time_s": time.perf_counter() - t_start,
           "num_arrivals": n_arr,
           "updates_per_s": n_arr / max(time.perf_counter() - t_start, 1e-9)}
  return RunResult(state, arr, evals, participation, stats)
