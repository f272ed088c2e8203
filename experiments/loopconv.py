"""A convolution whose gradient stays fast inside XLA:CPU loops.

Why this exists: on XLA:CPU (JAX 0.10 here), the two backward convolutions
that JAX derives for ``lax.conv_general_dilated`` (the input gradient and the
kernel gradient, which use non-standard dimension numbers) run 30-100x slower
inside a ``while`` loop (``lax.scan``, ``lax.map``) than outside one (the
known XLA issue jax-ml/jax#12868). The library's client update is a
``lax.scan`` over local steps inside the executor's ``lax.scan`` over plan
steps, so every CNN gradient lands on that slow path: measured here, 10
local Adam steps of the MNIST CNN at batch 64 took ~100 s inside the scan
against ~1.5 s unrolled.

``conv_general_dilated`` below has the same signature and the same forward
(``lax.conv_general_dilated`` in NHWC/HWIO, which is fast in loops), and a
``jax.custom_vjp`` whose backward pass uses only slices, pads and matrix
products (one per kernel tap), which XLA:CPU runs at full speed inside loops.
It is exact up to float reassociation. Pass it to flax's ``nn.Conv`` through
its ``conv_general_dilated=`` field (see ``fast_models.py``).

Supported: 2-D NHWC/HWIO convolutions, any strides and explicit or string
padding, no dilation, one feature group (everything the AFL paper's CNN and
ResNet-20 use).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def _pads(x_shape, w_shape, strides, padding):
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides,
                                     padding))
  return tuple((int(a), int(b)) for a, b in padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


def _conv_fwd(x, w, strides, pads):
  return _conv(x, w, strides, pads), (x, w)


def _conv_bwd(strides, pads, res, dy):
  x, w = res
  sh, sw = strides
  kh_n, kw_n = w.shape[:2]
  ho, wo = dy.shape[1:3]
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  hp, wp = xp.shape[1:3]
  span_h, span_w = sh * (ho - 1) + 1, sw * (wo - 1) + 1
  dw_rows, dxp = [], jnp.zeros_like(xp)
  for kh in range(kh_n):
    row = []
    for kw in range(kw_n):
      tap = xp[:, kh:kh + span_h:sh, kw:kw + span_w:sw, :]
      row.append(jnp.einsum("nhwi,nhwo->io", tap, dy))
      back = jnp.einsum("nhwo,io->nhwi", dy, w[kh, kw])
      dxp = dxp + lax.pad(back, jnp.zeros((), back.dtype), (
          (0, 0, 0), (kh, hp - kh - span_h, sh - 1),
          (kw, wp - kw - span_w, sw - 1), (0, 0, 0)))
    dw_rows.append(jnp.stack(row))
  dw = jnp.stack(dw_rows).astype(w.dtype)
  (pt, _), (pl, _) = pads
  dx = dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2], :]
  return dx.astype(x.dtype), dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """Drop-in for ``lax.conv_general_dilated`` (2-D NHWC/HWIO, no dilation,
  one group) with a loop-friendly gradient."""
  if lhs.ndim != 4:
    raise ValueError(f"only 2-D NHWC convolutions, got lhs {lhs.shape}")
  for name, d in (("lhs_dilation", lhs_dilation),
                  ("rhs_dilation", rhs_dilation)):
    if d is not None and tuple(d) != (1, 1):
      raise ValueError(f"{name} is not supported, got {d}")
  if feature_group_count != 1 or batch_group_count != 1:
    raise ValueError("grouped convolutions are not supported")
  if dimension_numbers is not None:
    want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN)
    got = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if got != want:
      raise ValueError(f"only NHWC/HWIO/NHWC, got {dimension_numbers}")
  strides = tuple(int(s) for s in window_strides)
  return _conv(lhs, rhs, strides, _pads(lhs.shape, rhs.shape, strides,
                                        padding))
