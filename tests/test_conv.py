"""Tests for fedasync_jax.models.conv: the canonical-VJP convolution equals lax's.

XLA:CPU compiles slowly, so each test builds ONE jitted program that
computes the lax and the canonical results side by side for all its cases,
and reports the failing cases by name.
"""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedasync_jax import conv, models
from fedasync_jax.sim import xla_cpu

DN = ("NHWC", "HWIO", "NHWC")
LAX = jax.lax.conv_general_dilated
CANON = conv.conv_general_dilated
RTOL = 2e-6  # float32, relative to the largest entry of the lax result


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def _tree_rel(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  worst = 0.0
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert u.shape == v.shape and u.dtype == v.dtype, (u.shape, v.shape)
    worst = max(worst, _rel(u, v))
  return worst


def _inputs(n, h, w, cin, cout, k, seed=0, dtype=np.float32):
  """Random input and kernel (numpy: no compilation) and a loss weight."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, h, w, cin)).astype(dtype))
  ker = jnp.asarray(rng.normal(size=(k, k, cin, cout)).astype(dtype))
  return x, ker, jnp.asarray(dtype(rng.uniform(0.5, 2.0)))


def _loss(fn, strides, padding, dn=DN):
  """A nonlinear scalar of the convolution, so that dy is not constant."""

  def loss(x, w, c):
    y = fn(x, w, strides, padding, dimension_numbers=dn)
    weight = jnp.cos(c * jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
    return jnp.sum(jnp.tanh(y) * weight)

  return loss


def _both(strides, padding, x, w, c, dn=DN, canon=CANON):
  """(forward, value, (dx, dw)) for lax and for the canonical conv."""
  out = []
  for fn in (LAX, canon):
    y = fn(x, w, strides, padding, dimension_numbers=dn)
    out.append((y,) + jax.value_and_grad(_loss(fn, strides, padding, dn),
                                         (0, 1))(x, w, c))
  return out


# strides x padding, with input sizes (odd, even, non-square), kernel sizes
# and channel counts cycling through the cases.
STRIDES = [(1, 1), (2, 2), (1, 2)]
PADDINGS = ["SAME", "VALID", ((1, 1), (1, 1)), ((0, 2), (2, 1)),
            ((2, -1), (-1, 1))]
SHAPES = [  # (batch, H, W, C_in, C_out, k)
    (2, 7, 7, 1, 4, 3), (3, 8, 6, 3, 2, 3), (2, 9, 5, 2, 3, 1),
    (1, 6, 10, 4, 4, 2), (2, 8, 8, 3, 5, 3)]
GRID = [(s, p, SHAPES[i % len(SHAPES)])
        for i, (s, p) in enumerate(itertools.product(STRIDES, PADDINGS))]
# ResNet's strided shapes in miniature: 3x3/2 pad 1 and 1x1/2 pad 0, even
# and odd inputs.
GRID += [((2, 2), ((1, 1), (1, 1)), (2, 9, 9, 4, 6, 3)),
         ((2, 2), ((0, 0), (0, 0)), (2, 8, 8, 4, 6, 1)),
         ((3, 2), "SAME", (2, 8, 7, 2, 3, 3))]


@pytest.mark.parametrize("widen", [False, True])
def test_forward_and_gradients_match_lax_over_grid(widen):
  # Every GRID shape has at most 16 channels on each side, so with widen
  # every forward and input-gradient convolution gets the extra output
  # channel (the kernel gradients are never widened).
  canon = functools.partial(CANON, widen_small=widen)
  cases = []
  for i, (strides, padding, shape) in enumerate(GRID):
    n, h, w, cin, cout, k = shape
    cases.append((strides, padding) + _inputs(n, h, w, cin, cout, k, seed=i))
  # The first case's 3x3x1->4 kernel is widened to 17 output channels.
  jaxpr = str(jax.make_jaxpr(lambda x, w: canon(
      x, w, (1, 1), "SAME", dimension_numbers=DN))(*cases[0][2:4]))
  assert ("f32[3,3,1,17]" in jaxpr) == widen

  @jax.jit
  def run(arrays):
    return [_both(s, p, *a, canon=canon)
            for (s, p, *_), a in zip(cases, arrays)]

  results = run([case[2:] for case in cases])
  bad = []
  for (strides, padding, shape), (want, got) in zip(GRID, results):
    if not widen:  # the forward is the same lax call: bit-identical
      np.testing.assert_array_equal(np.asarray(want[0]), np.asarray(got[0]))
    err = _tree_rel(want, got)
    if not err <= RTOL:
      bad.append((strides, padding, shape, err))
  assert not bad, bad


def test_one_spatial_dimension_matches_lax():
  x, ker, c = _inputs(2, 1, 9, 2, 3, 3)
  dn = ("NWC", "WIO", "NWC")
  want, got = jax.jit(functools.partial(_both, (2,), "SAME", dn=dn))(
      x[:, 0], ker[0], c)
  assert _tree_rel(want, got) <= RTOL


def test_inside_fori_loop_matches_lax():
  x, ker, c = _inputs(2, 8, 8, 3, 3, 3)

  def train(fn, strides, w):
    vg = jax.value_and_grad(_loss(fn, strides, "SAME"), (0, 1))

    def body(i, carry):  # a few gradient steps on the kernel
      w, total = carry
      loss, (_, g) = vg(x, w, c + i)
      return w - 0.05 * g, total + loss

    return jax.lax.fori_loop(0, 3, body, (w, jnp.float32(0)))

  run = jax.jit(lambda w: [(train(LAX, s, w), train(CANON, s, w))
                           for s in ((1, 1), (2, 2))])
  for want, got in run(ker):
    assert _tree_rel(want, got) <= 1e-5


def test_under_vmap_matches_lax():
  x, ker, c = _inputs(2, 7, 7, 2, 3, 3)
  xs = jnp.stack([x, 2.0 * x, -x])
  ks = jnp.stack([ker, ker[::-1], 0.5 * ker])
  want, got = jax.jit(jax.vmap(
      lambda x, w: _both((2, 2), "SAME", x, w, c)))(xs, ks)
  assert _tree_rel(want, got) <= RTOL


def test_inside_shard_map_matches_lax():
  """Batch sharded, kernel replicated: the kernel's cotangent must come
  back summed over the mesh axis (its primal does not vary along it)."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
  x, ker, c = _inputs(4, 8, 8, 3, 5, 3)
  spec = jax.sharding.PartitionSpec

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(spec("d"), spec()),
                     out_specs=spec())
  def grads(x, w):
    return [jax.grad(_loss(fn, (2, 2), "SAME"), (0, 1))(x, w, c)[1]
            for fn in (LAX, CANON)]
  want, got = grads(x, ker)
  assert _rel(want, got) <= RTOL


