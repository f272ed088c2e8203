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
  not checked: their value is unknown when the program is built.

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

import math
import operator
from typing import Any, Optional, Sequence

import jax
import numpy as np


def is_traced(value) -> bool:
  """Whether ``value`` is a JAX tracer (its value unknown at build time)."""
  return isinstance(value, jax.core.Tracer)


def range_text(low=None, high=None, *, low_open: bool = False,
               high_open: bool = False) -> str:
  """``">= 1"``, ``"> 0"``, ``"in [0, 1)"``... for error messages and docs.

  Example:
    >>> range_text(0, 1, high_open=True), range_text(0, low_open=True)
    ('in [0, 1)', '> 0')
  """
  if low is not None and high is not None:
    return (f"in {'(' if low_open else '['}{low:g}, "
            f"{high:g}{')' if high_open else ']'}")
  if low is not None:
    return f"{'>' if low_open else '>='} {low:g}"
  if high is not None:
    return f"{'<' if high_open else '<='} {high:g}"
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
    raise ValueError(f"{name} must be {what}, got {value!r}")
  return value


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
      raise ValueError(f"{name} must be a finite number, got {value!r}")
    rng = range_text(low, high, low_open=low_open, high_open=high_open)
    raise ValueError(f"{name} must be a number {rng}, got {value!r}")
  return value


def choice(name: str, value, options: Sequence[str]) -> str:
  """Checks that ``value`` is one of ``options``.

  Example:
    >>> choice("batching", "map", ("map", "vmap"))
    'map'
  """
  if not isinstance(value, str) or value not in tuple(options):
    raise ValueError(f"{name} must be one of {', '.join(options)}; got "
                     f"{value!r}")
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
    raise ValueError(f"{name} must be callable, got {value!r}")
  return value
