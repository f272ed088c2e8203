#!/usr/bin/env python
"""A/B of the client's example gather at 1e3 vs 1e6 clients, interleaved in
ONE process (paired ratios), through ``executor.simulate`` as a user calls
it (library defaults), with the scaling benchmark's workload (4 examples of
16 floats per client, logistic regression).

* ``new``: ``client._client_rows`` (gather from the client's block of
  ``max_examples`` rows, a fused dynamic slice);
* ``old``: the whole-array gather ``arr[offset + local]`` it replaced.

For each variant it also counts the fusions that XLA:CPU splits over its
intra-op thread pool (``outer_dimension_partitions`` in the compiled HLO of
a direct ``client.update`` on that population's arrays).

Usage: python benchmarks/scaling_gather_ab.py [--updates 100000] [--repeats 3]
"""
import argparse, json, os, re, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C
import jax, jax.numpy as jnp, numpy as np, optax
from fedasync_jax import (client, data, delays, executor, models, rules,
                          scheduler, staleness)

ap = argparse.ArgumentParser()
ap.add_argument("--updates", type=int, default=100000)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--pops", default="1000,1000000")
ap.add_argument("--width", type=int, default=None)
args = ap.parse_args()
STARTED, LOAD0 = time.perf_counter(), C.loadavg()
E, D = 4, 16
new_rows = client._client_rows
def old_rows(arr, offset, local, max_examples):
  return arr[offset + local]
VARIANTS = {"old": old_rows, "new": new_rows}

model = models.logistic_regression(D, 10)
params = model.init(jax.random.key(0))
rule = rules.fedasync(0.6, staleness.polynomial(0.5))
def make_upd():  # a fresh function object per variant: no cache sharing
  return client.local_update(model.loss, optax.sgd(0.1), batch_size=E,
                             max_examples=E, epochs=1)
setups = {}
for pop in (int(float(p)) for p in args.pops.split(",")):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((pop * E, D), dtype=np.float32)
  y = np.argmax(x @ rng.standard_normal((D, 10)).astype(np.float32),
                axis=1).astype(np.int32)
  counts = np.full(pop, E, np.int64)
  ds = data.ClientDataset(x, y, np.arange(pop, dtype=np.int64) * E, counts)
  sched = scheduler.asynchronous(
      delays.delay_model(delays.device_speeds("lognormal", pop, sigma=1.0,
                                              seed=0), counts.astype(float)),
      num_updates=args.updates, concurrency=50, seed=0)
  setups[pop] = (ds, sched)

partitions = {}
for v, fn in VARIANTS.items():
  client._client_rows = fn
  for pop, (ds, _) in setups.items():
    upd = make_upd()
    ref = client.ClientRef(jnp.asarray(ds.x), jnp.asarray(ds.y),
                           jnp.int32(0), jnp.int32(E))
    txt = jax.jit(upd.update).lower(
        params, ref, jax.random.key(0), client.ClientHParams(
            jnp.float32(1), jnp.float32(0))).compile().as_text()
    partitions[f"{v}_{pop}"] = re.findall(
        r'outer_dimension_partitions":\[([^\]]*)\]', txt)
C.log(f"  split fusions: {partitions}")

names = [(v, pop) for v in VARIANTS for pop in setups]
rates = {f"{v}_{p}": [] for v, p in names}
out_params = {}
for r in range(args.repeats):
  order = names[r % len(names):] + names[:r % len(names)]
  for v, pop in order:
    client._client_rows = VARIANTS[v]
    jax.clear_caches()
    ds, sched = setups[pop]
    res, out = C.simulate_timed(executor, rule, make_upd(), params, ds, sched,
                                jax.random.key(0), width=args.width)
    rates[f"{v}_{pop}"].append(res["steady_updates_per_s"])
    out_params[f"{v}_{pop}"] = [np.asarray(a) for a in
                                jax.tree.leaves(out.state.params)]
    C.log(f"    repeat {r + 1} {v} P={pop}: {res['steady_updates_per_s']:.0f}"
          f" updates/s steady (width {res['width']}), load {C.loadavg()}")
client._client_rows = new_rows
a, b = (str(p) for p in setups)
def paired(x, y):
  return C.median([q / p for p, q in zip(rates[x], rates[y])])
result = {
    "config": {"updates": args.updates, "repeats": args.repeats,
               "examples_per_client": E, "dim": D, "concurrency": 50,
               "width": args.width or "library default"},
    "steady_updates_per_s": rates,
    "median_steady_updates_per_s": {k: C.median(v) for k, v in rates.items()},
    "paired_ratio_new_1e6_over_new_1e3": paired(f"new_{a}", f"new_{b}"),
    "paired_ratio_old_1e6_over_old_1e3": paired(f"old_{a}", f"old_{b}"),
    "paired_ratio_new_over_old_1e6": paired(f"old_{b}", f"new_{b}"),
    "paired_ratio_new_over_old_1e3": paired(f"old_{a}", f"new_{a}"),
    "split_fusions_in_client_update": partitions,
    "final_params_bit_identical_old_vs_new": {
        p: all(np.array_equal(u, w) for u, w in
               zip(out_params[f"old_{p}"], out_params[f"new_{p}"]))
        for p in setups},
}
C.finish("scaling_gather_ab", result, quick=False, started=STARTED,
         load_start=LOAD0)
