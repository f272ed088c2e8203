"""models/batch_norm.py against flax.linen.BatchNorm, the layer it replaces.

Same variables, same values up to float reassociation (float64: 1e-12),
same gradients, with and without a mask; padding never reaches the
statistics.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedasync_jax import models
from fedasync_jax.models.batch_norm import BatchNorm

MASK = np.array([1, 1, 0, 1, 0, 1], bool)


def _run(layer, x, mask, train):
  """Output, updated batch_stats and gradients (params and x) of a loss
  that weights every output entry differently."""
  variables = layer.init(jax.random.key(1), x, mask=mask)
  weights = jnp.arange(x.size, dtype=x.dtype).reshape(x.shape) / x.size

  def loss(params, x):
    y, updates = layer.apply(
        {"params": params, "batch_stats": variables["batch_stats"]}, x,
        mask=mask, mutable=["batch_stats"])
    return jnp.sum(jnp.sin(y) * weights), (y, updates["batch_stats"])

  (_, (y, stats)), grads = jax.value_and_grad(
      loss, argnums=(0, 1), has_aux=True)(variables["params"], x)
  if not train:
    stats = variables["batch_stats"]
  return variables, y, stats, grads


def _max_rel(a, b):
  return max(float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(u)) + 1e-30))
             for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("dtype, tol", [("float32", 2e-6),
                                        ("float64", 1e-12)])
@pytest.mark.parametrize("mask", [None, MASK.reshape(-1, 1, 1, 1), MASK],
                         ids=["no mask", "mask (B,1,1,1)", "mask (B,)"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_equals_flax_batch_norm(dtype, tol, mask, train):
  with jax.enable_x64(dtype == "float64"):
    x = (3.0 * jax.random.normal(jax.random.key(0), (6, 5, 5, 4)) + 1.0
         ).astype(dtype)
    flax_mask = (None if mask is None
                 else jnp.asarray(mask).reshape(-1, 1, 1, 1))
    kwargs = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    v_ref, y_ref, s_ref, g_ref = _run(nn.BatchNorm(**kwargs), x, flax_mask,
                                      train)
    v, y, s, g = _run(BatchNorm(**kwargs), x, mask, train)
    assert jax.tree.structure(v) == jax.tree.structure(v_ref)
    assert all(a.dtype == b.dtype and a.shape == b.shape for a, b in
               zip(jax.tree.leaves(v), jax.tree.leaves(v_ref)))
    assert _max_rel(v_ref, v) == 0.0  # the same initial values
    assert y.dtype == y_ref.dtype
    assert _max_rel(y_ref, y) < tol
    assert _max_rel(s_ref, s) < tol
    assert _max_rel(g_ref, g) < tol
    if train:  # the statistics moved, so the comparison above has teeth
      assert _max_rel(v_ref["batch_stats"], s) > 1e-2


def test_padding_never_reaches_the_statistics():
  x = jax.random.normal(jax.random.key(0), (6, 3, 3, 2))
  garbage = x.at[~MASK].set(1e6 * jax.random.normal(jax.random.key(2),
                                                    x[~MASK].shape))
  bn = BatchNorm(momentum=0.9)
  variables = bn.init(jax.random.key(1), x, mask=MASK)
  outs = [bn.apply(variables, z, mask=MASK, mutable=["batch_stats"])
          for z in (x, garbage)]
  (y0, s0), (y1, s1) = outs
  np.testing.assert_array_equal(y0[MASK], y1[MASK])
  np.testing.assert_array_equal(s0["batch_stats"]["mean"],
                                s1["batch_stats"]["mean"])
  # And the statistics are those of the real examples alone.
  real = bn.apply(variables, x[MASK], mutable=["batch_stats"])[1]
  np.testing.assert_allclose(s0["batch_stats"]["var"],
                             real["batch_stats"]["var"], rtol=1e-6)


def test_a_mask_of_the_wrong_size_is_refused():
  bn = BatchNorm()
  x = jnp.ones((4, 2))
  with pytest.raises(ValueError, match="mask must have one entry per example"):
    bn.init(jax.random.key(0), x, mask=jnp.ones(3, bool))


def test_resnet20_keeps_flax_layer_names():
  """Checkpoints and parameter trees written with flax's layer still fit."""
  fns = models.resnet20()
  params = jax.eval_shape(fns.init, jax.random.key(0))
  assert set(params["params"]["BatchNorm_0"]) == {"scale", "bias"}
  assert set(params["batch_stats"]["BatchNorm_0"]) == {"mean", "var"}
  assert set(params["batch_stats"]["_BasicBlock_3"]) == {
      "BatchNorm_0", "BatchNorm_1", "BatchNorm_2"}
