"""The types every layer shares: what a client returns, what a server rule
is, and what a simulation returns.

They live here, below the client, the rules and the simulators, so that none
of those has to import another to name them.

Example:
  >>> import jax.numpy as jnp
  >>> r = ClientResult(jnp.ones(2), jnp.ones(2), 3.0)
  >>> r.num_examples
  3.0
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import numpy as np

Params = Any
"""A pytree of arrays (the model's parameters)."""


class ClientResult(NamedTuple):
  """What a client sends back.

  Attributes:
    params: the client's parameters after local training.
    delta: ``params - start_params`` (the pseudo-gradient, negated).
    num_examples: the client's number of training examples (a weight).
  """
  params: Params
  delta: Params
  num_examples: Any


class ServerRule(NamedTuple):
  """A server rule: ``init``, ``apply`` and (synchronous rules) ``end_round``.

  * ``init(params) -> state``;
  * ``apply(state, client_result, staleness) -> state``: one arrival;
  * ``end_round(state) -> state``: closes a synchronous round (``None`` for
    the asynchronous rules, whose versions advance inside ``apply``).

  ``max_staleness`` is the cutoff of the rule's staleness function (or
  ``None``), and ``arrivals_per_version`` tells the scheduler how versions
  advance (1 for FedAsync, ``K`` for FedBuff, ``None`` for rounds).
  ``result_fields`` names the ``ClientResult`` fields ``apply`` reads
  (``"params"`` and/or ``"delta"``); the executor keeps only those for
  clients in flight. ``staleness_fn`` is the staleness function that
  weights ``apply``'s mixing (``None``: none or not said); the simulators
  check it at every staleness their schedule holds, beyond the
  ``0..staleness.PROBE`` checked when the rule was built.

  A rule of your own keeps the built-in rules' contract, which every
  simulator checks before it runs (``sim.contract.check_rule_contract``): its
  state is a NamedTuple with at least ``params``, ``version`` (the integer
  server version), ``applied`` and ``dropped`` (counters; a dropped update
  changes nothing but ``dropped``), and ``apply`` reads only the result
  fields it names. Versions advance as ``arrivals_per_version`` says (or
  once per ``end_round``), which the schedule was drawn with.
  """
  init: Callable[[Params], Any]
  apply: Callable[[Any, ClientResult, Any], Any]
  end_round: Optional[Callable[[Any], Any]] = None
  max_staleness: Optional[int] = None
  arrivals_per_version: Optional[int] = 1
  result_fields: tuple = ("params", "delta")
  staleness_fn: Optional[Callable[[Any], Any]] = None

  @property
  def synchronous(self) -> bool:
    """Whether versions advance by rounds (the rule has ``end_round``)."""
    return self.end_round is not None


class RunResult(NamedTuple):
  """What a simulation returns (the executor, sweeps and the reference).

  Attributes:
    state: the final server state.
    arrivals: per arrival (processing order), numpy arrays ``client``,
      ``simulated_time``, ``staleness``, ``applied`` (False: dropped by the
      cutoff), ``version`` (server version after the arrival) and
      ``train_loss`` (the client's local training loss; NaN where it was
      not trained: the executor skips updates dropped by the cutoff);
      files write them as ``ARRIVAL_COLUMNS``.
    evals: one dict per evaluation, named as the history's columns
      (``COLUMNS``; made by ``evaluation``): ``version``,
      ``simulated_time``, ``client_updates``, ``client_train_loss`` and
      ``test_<name>`` for each metric ``<name>`` of ``eval_fn``.
    participation: applied updates per client.
    stats: numbers about the run (wall time, padding waste, ...).
  """
  state: Any
  arrivals: dict
  evals: list
  participation: np.ndarray
  stats: dict


COLUMNS = ("version", "simulated_time", "client_updates", "client_train_loss",
           "test_loss", "test_accuracy")
"""The one vocabulary of a history, shared by ``RunResult.evals`` and every
output (a run's and a sweep's ``history.csv`` and ``metrics.jsonl``, the
demo's ``history_*.csv`` and ``metrics.jsonl``): the server version, the
simulated time (s), the client updates received, the mean local training
loss of the client updates applied since the previous evaluation (NaN:
none; ``evaluation``), and the test loss and accuracy (any other metric
``<name>`` of the evaluation function is ``test_<name>``, after these)."""

ARRIVAL_COLUMNS = ("client", "simulated_time", "staleness", "status",
                   "version", "train_loss")
"""The columns of every arrivals file (a run's ``arrivals.csv``, the demo's
``arrivals_*.csv``), one row per arrival: the client, the simulated time of
its arrival (s, the name it has in ``COLUMNS``), its staleness, ``status``
(``applied``, or ``dropped`` by a staleness cutoff: ``RunResult.arrivals``
holds it as the boolean ``applied``), the server version after it, and the
client's local training loss (``train_loss``; its mean over the applied
updates between two evaluations is the history's ``client_train_loss``).
The other columns have the names of ``RunResult.arrivals``."""


def metric_columns(metrics: dict) -> dict:
  """The evaluation function's metrics named as history columns:
  ``test_<name>`` (floats).

  Example:
    >>> metric_columns({"loss": 0.5, "accuracy": 1})
    {'test_loss': 0.5, 'test_accuracy': 1.0}

  Raises:
    ValueError: ``metrics`` is not a mapping of names to scalars (what an
      ``eval_fn`` must return).
  """
  if not hasattr(metrics, "items"):
    raise ValueError(f"eval_fn must return a dict of scalars (name -> "
                     f"number), got {type(metrics).__name__}")
  for k, v in metrics.items():
    if np.shape(v) != ():
      raise ValueError(f"eval_fn must return a dict of scalars (name -> "
                       f"number); {k!r} has shape {np.shape(v)}")
  return {f"test_{k}": float(v) for k, v in metrics.items()}


def evaluation(version, simulated_time, client_updates, metrics: dict,
               arrivals: Optional[dict] = None, since: int = 0) -> dict:
  """One entry of ``RunResult.evals`` (a history row, in ``COLUMNS``).

  Args:
    version: the server version evaluated.
    simulated_time: the simulated time of the last arrival before it (s).
    client_updates: the client updates received before it.
    metrics: what the evaluation function returned (``{name: scalar}``),
      each becoming ``test_<name>`` (``metric_columns``).
    arrivals: the run's arrivals so far (``RunResult.arrivals``; at least
      ``train_loss`` and ``applied``), or ``None``: none.
    since: the ``client_updates`` of the previous evaluation.
      ``client_train_loss`` is the mean local training loss of the updates
      applied after it (arrivals ``since`` to ``client_updates - 1``; NaN
      losses left out); NaN when there is none. Updates dropped by a
      staleness cutoff do not count: a simulator may skip training them.

  Example:
    >>> import numpy as np
    >>> arr = {"train_loss": np.array([5.0, 1.0, np.nan, 0.8, 3.0]),
    ...        "applied": np.array([True, True, True, True, False])}
    >>> evaluation(3, 1.5, 5, {"accuracy": 0.8, "loss": 0.7}, arr,
    ...            since=1)  # doctest: +NORMALIZE_WHITESPACE
    {'version': 3, 'simulated_time': 1.5, 'client_updates': 5,
     'client_train_loss': 0.9, 'test_loss': 0.7, 'test_accuracy': 0.8}
  """
  losses = np.zeros(0)
  if arrivals is not None:
    window = slice(since, client_updates)
    losses = np.asarray(arrivals["train_loss"][window], np.float64)[
        np.asarray(arrivals["applied"][window], bool)]
    losses = losses[~np.isnan(losses)]
  row = {"version": int(version), "simulated_time": float(simulated_time),
         "client_updates": int(client_updates),
         "client_train_loss": (float(losses.mean()) if losses.size
                               else float("nan")),
         **metric_columns(metrics)}
  return {**{k: row.pop(k) for k in COLUMNS if k in row}, **row}
