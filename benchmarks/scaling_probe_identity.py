#!/usr/bin/env python
"""Probe: ``client._client_rows`` (the client's block, then the rows) gives
bit-identical runs to the plain whole-array gather ``arr[offset + local]``
it replaced. Ragged clients (the last one shorter than max_examples, at the
end of the array, so the block start is clamped), epochs and fixed-steps
modes, map and vmap batching, and the reference simulator."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: F401  (puts the checkout on sys.path)
import jax, jax.numpy as jnp, numpy as np, optax
from fedasync_jax import (client, data, delays, executor, models, reference,
                          rules, scheduler, staleness)

new_rows = client._client_rows
def old_rows(arr, offset, local, max_examples):
  return arr[offset + local]

rng = np.random.default_rng(1)
counts = rng.integers(1, 23, 40)
counts[-1] = 3  # last client shorter than max_examples: clamped block start
D = 12
xs = [rng.standard_normal((c, D)).astype(np.float32) for c in counts]
ys = [rng.integers(0, 5, c).astype(np.int32) for c in counts]
ds = data.from_client_arrays(xs, ys)
model = models.mlp(hidden=(16,), num_classes=5, input_dim=D)
params = model.init(jax.random.key(0))
sched = scheduler.asynchronous(
    delays.delay_model(delays.device_speeds("lognormal", len(counts),
                                            sigma=1.0, seed=0),
                       counts.astype(float)),
    num_updates=300, concurrency=8, seed=0)
rule = rules.fedasync(0.6, staleness.polynomial(0.5))
cases = {
    "epochs2_b5": dict(batch_size=5, epochs=2),
    "steps7_b4": dict(batch_size=4, steps=7),
    "b32_whole": dict(batch_size=32, epochs=1),
}
bad = 0
for name, kw in cases.items():
  upd = client.local_update(model.loss, optax.sgd(0.1),
                            max_examples=int(counts.max()), **kw)
  for runner in ("map", "vmap", "reference"):
    outs = {}
    for which, fn in (("old", old_rows), ("new", new_rows)):
      client._client_rows = fn
      jax.clear_caches()
      if runner == "reference":
        out = reference.run(rule, upd, params, ds, sched,
                                 key=jax.random.key(3))
      else:
        out = executor.simulate(rule, upd, params, ds, sched,
                                key=jax.random.key(3), batching=runner)
      outs[which] = (jax.tree.leaves(jax.device_get(out.state.params)),
                     np.asarray(out.arrivals["train_loss"]))
    same = all(np.array_equal(a, b) for a, b in
               zip(outs["old"][0], outs["new"][0])) and np.array_equal(
                   outs["old"][1], outs["new"][1], equal_nan=True)
    bad += not same
    print(f"{name:12s} {runner:9s} bit-identical: {same}")
client._client_rows = new_rows
print("ALL IDENTICAL" if not bad else f"{bad} DIFFER")
sys.exit(1 if bad else 0)
