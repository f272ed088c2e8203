"""The pure pieces of an asynchronous FL simulation, with no simulator.

``tree`` (pytree helpers), ``checks`` (argument validation), ``registry``
(families that declare their members once), ``types`` (the types every
layer shares), ``staleness`` (``s(tau)``), ``rules`` (server rules),
``robust`` (guarded rules), ``optimizers`` (optax optimizers by name),
``client`` (one client's local update) and ``arrival`` (the one step that
applies an arrival).
"""

# ``rules`` and ``afl`` import each other (``afl`` registers into ``RULES``,
# ``rules`` re-exports it); loading ``rules`` first, whichever core module is
# asked for, keeps that cycle in the order that works.
from fedasync_jax.core import rules  # noqa: E402,F401
