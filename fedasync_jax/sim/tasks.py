"""Per-task inputs derived from a schedule, shared by every simulator:
the client hyperparameters of each task and the arrivals after which an
evaluation runs.

Example:
  >>> import numpy as np
  >>> eval_points(np.array([1, 2, 2, 3, 4]), 2).tolist()
  [False, True, False, False, True]
"""

from __future__ import annotations

from typing import Optional

import jax

import numpy as np

from fedasync_jax.core.client import ClientHParams
from fedasync_jax.sim import scheduler as sched_lib


def task_hparams(schedule: sched_lib.Schedule, *, lr_scale=1.0,
                 prox_rho=0.0, delay_beta: Optional[float] = None
                 ) -> ClientHParams:
  """Per-task client hyperparameters as arrays over the schedule's tasks.

  Args:
    schedule: the schedule.
    lr_scale: a scalar or a per-client array of learning-rate scales.
    prox_rho: a scalar or a per-client array of proximal weights.
    delay_beta: if given, multiply the rate by ``1 / (1 + beta * delay)``
      with ``delay`` the task's simulated duration (the AFL paper's
      delay-aware rate, arXiv:2508.01675).

  Returns:
    A ``ClientHParams`` of ``(num_tasks,)`` float arrays.

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> s = scheduler.asynchronous(delays.delay_model(np.ones(2),
    ...     np.ones(2), jitter="none"), num_updates=2, concurrency=1)
    >>> task_hparams(s, delay_beta=1.0).lr_scale.tolist()
    [0.5, 0.5]
  """
  c = schedule.client
  scale = np.broadcast_to(np.asarray(lr_scale, np.float64),
                          (schedule.num_clients,))[c]
  rho = np.broadcast_to(np.asarray(prox_rho, np.float64),
                        (schedule.num_clients,))[c]
  if delay_beta is not None:
    if not np.isfinite(delay_beta) or delay_beta < 0:
      raise ValueError(f"delay_beta must be finite and >= 0, got "
                       f"{delay_beta!r}")
    delay = schedule.arrival_time - schedule.dispatch_time
    scale = scale / (1.0 + delay_beta * delay)
  return ClientHParams(scale.astype(np.float32), rho.astype(np.float32))


def eval_points(version_after: np.ndarray, eval_every: Optional[int]):
  """Arrivals after which an evaluation runs: the version just became a
  multiple of ``eval_every`` (shared by both simulators)."""
  if not eval_every:
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
