"""Per-task inputs derived from a schedule, shared by every simulator:
the client hyperparameters of each task (fixed when the task is
dispatched, among them the AFL paper's delay-aware rate, arXiv:2508.01675)
and the arrivals after which an evaluation runs.

Example:
  >>> import numpy as np
  >>> eval_points(np.array([1, 2, 2, 3, 4]), 2).tolist()
  [False, True, False, False, True]
"""

from __future__ import annotations

from typing import Optional, Union

import jax
import jax.numpy as jnp

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.client import ClientHParams, ClientRef
from fedasync_jax.core.types import ServerRule
from fedasync_jax.sim import scheduler as sched_lib
from fedasync_jax.sim.delays import DelayModel


def known_delays(model: DelayModel) -> np.ndarray:
  """Each client's delay as known when it is dispatched: its expected task
  duration ``speed * work + comm_time`` (``comm_time`` one number or one
  per client; the per-task jitter, mean 1, is only realised while the task
  runs).

  Example:
    >>> from fedasync_jax import delays
    >>> m = delays.delay_model(np.array([1.0, 2.0]), np.array([3.0, 3.0]),
    ...                        comm_time=0.5)
    >>> known_delays(m).tolist()
    [3.5, 6.5]
  """
  return model.speed * model.work + model.comm_time


def task_hparams(schedule: sched_lib.Schedule, *, lr_scale=1.0,
                 prox_rho=0.0, delay_beta: Optional[float] = None,
                 delay: Union[DelayModel, np.ndarray, None] = None
                 ) -> ClientHParams:
  """Per-task client hyperparameters as arrays over the schedule's tasks.

  The AFL paper's delay-aware rate (arXiv:2508.01675, Section 3 and
  Algorithm 1) is ``lr0 / (sqrt(e + 1) (1 + beta d))``: ``lr0`` the local
  optimizer's rate, ``e`` the local epoch (0-based), ``beta``
  (``delay_beta``) the delay scaling factor and ``d`` the client's delay,
  known when it trains. Here ``d`` is fixed when the task is dispatched:
  given the schedule's delay model, the client's expected task duration
  (``known_delays``: device speed x work + communication time, in the
  schedule's time unit), not the task's realised duration, which is only
  known when the update arrives. (That choice of ``d`` is this library's
  reading of the paper.) This function gives the task's factor
  ``lr_scale / (1 + beta d)``; ``client.local_update(epoch_decay=True)``
  divides the rate of epoch ``e`` by ``sqrt(e + 1)``.

  Args:
    schedule: the schedule.
    lr_scale: a scalar or a per-client array of learning-rate scales.
    prox_rho: a scalar or a per-client array of proximal weights.
    delay_beta: ``beta >= 0``: multiply the rate by ``1 / (1 + beta d)``
      (``None``: no delay-aware rate).
    delay: the delays ``d`` known at dispatch, needed with ``delay_beta``:
      the ``delays.DelayModel`` the schedule was drawn from (its
      ``known_delays``), or a ``(num_clients,)`` array of per-client
      delays.

  Returns:
    A ``ClientHParams`` of ``(num_tasks,)`` float arrays.

  Raises:
    ValueError: ``delay_beta`` without ``delay``, a negative or non-finite
      ``delay_beta`` or delay, or delays of the wrong shape.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> m = delays.delay_model(np.ones(2), np.ones(2), jitter="none")
    >>> s = scheduler.asynchronous(m, num_updates=2, concurrency=1)
    >>> task_hparams(s, delay_beta=1.0, delay=m).lr_scale.tolist()
    [0.5, 0.5]
  """
  c = schedule.client
  scale = np.broadcast_to(np.asarray(lr_scale, np.float64),
                          (schedule.num_clients,))[c]
  rho = np.broadcast_to(np.asarray(prox_rho, np.float64),
                        (schedule.num_clients,))[c]
  if delay_beta is not None:
    beta = checks.number("delay_beta", delay_beta, low=0)
    if delay is None:
      raise ValueError(
          "delay_beta needs the delays known at dispatch: pass delay=<the "
          "schedule's delays.DelayModel> (expected task durations) or a "
          "(num_clients,) array of per-client delays")
    d = np.asarray(known_delays(delay) if isinstance(delay, DelayModel)
                   else delay, np.float64)
    if d.shape != (schedule.num_clients,) or not np.all(np.isfinite(d)) \
        or np.any(d < 0):
      raise ValueError(f"delay must hold one finite delay >= 0 per client "
                       f"({schedule.num_clients}), got shape {d.shape}")
    scale = scale / (1.0 + float(beta) * d[c])
  # float64 on the host: the client casts them to its parameters' dtype
  return ClientHParams(np.array(scale), np.array(rho))


