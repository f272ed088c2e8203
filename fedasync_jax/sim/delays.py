"""How long a client task takes: device speeds, work, jitter, availability.

A task of client ``c`` takes ``speed[c] * work[c] * jitter + comm_time[c]``
simulated seconds, where ``speed`` (seconds per unit of work) is drawn once
per client, ``work`` is the local work (examples x epochs), ``jitter`` is
drawn per task (mean 1) and ``comm_time`` is one number or one per client.
With probability ``dropout`` the update never arrives. An ``Availability``
restricts when a client can be dispatched (on/off windows such as "charging
at night"; per-client intervals from a trace: ``sim.traces``); with
``lose_offline`` a task is also lost when its client goes offline before it
finishes, as FedScale's simulator can do.

Device-speed distributions follow the systems-heterogeneity models of the
cross-device FL literature (e.g. FedScale, Lai et al. 2022, arXiv:2105.11367):
constant, uniform, exponential, lognormal and Pareto heavy tails, or a
user-supplied trace. They are the members of ``SPEEDS``, the per-task
jitters those of ``JITTERS``; each declares its parameters (range and
meaning), which the configuration reads.

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

from typing import Any, NamedTuple, Optional

import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.registry import Param, Registry

SPEEDS = Registry("speeds")
"""Device-speed distributions: ``factory(num_clients, rng, **params)``
returns one positive speed per client."""

JITTERS = Registry("jitter")
"""Per-task duration factors (mean 1): ``factory(rng, shape, **params)``.
A parameter ``p`` is read from the delay model's ``jitter_<p>``."""

DELAY_PARAMS = (
    Param("comm_time", 0.0, low=0, meaning="seconds added to every task"),
    Param("dropout", 0.0, low=0, high=1, high_open=True,
          meaning="probability an update never arrives"),
)
"""The settings of ``delay_model`` besides speeds, work and jitter."""

_MEAN = Param("mean", 1.0, low=0, low_open=True,
              meaning="speed scale: median (lognormal), mean (others)")

MAX_LOG_SIGMA = 5
"""The largest log standard deviation of a lognormal (speeds, jitter):
over a million draws ``exp(5 sigma)`` stays within about 1e11 and a
mean-1 jitter's smallest draw above 1e-16, so durations and times stay
finite and distinct in float32 (``sigma=1e6`` made every time 0.0)."""
MIN_PARETO_SHAPE = 0.5
"""The smallest Pareto tail index: over a million draws the largest speed
stays within about 1e14 (``shape=1e-12`` overflowed to infinity)."""


@SPEEDS.register("constant", params=(_MEAN,))
def _constant(n, rng, *, mean):
  """every client the same speed ``mean``"""
  del rng
  return np.full(n, float(mean))


@SPEEDS.register("uniform", params=(
    Param("low", 0.5, low=0, low_open=True, meaning="low"),
    Param("high", 1.5, low=0, low_open=True, meaning="high")))
def _uniform(n, rng, *, low, high):
  """uniform on [low, high]"""
  low, high = float(low), float(high)
  if high < low:
    raise ValueError(f"high must be >= low ({low}), got {high}")
  return rng.uniform(low, high, n)


@SPEEDS.register("exponential", params=(_MEAN,))
def _exponential(n, rng, *, mean):
  """exponential with mean ``mean``"""
  return rng.exponential(float(mean), n)


@SPEEDS.register("lognormal", params=(
    _MEAN, Param("sigma", 1.0, low=0, high=MAX_LOG_SIGMA,
                 meaning="log std")))
def _lognormal(n, rng, *, mean, sigma):
  """lognormal with median ``mean`` and log standard deviation ``sigma``"""
  return float(mean) * rng.lognormal(0.0, float(sigma), n)


@SPEEDS.register("pareto", params=(
    _MEAN, Param("shape", 2.0, low=MIN_PARETO_SHAPE,
                 meaning="tail index (smaller: heavier)")))
def _pareto(n, rng, *, mean, shape):
  """Lomax tail index ``shape``, scaled to mean ``mean`` when ``shape > 1``"""
  mean, shape = float(mean), float(shape)
  scale = mean * (shape - 1.0) if shape > 1 else mean
  return scale * rng.pareto(shape, n)


@SPEEDS.register("trace", inputs=("trace",))
def _trace(n, rng, *, trace):
  """measured speeds ``trace``, cycled over the clients"""
  del rng
  if trace is None:
    raise ValueError("trace must be given when kind='trace'")
  t = np.asarray(trace, dtype=np.float64).ravel()
  if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
    raise ValueError("trace must be a non-empty array of finite values > 0")
  return t[np.arange(n) % t.size]


