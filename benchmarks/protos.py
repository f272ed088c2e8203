"""Prototypes of proposed library changes, measured by the issue-6 benchmarks.

Nothing here edits the library: each prototype is a drop-in object the
library accepts (a ``client.ClientUpdate``), so the benchmarks can run
``executor.simulate`` / ``sweep.sweep`` with it and compare.

``ragged_update``: ``client.local_update`` (epochs mode) whose per-epoch
loop runs ``ceil(count / batch_size)`` local steps (a ``fori_loop`` with a
dynamic trip count, i.e. a ``while`` loop) instead of a ``scan`` over
``ceil(max_examples / batch_size)`` steps of which the ones past the
client's data are fully masked no-ops. Same epoch permutation (same key
folding, same ``argsort`` of uniforms), same minibatches, same proximal
term, learning-rate scale and epoch decay, so the result equals the
library's up to float reassociation (``check_same`` measures it). Under
``vmap`` the while loop runs the batch's largest trip count and the masks
keep the extra steps no-ops, so it stays correct for every batching.
"""

from __future__ import annotations

import math


def ragged_update(loss_fn, optimizer, *, batch_size, max_examples, epochs=1,
                  epoch_decay=False, stateful=False):
  import jax
  import jax.numpy as jnp
  import optax
  from fedasync_jax import tree as tree_lib
  from fedasync_jax.client import ClientUpdate
  from fedasync_jax.rules import ClientResult

  B, M, E = int(batch_size), int(max_examples), int(epochs)
  per_epoch = math.ceil(M / B)

  def split(p):
    return (p["params"], p["batch_stats"]) if stateful else (p, None)

  def join(tr, st):
    return {"params": tr, "batch_stats": st} if stateful else tr

  def update(params, data, key, hparams):
    start, _ = split(params)
    dtype = jax.tree.leaves(start)[0].dtype
    count = jnp.asarray(data.count, jnp.int32)
    offset = jnp.asarray(data.offset, jnp.int32)
    lr_scale = jnp.asarray(hparams.lr_scale, dtype)
    rho = jnp.asarray(hparams.prox_rho, dtype)

    def objective(tr, st, x, y, mask):
      out = loss_fn(join(tr, st), x, y, mask)
      loss, new_st = out if stateful else (out, None)
      return loss + 0.5 * rho * tree_lib.sq_dist(tr, start), (loss, new_st)

    grad_fn = jax.value_and_grad(objective, has_aux=True)
    n_steps = jnp.minimum((count + B - 1) // B, per_epoch)

    def one_epoch(e, carry):
      tr, st, opt, loss_sum = carry
      u = jax.random.uniform(jax.random.fold_in(key, e), (M,))
      perm = jnp.argsort(jnp.where(jnp.arange(M) < count, u, 2.0)
                         ).astype(jnp.int32)
      scale = (lr_scale / jnp.sqrt(e + 1.0).astype(dtype) if epoch_decay
               else lr_scale)

      def one_step(j, c):
        tr, st, opt, loss_sum = c
        pos = j * B + jnp.arange(B, dtype=jnp.int32)
        valid = pos < count
        idx = offset + perm[jnp.where(valid, pos, 0)]
        (_, (loss, new_st)), g = grad_fn(tr, st, data.x[idx], data.y[idx],
                                         valid.astype(dtype))
        upd, opt = optimizer.update(g, opt, tr)
        upd = jax.tree.map(lambda v: (scale * v).astype(v.dtype), upd)
        return (optax.apply_updates(tr, upd), new_st if stateful else st,
                opt, loss_sum + loss)

      return jax.lax.fori_loop(0, n_steps, one_step,
                               (tr, st, opt, loss_sum))

    tr, st = split(params)
    tr, st, _, loss_sum = jax.lax.fori_loop(
        0, E, one_epoch, (tr, st, optimizer.init(tr), jnp.zeros((), dtype)))
    total = n_steps * E
    final = join(tr, st)
    delta = jax.tree.map(lambda a, b: a - b, final, params)
    metrics = {"loss": loss_sum / jnp.maximum(total, 1).astype(dtype),
               "steps": total,
               "epochs": jnp.where(n_steps > 0, E, 0).astype(jnp.int32)}
    return ClientResult(final, delta, count.astype(dtype)), metrics

  return ClientUpdate(update, E * per_epoch, M, B)


def check_same(lib_update, proto_update, params, ds, n=16, seed=0):
  """Max relative difference (over parameters) and max absolute loss
  difference of ``proto_update`` vs ``lib_update`` on ``n`` random
  clients."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from fedasync_jax.client import ClientHParams, ClientRef
  x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
  h = ClientHParams(jnp.float32(1.0), jnp.float32(0.0))

  def both(p, o, c, k):
    ref = ClientRef(x, y, o, c)
    a, ma = lib_update.update(p, ref, k, h)
    b, mb = proto_update.update(p, ref, k, h)
    la, lb = jax.tree.leaves(a.params), jax.tree.leaves(b.params)
    diff = jnp.max(jnp.stack([jnp.max(jnp.abs(u - v)) for u, v in
                              zip(la, lb)]))
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(u)) for u in la]))
    return diff / scale, jnp.abs(ma["loss"] - mb["loss"])

  f = jax.jit(both)
  rng = np.random.default_rng(seed)
  worst, worst_loss = 0.0, 0.0
  key = jax.random.key(0)
  for c in rng.choice(ds.num_clients, min(n, ds.num_clients), replace=False):
    d, dl = f(params, int(ds.offsets[c]), int(ds.counts[c]),
              jax.random.fold_in(key, int(c)))
    worst, worst_loss = max(worst, float(d)), max(worst_loss, float(dl))
  return worst, worst_loss


def direct_simulate(rule, update, params, ds, sched, *, key,
                    chunk_steps=64, progress=None):
  """Prototype of a width-1 "direct" executor path (no result slots).

  With ``width=1, arrivals_per_step=1`` every plan step trains exactly the
  client whose update arrives in that step (``plan.make_plan`` trains the
  earliest arrival first, and the next arrival's start version always
  exists). The library still writes the client's ``ClientResult``
  (params AND delta) into the result-slot buffer and reads it back for the
  arrival. Here the step trains from the snapshot slot, applies the rule
  to the result directly and writes the new version into its snapshot slot
  if a later client starts from it: the same arithmetic as the library
  (checked by the benchmarks), less memory traffic. Same chunking (one
  compiled chunk of ``chunk_steps`` steps, carry donated). Returns
  ``(final server state, wall seconds, per-chunk (time, arrivals))``.
  """
  import time
  import jax
  import jax.numpy as jnp
  import numpy as np
  from fedasync_jax import plan as plan_lib, reference
  from fedasync_jax.client import ClientRef

  t0 = time.perf_counter()
  p = plan_lib.make_plan(sched, width=1, arrivals_per_step=1)
  assert np.array_equal(p.wave_valid[:, 0], p.arr_valid[:, 0])
  ok = p.wave_valid[:, 0]
  assert np.array_equal(p.wave_task[ok, 0],
                        sched.arrival_task[p.arr_index[ok, 0]])
  n_steps = -(-p.num_steps // chunk_steps) * chunk_steps
  p = p.pad_steps(n_steps)
  hp_table = jax.tree.map(jnp.asarray, reference.task_hparams(sched))
  x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
  offs = jnp.asarray(ds.offsets, jnp.int32)
  cnts = jnp.asarray(ds.counts, jnp.int32)
  arrays = {"task": p.wave_task[:, 0], "client": p.wave_client[:, 0],
            "snap": p.wave_snap[:, 0], "tau": p.arr_staleness[:, 0],
            "out_snap": p.arr_snap[:, 0], "valid": p.arr_valid[:, 0],
            "ends": p.arr_ends_round[:, 0]}

  def run_chunk(carry, xs, key, hp_table, x, y, offs, cnts):
    def step(carry, a):
      state, snaps = carry
      start = jax.tree.map(lambda b: b[a["snap"]], snaps)
      h = jax.tree.map(lambda t: t[a["task"]], hp_table)

      def train_apply(state):
        res, _ = update.update(
            start, ClientRef(x, y, offs[a["client"]], cnts[a["client"]]),
            jax.random.fold_in(key, a["task"]), h)
        new = rule.apply(state, res, a["tau"])
        if rule.end_round is not None:
          new = jax.lax.cond(a["ends"], rule.end_round, lambda s: s, new)
        return new
      state = jax.lax.cond(a["valid"], train_apply, lambda s: s, state)
      snaps = jax.tree.map(lambda b, q: b.at[a["out_snap"]].set(q), snaps,
                           state.params)
      return (state, snaps), None
    return jax.lax.scan(step, carry, xs)[0]

  f = jax.jit(run_chunk, donate_argnums=0)
  params = jax.tree.map(lambda q: jnp.array(q, copy=True), params)
  snaps = jax.tree.map(lambda q: jnp.zeros((p.num_snaps + 1,) + q.shape,
                                           q.dtype).at[p.init_snap].set(q),
                       params)
  carry = (rule.init(params), snaps)
  marks, done = [], 0
  for i in range(0, n_steps, chunk_steps):
    chunk = {k: v[i:i + chunk_steps] for k, v in arrays.items()}
    carry = f(carry, chunk, key, hp_table, x, y, offs, cnts)
    jax.block_until_ready(carry[0].version)
    done += int(chunk["valid"].sum())
    marks.append((time.perf_counter(), done))
    if progress is not None:
      progress(marks[-1])
  state = jax.block_until_ready(carry[0])
  return state, time.perf_counter() - t0, marks


# ---------------------------------------------------------------------------
# A convolution whose gradients are themselves canonical forward
# convolutions (NHWC / HWIO), the form XLA:CPU runs fast inside loops.


def canon_conv_general_dilated(lhs, rhs, window_strides, padding,
                               lhs_dilation=None, rhs_dilation=None,
                               dimension_numbers=None, feature_group_count=1,
                               batch_group_count=1, precision=None,
                               preferred_element_type=None):
  """Drop-in for ``lax.conv_general_dilated`` (2-D NHWC/HWIO, any strides
  and padding, no dilation, one group; pass it to flax ``nn.Conv`` through
  ``conv_general_dilated=``) with a ``custom_vjp`` whose two backward
  convolutions are rewritten as stride-1 forward NHWC/HWIO convolutions:

  * input gradient: ``dy`` (zeros inserted between rows/columns for a
    strided forward) convolved with the spatially flipped kernel with
    input/output channels swapped, padding mirrored;
  * kernel gradient: the padded input with batch and channels swapped,
    ``(C_in, H, W, N)``, convolved with the (zero-inserted) ``dy`` as a
    ``(H', W', N, C_out)`` kernel, giving ``(C_in, kh, kw, C_out)``.

  XLA's own transposed convolutions (JAX's default VJP) use dimension
  numbers that XLA:CPU runs on a slow path inside while loops (measured
  8x and 100x here; jax-ml/jax#12868). Exact up to float reassociation."""
  from jax import lax
  del precision, preferred_element_type
  if lhs.ndim != 4:
    raise ValueError("only 2-D NHWC convolutions")
  for d in (lhs_dilation, rhs_dilation):
    if d is not None and tuple(d) != (1, 1):
      raise ValueError("no dilation")
  if feature_group_count != 1 or batch_group_count != 1:
    raise ValueError("one group only")
  dn = ("NHWC", "HWIO", "NHWC")
  if dimension_numbers is not None:
    want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dn)
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                  dimension_numbers) != want:
      raise ValueError("only NHWC/HWIO/NHWC")
  strides = tuple(int(v) for v in window_strides)
  if isinstance(padding, str):
    pads = tuple(lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides,
                                     padding))
  else:
    pads = tuple((int(a), int(b)) for a, b in padding)
  return _canon_conv(lhs, rhs, strides, pads)


