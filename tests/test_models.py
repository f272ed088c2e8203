"""Tests for fedasync_jax.models: counts, shapes, masking, training, eval."""

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedasync_jax import models


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


# Small shapes per model; ResNet batches stay tiny (XLA:CPU convolutions).
SPECS = {
    "mnist_cnn": dict(kw={}, shape=(28, 28), batch=6),
    "resnet20": dict(kw={}, shape=(32, 32, 3), batch=4),
    "mlp": dict(kw={}, shape=(28, 28), batch=8),
    "logistic_regression": dict(kw=dict(input_dim=60, num_classes=10),
                                shape=(60,), batch=8),
}
NAMES = list(SPECS)


@functools.lru_cache(maxsize=None)
def _model(name):
  fns = models.get_model(name, **SPECS[name]["kw"])
  return fns, fns.init(jax.random.key(0))


@functools.lru_cache(maxsize=None)
def _grad_fn(name):
  return jax.jit(models.loss_and_grad(_model(name)[0]))


@functools.lru_cache(maxsize=None)
def _apply_fn(name):
  return jax.jit(_model(name)[0].apply)


def _batch(name, seed=1, batch=None):
  spec = SPECS[name]
  b = batch or spec["batch"]
  kx, ky = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (b,) + spec["shape"], jnp.float32)
  y = jax.random.randint(ky, (b,), 0, 10)
  return x, y


def _tree_max_diff(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  return max((float(jnp.max(jnp.abs(u - v)))
              for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))),
             default=0.0)


# ---------------------------------------------------------------------------
# Parameter counts and shapes.


@pytest.mark.parametrize("name,expected", [
    ("mnist_cnn", 19_146),
    ("resnet20", 272_474),
    ("mlp", 199_210),
    ("logistic_regression", 610),
])
def test_parameter_counts(name, expected):
  fns, params = _model(name)
  assert models.count_params(params) == expected
  assert fns.stateful == (name == "resnet20")


def test_parameter_counts_other_configs():
  def count(fns):  # Shapes only: nothing is compiled.
    return models.count_params(jax.eval_shape(fns.init, jax.random.key(0)))

  assert count(models.logistic_regression(784, 10)) == 7_850
  assert count(models.mlp(hidden=(), input_dim=4, num_classes=3)) == 15
  assert count(models.mlp(hidden=(50,), input_dim=10)) == 550 + 510
  # Three convs (320 + 9,248 + 9,248) plus a 32x2 linear layer with bias.
  assert count(models.mnist_cnn(num_classes=2)) == 320 + 2 * 9_248 + 66
  assert count(models.resnet20(num_classes=100)) == 272_474 + 65 * 90


def test_resnet_structure():
  _, params = _model("resnet20")
  p = params["params"]
  # No biases except the final linear layer; projection shortcuts with BN.
  leaves = jax.tree_util.tree_leaves_with_path(p)
  biases = [jax.tree_util.keystr(k) for k, _ in leaves
            if "bias" in jax.tree_util.keystr(k)
            and "Conv" in jax.tree_util.keystr(k)]
  assert biases == []
  kernels_1x1 = [v.shape for _, v in leaves if v.ndim == 4 and v.shape[0] == 1]
  assert sorted(kernels_1x1) == [(1, 1, 16, 32), (1, 1, 32, 64)]
  assert set(params["batch_stats"]) == {
      k for k in p if k.startswith(("BatchNorm", "_BasicBlock"))}
  # count_params ignores the batch statistics (mean and var of 19 BNs).
  n_stats = sum(v.size for v in jax.tree.leaves(params["batch_stats"]))
  assert n_stats == 2 * (16 * 7 + 32 * 7 + 64 * 7)
  assert models.count_params(params) == sum(
      v.size for v in jax.tree.leaves(params)) - n_stats


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(name):
  fns, params = _model(name)
  x, _ = _batch(name)
  out = _apply_fn(name)(params, x)
  assert out.shape == (x.shape[0], fns.num_classes)
  assert out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))


def test_cnn_accepts_both_input_layouts_and_returns_log_probs():
  fns, params = _model("mnist_cnn")
  x, _ = _batch("mnist_cnn")
  a = _apply_fn("mnist_cnn")(params, x)
  b = _apply_fn("mnist_cnn")(params, x[..., None])
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.nn.logsumexp(a, axis=-1), 0.0, atol=1e-5)
  assert fns.outputs == "log_probs"


