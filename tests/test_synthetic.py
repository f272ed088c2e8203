"""Tests for fedasync_jax.data.synthetic (FedProx Synthetic(alpha, beta))."""


import numpy as np
import pytest

from fedasync_jax import data
from fedasync_jax import synthetic


def _label_entropy(fed):
  """Mean entropy (nats) of the clients' label distributions."""
  out = []
  for c in range(fed.train.num_clients):
    _, y = fed.train.client(c)
    p = np.bincount(y, minlength=fed.num_classes) / len(y)
    p = p[p > 0]
    out.append(-(p * np.log(p)).sum())
  return float(np.mean(out))


def test_shapes_dtypes_and_layout():
  fed = synthetic.synthetic(1.0, 1.0, num_clients=12, dim=7, num_classes=5,
                            seed=3)
  assert isinstance(fed, data.FederatedData)
  train = fed.train
  assert train.num_clients == 12
  assert train.x.dtype == np.float32 and train.y.dtype == np.int32
  assert fed.x_test.dtype == np.float32 and fed.y_test.dtype == np.int32
  assert train.x.shape == (int(train.counts.sum()), 7)
  assert fed.x_test.shape[1:] == (7,)
  assert len(fed.x_test) == len(fed.y_test)
  assert fed.num_classes == 5
  assert fed.name == "synthetic(1,1)"
  assert train.y.min() >= 0 and train.y.max() < 5
  assert fed.y_test.min() >= 0 and fed.y_test.max() < 5
  np.testing.assert_array_equal(
      train.offsets, np.concatenate([[0], np.cumsum(train.counts)[:-1]]))
  assert np.isfinite(train.x).all() and np.isfinite(fed.x_test).all()


def test_every_client_nonempty_and_test_fraction():
  fed = synthetic.synthetic(num_clients=40, seed=1, min_examples=5,
                            test_fraction=0.2)
  assert (fed.train.counts >= 1).all()
  # Sizes are min_examples + lognormal, 20% (rounded down) held out.
  total = fed.train.counts.sum() + len(fed.y_test)
  assert 0.15 * total <= len(fed.y_test) <= 0.2 * total
  assert (fed.train.counts >= 4).all()  # ceil(0.8 * 5)


def test_no_test_set_when_fraction_zero():
  fed = synthetic.synthetic(num_clients=4, seed=0, test_fraction=0.0)
  assert fed.x_test.shape == (0, 60)
  assert (fed.train.counts >= 50).all()


def test_deterministic_per_seed():
  a = synthetic.synthetic(0.5, 0.5, seed=7)
  b = synthetic.synthetic(0.5, 0.5, seed=7)
  for u, v in zip((a.train.x, a.train.y, a.train.counts, a.x_test, a.y_test),
                  (b.train.x, b.train.y, b.train.counts, b.x_test, b.y_test)):
    np.testing.assert_array_equal(u, v)


def test_different_seeds_differ():
  a = synthetic.synthetic(seed=0)
  b = synthetic.synthetic(seed=1)
  assert not np.array_equal(a.train.counts, b.train.counts)
  n = min(len(a.train.x), len(b.train.x))
  assert not np.allclose(a.train.x[:n], b.train.x[:n])


def test_sizes_follow_a_heavy_tailed_law():
  fed = synthetic.synthetic(num_clients=100, seed=0)
  counts = fed.train.counts
  assert counts.max() / counts.min() > 10
  # Heavy tail: the mean is well above the median.
  assert counts.mean() > 1.5 * np.median(counts)
  sizes = synthetic.client_sizes(20000, mean_examples=450, min_examples=50,
                                 seed=0)
  assert sizes.min() >= 50
  assert abs(sizes.mean() / 450 - 1) < 0.1


def test_equal_sizes_when_sigma_zero():
  sizes = synthetic.client_sizes(5, mean_examples=30.5, min_examples=10,
                                 sigma=0.0, seed=0)
  np.testing.assert_array_equal(sizes, np.full(5, 30))


def test_beta_increases_label_skew():
  # Synthetic(0, 0) is already non-iid (every client has its own W_k); a large
  # beta shifts the inputs and concentrates each client on fewer labels.
  low = np.mean([_label_entropy(synthetic.synthetic(0.0, 0.0, seed=s))
                 for s in range(5)])
  high = np.mean([_label_entropy(synthetic.synthetic(10.0, 10.0, seed=s))
                  for s in range(5)])
  assert high < 0.6 * low, (low, high)


def test_alpha_shift_does_not_change_labels():
  # u_k is added to every class score alike, so argmax ignores it: documented
  # in the module docstring.
  a = synthetic.synthetic(0.0, 1.0, seed=4)
  b = synthetic.synthetic(10.0, 1.0, seed=4)
  np.testing.assert_array_equal(a.train.y, b.train.y)
  np.testing.assert_array_equal(a.train.x, b.train.x)