_DN = ("NHWC", "HWIO", "NHWC")


def _make_canon():
  import functools
  import jax
  from jax import lax

  def fwd_impl(x, w, strides, pads):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
  def conv(x, w, strides, pads):
    return fwd_impl(x, w, strides, pads)

  def fwd(x, w, strides, pads):
    return fwd_impl(x, w, strides, pads), (x, w)

  def bwd(strides, pads, res, dy):
    x, w = res
    kh, kw = w.shape[:2]
    sh, sw = strides
    (pt, pb), (pl, pr) = pads
    zero = jnp_zero(dy.dtype)
    # Zero insertion turns the strided forward into a stride-1 one.
    dyd = lax.pad(dy, zero, ((0, 0, 0), (0, 0, sh - 1), (0, 0, sw - 1),
                             (0, 0, 0)))
    span_h, span_w = dyd.shape[1:3]
    ex_h = x.shape[1] + pt + pb - kh + 1 - span_h  # rows no output reads
    ex_w = x.shape[2] + pl + pr - kw + 1 - span_w
    w_t = w[::-1, ::-1].transpose(0, 1, 3, 2)  # flipped, I <-> O
    dx = fwd_impl(dyd, w_t, (1, 1), ((kh - 1 - pt, kh - 1 - pb + ex_h),
                                     (kw - 1 - pl, kw - 1 - pr + ex_w)))
    xp = lax.pad(x, jnp_zero(x.dtype), ((0, 0, 0), (pt, pb - ex_h, 0),
                                        (pl, pr - ex_w, 0), (0, 0, 0)))
    dw = fwd_impl(xp.transpose(3, 1, 2, 0), dyd.transpose(1, 2, 0, 3),
                  (1, 1), ((0, 0), (0, 0)))
    return dx.astype(x.dtype), dw.transpose(1, 2, 0, 3).astype(w.dtype)

  conv.defvjp(fwd, bwd)
  return conv