def test_backward_has_only_canonical_convolutions():
  # The point of the module: the compiled gradient holds only NHWC/HWIO ->
  # NHWC convolutions (dim_labels b01f_01io->b01f), none of JAX's
  # transposed forms, also for strided convolutions and inside a loop.
  x, ker, c = _inputs(2, 8, 8, 3, 5, 3)

  def dim_labels(fn):
    grad = jax.grad(_loss(fn, (2, 2), "SAME"), (0, 1))

    def step(i, w):
      gx, gw = grad(x, w, c)
      return w - gw - jnp.sum(gx)

    hlo = jax.jit(lambda w: jax.lax.fori_loop(0, 2, step, w)).lower(
        ker).compile().as_text()
    return re.findall(r"dim_labels=([a-z0-9_>\-]+)", hlo)

  labels = dim_labels(CANON)
  assert len(labels) >= 3 and set(labels) == {"b01f_01io->b01f"}, labels
  # Control: JAX's own gradient in the same loop keeps transposed forms.
  assert set(dim_labels(LAX)) != {"b01f_01io->b01f"}


def test_unsupported_arguments_fall_back_to_lax():
  x, ker, _ = _inputs(2, 9, 9, 4, 4, 3)
  cases = [
      dict(rhs_dilation=(2, 2)),
      dict(lhs_dilation=(2, 1), padding=((1, 1), (1, 1))),
      dict(feature_group_count=2, rhs=ker[:, :, :2]),
      dict(dimension_numbers=None, lhs=x.transpose(0, 3, 1, 2),
           rhs=ker.transpose(3, 2, 0, 1)),
      dict(preferred_element_type=jnp.float64),
  ]
  assert conv.is_canonical(x, ker, (1, 1), "SAME", dimension_numbers=DN)
  assert "custom_vjp" in str(jax.make_jaxpr(
      lambda a, b: CANON(a, b, (1, 1), "SAME", dimension_numbers=DN))(x, ker))
  for case in cases:
    kw = dict(lhs=x, rhs=ker, window_strides=(1, 1), padding="SAME",
              dimension_numbers=DN)
    kw.update(case)
    assert not conv.is_canonical(**kw), case
    if "preferred_element_type" in case:
      continue  # float64 results need x64; the predicate is what matters
    lhs, rhs = kw.pop("lhs"), kw.pop("rhs")
    f = lambda l, r, kw=kw: jnp.sum(CANON(l, r, **kw) ** 2)
    assert "custom_vjp" not in str(jax.make_jaxpr(jax.grad(f, (0, 1)))(
        lhs, rhs)), case


