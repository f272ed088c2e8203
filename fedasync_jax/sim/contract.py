"""What a run's inputs must satisfy, checked by every simulator (the
executor, sweeps, the reference, ``pure.run`` and the theory tracker):
schedules that agree with themselves and were drawn for the rule, a rule
that keeps the contract of ``core.types.ServerRule`` and a staleness
function with weights in ``[0, 1]`` at every staleness the schedule holds,
a client update that holds every client's examples; and after a run, a
rule whose versions followed the schedule.

Example:
  >>> import numpy as np, optax
  >>> from fedasync_jax import delays, rules, scheduler
  >>> s = scheduler.asynchronous(delays.delay_model(np.ones(4), np.ones(4)),
  ...                            num_updates=6, concurrency=2, seed=0)
  >>> check_rule_fits(rules.fedbuff(2, optax.sgd(1.0)), [s])  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ...
  ValueError: the schedule was drawn with arrivals_per_version=1 but the rule applies a version every 2 arrivals; ...
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core import staleness as staleness_lib
from fedasync_jax.core.types import ClientResult, ServerRule


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
    ValueError: naming the missing state fields, the ``apply`` error
      (chained), blaming ``result_fields`` where ``apply`` runs on a full
      ``ClientResult``, or the state array whose
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
  checks.float_params("params", params)  # (one dtype, read below)
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
  def apply(r):
    return jax.eval_shape(lambda st, r: rule.apply(st, r, jnp.int32(0)),
                          state, r)
  try:
    after = apply(res)
  except (TypeError, AttributeError) as e:
    try:  # the fields, or apply itself?
      apply(full)
    except Exception as e_full:  # noqa: BLE001 (re-raised, chained)
      raise ValueError(f"rule.apply(state, result, staleness) fails: "
                       f"{type(e_full).__name__}: "
                       f"{checks.error_text(e_full)}") from e_full
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