def jnp_zero(dtype):
  import jax.numpy as jnp
  return jnp.zeros((), dtype)


_CANON = None


def _canon_conv(x, w, strides, pads):
  global _CANON
  if _CANON is None:
    _CANON = _make_canon()
  return _CANON(x, w, strides, pads)


def canon_mnist_cnn():
  """``models.mnist_cnn()`` with ``canon_conv_general_dilated`` (same
  parameter tree, init and forward; checked by the benchmark)."""
  import functools
  import flax.linen as nn
  import jax.numpy as jnp
  from fedasync_jax import models

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      conv = functools.partial(
          nn.Conv, features=32, kernel_size=(3, 3), strides=(1, 1),
          padding="SAME", kernel_init=nn.initializers.glorot_uniform(),
          bias_init=nn.initializers.zeros,
          conv_general_dilated=canon_conv_general_dilated)
      for _ in range(3):
        x = nn.relu(conv()(x))
      x = jnp.mean(x, axis=(1, 2))
      x = nn.Dense(10, kernel_init=nn.initializers.glorot_uniform(),
                   bias_init=nn.initializers.zeros)(x)
      return nn.log_softmax(x)

  def prep(x):
    x = jnp.asarray(x, jnp.float32)
    return x[..., None] if x.ndim == 3 else x
  return models.from_flax(Net(), input_shape=(28, 28, 1), num_classes=10,
                          name="mnist_cnn", outputs="log_probs", prepare=prep)


