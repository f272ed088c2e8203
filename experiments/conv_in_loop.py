"""The library CNN's gradient inside the client scan: conv="lax" vs default.

The executor trains clients with ``client.local_update``, a ``lax.scan``
over local steps. On XLA:CPU the backward convolutions of
``lax.conv_general_dilated`` run many times slower inside a loop than
outside one (jax-ml/jax#12868); ``fedasync_jax/models/conv.py`` gives the
library models a loop-friendly gradient, used by default on CPU. This script times
the AFL paper's MNIST CNN (Adam, batch 64) inside ``client.local_update``
with ``models.mnist_cnn(conv="lax")`` and with the default
(``models.mnist_cnn()``), plus the default model's jitted step outside any
loop as a reference, and writes ``summary.md`` into ``--out``.
Random inputs; no data file needed.

Recorded (experiments/results/conv_in_loop/): ``python
experiments/conv_in_loop.py --quick --out experiments/results/conv_in_loop``.
``--smoke``: one local step, written
to ``--out``, at batch 8.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SMOKE_OUTPUT = "summary.md"


def parse_args(argv):
  p = common.base_parser(__doc__.splitlines()[0], reads_data=False)
  p.add_argument("--steps", type=common.positive_int, default=None,
                 help="local steps timed (quick 3, full 10)")
  return common.parse(p, argv, resolve)


def resolve(args):
  """Fills in the steps of ``--smoke`` / ``--quick`` / the full length."""
  args.steps = args.steps or (1 if args.smoke else 3 if args.quick else 10)


def length(args) -> str:
  """The summary's first line (``common.run_length``)."""
  return common.run_length(args, parse_args, {"--steps": "steps"},
                           smoke=args.smoke, quick=args.quick)


def measure(args) -> tuple:
  """``(batch size, {variant: seconds per local step})``."""
  steps = args.steps
  import jax
  import jax.numpy as jnp
  import optax
  from fedasync_jax import client, models

  key = jax.random.key(0)
  b = 8 if args.smoke else 64  # --smoke: batch 8 (the slow path is slow)
  n = b * steps
  x = jax.random.normal(key, (n, 28, 28))
  y = jnp.arange(n) % 10
  res = {}

  default = models.mnist_cnn()
  params = default.init(key)
  opt = optax.adam(1e-3)
  mask = jnp.ones(b)

  @jax.jit
  def step(p_, s_, xb, yb):
    _, gr = jax.value_and_grad(default.loss)(p_, xb, yb, mask)
    u, s_ = opt.update(gr, s_, p_)
    return optax.apply_updates(p_, u), s_
  s = opt.init(params)
  jax.block_until_ready(step(params, s, x[:b], y[:b]))  # compile
  t = time.perf_counter()
  p_ = params
  for i in range(steps):
    p_, s = step(p_, s, x[i * b:(i + 1) * b], y[i * b:(i + 1) * b])
  jax.block_until_ready(p_)
  res["default, one jitted step per call (no loop; reference)"] = (
      time.perf_counter() - t) / steps

  for name, model in (('conv="lax" in client.local_update (scan)',
                       models.mnist_cnn(conv="lax")),
                      ("default in client.local_update (scan)", default)):
    u = client.local_update(model.loss, optax.adam(1e-3), batch_size=b,
                            max_examples=n, steps=steps)
    f = jax.jit(lambda p, k, u=u: u.update(
        p, client.ClientRef(x, y, 0, n), k, client.ClientHParams()))
    jax.block_until_ready(f(params, key))  # compile
    t = time.perf_counter()
    jax.block_until_ready(f(params, key))
    res[name] = (time.perf_counter() - t) / steps
  return b, res


def main(argv=None):
  args = parse_args(argv)
  prov = common.Provenance()
  out_dir, _ = common.prepare(args, "conv_in_loop", None)
  with common.interruptible(out_dir):
    b, res = measure(args)
    write(args, out_dir, prov, b, res)


def write(args, out_dir, prov, b, res) -> None:
  """Writes ``summary.md`` and moves the folder into place."""
  steps = args.steps
  lines = [f"| models.mnist_cnn variant | seconds per local step (batch {b}) "
           "| examples/s |", "|---|---|---|"]
  for k, v in res.items():
    lines.append(f"| {k} | {v:.3f} | {b / v:,.0f} |")
  slow = res['conv="lax" in client.local_update (scan)']
  fast = res["default in client.local_update (scan)"]
  md = f"""# The library CNN's gradient inside the client scan on XLA:CPU

{length(args)}

{chr(10).join(lines)}

Inside `client.local_update`'s scan, `models.mnist_cnn(conv="lax")` (plain
`lax.conv_general_dilated`) is {slow / fast:.0f}x slower per step than the
default model, whose convolutions use the loop-friendly gradient of
`fedasync_jax/models/conv.py` on CPU (same parameters and outputs). Cause:
XLA:CPU's slow path for the backward convolutions of `lax.conv_general_dilated`
inside `while` loops (jax-ml/jax#12868). The experiments use the default.
Timings on a shared, noisy 2-core CPU; {steps} steps each.

## Provenance

{prov.markdown()}"""
  common.write_text(out_dir / "summary.md", md)
  common.finish(out_dir)
  print(md)


if __name__ == "__main__":
  main()
