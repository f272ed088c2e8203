"""The fixed setting of experiment 3, FedAsync's staleness study
(``fedasync_staleness.py``; Xie, Koyejo, Gupta, "Asynchronous Federated
Optimization", arXiv:1903.03934): the run lengths, the three staleness
families (constant, polynomial, hinge) with their parameters and alphas,
the members' labels, and the members of one (max staleness, seed) with
their matched controls and the runs they share.
"""

from __future__ import annotations

import numpy as np

KINDS = ("constant", "polynomial", "hinge")
ALPHAS = (0.6, 0.9)
POLY_A, HINGE_A, HINGE_B = 0.5, 10.0, 4.0
ADAPTIVE = [(k, a) for k in range(len(KINDS)) for a in ALPHAS]
DEFAULT_UPDATES, FULL_UPDATES, QUICK_UPDATES = 2500, 10000, 500


def label(kind: int, alpha: float) -> str:
  return f"{KINDS[kind]} alpha={alpha}"


def control_label(kind: int, alpha: float) -> str:
  return f"control of {KINDS[kind]} alpha={alpha}"


def mixed_staleness(kind, *, poly_a=POLY_A, hinge_a=HINGE_A, hinge_b=HINGE_B):
  """One staleness function for all three families, chosen by ``kind`` (0
  constant, 1 polynomial, 2 hinge), which may be a traced sweep value."""
  import jax.numpy as jnp

  def fn(tau):
    t = jnp.asarray(tau, jnp.float32)
    poly = jnp.power(1.0 + t, -poly_a)
    hinge = jnp.where(t <= hinge_b, 1.0, 1.0 / (hinge_a * (t - hinge_b) + 1.0))
    return jnp.where(kind == 0, jnp.ones_like(t),
                     jnp.where(kind == 1, poly, hinge))
  return fn


def staleness_weights(kind: int, tau) -> np.ndarray:
  """``s(tau)`` of a family in numpy (float64), as ``mixed_staleness``."""
  t = np.asarray(tau, np.float64)
  if kind == 0:
    return np.ones_like(t)
  if kind == 1:
    return (1.0 + t) ** -POLY_A
  return np.where(t <= HINGE_B, 1.0, 1.0 / (HINGE_A * (t - HINGE_B) + 1.0))



def members_for(tau):
  """The members of one (max, seed): ``[(name, kind, alpha, control_of)]``
  (the matched controls are constant rules at the adaptive rule's mean
  mixing weight over ``tau``), and ``runs``: ``{name: name it is run
  as}`` where members with identical per-update weights share one run."""
  out = [(label(k, a), k, a, "") for k, a in ADAPTIVE]
  out += [(control_label(k, a), 0,
           float(np.mean(a * staleness_weights(k, tau))), label(k, a))
          for k, a in ADAPTIVE if k != 0]
  runs, weights = {}, []
  for name, k, a, _ in out:
    w = (np.float32(a) * staleness_weights(k, tau).astype(np.float32))
    same = [n for n, ww in weights if np.array_equal(ww, w)]
    runs[name] = same[0] if same else name
    if not same:
      weights.append((name, w))
  return out, runs