def rule_maker(rule, rule_hp):
  """``simulate``'s ``rule`` as a function ``rule_hp -> ServerRule``, and
  the rule it builds from ``rule_hp``.

  Raises:
    ValueError: ``rule`` neither a ``ServerRule`` nor callable; a built
      rule given ``rule_hp`` (which it would ignore); a function that
      fails without ``rule_hp``.
  """
  if isinstance(rule, ServerRule):
    if rule_hp is not None:
      raise ValueError("rule_hp is used only when rule is a function "
                       "rule_hp -> ServerRule, and this rule is already "
                       "built: drop rule_hp, or pass the function")
    return (lambda _: rule), rule
  if not callable(rule):
    raise ValueError(f"rule must be a ServerRule or a function rule_hp -> "
                     f"ServerRule, got {checks.show(rule)}")
  try:
    built = rule(rule_hp)
  except (TypeError, KeyError, IndexError, AttributeError, ValueError) as e:
    if rule_hp is not None:
      raise
    raise ValueError(f"rule is a function rule_hp -> ServerRule and failed "
                     f"without rule_hp ({type(e).__name__}: {e}): pass "
                     f"rule_hp=...") from e
  if not isinstance(built, ServerRule):
    raise ValueError(f"rule(rule_hp) must return a ServerRule, got "
                     f"{checks.show(built)}")
  return rule, built


def check_hparams(hparams, schedule, *, name: str = "hparams"
                  ) -> ClientHParams:
  """``hparams`` as per-task hyperparameters of ``schedule``: a
  ``ClientHParams`` whose fields hold one value per task (shape
  ``(schedule.num_tasks,)``, what ``task_hparams`` makes); returns it.
  (A per-client array used to run, the tasks past its length padded with
  a zero rate, untrained.)

  Raises:
    ValueError: naming the field, the shape given and the one needed.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(4),
    ...     np.ones(4)), num_updates=6, concurrency=2, seed=0)
    >>> check_hparams(ClientHParams(np.ones(4), np.zeros(4)), s)
    Traceback (most recent call last):
    ...
    ValueError: hparams.lr_scale must hold one value per task of the schedule, shape (6,), got (4,); make it with tasks.task_hparams(schedule, ...)
  """
  if not isinstance(hparams, ClientHParams):
    raise ValueError(f"{name} must be a ClientHParams (tasks.task_hparams), "
                     f"got {checks.show(hparams)}")
  for field, value in zip(hparams._fields, hparams):
    if np.shape(value) != (schedule.num_tasks,):
      raise ValueError(
          f"{name}.{field} must hold one value per task of the schedule, "
          f"shape ({schedule.num_tasks},), got {np.shape(value)}; make it "
          f"with tasks.task_hparams(schedule, ...)")
  return hparams