@JITTERS.register("none")
def _no_jitter(rng, shape):
  """no jitter: a task takes its expected time"""
  del rng
  return np.ones(shape)


@JITTERS.register("exponential")
def _exponential_jitter(rng, shape):
  """exponential with mean 1"""
  return rng.exponential(1.0, shape)


@JITTERS.register("lognormal", params=(
    Param("sigma", 0.5, low=0, high=MAX_LOG_SIGMA, meaning="log std"),))
def _lognormal_jitter(rng, shape, *, sigma):
  """lognormal with mean 1 and log standard deviation ``sigma``"""
  return rng.lognormal(-0.5 * sigma * sigma, sigma, shape)


def device_speeds(kind: str, num_clients: int, *, seed: int = 0,
                  mean: float = 1.0, sigma: float = 1.0, low: float = 0.5,
                  high: float = 1.5, shape: float = 2.0,
                  trace: Optional[np.ndarray] = None, **params) -> np.ndarray:
  """Draws one speed (seconds per unit of work) per client.

  Args:
    kind: a member of ``SPEEDS``: ``constant``, ``uniform`` (on ``[low,
      high]``), ``exponential`` (mean ``mean``), ``lognormal`` (median
      ``mean``, log standard deviation ``sigma``), ``pareto`` (Lomax tail
      index ``shape``, scaled to mean ``mean`` when ``shape > 1``),
      ``trace`` (``trace`` values, cycled over the clients).
    num_clients: population size, ``>= 1``.
    seed: the random seed.
    **params: parameters of other registered distributions (a name no
      registered distribution takes is refused).

  Every keyword of every distribution is accepted, whichever ``kind`` is
  drawn, and those that ``kind`` does not take are ignored (``mean`` only
  floors the speeds): one set of keywords serves a loop over kinds.
  ``uniform`` is set by ``low`` and ``high``, not ``mean``, so
  ``device_speeds("uniform", n, mean=5.0)`` has mean 1.0.

  Returns:
    ``(num_clients,)`` float64 array of positive speeds.

  Example:
    >>> device_speeds("constant", 3, mean=2.0).tolist()
    [2.0, 2.0, 2.0]
  """
  checks.choice("kind", kind, SPEEDS.names())
  n = checks.integer("num_clients", num_clients, low=1)
  rng = checks.rng(seed)
  mean = float(_MEAN.check(mean))
  member = SPEEDS[kind]
  names = [p.name for p in member.params] + list(member.inputs)
  known = {p.name for m in SPEEDS.members() for p in m.params} | {
      i for m in SPEEDS.members() for i in m.inputs}
  unknown = sorted(set(params) - known)
  if unknown:  # a misspelt keyword would otherwise be dropped silently
    raise ValueError(
        f"device_speeds takes no parameter {unknown[0]!r}; {kind!r} takes "
        f"{names}{checks.suggest(unknown[0], sorted(known))}")
  values = {"mean": mean, "sigma": sigma, "low": low, "high": high,
            "shape": shape, "trace": trace, **params}
  given = {k: values[k] for k in names if k in values}
  out = SPEEDS.build(kind, n, rng, **given)
  if not np.all(np.isfinite(out)):
    said = ", ".join(f"{k}={v!r}" for k, v in given.items() if k != "trace")
    raise ValueError(f"speeds {kind!r} with {said} gives non-finite speeds "
                     f"(overflow); lower {'them' if ',' in said else 'it'}")
  # A zero speed would make a task take no time; keep every speed positive.
  return np.maximum(out, 1e-9 * mean)


class Availability(NamedTuple):
  """On/off windows: client ``c`` can be dispatched while
  ``(t + phase[c]) mod period < on_fraction * period``."""
  period: float
  on_fraction: float
  phase: np.ndarray

  @property
  def num_clients(self) -> int:
    return int(self.phase.shape[0])

  def unresolved(self, t):
    """Whether the on windows are shorter than the float resolution at
    ``t``; then every client counts as available (no float time can be
    placed inside a window)."""
    return np.spacing(np.abs(np.asarray(t, np.float64))) >= (
        self.on_fraction * self.period)

  def available(self, clients, t):
    return self.unresolved(t) | ((t + self.phase[clients]) % self.period
                                 < self.on_fraction * self.period)

  def online_until(self, clients, t):
    """When each client's current on window ends (``t`` if it is off)."""
    pos = (t + self.phase[clients]) % self.period
    on = pos < self.on_fraction * self.period
    return np.where(on, t - pos + self.on_fraction * self.period, t)

  def next_start(self, clients, t):
    """The earliest time ``>= t`` at which each client is available; for a
    client off at ``t``, always a float later than ``t`` (a start closer
    than the resolution of ``t`` rounds up, so a scheduler's retry makes
    progress)."""
    on = self.available(clients, t)
    pos = (t + self.phase[clients]) % self.period
    later = np.maximum(t + self.period - pos, np.nextafter(t, np.inf))
    return np.where(on, t, later)


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
  period = float(checks.limits("period", checks.number(
      "period", period, low=0, low_open=True), low=0, low_open=True))
  f = float(checks.limits("on_fraction", checks.number(
      "on_fraction", on_fraction, low=0, high=1, low_open=True), high=1,
      low=0, low_open=True))
  phase = checks.rng(seed).uniform(0, period, int(num_clients))
  return Availability(period, f, phase)


