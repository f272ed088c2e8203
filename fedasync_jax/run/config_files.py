"""Reading a configuration file (size, syntax, YAML aliases and duplicate
keys checked), and the comment lines of the one ``config.to_yaml`` writes.

``read`` returns the parsed text of a JSON (``.json``) or YAML
(``.yaml``/``.yml``) file, for ``config.load`` to validate. It refuses, with
one ``ConfigError`` naming the file, what would otherwise exhaust memory or
time before any value is checked: a file larger than ``MAX_FILE_BYTES`` and
YAML aliases (``*name``), which a configuration never needs and which, nested,
expand exponentially (the "billion laughs" alias bomb). It refuses as well
a key that one mapping holds twice, at any depth (a parser would keep the
last value silently), naming its path and, in YAML, its line. YAML
booleans are those of YAML 1.2 and JSON, ``true`` and ``false`` (also
``True``, ``TRUE``...): ``quarantine: no`` is the string ``'no'``, which
the checks refuse as they refuse ``--set rule.quarantine=no``.

Paths in a file (``PATH_FIELDS``: ``data.path``, ``data.data_dir``,
``delays.trace_path``, ``delays.availability_trace``) are relative to the
file's folder, not to the current one: ``read_resolved`` makes a relative
one absolute by joining it to that folder (``resolve_paths``), so a
configuration and its data can move together. Values given with ``--set``
are relative to the current folder; a run saves every path absolute
(``config.absolute_paths``).

Example:
  >>> import os, tempfile
  >>> p = os.path.join(tempfile.mkdtemp(), "c.yaml")
  >>> _ = open(p, "w").write("run: {seed: 3}\\n")
  >>> read(p)
  {'run': {'seed': 3}}
  >>> _ = open(p, "w").write("a: &x [1]\\nb: *x\\n")
  >>> try:
  ...   read(p)
  ... except ConfigError as e:
  ...   print(str(e)[str(e).index("line"):])
  line 2: YAML aliases (*name) are not allowed in a configuration
  >>> _ = open(p, "w").write("rule:\\n  alpha: 0.5\\n  alpha: 0.7\\n")
  >>> try:
  ...   read(p)
  ... except ConfigError as e:
  ...   print(str(e)[str(e).index("line"):])
  line 3: duplicate key rule.alpha (first on line 2)
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from fedasync_jax.run import schema
from fedasync_jax.run.schema import ConfigError

MAX_FILE_BYTES = 1 << 20
"""The largest configuration file ``read`` accepts (1 MiB)."""


_BOOL = "tag:yaml.org,2002:bool"


@functools.lru_cache(maxsize=None)
def _loader():
  """A ``yaml.SafeLoader`` refusing aliases, whose booleans are ``true`` and
  ``false`` only (YAML 1.2, as JSON): YAML 1.1 would read ``no``, ``off``,
  ``yes`` and ``on`` as booleans, which a configuration refuses as
  ``--set`` text does; ``1e-07`` is a number (YAML 1.1: a string)."""
  import yaml  # pylint: disable=import-outside-toplevel

  class Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
        for first, resolvers
        in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def compose_node(self, parent, index):
      if self.check_event(yaml.AliasEvent):
        line = self.peek_event().start_mark.line + 1
        raise yaml.YAMLError(f"line {line}: YAML aliases (*name) are not "
                             f"allowed in a configuration")
      return super().compose_node(parent, index)

  Loader.add_implicit_resolver(
      _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
      list("tTfF"))
  # YAML 1.1 wants a dot in a float: ``1e-07`` (what ``to_yaml`` and
  # Python print) and ``1e3`` were strings. YAML 1.2 and JSON read numbers.
  Loader.add_implicit_resolver(
      "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
      list("-+0123456789"))
  return Loader


def _key_path(keys) -> str:
  """``rule.params.n`` (a list index as ``[2]``)."""
  return "".join(f"[{k}]" if isinstance(k, int) else f".{k}"
                 for k in keys).lstrip(".")


def _yaml_duplicate(root) -> None:
  """Raises ``yaml.YAMLError`` at the first key that a mapping of ``root``
  (a composed node, any depth) holds twice, naming its path and lines."""
  import yaml  # pylint: disable=import-outside-toplevel
  todo = [(root, ())]
  while todo:
    node, path = todo.pop()
    children = []
    if isinstance(node, yaml.SequenceNode):
      children = [(v, path + (i,)) for i, v in enumerate(node.value)]
    elif isinstance(node, yaml.MappingNode):
      first = {}
      for key, value in node.value:
        scalar = isinstance(key, yaml.ScalarNode)
        name = key.value if scalar else "?"
        same = (key.tag, name) if scalar else key  # a complex key: itself
        line = key.start_mark.line + 1
        if same in first:
          raise yaml.YAMLError(
              f"line {line}: duplicate key {_key_path(path + (name,))} "
              f"(first on line {first[same]})")
        first[same] = line
        children.append((value, path + (name,)))
    todo.extend(reversed(children))


def _yaml_load(text: str):
  """``yaml.safe_load`` refusing aliases and duplicate keys, with
  booleans ``true``/``false`` only (``_loader``)."""
  loader = _loader()(text)
  try:
    node = loader.get_single_node()
    if node is None:
      return None
    _yaml_duplicate(node)
    return loader.construct_document(node)
  finally:
    loader.dispose()


def _json_load(text: str):
  """``json.loads`` refusing a key that an object (any depth) holds
  twice, naming its path."""
  twice = {}  # id of an object -> (the object, the first key it holds twice)

  def unique(pairs):
    obj = dict(pairs)
    if len(obj) < len(pairs):
      seen = set()
      # The object is kept here, so that its id is not reused by another
      # after a parent's duplicate key drops it.
      twice[id(obj)] = (obj, next(k for k, _ in pairs
                                  if k in seen or seen.add(k)))
    return obj
  data = json.loads(text, object_pairs_hook=unique)
  todo = [(data, ())]
  while twice and todo:
    obj, path = todo.pop()
    if isinstance(obj, dict) and id(obj) in twice:
      raise ValueError(
          f"duplicate key {_key_path(path + (twice[id(obj)][1],))}")
    items = (obj.items() if isinstance(obj, dict) else
             enumerate(obj) if isinstance(obj, list) else ())
    todo.extend((v, path + (k,)) for k, v in items)
  return data


def read(path):
  """The parsed content of a JSON or YAML configuration file.

  Raises:
    ConfigError: naming the file: unreadable, larger than
      ``MAX_FILE_BYTES``, bad syntax, YAML aliases, or a duplicate key.
  """
  p = Path(path)
  try:
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
      raise ConfigError(f"config file {p} has {size} bytes; at most "
                        f"{MAX_FILE_BYTES} are read")
    text = p.read_text()
  except (OSError, UnicodeError) as e:
    raise ConfigError(f"cannot read config file {p}: {e}") from None
  try:
    if p.suffix in (".yaml", ".yml"):
      return _yaml_load(text)
    return _json_load(text)
  except Exception as e:  # noqa: BLE001 - any parse error becomes one message
    how = ("" if p.suffix in (".yaml", ".yml", ".json") else
           " (read as JSON: a file not named .yaml, .yml or .json is read "
           "as JSON; name a YAML file .yaml or .yml)")
    raise ConfigError(f"cannot parse config file {p}{how}: {e}") from None


PATH_FIELDS = (("data", "path"), ("data", "data_dir"),
               ("delays", "trace_path"), ("delays", "availability_trace"))
"""The fields that hold a file or folder path."""


def resolve_paths(raw, folder):
  """``raw`` (a parsed configuration) with each relative path of
  ``PATH_FIELDS`` joined to ``folder`` (made absolute); ``~`` is expanded.
  Anything that is not a mapping, or not a string path, is left for the
  checks to name.

  Example:
    >>> resolve_paths({"data": {"path": "d/mnist.npz"}}, "/cfg")
    {'data': {'path': '/cfg/d/mnist.npz'}}
    >>> resolve_paths({"data": {"path": "/abs/m.npz"}}, "/cfg")
    {'data': {'path': '/abs/m.npz'}}
  """
  if not isinstance(raw, dict):
    return raw
  out = dict(raw)
  base = os.path.abspath(folder)
  for sec, name in PATH_FIELDS:
    values = out.get(sec)
    if not isinstance(values, dict) or not isinstance(values.get(name), str):
      continue
    v = os.path.expanduser(values[name])
    if v.strip() and not os.path.isabs(v):
      v = os.path.normpath(os.path.join(base, v))
    out[sec] = {**values, name: v}
  return out


def read_resolved(path):
  """``read(path)`` with its paths relative to the file's folder
  (``resolve_paths``)."""
  return resolve_paths(read(path), Path(path).parent)


# Writing one (``config.to_yaml``): comments from the schema.


def yaml_scalar(v) -> str:
  """``v`` as a YAML scalar (``null``, ``true``, JSON for strings and
  mappings)."""
  if v is None:
    return "null"
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, (str, dict)):
    return json.dumps(v)
  return repr(v)


def member_lines(sec: str, f) -> list:
  """Comment lines under a field: a ``Choice``'s members (one-line doc and
  where each parameter is set), an ``Extra``'s parameters (meaning, range)."""
  fam = schema.family(sec, f.choice if isinstance(f, schema.Extra)
                      else f.name)
  if not isinstance(fam, schema.Registry):
    return []
  lines = []
  for m in fam.members():
    if isinstance(f, schema.Choice):
      where = []  # where each parameter the configuration reaches is set
      for p in m.params:
        field = schema.member_field(sec, f.name, m.name, p.name)
        if field:
          where.append(field.partition(".")[2])  # without the section
      sets = f" [{', '.join(where)}]" if where else ""
      lines.append(f"  #   {m.name}: {m.doc}{sets}")
      continue
    for p in m.params:
      if schema.bound_field(sec, f.choice, m.name, p.name) is None:
        need = ("required" if p.default is schema.REQUIRED
                else f"default {yaml_scalar(p.default)}")
        lines.append(f"  #   {m.name}.{p.name}: {p.meaning}; "
                     f"{schema.describe(p)}; {need}")
  return lines
