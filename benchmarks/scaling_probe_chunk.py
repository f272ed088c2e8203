#!/usr/bin/env python
"""Probe: the executor's compiled chunk (the batched `make_plan` path, width
from the concurrency, `map`) on the 1e6 plan, with the 1e6
example array vs the 1e3 one (offsets folded into it), interleaved;
dumps the HLO for inspection."""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C
import jax, jax.numpy as jnp, numpy as np, optax
from fedasync_jax import (client, data, delays, executor, models, plan as
                          plan_lib, rules, scheduler, staleness)
from fedasync_jax.sim.tasks import task_hparams

E, D, POP, SMALL = 4, 16, 1_000_000, 1000
UPD = int(os.environ.get("UPD", 30000))
model = models.logistic_regression(D, 10)
params = model.init(jax.random.key(0))
upd = client.local_update(model.loss, optax.sgd(0.1), batch_size=E,
                          max_examples=E, epochs=1)
rule = rules.fedasync(0.6, staleness.polynomial(0.5))
rng = np.random.default_rng(0)
counts = np.full(POP, E, np.int64)
sched = scheduler.asynchronous(
    delays.delay_model(delays.device_speeds("lognormal", POP, sigma=1.0,
                                            seed=0), counts.astype(float)),
    num_updates=UPD, concurrency=50, seed=0)
def mk(n_rows, offsets):
  r = np.random.default_rng(0)
  x = r.standard_normal((n_rows, D), dtype=np.float32)
  y = np.argmax(x @ r.standard_normal((D, 10)).astype(np.float32),
                axis=1).astype(np.int32)
  return data.ClientDataset(x, y, offsets, counts)
big = mk(POP * E, np.arange(POP, dtype=np.int64) * E)
small = mk(SMALL * E, (np.arange(POP, dtype=np.int64) % SMALL) * E)
chunk_steps = int(os.environ.get("CHUNK", 64))
width = plan_lib.default_width(sched.stats["realised_concurrency"])
p = plan_lib.make_plan(sched, width=width)
p = p.pad_steps(-(-p.num_steps // chunk_steps) * chunk_steps)
hp_table = jax.tree.map(jnp.asarray, task_hparams(sched))
arrays = executor.plan_arrays(p, sched, None)
chunks = [c for _, c in executor._chunks(arrays, chunk_steps)]
devs = {"big": executor.device_data(big), "small": executor.device_data(small)}
prog = executor.make_program(lambda _: rule, upd, batching="map",
                             params_like=params, data_like=devs["big"])
run_chunk = jax.jit(prog.run_chunk, donate_argnums=0)
carry0 = prog.init(params, p.num_snaps, p.num_slots, p.init_snap)
key = jax.random.key(0)
if os.environ.get("HLO"):
  for nm in ("small",):
    open(os.environ["HLO"] + "." + nm, "w").write(run_chunk.lower(carry0, chunks[0], key, hp_table, devs[nm]).compile().as_text())
  txt = run_chunk.lower(carry0, chunks[0], key, hp_table,
                        devs["big"]).compile().as_text()
  open(os.environ["HLO"], "w").write(txt)
def run(dev):
  carry = prog.init(params, p.num_snaps, p.num_slots, p.init_snap)
  carry, _ = run_chunk(carry, chunks[0], key, hp_table, dev)
  jax.block_until_ready(carry)
  t = time.perf_counter()
  for c in chunks[1:]:
    carry, out = run_chunk(carry, c, key, hp_table, dev)
    jax.device_get(out)
  jax.block_until_ready(carry)
  return (time.perf_counter() - t)
n_arr = int(arrays["arr_valid"][chunk_steps:].sum())
print("width", width, "steps", p.num_steps, "arrivals timed", n_arr,
      "trained", int(arrays["wave_valid"][chunk_steps:].sum()))
run(devs["big"]); run(devs["small"])
res = {"big": [], "small": []}
for r in range(int(os.environ.get("REPS", 5))):
  for k in (("big", "small") if r % 2 == 0 else ("small", "big")):
    res[k].append(run(devs[k]) / n_arr * 1e6)
for k, v in res.items():
  print(k, "us/update", [round(a, 2) for a in v], "median",
        round(C.median(v), 2))
print("ratio small/big time", C.median([b / a for a, b in
                                         zip(res["small"], res["big"])]))
