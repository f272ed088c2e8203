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
from fedasync_jax.core import staleness as staleness_lib
from fedasync_jax.core.client import ClientHParams, ClientRef
from fedasync_jax.core.types import ClientResult, ServerRule
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


def check_schedules(schedules, num_clients: int):
  """Every schedule must have the data's number of clients and agree with
  itself (``check_schedule_consistent``, once per distinct schedule: a
  sweep's members often share one)."""
  seen = set()
  for s in schedules:
    if s.num_clients != num_clients:
      raise ValueError(f"schedule has {s.num_clients} clients but data has "
                       f"{num_clients}")
    if id(s) not in seen:
      seen.add(id(s))
      check_schedule_consistent(s)


def check_schedule_consistent(schedule) -> None:
  """A ``Schedule``'s arrays must tell one story, as the schedulers draw
  them (in numpy, linear in its events). The simulators read different
  arrays: the executor the per-arrival ``staleness`` and
  ``dispatch_version``, the reference the ``events`` it walks, the tracker
  ``version_after``. A hand-edited schedule (a NamedTuple's ``_replace``)
  on which they disagree ran in all three, to three different results.

  Checked: the arrivals in ``events`` are ``arrival_task`` in order; the
  version advances by 0 or 1 per arrival from 0; each task was dispatched
  at the version its dispatch event saw; and each arrival's ``staleness``
  is the version before it less its task's ``dispatch_version``.

  Raises:
    ValueError: naming the array and the first arrival or task at fault.
  """
  s = schedule
  kind = np.asarray(s.events)[:, 0] if len(s.events) else np.zeros(0, int)
  task = np.asarray(s.events)[:, 1] if len(s.events) else np.zeros(0, int)
  at = np.asarray(s.arrival_task)
  n = len(at)

  def fault(what: str, i: int, unit: str = "arrival"):
    return ValueError(
        f"the schedule does not agree with itself: {what} at {unit} {i}; "
        f"draw it with the scheduler module, or edit its arrays together "
        f"(scheduler.Schedule)")
  if not (len(s.staleness) == len(s.version_after) == len(s.dropped)
          == len(s.ends_round) == n):
    raise ValueError(
        f"the schedule's per-arrival arrays must all have "
        f"{n} entries (arrival_task), got staleness {len(s.staleness)}, "
        f"version_after {len(s.version_after)}, dropped {len(s.dropped)}, "
        f"ends_round {len(s.ends_round)}")
  if n and (at.min() < 0 or at.max() >= s.num_tasks):
    raise fault(f"arrival_task outside [0, {s.num_tasks})",
                int(np.argmax((at < 0) | (at >= s.num_tasks))))
  arrived = task[kind == 1]
  if len(arrived) != n or not np.array_equal(arrived, at):
    i = next((j for j in range(min(len(arrived), n))
              if arrived[j] != at[j]), min(len(arrived), n))
    raise fault("events' arrivals are not arrival_task", i)
  after = np.asarray(s.version_after, np.int64)
  before = np.concatenate([[0], after[:-1]]).astype(np.int64)
  step = after - before
  if n and ((step < 0) | (step > 1)).any():
    raise fault("version_after advances by other than 0 or 1",
                int(np.argmax((step < 0) | (step > 1))))
  # The version each event sees: version_after of the arrivals before it.
  seen = np.concatenate([[0], after])[np.cumsum(kind == 1) - (kind == 1)]
  dispatched = kind == 0
  dv = np.asarray(s.dispatch_version, np.int64)
  wrong = seen[dispatched] != dv[task[dispatched]]
  if wrong.any():
    raise fault("dispatch_version is not the version its dispatch event "
                "saw", int(task[dispatched][np.argmax(wrong)]), "task")
  tau = before - dv[at]
  wrong = np.asarray(s.staleness, np.int64) != tau
  if wrong.any():
    raise fault("staleness is not the version before the arrival less its "
                "task's dispatch_version", int(np.argmax(wrong)))


