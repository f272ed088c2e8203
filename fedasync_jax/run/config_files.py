"""Reading a configuration file: size, syntax and YAML aliases checked.

``read`` returns the parsed text of a JSON (``.json``) or YAML
(``.yaml``/``.yml``) file, for ``config.load`` to validate. It refuses, with
one ``ConfigError`` naming the file, what would otherwise exhaust memory or
time before any value is checked: a file larger than ``MAX_FILE_BYTES`` and
YAML aliases (``*name``), which a configuration never needs and which, nested,
expand exponentially (the "billion laughs" alias bomb).

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
"""

from __future__ import annotations

import json
from pathlib import Path

from fedasync_jax.run.schema import ConfigError

MAX_FILE_BYTES = 1 << 20
"""The largest configuration file ``read`` accepts (1 MiB)."""


def _yaml_load(text: str):
  """``yaml.safe_load`` refusing aliases."""
  import yaml  # pylint: disable=import-outside-toplevel

  class NoAliases(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    def compose_node(self, parent, index):
      if self.check_event(yaml.AliasEvent):
        line = self.peek_event().start_mark.line + 1
        raise yaml.YAMLError(f"line {line}: YAML aliases (*name) are not "
                             f"allowed in a configuration")
      return super().compose_node(parent, index)
  return yaml.load(text, Loader=NoAliases)  # noqa: S506 - a SafeLoader


def read(path):
  """The parsed content of a JSON or YAML configuration file.

  Raises:
    ConfigError: naming the file: unreadable, larger than
      ``MAX_FILE_BYTES``, bad syntax, or YAML aliases.
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
    return json.loads(text)
  except Exception as e:  # noqa: BLE001 - any parse error becomes one message
    raise ConfigError(f"cannot parse config file {p}: {e}") from None