def test_mlp_flattens():
  fns, params = _model("mlp")
  x, _ = _batch("mlp", batch=3)
  np.testing.assert_allclose(fns.apply(params, x),
                             fns.apply(params, x.reshape(3, 784)), rtol=1e-6)
  assert fns.outputs == "logits"


def test_init_depends_on_key():
  fns, _ = _model("mnist_cnn")
  a, b = fns.init(jax.random.key(0)), fns.init(jax.random.key(1))
  assert _tree_max_diff(a, b) > 0
  assert _tree_max_diff(a, fns.init(jax.random.key(0))) == 0


# ---------------------------------------------------------------------------
# The loss contract: masking.


@pytest.mark.parametrize("name", NAMES)
def test_loss_respects_mask(name):
  fns, params = _model(name)
  grad_fn = _grad_fn(name)
  trainable, state = models.split_params(fns, params)
  x, y = _batch(name)
  b = x.shape[0]
  mask = jnp.ones(b).at[-2:].set(0.0)
  loss, grads, new_state = grad_fn(trainable, state, x, y, mask)
  assert float(loss) > 0

  # Garbage in the padded slots changes nothing.
  x2 = x.at[-2:].set(37.0 * jax.random.normal(jax.random.key(9),
                                              x[-2:].shape))
  y2 = y.at[-2:].set((y[-2:] + 3) % 10)
  loss2, grads2, new_state2 = grad_fn(trainable, state, x2, y2, mask)
  np.testing.assert_allclose(loss, loss2, rtol=1e-6)
  assert _tree_max_diff(grads, grads2) < 1e-6
  if fns.stateful:
    assert _tree_max_diff(new_state, new_state2) < 1e-6

  # All-zero mask: loss 0, finite (zero) gradient, state unchanged.
  loss0, grads0, state0 = grad_fn(trainable, state, x, y, jnp.zeros(b))
  assert float(loss0) == 0.0
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads0))
  assert _tree_max_diff(grads0, jax.tree.map(jnp.zeros_like, grads0)) == 0
  assert _tree_max_diff(state0, state) == 0


@pytest.mark.parametrize("name", ["mnist_cnn", "mlp", "logistic_regression"])
def test_masked_loss_equals_loss_on_real_examples(name):
  fns, params = _model(name)
  x, y = _batch(name)
  b = x.shape[0]
  mask = jnp.ones(b).at[-2:].set(0.0)
  full = fns.loss(params, x, y, mask)
  real = fns.loss(params, x[:-2], y[:-2], jnp.ones(b - 2))
  np.testing.assert_allclose(full, real, rtol=1e-5)
  # And it is the mean NLL of apply's outputs.
  logp = jax.nn.log_softmax(fns.apply(params, x[:-2]))
  manual = -jnp.mean(jnp.take_along_axis(logp, y[:-2, None], axis=1))
  np.testing.assert_allclose(real, manual, rtol=1e-5)


_LOGREG_LOSS = jax.jit(models.logistic_regression(3, 4).loss)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(mask=st.lists(st.sampled_from([0.0, 1.0]), min_size=6,
                                max_size=6))
def test_logreg_loss_is_masked_mean(mask):
  params = {"kernel": jnp.arange(12.0).reshape(3, 4) / 10,
            "bias": jnp.array([0.1, -0.2, 0.3, 0.0])}
  x = jnp.arange(18.0).reshape(6, 3) / 7 - 1
  y = jnp.array([0, 1, 2, 3, 0, 1])
  loss = _LOGREG_LOSS(params, x, y, jnp.array(mask))
  logits = np.asarray(x) @ np.asarray(params["kernel"]) + np.asarray(
      params["bias"])
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  nll = -logp[np.arange(6), np.asarray(y)]
  m = np.array(mask)
  expected = (nll * m).sum() / m.sum() if m.sum() > 0 else 0.0
  np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# Training reduces the loss.


