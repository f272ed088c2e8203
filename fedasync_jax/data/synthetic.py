"""The Synthetic(alpha, beta) federated data set, generated in numpy.

This is the synthetic benchmark of FedProx (Li, Sahu, Zaheer, Sanjabi,
Talwalkar and Smith, "Federated Optimization in Heterogeneous Networks",
MLSys 2020, arXiv:1812.06127, Section 5.1). Every client ``k`` has its own
softmax-regression "teacher" and its own input distribution:

  * ``u_k ~ N(0, alpha)`` and ``B_k ~ N(0, beta)``;
  * ``W_k ~ N(u_k, 1)`` of shape ``(dim, num_classes)``, ``b_k ~ N(u_k, 1)``;
  * ``v_k ~ N(B_k, 1)`` of shape ``(dim,)``;
  * ``x ~ N(v_k, Sigma)`` with diagonal ``Sigma_jj = j ** -1.2``;
  * ``y = argmax(W_k^T x + b_k)``.

As in the FedProx generator, ``alpha`` and ``beta`` are standard deviations
(``numpy.random.normal(0, alpha)``). ``alpha`` controls how much the local
models differ and ``beta`` how much the local inputs differ. Client sizes
follow a power law: ``min_examples`` plus a lognormal draw (FedProx uses
``lognormal(4, 2) + 50``, which is the default here).

Note on ``alpha``: the shift ``u_k`` is common to every column of ``W_k`` and
every entry of ``b_k``, so it adds the same amount to all class scores and the
argmax, hence the labels, do not depend on it. The label skew across clients
grows with ``beta`` (and is present even for ``alpha = beta = 0``, because
every client still draws its own ``W_k`` and ``b_k``).

``PARAMS`` declares the options of ``synthetic`` (ranges and meanings); the
``synthetic`` member of ``datasets.DATASETS`` is built from it.

Example:
  >>> fed = synthetic(1.0, 1.0, num_clients=5, seed=0)
  >>> fed.train.num_clients, fed.x_test.dtype.name, fed.num_classes
  (5, 'float32', 10)
"""

from __future__ import annotations

import math

import numpy as np

from fedasync_jax import data
from fedasync_jax.core import checks
from fedasync_jax.core.registry import Param

# FedProx draws client sizes as lognormal(4, 2) + 50: mean 50 + exp(4 + 2).
_FEDPROX_SIZE_SIGMA = 2.0
_FEDPROX_MIN_EXAMPLES = 50
_FEDPROX_MEAN_EXAMPLES = 50 + int(round(math.exp(4.0 + 2.0 ** 2 / 2)))

MAX_SKEW = 1000
"""The largest ``alpha`` and ``beta``: inputs stay within about 5e3, so a
model's logits and losses stay finite in float32 (``beta=1e18`` gave an
infinite loss). FedProx uses 0, 0.5 and 1."""
MAX_SIZE_SIGMA = 5
"""The largest lognormal shape of the client sizes (``exp(5 sigma)``)."""

PARAMS = (
    Param("alpha", 1.0, low=0, high=MAX_SKEW, meaning="standard deviation "
          "of the per-client model shift u_k"),
    Param("beta", 1.0, low=0, high=MAX_SKEW, meaning="standard deviation of "
          "the per-client input shift B_k (label skew grows with it)"),
    Param("num_clients", 30, low=1, kind=int, meaning="number of clients"),
    Param("dim", 60, low=1, kind=int, meaning="input dimension"),
    Param("num_classes", 10, low=2, kind=int, meaning="number of classes"),
    Param("seed", 0, low=0, kind=int, meaning="seed of the data"),
    Param("mean_examples", _FEDPROX_MEAN_EXAMPLES, low=1, low_open=True,
          meaning="expected examples of a client (train + test), larger "
          "than min_examples"),
    Param("min_examples", _FEDPROX_MIN_EXAMPLES, low=1, kind=int,
          meaning="smallest number of examples of a client (train + test)"),
    Param("size_sigma", _FEDPROX_SIZE_SIGMA, low=0, high=MAX_SIZE_SIGMA,
          meaning="lognormal shape of the client sizes (0: equal sizes)"),
    Param("test_fraction", 0.2, low=0, high=1, high_open=True,
          meaning="fraction of each client's examples held out for testing"),
    Param("max_examples", None, low=1, high=10**6, kind=int, optional=True,
          meaning="cap on a client's examples (train + test; null: none): "
          "the default sizes average about 450, so 100k clients take about "
          "11 GB"),
)
"""The options of ``synthetic`` with their defaults, ranges and meanings."""
_P = {p.name: p for p in PARAMS}


def client_sizes(num_clients: int, *, mean_examples: float,
                 min_examples: int, sigma: float = _FEDPROX_SIZE_SIGMA,
                 seed: int | np.random.Generator = 0) -> np.ndarray:
  """Draws power-law (lognormal) client sizes, as in the FedProx generator.

  Each size is ``min_examples + floor(L)`` with ``L`` lognormal with shape
  ``sigma`` and a location chosen so that the expected size is
  ``mean_examples``.

  Args:
    num_clients: number of clients, at least 1.
    mean_examples: expected size of a client, larger than ``min_examples``.
    min_examples: smallest possible size, at least 1.
    sigma: lognormal shape (standard deviation of ``log L``), in ``[0,
      MAX_SIZE_SIGMA]``; larger is more heterogeneous.
    seed: an integer seed or a ``numpy.random.Generator``.

  Returns:
    ``(num_clients,)`` int64 sizes.

  Example:
    >>> sizes = client_sizes(4, mean_examples=450, min_examples=50, seed=1)
    >>> sizes.shape, bool((sizes >= 50).all())
    ((4,), True)
  """
  num_clients = checks.integer("num_clients", num_clients, low=1)
  min_examples = checks.integer("min_examples", min_examples, low=1)
  checks.number("mean_examples", mean_examples, low=min_examples,
                low_open=True)
  checks.number("sigma", sigma, low=0, high=MAX_SIZE_SIGMA)
  rng = checks.rng(seed)
  mu = math.log(mean_examples - min_examples) - sigma ** 2 / 2
  extra = np.floor(rng.lognormal(mu, sigma, size=num_clients))
  return (min_examples + extra).astype(np.int64)


