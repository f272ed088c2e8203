#!/usr/bin/env python
"""W1 throughput benchmark: client updates per second on real MNIST.

Workload W1 (fixed; see benchmarks/README.md):

* MNIST (``../shared/data/mnist.npz`` beside the project, or ``--data``),
  pixels scaled to [0, 1] then ``(x - 0.1307) / 0.3081``, float32, flattened
  to 784; 1000 clients, labels split by Dirichlet(0.5) (seed 0) with
  ``partition.dirichlet`` and ``data.from_partition``;
* the 784-200-200-10 ReLU MLP (``models.mlp()``), 1 local epoch, batch 10,
  SGD lr 0.05 (``client.local_update``);
* FedAsync, alpha 0.6, polynomial staleness a = 0.5;
* closed-loop concurrency 100, lognormal device speeds (sigma 1, seed 0),
  work = the clients' example counts; 5000 client updates;
* test accuracy on the 10,000 MNIST test images (``models.make_evaluator``).

What it measures, side by side in one process (medians of repeats; see
benchmarks/README.md for the method):

* ``executor``: ``executor.simulate`` as a user calls it (phase 1, whole
  runs alternated with the reference: end to end, compilation = the first
  chunk), and its compiled chunk program driven chunk by chunk and
  interleaved with pure compute (phase 2, steady state).
* ``reference``: ``reference.run`` (one jitted call per client); its first
  arrival holds the compilation.
* ``pure_compute``: the limit. The same ``client.local_update``, batched the
  executor's way (``lax.map``/``vmap`` over ``width`` clients, a ``lax.scan``
  over groups inside one jit), on the schedule's trained clients in plan
  order, all from the initial parameters: no scheduling, mixing, slots or
  padding. ``pure_compute_python_loop``: the reference's batching (one
  jitted call per client) without mixing.
* prototypes of library changes (written here, never edited into the
  library), checked against the library's results: ``proto_executor`` (a
  step with dynamic-length loops over the valid wave entries and arrivals),
  ``skip_masked_steps`` (a client update running ``ceil(count / batch)``
  local steps), ``vmap_lanes`` (dynamic loop over groups of ``--lanes``
  clients trained with ``vmap``), and ``bookkeeping_only`` (the executor
  with a client that does not train).

``--sweep-widths`` adds the executor (and pure compute) for each batching in
``executor.BATCHINGS`` and several widths. ``--quick`` runs 1000 updates and
no sweep (under 3 minutes on the project's 2-core CPU).

The LAST line printed is one JSON object; the same object, with machine
information, the date and the command line, is written to
``benchmarks/results/W1_<date>[_quick].json``.

Usage:
  python benchmarks/throughput.py --quick
  python benchmarks/throughput.py --sweep-widths
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402  (also puts the repository on sys.path)
from common import W1, log, median  # noqa: E402
from fedasync_jax import tasks


# ---------------------------------------------------------------------------
# Workload.


class Setup:
  """Everything the measurements share."""

  def __init__(self, ds, x_test, y_test):
    import jax
    import optax
    from fedasync_jax import client, delays, models, rules, staleness
    self.ds = ds
    self.model = models.mlp()
    self.params = self.model.init(jax.random.key(W1["model_seed"]))
    self.update = client.local_update(
        self.model.loss, optax.sgd(W1["client_lr"]),
        batch_size=W1["batch_size"], max_examples=ds.max_count,
        epochs=W1["epochs"])
    self.skip_update = skip_masked_update(
        self.model.loss, optax.sgd(W1["client_lr"]),
        batch_size=W1["batch_size"], max_examples=ds.max_count)
    self.rule = rules.fedasync(0.6, staleness.polynomial(0.5))
    speeds = delays.device_speeds("lognormal", W1["num_clients"], sigma=1.0,
                                  seed=0)
    self.delay_model = delays.delay_model(
        speeds, ds.counts.astype(float) * W1["epochs"])
    self.key = jax.random.key(W1["train_key"])
    from fedasync_jax import executor
    self.dev = executor.device_data(ds)  # one device copy, shared
    self.evaluator = models.make_evaluator(self.model, x_test, y_test)
    self._eval = jax.jit(self.evaluator)
    self._schedules = {}

  def schedule(self, n):
    from fedasync_jax import scheduler
    if n not in self._schedules:
      self._schedules[n] = scheduler.asynchronous(
          self.delay_model, num_updates=n, concurrency=W1["concurrency"],
          seed=W1["schedule_seed"])
    return self._schedules[n]

  def accuracy(self, params):
    return float(self._eval(params, self.evaluator.data)["accuracy"])


# ---------------------------------------------------------------------------
# The prototype of a client update that skips the fully masked local steps.


def skip_masked_update(loss_fn, optimizer, *, batch_size, max_examples):
  """``client.local_update`` (1 epoch, no early stopping, no epoch decay,
  stateless) with a ``fori_loop`` of ``ceil(count / batch)`` steps instead
  of a ``scan`` of ``ceil(max_examples / batch)`` masked steps. Same
  permutation, minibatches, proximal term and rate scale, so the result is
  the library's (checked in ``check_skip_update``)."""
  import jax
  import jax.numpy as jnp
  import optax
  from fedasync_jax.core.client import ClientUpdate
  from fedasync_jax.core.types import ClientResult
  B, M = int(batch_size), int(max_examples)
  per_epoch = -(-M // B)

  def update(params, data, key, hparams):
    leaves0 = jax.tree.leaves(params)
    dtype = leaves0[0].dtype
    count = jnp.asarray(data.count, jnp.int32)
    offset = jnp.asarray(data.offset, jnp.int32)
    lr_scale = jnp.asarray(hparams.lr_scale, dtype)
    rho = jnp.asarray(hparams.prox_rho, dtype)

    def objective(p, x, y, mask):
      loss = loss_fn(p, x, y, mask)
      sq = sum(jnp.sum((a - b) ** 2) for a, b in
               zip(jax.tree.leaves(p), leaves0))
      return loss + 0.5 * rho * sq, loss

    grad_fn = jax.value_and_grad(objective, has_aux=True)
    ekey = jax.random.fold_in(key, jnp.int32(0))
    u = jax.random.uniform(ekey, (M,))
    u = jnp.where(jnp.arange(M) < count, u, 2.0)
    perm = jnp.argsort(u).astype(jnp.int32)
    n_steps = jnp.minimum((count + B - 1) // B, per_epoch)

    def body(j, c):
      p, opt_state, loss_sum = c
      pos = j * B + jnp.arange(B, dtype=jnp.int32)
      valid = pos < count
      idx = offset + perm[jnp.where(valid, pos, 0)]
      (_, loss), g = grad_fn(p, data.x[idx], data.y[idx],
                             valid.astype(dtype))
      upd, opt_state = optimizer.update(g, opt_state, p)
      upd = jax.tree.map(lambda v: (lr_scale * v).astype(v.dtype), upd)
      return optax.apply_updates(p, upd), opt_state, loss_sum + loss

    p, _, loss_sum = jax.lax.fori_loop(
        0, n_steps, body,
        (params, optimizer.init(params), jnp.zeros((), dtype)))
    delta = jax.tree.map(lambda a, b: a - b, p, params)
    metrics = {"loss": loss_sum / jnp.maximum(n_steps, 1).astype(dtype),
               "steps": n_steps, "epochs": (n_steps > 0).astype(jnp.int32)}
    return ClientResult(p, delta, count.astype(dtype)), metrics

  return ClientUpdate(update, per_epoch, M, B)


def null_update(update):
  """A client that does no training (returns its start parameters): the
  executor driven with it measures the per-update bookkeeping alone
  (start-parameter gather, result slot, mix, snapshot writes)."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax.core.client import ClientUpdate
  from fedasync_jax.core.types import ClientResult

  def fn(params, data, key, hparams):
    dtype = jax.tree.leaves(params)[0].dtype
    delta = jax.tree.map(jnp.zeros_like, params)
    z = jnp.zeros((), dtype)
    return (ClientResult(params, delta, jnp.asarray(data.count, dtype)),
            {"loss": z, "steps": jnp.zeros((), jnp.int32),
             "epochs": jnp.zeros((), jnp.int32)})
  return ClientUpdate(fn, update.num_steps, update.max_examples,
                      update.batch_size)


def check_skip_update(st, n=24):
  """Max relative difference of the prototype update vs the library's."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from fedasync_jax.core.client import ClientHParams, ClientRef
  x, y = jnp.asarray(st.ds.x), jnp.asarray(st.ds.y)
  h = ClientHParams(jnp.float32(1.0), jnp.float32(0.0))

  def both(p, o, c, k):
    ref = ClientRef(x, y, o, c)
    a, ma = st.update.update(p, ref, k, h)
    b, mb = st.skip_update.update(p, ref, k, h)
    diff = jnp.max(jnp.stack([jnp.max(jnp.abs(u - v)) for u, v in zip(
        jax.tree.leaves(a.params), jax.tree.leaves(b.params))]))
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(u))
                               for u in jax.tree.leaves(a.params)]))
    return diff / scale, jnp.abs(ma["loss"] - mb["loss"])

  f = jax.jit(both)
  rng = np.random.default_rng(0)
  worst, worst_loss = 0.0, 0.0
  for c in rng.choice(st.ds.num_clients, n, replace=False):
    d, dl = f(st.params, int(st.ds.offsets[c]), int(st.ds.counts[c]),
              jax.random.fold_in(st.key, int(c)))
    worst, worst_loss = max(worst, float(d)), max(worst_loss, float(dl))
  return worst, worst_loss