@pytest.mark.parametrize("name,tx", [
    ("mnist_cnn", optax.adam(1e-2)),
    ("resnet20", optax.adam(1e-2)),
    ("mlp", optax.sgd(0.1)),
    ("logistic_regression", optax.sgd(0.5)),
])
def test_training_reduces_loss(name, tx):
  # The client-trainer contract: split, step with loss_and_grad, merge.
  fns, params = _model(name)
  grad_fn = _grad_fn(name)  # Shared (compiled once) with the mask tests.
  x, y = _batch(name)
  mask = jnp.ones(x.shape[0]).at[-2:].set(0.0)
  trainable, state = models.split_params(fns, params)
  opt_state = tx.init(trainable)
  update = jax.jit(tx.update)
  losses = []
  for _ in range(8):
    loss, grads, state = grad_fn(trainable, state, x, y, mask)
    updates, opt_state = update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.7 * losses[0]
  new_params = models.merge_params(fns, trainable, state)
  assert jax.tree.structure(new_params) == jax.tree.structure(params)


# ---------------------------------------------------------------------------
# Batch norm: train mode vs eval mode.


def test_resnet_train_mode_updates_batch_stats_and_eval_uses_running():
  fns, params = _model("resnet20")
  trainable, stats = models.split_params(fns, params)
  x, y = _batch("resnet20")
  mask = jnp.ones(4).at[-2:].set(0.0)
  _, _, new_stats = _grad_fn("resnet20")(trainable, stats, x, y, mask)
  assert jax.tree.structure(new_stats) == jax.tree.structure(stats)
  assert _tree_max_diff(new_stats, stats) > 1e-3
  # Momentum 0.9 (PyTorch's 0.1): the stem's running mean moves 10% of the
  # way to the batch mean of its conv output over the REAL examples only.
  stem = jax.lax.conv_general_dilated(
      x[:2], trainable["Conv_0"]["kernel"], (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(new_stats["BatchNorm_0"]["mean"],
                             0.1 * stem.mean(axis=(0, 1, 2)), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(new_stats["BatchNorm_0"]["var"],
                             0.9 + 0.1 * stem.var(axis=(0, 1, 2)), rtol=1e-4)

  # Eval mode: each example's output is independent of the rest of the
  # batch, and depends on the running statistics.
  apply = _apply_fn("resnet20")
  out_all = apply(params, x)
  out_one = apply(params, jnp.concatenate([x[:1], x[:1], x[:1], x[:1]]))
  np.testing.assert_allclose(out_all[0], out_one[0], rtol=1e-5, atol=1e-5)
  updated = models.merge_params(fns, trainable, new_stats)
  out_updated = apply(updated, x)
  assert float(jnp.max(jnp.abs(out_updated - out_all))) > 1e-4
  # evaluate() uses the same eval-mode outputs.
  loss, _ = fns.evaluate(updated, x, y, batch_size=4)
  logp = jax.nn.log_softmax(out_updated)
  np.testing.assert_allclose(
      loss, -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)),
      rtol=1e-5)


# ---------------------------------------------------------------------------
# Evaluation.


def _reference_eval(fns, params, x, y):
  logp = jax.nn.log_softmax(fns.apply(params, x))
  loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
  acc = jnp.mean(jnp.argmax(logp, axis=1) == y)
  return float(loss), float(acc)


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_matches_unbatched(name):
  fns, params = _model(name)
  n, bs = 7, 3  # 3 batches, the last one padded with 2 masked examples.
  if name == "resnet20":
    # Nontrivial running statistics (one train-mode step).
    x0, y0 = _batch(name, seed=5)
    trainable, stats = models.split_params(fns, params)
    _, _, stats = _grad_fn(name)(trainable, stats, x0, y0, jnp.ones(4))
    params = models.merge_params(fns, trainable, stats)
  x, y = _batch(name, seed=3, batch=n)
  ref_loss, ref_acc = _reference_eval(fns, params, x, y)
  loss, acc = fns.evaluate(params, x, y, batch_size=bs)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
  np.testing.assert_allclose(float(acc), ref_acc, rtol=1e-6)

  ev = models.make_evaluator(fns, np.asarray(x), np.asarray(y), bs)
  assert ev.data[0].shape[:2] == (3, 3)
  out = jax.jit(ev)(params)  # Called inside another jit.
  np.testing.assert_allclose(float(out["loss"]), ref_loss, rtol=1e-5)
  np.testing.assert_allclose(float(out["accuracy"]), ref_acc, rtol=1e-6)


def test_evaluate_batch_larger_than_test_set_and_known_accuracy():
  fns = models.logistic_regression(2, 2)
  params = {"kernel": jnp.array([[1.0, -1.0], [0.0, 0.0]]),
            "bias": jnp.zeros(2)}
  x = jnp.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 5.0], [-3.0, 1.0], [1.0, 1.0]])
  y = jnp.array([0, 1, 1, 1, 1])  # predictions: 0, 1, 0, 1, 0 -> 3/5.
  loss, acc = fns.evaluate(params, x, y, batch_size=1000)
  np.testing.assert_allclose(float(acc), 0.6, rtol=1e-6)
  np.testing.assert_allclose(float(loss), _reference_eval(fns, params, x, y)[0],
                             rtol=1e-6)
  # The evaluator works inside a jitted outer computation as well.
  ev = models.make_evaluator(fns, x, y, batch_size=2)
  f = jax.jit(lambda p: ev(jax.tree.map(lambda t: 2 * t, p))["accuracy"])
  np.testing.assert_allclose(float(f(params)), 0.6, rtol=1e-6)
  # Data passed as an argument rather than captured as a constant.
  g = jax.jit(lambda p, data: ev(p, data)["accuracy"])
  np.testing.assert_allclose(float(g(params, ev.data)), 0.6, rtol=1e-6)
  with pytest.raises(ValueError, match="data"):
    ev(params, tuple(a[:1] for a in ev.data))


