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
  clients in flight.
  """
  init: Callable[[Params], Any]
  apply: Callable[[Any, ClientResult, Any], Any]
  end_round: Optional[Callable[[Any], Any]] = None
  max_staleness: Optional[int] = None
  arrivals_per_version: Optional[int] = 1
  result_fields: tuple = ("params", "delta")

  @property
  def synchronous(self) -> bool:
    """Whether versions advance by rounds (the rule has ``end_round``)."""
    return self.end_round is not None


class RunResult(NamedTuple):
  """What a simulation returns (the executor, sweeps and the reference).

  Attributes:
    state: the final server state.
    arrivals: per arrival (processing order), numpy arrays ``client``,
      ``time``, ``staleness``, ``applied`` (False: dropped by the cutoff),
      ``version`` (server version after the arrival), ``train_loss``.
    evals: one dict per evaluation: ``version``, ``time``, ``arrival``
      (index of the arrival after which it ran), ``updates`` (arrivals so
      far) and the metrics of ``eval_fn``. Files and printed tables name
      these with ``COLUMNS`` (``eval_row``).
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
"""The one vocabulary of a history, shared by every output (a run's and a
sweep's ``history.csv``, ``metrics.jsonl``, the demo's ``history_*.csv``):
the server version, the simulated time (s), the client updates received,
the mean local training loss of the client updates since the previous
evaluation, and the test loss and accuracy."""

EVAL_KEYS = {"version": "version", "time": "simulated_time",
             "updates": "client_updates", "loss": "test_loss",
             "accuracy": "test_accuracy"}
"""``RunResult.evals`` key -> its name in ``COLUMNS`` (the evaluations keep
their short keys; other metrics of ``eval_fn`` become ``test_<name>``)."""


def eval_row(ev: dict, train_loss: float = float("nan")) -> dict:
  """One evaluation (an entry of ``RunResult.evals``) in ``COLUMNS``.

  Args:
    ev: the evaluation.
    train_loss: the mean local training loss of the client updates since the
      previous evaluation (``client_train_loss``; NaN: none).

  Example:
    >>> eval_row({"version": 3, "time": 1.5, "arrival": 2, "updates": 3,
    ...           "loss": 0.7, "accuracy": 0.8}, 0.9)  # doctest: +NORMALIZE_WHITESPACE
    {'version': 3, 'simulated_time': 1.5, 'client_updates': 3,
     'client_train_loss': 0.9, 'test_loss': 0.7, 'test_accuracy': 0.8}
  """
  row = {c: None for c in COLUMNS}
  row["client_train_loss"] = train_loss
  for k, v in ev.items():
    if k != "arrival":
      row[EVAL_KEYS.get(k, f"test_{k}")] = v
  return {k: v for k, v in row.items() if v is not None}
