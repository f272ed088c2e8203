"""How long a client task takes: device speeds, work, jitter, availability.

A task of client ``c`` takes ``speed[c] * work[c] * jitter + comm_time``
simulated seconds, where ``speed`` (seconds per unit of work) is drawn once
per client, ``work`` is the local work (examples x epochs), and ``jitter`` is
drawn per task (mean 1). With probability ``dropout`` the update never
arrives. An ``Availability`` restricts when a client can be dispatched
(on/off windows such as "charging at night").

Device-speed distributions follow the systems-heterogeneity models of the
cross-device FL literature (e.g. FedScale, Lai et al. 2022, arXiv:2105.11367):
constant, uniform, exponential, lognormal and Pareto heavy tails, or a
user-supplied trace.

Example:
  >>> import numpy as np
  >>> speeds = device_speeds("lognormal", 4, seed=0, sigma=1.0)
  >>> model = delay_model(speeds, np.full(4, 10.0), jitter="none")
  >>> d, lost = sample_durations(model, np.array([0, 1]),
  ...                            np.random.default_rng(0))
  >>> bool(np.allclose(d, speeds[:2] * 10.0)), lost.tolist()
  (True, [False, False])
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

SPEED_KINDS = ("constant", "uniform", "exponential", "lognormal", "pareto",
               "trace")
JITTER_KINDS = ("none", "exponential", "lognormal")


def _positive(name, value, *, strict=True):
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number, got {value!r}") from None
  if not np.isfinite(v) or (v <= 0 if strict else v < 0):
    rng = "> 0" if strict else ">= 0"
    raise ValueError(f"{name} must be finite and {rng}, got {value!r}")
  return v


def device_speeds(kind: str, num_clients: int, *, seed: int = 0,
                  mean: float = 1.0, sigma: float = 1.0, low: float = 0.5,
                  high: float = 1.5, shape: float = 2.0,
                  trace: Optional[np.ndarray] = None) -> np.ndarray:
  """Draws one speed (seconds per unit of work) per client.

  Args:
    kind: one of ``constant``, ``uniform`` (on ``[low, high]``),
      ``exponential`` (mean ``mean``), ``lognormal`` (median ``mean``, log
      standard deviation ``sigma``), ``pareto`` (Lomax tail index ``shape``,
      scaled to mean ``mean`` when ``shape > 1``), ``trace`` (``trace``
      values, cycled over the clients).
    num_clients: population size, ``>= 1``.
    seed: the random seed.

  Returns:
    ``(num_clients,)`` float64 array of positive speeds.

  Example:
    >>> device_speeds("constant", 3, mean=2.0).tolist()
    [2.0, 2.0, 2.0]
  """
  if kind not in SPEED_KINDS:
    raise ValueError(f"kind must be one of {SPEED_KINDS}, got {kind!r}")
  if int(num_clients) != num_clients or num_clients < 1:
    raise ValueError(f"num_clients must be an integer >= 1, got "
                     f"{num_clients!r}")
  n = int(num_clients)
  rng = np.random.default_rng(seed)
  mean = _positive("mean", mean)
  if kind == "constant":
    out = np.full(n, mean)
  elif kind == "uniform":
    low = _positive("low", low)
    high = _positive("high", high)
    if high < low:
      raise ValueError(f"high must be >= low ({low}), got {high}")
    out = rng.uniform(low, high, n)
  elif kind == "exponential":
    out = rng.exponential(mean, n)
  elif kind == "lognormal":
    sigma = _positive("sigma", sigma, strict=False)
    out = mean * rng.lognormal(0.0, sigma, n)
  elif kind == "pareto":
    shape = _positive("shape", shape)
    scale = mean * (shape - 1.0) if shape > 1 else mean
    out = scale * rng.pareto(shape, n)
  else:
    if trace is None:
      raise ValueError("trace must be given when kind='trace'")
    t = np.asarray(trace, dtype=np.float64).ravel()
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
      raise ValueError("trace must be a non-empty array of finite values > 0")
    out = t[np.arange(n) % t.size]
  # A zero speed would make a task take no time; keep every speed positive.
  return np.maximum(out, 1e-9 * mean)


class Availability(NamedTuple):
  """On/off windows: client ``c`` can be dispatched while
  ``(t + phase[c]) mod period < on_fraction * period``."""
  period: float
  on_fraction: float
  phase: np.ndarray

  def available(self, clients, t):
    return ((t + self.phase[clients]) % self.period
            < self.on_fraction * self.period)

  def next_start(self, clients, t):
    """The earliest time ``>= t`` at which each client is available."""
    pos = (t + self.phase[clients]) % self.period
    on = pos < self.on_fraction * self.period
    return np.where(on, t, t + self.period - pos)


def availability(num_clients: int, *, period: float, on_fraction: float,
                 seed: int = 0) -> Availability:
  """On/off windows with a random phase per client.

  Args:
    num_clients: population size.
    period: length of one on/off cycle (e.g. 24 for hours of a day), ``> 0``.
    on_fraction: fraction of the period a client is available, in ``(0, 1]``.
    seed: seed of the phases.

  Example:
    >>> a = availability(2, period=24.0, on_fraction=0.25, seed=0)
    >>> a.phase.shape
    (2,)
  """
  period = _positive("period", period)
  f = _positive("on_fraction", on_fraction)
  if f > 1:
    raise ValueError(f"on_fraction must be in (0, 1], got {on_fraction!r}")
  phase = np.random.default_rng(seed).uniform(0, period, int(num_clients))
  return Availability(period, f, phase)


class DelayModel(NamedTuple):
  """Everything that decides how long a client task takes."""
  speed: np.ndarray
  work: np.ndarray
  jitter: str = "exponential"
  jitter_sigma: float = 0.5
  comm_time: float = 0.0
  dropout: float = 0.0
  availability: Optional[Availability] = None

  @property
  def num_clients(self) -> int:
    return int(self.speed.shape[0])


def delay_model(speed: np.ndarray, work: np.ndarray, *,
                jitter: str = "exponential", jitter_sigma: float = 0.5,
                comm_time: float = 0.0, dropout: float = 0.0,
                availability: Optional[Availability] = None) -> DelayModel:
  """Validates and bundles a delay model.

  Args:
    speed: ``(N,)`` seconds per unit of work, from ``device_speeds``.
    work: ``(N,)`` units of work per task (e.g. examples x local epochs).
    jitter: per-task factor: ``none``, ``exponential`` (mean 1) or
      ``lognormal`` (mean 1, log standard deviation ``jitter_sigma``).
    comm_time: added to every task (download + upload), ``>= 0``.
    dropout: probability in ``[0, 1)`` that an update never arrives.
    availability: optional on/off windows.

  Example:
    >>> m = delay_model(np.ones(3), np.ones(3), dropout=0.1)
    >>> m.num_clients
    3
  """
  speed = np.asarray(speed, dtype=np.float64)
  work = np.asarray(work, dtype=np.float64)
  if speed.ndim != 1 or speed.size == 0:
    raise ValueError(f"speed must be a non-empty 1-d array, got shape "
                     f"{speed.shape}")
  if work.shape != speed.shape:
    raise ValueError(f"work must have the shape of speed {speed.shape}, got "
                     f"{work.shape}")
  if not np.all(np.isfinite(speed)) or np.any(speed <= 0):
    raise ValueError("speed must be finite and > 0 for every client")
  if not np.all(np.isfinite(work)) or np.any(work < 0):
    raise ValueError("work must be finite and >= 0 for every client")
  if jitter not in JITTER_KINDS:
    raise ValueError(f"jitter must be one of {JITTER_KINDS}, got {jitter!r}")
  jitter_sigma = _positive("jitter_sigma", jitter_sigma, strict=False)
  comm_time = _positive("comm_time", comm_time, strict=False)
  dropout = _positive("dropout", dropout, strict=False)
  if dropout >= 1:
    raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
  if availability is not None and availability.phase.shape != speed.shape:
    raise ValueError("availability must have one phase per client")
  return DelayModel(speed, work, jitter, jitter_sigma, comm_time, dropout,
                    availability)


def sample_durations(model: DelayModel, clients: np.ndarray,
                     rng: np.random.Generator):
  """Draws durations (and whether each update is lost) for tasks.

  Args:
    model: the delay model.
    clients: client ids of the tasks.
    rng: the generator that the scheduler threads through.

  Returns:
    ``(durations, lost)`` arrays of the shape of ``clients``.
  """
  clients = np.asarray(clients)
  n = clients.shape
  if model.jitter == "exponential":
    jit = rng.exponential(1.0, n)
  elif model.jitter == "lognormal":
    s = model.jitter_sigma
    jit = rng.lognormal(-0.5 * s * s, s, n)
  else:
    jit = np.ones(n)
  lost = rng.random(n) < model.dropout
  dur = model.speed[clients] * model.work[clients] * jit + model.comm_time
  return dur, lost
