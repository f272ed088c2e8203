"""The run layer: configuration, building a run from it, training and
evaluating, outputs on disk, and the command line.

``schema`` (the configuration's fields, derived from the registries),
``config`` (dataclasses, files, overrides, checks), ``setup`` (data, model,
rule, delays and schedule from a configuration), ``progress`` (the progress
bar), ``outputs`` (CSV/JSON, plots), ``checkpoints`` (signals, checkpoints, resume), ``grid``
(sweepable fields and grids), ``experiment`` (``train_and_evaluate``, and
``sweep_and_evaluate`` from ``sweep_run``), ``sweep_outputs`` (a sweep's
long history, summary over seeds, member folders and plots), ``results`` (atomic CSV/JSON writers), ``demo`` and
``cli``.
"""
