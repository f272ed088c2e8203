"""Which XLA:CPU code runs the convolutions being traced.

jaxlib 0.10's XLA:CPU hands convolutions to YNNPACK unless the flag
``--xla_cpu_experimental_ynn_fusion_type`` (:data:`FLAG_NAME`), set for
the process or as an option of one compiled program, takes them off its
list; :mod:`fedasync_jax.sim.xla_cpu` does that for programs on devices of
two or more cores (Eigen's path). A model's convolution
(:mod:`fedasync_jax.models.conv`) takes the form that suits the path, so
it asks, while it is traced, :func:`ynn_convolutions`; the library's
programs are traced through :func:`traced_with`, which tells it their
options.

Example:
  >>> ynn_convolutions(backend="cpu", xla_flags="", jaxlib_version="0.10.2")
  True
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Callable, Optional

__all__ = ["FLAG_NAME", "JAXLIB_RANGE", "measured_release", "traced_options",
           "traced_with", "ynn_convolutions"]

FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
# jaxlib releases whose XLA:CPU was measured, [first, end): 0.10.2.
JAXLIB_RANGE = ((0, 10, 2), (0, 11, 0))
# The compiler options of the programs being traced in this thread,
# innermost last (traced_with).
_PROGRAMS = threading.local()


def _jaxlib_version() -> str:
  import jaxlib
  return jaxlib.__version__


def measured_release(jaxlib_version: Optional[str] = None) -> bool:
  """Whether the jaxlib release (default: the installed one) is in
  :data:`JAXLIB_RANGE`.

  Example:
    >>> measured_release("0.10.2"), measured_release("0.4.30")
    (True, False)
  """
  try:
    release = tuple(int(p) for p in (
        jaxlib_version or _jaxlib_version()).split(".")[:3])
  except ValueError:
    return False
  first, end = JAXLIB_RANGE
  return first <= release < end


def _default_backend() -> str:
  import jax
  return jax.default_backend()


def _convolutions_listed(value: str) -> bool:
  """Whether a YNNPACK fusion-type list keeps convolutions: ``+``/``-``
  entries change the default list (which has them), plain entries replace
  it."""
  entries = [e.strip().lower() for e in value.split(",") if e.strip()]
  if entries and all(e[0] in "+-" for e in entries):
    return not any(e[0] == "-" and "convolution" in e for e in entries)
  return any("convolution" in e for e in entries)


def traced_with(fn: Callable, options: dict) -> Callable:
  """``fn``, which while JAX traces it lets :func:`ynn_convolutions` see
  the compiler options its program will be compiled with.

  The library jits its programs as ``jax.jit(traced_with(f, options),
  compiler_options=options)``, so that a model's convolutions, traced
  inside, take the form that suits the convolution path those options
  choose (``models.conv``).

  Example:
    >>> f = traced_with(lambda: ynn_convolutions(
    ...     backend="cpu", xla_flags="", jaxlib_version="0.10.2"),
    ...     {FLAG_NAME: "LIBRARY_FUSION_TYPE_REDUCE"})
    >>> f()
    False
  """
  @functools.wraps(fn)
  def traced(*args, **kwargs):
    stack = _PROGRAMS.__dict__.setdefault("options", [])
    stack.append(dict(options or {}))
    try:
      return fn(*args, **kwargs)
    finally:
      stack.pop()
  return traced


def traced_options() -> Optional[dict]:
  """The compiler options of the innermost program being traced in this
  thread through :func:`traced_with`, or ``None`` outside any.

  Example:
    >>> traced_options() is None
    True
    >>> traced_with(traced_options, {"a": "b"})()
    {'a': 'b'}
  """
  stack = getattr(_PROGRAMS, "options", None)
  return dict(stack[-1]) if stack else None


def ynn_convolutions(*, backend: Optional[str] = None,
                     xla_flags: Optional[str] = None,
                     jaxlib_version: Optional[str] = None) -> bool:
  """Whether XLA:CPU hands the convolutions being traced now to YNNPACK.

  True on the CPU backend of jaxlib 0.10.2 and later 0.10 releases (where
  YNNPACK's convolutions were measured) unless the options of the program
  being traced (:func:`traced_with`), else the process's ``XLA_FLAGS``,
  take convolutions off YNNPACK's fusion types (Eigen's path).

  Args:
    backend: default: JAX's default backend.
    xla_flags: default: the ``XLA_FLAGS`` environment variable.
    jaxlib_version: default: the installed jaxlib's.

  Returns:
    The answer for the innermost program being traced in this thread, or
    for a program compiled with the process's flags alone.

  Example:
    >>> eigen = f"--{FLAG_NAME}=-individual_convolution"
    >>> ynn_convolutions(backend="cpu", xla_flags=eigen,
    ...                  jaxlib_version="0.10.2")
    False
    >>> ynn_convolutions(backend="cpu", xla_flags="",
    ...                  jaxlib_version="0.10.2")
    True
  """
  if (backend or _default_backend()) != "cpu":
    return False
  if not measured_release(jaxlib_version):
    return False
  options = traced_options() or {}
  if FLAG_NAME in options:
    return _convolutions_listed(str(options[FLAG_NAME]))
  flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
  for flag in flags.split():
    name, _, value = flag.lstrip("-").partition("=")
    if name == FLAG_NAME:
      return _convolutions_listed(value)
  return True
