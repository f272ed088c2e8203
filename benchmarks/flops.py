#!/usr/bin/env python
"""Hardware efficiency: achieved FLOP/s of client training vs a big matmul.

Measured in ONE process, interleaved, ``--repeats`` times (medians):

* ``matmul``: a ``--n`` x ``--n`` (2048) fp32 matmul in JAX (jit) and, if
  torch is installed, in PyTorch (2 threads): the machine's attainable
  FLOP/s here and now;
* W1 MLP client training (784-200-200-10, batch 10, SGD): FLOPs per local
  step from ``jax.jit(step).lower(...).compile().cost_analysis()`` (checked
  against the analytic count), timed as
  - ``mlp_step_scan``: 64 local steps in one ``lax.scan`` (the pure
    compute limit of a client update),
  - ``mlp_client_library``: ``client.local_update`` on a median-size W1
    client (``ceil(count/10)`` local steps),
  - ``w1_executor``: ``executor.simulate`` on W1 (1000 updates; library
    default, i.e. the direct path on CPU, and the wave path of width 20),
    useful FLOPs = sum over updates of ``ceil(count/10)`` steps;
* the AFL paper's MNIST CNN (batch 64, Adam): FLOPs per step from the
  cost analysis, timed as one jitted step called from Python
  (``cnn_steploop``), inside ``client.local_update``'s scan
  (``cnn_lib_scan``, 2 steps) and, if torch is installed, in PyTorch
  (``cnn_torch``, FLOPs from the same count).

Reported: GFLOP/s of each and its fraction of the JAX matmul's GFLOP/s.

The LAST line printed is one JSON object, also written to
``<--out>/flops_<date>[_quick].json`` (default ``runs/benchmarks/``, untracked;
``--out benchmarks/results`` records the run).

Recorded: ``results/flops_2026-11-22T040854Z.json`` by
``python benchmarks/flops.py`` and ``results/flops_2026-11-22T055216Z_quick.json``
(the CNN after ``conv.py``) by ``python benchmarks/flops.py --quick``.

Usage:
  python benchmarks/flops.py            # 5 repeats
  python benchmarks/flops.py --quick    # 2 repeats, no executor run
  python benchmarks/flops.py --smoke --out /tmp/x   # small sizes, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
from fedasync_jax.sim import xla_cpu  # noqa: E402

SMOKE_OUTPUT = "flops_*_smoke.json"
B, S, BC, K = 10, 64, 64, 10  # MLP batch, scanned steps; CNN batch, steps


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  C.add_output_args(ap)
  ap.add_argument("--data", default=None)
  ap.add_argument("--n", type=int, default=None, help="matmul size (2048)")
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--w1-updates", type=int, default=None)
  args = ap.parse_args(argv)
  if args.repeats is None:
    args.repeats = 1 if args.smoke else 2 if args.quick else 5
  args.n = args.n or (256 if args.smoke else 2048)
  args.w1_updates = args.w1_updates or (100 if args.smoke else 1000)
  return args


def cost_flops(fn, *args):
  """FLOPs of one call of ``fn`` from XLA's cost analysis, and the
  compiled call (reused for timing, so that nothing compiles twice)."""
  import jax
  compiled = jax.jit(fn).lower(*args).compile()
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):
    ca = ca[0]
  return float(ca.get("flops", float("nan"))), compiled


def mlp_jobs(ds):
  """The W1 MLP jobs: ``(jobs, flop_counts, step_flops, params, update)``."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from fedasync_jax import ClientHParams, ClientRef, client, models
  mlp = models.mlp()
  p = mlp.init(jax.random.key(0))
  X, Y = jnp.asarray(ds.x), jnp.asarray(ds.y)

  def step(p, i):
    idx = i * B + jnp.arange(B)
    g = jax.grad(mlp.loss)(p, X[idx], Y[idx], jnp.ones((B,), jnp.float32))
    return jax.tree.map(lambda w, d: w - 0.05 * d, p, g)
  step_flops, _ = cost_flops(step, p, jnp.int32(0))
  dims = [784, 200, 200, 10]
  macs = sum(dims[i] * dims[i + 1] for i in range(3))
  analytic = (2 * B * macs  # forward
              + 2 * B * macs  # weight gradients
              + 2 * B * sum(dims[i] * dims[i + 1] for i in (1, 2))  # dx
              + 2 * (macs + sum(dims[1:])))  # sgd update
  n_steps = min(S, len(ds.y) // B)
  scan = jax.jit(lambda p: jax.lax.scan(lambda p, i: (step(p, i), None), p,
                                        jnp.arange(n_steps))[0])
  med = int(np.argsort(ds.counts)[ds.num_clients // 2])
  cnt = int(ds.counts[med])
  useful = -(-cnt // B)
  upd = client.local_update(mlp.loss, optax.sgd(0.05), batch_size=B,
                            max_examples=ds.max_count)
  ref = ClientRef(X, Y, int(ds.offsets[med]), cnt)
  lib = jax.jit(lambda p: upd.update(p, ref, jax.random.key(0),
                                     ClientHParams(jnp.float32(1),
                                                   jnp.float32(0))))
  jobs = {"mlp_step_scan": (lambda: scan(p), n_steps * step_flops),
          "mlp_client_library": (lambda: lib(p), useful * step_flops)}
  counts = {"mlp_step_cost_analysis": step_flops,
            "mlp_step_analytic": analytic,
            "mlp_median_client_examples": cnt, "mlp_useful_steps": useful,
            "mlp_scanned_steps_library": upd.num_steps}
  return jobs, counts, step_flops, p, upd


def cnn_jobs(data_path, n_examples):
  """The paper CNN jobs (steps from Python, the library's scan, torch)."""
  import jax
  import jax.numpy as jnp
  import optax
  from fedasync_jax import ClientHParams, ClientRef, client, models
  cnn = models.mnist_cnn()
  p = cnn.init(jax.random.key(0))
  xc, yc, _, _ = C.load_mnist(data_path, flat=False)
  xc, yc = xc[:n_examples, :, :, None], yc[:n_examples]
  Xc, Yc = jnp.asarray(xc), jnp.asarray(yc)
  adam = optax.adam(1e-3)

  def step(p, o, i):
    idx = i * BC + jnp.arange(BC)
    g = jax.grad(cnn.loss)(p, Xc[idx], Yc[idx], jnp.ones((BC,), jnp.float32))
    u, o = adam.update(g, o, p)
    return optax.apply_updates(p, u), o
  o0 = adam.init(p)
  flops, step_j = cost_flops(step, p, o0, jnp.int32(0))
  conv_fwd = 2 * BC * 28 * 28 * 9 * (1 * 32 + 32 * 32 + 32 * 32)
  k = min(K, n_examples // BC)
  steps = [jnp.int32(i) for i in range(k)]

  def steploop():
    q, o = p, o0
    for i in steps:
      q, o = step_j(q, o, i)
    return q
  upd = client.local_update(cnn.loss, adam, batch_size=BC,
                            max_examples=2 * BC)
  scan = jax.jit(lambda q: upd.update(
      q, ClientRef(Xc, Yc, 0, 2 * BC), jax.random.key(0),
      ClientHParams(jnp.float32(1), jnp.float32(0))))
  jobs = {"cnn_steploop": (steploop, k * flops),
          "cnn_lib_scan": (lambda: scan(p), 2 * flops)}
  if C.has_torch():
    import paper_cnn
    jobs["cnn_torch"] = (paper_cnn.torch_trainer("cnn", p, xc, yc, BC, 2),
                         (len(yc) // BC) * flops)
  counts = {"cnn_step_cost_analysis": flops,
            "cnn_step_analytic_convs_only":
                conv_fwd * 3 - 2 * BC * 28 * 28 * 9 * 32}  # no dx, layer 1
  return jobs, counts


def interleave(jobs, repeats):
  """GFLOP/s of every job, jobs in rotating order per repeat."""
  import jax
  out = {k: {"gflops": []} for k in jobs}
  for f, _ in jobs.values():
    jax.block_until_ready(f())
  names = list(jobs)
  for r in range(repeats):
    for k in names[r % len(names):] + names[:r % len(names)]:
      f, fl = jobs[k]
      reps = 3 if k.startswith(("matmul", "mlp")) else 1
      t = time.perf_counter()
      for _ in range(reps):
        res = f()
      jax.block_until_ready(res)
      out[k]["gflops"].append(fl / ((time.perf_counter() - t) / reps) / 1e9)
    C.log(f"  repeat {r + 1}: " + ", ".join(
        f"{k} {out[k]['gflops'][-1]:.1f}" for k in jobs)
        + f" GFLOP/s, load {C.loadavg()}")
  peak = C.median(out["matmul_jax"]["gflops"])
  for k in jobs:
    out[k]["median_gflops"] = C.median(out[k]["gflops"])
    out[k]["fraction_of_jax_matmul"] = out[k]["median_gflops"] / peak
    out[k]["fraction_paired"] = C.median(
        [x / y for x, y in zip(out[k]["gflops"],
                               out["matmul_jax"]["gflops"])])
  return out, peak


def w1_executor(args, ds, params, upd, step_flops, mm, peak):
  """Useful GFLOP/s of ``executor.simulate`` on W1 (default and waves;
  ``--smoke``: default only)."""
  import jax
  import numpy as np
  from fedasync_jax import executor, scheduler
  w1 = C.W1_SMOKE if args.smoke else C.W1
  sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                 num_updates=args.w1_updates,
                                 concurrency=w1["concurrency"], seed=0)
  useful = float(np.sum(np.ceil(ds.counts[sched.arrival_client] / B))
                 * step_flops)
  _, _, _, rule, _ = C.w1_pieces(ds)
  out = {}
  variants = (("library_default", {}), ("waves_width20", {"width": 20}))
  for name, kw in variants[:1] if args.smoke else variants:
    kw = dict(kw, chunk_steps=16 if args.smoke else 64)
    res, _ = C.simulate_timed(executor, rule, upd, params, ds, sched,
                              jax.random.key(0), **kw)
    t = time.perf_counter()
    jax.block_until_ready(mm())
    mm_now = 2.0 * args.n ** 3 / (time.perf_counter() - t) / 1e9
    g = useful / (sched.num_arrivals / res["steady_updates_per_s"]) / 1e9
    out[name] = {"steady_updates_per_s": res["steady_updates_per_s"],
                 "useful_gflops": g, "fraction_of_jax_matmul": g / peak,
                 "matmul_gflops_right_after": mm_now}
    C.log(f"  W1 executor {name}: {C.rate(res['steady_updates_per_s'])}, "
          f"{g:.1f} useful GFLOP/s")
  return out


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  xla_cpu.configure_cpu()  # the library's CPU choice, as fedasync-jax makes it
  data_path = C.mnist_path(args, C.out_dir(args) if args.smoke else None)
  if C.skip_if_no_mnist(data_path, "flops"):
    return 0
  started, load0 = time.perf_counter(), C.loadavg()
  import jax
  import jax.numpy as jnp
  n = args.n
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  mm_j = jax.jit(lambda a, b: a @ b)
  jobs = {"matmul_jax": (lambda: mm_j(a, b), 2.0 * n ** 3)}
  if C.has_torch():
    torch = C.torch_setup(2)
    ta, tb = torch.randn(n, n), torch.randn(n, n)
    jobs["matmul_torch"] = (lambda: torch.mm(ta, tb), 2.0 * n ** 3)
  ds, _, _ = C.w1_data(data_path, (C.W1_SMOKE if args.smoke
                                   else C.W1)["num_clients"])
  mjobs, counts, step_flops, p_mlp, upd = mlp_jobs(ds)
  cjobs, ccounts = cnn_jobs(data_path, 2 * BC if args.smoke else 640)
  jobs.update(mjobs)
  jobs.update(cjobs)
  out, peak = interleave(jobs, args.repeats)
  w1 = ({} if args.quick else
        w1_executor(args, ds, p_mlp, upd, step_flops, lambda: mm_j(a, b),
                    peak))
  C.finish("flops", {
      "matmul_n": n, "jax_matmul_gflops": peak,
      "flop_counts": {**counts, **ccounts}, "jobs": out, "w1_executor": w1,
      "torch": C.has_torch(),
      "method": "FLOPs per step from XLA cost_analysis of one jitted "
                "local step; GFLOP/s = useful FLOPs / wall time; jobs "
                "interleaved in rotating order, medians over repeats; "
                "fraction = achieved / median JAX matmul GFLOP/s",
  }, args=args, started=started, load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
