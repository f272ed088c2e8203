"""The local update of one client, written for ONE client.

``local_update(...)`` returns ``update(params, data, key, hparams) ->
(ClientResult, metrics)``: a ``lax.scan`` over local steps with any optax
optimizer. The executor batches it (vmap or lax.map) in one place.

The client's examples are a range ``[offset, offset + count)`` of arrays that
hold every client's data once; a step gathers its minibatch by index. Ragged
sizes cost no padding work: an epoch runs ``ceil(count / batch_size)`` steps
(a ``fori_loop`` with a dynamic trip count, one compiled shape for all
clients), and the last, partial batch is masked.

Options follow the papers that use them:

* proximal term ``(rho / 2) ||w - w_start||^2``: FedProx (Li et al. 2020,
  arXiv:1812.06127) and FedAsync's regularised local objective
  (arXiv:1903.03934);
* a per-client learning-rate scale, e.g. the AFL paper's delay-aware rate
  ``lr0 / (sqrt(epoch + 1) (1 + beta * delay))`` (arXiv:2508.01675,
  Section 3 and Algorithm 1; ``lr0`` the optimizer's rate, ``epoch``
  counted from 0): pass ``lr_scale = 1 / (1 + beta * delay)`` in
  ``hparams``, fixed when the task is dispatched
  (``sim.tasks.task_hparams(delay_beta=..., delay=...)``), and
  ``epoch_decay=True``; the scale multiplies the optimizer's update, which
  is the same as scaling the rate for SGD and Adam;
* early stopping on the epoch's training loss with ``patience`` (as the
  AFL paper's experiments: stop once ``patience`` epochs in a row did not
  improve on the best epoch loss by more than ``min_delta``).

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> def loss(w, x, y, mask):
  ...   err = (x @ w - y) ** 2
  ...   return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  >>> upd = local_update(loss, optax.sgd(0.1), batch_size=2, max_examples=4)
  >>> x = jnp.eye(4)[:, :2]; y = jnp.ones(4)
  >>> res, m = upd.update(jnp.zeros(2), ClientRef(x, y, 0, 4),
  ...                     jax.random.key(0), ClientHParams())
  >>> int(m["steps"])
  2
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedasync_jax.core import checks
from fedasync_jax.core import tree as tree_lib
from fedasync_jax.core.types import ClientResult

Params = Any


class ClientRef(NamedTuple):
  """One client's data: a range of the population's example arrays."""
  x: Any
  y: Any
  offset: Any
  count: Any


class ClientHParams(NamedTuple):
  """Per-client hyperparameters, batched with the clients.

  Attributes:
    lr_scale: multiplies every local update (1 = the optimizer's own rate;
      ``1 / (1 + beta delay)`` for the AFL paper's delay-aware rate).
    prox_rho: weight ``rho`` of the proximal term (0 = none).
  """
  lr_scale: Any = 1.0
  prox_rho: Any = 0.0


class Lane(NamedTuple):
  """One client's training as a machine advanced one local step at a time,
  for executors that refill a batch lane as soon as its client is done
  (``sim.strategies.Refill``). Running ``start``, then ``step`` until
  ``state.done``, then ``finish`` gives what ``update`` gives (same
  operations in the same order).

  Attributes:
    start: ``(params, data, key, hparams) -> state`` (``data``'s arrays may
      be ``None``: only its ``offset`` and ``count`` are read).
    step: ``(state, x, y, key_impl) -> state``: one local step on the
      population's arrays ``x``, ``y`` (nothing once done); ``key_impl`` is
      ``jax.random.key_impl`` of the run's key (the state holds key data).
    finish: ``state -> (ClientResult, metrics)``.
    steps_of: ``counts -> steps`` on the host (numpy): the local steps of
      a task of each size without early stopping (at least what it runs).
  """
  start: Callable
  step: Callable
  finish: Callable
  steps_of: Callable


class ClientUpdate(NamedTuple):
  """The client trainer and its static shape.

  ``update(params, data, key, hparams) -> (ClientResult, metrics)``;
  ``num_steps`` is the most local steps a client can take
  (``epochs * steps_per_epoch`` of the largest client); ``lane``: the same
  training one step at a time (a ``Lane``), or ``None`` (a wrapped or
  hand-written update: executors that need it refuse it).
  """
  update: Callable
  num_steps: int
  max_examples: int
  batch_size: int
  lane: Optional[Lane] = None


class LaneState(NamedTuple):
  """A ``Lane``'s state: the task (start parameters, data range, key data,
  hyperparameters), the training state, the position (epoch ``e``, step
  ``j`` of ``n_active``), the epoch's order and rate, the totals and the
  early-stopping state; ``done`` once the task has no step left."""
  start: Any
  offset: Any
  count: Any
  key: Any
  lr_scale: Any
  rho: Any
  trainable: Any
  stats: Any
  opt_state: Any
  e: Any
  j: Any
  n_active: Any
  perm: Any
  scale: Any
  loss_sum: Any
  loss_total: Any
  steps_total: Any
  epochs_ran: Any
  best: Any
  bad: Any
  stopped: Any
  done: Any


def _client_rows(arr, offset, local, max_examples):
  """``arr[offset + local]`` for ``local`` in ``[0, max_examples)``.

  Gathered from the client's block of ``max_examples`` rows (a dynamic slice
  that XLA fuses into the gather, so nothing is copied, as long as
  ``offset`` varies inside the loop: see ``update``), not from the whole
  population's array: XLA:CPU sizes a gather fusion by its operand and, for
  an operand of 512 KiB or more, splits even a 4-row gather over the
  intra-op thread pool, which costs microseconds per local step (at 1e6
  clients of 4 examples of 16 floats, +4 us per update, 0.6x the 1e3-client
  rate; benchmarks/RESULTS_vs_pytorch.md, section 4). The block's start is
  clamped so that the slice stays inside the array; the rows are the same.
  """
  n = arr.shape[0]
  size = min(int(max_examples), n)
  start = jnp.clip(offset, 0, n - size)
  block = jax.lax.dynamic_slice_in_dim(arr, start, size)
  return block[offset - start + local]


def _loss_and_stats(out, stateful: bool):
  """``(loss, new_batch_stats)`` from what ``loss_fn`` returned, refusing
  the form ``stateful`` does not expect (a model with batch statistics
  returns a pair; a plain one a scalar)."""
  pair = isinstance(out, (tuple, list))
  if stateful and not (pair and len(out) == 2):
    raise ValueError(f"stateful=True needs loss_fn to return (loss, "
                     f"new_batch_stats), got {checks.show(out)}")
  if not stateful and pair:
    raise ValueError(f"loss_fn returned a {type(out).__name__} of "
                     f"{len(out)}, not a scalar loss: a model with batch "
                     f"statistics (its loss returns (loss, new_batch_stats)) "
                     f"needs local_update(..., stateful=True) "
                     f"(ModelFns.stateful)")
  return out if stateful else (out, None)


def local_update(loss_fn: Callable, optimizer: optax.GradientTransformation,
                 *, batch_size: int, max_examples: int, epochs: int = 1,
                 steps: Optional[int] = None, epoch_decay: bool = False,
                 patience: Optional[int] = None, min_delta: float = 0.0,
                 stateful: bool = False,
                 fixed_steps: bool = False) -> ClientUpdate:
  """Builds the local training of one client.

  (Longer than this project's 80-line guide, on purpose: the per-step,
  per-epoch and per-client functions are nested closures so that each reads
  the factory's options and the level above it directly; split apart, each
  would take a dozen arguments.)

  Args:
    loss_fn: ``loss_fn(params, x, y, mask) -> scalar``, the mean loss over
      the examples with ``mask == 1``. With ``stateful=True`` it returns
      ``(loss, new_batch_stats)`` and params are ``{"params": ...,
      "batch_stats": ...}`` (only ``"params"`` is trained).
    optimizer: any optax optimizer; its state starts fresh for every task.
    batch_size: examples per local step, ``>= 1``.
    max_examples: the largest client's number of examples (fixes shapes).
    epochs: local epochs over the client's data, ``>= 1``.
    steps: if given, a fixed number of local steps instead of epochs (the
      client cycles through a random order of its data); ``epochs`` must
      then be left at 1.
    epoch_decay: divide the rate of epoch ``e`` by ``sqrt(e + 1)``.
    patience: stop after this many epochs without a training-loss
      improvement of more than ``min_delta`` (``None``: never stop early).
    min_delta: the improvement that resets the patience counter.
    stateful: see ``loss_fn``.
    fixed_steps: run every client for the largest client's number of steps
      (a ``lax.scan``), masking the steps past its own; the result is the
      same and the work is the largest client's. Default: a ``fori_loop``
      over the client's own steps only (faster). Either differentiates in
      both modes (``sim.pure``): reverse mode cannot transpose a loop of
      dynamic length, so the default is differentiated as the fixed-length
      form (a ``jax.custom_jvp``; same values, the largest client's work).

  Returns:
    A ``ClientUpdate``.
  """
  if not callable(loss_fn):
    raise ValueError(f"loss_fn must be a function (params, x, y, mask) -> "
                     f"loss, got {checks.show(loss_fn)}")
  checks.optimizer("optimizer", optimizer)
  B = checks.integer("batch_size", batch_size, low=1)
  M = checks.integer("max_examples", max_examples, low=1)
  epochs = checks.integer("epochs", epochs, low=1)
  if steps is not None:
    steps = checks.integer("steps", steps, low=1)
    if epochs != 1:
      raise ValueError(f"epochs={epochs} with steps={steps}: fixed local "
                       f"steps replace epochs; pass one of them")
  if patience is not None:
    patience = checks.integer("patience", patience, low=1)
  idle = [n for n, on in (("epoch_decay=True", bool(epoch_decay)),
                          (f"patience={patience}", patience is not None))
          if on]
  if idle and (steps is not None or epochs == 1):
    raise ValueError(
        f"{' and '.join(idle)} act{'s' if len(idle) == 1 else ''} between "
        f"local epochs and {'does' if len(idle) == 1 else 'do'} nothing "
        f"with {f'steps={steps}' if steps is not None else 'epochs=1'} "
        f"(one epoch): pass epochs > 1, or leave them out")
  checks.number("min_delta", min_delta, low=0)
  if steps is not None:
    n_epochs, per_epoch = 1, steps
  else:
    n_epochs, per_epoch = epochs, math.ceil(M / B)

  def split(params):
    if stateful:
      if not (isinstance(params, dict) and
              {"params", "batch_stats"} <= set(params)):
        raise ValueError(
            f"stateful=True trains params of the form {{'params': ..., "
            f"'batch_stats': ...}}, got {checks.show(params)}")
      return params["params"], params["batch_stats"]
    return params, None

  def join(trainable, stats):
    if stateful:
      return {"params": trainable, "batch_stats": stats}
    return trainable

  class _Task(NamedTuple):
    dtype: Any
    count: Any
    begin_epoch: Callable
    one_step: Callable
    end_epoch: Callable

  def task(params, data: ClientRef, hparams: ClientHParams) -> _Task:
    """What every epoch and local step of one task reads: written once
    for ``update`` and for the lane machine."""
    start_trainable, _ = split(params)
    dtype = jax.tree.leaves(start_trainable)[0].dtype
    count = jnp.asarray(data.count, jnp.int32)
    offset = jnp.asarray(data.offset, jnp.int32)
    lr_scale = jnp.asarray(hparams.lr_scale, dtype)
    rho = jnp.asarray(hparams.prox_rho, dtype)

    def objective(trainable, stats, x, y, mask):
      out = loss_fn(join(trainable, stats), x, y, mask)
      loss, new_stats = _loss_and_stats(out, stateful)
      prox = 0.5 * rho * tree_lib.sq_dist(trainable, start_trainable)
      return loss + prox, (loss, new_stats)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def begin_epoch(key, e, stopped):
      """The epoch's example order, rate scale and number of steps."""
      ekey = jax.random.fold_in(key, e)
      # float32 draws in either x64 mode: the same seed shuffles the same
      # way in a float32 run and a float64 (x64) one.
      u = jax.random.uniform(ekey, (M,), jnp.float32)
      u = jnp.where(jnp.arange(M) < count, u, 2.0)
      perm = jnp.argsort(u).astype(jnp.int32)
      scale = lr_scale / jnp.sqrt(e + 1.0).astype(dtype) if epoch_decay \
          else lr_scale
      # Only the client's own steps run: ceil(count / B) per epoch (or the
      # fixed number), none once stopped early.
      if steps is None:
        n_active = jnp.minimum((count + B - 1) // B, per_epoch)
      else:
        n_active = jnp.where(count > 0, per_epoch, 0)
      n_active = jnp.where(stopped, 0, n_active).astype(jnp.int32)
      return perm, scale, n_active

    def one_step(j, c, perm, scale):
      trainable, stats, opt_state, loss_sum = c
      if steps is None:
        pos = j * B + jnp.arange(B, dtype=jnp.int32)
        valid = pos < count
      else:
        # Cycle through the client's data; a batch never repeats an
        # example, so a batch at least as large as the client is its full
        # data set.
        lane = jnp.arange(B, dtype=jnp.int32)
        pos = (j * B + lane) % jnp.maximum(count, 1)
        valid = lane < count
      local = perm[jnp.where(valid, pos, 0)]
      mask = valid.astype(dtype)
      # The offset made opaque per step: otherwise XLA hoists the
      # client's block out of the step loop as a copy of M rows.
      step_offset, _ = jax.lax.optimization_barrier((offset, j))
      (_, (loss, new_stats)), grads = grad_fn(
          trainable, stats, _client_rows(data.x, step_offset, local, M),
          _client_rows(data.y, step_offset, local, M), mask)
      updates, opt_state = optimizer.update(grads, opt_state, trainable)
      updates = jax.tree.map(lambda u: (scale * u).astype(u.dtype), updates)
      trainable = optax.apply_updates(trainable, updates)
      if stateful:
        stats = new_stats
      return trainable, stats, opt_state, loss_sum + loss

    def end_epoch(loss_sum, n_active, epoch_active, best, bad, stopped):
      """Early stopping's state after an epoch."""
      if patience is None:
        return best, bad, stopped
      epoch_loss = loss_sum / jnp.maximum(n_active, 1)
      improved = epoch_loss < best - min_delta
      new_best = jnp.where(epoch_active & improved, epoch_loss, best)
      new_bad = jnp.where(epoch_active, jnp.where(improved, 0, bad + 1), bad)
      return new_best, new_bad, stopped | (new_bad >= patience)

    return _Task(dtype, count, begin_epoch, one_step, end_epoch)

  def result(final, params, count, dtype, loss_total, total, epochs_ran):
    delta = jax.tree.map(lambda a, b: a - b, final, params)
    metrics = {"loss": loss_total / jnp.maximum(total, 1),
               "steps": total, "epochs": epochs_ran}
    return ClientResult(final, delta, count.astype(dtype)), metrics

  def update_with(fixed: bool):
    """The client update with a fixed-length (``lax.scan``) or a dynamic
    (``fori_loop``) step loop."""
    return functools.partial(_update, fixed)

  def _update(fixed, params, data: ClientRef, key, hparams: ClientHParams):
    t = task(params, data, hparams)

    def one_epoch(carry, e):
      trainable, stats, opt_state, best, bad, stopped = carry
      perm, scale, n_active = t.begin_epoch(key, e, stopped)
      epoch_active = jnp.logical_not(stopped)

      def one_step(j, c):
        return t.one_step(j, c, perm, scale)

      # The trip count is dynamic, so a small client costs its own work,
      # not the largest client's; under vmap the loop runs to the longest
      # lane, masking the others.
      c0 = (trainable, stats, opt_state, jnp.zeros((), t.dtype))
      if fixed:
        def masked_step(c, j):
          return tree_lib.where(j < n_active, one_step(j, c), c), None
        (trainable, stats, opt_state, loss_sum), _ = jax.lax.scan(
            masked_step, c0, jnp.arange(per_epoch, dtype=jnp.int32))
      else:
        trainable, stats, opt_state, loss_sum = jax.lax.fori_loop(
            0, n_active, one_step, c0)
      best, bad, stopped = t.end_epoch(loss_sum, n_active, epoch_active,
                                       best, bad, stopped)
      carry = (trainable, stats, opt_state, best, bad, stopped)
      return carry, (loss_sum, n_active, epoch_active)

    trainable, stats = split(params)
    init = (trainable, stats, optimizer.init(trainable),
            jnp.asarray(jnp.inf, t.dtype), jnp.zeros((), jnp.int32),
            jnp.zeros((), bool))
    (trainable, stats, *_), (loss_sums, n_steps, ran) = jax.lax.scan(
        one_epoch, init, jnp.arange(n_epochs, dtype=jnp.int32))
    return result(join(trainable, stats), params, t.count, t.dtype,
                  jnp.sum(loss_sums), jnp.sum(n_steps),
                  jnp.sum(ran & (n_steps > 0)))

  if fixed_steps:
    update = update_with(True)
  else:
    # Runs the dynamic loop, and differentiates as the fixed-length one:
    # equal values, and a derivative reverse mode can transpose (JAX cannot
    # reverse a loop of dynamic length).
    update = jax.custom_jvp(update_with(False))
    update.defjvp(lambda primals, tangents: jax.jvp(update_with(True),
                                                     primals, tangents))

  def lane_start(params, data: ClientRef, key, hparams: ClientHParams):
    t = task(params, data, hparams)
    trainable, stats = split(params)
    zero_i = jnp.zeros((), jnp.int32)
    perm, scale, n_active = t.begin_epoch(key, zero_i, jnp.zeros((), bool))
    zero = jnp.zeros((), t.dtype)
    return LaneState(
        start=params, offset=jnp.asarray(data.offset, jnp.int32),
        count=t.count, key=jax.random.key_data(key),
        lr_scale=jnp.asarray(hparams.lr_scale, t.dtype),
        rho=jnp.asarray(hparams.prox_rho, t.dtype), trainable=trainable,
        stats=stats, opt_state=optimizer.init(trainable), e=zero_i,
        j=zero_i, n_active=n_active, perm=perm, scale=scale, loss_sum=zero,
        loss_total=zero, steps_total=zero_i, epochs_ran=zero_i,
        best=jnp.asarray(jnp.inf, t.dtype), bad=zero_i,
        stopped=jnp.zeros((), bool), done=n_active == 0)

  def lane_step(st: LaneState, x, y, key_impl) -> LaneState:
    t = task(st.start, ClientRef(x, y, st.offset, st.count),
             ClientHParams(st.lr_scale, st.rho))
    active = jnp.logical_not(st.done)  # then j < n_active
    c = (st.trainable, st.stats, st.opt_state, st.loss_sum)
    trainable, stats, opt_state, loss_sum = tree_lib.where(
        active, t.one_step(st.j, c, st.perm, st.scale), c)
    j = st.j + active.astype(jnp.int32)
    end = active & (j == st.n_active)
    # The epoch ends: early stopping, totals, and the next epoch (if any).
    best, bad, stopped = tree_lib.where(end, t.end_epoch(
        loss_sum, st.n_active, jnp.ones((), bool), st.best, st.bad,
        st.stopped), (st.best, st.bad, st.stopped))
    e = st.e + end.astype(jnp.int32)
    done = st.done | (end & (stopped | (e >= n_epochs)))
    key = jax.random.wrap_key_data(st.key, impl=key_impl)
    opened = end & jnp.logical_not(done)
    perm, scale, n_active = tree_lib.where(
        opened, t.begin_epoch(key, e, stopped), (st.perm, st.scale,
                                                 st.n_active))
    return st._replace(
        trainable=trainable, stats=stats, opt_state=opt_state, e=e,
        j=jnp.where(opened, 0, j), n_active=n_active, perm=perm, scale=scale,
        loss_sum=jnp.where(opened, jnp.zeros_like(loss_sum), loss_sum),
        loss_total=st.loss_total + jnp.where(end, loss_sum, 0),
        steps_total=st.steps_total + jnp.where(end, st.n_active, 0),
        epochs_ran=st.epochs_ran + end.astype(jnp.int32),
        best=best, bad=bad, stopped=stopped, done=done)

  def lane_finish(st: LaneState):
    return result(join(st.trainable, st.stats), st.start, st.count,
                  st.loss_total.dtype, st.loss_total, st.steps_total,
                  st.epochs_ran)

  def steps_of(counts):
    counts = np.asarray(counts, np.int64)
    if steps is not None:
      return np.where(counts > 0, per_epoch, 0).astype(np.int64)
    return n_epochs * np.minimum(-(-counts // B), per_epoch)

  return ClientUpdate(update, n_epochs * per_epoch, M, B,
                      Lane(lane_start, lane_step, lane_finish, steps_of))
