#!/usr/bin/env python
"""Probe: at which example-array size XLA:CPU starts splitting the client's
row gather over its intra-op thread pool (``outer_dimension_partitions`` in
the compiled HLO of one ``client.update``), with the old whole-array gather
and with ``client._client_rows``; plus the time of a jitted loop of 20,000
updates (4 examples of 16 floats, logistic regression) at each size."""
import os, re, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: F401
import jax, jax.numpy as jnp, numpy as np, optax
from fedasync_jax import client, models

E, D, R = 4, 16, 20000
new_rows = client._client_rows
def old_rows(arr, offset, local, max_examples):
  return arr[offset + local]
model = models.logistic_regression(D, 10)
params = model.init(jax.random.key(0))
hp = client.ClientHParams(jnp.float32(1), jnp.float32(0))
for rows in (4000, 8000, 8192, 8200, 40000, 4000000):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((rows, D), dtype=np.float32))
  y = jnp.asarray(rng.integers(0, 10, rows).astype(np.int32))
  offs = jnp.asarray(rng.integers(0, rows // E, R).astype(np.int32) * E)
  line = [f"{rows:8d} rows ({rows * D * 4 / 1024:8.0f} KiB x)"]
  for name, fn in (("old", old_rows), ("new", new_rows)):
    client._client_rows = fn
    upd = client.local_update(model.loss, optax.sgd(0.1), batch_size=E,
                              max_examples=E)
    def loop(p, x, y, offs):
      def body(i, p):
        res, _ = upd.update(p, client.ClientRef(x, y, offs[i], E),
                            jax.random.fold_in(jax.random.key(0), i), hp)
        return res.params
      return jax.lax.fori_loop(0, R, body, p)
    f = jax.jit(loop)
    txt = f.lower(params, x, y, offs).compile().as_text()
    split = re.findall(r'outer_dimension_partitions":\["(\d+)"', txt)
    f(params, x, y, offs)
    ts = []
    for _ in range(3):
      t = time.perf_counter()
      jax.block_until_ready(f(params, x, y, offs))
      ts.append((time.perf_counter() - t) / R * 1e6)
    line.append(f"{name}: split fusions {split or 'none'}, "
                f"{min(ts):.2f} us/update")
  print("  ".join(line), flush=True)
client._client_rows = new_rows
