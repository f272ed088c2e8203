"""The two gradients of :mod:`fedasync_jax.models.conv`'s convolution.

Each gradient is computed by canonical forward convolutions (channels-last
input, ``(spatial)IO`` kernel, stride 1, no dilation), the form XLA:CPU
runs fast inside loops; :mod:`fedasync_jax.models.conv` explains the forms
and when they are used. This module holds the arithmetic:
:func:`forward`, :func:`input_grad` and :func:`kernel_grad`.

Few channels. XLA:CPU (jaxlib 0.10) hands a 2-D convolution to YNNPACK
only when its input or output has more than 16 channels
(:data:`SMALL_CHANNELS`); one with 16 or fewer on both sides runs on XLA's
own loop code, about half as fast on one core. With ``widen=True`` such a
forward convolution, and the input gradient's, get one more output channel
(a zero column of the kernel) and the extra channel is sliced off: the
values are the same sums, and the convolution goes to YNNPACK. Measured on
a 2-core Intel Xeon VM, one core, XLA's default convolution path
(YNNPACK), batch 64: ResNet-20's 32x32x16->16 layer 5.0 ms a call on
XLA's path, 3.0 ms widened (4.1 with its slice, timed alone); a ResNet-20
client update 1.04x faster on one core and 1.025x over two one-core
devices (paired, ``benchmarks/paper_cnn.py``'s ``nowiden_*`` variants,
docs/benchmarks.md, 2026-12-05). On Eigen's
path (``sim/xla_cpu.py``) widening only adds work (0.97x), so the caller
widens only where YNNPACK takes the convolutions
(``core.conv_path.ynn_convolutions``). Widened, ResNet-20 also escaped a
wrong gradient of jaxlib 0.10.2's XLA:CPU: in one program with the model's
forward, the gradient came out 10% off (relative) while its 16-channel
convolutions ran on XLA's own path
(``tests/test_conv.py::test_models_canonical_equals_lax``).

Example:
  >>> import jax.numpy as jnp
  >>> x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 3))
  >>> forward(x, w, (1, 1), [(1, 1), (1, 1)], None, widen=True).shape
  (1, 4, 4, 3)
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
from jax import lax

__all__ = ["SMALL_CHANNELS", "channels_last_dn", "forward", "input_grad",
           "kernel_grad", "plain_conv"]

# A 2-D convolution with at most this many input and output channels stays
# off YNNPACK (jaxlib 0.10's XLA:CPU).
SMALL_CHANNELS = 16


def channels_last_dn(nd: int) -> lax.ConvDimensionNumbers:
  """Dimension numbers of an ``N(spatial)C`` / ``(spatial)IO`` convolution."""
  spatial = tuple(range(1, nd + 1))
  lhs = (0, nd + 1) + spatial
  rhs = (nd + 1, nd) + tuple(range(nd))
  return lax.ConvDimensionNumbers(lhs_spec=lhs, rhs_spec=rhs, out_spec=lhs)


def _widened(conv, lhs, rhs, widen):
  """``conv(lhs, rhs)``; with ``widen``, a 2-D one with few channels on
  both sides is computed with one more output channel, sliced off."""
  c_out = rhs.shape[-1]
  if not (widen and lhs.ndim == 4
          and max(lhs.shape[-1], c_out) <= SMALL_CHANNELS):
    return conv(lhs, rhs)
  extra = SMALL_CHANNELS + 1 - c_out
  rhs = lax.pad(rhs, jnp.zeros((), rhs.dtype),
                [(0, 0, 0)] * (rhs.ndim - 1) + [(0, extra, 0)])
  return conv(lhs, rhs)[..., :c_out]


def plain_conv(lhs, rhs, pads, precision, *, widen=False):
  """Stride-1 channels-last convolution; negative pads crop ``lhs`` first."""
  nd = lhs.ndim - 2
  if any(lo < 0 or hi < 0 for lo, hi in pads):
    crop = [(0, 0, 0)] + [(min(lo, 0), min(hi, 0), 0) for lo, hi in pads]
    lhs = lax.pad(lhs, jnp.zeros((), lhs.dtype), crop + [(0, 0, 0)])
    pads = [(max(lo, 0), max(hi, 0)) for lo, hi in pads]
  return _widened(lambda a, b: lax.conv_general_dilated(
      a, b, (1,) * nd, tuple(pads), dimension_numbers=channels_last_dn(nd),
      precision=precision), lhs, rhs, widen)


def forward(x, w, strides, pads, precision, *, widen):
  """The convolution itself (any strides)."""
  return _widened(lambda a, b: lax.conv_general_dilated(
      a, b, strides, pads, dimension_numbers=channels_last_dn(x.ndim - 2),
      precision=precision), x, w, widen)


def input_grad(x, dy, w, strides, pads, precision, *, widen):
  """The input's gradient: for stride 1 a full correlation of ``dy`` with
  the flipped, ``I<->O`` kernel; strided, by phases."""
  if any(s > 1 for s in strides):
    return _strided_input_grad(x, dy, w, strides, pads, precision, widen)
  nd = x.ndim - 2
  ksize = w.shape[:nd]
  w_flip = jnp.swapaxes(lax.rev(w, tuple(range(nd))), nd, nd + 1)
  return plain_conv(dy, w_flip, [(k - 1 - lo, k - 1 - hi) for (lo, hi), k
                                 in zip(pads, ksize)], precision, widen=widen)


def kernel_grad(x, dy, strides, pads, ksize, precision, piece):
  """The kernel's gradient, in pieces of ``piece`` examples (``None``: one
  piece); strided, by phases."""
  if any(s > 1 for s in strides):
    return _strided_kernel_grad(x, dy, strides, pads, ksize, precision, piece)
  return _stride1_kernel_grad(x, dy, pads, precision, piece)


def _stride1_kernel_grad(x, dy, pads, precision, piece):
  """Stride-1 kernel gradient, ``(*k, C_in, C_out)``: channels as the
  batch, the batch as the channels, one convolution per piece of ``piece``
  examples, summed (``models/conv.py`` says why pieces)."""
  nd = x.ndim - 2
  spatial = tuple(range(1, nd + 1))
  n = max(x.shape[0], 1)  # an empty batch still makes one (zero) piece
  dw = None
  for start in range(0, n, piece or n):
    rows = slice(start, start + (piece or n))
    x_t = jnp.transpose(x[rows], (nd + 1,) + spatial + (0,))
    dy_t = jnp.transpose(dy[rows], spatial + (0, nd + 1))
    part = plain_conv(x_t, dy_t, pads, precision)
    dw = part if dw is None else dw + part
  return jnp.transpose(dw, spatial + (0, nd + 1))


def _strided_kernel_grad(x, dy, strides, pads, ksize, precision, piece):
  """Kernel gradient of a strided convolution by phases: the taps
  ``t = s * t' + p`` of one phase ``p`` read the input subsampled at
  ``p::s``, so each phase is a stride-1 kernel gradient of that subsample
  with the cotangent as it is (no inserted zeros)."""
  nd = x.ndim - 2
  xpad = lax.pad(x, jnp.zeros((), x.dtype),
                 [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)])
  out = dy.shape[1:-1]
  dw = jnp.zeros(tuple(ksize) + (x.shape[-1], dy.shape[-1]), x.dtype)
  for phase in itertools.product(*[range(min(s, k))
                                   for s, k in zip(strides, ksize)]):
    taps = [-(-(k - p) // s) for k, p, s in zip(ksize, phase, strides)]
    limit = [p + s * (o + t - 2) + 1
             for p, s, o, t in zip(phase, strides, out, taps)]
    x_p = lax.slice(xpad, (0,) + phase + (0,),
                    (xpad.shape[0],) + tuple(limit) + (xpad.shape[-1],),
                    (1,) + tuple(strides) + (1,))
    part = _stride1_kernel_grad(x_p, dy, [(0, 0)] * nd, precision, piece)
    dw = dw.at[tuple(slice(p, None, s) for p, s in zip(phase, strides))
               ].set(part)
  return dw


def _interleave(parts, strides):
  """``out[:, s*m + p] = parts[p][:, m]`` along every spatial dimension:
  ``parts`` maps each phase ``p`` (a tuple) to an ``(N, *M, C)`` array,
  all of one shape."""
  def build(prefix, dim):
    if dim == len(strides):
      return parts[prefix]
    # Stack this dimension's phases right after it, then merge the two.
    stacked = jnp.stack([build(prefix + (p,), dim + 1)
                         for p in range(strides[dim])], axis=dim + 2)
    shape = stacked.shape
    merged = shape[dim + 1] * shape[dim + 2]
    return stacked.reshape(shape[:dim + 1] + (merged,) + shape[dim + 3:])
  return build((), 0)


def _strided_input_grad(x, dy, w, strides, pads, precision, widen):
  """Input gradient of a strided convolution by phases: the padded input's
  rows ``s * m + p`` receive ``dy`` correlated with the kernel's taps
  ``p::s`` only, a stride-1 convolution of ``dy`` as it is; the phases
  are interleaved and the padding cropped."""
  nd = x.ndim - 2
  ksize = w.shape[:nd]
  lpad = [n + lo + hi for n, (lo, hi) in zip(x.shape[1:-1], pads)]
  rows = [-(-n // s) for n, s in zip(lpad, strides)]  # per phase, padded
  out = dy.shape[1:-1]
  parts = {}
  for phase in itertools.product(*[range(s) for s in strides]):
    taps = [max(0, -(-(k - p) // s))
            for k, p, s in zip(ksize, phase, strides)]
    if min(taps) == 0:  # no tap of the kernel reads these rows
      parts[phase] = jnp.zeros((x.shape[0], *rows, x.shape[-1]), dy.dtype)
      continue
    w_p = w[tuple(slice(p, None, s) for p, s in zip(phase, strides))]
    w_flip = jnp.swapaxes(lax.rev(w_p, tuple(range(nd))), nd, nd + 1)
    parts[phase] = plain_conv(
        dy, w_flip, [(t - 1, r - o) for t, r, o in zip(taps, rows, out)],
        precision, widen=widen)
  dxpad = _interleave(parts, strides)
  # Crop (or, for negative pads, restore with zeros) the forward's padding.
  crop = [(0, 0, 0)] + [(-lo, -(r * s - n) - hi, 0) for (lo, hi), n, r, s
                        in zip(pads, lpad, rows, strides)] + [(0, 0, 0)]
  return lax.pad(dxpad, jnp.zeros((), dxpad.dtype), crop)
