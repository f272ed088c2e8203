"""How much of a batched wave's work is useful: lane utilisation of a plan.

Under ``vmap`` (the wave strategy used on accelerators), the ``width``
lanes of a wave run one loop of local steps together, so the wave costs
``width x`` the longest client's steps, whatever the other lanes need.
Lane utilisation is the useful client steps over the executed lane-steps:

    sum over waves of sum of the wave's clients' steps
    / sum over waves of width x max step count in the wave

Padding (lanes without a client) and short clients waiting for the
longest both lower it. It is computed from the plan on the host, so it
needs no accelerator.

Example:
  >>> import numpy as np
  >>> from fedasync_jax import delays, plan, scheduler
  >>> m = delays.delay_model(np.ones(20), np.ones(20))
  >>> s = scheduler.asynchronous(m, num_updates=60, concurrency=8, seed=0)
  >>> p = plan.make_plan(s, width=4)
  >>> u = utilisation(p, np.full(20, 3))  # every client: 3 local steps
  >>> u["useful_steps"]
  180
  >>> # equal steps: only empty lanes of non-empty waves are wasted
  >>> bool(u["utilisation"] == p.wave_valid.sum() / (4 * u["executed_waves"]))
  True
"""

from __future__ import annotations

import math

import numpy as np


def client_steps(counts, *, batch_size: int, epochs: int = 1,
                 steps=None) -> np.ndarray:
  """Local steps of each client's task: ``epochs * ceil(count /
  batch_size)``, or ``steps`` for fixed-step training (as
  ``client.local_update`` runs them).

  Example:
    >>> client_steps(np.array([1, 10, 11]), batch_size=10).tolist()
    [1, 1, 2]
  """
  counts = np.asarray(counts, dtype=np.int64)
  if steps is not None:
    return np.full(counts.shape, int(steps), np.int64)
  return int(epochs) * -(-counts // int(batch_size))


def utilisation(p, steps_of_client) -> dict:
  """Lane utilisation of plan ``p`` under ``vmap``.

  Args:
    p: a ``plan.Plan`` (not a direct plan: it has no waves).
    steps_of_client: ``(num_clients,)`` local steps of each client's task
      (``client_steps``).

  Returns:
    ``useful_steps`` (client steps the run needs), ``executed_lane_steps``
    (``width x`` the longest client of every non-empty wave),
    ``utilisation`` (their ratio), ``executed_waves`` (non-empty waves),
    ``padding`` (the plan's share of empty lanes) and ``width``.
  """
  if p.direct:
    raise ValueError("a direct plan trains one client per step: its "
                     "utilisation is 1 by construction")
  steps = np.asarray(steps_of_client, dtype=np.int64)[p.wave_client]
  steps = np.where(p.wave_valid, steps, 0)
  longest = steps.max(axis=1)
  waves = int(np.sum(p.wave_valid.any(axis=1)))
  useful = int(steps.sum())
  executed = int(longest.sum()) * p.width
  return {"width": p.width, "useful_steps": useful,
          "executed_lane_steps": executed,
          "utilisation": useful / executed if executed else math.nan,
          "executed_waves": waves, "padding": p.padding_waste}