class DelayModel(NamedTuple):
  """Everything that decides how long a client task takes."""
  speed: np.ndarray
  work: np.ndarray
  jitter: str = "exponential"
  jitter_sigma: float = 0.5
  comm_time: Any = 0.0
  dropout: float = 0.0
  availability: Optional[Any] = None
  lose_offline: bool = False

  @property
  def num_clients(self) -> int:
    return int(self.speed.shape[0])


def delay_model(speed: np.ndarray, work: np.ndarray, *,
                jitter: str = "exponential", jitter_sigma: float = 0.5,
                comm_time=0.0, dropout: float = 0.0,
                availability=None, lose_offline: bool = False) -> DelayModel:
  """Validates and bundles a delay model.

  Args:
    speed: ``(N,)`` seconds per unit of work, from ``device_speeds``.
    work: ``(N,)`` units of work per task (e.g. examples x local epochs).
    jitter: per-task factor, a member of ``JITTERS``: ``none``,
      ``exponential`` (mean 1) or ``lognormal`` (mean 1, log standard
      deviation ``jitter_sigma``, in ``[0, MAX_LOG_SIGMA]``).
    comm_time: seconds added to every task (download + upload), ``>= 0``:
      one number, or one per client (from a device trace's bandwidths).
    dropout: probability in ``[0, 1)`` that an update never arrives.
    availability: optional on/off windows (``availability``) or per-client
      intervals (``traces.availability_of``).
    lose_offline: a task is lost when its client goes offline before it
      finishes (needs ``availability``).

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
  checks.choice("jitter", jitter, JITTERS.names())
  jitter_sigma = float(checks.number("jitter_sigma", jitter_sigma, low=0,
                                     high=MAX_LOG_SIGMA))
  comm_p, dropout_p = DELAY_PARAMS
  if np.ndim(comm_time) == 0:
    comm_time = float(comm_p.check(comm_time))
  else:
    comm_time = np.asarray(comm_time, dtype=np.float64)
    if comm_time.shape != speed.shape:
      raise ValueError(f"comm_time must be one number or have the shape of "
                       f"speed {speed.shape}, got {comm_time.shape}")
    if not np.all(np.isfinite(comm_time)) or np.any(comm_time < 0):
      raise ValueError("comm_time must be finite and >= 0 for every client")
  dropout = float(dropout_p.check(dropout))
  if availability is not None and availability.num_clients != speed.size:
    raise ValueError(f"availability must cover the {speed.size} clients, "
                     f"got {availability.num_clients}")
  if lose_offline and availability is None:
    raise ValueError("lose_offline needs an availability (windows or a "
                     "trace)")
  return DelayModel(speed, work, jitter, jitter_sigma, comm_time, dropout,
                    availability, bool(lose_offline))


def sample_durations(model: DelayModel, clients: np.ndarray,
                     rng: np.random.Generator, t: Optional[float] = None):
  """Draws durations (and whether each update is lost) for tasks.

  Args:
    model: the delay model.
    clients: client ids of the tasks.
    rng: the generator that the scheduler threads through.
    t: dispatch time; with ``model.lose_offline``, a task that would end
      after its client's online interval is lost.

  Returns:
    ``(durations, lost)`` arrays of the shape of ``clients``.
  """
  clients = np.asarray(clients)
  n = clients.shape
  member = JITTERS[model.jitter]
  jit = member.factory(rng, n, **{p.name: getattr(model, "jitter_" + p.name)
                                  for p in member.params})
  lost = rng.random(n) < model.dropout
  comm = model.comm_time
  dur = model.speed[clients] * model.work[clients] * jit + (
      comm if np.ndim(comm) == 0 else comm[clients])
  if model.lose_offline and t is not None:
    lost = lost | (t + dur > model.availability.online_until(clients, t))
  return dur, lost
