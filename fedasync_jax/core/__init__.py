"""The pure pieces of an asynchronous FL simulation, with no simulator.

``tree`` (pytree helpers), ``checks`` (argument validation), ``registry``
(families that declare their members once), ``types`` (the types every
layer shares), ``staleness`` (``s(tau)``), ``rules`` (server rules),
``robust`` (guarded rules), ``optimizers`` (optax optimizers by name),
``client`` (one client's local update) and ``arrival`` (the one step that
applies an arrival).
"""