def test_evaluation_keeps_float64():
  """Under x64, float64 parameters and data are evaluated in float64 (the
  evaluator cast the model's outputs to float32: a test loss 6.5e-8 from
  the float64 value); half-precision outputs are still summed in
  float32."""
  with jax.enable_x64(True):
    fns = models.logistic_regression(3, 4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3))
    y = rng.integers(0, 4, size=9)
    params = {"kernel": jnp.asarray(rng.normal(size=(3, 4))),
              "bias": jnp.asarray(rng.normal(size=4))}
    logits = x @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = -logp[np.arange(9), y].mean()
    out = models.make_evaluator(fns, x, y, batch_size=4)(params)
    assert out["loss"].dtype == jnp.float64
    np.testing.assert_allclose(float(out["loss"]), want, rtol=1e-14)
    loss, _ = fns.evaluate(params, x, y, batch_size=4)
    np.testing.assert_allclose(float(loss), want, rtol=1e-14)
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    loss, _ = fns.evaluate(half, x.astype(np.float32), y, batch_size=4)
    assert loss.dtype == jnp.float32


# ---------------------------------------------------------------------------
# Helpers and validation.


def test_split_merge_and_count():
  fns, params = _model("resnet20")
  trainable, state = models.split_params(fns, params)
  assert trainable is params["params"] and state is params["batch_stats"]
  assert models.merge_params(fns, trainable, state) == params
  assert models.count_params(trainable) == 272_474
  fns, params = _model("mlp")
  assert models.split_params(fns, params) == (params, {})


def test_get_model_names_and_aliases():
  assert models.get_model("cnn").name == "mnist_cnn"
  assert models.get_model("2nn").name == "mlp"
  assert models.get_model("logreg", input_dim=3, num_classes=2).name == (
      "logistic_regression")
  assert set(models.MODEL_NAMES) == set(SPECS)