# ---------------------------------------------------------------------------
# Measurements.


def rates_from_marks(t0, marks, n_total):
  """(end-to-end, steady, first-chunk seconds, compile estimate) from
  ``[(time, done_so_far), ...]`` after each chunk/arrival."""
  times = [t0] + [m[0] for m in marks]
  done = [0] + [m[1] for m in marks]
  total = times[-1] - t0
  e2e = n_total / total if total > 0 else float("nan")
  first = times[1] - times[0] if len(times) > 1 else float("nan")
  if len(times) > 2 and times[-1] > times[1]:
    steady = (done[-1] - done[1]) / (times[-1] - times[1])
    compile_s = max(0.0, first - done[1] / steady) if steady > 0 else first
  else:  # a single chunk: no steady state to separate from compilation
    steady, compile_s = float("nan"), float("nan")
  return e2e, steady, first, compile_s


def run_executor(st, sched, *, width, arrivals_per_step, batching,
                 chunk_steps, map_batch_size=8):
  """``executor.simulate`` timed chunk by chunk. The work of a chunk is the
  clients it trains (from the same plan), not the arrivals it applies: the
  first chunk trains the ~C clients in flight ahead of their arrivals and
  the last ones apply arrivals trained earlier, so arrivals per chunk would
  overstate the steady rate of short runs."""
  import jax
  import numpy as np
  from fedasync_jax import executor, plan as plan_lib
  w, direct = executor.choose_width(
      width, arrivals_per_step, batching or executor.default_batching(),
      sched.stats.get("realised_concurrency", 1.0))
  p = (plan_lib.make_direct_plan(sched) if direct else
       plan_lib.make_plan(sched, width=w, arrivals_per_step=arrivals_per_step))
  n_chunks = -(-p.num_steps // chunk_steps)
  trained = np.zeros(n_chunks * chunk_steps, np.int64)
  trained[:p.num_steps] = p.wave_valid.sum(axis=1)
  trained = np.cumsum(trained.reshape(n_chunks, chunk_steps).sum(axis=1))
  times = []
  t0 = time.perf_counter()
  out = executor.simulate(
      st.rule, st.update, st.params, st.ds, sched, key=st.key, width=width,
      arrivals_per_step=arrivals_per_step, batching=batching,
      map_batch_size=map_batch_size, chunk_steps=chunk_steps,
      progress=lambda info: times.append(time.perf_counter()))
  jax.block_until_ready(out.state.params)
  assert len(times) == n_chunks, (len(times), n_chunks)
  marks = [(t, int(n)) for t, n in zip(times, trained)]
  e2e, steady, first, comp = rates_from_marks(t0, marks,
                                              sched.num_arrivals)
  return {"updates_per_s": steady, "updates_per_s_end_to_end": e2e,
          "first_chunk_s": first, "compile_s": comp,
          "wall_s": time.perf_counter() - t0,
          "chunk_s": [b - a for a, b in zip([t0] + times[:-1], times)],
          "stats": out.stats, "params": out.state.params}


def run_reference(st, sched):
  import jax
  from fedasync_jax import reference
  marks = []
  t0 = time.perf_counter()

  def progress(a, n):
    if a == 1 or a == n:
      marks.append((time.perf_counter(), a))
  out = reference.run(st.rule, st.update, st.params, st.ds, sched,
                      key=st.key, progress=progress)
  jax.block_until_ready(out.state.params)
  e2e, steady, first, comp = rates_from_marks(t0, marks,
                                              sched.num_arrivals)
  return {"updates_per_s": steady, "updates_per_s_end_to_end": e2e,
          "compile_s": comp, "wall_s": time.perf_counter() - t0,
          "params": out.state.params}


def trained_tasks(sched, width, arrivals_per_step):
  """The schedule's trained tasks in the executor's plan (wave) order."""
  from fedasync_jax import plan as plan_lib
  p = plan_lib.make_plan(sched, width=width,
                         arrivals_per_step=arrivals_per_step)
  return p.wave_task[p.wave_valid]


# ---------------------------------------------------------------------------
# The prototype executor step (a proposed change to executor.make_program).


def keep_fields(res, results):
  """Drops the ``ClientResult`` fields that the library's result buffer
  does not hold (newer libraries keep only the rule's ``result_fields``)."""
  return res._replace(**{f: None for f in res._fields
                         if getattr(results, f, 0) is None})


def proto_run_chunk(rule, update, lanes=1):
  """``run_chunk(carry, steps, key, hp_table, dev)`` like the library's
  ``make_program(...).run_chunk`` (no evaluation), but each step trains
  only its valid wave entries (``fori_loop(0, n_valid)``: start params read
  straight from the snapshot slot, the result written straight into its
  result slot) and applies only its valid arrivals (``fori_loop(0,
  n_arrivals)``), so padding costs nothing. Valid entries are a prefix of
  every plan row (``plan.make_plan`` fills rows from position 0).

  ``lanes > 1``: the wave loop runs ``ceil(n_valid / lanes)`` times and
  trains ``lanes`` clients per iteration with ``vmap`` (the width must be
  a multiple of ``lanes``; padded lanes of the last group train into the
  trash slot)."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax.core.client import ClientRef

  def run_chunk(carry, steps, key, hp_table, dev):
    def step(carry, xs):
      state, snaps, results = carry
      W = xs["wave_task"].shape[0]
      A = xs["arr_slot"].shape[0]
      n_w = jnp.sum(xs["wave_valid"].astype(jnp.int32))
      n_a = jnp.sum(xs["arr_valid"].astype(jnp.int32))

      def train(j, c):
        results, losses = c
        t, cid = xs["wave_task"][j], xs["wave_client"][j]
        start = jax.tree.map(lambda b: b[xs["wave_snap"][j]], snaps)
        h = jax.tree.map(lambda a: a[t], hp_table)
        res, met = update.update(
            start, ClientRef(dev.x, dev.y, dev.offsets[cid], dev.counts[cid]),
            jax.random.fold_in(key, t), h)
        slot = xs["wave_slot"][j]
        res = keep_fields(res, results)
        results = jax.tree.map(lambda b, r: b.at[slot].set(r), results, res)
        return results, losses.at[j].set(met["loss"])
      def train_group(g, c):
        results, losses = c

        def sl(a):
          return jax.lax.dynamic_slice_in_dim(a, g * lanes, lanes)
        ts, cids = sl(xs["wave_task"]), sl(xs["wave_client"])
        start = jax.tree.map(lambda b: b[sl(xs["wave_snap"])], snaps)
        h = jax.tree.map(lambda a: a[ts], hp_table)
        keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(ts)
        res, met = jax.vmap(lambda p, o, n, k, hh: update.update(
            p, ClientRef(dev.x, dev.y, o, n), k, hh))(
                start, dev.offsets[cids], dev.counts[cids], keys, h)
        slots = sl(xs["wave_slot"])
        res = keep_fields(res, results)
        results = jax.tree.map(lambda b, r: b.at[slots].set(r), results,
                               res)
        return results, jax.lax.dynamic_update_slice_in_dim(
            losses, met["loss"].astype(jnp.float32), g * lanes, 0)
      if lanes == 1:
        results, losses = jax.lax.fori_loop(
            0, n_w, train, (results, jnp.zeros((W,), jnp.float32)))
      else:
        assert W % lanes == 0, (W, lanes)
        results, losses = jax.lax.fori_loop(
            0, (n_w + lanes - 1) // lanes, train_group,
            (results, jnp.zeros((W,), jnp.float32)))

      def arrive(j, c):
        state, snaps, applied, version = c
        r = jax.tree.map(lambda b: b[xs["arr_slot"][j]], results)
        new = rule.apply(state, r, xs["arr_staleness"][j])
        if rule.end_round is not None:
          new = jax.lax.cond(xs["arr_ends_round"][j], rule.end_round,
                             lambda s: s, new)
        snaps = jax.tree.map(lambda b, p: b.at[xs["arr_snap"][j]].set(p),
                             snaps, new.params)
        return (new, snaps, applied.at[j].set(new.dropped == state.dropped),
                version.at[j].set(new.version))
      state, snaps, applied, version = jax.lax.fori_loop(
          0, n_a, arrive, (state, snaps, jnp.zeros((A,), bool),
                           jnp.zeros((A,), state.version.dtype)))
      return (state, snaps, results), {"applied": applied,
                                       "version": version,
                                       "train_loss": losses}
    return jax.lax.scan(step, carry, steps)
  return run_chunk


class ExecStepper:
  """One executor run cut into its compiled chunks, driven like
  ``executor.simulate`` (same ``make_program``, jit with the carry donated,
  outputs fetched after every chunk), so that it can be interleaved chunk
  by chunk with other measurements. ``kind`` is ``"library"`` (the
  library's ``run_chunk``) or ``"proto"`` (``proto_run_chunk``)."""

  def __init__(self, name, st, sched, update, *, kind, width,
               arrivals_per_step, batching="map", chunk_steps=64,
               map_batch_size=8, lanes=1):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fedasync_jax import executor, plan as plan_lib, reference
    self.name, self.sched = name, sched
    p = plan_lib.make_plan(sched, width=width,
                           arrivals_per_step=arrivals_per_step)
    if kind == "proto":
      for v in (p.wave_valid, p.arr_valid):
        n = v.sum(axis=1, keepdims=True)
        assert np.array_equal(v, np.arange(v.shape[1])[None] < n), \
            "valid plan entries are not a prefix of their row"
    self.padding_waste = p.padding_waste
    self.real_steps = p.num_steps
    p = p.pad_steps(-(-p.num_steps // chunk_steps) * chunk_steps)
    self.plan, self.chunk_steps = p, chunk_steps
    self.hp_table = jax.tree.map(jnp.asarray, tasks.task_hparams(sched))
    self.dev = st.dev
    self.prog = executor.make_program(
        lambda _: st.rule, update, batching=batching,
        map_batch_size=map_batch_size, params_like=st.params,
        data_like=self.dev)
    rc = (self.prog.run_chunk if kind == "library"
          else proto_run_chunk(st.rule, update, lanes))
    self.fn = jax.jit(rc, donate_argnums=0)
    self.arrays = executor.plan_arrays(p, sched, None)
    self.n_units = p.num_steps // chunk_steps
    self.st = st
    self.outs = []

  def reset(self):
    p = self.plan
    self.carry = self.prog.init(self.st.params, p.num_snaps, p.num_slots,
                                p.init_snap)
    self.outs = []

  def run_unit(self, i):
    import jax
    cs = self.chunk_steps
    chunk = {k: v[i * cs:(i + 1) * cs] for k, v in self.arrays.items()}
    self.carry, out = self.fn(self.carry, chunk, self.st.key, self.hp_table,
                              self.dev)
    self.outs.append(jax.device_get(out))
    # Work done = clients trained (a full pass trains as many as arrive).
    return int(chunk["wave_valid"].sum())

  def params(self):
    return self.carry[0].params

  def check_history(self):
    """Assembles the history as ``simulate`` does (checks the outputs)."""
    import jax
    import numpy as np
    from fedasync_jax import executor
    merged = jax.tree.map(lambda *xs: np.concatenate(xs), *self.outs)
    arrivals, _, _ = executor.assemble(self.sched, self.plan, merged, None,
                                       None, None)
    return arrivals


class PureStepper:
  """Pure compute cut into ``n_units`` calls of ``G x width`` clients."""

  def __init__(self, name, st, sched, update, *, width, batching, tasks,
               n_units, map_batch_size=8):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fedasync_jax import reference
    from fedasync_jax.core.client import ClientRef
    self.name = name
    G = max(1, len(tasks) // n_units // width)
    self.per_call = G * width
    self.n_units = min(n_units, len(tasks) // self.per_call)
    self.tasks = np.asarray(tasks[:self.n_units * self.per_call],
                            np.int32).reshape(self.n_units, G, width)
    self.dev = st.dev
    self.hp_table = jax.tree.map(jnp.asarray, tasks.task_hparams(sched))
    client_of = jnp.asarray(sched.client, jnp.int32)

    def call(params, tasks, key, hp_table, dev):
      def one(t):
        c = client_of[t]
        h = jax.tree.map(lambda a: a[t], hp_table)
        return update.update(params, ClientRef(dev.x, dev.y, dev.offsets[c],
                                               dev.counts[c]),
                             jax.random.fold_in(key, t), h)

      def group(acc, ts):
        if batching == "vmap":
          res, met = jax.vmap(one)(ts)
        elif batching == "map":
          res, met = jax.lax.map(one, ts)
        else:
          res, met = jax.lax.map(one, ts, batch_size=map_batch_size)
        # Consume every result so that nothing is dead code.
        check = sum(jnp.sum(l) for l in jax.tree.leaves(res.params))
        return acc + check + jnp.sum(met["loss"]), None
      acc, _ = jax.lax.scan(group, jnp.zeros((), jnp.float32), tasks)
      return acc

    self.fn = jax.jit(call)
    self.st = st

  def reset(self):
    pass

  def run_unit(self, i):
    import jax
    jax.block_until_ready(self.fn(self.st.params, self.tasks[i],
                                  self.st.key, self.hp_table, self.dev))
    return self.per_call


class LoopStepper:
  """The reference's batching: a Python loop, one jitted call per client
  (synchronized after every client), no mixing: the limit of the
  reference simulator."""

  def __init__(self, name, st, sched, update, *, tasks, n_units):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fedasync_jax import reference
    from fedasync_jax.core.client import ClientRef
    self.name, self.st = name, st
    self.per_call = len(tasks) // n_units
    self.n_units = n_units
    self.tasks = np.asarray(tasks[:n_units * self.per_call]).reshape(
        n_units, self.per_call)
    hp = tasks.task_hparams(sched)
    self.hp = hp
    self.client = sched.client
    dev = st.dev
    self.fn = jax.jit(lambda p, o, c, k, h: update.update(
        p, ClientRef(dev.x, dev.y, o, c), k, h))
    self.jnp = jnp

  def reset(self):
    pass

  def run_unit(self, i):
    import jax
    ds, st = self.st.ds, self.st
    for t in self.tasks[i]:
      c = int(self.client[t])
      res, met = self.fn(st.params, ds.offsets[c], ds.counts[c],
                         jax.random.fold_in(st.key, int(t)),
                         jax.tree.map(lambda a: a[t], self.hp))
      float(met["loss"])
    return self.per_call


def interleave(steppers, reps, label=""):
  """Compiles every stepper (its unit 0), then runs ``reps`` full passes,
  unit by unit in rotating order, so that all of them see the same machine
  noise. Returns per stepper: the rate of every pass, the compile estimate
  and the pass times."""
  out = {s.name: {"rates": [], "unit_s": []} for s in steppers}
  for s in steppers:
    s.reset()
    t = time.perf_counter()
    n0 = s.run_unit(0)
    out[s.name]["warm_s"] = time.perf_counter() - t
    out[s.name]["warm_updates"] = n0
  for rep in range(reps):
    tot = {s.name: [0.0, 0] for s in steppers}
    for s in steppers:
      s.reset()
    n_max = max(s.n_units for s in steppers)
    for i in range(n_max):
      k = i % len(steppers)
      for s in steppers[k:] + steppers[:k]:
        if i < s.n_units:
          t = time.perf_counter()
          n = s.run_unit(i)
          tot[s.name][0] += time.perf_counter() - t
          tot[s.name][1] += n
    for s in steppers:
      dt, n = tot[s.name]
      out[s.name]["rates"].append(n / dt)
      out[s.name]["updates"] = n
    log(f"  {label}pass {rep + 1}/{reps}: " + ", ".join(
        f"{s.name} {out[s.name]['rates'][-1]:.0f}" for s in steppers))
  for s in steppers:
    o = out[s.name]
    r = median(o["rates"])
    o["updates_per_s"] = r
    o["compile_s"] = max(0.0, o["warm_s"] - o["warm_updates"] / r)
  return out


def empty_step_cost(st, sched, *, width, arrivals_per_step, n_steps=64):
  """Seconds per all-padding step: the library's step vs the prototype."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax import executor, plan as plan_lib, reference
  p = plan_lib.make_plan(sched, width=width,
                         arrivals_per_step=arrivals_per_step)
  S = p.num_steps
  p = p.pad_steps(S + n_steps)
  arrays = executor.plan_arrays(p, sched, None)
  pad = {k: v[S:] for k, v in arrays.items()}
  hp_table = jax.tree.map(jnp.asarray, tasks.task_hparams(sched))
  dev = st.dev
  prog = executor.make_program(lambda _: st.rule, st.update, batching="map",
                               params_like=st.params, data_like=dev)
  out = {}
  for name, rc in (("library", prog.run_chunk),
                   ("proto", proto_run_chunk(st.rule, st.update))):
    f = jax.jit(rc, donate_argnums=0)
    carry = prog.init(st.params, p.num_snaps, p.num_slots, p.init_snap)
    carry, _ = f(carry, pad, st.key, hp_table, dev)
    jax.block_until_ready(carry)
    ts = []
    for _ in range(3):
      t = time.perf_counter()
      carry, _ = f(carry, pad, st.key, hp_table, dev)
      jax.block_until_ready(carry)
      ts.append((time.perf_counter() - t) / n_steps)
    out[name] = median(ts)
  return out


def rel_diff(a, b):
  """max |a - b| over all leaves / max |b|."""
  import jax
  import numpy as np
  la = [np.asarray(x, np.float32) for x in jax.tree.leaves(a)]
  lb = [np.asarray(x, np.float32) for x in jax.tree.leaves(b)]
  num = max(float(np.max(np.abs(x - y))) for x, y in zip(la, lb))
  den = max(float(np.max(np.abs(y))) for y in lb)
  return num / den if den > 0 else num


def map_batched_broadcasts_dataset(st, width=8, map_batch_size=8):
  """Whether the executor's ``map_batched`` wave broadcasts the whole
  training set to ``(map_batch_size, N, 784)`` (a ``cond`` under ``vmap``
  with a batched predicate turns every operand, the dataset included, into
  a batched one)."""
  import jax
  from fedasync_jax import executor, plan as plan_lib, reference
  sched = st.schedule(200)
  p = plan_lib.make_plan(sched, width=width)
  dev = st.dev
  prog = executor.make_program(lambda _: st.rule, st.update,
                               batching="map_batched",
                               map_batch_size=map_batch_size,
                               params_like=st.params, data_like=dev)
  carry = prog.init(st.params, p.num_snaps, p.num_slots, p.init_snap)
  arrays = executor.plan_arrays(p, sched, None)
  chunk = {k: v[:2] for k, v in arrays.items()}
  hp = tasks.task_hparams(sched)
  txt = str(jax.make_jaxpr(prog.run_chunk)(carry, chunk, st.key, hp, dev))
  n = st.ds.x.shape[0]
  return f"[{map_batch_size},{n},{st.ds.x.shape[1]}]" in txt.replace(" ", "")


# ---------------------------------------------------------------------------
# Reporting.


def summarize(samples):
  """Median of every numeric field over repeats (lists kept)."""
  keys = [k for k in samples[0] if isinstance(samples[0][k], (int, float))]
  return {k: median([s[k] for s in samples]) for k in keys}


# ---------------------------------------------------------------------------
# Main.


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="1000 updates, no sweep, a short profile (< 3 min)")
  ap.add_argument("--data", type=Path, default=C.DEFAULT_MNIST,
                  help="mnist.npz with x_train, y_train, x_test, y_test")
  ap.add_argument("--updates", type=int, default=None,
                  help="client updates for the executor and pure compute "
                  "(default 5000, --quick 1000)")
  ap.add_argument("--ref-updates", type=int, default=None,
                  help="client updates for the reference: the first N of "
                  "the schedule (default = --updates); the executor is also "
                  "run on that prefix for the difference and the ratio")
  ap.add_argument("--repeats", type=int, default=None,
                  help="repeats of every measurement, medians reported "
                  "(default 3; --quick: 2 whole runs, 3 steady passes)")
  ap.add_argument("--width", type=int, default=None,
                  help="executor width (default: the library's)")
  ap.add_argument("--arrivals-per-step", type=int, default=None)
  ap.add_argument("--batching", default=None,
                  help="executor batching (default: the library's)")
  ap.add_argument("--chunk-steps", type=int, default=None,
                  help="executor chunk_steps (default 64; --quick 32, so "
                  "that the short run has several chunks after the "
                  "compiling one)")
  ap.add_argument("--lanes", type=int, default=4,
                  help="clients per vmap in the vmap-lanes prototype")
  ap.add_argument("--no-proposals", action="store_true",
                  help="skip the prototypes of proposed library changes")
  ap.add_argument("--sweep-widths", action="store_true",
                  help="also sweep batching x width on W1")
  ap.add_argument("--sweep-updates", type=int, default=1000)
  ap.add_argument("--sweep-widths-list", default="4,8,16,20,32")
  ap.add_argument("--no-write", action="store_true",
                  help="do not write benchmarks/results/")
  args = ap.parse_args(argv)
  if args.updates is None:
    args.updates = 1000 if args.quick else W1["num_updates"]
  if args.ref_updates is None:
    args.ref_updates = args.updates
  args.ref_updates = min(args.ref_updates, args.updates)
  if args.chunk_steps is None:
    args.chunk_steps = 32 if args.quick else 64
  args.whole_repeats = args.repeats or (2 if args.quick else 3)
  args.repeats = args.repeats or 3
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  command, date = C.command_line(), C.now_iso()
  data_path = Path(args.data)
  if C.skip_if_no_mnist(data_path, "W1"):
    return 0

  t_all = time.perf_counter()
  import numpy as np
  from fedasync_jax import executor, plan as plan_lib
  lib_files = C.library_files()  # what was imported (checked again at the end)
  load0 = C.loadavg()
  t = time.perf_counter()
  ds, x_test, y_test = C.w1_data(data_path)
  st = Setup(ds, x_test, y_test)
  sched = st.schedule(args.updates)
  ref_sched = st.schedule(args.ref_updates)
  prefix_ok = bool(np.array_equal(
      sched.arrival_client[:args.ref_updates], ref_sched.arrival_client))
  setup_s = time.perf_counter() - t
  width = args.width or plan_lib.default_width(
      sched.stats["realised_concurrency"])
  A = args.arrivals_per_step
  batching = args.batching or executor.default_batching()
  plan = plan_lib.make_plan(sched, width=width, arrivals_per_step=A)
  tasks = trained_tasks(sched, width, A)
  same = args.ref_updates == args.updates
  proposals = not args.no_proposals
  log(f"W1: {ds.num_clients} clients, {int(ds.counts.sum())} examples "
      f"(max {ds.max_count}/client, so {st.update.num_steps} local steps), "
      f"{args.updates} updates, reference {args.ref_updates}; executor "
      f"{batching} width {width} arrivals/step {plan.arrivals_per_step}, "
      f"{plan.num_steps} steps, padding waste {plan.padding_waste:.3f}; "
      f"setup {setup_s:.1f} s")

  # Phase 1: whole runs, as a user calls them (end to end, compile).
  log("phase 1: executor.simulate and reference.run, whole runs")
  kw = dict(width=width, arrivals_per_step=A, batching=batching,
            chunk_steps=args.chunk_steps)
  jobs = [("executor", lambda: run_executor(st, sched, **kw)),
          ("reference", lambda: run_reference(st, ref_sched))]
  if not same:
    jobs.append(("executor_on_reference_schedule",
                 lambda: run_executor(st, ref_sched, **kw)))
  runs = {name: [] for name, _ in jobs}
  keep = {}
  for r in range(args.whole_repeats):
    for name, job in (jobs if r % 2 == 0 else jobs[::-1]):
      res = job()
      keep[name] = res.pop("params")
      if "stats" in res:
        keep[name + "_stats"] = res.pop("stats")
        res.pop("chunk_s")
      runs[name].append(res)
      log(f"  repeat {r + 1}/{args.whole_repeats} {name}: "
          f"{res['updates_per_s']:.1f} updates/s steady, "
          f"{res['updates_per_s_end_to_end']:.1f} end to end, compile "
          f"{res['compile_s']:.2f} s")
  ex_ref = "executor" if same else "executor_on_reference_schedule"
  paired_ref = [a["updates_per_s"] / b["updates_per_s"] for a, b in
                zip(runs[ex_ref], runs["reference"])]
  paired_ref_e2e = [a["updates_per_s_end_to_end"]
                    / b["updates_per_s_end_to_end"]
                    for a, b in zip(runs[ex_ref], runs["reference"])]
  whole = {name: summarize(v) for name, v in runs.items()}
  max_rel = rel_diff(keep[ex_ref], keep["reference"])
  acc = {"executor": st.accuracy(keep["executor"]),
         "reference": st.accuracy(keep["reference"])}
  if not same:
    acc["executor_at_reference_updates"] = st.accuracy(keep[ex_ref])

  # Phase 2: steady state, interleaved chunk by chunk.
  log("phase 2: steady state, interleaved chunk by chunk")
  lib = ExecStepper("executor", st, sched, st.update, kind="library",
                    batching=batching, width=width, arrivals_per_step=A,
                    chunk_steps=args.chunk_steps)
  steppers = [lib, PureStepper("pure_compute", st, sched, st.update,
                               width=width, batching=batching, tasks=tasks,
                               n_units=lib.n_units)]
  if proposals:
    steppers += [
        ExecStepper("proto_executor", st, sched, st.update, kind="proto",
                    width=width, arrivals_per_step=A,
                    chunk_steps=args.chunk_steps),
        LoopStepper("pure_compute_python_loop", st, sched, st.update,
                    tasks=tasks, n_units=lib.n_units)]
    if not args.quick:
      steppers += [
          PureStepper("pure_compute_skip_masked_steps", st, sched,
                      st.skip_update, width=width, batching="map",
                      tasks=tasks, n_units=lib.n_units),
          ExecStepper("proto_executor_skip_masked_steps", st, sched,
                      st.skip_update, kind="proto", width=width,
                      arrivals_per_step=A, chunk_steps=args.chunk_steps)]
    if width % args.lanes == 0 and not args.quick:
      steppers += [
          ExecStepper("proto_executor_vmap_lanes", st, sched, st.update,
                      kind="proto", width=width, arrivals_per_step=A,
                      chunk_steps=args.chunk_steps, lanes=args.lanes),
          ExecStepper("proto_executor_vmap_lanes_skip_masked_steps", st,
                      sched, st.skip_update, kind="proto", width=width,
                      arrivals_per_step=A, chunk_steps=args.chunk_steps,
                      lanes=args.lanes),
          PureStepper("pure_compute_vmap_lanes", st, sched, st.update,
                      width=args.lanes, batching="vmap", tasks=tasks,
                      n_units=lib.n_units)]
  steady = interleave(steppers, args.repeats)
  by_name = {s.name: s for s in steppers}
  lib.check_history()

  def pratio(a, b):
    """Median over passes of the paired ratio a/b."""
    return median([x / y for x, y in zip(steady[a]["rates"],
                                         steady[b]["rates"])])

  profile = {"plan_time_s": keep["executor_stats"]["plan_time_s"],
             "plan": {k: keep["executor_stats"][k] for k in (
                 "num_steps", "padded_steps", "width", "arrivals_per_step",
                 "result_slots", "snapshot_slots", "padding_waste",
                 "batching", "trained_clients")},
             "mean_wave": float(plan.wave_valid.sum() / plan.num_steps),
             "mean_arrivals_per_step": float(plan.arr_valid.sum()
                                             / plan.num_steps),
             "arrival_padding": float(1 - plan.arr_valid.mean()),
             "local_steps_max_per_client": st.update.num_steps,
             "local_steps_needed_mean": float(np.mean(np.ceil(
                 ds.counts[sched.client[tasks]] / W1["batch_size"]))),
             "reference_is_prefix_of_schedule": prefix_ok}
  proposal_out = {}
  if proposals:
    log("profile: empty-step cost, prototype checks")
    pairs = [(width, A)] if args.quick else \
        [(width, A), (width, 1), (1, 2 * width), (8, None)]
    profile["empty_step_s"] = []
    for w, a in pairs:
      c = empty_step_cost(st, sched, width=w, arrivals_per_step=a)
      profile["empty_step_s"].append(
          {"width": w, "arrivals_per_step": a if a else 2 * w,
           "library": c["library"], "proto": c["proto"]})
    empty = profile["empty_step_s"][0]["library"]
    busy = args.updates / steady["executor"]["updates_per_s"]
    profile["padding_steps_equivalent"] = (
        lib.plan.num_steps - lib.plan.wave_valid.sum() / width)
    profile["empty_step_cost_x_steps_over_steady_time"] = min(
        1.0, empty * lib.plan.num_steps / busy)
    # Tail padding of the last chunk, and with balanced chunks
    # (chunk = ceil(S / ceil(S / chunk_steps))).
    S, cs = lib.real_steps, args.chunk_steps
    n_chunks = -(-S // cs)
    profile["tail_padding_steps"] = n_chunks * cs - S
    profile["tail_padding_steps_balanced"] = n_chunks * -(-S // n_chunks) - S
    skip_diff, skip_loss_diff = check_skip_update(st)
    # Bookkeeping alone: the library's executor with a client that does
    # not train, interleaved with the real executor.
    nst = [ExecStepper("bookkeeping_only", st, sched, null_update(st.update),
                       kind="library", batching=batching, width=width,
                       arrivals_per_step=A, chunk_steps=args.chunk_steps),
           ExecStepper("executor_again", st, sched, st.update,
                       kind="library", batching=batching, width=width,
                       arrivals_per_step=A, chunk_steps=args.chunk_steps)]
    nres = interleave(nst, 1, "bookkeeping ")
    bk = 1.0 / nres["bookkeeping_only"]["updates_per_s"]
    ex_t = 1.0 / nres["executor_again"]["updates_per_s"]
    profile["bookkeeping_only"] = {
        "updates_per_s": nres["bookkeeping_only"]["updates_per_s"],
        "us_per_update": 1e6 * bk,
        "executor_us_per_update": 1e6 * ex_t,
        "share_of_executor_time": bk / ex_t,
        "pure_compute_us_per_update":
            1e6 / steady["pure_compute"]["updates_per_s"]}
    del nst
    prm = {n: by_name[n].params() for n in (
        "executor", "proto_executor", "proto_executor_skip_masked_steps")
        if n in by_name}
    has_skip = "proto_executor_skip_masked_steps" in steady
    proposal_out = {
        "proto_executor": {
            "what": "executor step with fori_loop over the valid wave "
                    "entries and valid arrivals (no fixed-width map+cond, "
                    "no fixed-length arrival scan)",
            "updates_per_s": steady["proto_executor"]["updates_per_s"],
            "vs_executor": pratio("proto_executor", "executor"),
            "vs_pure_compute": pratio("proto_executor", "pure_compute"),
            "max_rel_diff_vs_executor": rel_diff(prm["proto_executor"],
                                                 prm["executor"])},
        "skip_masked_steps": None if not has_skip else {
            "what": "client update runs ceil(count/batch) local steps "
                    "(fori_loop) instead of ceil(max_examples/batch) masked "
                    "steps",
            "pure_compute_updates_per_s":
                steady["pure_compute_skip_masked_steps"]["updates_per_s"],
            "pure_compute_speedup": pratio("pure_compute_skip_masked_steps",
                                           "pure_compute"),
            "max_rel_diff_vs_library_update": skip_diff,
            "max_loss_diff_vs_library_update": skip_loss_diff},
        "both": None if not has_skip else {
            "updates_per_s":
                steady["proto_executor_skip_masked_steps"]["updates_per_s"],
            "vs_executor": pratio("proto_executor_skip_masked_steps",
                                  "executor"),
            "vs_reference": steady["proto_executor_skip_masked_steps"][
                "updates_per_s"] / whole["reference"]["updates_per_s"],
            "vs_pure_compute_skip": pratio(
                "proto_executor_skip_masked_steps",
                "pure_compute_skip_masked_steps"),
            "max_rel_diff_vs_executor": rel_diff(
                prm["proto_executor_skip_masked_steps"], prm["executor"]),
            "test_accuracy": st.accuracy(
                prm["proto_executor_skip_masked_steps"])},
        "map_batched_broadcasts_dataset": map_batched_broadcasts_dataset(st),
        "vmap_lanes": ({
            "what": f"prototype step (dynamic loops) training {args.lanes} "
                    f"clients per loop iteration with vmap",
            "lanes": args.lanes,
            "updates_per_s":
                steady["proto_executor_vmap_lanes"]["updates_per_s"],
            "vs_executor": pratio("proto_executor_vmap_lanes", "executor"),
            "vs_pure_compute": pratio("proto_executor_vmap_lanes",
                                      "pure_compute"),
            "pure_compute_vmap_lanes_updates_per_s":
                steady["pure_compute_vmap_lanes"]["updates_per_s"],
            "with_skip_masked_steps_updates_per_s": steady[
                "proto_executor_vmap_lanes_skip_masked_steps"][
                    "updates_per_s"],
            "with_skip_masked_steps_vs_executor": pratio(
                "proto_executor_vmap_lanes_skip_masked_steps", "executor"),
            "max_rel_diff_vs_executor": rel_diff(
                by_name["proto_executor_vmap_lanes"].params(),
                prm["executor"]),
            "max_rel_diff_with_skip_vs_executor": rel_diff(
                by_name["proto_executor_vmap_lanes_skip_masked_steps"]
                .params(), prm["executor"]),
        } if "proto_executor_vmap_lanes" in steady else None),
        "python_loop_pure_compute": {
            "what": "the reference's batching (one jitted call per client) "
                    "with no mixing: the reference's limit",
            "updates_per_s":
                steady["pure_compute_python_loop"]["updates_per_s"],
            "lax_map_vs_python_loop": pratio("pure_compute",
                                             "pure_compute_python_loop")},
    }
    if not args.quick:
      log("profile: chunk_steps (interleaved)")
      cs_list = (16, 32, 64, 128, 256)
      cst = [ExecStepper(f"chunk_steps={cs}", st, sched, st.update,
                         kind="library", batching=batching, width=width,
                         arrivals_per_step=A, chunk_steps=cs)
             for cs in cs_list]
      res = interleave(cst, 1, "chunk_steps ")
      profile["chunk_steps"] = [
          {"chunk_steps": cs, "updates_per_s": res[s.name]["updates_per_s"],
           "compile_s": res[s.name]["compile_s"],
           "padded_steps": s.plan.num_steps, "real_steps": s.real_steps}
          for cs, s in zip(cs_list, cst)]
      del cst
  del steppers, by_name, lib

  sweep = None
  if args.sweep_widths:
    widths = [int(w) for w in args.sweep_widths_list.split(",")]
    ssched = st.schedule(args.sweep_updates)
    anchor_w = 8
    log(f"sweep: {executor.BATCHINGS} x widths {widths} on "
        f"{args.sweep_updates} updates, chunk_steps 32; one interleaved "
        f"group per batching, each with the anchor map/{anchor_w}")
    sweep = []
    for b in executor.BATCHINGS:
      group = []
      if b != "map" or anchor_w not in widths:
        group.append(ExecStepper(f"anchor map/{anchor_w}", st, ssched,
                                 st.update, kind="library", batching="map",
                                 width=anchor_w,
                                 arrivals_per_step=2 * anchor_w,
                                 chunk_steps=32))
      for w in widths:
        e = ExecStepper(f"{b}/{w}", st, ssched, st.update, kind="library",
                        batching=b, width=w, arrivals_per_step=2 * w,
                        chunk_steps=32)
        group.append(e)
        group.append(PureStepper(f"pure {b}/{w}", st, ssched, st.update,
                                 width=w, batching=b,
                                 tasks=trained_tasks(ssched, w, 2 * w),
                                 n_units=e.n_units))
        if b == "map" and proposals:
          group.append(ExecStepper(f"proto_map/{w}", st, ssched, st.update,
                                   kind="proto", width=w,
                                   arrivals_per_step=2 * w, chunk_steps=32))
        if b == "vmap" and proposals:
          for ln in (4, 8):
            if w % ln == 0 and w > ln:
              group.append(ExecStepper(
                  f"proto_vmap_lanes{ln}/{w}", st, ssched, st.update,
                  kind="proto", width=w, arrivals_per_step=2 * w,
                  chunk_steps=32, lanes=ln))
      res = interleave(group, 1, f"sweep {b} ")
      anchor = res.get(f"anchor map/{anchor_w}",
                       res.get(f"map/{anchor_w}"))["updates_per_s"]
      for s_ in group:
        if isinstance(s_, PureStepper) or s_.name.startswith("anchor"):
          continue
        kind, w = s_.name.split("/")
        row = {"batching": kind, "width": int(w),
               "arrivals_per_step": 2 * int(w),
               "updates_per_s": res[s_.name]["updates_per_s"],
               "vs_anchor_map_8_same_group":
                   res[s_.name]["updates_per_s"] / anchor,
               "compile_s": res[s_.name]["compile_s"],
               "padding_waste": s_.padding_waste,
               "num_steps": s_.real_steps}
        pn = f"pure {s_.name}"
        if pn in res:
          row["pure_compute_updates_per_s"] = res[pn]["updates_per_s"]
          row["vs_pure_compute"] = row["updates_per_s"] / res[pn][
              "updates_per_s"]
        sweep.append(row)
      del group, res

  ex, pc = steady["executor"], steady["pure_compute"]
  ref = whole["reference"]
  result = {
      "workload": "W1",
      "quick": bool(args.quick),
      "updates": {"executor": args.updates, "reference": args.ref_updates,
                  "pure_compute": pc["updates"],
                  "executor_vs_reference_on": args.ref_updates,
                  "reference_is_prefix": not same},
      "updates_per_s": {"executor": ex["updates_per_s"],
                        "reference": ref["updates_per_s"],
                        "pure_compute": pc["updates_per_s"]},
      "updates_per_s_end_to_end": {
          "executor": whole["executor"]["updates_per_s_end_to_end"],
          "reference": ref["updates_per_s_end_to_end"]},
      "executor_simulate_steady_updates_per_s":
          whole["executor"]["updates_per_s"],
      "compile_s": {"executor": whole["executor"]["compile_s"],
                    "executor_first_chunk_s":
                        whole["executor"]["first_chunk_s"],
                    "reference": ref["compile_s"],
                    "pure_compute": pc["compile_s"]},
      "executor_vs_reference": median(paired_ref),
      "executor_vs_reference_end_to_end": median(paired_ref_e2e),
      "executor_vs_pure_compute": pratio("executor", "pure_compute"),
      "padding_waste": keep["executor_stats"]["padding_waste"],
      "max_rel_diff_vs_reference": max_rel,
      "test_accuracy": acc,
      "executor_config": {"batching": batching, "width": width,
                          "arrivals_per_step": plan.arrivals_per_step,
                          "chunk_steps": args.chunk_steps},
      "repeats": {"whole_runs": args.whole_repeats,
                  "steady_passes": args.repeats},
      "method": "updates_per_s: steady state (compilation excluded), "
                "medians of the repeats; executor and pure_compute "
                "interleaved chunk by chunk (phase 2), reference and the "
                "end-to-end numbers from whole executor.simulate / "
                "reference.run calls alternated (phase 1); ratios are "
                "medians of per-repeat paired ratios",
      "profile": profile,
      "proposals": proposal_out,
      "sweep": sweep,
      "samples": {"whole_runs": runs,
                  "steady_passes": {k: v["rates"] for k, v in
                                    steady.items()}},
      "workload_config": W1,
      "machine": {**C.machine_info(), **C.versions()},
      "library_files": lib_files,
      "library_changed_during_run": C.library_files() != lib_files,
      "loadavg_start_end": [load0, C.loadavg()],
      "date": date,
      "command": command,
      "wall_s": time.perf_counter() - t_all,
  }
  if sweep:
    lib_rows = [r for r in sweep if r["batching"] in executor.BATCHINGS]
    best = max(lib_rows, key=lambda r: r["vs_anchor_map_8_same_group"])
    result["best_sweep"] = {k: best[k] for k in (
        "batching", "width", "updates_per_s", "vs_anchor_map_8_same_group",
        "padding_waste")}

  result = C.clean(result)
  if not args.no_write:
    path = C.write_json("W1", result, quick=args.quick)
    log(f"wrote {path}")
  r = result

  def f(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)
  print(f"W1 ({'quick, ' if args.quick else ''}{args.updates} updates; "
        f"reference {args.ref_updates}), medians:")
  print(f"  executor     {f(r['updates_per_s']['executor'])} updates/s "
        f"steady, {f(r['updates_per_s_end_to_end']['executor'])} end to "
        f"end, compile {f(r['compile_s']['executor'], '.2f')} s")
  print(f"  pure compute {f(r['updates_per_s']['pure_compute'])}")
  print(f"  reference    {f(r['updates_per_s']['reference'])} steady, "
        f"{f(r['updates_per_s_end_to_end']['reference'])} end to end")
  print(f"  executor/reference {f(r['executor_vs_reference'], '.3f')}, "
        f"executor/pure {f(r['executor_vs_pure_compute'], '.3f')}, waste "
        f"{f(r['padding_waste'], '.3f')}, max rel diff "
        f"{f(r['max_rel_diff_vs_reference'], '.3g')}, accuracy "
        f"{r['test_accuracy']}")
  if proposals:
    pr = r["proposals"]
    print(f"  proposals: proto executor "
          f"{f(pr['proto_executor']['updates_per_s'])} "
          f"({f(pr['proto_executor']['vs_executor'], '.2f')}x executor); "
          f"pure compute as a Python loop of jitted clients "
          f"{f(pr['python_loop_pure_compute']['updates_per_s'])}")
    if pr["both"]:
      print(f"  skip masked steps: pure "
            f"{f(pr['skip_masked_steps']['pure_compute_updates_per_s'])}; "
            f"with the proto executor {f(pr['both']['updates_per_s'])} "
            f"({f(pr['both']['vs_executor'], '.2f')}x executor)")
  if sweep:
    print(f"  best sweep: {r['best_sweep']}")
  print(C.json.dumps(result, separators=(",", ":")))
  return 0

if __name__ == "__main__":
  sys.exit(main())