def canon_resnet20():
  """``models.resnet20()`` rebuilt with ``canon_conv_general_dilated`` in
  every convolution: the same architecture, module names, parameter tree,
  initializers and forward (checked against the library by
  ``check_model``)."""
  import functools
  import flax.linen as nn
  import jax.numpy as jnp
  from fedasync_jax import models
  he = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
  Conv = functools.partial(nn.Conv, use_bias=False, kernel_init=he,
                           conv_general_dilated=canon_conv_general_dilated)
  Norm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)

  class _BasicBlock(nn.Module):
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, *, train, mask):
      ra = not train
      y = Conv(self.features, (3, 3), strides=self.strides, padding=1)(x)
      y = nn.relu(Norm(use_running_average=ra)(y, mask=mask))
      y = Conv(self.features, (3, 3), strides=1, padding=1)(y)
      y = Norm(use_running_average=ra)(y, mask=mask)
      if self.strides != 1 or x.shape[-1] != self.features:
        x = Conv(self.features, (1, 1), strides=self.strides, padding=0)(x)
        x = Norm(use_running_average=ra)(x, mask=mask)
      return nn.relu(y + x)

  class _ResNetCifar(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False, mask=None):
      if mask is not None:
        mask = jnp.asarray(mask, bool).reshape((-1, 1, 1, 1))
      if not train:
        mask = None
      x = Conv(16, (3, 3), strides=1, padding=1)(x)
      x = nn.relu(Norm(use_running_average=not train)(x, mask=mask))
      for stage, width in enumerate((16, 32, 64)):
        for b in range(3):
          x = _BasicBlock(width, 2 if (stage > 0 and b == 0) else 1)(
              x, train=train, mask=mask)
      return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))

  def prep(x):
    return jnp.asarray(x, jnp.float32)
  return models.from_flax(_ResNetCifar(), input_shape=(32, 32, 3),
                          num_classes=10, name="resnet20", stateful=True,
                          outputs="logits", prepare=prep)


def check_model(lib, proto, x, y):
  """Max relative difference of loss and gradient (from the library's
  initial parameters) between a library model and a prototype; raises if
  the parameter trees differ."""
  import jax
  import jax.numpy as jnp
  p = lib.init(jax.random.key(0))
  if jax.tree.structure(p) != jax.tree.structure(proto.init(
      jax.random.key(0))):
    raise AssertionError("parameter trees differ")
  mask = jnp.ones(len(y))
  if lib.stateful:
    def lossf(m):
      return lambda tr: m.loss({"params": tr, "batch_stats":
                                p["batch_stats"]}, x, y, mask)[0]
    tr = p["params"]
  else:
    def lossf(m):
      return lambda tr: m.loss(tr, x, y, mask)
    tr = p
  l0, g0 = jax.jit(jax.value_and_grad(lossf(lib)))(tr)
  l1, g1 = jax.jit(jax.value_and_grad(lossf(proto)))(tr)
  return max([abs(float(l0 - l1))] + [
      float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))
      for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1))])