def check_followed(schedule, arrivals: dict, *, where: str = "") -> None:
  """After a run: the rule's server versions (``arrivals["version"]``) must
  be the ones the schedule was drawn with (``version_after``; a run stopped
  early: its first arrivals). A rule of one's own whose versions advance
  otherwise than its ``arrivals_per_version`` says (every second arrival,
  declared one) ran in every simulator to a different result, without an
  error: the clients trained from snapshots of other versions than the
  rule applied. (Whether an update was applied is not compared: the
  robust guard rejects non-finite updates that the schedule counts.)

  Raises:
    ValueError: naming the first arrival that differs (the run's results
      are not valid).
  """
  got = np.asarray(arrivals["version"])
  want = np.asarray(schedule.version_after[:len(got)])
  bad = got != want
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(
        f"{where}the rule did not follow the schedule: at arrival {i} the "
        f"server version after it is {got[i]} but the schedule has "
        f"{want[i]}; a rule's versions must advance as its "
        f"arrivals_per_version says (a version every that many applied "
        f"arrivals, or one per end_round; none for an update its cutoff "
        f"drops), which the schedule was drawn with; this run's results "
        f"are not valid")


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
  except (TypeError, KeyError, IndexError, AttributeError) as e:
    if rule_hp is not None:
      raise
    raise ValueError(f"rule is a function rule_hp -> ServerRule and failed "
                     f"without rule_hp ({type(e).__name__}: {e}): pass "
                     f"rule_hp=...") from e
  if not isinstance(built, ServerRule):
    raise ValueError(f"rule(rule_hp) must return a ServerRule, got "
                     f"{checks.show(built)}")
  return rule, built


def check_rule_fits(rule, schedules) -> None:
  """Every schedule must be drawn for ``rule``: by the scheduler of its
  kind (rounds or arrivals), and, for an asynchronous one, with the rule's
  ``arrivals_per_version`` (a FedBuff run on a schedule of one arrival per
  version trains its clients from other snapshots than the rule applies,
  and the executor and the reference then disagree) and its
  ``max_staleness`` (a cutoff the scheduler did not know counts versions
  differently; checked where the schedule records it, by the arrivals each
  drops: a schedule whose cutoff drops nothing fits a rule without one).
  The rule's ``staleness_fn`` (when it names one) must give a weight in
  ``[0, 1]`` at every staleness the schedules hold.

  Raises:
    ValueError: naming the mismatch and the scheduler call that fits.
  """
  kind = {True: "synchronous", False: "asynchronous"}
  for s in schedules:
    if bool(rule.synchronous) != bool(s.synchronous):
      raise ValueError(
          f"the rule is {kind[rule.synchronous]} but the schedule was drawn "
          f"by scheduler.{kind[s.synchronous]}; draw it with "
          f"scheduler.{kind[rule.synchronous]}")
    if s.synchronous:
      continue
    want = rule.arrivals_per_version or 1
    got = s.stats.get("arrivals_per_version", want)  # (not recorded: pass)
    if got != want:
      raise ValueError(
          f"the schedule was drawn with arrivals_per_version={got} but the "
          f"rule applies a version every {want} arrivals; draw it with "
          f"scheduler.asynchronous(..., arrivals_per_version={want}) "
          f"({_PRESCRIBED})")
    drawn = s.stats.get("max_staleness", rule.max_staleness)
    if drawn != rule.max_staleness and not np.array_equal(
        _drops(s, drawn), _drops(s, rule.max_staleness)):
      cut = rule.max_staleness
      drops = ("drops no update" if cut is None else
               f"drops updates staler than {cut}")
      raise ValueError(
          f"the schedule was drawn with max_staleness={drawn} but the "
          f"rule {drops} (its staleness function's cutoff), so the two "
          f"count versions differently; draw it with "
          f"scheduler.asynchronous(..., max_staleness={cut}) "
          f"(rule.max_staleness; {_PRESCRIBED})")
  check_weights(rule, beyond_probe(schedules))


def beyond_probe(schedules) -> np.ndarray:
  """The distinct staleness values of ``schedules`` above
  ``staleness.PROBE``, where a rule's staleness function was not checked
  when it was built (``check_weights``)."""
  out, seen = [np.zeros(0, np.int64)], set()
  for s in schedules:
    if id(s) not in seen:
      seen.add(id(s))
      tau = np.asarray(s.staleness, np.int64)
      out.append(np.unique(tau[tau > staleness_lib.PROBE]))
  return np.unique(np.concatenate(out))


def check_weights(rule, taus) -> None:
  """The rule's staleness function (``rule.staleness_fn``, when it names
  one) must weigh every staleness in ``taus`` (``beyond_probe``) up to
  its cutoff within ``[0, 1]``: a weight that goes wrong only there
  (``1 - tau / 80`` at concurrency 90) turned a run to NaN or made it
  diverge without an error.

  Raises:
    ValueError: naming the staleness and its weight.
  """
  fn = getattr(rule, "staleness_fn", None)
  taus = np.asarray(taus, np.int64)
  if rule.max_staleness is not None:
    taus = taus[taus <= rule.max_staleness]
  if fn is not None and taus.size:
    staleness_lib.check(fn, "the rule's staleness_fn", taus=taus)


