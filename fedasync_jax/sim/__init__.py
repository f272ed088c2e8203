"""Simulation: delays and the event schedule (numpy), the execution plan,
the compiled program and its host driver, sweeps, and the
one-client-at-a-time reference simulator that the tests use as the oracle.
"""