def expected_bytes(num_clients: int, *, dim: int = 60,
                   mean_examples: float = _FEDPROX_MEAN_EXAMPLES,
                   max_examples: int | None = None) -> int:
  """About how many bytes ``synthetic`` returns: ``num_clients`` x
  ``min(mean_examples, max_examples)`` examples of ``dim`` float32 features
  and an int32 label (no more than that on average: the cap applies per
  client). ``run.memory.check_memory`` compares it with the free memory
  before anything is generated.

  Example:
    >>> round(expected_bytes(10**6) / 1e9)  # FedProx's sizes: ~110 GB
    111
    >>> expected_bytes(100, dim=4, max_examples=10)
    20000
  """
  per_client = (mean_examples if max_examples is None
                else min(mean_examples, max_examples))
  return int(num_clients * per_client * (dim + 1) * 4)


def synthetic(alpha: float = 1.0, beta: float = 1.0, *,
              num_clients: int = 30, dim: int = 60, num_classes: int = 10,
              seed: int = 0,
              mean_examples: float = _FEDPROX_MEAN_EXAMPLES,
              min_examples: int = _FEDPROX_MIN_EXAMPLES,
              size_sigma: float = _FEDPROX_SIZE_SIGMA,
              test_fraction: float = 0.2,
              max_examples: int | None = None) -> data.FederatedData:
  """Generates FedProx's Synthetic(alpha, beta) federated data set.

  Every client's examples are drawn from its own distribution (see the module
  docstring); a fraction ``test_fraction`` of each client's examples
  (rounded down) is held out, and the held-out examples of all clients form
  the test set. Every client keeps at least one training example.

  Args:
    alpha: standard deviation of the per-client model shift ``u_k``, in
      ``[0, MAX_SKEW]``.
    beta: standard deviation of the per-client input shift ``B_k``, in
      ``[0, MAX_SKEW]``.
    num_clients: number of clients, >= 1.
    dim: input dimension, >= 1.
    num_classes: number of classes, >= 2.
    seed: integer seed; the same seed gives the same data.
    mean_examples: expected number of examples of a client (train + test),
      larger than ``min_examples``.
    min_examples: smallest number of examples of a client (train + test),
      >= 1.
    size_sigma: lognormal shape of the client sizes, >= 0 (0 gives equal
      sizes; FedProx uses 2).
    test_fraction: fraction of each client's examples held out, in [0, 1).
    max_examples: a cap on each client's examples (train + test), applied
      after the draw (``None``: no cap). Memory is about ``num_clients x
      mean size x dim x 4`` bytes: with the defaults (about 450 examples of
      60 features) 100,000 clients need about 11 GB, with
      ``max_examples=50`` at most 1.2 GB.

  Returns:
    A ``data.FederatedData`` with float32 features of shape ``(n, dim)`` and
    int32 labels in ``[0, num_classes)``.

  Example:
    >>> fed = synthetic(0.5, 0.5, num_clients=3, dim=4, num_classes=3,
    ...                 mean_examples=20, min_examples=10, seed=2)
    >>> fed.train.x.shape[1], fed.name
    (4, 'synthetic(0.5,0.5)')
  """
  alpha = _P["alpha"].check(alpha)
  beta = _P["beta"].check(beta)
  num_clients = _P["num_clients"].check(num_clients)
  dim = _P["dim"].check(dim)
  num_classes = _P["num_classes"].check(num_classes)
  seed = _P["seed"].check(seed)
  test_fraction = _P["test_fraction"].check(test_fraction)
  if max_examples is not None:
    max_examples = _P["max_examples"].check(max_examples)

  rng = checks.rng(seed)
  sizes = client_sizes(num_clients, mean_examples=mean_examples,
                       min_examples=min_examples, sigma=size_sigma, seed=rng)
  if max_examples is not None:
    sizes = np.minimum(sizes, max_examples)
  u = rng.normal(0.0, alpha, size=num_clients)
  big_b = rng.normal(0.0, beta, size=num_clients)
  # Standard deviations of the inputs: Sigma_jj = j^-1.2 for j = 1..dim.
  x_std = np.arange(1, dim + 1, dtype=np.float64) ** -0.6

  xs_train, ys_train, xs_test, ys_test = [], [], [], []
  for k in range(num_clients):
    w = u[k] + rng.standard_normal((dim, num_classes))
    b = u[k] + rng.standard_normal(num_classes)
    v = big_b[k] + rng.standard_normal(dim)
    n = int(sizes[k])
    x = v + rng.standard_normal((n, dim)) * x_std
    y = np.argmax(x @ w + b, axis=1).astype(np.int32)
    x = x.astype(np.float32)
    n_test = int(math.floor(test_fraction * n))
    n_train = n - n_test
    xs_train.append(x[:n_train])
    ys_train.append(y[:n_train])
    xs_test.append(x[n_train:])
    ys_test.append(y[n_train:])

  train = data.from_client_arrays(xs_train, ys_train)
  return data.FederatedData(
      train=train,
      x_test=np.concatenate(xs_test).astype(np.float32, copy=False),
      y_test=np.concatenate(ys_test).astype(np.int32, copy=False),
      num_classes=int(num_classes),
      name=f"synthetic({alpha:g},{beta:g})")

