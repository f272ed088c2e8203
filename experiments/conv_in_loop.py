"""Reproducer: CNN gradients inside the library's client scan on XLA:CPU.

The executor trains clients with ``client.local_update``, a ``lax.scan``
over local steps (inside the executor's own scans). On XLA:CPU the backward
convolutions of ``lax.conv_general_dilated`` run many times slower inside a
loop than outside one (jax-ml/jax#12868). This script measures, for the AFL
paper's MNIST CNN (Adam, batch 64):

1. the library model's loss gradient, one jitted call per step (no loop);
2. the library's ``client.local_update`` (a scan) with the library model;
3. the same with ``fast_models.mnist_cnn`` (``loopconv``: same forward and
   parameters, backward as per-tap matrix products).

and writes experiments/results/conv_in_loop/summary.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main(argv=None):
  p = common.base_parser(__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=None,
                 help="local steps timed (quick 3, full 10)")
  args = p.parse_args(argv)
  prov = common.Provenance()
  steps = args.steps or (3 if args.quick else 10)
  out_dir = args.out or common.RESULTS / "conv_in_loop"
  out_dir.mkdir(parents=True, exist_ok=True)

  import jax
  import jax.numpy as jnp
  import optax
  from fedasync_jax import client, models
  import fast_models

  key = jax.random.key(0)
  x = jax.random.normal(key, (4096, 28, 28))
  y = jnp.arange(4096) % 10
  B = 64
  res = {}

  lib = models.mnist_cnn()
  params = lib.init(key)
  opt = optax.adam(1e-3)
  mask = jnp.ones(B)

  @jax.jit
  def step(p_, s_, xb, yb):
    _, gr = jax.value_and_grad(lib.loss)(p_, xb, yb, mask)
    u, s_ = opt.update(gr, s_, p_)
    return optax.apply_updates(p_, u), s_
  s = opt.init(params)
  jax.block_until_ready(step(params, s, x[:B], y[:B]))  # compile
  t = time.perf_counter()
  p_ = params
  for i in range(steps):
    p_, s = step(p_, s, x[i * B:(i + 1) * B], y[i * B:(i + 1) * B])
  jax.block_until_ready(p_)
  res["library model, one jitted step per call (no loop)"] = (
      time.perf_counter() - t) / steps

  for name, model in (("library model in client.local_update (scan)", lib),
                      ("loopconv model in client.local_update (scan)",
                       fast_models.mnist_cnn())):
    u = client.local_update(model.loss, optax.adam(1e-3), batch_size=B,
                            max_examples=4096, steps=steps)
    f = jax.jit(lambda p, k: u.update(p, client.ClientRef(x, y, 0, 4096), k,
                                      client.ClientHParams()))
    jax.block_until_ready(f(params, key))  # compile
    t = time.perf_counter()
    jax.block_until_ready(f(params, key))
    res[name] = (time.perf_counter() - t) / steps

  lines = ["| variant | seconds per local step (batch 64) | examples/s |",
           "|---|---|---|"]
  for k, v in res.items():
    lines.append(f"| {k} | {v:.3f} | {B / v:,.0f} |")
  slow = res["library model in client.local_update (scan)"]
  fast = res["loopconv model in client.local_update (scan)"]
  md = f"""# CNN gradient inside the client scan on XLA:CPU

{chr(10).join(lines)}

Inside the scan, the library's CNN step is {slow / fast:.0f}x slower than
the loop-friendly version (`loopconv.py`), which is what the AFL
experiments use. Cause: XLA:CPU's slow path for the backward convolutions
of `lax.conv_general_dilated` inside `while` loops (jax-ml/jax#12868).
Timings on a shared, noisy 2-core CPU; {steps} steps each.

## Provenance

{prov.markdown()}"""
  (out_dir / "summary.md").write_text(md)
  print(md)


if __name__ == "__main__":
  main()
