"""The ``fedasync-jax`` command's entry point: imports the command line
(and with it JAX) while noting, not raising, Ctrl-C and SIGTERM.

Importing JAX takes a second or more. An interrupt in that time used to end
in a traceback, in an ``ImportError`` from an extension whose
initialisation it broke, or in nothing at all (Python drops an interrupt
that lands in JAX's garbage-collection callback, and the run went on).
Raising inside an extension's initialisation can even crash the process,
so ``main`` only notes a signal while it imports; once the import is done,
a noted signal ends the command with one line and exit code 130, like an
interrupt at any later stage (``run/interrupts.py``).

Example:
  >>> callable(main)
  True
"""

from __future__ import annotations

import importlib
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(argv=None) -> int:
  """Runs ``cli.main(argv)``; a signal while importing it is one line on
  stderr and exit code 130 once the import is done."""
  received = []

  def note(signum, frame):
    del frame
    received.append(signal.Signals(signum).name)

  try:
    previous = {s: signal.signal(s, note) for s in SIGNALS}
  except ValueError:  # not the main thread: signals are not ours to take
    previous = {}
  try:
    cli = importlib.import_module("fedasync_jax.run.cli")
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  if received:
    print(f"fedasync-jax: stopped by {received[0]} while starting; nothing "
          f"was written", file=sys.stderr)
    return 130
  return cli.main(argv)


if __name__ == "__main__":
  sys.exit(main())