def _conv_count(f, *args):
  """How many convolutions the jaxpr of ``f`` holds (nested ones too)."""
  return str(jax.make_jaxpr(f)(*args)).count("conv_general_dilated[")


def test_kernel_gradient_pieces_match_lax():
  # A batch of 20 cut into pieces of 8 (8 + 8 + 4), of 3 (six of 3 and one
  # of 2), in one piece (None) and in pieces larger than the batch: every
  # cut gives lax's gradients, strided and not.
  x, ker, c = _inputs(20, 7, 6, 3, 4, 3)
  pieces = (conv.KERNEL_GRAD_PIECE, 3, None, 32)

  def both(strides, piece):
    fn = functools.partial(CANON, kernel_grad_piece=piece)
    return [jax.value_and_grad(_loss(f, strides, "SAME"), (0, 1))(x, ker, c)
            for f in (LAX, fn)]

  run = jax.jit(lambda: [both(s, p) for s in ((1, 1), (2, 2))
                         for p in pieces])
  bad = [(s, p, _tree_rel(want, got))
         for (s, p), (want, got) in zip(
             [(s, p) for s in ((1, 1), (2, 2)) for p in pieces], run())
         if not _tree_rel(want, got) <= RTOL]
  assert not bad, bad


def test_empty_batch_gradients_are_zero_like_lax():
  x, ker, c = _inputs(1, 5, 5, 2, 3, 3)
  x = x[:0]
  for piece in (conv.KERNEL_GRAD_PIECE, None):
    fn = functools.partial(CANON, kernel_grad_piece=piece)
    want, got = (jax.grad(_loss(f, (2, 2), "SAME"), (0, 1))(x, ker, c)
                 for f in (LAX, fn))
    assert [g.shape for g in got] == [g.shape for g in want]
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))


def test_kernel_gradient_is_one_convolution_per_piece():
  # Forward + input gradient + one kernel-gradient convolution per piece.
  x, ker, c = _inputs(20, 5, 5, 2, 2, 3)
  assert conv.KERNEL_GRAD_PIECE == 8  # the measured default (docstring)
  for piece, kernel_convs in ((None, 1), (8, 3), (3, 7), (20, 1), (64, 1)):
    fn = functools.partial(CANON, kernel_grad_piece=piece)
    grad = jax.grad(_loss(fn, (1, 1), "SAME"), (0, 1))
    assert _conv_count(grad, x, ker, c) == 2 + kernel_convs, piece
  default = jax.grad(_loss(CANON, (1, 1), "SAME"), (0, 1))
  assert _conv_count(default, x, ker, c) == 2 + 3


