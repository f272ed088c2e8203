"""Ctrl-C and SIGTERM before a run takes the signals over.

A run or sweep catches SIGINT and SIGTERM only once its data are loaded
(``checkpoints.stop_on_signals``: from then on a signal stops it at the
next chunk, after a checkpoint). Before that (parsing, loading data,
drawing the schedule) the command line stops at once, writing nothing:
``interrupt_on_signals`` turns both signals into ``KeyboardInterrupt``
and ``stopped_line`` is the one line it prints (exit status 130).

Example:
  >>> try:
  ...   with interrupt_on_signals():
  ...     signal.raise_signal(signal.SIGTERM)
  ... except KeyboardInterrupt as e:
  ...   print(stopped_line(e, "run")[:52])
  fedasync-jax: stopped by SIGTERM before training sta
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Optional


@contextlib.contextmanager
def interrupt_on_signals():
  """While inside, SIGINT and SIGTERM raise ``KeyboardInterrupt`` naming
  the signal (in the main thread; elsewhere this does nothing).

  Python drops an exception raised where it cannot propagate (a garbage
  collection callback, such as JAX's, or a ``__del__``), printing
  "Exception ignored ..." and going on. An interrupt dropped so is sent
  again to the main thread a moment later (from a timer thread, once the
  callback has returned; as a real signal, so that it also ends a blocking
  read) instead of being lost. The previous handlers and
  ``sys.unraisablehook`` come back after.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def stop(signum, frame):
    del frame
    raise KeyboardInterrupt(signal.Signals(signum).name)

  hook, main = sys.unraisablehook, threading.main_thread().ident

  def send_again(unraisable):
    if unraisable.exc_type is None or not issubclass(unraisable.exc_type,
                                                     KeyboardInterrupt):
      hook(unraisable)
      return
    sig = (signal.SIGTERM if str(unraisable.exc_value) == "SIGTERM"
           else signal.SIGINT)
    threading.Timer(0.01, lambda: inside and signal.pthread_kill(
        main, sig)).start()

  previous = {sig: signal.signal(sig, stop)
              for sig in (signal.SIGINT, signal.SIGTERM)}
  sys.unraisablehook = send_again
  inside = True
  try:
    yield
  finally:
    inside = False
    sys.unraisablehook = hook
    for sig, h in previous.items():
      signal.signal(sig, h)


def stopped_line(e: KeyboardInterrupt, command: Optional[str]) -> str:
  """The line printed when a command was stopped by ``e`` before a run or
  sweep caught the signal, when nothing has been written.

  Example:
    >>> stopped_line(KeyboardInterrupt(), "config")
    'fedasync-jax: stopped by SIGINT; nothing was written'
  """
  name = str(e) if str(e).startswith("SIG") else "SIGINT"
  if command in ("run", "sweep"):
    what = (" before training started; nothing was written (the output "
            "folder and a checkpoint there are unchanged)")
  else:
    what = "" if command == "demo" else "; nothing was written"
  return f"fedasync-jax: stopped by {name}{what}"
