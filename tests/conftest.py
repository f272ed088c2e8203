"""Shared test set-up: strict rank promotion and small shared problems."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# The command line keeps compiled programs on disk by default; tests that
# call it in-process must not change this process's JAX configuration.
os.environ["FEDASYNC_JAX_CACHE_DIR"] = "off"

# CI runs the property tests with a fixed seed so a red run can be replayed;
# local runs keep exploring new examples.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
  settings.load_profile("ci")

from fedasync_jax import client, data  # noqa: E402


def lsq_loss(w, x, y, mask):
  """Mean squared error of a linear model over the masked examples."""
  err = (x @ w - y) ** 2
  return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def make_lsq_data(num_clients=40, dim=5, seed=0, dtype=np.float64,
                  noise=0.1, max_size=20):
  """A federated least-squares problem with ragged client sizes."""
  rng = np.random.default_rng(seed)
  sizes = rng.integers(1, max_size, size=num_clients)
  w_true = rng.normal(size=dim)
  xs = [rng.normal(size=(int(n), dim)).astype(dtype) for n in sizes]
  ys = [(x @ w_true + noise * rng.normal(size=len(x))).astype(dtype)
        for x in xs]
  return data.from_client_arrays(xs, ys), w_true


@pytest.fixture(scope="session")
def lsq():
  """(dataset in float64, true weights)."""
  return make_lsq_data()


@pytest.fixture(scope="session")
def lsq_update(lsq):
  ds, _ = lsq
  return client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                             max_examples=ds.max_count)