_PRESCRIBED = ("a prescribed.from_staleness schedule applies every arrival "
               "as one version: it fits FedAsync with no update dropped")


def _drops(schedule, cutoff) -> np.ndarray:
  """Which of the schedule's arrivals a cutoff drops (none for ``None``)."""
  tau = np.asarray(schedule.staleness)
  return tau > cutoff if cutoff is not None else np.zeros(tau.shape, bool)


def check_client_fits(client, data) -> None:
  """The client update must hold every client's examples: with a smaller
  ``max_examples`` each client would train on its first examples only.

  Raises:
    ValueError: naming ``max_examples`` and the data's largest client.
  """
  most = data.max_count
  if client.max_examples < most:
    raise ValueError(
        f"client.local_update(max_examples={client.max_examples}) is below "
        f"the data's largest client ({most} examples), which would train on "
        f"its first {client.max_examples} only; pass max_examples={most} "
        f"(data.max_count)")


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


STATE_FIELDS = ("params", "version", "applied", "dropped")
"""What every rule's state holds (``core/rules.py``); the executor reads
them."""


def check_rule_contract(rule: ServerRule, params) -> None:
  """A rule, built-in or the user's, must be what the simulators drive
  (traced for shapes only, nothing computed): ``rule.init(params)`` returns
  a state with ``STATE_FIELDS``, and ``rule.apply`` runs on a
  ``ClientResult`` holding only the fields its ``result_fields`` names
  (the executor keeps no other for clients in flight); ``apply`` and
  ``end_round`` return states of ``init``'s structure, shapes and dtypes.

  Raises:
    ValueError: naming the missing state fields, the ``apply`` error with
      ``result_fields`` (that error chained), or the state array whose
      shape or dtype ``apply`` or ``end_round`` changes.

  Example:
    >>> import jax.numpy as jnp
    >>> from fedasync_jax import rules
    >>> r = rules.fedasync(0.5)._replace(result_fields=("delta",))
    >>> check_rule_contract(r, jnp.zeros(2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: rule.apply fails on a ClientResult holding only its result_fields ('delta',)...
  """
  try:
    state = jax.eval_shape(rule.init, params)
  except Exception as e:  # noqa: BLE001 (re-raised, chained)
    raise ValueError(f"rule.init(params) fails: {type(e).__name__}: "
                     f"{checks.error_text(e)}") from e
  missing = [f for f in STATE_FIELDS if not hasattr(state, f)]
  if missing:
    raise ValueError(
        f"rule.init(params) must return a state with the fields "
        f"{', '.join(STATE_FIELDS)} (a NamedTuple, as core/rules.py's "
        f"rules do); {type(state).__name__} lacks {', '.join(missing)}")
  dtype = jnp.result_type(jax.tree.leaves(params)[0])
  full = ClientResult(params, params, jnp.zeros((), dtype))
  res = full._replace(**{f: None for f in ("params", "delta")
                         if f not in rule.result_fields})
  try:
    after = jax.eval_shape(lambda st, r: rule.apply(st, r, jnp.int32(0)),
                           state, res)
  except (TypeError, AttributeError) as e:
    raise ValueError(
        f"rule.apply fails on a ClientResult holding only its "
        f"result_fields {tuple(rule.result_fields)} (the executor keeps no "
        f"other field for clients in flight): {type(e).__name__}: "
        f"{checks.error_text(e)}; name every field apply reads in "
        f"result_fields") from e
  _check_same_state("rule.apply(state, result, staleness)", state, after)
  if rule.end_round is not None:
    _check_same_state("rule.end_round(state)", state,
                      jax.eval_shape(rule.end_round, state))


def _check_same_state(what: str, state, after) -> None:
  """``after`` must be a state of ``state``'s tree, shapes and dtypes: a
  simulator carries it through a loop (a float32 state in a float64 run
  silently demoted the study in one simulator and failed in another)."""
  if jax.tree.structure(after) != jax.tree.structure(state):
    raise ValueError(f"{what} must return a state of the same structure "
                     f"as rule.init(params) ({type(state).__name__}); got "
                     f"{jax.tree.structure(after)}")
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state),
                          jax.tree.leaves(after)):
    if (a.shape, a.dtype) != (b.shape, b.dtype):
      raise ValueError(
          f"{what} must keep every state array's shape and dtype; "
          f"state{jax.tree_util.keystr(path)} is {a.dtype}{list(a.shape)} "
          f"from rule.init(params) but {b.dtype}{list(b.shape)} after it "
          f"(cast the new values with .astype(old.dtype))")


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
    ValueError: naming ``params``, its shapes, the model's error (that
      error chained) and the examples' shapes (the fault may be theirs).

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
