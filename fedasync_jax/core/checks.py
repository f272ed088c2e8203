"""Argument validation shared by every layer: one meaning of "an integer".

Every public factory checks its arguments before anything is computed and
raises a ``ValueError`` that names the parameter, the allowed range and the
value it got. The rules, once for the whole library:

* an integer is a Python or numpy integer, or a float with an integral value
  (``3.0``, ``1e3``: configuration files write numbers that way); never a
  ``bool``;
* a number is anything ``float()`` accepts except a ``bool`` or a string,
  and it must be finite;
* traced values (inside ``jit``/``vmap``, e.g. a swept hyperparameter) are
  not checked: their value is unknown when the program is built;
* a declared parameter whose range has no upper end still has one
  (``limits``): ``FLOAT_LIMIT`` for numbers, ``INT_LIMIT`` for integers,
  and a number that must be ``> 0`` must be at least ``FLOAT_TINY``, so
  that every value a run is given stays finite in float32;
* values are quoted shortened (``show``), and an unknown name comes with the
  closest known one (``suggest``).

Example:
  >>> integer("num_clients", 1e3, low=1)
  1000
  >>> number("alpha", 0.5, low=0, high=1)
  0.5
  >>> integer("width", True, low=1)
  Traceback (most recent call last):
  ...
  ValueError: width must be an integer >= 1, got True
"""

from __future__ import annotations

import difflib
import math
import operator
import reprlib
from typing import Any, Optional, Sequence

import jax
import numpy as np


FLOAT_LIMIT = 1e18
"""The largest magnitude of a number whose declared range has no upper end:
the product of two such numbers (a rate times a slope, a factor times a
count) stays finite in float32 (largest 3.4e38)."""

FLOAT_TINY = 1e-18
"""The smallest value of a number that must be ``> 0``: its reciprocal
(a period's rate, a step's inverse) stays within ``FLOAT_LIMIT``."""

INT_LIMIT = 2**31 - 1
"""The largest integer whose declared range has no upper end (int32, the
integer type of JAX without x64)."""

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4
_REPR.maxtuple = _REPR.maxset = 4


def show(value) -> str:
  """``repr(value)`` shortened for an error message: long strings, large or
  deeply nested containers (a YAML alias bomb) are cut with ``...``.

  Example:
    >>> show("x" * 100)[:12], len(show([[1] * 9] * 9)) < 100
    ("'xxxxxxxxxxx", True)
  """
  try:
    return _REPR.repr(value)
  except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the error
    return f"<{type(value).__name__}>"


def error_text(e: BaseException) -> str:
  """The explanation of an exception raised by code we call (JAX's, a
  user's), for a message of ours: its first non-empty line, and the next
  one when the first ends in ``:`` (JAX's "... they differ:" says its
  reason on the next line).

  Example:
    >>> error_text(TypeError("types differ:\\n\\n  float32 vs float64"))
    'types differ: float32 vs float64'
  """
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  return " ".join(lines[:2] if lines and lines[0].endswith(":")
                  else lines[:1])


