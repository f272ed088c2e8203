"""A convolution whose gradients stay fast inside XLA:CPU loops.

Why this module exists. JAX differentiates ``lax.conv_general_dilated`` into
two "transposed" convolutions: the input gradient and the kernel gradient.
They carry unusual dimension numbers (``b01f_01oi->b01f`` and
``f01b_i01o->01bf`` in the compiled HLO). Jitted alone, XLA:CPU rewrites
them into its fast (Eigen) form; inside a ``while`` loop (``lax.scan``,
``lax.fori_loop``, ``lax.map``) it does not, and they run on a slow generic
path (jax-ml/jax#12868). The library trains every client inside such a loop
(:func:`fedasync_jax.core.client.local_update` is a ``lax.scan`` over local
steps), so the backward pass of every convolutional model landed there.
Measured on a 2-core CPU for one 28x28x32->32 layer at batch 64: the input
gradient ran 8x slower and the kernel gradient 108x slower in a loop than
alone. The MNIST CNN's client update trained at 13 examples/s against
PyTorch's ~1,000 (``benchmarks/RESULTS_vs_pytorch.md``, section 3).

:func:`conv_general_dilated` is a drop-in replacement (the signature flax's
``nn.Conv(conv_general_dilated=...)`` calls) with the same forward
convolution and a :func:`jax.custom_vjp` whose two backward convolutions are
themselves *canonical forward* convolutions: channels-last input
(``NHWC``), ``HWIO`` kernel, stride 1, no dilation, the form XLA:CPU runs
fast everywhere. Writing ``d`` for the spatial dimensions, ``s`` for the
strides and ``dy`` for the output cotangent:

* input gradient: ``dy`` convolved with the spatially flipped kernel whose
  input and output channels are swapped, with mirrored padding
  (``k - 1 - lo`` before, ``k - 1 - hi`` after);
* kernel gradient: the input with batch and channels swapped,
  ``(C_in, *d, N)``, convolved with ``dy`` used as a ``(*d', N, C_out)``
  kernel; the ``(C_in, *k, C_out)`` result is transposed to ``(*k, C_in,
  C_out)``. The batch is cut into pieces of ``kernel_grad_piece``
  examples (default :data:`KERNEL_GRAD_PIECE`, 8), one such convolution
  per piece, and the pieces' results are summed.
* strided forwards: both gradients run by phases. The kernel taps
  ``t = s * t' + p`` of phase ``p`` read the padded input at ``p::s``, so
  the kernel gradient of a phase is a stride-1 one of that subsampled
  input with ``dy`` as it is, and the input gradient of the padded rows
  ``s * m + p`` is ``dy`` correlated with those taps alone; the phases'
  rows are then interleaved. Unlike putting ``s - 1`` zeros between the
  rows of ``dy`` (what this module did before), no multiplication by an
  inserted zero is made: for ResNet-20's strided layers that was about a
  fifth of a training step's FLOPs, and the step ran 1.09x faster without
  them (152.5 vs 140.2 ms at batch 64, 2-core Intel VM).

Why pieces. The kernel gradient is a convolution whose window is the whole
image and whose output is tiny (3x3xC_inxC_out): XLA:CPU runs it far below
the machine's rate, and it was the one convolution where the library
trailed PyTorch (3.5x behind for the MNIST CNN's 28x28x32->32 layer at
batch 64). Cut into independent convolutions over 8 examples each, it
runs faster: that layer's kernel gradient, timed alone in a loop, took
25.5 ms in one piece and 7.4 in pieces of 8. Measured on a 2-core Intel
Xeon VM (JAX 0.10.2, the library's XLA:CPU flags,
``fedasync_jax.configure_cpu``), one local step of batch 64 inside
``client.local_update``: MNIST CNN 36.7 ms in one piece, 29.0 ms in
pieces of 8 (16: 29.0, 4: 39.5, 2: 51.0; 17.6 ms with no kernel gradient
at all, so its three kernel gradients went from about 19 to 11 ms);
CIFAR ResNet-20 197 / 152 ms (16: 153, 4: 179; measured before its
strided gradients ran by phases). ``benchmarks/paper_cnn.py`` records the
end-to-end gain as the ``onepiece_scan`` variant. Other sizes may suit other machines:
``functools.partial(conv_general_dilated, kernel_grad_piece=...)`` passed
as a model's ``conv`` option.

Few channels. Where XLA:CPU hands convolutions to YNNPACK (its default;
not on the Eigen path :mod:`fedasync_jax.sim.xla_cpu` picks for a device
of two or more cores), a 2-D convolution with at most 16 channels on both
sides would stay on XLA's own slower code; it and its input gradient are
computed with one more output channel, sliced off
(``widen_small``; :mod:`fedasync_jax.models.conv_grads` has the rule and
the measurements). The arithmetic of the backward convolutions lives in
that module.

Both equal JAX's own gradients up to float reassociation. Covered: any
number of spatial dimensions in channels-last layout (``NWC``/``WIO``,
``NHWC``/``HWIO``, ...), any positive strides, ``'SAME'``/``'VALID'``/
``'SAME_LOWER'`` or explicit ``(lo, hi)`` padding (negative entries too), no
dilation, ``feature_group_count == batch_group_count == 1``, floating dtypes.
Anything else is passed to :func:`jax.lax.conv_general_dilated` unchanged,
so the function is safe to use everywhere. :func:`auto_conv_general_dilated`
chooses at trace time: this one on the CPU backend, lax's elsewhere (GPU and
TPU compilers handle the transposed forms well).

Limitation: like every ``custom_vjp``, the canonical path supports reverse
mode (``grad``, ``vjp``, ``value_and_grad``), also under ``jit``, ``vmap``
and inside loops, but not forward mode (``jax.jvp``, ``jax.jacfwd``,
``jax.hessian``), which raises a ``TypeError`` from JAX. Use
``jax.lax.conv_general_dilated`` (``conv="lax"`` in
:mod:`fedasync_jax.models`) for those.

Example:
  >>> import jax, jax.numpy as jnp
  >>> x = jnp.ones((2, 5, 5, 3))
  >>> w = jnp.ones((3, 3, 3, 4))
  >>> dn = ("NHWC", "HWIO", "NHWC")
  >>> y = conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=dn)
  >>> y.shape
  (2, 3, 3, 4)
  >>> f = lambda w: conv_general_dilated(x, w, (1, 1), "VALID",
  ...                                    dimension_numbers=dn).sum()
  >>> jax.grad(f)(w)[0, 0, 0, 0]  # 2 images x 3x3 output positions
  Array(18., dtype=float32)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fedasync_jax.models import conv_grads as grads
from fedasync_jax.core import conv_path

Array = jax.Array

__all__ = [
    "conv_general_dilated",
    "auto_conv_general_dilated",
    "is_canonical",
    "resolve_conv",
    "CONV_CHOICES",
]

CONV_CHOICES = ("auto", "canonical", "lax")

# Examples per kernel-gradient convolution; the pieces' results are summed.
KERNEL_GRAD_PIECE = 8


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _canonical_conv(x, w, strides, pads, precision, piece, widen):
  del piece  # used by the backward pass only
  return grads.forward(x, w, strides, pads, precision, widen=widen)


def _canonical_fwd(x, w, strides, pads, precision, piece, widen):
  return _canonical_conv(x, w, strides, pads, precision, piece,
                         widen), (x, w)


def _canonical_bwd(strides, pads, precision, piece, widen, residuals, dy):
  x, w = residuals
  dx = grads.input_grad(x, dy, w, strides, pads, precision, widen=widen)
  dw = grads.kernel_grad(x, dy, strides, pads, w.shape[:x.ndim - 2],
                         precision, piece)
  return (_match_vma(dx.astype(x.dtype), x),
          _match_vma(dw.astype(w.dtype), w))


def _varying_axes(a) -> frozenset:
  """The manual mesh axes ``a`` varies along (empty outside shard_map)."""
  aval = jax.typeof(a)
  mat = getattr(aval, "manual_axis_type", None)
  if mat is not None and getattr(mat, "varying", None) is not None:
    return frozenset(mat.varying)
  return frozenset(getattr(aval, "vma", ()))  # older JAX spelling


def _match_vma(ct, primal):
  """Inside ``shard_map``: sums a cotangent over the mesh axes it varies
  along but its primal does not (what autodiff's transpose of the implicit
  broadcast does for ``lax``'s convolution), so that it has the primal's
  type."""
  extra = tuple(sorted(_varying_axes(ct) - _varying_axes(primal)))
  return lax.psum(ct, extra) if extra else ct


_canonical_conv.defvjp(_canonical_fwd, _canonical_bwd)


def _canonical_args(lhs, rhs, window_strides, padding, lhs_dilation,
                    rhs_dilation, dimension_numbers, feature_group_count,
                    batch_group_count, preferred_element_type):
  """``(strides, pads)`` if the canonical path applies, else ``None``."""
  nd = lhs.ndim - 2
  if nd < 1 or rhs.ndim != lhs.ndim or dimension_numbers is None:
    return None
  if not (jnp.issubdtype(lhs.dtype, jnp.floating) and lhs.dtype == rhs.dtype):
    return None
  if preferred_element_type is not None and (
      jnp.dtype(preferred_element_type) != lhs.dtype):
    return None
  if feature_group_count != 1 or batch_group_count != 1:
    return None
  for dilation in (lhs_dilation, rhs_dilation):
    if dilation is not None and any(int(d) != 1 for d in dilation):
      return None
  try:
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  except (TypeError, ValueError):
    return None
  if dn != grads.channels_last_dn(nd):
    return None
  strides = tuple(int(s) for s in window_strides)
  if len(strides) != nd or any(s < 1 for s in strides):
    return None
  if isinstance(padding, str):
    try:
      pads = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:nd], strides,
                                 padding)
    except (TypeError, ValueError):
      return None
  else:
    pads = padding
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  if len(pads) != nd:
    return None
  for n, k, s, (lo, hi) in zip(lhs.shape[1:-1], rhs.shape[:nd], strides,
                               pads):
    if n + lo + hi < k:  # empty output: nothing to gain, let lax decide
      return None
  return strides, pads


def is_canonical(lhs, rhs, window_strides, padding, *, lhs_dilation=None,
                 rhs_dilation=None, dimension_numbers=None,
                 feature_group_count=1, batch_group_count=1,
                 preferred_element_type=None) -> bool:
  """Whether :func:`conv_general_dilated` takes its canonical-VJP path.

  Takes the arguments of :func:`conv_general_dilated` (arrays or anything
  with ``shape`` and ``dtype``); False means it would call
  ``lax.conv_general_dilated`` unchanged.

  Example:
    >>> import jax
    >>> x = jax.ShapeDtypeStruct((1, 8, 8, 3), "float32")
    >>> w = jax.ShapeDtypeStruct((3, 3, 3, 4), "float32")
    >>> is_canonical(x, w, (1, 1), "SAME",
    ...              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    True
    >>> is_canonical(x, w, (1, 1), "SAME", rhs_dilation=(2, 2),
    ...              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    False
  """
  return _canonical_args(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
      dimension_numbers, feature_group_count, batch_group_count,
      preferred_element_type) is not None


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None, *,
                         kernel_grad_piece: int | None = KERNEL_GRAD_PIECE,
                         widen_small: bool | None = None) -> Array:
  """``lax.conv_general_dilated`` with a loop-friendly gradient.

  Same arguments and the same forward result as
  :func:`jax.lax.conv_general_dilated` (up to float rounding where few
  channels are widened: ``widen_small``). For channels-last convolutions
  without dilation or groups (see the module docstring) the gradient is a
  ``custom_vjp`` made of two canonical forward convolutions, which XLA:CPU
  runs fast inside ``lax.scan``/``fori_loop``/``while``; every other call is
  forwarded to ``lax.conv_general_dilated`` as is. Pass it to flax through
  ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``.

  Args:
    lhs: input, e.g. ``(N, H, W, C_in)``.
    rhs: kernel, e.g. ``(kh, kw, C_in, C_out)``.
    window_strides: one stride per spatial dimension.
    padding: ``'SAME'``, ``'VALID'``, ``'SAME_LOWER'`` or a sequence of
      ``(lo, hi)`` pairs, one per spatial dimension.
    lhs_dilation: input dilation (the canonical path needs none or all 1).
    rhs_dilation: kernel dilation (likewise).
    dimension_numbers: as in lax; the canonical path needs the channels-last
      layout, e.g. ``("NHWC", "HWIO", "NHWC")`` (flax's choice). ``None``
      means lax's ``NCHW``/``OIHW`` default and goes to lax.
    feature_group_count: the canonical path needs 1.
    batch_group_count: the canonical path needs 1.
    precision: passed to the forward and both backward convolutions.
    preferred_element_type: the canonical path needs ``None`` or the input
      dtype.
    kernel_grad_piece: examples per kernel-gradient convolution (their
      results are summed); ``None`` computes it in one convolution over the
      whole batch. A positive int; the default, 8, was the fastest choice
      measured on XLA:CPU (module docstring). Pass a different value with
      ``functools.partial`` to tune another machine.
    widen_small: whether a 2-D convolution with at most 16 input and output
      channels, and its input gradient, are computed with one more output
      channel that is then sliced off, which XLA:CPU's YNNPACK path takes
      and its own path is slower at (``models/conv_grads.py``). ``None``
      (default): when XLA:CPU hands the convolutions of the program being
      traced to YNNPACK (``core.conv_path.ynn_convolutions``).

  Returns:
    The convolution: what ``lax.conv_general_dilated`` computes, the same
    XLA call unless widened (then the same sums on another XLA:CPU path,
    equal up to float rounding).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (4, 9, 9, 2))
    >>> w = jax.random.normal(jax.random.key(1), (3, 3, 2, 5))
    >>> dn = ("NHWC", "HWIO", "NHWC")
    >>> def loss(conv, x, w):
    ...   return jnp.sum(conv(x, w, (2, 2), "SAME",
    ...                       dimension_numbers=dn) ** 2)
    >>> g = jax.grad(loss, (1, 2))(conv_general_dilated, x, w)
    >>> g_lax = jax.grad(loss, (1, 2))(jax.lax.conv_general_dilated, x, w)
    >>> all(bool(jnp.allclose(a, b, rtol=1e-4, atol=1e-3))
    ...     for a, b in zip(g, g_lax))
    True
  """
  if kernel_grad_piece is not None and (
      isinstance(kernel_grad_piece, bool)
      or not isinstance(kernel_grad_piece, int) or kernel_grad_piece < 1):
    raise ValueError(
        "kernel_grad_piece must be a positive int (examples per "
        f"kernel-gradient convolution) or None, got {kernel_grad_piece!r}")
  if widen_small is not None and not isinstance(widen_small, bool):
    raise ValueError(
        f"widen_small must be True, False or None, got {widen_small!r}")
  lhs = lhs if hasattr(lhs, "shape") else jnp.asarray(lhs)
  rhs = rhs if hasattr(rhs, "shape") else jnp.asarray(rhs)
  args = _canonical_args(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
      dimension_numbers, feature_group_count, batch_group_count,
      preferred_element_type)
  if args is None:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  strides, pads = args
  if isinstance(precision, list):
    precision = tuple(precision)
  if widen_small is None:
    widen_small = conv_path.ynn_convolutions()
  return _canonical_conv(lhs, rhs, strides, pads, precision,
                         kernel_grad_piece, widen_small)


def auto_conv_general_dilated(lhs, rhs, window_strides: Sequence[int],
                              padding, lhs_dilation=None, rhs_dilation=None,
                              dimension_numbers=None,
                              feature_group_count: int = 1,
                              batch_group_count: int = 1, precision=None,
                              preferred_element_type=None) -> Array:
  """:func:`conv_general_dilated` on the CPU backend, lax's elsewhere.

  The choice is made when the call is traced, from
  ``jax.default_backend()``: XLA:CPU needs the canonical gradient inside
  loops (jax-ml/jax#12868); GPU and TPU compilers run JAX's own transposed
  convolutions well, so they get ``lax.conv_general_dilated`` untouched.
  Arguments and result as :func:`jax.lax.conv_general_dilated`.

  Example:
    >>> import jax.numpy as jnp
    >>> y = auto_conv_general_dilated(
    ...     jnp.ones((1, 4, 4, 1)), jnp.ones((2, 2, 1, 1)), (1, 1), "VALID",
    ...     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> y[0, :, :, 0].tolist()
    [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]
  """
  fn = (conv_general_dilated if jax.default_backend() == "cpu"
        else lax.conv_general_dilated)
  return fn(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count, precision=precision,
            preferred_element_type=preferred_element_type)


def resolve_conv(conv: str | Callable[..., Any] | None = None
                 ) -> Callable[..., Array]:
  """The convolution function a model option names.

  Args:
    conv: ``None`` or ``"auto"``: :func:`auto_conv_general_dilated` (the
      canonical gradient on CPU, lax's elsewhere, decided at trace time);
      ``"canonical"``: :func:`conv_general_dilated` on every backend;
      ``"lax"``: :func:`jax.lax.conv_general_dilated`; or any callable with
      that signature, returned as is.

  Returns:
    A function with the signature of ``lax.conv_general_dilated``.

  Example:
    >>> resolve_conv("lax") is jax.lax.conv_general_dilated
    True
    >>> resolve_conv() is auto_conv_general_dilated
    True
  """
  if conv is None or (isinstance(conv, str) and conv == "auto"):
    return auto_conv_general_dilated
  if isinstance(conv, str):
    if conv == "canonical":
      return conv_general_dilated
    if conv == "lax":
      return lax.conv_general_dilated
    raise ValueError(
        f"conv must be one of {CONV_CHOICES}, None or a callable, got "
        f"{conv!r}")
  if not callable(conv):
    raise ValueError(
        f"conv must be one of {CONV_CHOICES}, None or a callable, got "
        f"{conv!r}")
  return conv