def _conv_rhs_shapes(jaxpr):
  """The kernel (rhs) shapes of every convolution in ``jaxpr``, nested
  jaxprs included."""
  shapes = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      shapes.append(tuple(eqn.invars[1].aval.shape))
    for v in eqn.params.values():
      for sub in (v if isinstance(v, (list, tuple)) else [v]):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          shapes += _conv_rhs_shapes(inner)
  return shapes


def test_strided_gradients_read_the_cotangent_without_zeros():
  # Stride 2, SAME, 9x9 input: a 5x5 cotangent. Both gradients run by
  # phases, on the cotangent itself (never the 9x9 one with zeros
  # inserted): the input gradient's four phases convolve it with the
  # kernel's 2x2, 2x1, 1x2 and 1x1 taps, the kernel gradient's four use it
  # as their 5x5 kernel. Plus the forward's 3x3 kernel.
  x, ker, c = _inputs(3, 9, 9, 2, 4, 3)
  jaxpr = jax.make_jaxpr(jax.grad(_loss(CANON, (2, 2), "SAME"), (0, 1)))(
      x, ker, c).jaxpr
  spatial = sorted(shape[:2] for shape in _conv_rhs_shapes(jaxpr))
  assert spatial == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (5, 5), (5, 5),
                     (5, 5), (5, 5)], spatial


@pytest.mark.parametrize("bad", [0, -8, 2.5, True, "8"])
def test_kernel_grad_piece_rejects_bad_values(bad):
  x, ker, _ = _inputs(2, 5, 5, 1, 1, 3)
  with pytest.raises(ValueError, match="kernel_grad_piece must be a "
                     "positive int"):
    CANON(x, ker, (1, 1), "SAME", dimension_numbers=DN,
          kernel_grad_piece=bad)


@pytest.mark.parametrize("bad", [0, 1, "yes", np.bool_(True)])
def test_widen_small_rejects_bad_values(bad):
  x, ker, _ = _inputs(2, 5, 5, 1, 1, 3)
  with pytest.raises(ValueError, match="widen_small must be True, False or "
                     "None, got"):
    CANON(x, ker, (1, 1), "SAME", dimension_numbers=DN, widen_small=bad)


def test_float64():
  with jax.enable_x64(True):
    x, ker, c = _inputs(2, 6, 6, 2, 2, 3, dtype=np.float64)
    want, got = jax.jit(functools.partial(_both, (2, 2), "SAME"))(x, ker, c)
    assert got[2][0].dtype == jnp.float64
    assert _tree_rel(want, got) <= 1e-12


def test_resolve_conv_and_auto_backend():
  assert conv.resolve_conv("canonical") is CANON
  assert conv.resolve_conv("lax") is LAX
  assert conv.resolve_conv(None) is conv.auto_conv_general_dilated
  assert conv.resolve_conv("auto") is conv.auto_conv_general_dilated
  fn = lambda *a, **k: None
  assert conv.resolve_conv(fn) is fn
  for bad in ("fast", 3):
    with pytest.raises(ValueError, match="conv must be one of"):
      conv.resolve_conv(bad)
  x, ker, _ = _inputs(1, 5, 5, 1, 1, 3)
  jaxpr = str(jax.make_jaxpr(lambda a, b: conv.auto_conv_general_dilated(
      a, b, (1, 1), "SAME", dimension_numbers=DN))(x, ker))
  assert ("custom_vjp" in jaxpr) == (jax.default_backend() == "cpu")


# ----------------------------------------------------------------------------
# Model level: same parameters and outputs, same gradients.


def _model_case(name, shape):
  kx, ky = jax.random.split(jax.random.key(3))
  x = jax.random.normal(kx, (3,) + shape)
  y = jax.random.randint(ky, (3,), 0, 10)
  mask = jnp.array([1.0, 1.0, 0.0])  # a padded example too
  return x, y, mask