@pytest.mark.parametrize("call,match", [
    (lambda: models.get_model("vgg"), "name must be one of"),
    (lambda: models.mlp(hidden=(200, 0)), "hidden"),
    (lambda: models.mlp(hidden=5), "hidden"),
    (lambda: models.mlp(input_dim=-1), "input_dim"),
    (lambda: models.resnet20(num_classes=0), "num_classes"),
    (lambda: models.logistic_regression(2.5, 3), "input_dim"),
    (lambda: models.from_flax(None, input_shape=(1,), num_classes=2,
                              outputs="probs"), "outputs"),
])
def test_bad_options_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_bad_inputs_raise():
  fns, params = _model("mlp")
  with pytest.raises(ValueError, match="input_dim"):
    fns.apply(params, jnp.zeros((2, 10)))
  with pytest.raises(ValueError, match="mask"):
    fns.loss(params, jnp.zeros((2, 784)), jnp.zeros(2, jnp.int32),
             jnp.ones(3))
  with pytest.raises(ValueError, match="y must"):
    fns.loss(params, jnp.zeros((2, 784)), jnp.zeros((2, 1), jnp.int32),
             jnp.ones(2))
  with pytest.raises(ValueError, match="batch_size"):
    fns.evaluate(params, jnp.zeros((2, 784)), jnp.zeros(2, jnp.int32),
                 batch_size=0)
  cnn, cnn_params = _model("mnist_cnn")
  with pytest.raises(ValueError, match=r"\(B, H, W, 1\)"):
    cnn.apply(cnn_params, jnp.zeros((2, 28, 28, 3)))


def test_registry_lists_every_model_with_its_parameters():
  assert models.MODELS.names() == ("mnist_cnn", "resnet20", "mlp",
                                   "logistic_regression")
  assert models.MODEL_NAMES == models.MODELS.names()
  assert models.model_aliases() == {"cnn": "mnist_cnn", "2nn": "mlp",
                                    "logreg": "logistic_regression"}
  params = {m.name: [p.name for p in m.params]
            for m in models.MODELS.members()}
  assert params == {"mnist_cnn": ["num_classes", "conv"],
                    "resnet20": ["num_classes", "conv"],
                    "mlp": ["hidden", "num_classes", "input_dim"],
                    "logistic_regression": ["input_dim", "num_classes"]}
  for m in models.MODELS.members():
    assert m.doc and all(p.meaning for p in m.params), m.name
    assert m.info["stateful"] == (m.name == "resnet20")
  fns = models.MODELS.build("mlp", hidden=(8,), num_classes=3.0, input_dim=5)
  assert (fns.name, fns.num_classes, fns.input_shape) == ("mlp", 3, (5,))
  assert models.MODELS.build("logistic_regression", input_dim=2,
                             num_classes=2).name == "logistic_regression"


@pytest.mark.parametrize("name, kwargs, match", [
    ("mlp", dict(num_classes=0), "model 'mlp': num_classes must be an "
     r"integer >= 1, got 0"),
    ("mlp", dict(input_dim=True), "input_dim must be an integer"),
    ("mnist_cnn", dict(num_classes=2.5), "num_classes must be an integer"),
    ("logistic_regression", dict(input_dim=3), r"missing parameter.*"
     "num_classes"),
    ("resnet20", dict(width=3), "unknown parameter"),
])
def test_registry_build_checks_parameters(name, kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.MODELS.build(name, **kwargs)


def test_factories_follow_the_shared_checks():
  # core.checks: an integer is an int or an integral float, never a bool.
  assert models.mlp(hidden=(4.0,), num_classes=2.0, input_dim=3.0
                    ).input_shape == (3,)
  assert models.logistic_regression(3.0, 2).num_classes == 2
  for call in (lambda: models.mlp(num_classes=True),
               lambda: models.mlp(hidden=(True,)),
               lambda: models.logistic_regression(True, 2),
               lambda: models.mnist_cnn(num_classes=True),
               lambda: models.resnet20(num_classes=True),
               lambda: models.make_evaluator(models.mlp(), np.zeros((1, 784)),
                                             np.zeros(1), batch_size=True)):
    with pytest.raises(ValueError, match="must be an integer >= 1, got True"):
      call()


def test_from_flax_refuses_a_module_narrower_than_num_classes():
  """A module of 2 outputs wrapped with num_classes=3 was accepted: labels
  0-2 passed the label check and trained to NaN losses with no error."""
  import flax.linen as nn
  with pytest.raises(ValueError, match=r"maps examples of shape \(4,\) to "
                     r"outputs of shape \(2,\), but num_classes=3 needs "
                     r"\(3,\)"):
    models.from_flax(nn.Dense(2), input_shape=(4,), num_classes=3)
  fns = models.from_flax(nn.Dense(3), input_shape=(4,), num_classes=3)
  assert fns.apply(fns.init(jax.random.key(0)), jnp.ones((5, 4))).shape == \
      (5, 3)
