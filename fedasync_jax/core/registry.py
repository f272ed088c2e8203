"""Families declare their members once; everything else derives from that.

A *family* (staleness functions, server rules, models, optimizers, device
speed distributions, client selections, batching strategies...) is a
``Registry``. The module that defines a member registers it there with its
name, its factory and its parameters (``Param``: default, range, meaning,
whether a sweep may vary it). The configuration schema, the command line's
``--set``/``--grid`` checks, ``fedasync-jax config`` and the docs read the
registries; nothing else keeps a list of names.

A member may also take *inputs*: values its caller supplies that are not
settings (a rule's staleness function, a speed trace...). They are named in
``info["inputs"]``; ``build`` passes them through unchecked.

Example:
  >>> shapes = Registry("shape")
  >>> @shapes.register("square", params=(
  ...     Param("side", 1.0, low=0, low_open=True, meaning="side length"),))
  ... def square(side):
  ...   return side * side
  >>> shapes.build("square", side=3.0), "square" in shapes, shapes.names()
  (9.0, True, ('square',))
  >>> shapes.build("square", side=-1.0)
  Traceback (most recent call last):
  ...
  ValueError: shape 'square': side must be a number > 0, got -1.0
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, Optional

from fedasync_jax.core import checks

REQUIRED = object()
"""Default of a parameter that has none: the caller must give it."""


class Param(NamedTuple):
  """One parameter of a family member.

  Attributes:
    name: the keyword the factory takes.
    default: its default, or ``REQUIRED``.
    low, high, low_open, high_open: the allowed range (numbers only).
    kind: ``float``, ``int``, ``bool`` or ``str``.
    meaning: a few words for docs and ``--help``.
    sweepable: whether a sweep may pass it as a traced array.
    optional: whether ``None`` is allowed (it means "not used").
  """
  name: str
  default: Any = REQUIRED
  low: Optional[float] = None
  high: Optional[float] = None
  low_open: bool = False
  high_open: bool = False
  kind: type = float
  meaning: str = ""
  sweepable: bool = False
  optional: bool = False

  @property
  def range_text(self) -> str:
    """The allowed range in words (``"> 0"``, ``"in [0, 1]"``...)."""
    return checks.range_text(self.low, self.high, low_open=self.low_open,
                             high_open=self.high_open)

  def limits(self, value, name: str = ""):
    """``checks.limits`` for this parameter (named ``name``, default its
    own): every number stays finite in float32 even where the declared
    range has no upper end; the one place those implicit limits apply.

    Example:
      >>> Param("a", 0.5, low=0).limits(1e39)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: a must be <= 1e+18 (larger numbers overflow float32 ...
    """
    return checks.limits(name or self.name, value, kind=self.kind,
                         low=self.low, high=self.high, low_open=self.low_open)

  def check(self, value, where: str = ""):
    """Validates ``value`` (declared range, then ``limits``); returns it
    converted to ``kind``.

    Raises:
      ValueError: naming ``where`` (e.g. ``"staleness 'hinge'"``), the
        parameter and its allowed range.
    """
    try:
      if value is None and self.optional:
        return None
      if self.kind is int:
        return self.limits(checks.integer(self.name, value, low=self.low,
                                          high=self.high))
      if self.kind is float:
        return self.limits(checks.number(
            self.name, value, low=self.low, high=self.high,
            low_open=self.low_open, high_open=self.high_open))
      if self.kind is bool:
        if not isinstance(value, bool):
          raise ValueError(f"{self.name} must be true or false, got "
                           f"{checks.show(value)}")
        return value
      if not isinstance(value, self.kind):
        raise ValueError(f"{self.name} must be a {self.kind.__name__}, got "
                         f"{checks.show(value)}")
      return value
    except ValueError as e:
      raise ValueError(f"{where}: {e}" if where else str(e)) from None


class Member(NamedTuple):
  """A registered member: ``name``, ``factory``, ``params``, a one-line
  ``doc`` and family-specific ``info`` (e.g. a rule's ``synchronous``)."""
  name: str
  factory: Callable
  params: tuple
  doc: str
  info: dict

  def param(self, name: str) -> Param:
    for p in self.params:
      if p.name == name:
        return p
    raise KeyError(name)

  @property
  def inputs(self) -> tuple:
    """Keywords the caller supplies that are not parameters
    (``info["inputs"]``), e.g. a rule's ``staleness_fn``."""
    return tuple(self.info.get("inputs", ()))


class Registry:
  """A named family of factories.

  Iterating gives the member names in registration order; ``in`` tests a
  name; ``registry[name]`` is the ``Member`` (a clear error names the
  allowed names).
  """

  def __init__(self, family: str):
    self.family = family
    self._members: dict[str, Member] = {}

  def add(self, name: str, factory: Callable, *, params=(), doc: str = "",
          **info) -> Callable:
    """Registers ``factory`` under ``name`` and returns it."""
    if name in self._members:
      raise ValueError(f"{self.family} {name!r} is already registered")
    if not doc:  # the docstring's first paragraph, on one line
      first = (factory.__doc__ or "").strip().split("\n\n")[0]
      doc = " ".join(line.strip() for line in first.splitlines())
    self._members[name] = Member(name, factory, tuple(params), doc, info)
    return factory

  def register(self, name: str, *, params=(), doc: str = "", **info):
    """Decorator form of ``add``."""
    return lambda factory: self.add(name, factory, params=params, doc=doc,
                                    **info)

  def remove(self, name: str) -> None:
    """Unregisters ``name`` (tests that register a temporary member)."""
    self._members.pop(name, None)

  def __getitem__(self, name: str) -> Member:
    if name not in self._members:
      raise ValueError(f"{self.family} must be one of "
                       f"{', '.join(self._members)}; got {checks.show(name)}"
                       f"{checks.suggest(name, self._members)}")
    return self._members[name]

  def __contains__(self, name) -> bool:
    return name in self._members

  def __iter__(self) -> Iterator[str]:
    return iter(tuple(self._members))

  def __len__(self) -> int:
    return len(self._members)

  def names(self) -> tuple:
    """The member names, in registration order."""
    return tuple(self._members)

  def members(self) -> tuple:
    """The ``Member`` records, in registration order."""
    return tuple(self._members.values())

  def check(self, name: str, **values) -> dict:
    """Checks ``values`` of parameters that member ``name`` declares and
    returns them converted (a factory calls this on its own arguments, so
    that its ranges are the declared ones).

    Example:
      >>> sizes = Registry("size")
      >>> @sizes.register("n", params=(Param("n", 1, low=1, kind=int),))
      ... def n(n):
      ...   return sizes.check("n", n=n)["n"]
      >>> n(3.0)
      3
    """
    m = self[name]
    where = f"{self.family} {name!r}"
    return {k: m.param(k).check(v, where) for k, v in values.items()}

  def build(self, name: str, *args, **kwargs):
    """Calls the member's factory after checking every keyword it declares
    (unknown keywords are an error naming the allowed ones; the member's
    ``inputs`` pass unchecked)."""
    m = self[name]
    where = f"{self.family} {name!r}"
    known = {p.name: p for p in m.params}
    if m.params or m.inputs:
      extra = sorted(set(kwargs) - set(known) - set(m.inputs))
      if extra:
        allowed = sorted(known) + sorted(m.inputs)
        raise ValueError(f"{where}: unknown parameter(s) {extra}; allowed: "
                         f"{allowed}{checks.suggest(extra[0], allowed)}")
    checked = {k: (known[k].check(v, where) if k in known else v)
               for k, v in kwargs.items()}
    missing = [p.name for p in m.params
               if p.default is REQUIRED and p.name not in checked]
    if missing:
      raise ValueError(f"{where}: missing parameter(s) {missing}")
    return m.factory(*args, **checked)