def test_labels_differ_from_iid_teacher():
  # Each client has its own teacher: no single linear model explains all
  # clients, so label distributions differ between clients.
  fed = synthetic.synthetic(1.0, 1.0, seed=0)
  hists = np.stack([np.bincount(fed.train.client(c)[1], minlength=10)
                    for c in range(fed.train.num_clients)])
  assert len({int(h.argmax()) for h in hists}) > 3



@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=-1.0), "alpha"),
    (dict(beta=float("nan")), "beta"),
    (dict(num_clients=0), "num_clients"),
    (dict(num_clients=2.5), "num_clients"),
    (dict(dim=0), "dim"),
    (dict(num_classes=1), "num_classes"),
    (dict(seed=-1), "seed"),
    (dict(test_fraction=1.0), "test_fraction"),
    (dict(test_fraction=-0.1), "test_fraction"),
    (dict(min_examples=0), "min_examples"),
    (dict(mean_examples=10, min_examples=50), "mean_examples"),
    (dict(size_sigma=-1.0), "sigma"),
    (dict(alpha=1e18), r"alpha must be a number in \[0, 1000\]"),
    (dict(beta=1001.0), r"beta must be a number in \[0, 1000\]"),
    (dict(size_sigma=6.0), r"sigma must be a number in \[0, 5\]"),
])
def test_invalid_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic.synthetic(**kwargs)


def test_integer_options_follow_the_shared_checks():
  # core.checks: an integer is an int or an integral float, never a bool.
  a = synthetic.synthetic(num_clients=4.0, dim=3.0, num_classes=3.0,
                          seed=2.0, min_examples=10.0, mean_examples=20)
  b = synthetic.synthetic(num_clients=4, dim=3, num_classes=3, seed=2,
                          min_examples=10, mean_examples=20)
  np.testing.assert_array_equal(a.train.x, b.train.x)
  np.testing.assert_array_equal(a.y_test, b.y_test)
  assert a.name == b.name
  for key in ("num_clients", "dim", "num_classes", "seed", "min_examples"):
    with pytest.raises(ValueError, match=f"{key} must be an integer"):
      synthetic.synthetic(**{key: True})
  with pytest.raises(ValueError, match=r"alpha must be a number in \[0, "
                     r"1000\], got True"):
    synthetic.synthetic(alpha=True)


def test_params_declare_every_option_with_its_default():
  import inspect  # pylint: disable=import-outside-toplevel
  sig = inspect.signature(synthetic.synthetic).parameters
  assert [p.name for p in synthetic.PARAMS] == list(sig)
  for p in synthetic.PARAMS:
    assert p.default == sig[p.name].default and p.meaning, p.name


def test_max_examples_caps_client_sizes_and_memory():
  full = synthetic.synthetic(1.0, 1.0, num_clients=40, seed=3)
  capped = synthetic.synthetic(1.0, 1.0, num_clients=40, seed=3,
                               max_examples=30)
  assert full.train.counts.max() > 30  # the default draw exceeds the cap
  assert capped.train.counts.max() <= 30 - int(0.2 * 30)
  assert capped.train.x.nbytes < full.train.x.nbytes / 4
  with pytest.raises(ValueError, match="max_examples"):
    synthetic.synthetic(num_clients=3, max_examples=0)


def test_max_examples_is_a_config_field():
  from fedasync_jax import config, experiment
  cfg = config.from_dict({"data": {"num_clients": 30,
                                   "synthetic_max_examples": 20}})
  fed = experiment.load_data(cfg)
  assert fed.train.num_clients == 30 and fed.train.counts.max() == 16
  assert "synthetic_max_examples" in config.to_yaml()
  with pytest.raises(config.ConfigError, match="synthetic_max_examples"):
    config.from_dict({"data": {"synthetic_max_examples": -1}})


def test_the_largest_skew_keeps_training_finite():
  """``beta=1e18`` gave an infinite loss and ``Infinity`` in summary.json;
  at the bound (``MAX_SKEW``) the inputs and a model's loss stay finite in
  float32."""
  import jax
  import optax
  from fedasync_jax import models
  fed = synthetic.synthetic(synthetic.MAX_SKEW, synthetic.MAX_SKEW,
                            num_clients=5, seed=0, max_examples=40)
  x = np.asarray(fed.train.x)
  assert np.all(np.isfinite(x)) and np.abs(x).max() < 1e5
  model = models.logistic_regression(input_dim=x.shape[1], num_classes=10)
  params = model.init(jax.random.key(0))
  opt = optax.sgd(0.01)
  state = opt.init(params)
  y, m = np.asarray(fed.train.y), np.ones(len(x), np.float32)
  for _ in range(20):
    loss, g = jax.value_and_grad(model.loss)(params, x, y, m)
    upd, state = opt.update(g, state)
    params = optax.apply_updates(params, upd)
    assert np.isfinite(float(loss)), loss
