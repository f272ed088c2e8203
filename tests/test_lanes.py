"""Lane utilisation of a plan, against a count done wave by wave."""

import numpy as np
import pytest

from fedasync_jax import delays, plan, scheduler
from fedasync_jax.sim import lanes


@pytest.mark.parametrize("width", [1, 3, 8])
def test_utilisation_counts_every_wave(width):
  rng = np.random.default_rng(width)
  n = 30
  counts = rng.integers(1, 60, n)
  steps = lanes.client_steps(counts, batch_size=7, epochs=2)
  assert steps.tolist() == [2 * -(-int(c) // 7) for c in counts]
  m = delays.delay_model(rng.lognormal(0, 1, n), counts * 1.0)
  s = scheduler.asynchronous(m, num_updates=150, concurrency=9, seed=1)
  p = plan.make_plan(s, width=width)
  useful = executed = 0
  for row_c, row_v in zip(p.wave_client, p.wave_valid):
    lane_steps = [int(steps[c]) for c, v in zip(row_c, row_v) if v]
    useful += sum(lane_steps)
    executed += width * max(lane_steps, default=0)
  u = lanes.utilisation(p, steps)
  assert (u["useful_steps"], u["executed_lane_steps"]) == (useful, executed)
  # Every applied arrival's client is trained exactly once.
  assert useful == int(steps[s.arrival_client[~s.dropped]].sum())
  assert 0 < u["utilisation"] <= 1
  if width == 1:
    assert u["utilisation"] == 1.0
  with pytest.raises(ValueError, match="direct"):
    lanes.utilisation(plan.make_direct_plan(s), steps)