def check_params_fit(client, params, data, hparams, key) -> None:
  """``params`` must be what ``client`` trains: one client update, traced
  for its shapes only (``jax.eval_shape``, nothing computed), must take
  them and return parameters of the same tree, shapes and dtypes.
  Without this check wrong-shaped parameters fail deep inside the model
  (a ``dot_general`` or a flax error that names no argument).

  Args:
    client: the client update.
    params: the initial server parameters.
    data: the population's examples (``ClientDataset``).
    hparams: the per-task client hyperparameters (their first row is used).
    key: the run's PRNG key.

  Raises:
    ValueError: ``params`` not of one float dtype (``checks.float_params``);
      naming ``params``, its shapes, the model's error (that error
      chained) and the examples' shapes (the fault may be theirs).

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> from fedasync_jax import client as client_lib, data as data_lib
    >>> ds = data_lib.from_client_arrays([np.ones((2, 3))], [np.ones(2)])
    >>> loss = lambda w, x, y, m: jnp.sum(m * (x @ w - y) ** 2)
    >>> upd = client_lib.local_update(loss, optax.sgd(0.1), batch_size=2,
    ...                               max_examples=2)
    >>> hp = client_lib.ClientHParams(np.ones(1), np.zeros(1))
    >>> check_params_fit(upd, jnp.zeros(4), ds, hp, jax.random.key(0))
    Traceback (most recent call last):
    ...
    ValueError: the client update fails on params of shapes float32[4]: TypeError: dot_general requires contracting dimensions to have the same shape, got (3,) and (4,). (its examples: x float32[2,3], y float32[2])
  """
  checks.float_params("params", params)
  first = jax.tree.map(lambda a: jnp.asarray(a)[0], hparams)
  ref = ClientRef(*(jax.ShapeDtypeStruct(np.shape(a), jax.dtypes.
                                         canonicalize_dtype(a.dtype))
                    for a in (data.x, data.y)),
                  jnp.int32(data.offsets[0]), jnp.int32(data.counts[0]))
  shapes = _shapes(params)

  def params_after(p, r):
    return client.update(p, r, jax.random.fold_in(key, 0), first)[0].params
  try:
    out = jax.eval_shape(params_after, params, ref)
  except Exception as e:  # noqa: BLE001 (re-raised, chained, naming params)
    message = checks.error_text(e)
    hint = ("; the parameters' dtype differs from the examples': cast "
            "both to one (float64 for a float64 study)"
            if "must have equal types" in message and
            {a.dtype for a in jax.tree.leaves(params)} != {ref.x.dtype}
            else "")
    raise ValueError(f"the client update fails on params of shapes "
                     f"{shapes}: {type(e).__name__}: {message} (its "
                     f"examples: x {_shapes(ref.x)}, y {_shapes(ref.y)})"
                     f"{hint}") from e
  given = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      jnp.shape(x), jnp.result_type(x)), params)
  if jax.tree.structure(out) != jax.tree.structure(given) or any(
      (a.shape, a.dtype) != (b.shape, b.dtype) for a, b in
      zip(jax.tree.leaves(out), jax.tree.leaves(given))):
    raise ValueError(f"the client update returns parameters other than "
                     f"params' (tree, shapes and dtypes): params {shapes}; "
                     f"it returned {_shapes(out)}")


def _shapes(tree) -> str:
  """``float32[10,16] float32[16] ...``: a tree's leaves, the first six."""
  leaves = jax.tree.leaves(tree)
  return " ".join(f"{jnp.result_type(x).name}{list(jnp.shape(x))}"
                  .replace(" ", "") for x in leaves[:6]) + (
      f" and {len(leaves) - 6} more" if len(leaves) > 6 else "")


def check_eval_every(eval_every, *, has_eval_fn: bool = True
                     ) -> Optional[int]:
  """``eval_every`` as an int >= 1, or ``None`` (no periodic evaluation).

  Raises:
    ValueError: anything else (0, a negative or fractional number),
      naming ``eval_every`` and the allowed values; or an ``eval_every``
      given where there is no ``eval_fn`` (``has_eval_fn=False``), which
      would evaluate nothing.

  Example:
    >>> check_eval_every(0)
    Traceback (most recent call last):
    ...
    ValueError: eval_every (server versions between evaluations; None: none) must be an integer >= 1, got 0
  """
  if eval_every is None:
    return None
  every = checks.integer("eval_every (server versions between evaluations; "
                         "None: none)", eval_every, low=1)
  if not has_eval_fn:
    raise ValueError(f"eval_every={every} needs an eval_fn: without one "
                     f"nothing is evaluated (pass eval_fn, or leave "
                     f"eval_every None)")
  return every


def eval_points(version_after: np.ndarray, eval_every: Optional[int]):
  """Arrivals after which an evaluation runs: the version just became a
  multiple of ``eval_every`` (shared by the executor's entry points, which
  thus refuse a bad ``eval_every`` before any work: ``check_eval_every``).

  Example:
    >>> eval_points(np.array([1, 2, 2, 3, 4]), 2).tolist()
    [False, True, False, False, True]
  """
  eval_every = check_eval_every(eval_every)
  if eval_every is None:
    return np.zeros(version_after.shape, bool)
  prev = np.concatenate([[0], version_after[:-1]])
  return (version_after != prev) & (version_after % eval_every == 0)


def pad_tasks(hp: ClientHParams, n: int) -> ClientHParams:
  """Pads per-task hyperparameters with zeros to ``n`` tasks (tasks past a
  schedule's own are never trained).

  Example:
    >>> pad_tasks(ClientHParams(np.ones(2), np.zeros(2)), 3).lr_scale.tolist()
    [1.0, 1.0, 0.0]
  """
  return jax.tree.map(
      lambda a: np.concatenate([np.asarray(a), np.zeros(
          n - np.shape(a)[0], np.asarray(a).dtype)]), hp)
