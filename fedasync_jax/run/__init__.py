"""The run layer: configuration, building a run from it, training and
evaluating, outputs on disk, and the command line."""
