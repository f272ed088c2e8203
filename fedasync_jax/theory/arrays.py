"""Checking array arguments (horizons, step sizes, measurements).

``core.checks`` checks scalars; the bounds and fits of this package take
arrays (``T``, ``eps``, ``steps``, ``values``...) and check them here, with
the same range words (``checks.range_text``). ``finite`` belongs in
``core.checks`` (as ``checks.array``) once that module takes arrays; it is
here because ``core`` is owned elsewhere.

Example:
  >>> finite("T", [1.0, 2.0], low=0, low_open=True).tolist()
  [1.0, 2.0]
  >>> finite("T", [1.0, 0.0], low=0, low_open=True)
  Traceback (most recent call last):
  ...
  ValueError: T must be > 0 everywhere, got 0.0
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from fedasync_jax.core import checks


def finite(name: str, value, *, low: Optional[float] = None,
           low_open: bool = False) -> np.ndarray:
  """``value`` as a finite float64 array, every entry ``>= low`` (``> low``
  with ``low_open``), or a ``ValueError`` naming ``name`` and the range.

  Args:
    name: the parameter, for the error message.
    value: anything ``np.asarray`` takes.
    low: the smallest allowed entry (``None``: no bound).
    low_open: whether ``low`` itself is excluded.

  Returns:
    The float64 array.

  Example:
    >>> finite("weights", 2.0, low=0).ndim
    0
  """
  a = np.asarray(value, dtype=np.float64)
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name} must be finite, got {value!r}")
  if low is not None:
    bad = a <= low if low_open else a < low
    if np.any(bad):
      raise ValueError(f"{name} must be "
                       f"{checks.range_text(low, low_open=low_open)} "
                       f"everywhere, got {float(a[bad].ravel()[0])!r}")
  return a


def series(name: str, value, *, low: Optional[float] = None,
           low_open: bool = False) -> np.ndarray:
  """``finite(...)`` of a scalar or a 1-D array (one value per update,
  version or run), as a 1-D array; a 2-D array is refused, not flattened.

  Example:
    >>> series("steps", [[0.1, 0.2]], low=0)
    Traceback (most recent call last):
    ...
    ValueError: steps must be a number or a 1-D array, got shape (1, 2)
  """
  a = finite(name, value, low=low, low_open=low_open)
  if a.ndim > 1:
    raise ValueError(f"{name} must be a number or a 1-D array, got shape "
                     f"{a.shape}")
  return a.ravel()
