"""Fault injection for tests and robustness studies.

Wrappers around a client update that make chosen clients misbehave: return
NaN parameters (a diverging client) or scale their update (a malicious
"model replacement" client, as in Bagdasaryan et al. 2020, "How To Backdoor
Federated Learning", arXiv:1807.00459). Clients are identified by the
offset of their data range, which the update sees.

Example:
  >>> import numpy as np
  >>> from fedasync_jax import data
  >>> ds = data.from_client_arrays([np.ones((2, 1))] * 3, [np.ones(2)] * 3)
  >>> offsets_of(ds, [2]).tolist()
  [4]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.core import checks
from fedasync_jax.core.client import ClientUpdate
from fedasync_jax.data import ClientDataset


def offsets_of(data: ClientDataset, clients) -> np.ndarray:
  """The data offsets that identify ``clients`` inside a client update."""
  return np.asarray(data.offsets)[np.asarray(clients, dtype=np.int64)]


def _is_target(offset, targets):
  return jnp.any(jnp.asarray(offset) == jnp.asarray(targets))


def nan_clients(update: ClientUpdate, offsets) -> ClientUpdate:
  """Clients whose data starts at ``offsets`` return NaN parameters."""
  targets = np.asarray(offsets)

  def run(params, data, key, hparams):
    res, met = update.update(params, data, key, hparams)
    bad = _is_target(data.offset, targets)
    nan = lambda x: jnp.where(bad, jnp.full_like(x, jnp.nan), x)  # noqa
    return res._replace(params=jax.tree.map(nan, res.params),
                        delta=jax.tree.map(nan, res.delta)), met
  return update._replace(update=run, lane=None)  # the lane would skip the fault


def scaled_clients(update: ClientUpdate, offsets, scale: float
                   ) -> ClientUpdate:
  """Clients whose data starts at ``offsets`` send ``scale`` times their
  update (``w_start + scale * delta``); ``scale`` is any finite number."""
  checks.number("scale", scale)
  targets = np.asarray(offsets)

  def run(params, data, key, hparams):
    res, met = update.update(params, data, key, hparams)
    f = jnp.where(_is_target(data.offset, targets), scale, 1.0)
    delta = jax.tree.map(lambda d: (d * f).astype(d.dtype), res.delta)
    new = jax.tree.map(lambda p, d0, d: p - d0 + d, res.params, res.delta,
                       delta)
    return res._replace(params=new, delta=delta), met
  return update._replace(update=run, lane=None)  # the lane would skip the fault
