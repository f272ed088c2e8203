"""Simulation: delays, client selection and the event schedule (numpy),
per-task inputs, the execution plan, the strategies that train a step's
clients, the compiled program and its host driver, ``simulate`` and
sweeps, the simulator as one pure function (``pure``), and the
one-client-at-a-time reference simulator that the tests use as the oracle.
"""
