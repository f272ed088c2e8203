"""The local update of one client: masks, proximal term, rates, stopping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import lsq_loss
from fedasync_jax import client


def one_client(n=6, dim=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n + 4, dim))  # 4 examples of another client
  y = rng.normal(size=n + 4)
  return x, y


def full_batch_grad(w, x, y):
  return 2 * x.T @ (x @ w - y) / len(y)


@pytest.mark.parametrize("rho, scale", [(0.0, 1.0), (0.7, 0.5)])
def test_full_batch_steps_equal_gradient_descent(rho, scale):
  with jax.enable_x64(True):
    x, y = one_client()
    upd = client.local_update(lsq_loss, optax.sgd(0.1), batch_size=8,
                              max_examples=8, epochs=3)
    w0 = np.array([0.3, -0.2, 0.1])
    res, met = upd.update(jnp.asarray(w0), client.ClientRef(
        jnp.asarray(x), jnp.asarray(y), 4, 6), jax.random.key(1),
        client.ClientHParams(scale, rho))
    w = w0.copy()
    xs, ys = x[4:], y[4:]
    for _ in range(3):
      w = w - 0.1 * scale * (full_batch_grad(w, xs, ys) + rho * (w - w0))
    np.testing.assert_allclose(res.params, w, rtol=1e-10)
    np.testing.assert_allclose(res.delta, w - w0, rtol=1e-9)
    assert int(met["steps"]) == 3 and float(res.num_examples) == 6.0


def test_ragged_sizes_are_masked():
  x, y = one_client(n=5)
  upd = client.local_update(lsq_loss, optax.sgd(0.1), batch_size=2,
                            max_examples=9, epochs=2)
  args = (jnp.zeros(3), jnp.asarray(x, jnp.float32),
          jnp.asarray(y, jnp.float32))
  _, met = upd.update(args[0], client.ClientRef(args[1], args[2], 4, 5),
                      jax.random.key(0), client.ClientHParams())
  assert int(met["steps"]) == 2 * 3  # ceil(5 / 2) per epoch
  res0, met0 = upd.update(args[0], client.ClientRef(args[1], args[2], 4, 0),
                          jax.random.key(0), client.ClientHParams())
  assert int(met0["steps"]) == 0
  np.testing.assert_array_equal(res0.params, 0.0)
  assert upd.num_steps == 2 * 5


def test_batches_only_touch_own_examples():
  # Poison the other client's examples: the result must not change.
  x, y = one_client(n=6)
  upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                            max_examples=6, epochs=2)
  ref = client.ClientRef(jnp.asarray(x), jnp.asarray(y), 4, 6)
  xp = x.copy()
  xp[:4] = 1e6
  poisoned = ref._replace(x=jnp.asarray(xp))
  a, _ = upd.update(jnp.zeros(3), ref, jax.random.key(3),
                    client.ClientHParams())
  b, _ = upd.update(jnp.zeros(3), poisoned, jax.random.key(3),
                    client.ClientHParams())
  np.testing.assert_array_equal(a.params, b.params)


def test_a_float32_client_shuffles_alike_with_and_without_x64():
  """The epoch's example order is drawn in float32 in either mode: under
  x64 it was drawn in float64, so the same seed trained other minibatches
  and a float32 run and its x64 twin differed (0.13 after 50 updates)."""
  x, y = one_client(n=9)
  upd = client.local_update(lsq_loss, optax.sgd(0.1), batch_size=2,
                            max_examples=9, epochs=3)

  def run():
    ref = client.ClientRef(jnp.asarray(x, jnp.float32),
                           jnp.asarray(y, jnp.float32), 4, 9)
    res, _ = upd.update(jnp.zeros(3, jnp.float32), ref, jax.random.key(5),
                        client.ClientHParams())
    return np.asarray(res.params)
  plain = run()
  with jax.enable_x64(True):
    wide = run()
  assert plain.dtype == wide.dtype == np.float32
  np.testing.assert_array_equal(plain, wide)


def test_fixed_steps_and_epoch_decay():
  x, y = one_client()
  upd = client.local_update(lsq_loss, optax.sgd(0.1), batch_size=2,
                            max_examples=6, steps=7)
  _, met = upd.update(jnp.zeros(3), client.ClientRef(
      jnp.asarray(x), jnp.asarray(y), 4, 6), jax.random.key(0),
      client.ClientHParams())
  assert int(met["steps"]) == 7
  with jax.enable_x64(True):
    dec = client.local_update(lsq_loss, optax.sgd(0.1), batch_size=8,
                              max_examples=8, epochs=2, epoch_decay=True)
    xs, ys = x[4:], y[4:]
    res, _ = dec.update(jnp.zeros(3), client.ClientRef(
        jnp.asarray(x), jnp.asarray(y), 4, 6), jax.random.key(0),
        client.ClientHParams())
    w = np.zeros(3)
    for e in range(2):
      w = w - 0.1 / np.sqrt(e + 1) * full_batch_grad(w, xs, ys)
    np.testing.assert_allclose(res.params, w, rtol=1e-10)


def test_early_stopping_with_patience():
  x, y = one_client()
  upd = client.local_update(lsq_loss, optax.sgd(0.0), batch_size=8,
                            max_examples=8, epochs=10, patience=2)
  _, met = upd.update(jnp.zeros(3), client.ClientRef(
      jnp.asarray(x), jnp.asarray(y), 4, 6), jax.random.key(0),
      client.ClientHParams())
  # Epoch 1 improves on inf; epochs 2 and 3 do not: stop after 3.
  assert int(met["epochs"]) == 3 and int(met["steps"]) == 3
  keep = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=8,
                             max_examples=8, epochs=10, patience=2)
  _, met = keep.update(jnp.zeros(3), client.ClientRef(
      jnp.asarray(x), jnp.asarray(y), 4, 6), jax.random.key(0),
      client.ClientHParams())
  assert int(met["epochs"]) == 10


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": 0}, "batch_size"), ({"epochs": 0}, "epochs"),
    ({"steps": -1}, "steps"), ({"patience": 0}, "patience"),
    ({"max_examples": 0}, "max_examples"),
    ({"epochs": 5, "steps": 3}, r"epochs=5 with steps=3: fixed local steps "
                                r"replace epochs; pass one of them"),
    # options that act between epochs were accepted with one (the command
    # line warned; the library ran them as nothing)
    ({"steps": 5, "epoch_decay": True, "patience": 2},
     r"epoch_decay=True and patience=2 act between local epochs and do "
     r"nothing with steps=5 \(one epoch\): pass epochs > 1"),
    ({"patience": 2}, r"patience=2 acts between local epochs and does "
                      r"nothing with epochs=1"),
])
def test_invalid(kw, match):
  args = {"batch_size": 2, "max_examples": 4, **kw}
  with pytest.raises(ValueError, match=match):
    client.local_update(lsq_loss, optax.sgd(0.1), **args)


@pytest.mark.parametrize("loss, opt, match", [
    (lsq_loss, "sgd", r"optimizer must be an optax optimizer .*got 'sgd'"),
    (lsq_loss, 3, r"optimizer must be an optax optimizer"),
    (3, optax.sgd(0.1), r"loss_fn must be a function"),
])
def test_local_update_refuses_a_bad_loss_or_optimizer(loss, opt, match):
  """These used to be accepted and fail inside the simulator with an
  AttributeError ('str' object has no attribute 'init')."""
  with pytest.raises(ValueError, match=match):
    client.local_update(loss, opt, batch_size=2, max_examples=10)


def test_a_loss_of_the_form_stateful_does_not_expect_is_named():
  """A batch-norm model's loss (returning ``(loss, new_batch_stats)``)
  given to ``local_update`` without ``stateful=True`` failed inside the
  gradient ("unsupported operand type(s) for +: 'tuple' and
  'LinearizeTracer'"); ``stateful=True`` with plain parameters failed with
  a TypeError ("JAX does not support string indexing"). Each now names
  ``stateful``."""
  from fedasync_jax.core.client import ClientHParams, ClientRef
  x, y = jnp.ones((6, 5)), jnp.ones(6)
  ref = ClientRef(x, y, jnp.int32(0), jnp.int32(6))
  hp = ClientHParams(jnp.float32(1), jnp.float32(0))
  w = jnp.zeros(5)
  with_stats = {"params": w, "batch_stats": {"mean": jnp.zeros(5)}}

  def bn_loss(params, x, y, mask):
    return lsq_loss(params["params"], x, y, mask), params["batch_stats"]

  def plain_on_dict(params, x, y, mask):
    return lsq_loss(params["params"], x, y, mask)
  for loss, stateful, params, match in (
      (bn_loss, False, with_stats,
       r"loss_fn returned a tuple of 2, not a scalar loss: .* needs "
       r"local_update\(\.\.\., stateful=True\)"),
      (lsq_loss, True, w, r"stateful=True trains params of the form "
       r"\{'params': \.\.\., 'batch_stats': \.\.\.\}"),
      (plain_on_dict, True, with_stats,
       r"stateful=True needs loss_fn to return \(loss, new_batch_stats\)")):
    upd = client.local_update(loss, optax.sgd(0.1), batch_size=2,
                              max_examples=6, stateful=stateful)
    with pytest.raises(ValueError, match=match):
      jax.eval_shape(upd.update, params, ref, jax.random.key(0), hp)
  # The forms that fit train.
  upd = client.local_update(bn_loss, optax.sgd(0.1), batch_size=2,
                            max_examples=6, stateful=True)
  out = jax.eval_shape(upd.update, with_stats, ref, jax.random.key(0), hp)
  assert out[0].params["params"].shape == (5,)