def suggest(name, options) -> str:
  """``" (did you mean 'alpha'?)"`` for the option closest to ``name``, or
  ``""`` when none is close.

  Example:
    >>> suggest("alhpa", ["alpha", "beta"])
    " (did you mean 'alpha'?)"
  """
  if not isinstance(name, str):
    return ""
  close = difflib.get_close_matches(name, [str(o) for o in options], n=1,
                                    cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""


def limits(name: str, value, *, kind: type = float, low=None, high=None,
           low_open: bool = False):
  """Applies the implicit limits to a number already in its declared range:
  ``|value| <= FLOAT_LIMIT`` (``INT_LIMIT`` for ``kind=int``) when ``high``
  is ``None``, and ``value >= FLOAT_TINY`` when the range is ``> 0``.
  ``None`` and traced values pass; returns ``value``.

  Example:
    >>> limits("lr", 1e39, low=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: lr must be <= 1e+18 (larger numbers overflow float32 ...
    >>> limits("period", 1e-300, low=0, low_open=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: period must be >= 1e-18 (its reciprocal must stay <= 1e+18...
  """
  if value is None or is_traced(value) or kind not in (int, float):
    return value
  v = float(value) if kind is float else int(value)
  if high is None:
    top = INT_LIMIT if kind is int else FLOAT_LIMIT
    if abs(v) > top:
      why = "int32" if kind is int else "larger numbers overflow float32 in " \
          "a run"
      txt = str(top) if kind is int else f"{top:g}"
      side = f"in [-{txt}, {txt}]" if low is None else f"<= {txt}"
      raise ValueError(f"{name} must be {side} ({why}), got {show(value)}")
  if kind is float and low == 0 and low_open and v < FLOAT_TINY:
    raise ValueError(f"{name} must be >= {FLOAT_TINY:g} (its reciprocal must "
                     f"stay <= {FLOAT_LIMIT:g}), got {show(value)}")
  return value


def is_traced(value) -> bool:
  """Whether ``value`` is a JAX tracer (its value unknown at build time)."""
  return isinstance(value, jax.core.Tracer)


def number_text(v) -> str:
  """A range's end as the messages write it: integers in full, floats in
  their short form (``1e+15``, ``0.5``) unless that would round them.

  Example:
    >>> number_text(2**31 - 1), number_text(1e15), number_text(0.123456789)
    ('2147483647', '1e+15', '0.123456789')
  """
  if isinstance(v, (int, np.integer)):
    return str(int(v))
  short = f"{v:g}"
  return short if float(short) == v else repr(float(v))


def range_text(low=None, high=None, *, low_open: bool = False,
               high_open: bool = False) -> str:
  """``">= 1"``, ``"> 0"``, ``"in [0, 1)"``... for error messages and docs.

  Integers are written out in full (``2147483647``, not ``2.14748e+09``).

  Example:
    >>> range_text(0, 1, high_open=True), range_text(0, low_open=True)
    ('in [0, 1)', '> 0')
    >>> range_text(0, 2**31 - 1), range_text(0.5, 1e6)
    ('in [0, 2147483647]', 'in [0.5, 1e+06]')
  """
  num = number_text
  if low is not None and high is not None:
    return (f"in {'(' if low_open else '['}{num(low)}, "
            f"{num(high)}{')' if high_open else ']'}")
  if low is not None:
    return f"{'>' if low_open else '>='} {num(low)}"
  if high is not None:
    return f"{'<' if high_open else '<='} {num(high)}"
  return "finite"


def _in_range(v, low, high, low_open, high_open) -> bool:
  if low is not None and (v <= low if low_open else v < low):
    return False
  if high is not None and (v >= high if high_open else v > high):
    return False
  return True


def integer(name: str, value, *, low: Optional[int] = None,
            high: Optional[int] = None) -> int:
  """Returns ``value`` as an ``int`` in ``[low, high]`` or raises.

  Example:
    >>> integer("epochs", 2.0, low=1)
    2
  """
  ok = not isinstance(value, (bool, np.bool_, str))
  if ok:
    try:
      f = operator.index(value) if isinstance(value, (int, np.integer)) \
          else float(value)
      ok = math.isfinite(f) and int(f) == f
    except (TypeError, ValueError, OverflowError):
      ok = False
  if ok:
    value = int(f)
    ok = _in_range(value, low, high, False, False)
  if not ok:
    what = "an integer" + ("" if low is None and high is None
                           else " " + range_text(low, high))
    raise ValueError(f"{name} must be {what}, got {show(value)}")
  return value


def rng(seed, *, name: str = "seed") -> np.random.Generator:
  """A numpy random generator from ``seed``, an integer ``>= 0`` (a
  generator is returned as it is), or raises naming ``name`` (numpy's own
  message for ``-1`` does not).

  Example:
    >>> float(rng(0).random()) == float(rng(0.0).random())
    True
    >>> rng(-1)
    Traceback (most recent call last):
    ...
    ValueError: seed must be an integer >= 0, got -1
  """
  if isinstance(seed, np.random.Generator):
    return seed
  return np.random.default_rng(integer(name, seed, low=0))


def number(name: str, value, *, low: Optional[float] = None,
           high: Optional[float] = None, low_open: bool = False,
           high_open: bool = False) -> Any:
  """Checks a finite number in the given range; returns ``value`` unchanged
  (traced values pass unchecked).

  Example:
    >>> number("lr", 0.1, low=0, low_open=True)
    0.1
  """
  if is_traced(value):
    return value
  ok = not isinstance(value, (bool, np.bool_, str))
  if ok:
    try:
      f = float(value)
      ok = math.isfinite(f) and _in_range(f, low, high, low_open, high_open)
    except (TypeError, ValueError, OverflowError):
      ok = False
  if not ok:
    if low is None and high is None:
      raise ValueError(f"{name} must be a finite number, got {show(value)}")
    rng = range_text(low, high, low_open=low_open, high_open=high_open)
    raise ValueError(f"{name} must be a number {rng}, got {show(value)}")
  return value


def choice(name: str, value, options: Sequence[str]) -> str:
  """Checks that ``value`` is one of ``options``.

  Example:
    >>> choice("batching", "map", ("map", "vmap"))
    'map'
  """
  if not isinstance(value, str) or value not in tuple(options):
    raise ValueError(f"{name} must be one of {', '.join(options)}; got "
                     f"{show(value)}{suggest(value, options)}")
  return value


def callable_(name: str, value) -> Any:
  """Checks that ``value`` is callable (e.g. a staleness function).

  Example:
    >>> callable_("staleness_fn", 3)
    Traceback (most recent call last):
    ...
    ValueError: staleness_fn must be callable, got 3
  """
  if not callable(value):
    raise ValueError(f"{name} must be callable, got {show(value)}")
  return value


def optimizer(name: str, value) -> Any:
  """Checks that ``value`` is an optax optimizer (callable ``init`` and
  ``update``), e.g. ``optax.sgd(1.0)``; a name such as ``"sgd"`` is refused.

  Example:
    >>> optimizer("server_optimizer", "sgd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: server_optimizer must be an optax optimizer (..., got 'sgd'
  """
  if not (callable(getattr(value, "init", None))
          and callable(getattr(value, "update", None))):
    raise ValueError(f"{name} must be an optax optimizer (an object with "
                     f"init and update, e.g. optax.sgd(1.0)), got "
                     f"{show(value)}")
  return value


VMAP_CHANGES_KEYS = ("rbg", "unsafe_rbg")
"""Key kinds whose random bits ``jax.vmap`` changes: JAX batches their
``rng_bit_generator`` by one draw for the whole batch (jax-ml/jax#20094),
so a batched client draws other numbers than the same client alone."""


def prng_key(name: str, key, *, vmapped_by: Optional[str] = None) -> Any:
  """Checks that ``key`` is one PRNG key: ``jax.random.key(...)``, or the
  ``uint32`` pair of ``jax.random.PRNGKey(...)``; returns it. With
  ``vmapped_by`` (what batches the clients, e.g. ``"batching='vmap'"``),
  a key of a kind in ``VMAP_CHANGES_KEYS`` is refused: the batched run
  would not equal the one-client-at-a-time one.

  Example:
    >>> prng_key("key", 0)
    Traceback (most recent call last):
    ...
    ValueError: key must be one PRNG key (jax.random.key(0), or jax.random.PRNGKey(0)'s uint32 pair), got 0
  """
  dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
  typed = dtype is not None and jax.dtypes.issubdtype(dtype,
                                                      jax.dtypes.prng_key)
  if typed and shape == ():
    impl = str(jax.random.key_impl(key))
    if vmapped_by and impl in VMAP_CHANGES_KEYS:
      raise ValueError(
          f"{name} is a key of kind {impl!r}, whose random bits jax.vmap "
          f"changes (one draw for the whole batch), so {vmapped_by} would "
          f"not equal the one-client-at-a-time run: use jax.random.key("
          f"seed) (threefry2x32), or batching='map'")
    return key
  if not typed and dtype == np.uint32 and shape == (2,):
    return key
  got = (f"an array of {dtype} and shape {shape}" if shape is not None
         else show(key))
  raise ValueError(f"{name} must be one PRNG key (jax.random.key(0), or "
                   f"jax.random.PRNGKey(0)'s uint32 pair), got {got}")


def float_params(name: str, tree) -> Any:
  """Checks that every leaf of ``tree`` is an array of float32 or float64
  (the parameters a run mixes and differentiates), all of one dtype as JAX
  holds them (the rules and the client update compute in one); returns
  ``tree``.

  Example:
    >>> import numpy as np
    >>> float_params("params", {"w": np.zeros(2, np.int32)})
    Traceback (most recent call last):
    ...
    ValueError: params must hold float32 or float64 arrays; params['w'] is int32
  """
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  if not leaves:
    raise ValueError(f"{name} must hold at least one array, got "
                     f"{show(tree)}")
  seen = {}  # dtype as JAX holds it -> the first leaf of it
  for path, leaf in leaves:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
      dtype = np.asarray(leaf).dtype
    where = f"{name}{jax.tree_util.keystr(path)}"
    if np.dtype(dtype) not in (np.float32, np.float64):
      raise ValueError(f"{name} must hold float32 or float64 arrays; "
                       f"{where} is {dtype}")
    seen.setdefault(jax.dtypes.canonicalize_dtype(dtype), where)
  if len(seen) > 1:
    (a, wa), (b, wb) = sorted(seen.items(), key=lambda kv: kv[0].itemsize)
    raise ValueError(
        f"{name} must hold arrays of one float dtype (the rules and the "
        f"client update compute in one); {wa} is {a} but {wb} is {b}: "
        f"cast them, e.g. jax.tree.map(lambda a: jnp.asarray(a, "
        f"jnp.{b}), {name})")
  return tree


def labels(name: str, y, num_classes: int, *, what: str = "the model") -> Any:
  """Checks that labels ``y`` lie in ``[0, num_classes)`` (a label beyond
  the model's outputs would be scored silently wrong); returns ``y``.
  Float labels must be whole numbers too (a classifier's loss casts them
  to integers: 1.7 was read as 1, and 5.0 for 3 classes gave NaN losses).

  Example:
    >>> import numpy as np
    >>> labels("y_train", np.array([0, 3, 10]), 10)
    Traceback (most recent call last):
    ...
    ValueError: y_train holds labels up to 10, but the model has 10 classes (labels must be in [0, 10))
  """
  a = y if isinstance(y, (np.ndarray, jax.Array)) else np.asarray(y)
  if a.size == 0 or not (np.issubdtype(a.dtype, np.integer) or
                         np.issubdtype(a.dtype, np.floating)):
    return y
  if np.issubdtype(a.dtype, np.floating):
    whole = np.isfinite(a) & (np.floor(a) == a)
    if not bool(np.all(whole)):
      bad = np.asarray(a)[~np.asarray(whole)][0]
      raise ValueError(f"{name} holds {bad!r}, not a class label: {what} "
                       f"has {num_classes} classes (labels must be whole "
                       f"numbers in [0, {num_classes}))")
  lo, hi = int(a.min()), int(a.max())  # a device array stays there
  if lo < 0 or hi >= num_classes:
    bad = f"down to {lo}" if lo < 0 else f"up to {hi}"
    raise ValueError(f"{name} holds labels {bad}, but {what} has "
                     f"{num_classes} classes (labels must be in [0, "
                     f"{num_classes}))")
  return y
