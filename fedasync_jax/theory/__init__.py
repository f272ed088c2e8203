"""Theory lab: problems with known constants, exact tracking, and bounds.

Three parts, all pure functions (numpy for set-up, jit-traceable JAX for
anything that runs inside a simulation):

1. **Problems with known constants** (``problems``, built in
   ``construction``, measured by ``measures``): federated least squares
   with known smoothness ``L``, heterogeneity ``zeta^2``, minibatch variance
   ``sigma^2`` and optimum ``w*``, and a non-convex variant with exact ``L``.
2. **Exact tracking** (``tracking``): realised staleness, and a pure-JAX
   runner that measures the drift ``||w_t - w_{t - tau}||^2`` of every
   update and equals the reference simulator.
3. **Bounds as functions** of a run's constants (``bounds``), and the
   statistics to compare them with measurements (``fits``): fitted
   constants, log-log slopes, rate curves ``A T^-p + B/T`` with a
   goodness of fit; and client-sampling variance (``sampling``).

Papers:

* Koloskova, Stich, Jaggi 2022, "Sharper Convergence Guarantees for
  Asynchronous SGD for Distributed and Federated Learning",
  arXiv:2206.08307.
* Lian, Huang, Li, Liu 2015, "Asynchronous Parallel Stochastic Gradient for
  Nonconvex Optimization", arXiv:1506.08272.
* Xie, Koyejo, Gupta 2019, "Asynchronous Federated Optimization" (FedAsync),
  arXiv:1903.03934.
* Forootani, Iervolino 2025, "Asynchronous Federated Learning with non-convex
  client objective functions and heterogeneous dataset" (AFL),
  arXiv:2508.01675.

This package re-exports every public name of its modules.

Example:
  >>> from fedasync_jax import theory
  >>> theory.least_squares is theory.problems.least_squares
  True
"""

from fedasync_jax.theory.bounds import (Condition, delayed_sgd_bound,
                                        delayed_sgd_condition,
                                        delayed_sgd_max_step, drift_bound,
                                        koloskova_adaptive_complexity,
                                        koloskova_adaptive_condition,
                                        koloskova_adaptive_rate,
                                        koloskova_constant_complexity,
                                        koloskova_constant_rate,
                                        sqrt_t_bound)
from fedasync_jax.theory.fits import (FitQuality, RateFit, SlopeFit,
                                      fit_constant, goodness_of_fit,
                                      loglog_slope, rate_fit,
                                      weighted_average)
from fedasync_jax.theory.sampling import (empirical_sampling_variance,
                                          sampling_variance)
from fedasync_jax.theory.measures import (client_gradients,
                                          effective_variance, heterogeneity,
                                          metrics_fn, minibatch_variance)
from fedasync_jax.theory.problems import (SHIFTS, Problem, least_squares,
                                          nonconvex)
from fedasync_jax.theory.tracking import (StalenessStats, TrackedRun,
                                          Tracker, TrackerInputs,
                                          TrackerState, per_version,
                                          staleness_stats, track, track_many,
                                          tracker, tracker_inputs)

__all__ = [
    # problems, measures
    "Problem", "SHIFTS", "least_squares", "nonconvex", "client_gradients",
    "heterogeneity", "minibatch_variance", "effective_variance",
    "metrics_fn",
    # tracking
    "StalenessStats", "staleness_stats", "per_version", "TrackerInputs",
    "TrackerState", "Tracker", "tracker", "tracker_inputs", "TrackedRun",
    "track_many", "track",
    # bounds
    "koloskova_constant_complexity", "koloskova_constant_rate",
    "koloskova_adaptive_complexity", "koloskova_adaptive_rate",
    "koloskova_adaptive_condition", "Condition", "delayed_sgd_condition",
    "delayed_sgd_max_step", "delayed_sgd_bound", "sqrt_t_bound",
    "drift_bound",
    # fits
    "weighted_average", "fit_constant", "SlopeFit", "loglog_slope",
    "FitQuality", "goodness_of_fit", "RateFit", "rate_fit",
    "sampling_variance", "empirical_sampling_variance",
]
