#!/usr/bin/env python
"""Probe: the W1 client update (MNIST 784-200-200-10 MLP, 1000 Dirichlet(0.5)
clients, batch 10, 1 epoch) with the old whole-array gather vs
``client._client_rows``, interleaved: a jitted loop over 300 client updates
(random clients), and the final parameters compared bitwise."""
import os, re, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C
import jax, jax.numpy as jnp, numpy as np, optax
from fedasync_jax import client, models

new_rows = client._client_rows
def old_rows(arr, offset, local, max_examples):
  return arr[offset + local]
ds, _, _ = C.w1_data(C.DEFAULT_MNIST)
M = ds.max_count
model = models.mlp()
params = model.init(jax.random.key(0))
hp = client.ClientHParams(jnp.float32(1), jnp.float32(0))
x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
cl = np.random.default_rng(0).integers(0, ds.num_clients, 300)
offs = jnp.asarray(ds.offsets[cl].astype(np.int32))
cnts = jnp.asarray(ds.counts[cl].astype(np.int32))
fs, outs, ts = {}, {}, {"old": [], "new": []}
for name, fn in (("old", old_rows), ("new", new_rows)):
  client._client_rows = fn
  upd = client.local_update(model.loss, optax.sgd(0.05), batch_size=10,
                            max_examples=M)
  def loop(p, x, y, offs, cnts, upd=upd):
    def body(i, p):
      res, _ = upd.update(p, client.ClientRef(x, y, offs[i], cnts[i]),
                          jax.random.fold_in(jax.random.key(0), i), hp)
      return res.params
    return jax.lax.fori_loop(0, offs.shape[0], body, p)
  fs[name] = jax.jit(loop)
  txt = fs[name].lower(params, x, y, offs, cnts).compile().as_text()
  print(name, "split fusions", re.findall(
      r'outer_dimension_partitions":\["(\d+)"', txt), flush=True)
  outs[name] = jax.tree.leaves(fs[name](params, x, y, offs, cnts))
client._client_rows = new_rows
for r in range(6):
  for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
    t = time.perf_counter()
    jax.block_until_ready(fs[name](params, x, y, offs, cnts))
    ts[name].append(time.perf_counter() - t)
steps = int(np.sum(np.ceil(ds.counts[cl] / 10)))
print(f"max_examples {M}, {steps} local steps in 300 updates")
for k, v in ts.items():
  print(k, "ms per update", [round(t / 300 * 1e3, 3) for t in v],
        "median", round(C.median(v) / 300 * 1e3, 3))
print("paired new/old time", C.median([b / a for a, b in
                                       zip(ts["old"], ts["new"])]))
print("bit-identical", all(np.array_equal(a, b) for a, b in
                           zip(outs["old"], outs["new"])))