def _gradient(f, params, x, y, mask):
  trainable, state = models.split_params(f, params)
  return jax.jit(models.loss_and_grad(f))(trainable, state, x, y, mask)


@pytest.mark.parametrize("name,shape", [("mnist_cnn", (28, 28, 1)),
                                        ("resnet20", (32, 32, 3))])
def test_models_canonical_equals_lax(name, shape):
  x, y, mask = _model_case(name, shape)
  fns = {c: models.get_model(name, conv=c) for c in ("lax", "canonical")}
  # "canonical" widens where YNNPACK takes the convolutions; these two fix
  # the choice either way.
  for widen in (False, True):
    fns[f"widen={widen}"] = models.get_model(name, conv=functools.partial(
        conv.conv_general_dilated, widen_small=widen))
  key = jax.random.key(0)
  params = fns["lax"].init(key)
  # Same parameter tree; same initial values (ResNet-20's init compiles for
  # seconds on CPU, so its values are compared for the CNN only: flax draws
  # every kernel before calling the convolution, whatever function it is).
  assert (jax.tree.structure(jax.eval_shape(fns["canonical"].init, key))
          == jax.tree.structure(params))
  if name == "mnist_cnn":
    jax.tree.map(np.testing.assert_array_equal, params,
                 fns["canonical"].init(key))
  # The fixed choices' forwards and gradients each in a program of its
  # own, the reference (lax) too: jaxlib 0.10.2's XLA:CPU, convolutions on
  # YNNPACK (its default without the library's Eigen choice), got
  # ResNet-20's gradient up to 10% wrong (relative, from the 16->32 strided
  # block down) in one program with the model's forward while the
  # 16-channel convolutions ran on XLA's own path, lax's as much as the
  # unwidened canonical one; alone, it was right.
  y_lax = jax.jit(fns["lax"].apply)(params, x)
  g_lax = _gradient(fns["lax"], params, x, y, mask)
  # Unwidened: the same forward.
  np.testing.assert_array_equal(
      np.asarray(y_lax), np.asarray(jax.jit(fns["widen=False"].apply)(
          params, x)))
  # The form the library's choice does not take here, alone (the one it
  # takes is checked in one program with the forward below).
  other = "widen=False" if xla_cpu.ynn_convolutions() else "widen=True"
  results = {other: (jax.jit(fns[other].apply)(params, x),
                     _gradient(fns[other], params, x, y, mask))}
  # The library's own choice in ONE program with the forward (the case
  # above): widened onto YNNPACK where YNNPACK takes the convolutions, it
  # must be right there too.
  f = fns["canonical"]
  results["canonical"] = jax.jit(lambda p: (
      f.apply(p, x),
      models.loss_and_grad(f)(*models.split_params(f, p), x, y, mask)))(
          params)
  for c, (y_can, g_can) in results.items():
    # Forward (widened: the same sums, other XLA code), loss, gradients and
    # new batch statistics agree.
    assert _rel(y_lax, y_can) <= RTOL, c
    assert _tree_rel(g_lax, g_can) <= 1e-5, c
  # "canonical" widens exactly when XLA:CPU gives convolutions to YNNPACK.
  trainable, state = models.split_params(fns["canonical"], params)
  jaxpr = str(jax.make_jaxpr(models.loss_and_grad(fns["canonical"]))(
      trainable, state, x, y, mask))
  widened = "f32[3,3,16,17]" in jaxpr  # a 16->16 kernel, one more column
  assert widened == (name == "resnet20" and xla_cpu.ynn_convolutions())
  # The default (conv=None) uses the canonical path on CPU only.
  default = models.get_model(name)
  trainable, state = models.split_params(default, params)
  jaxpr = str(jax.make_jaxpr(models.loss_and_grad(default))(
      trainable, state, x, y, mask))
  assert ("custom_vjp" in jaxpr) == (jax.default_backend() == "cpu")
  with pytest.raises(ValueError, match="conv must be one of"):
    models.get_model(name, conv="nope")
