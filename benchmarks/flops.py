#!/usr/bin/env python
"""Hardware efficiency: achieved FLOP/s of client training vs a big matmul.

Measured in ONE process, interleaved, ``--repeats`` times (medians):

* ``matmul``: a ``--n`` x ``--n`` (2048) fp32 matmul in JAX (jit) and in
  PyTorch (2 threads): the machine's attainable FLOP/s here and now;
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
  (``cnn_lib_scan``, 2 steps: the slow in-loop convolution gradients) and
  in PyTorch (``cnn_torch``, FLOPs from the same count).

Reported: GFLOP/s of each and its fraction of the JAX matmul's GFLOP/s.

The LAST line printed is one JSON object, also written to
``benchmarks/results/flops_<date>[_quick].json``.

Usage:
  python benchmarks/flops.py            # 5 repeats
  python benchmarks/flops.py --quick    # 2 repeats, no executor run
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--data", default=None)
  ap.add_argument("--n", type=int, default=2048)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--w1-updates", type=int, default=1000)
  args = ap.parse_args(argv)
  if args.repeats is None:
    args.repeats = 2 if args.quick else 5
  return args


def cost_flops(fn, *args):
  """FLOPs of one call of ``fn`` from XLA's cost analysis."""
  import jax
  ca = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(ca, (list, tuple)):
    ca = ca[0]
  return float(ca.get("flops", float("nan")))


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import common as C
  data_path = args.data or C.DEFAULT_MNIST
  if C.skip_if_no_mnist(data_path, "flops"):
    return 0
  started, load0 = time.perf_counter(), C.loadavg()
  torch = C.torch_setup(2)
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from fedasync_jax import (client, executor, models, rules, scheduler,
                            staleness)
  from fedasync_jax.core.client import ClientHParams, ClientRef
  import paper_cnn

  n = args.n
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  mm = jax.jit(lambda a, b: a @ b)
  ta, tb = torch.randn(n, n), torch.randn(n, n)
  mm_flops = 2.0 * n ** 3

  # ---- W1 MLP ---------------------------------------------------------
  ds, _, _ = C.w1_data(data_path)
  mlp = models.mlp()
  p_mlp = mlp.init(jax.random.key(0))
  X, Y = jnp.asarray(ds.x), jnp.asarray(ds.y)
  B = 10

  def mlp_step(p, i):
    idx = i * B + jnp.arange(B)
    g = jax.grad(mlp.loss)(p, X[idx], Y[idx], jnp.ones((B,), jnp.float32))
    return jax.tree.map(lambda w, d: w - 0.05 * d, p, g)
  step_flops = cost_flops(mlp_step, p_mlp, jnp.int32(0))
  dims = [784, 200, 200, 10]
  macs = sum(dims[i] * dims[i + 1] for i in range(3))
  analytic = (2 * B * macs  # forward
              + 2 * B * macs  # weight gradients
              + 2 * B * sum(dims[i] * dims[i + 1] for i in (1, 2))  # dx
              + 2 * (macs + sum(dims[1:])))  # sgd update
  S = 64

  @jax.jit
  def mlp_scan(p):
    return jax.lax.scan(lambda p, i: (mlp_step(p, i), None), p,
                        jnp.arange(S))[0]
  med_client = int(np.argsort(ds.counts)[ds.num_clients // 2])
  cnt = int(ds.counts[med_client])
  useful_steps = -(-cnt // B)
  lib_upd = client.local_update(mlp.loss, optax.sgd(0.05), batch_size=B,
                                max_examples=ds.max_count)
  hp = ClientHParams(jnp.float32(1), jnp.float32(0))
  ref = ClientRef(X, Y, int(ds.offsets[med_client]), cnt)
  lib_f = jax.jit(lambda p: lib_upd.update(p, ref, jax.random.key(0), hp))

  # ---- CNN ------------------------------------------------------------
  cnn = models.mnist_cnn()
  p_cnn = cnn.init(jax.random.key(0))
  xc, yc, _, _ = C.load_mnist(data_path, flat=False)
  xc, yc = xc[:640, :, :, None], yc[:640]
  Xc, Yc = jnp.asarray(xc), jnp.asarray(yc)
  adam = optax.adam(1e-3)
  Bc = 64

  def cnn_step(p, o, i):
    idx = i * Bc + jnp.arange(Bc)
    g = jax.grad(cnn.loss)(p, Xc[idx], Yc[idx], jnp.ones((Bc,), jnp.float32))
    u, o = adam.update(g, o, p)
    return optax.apply_updates(p, u), o
  o0 = adam.init(p_cnn)
  cnn_flops = cost_flops(cnn_step, p_cnn, o0, jnp.int32(0))
  conv_fwd = 2 * Bc * 28 * 28 * 9 * (1 * 32 + 32 * 32 + 32 * 32)
  cnn_analytic = conv_fwd * 3 - 2 * Bc * 28 * 28 * 9 * 32  # no dx layer 1
  cnn_step_j = jax.jit(cnn_step)
  K = 10

  def cnn_steploop():
    p, o = p_cnn, o0
    for i in range(K):
      p, o = cnn_step_j(p, o, i)
    return p
  cnn_scan_upd = client.local_update(cnn.loss, adam, batch_size=Bc,
                                     max_examples=2 * Bc)
  cnn_scan_f = jax.jit(lambda p: cnn_scan_upd.update(
      p, ClientRef(Xc, Yc, 0, 2 * Bc), jax.random.key(0), hp))
  tnet = paper_cnn.torch_trainer("cnn", p_cnn, xc, yc, Bc, 2)

  jobs = {
      "matmul_jax": (lambda: mm(a, b), mm_flops),
      "matmul_torch": (lambda: torch.mm(ta, tb), mm_flops),
      "mlp_step_scan": (lambda: mlp_scan(p_mlp), S * step_flops),
      "mlp_client_library": (lambda: lib_f(p_mlp),
                             useful_steps * step_flops),
      "cnn_steploop": (cnn_steploop, K * cnn_flops),
      "cnn_lib_scan": (lambda: cnn_scan_f(p_cnn), 2 * cnn_flops),
      "cnn_torch": (tnet, 10 * cnn_flops),
  }
  out = {k: {"gflops": []} for k in jobs}
  for k, (f, _) in jobs.items():
    jax.block_until_ready(f())
  for r in range(args.repeats):
    for k in list(jobs)[r % len(jobs):] + list(jobs)[:r % len(jobs)]:
      f, fl = jobs[k]
      reps = 3 if k.startswith("matmul") or k.startswith("mlp") else 1
      t = time.perf_counter()
      for _ in range(reps):
        res = f()
      jax.block_until_ready(res)
      dt = (time.perf_counter() - t) / reps
      out[k]["gflops"].append(fl / dt / 1e9)
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

  w1 = {}
  if not args.quick:
    sched = scheduler.asynchronous(C.w1_delay_model(ds),
                                   num_updates=args.w1_updates,
                                   concurrency=100, seed=0)
    useful = float(np.sum(np.ceil(ds.counts[sched.arrival_client] / B))
                   * step_flops)
    rule = rules.fedasync(0.6, staleness.polynomial(0.5))
    for name, upd, kw in (("library_default", lib_upd, {}),
                          ("waves_width20", lib_upd, dict(width=20))):
      res, _ = C.simulate_timed(executor, rule, upd, p_mlp, ds, sched,
                                jax.random.key(0), **kw)
      t = time.perf_counter()
      jax.block_until_ready(mm(a, b))
      mm_now = mm_flops / (time.perf_counter() - t) / 1e9
      g = useful / (sched.num_arrivals / res["steady_updates_per_s"]) / 1e9
      w1[name] = {"steady_updates_per_s": res["steady_updates_per_s"],
                  "useful_gflops": g, "fraction_of_jax_matmul": g / peak,
                  "matmul_gflops_right_after": mm_now}
      C.log(f"  W1 executor {name}: {res['steady_updates_per_s']:.0f} "
            f"updates/s, {g:.1f} useful GFLOP/s")

  result = {
      "matmul_n": n, "jax_matmul_gflops": peak,
      "flop_counts": {
          "mlp_step_cost_analysis": step_flops,
          "mlp_step_analytic": analytic,
          "mlp_median_client_examples": cnt,
          "mlp_useful_steps": useful_steps,
          "mlp_scanned_steps_library": lib_upd.num_steps,
          "cnn_step_cost_analysis": cnn_flops,
          "cnn_step_analytic_convs_only": cnn_analytic},
      "jobs": out, "w1_executor": w1,
      "method": "FLOPs per step from XLA cost_analysis of one jitted "
                "local step; GFLOP/s = useful FLOPs / wall time; jobs "
                "interleaved in rotating order, medians over repeats; "
                "fraction = achieved / median JAX matmul GFLOP/s",
  }
  C.finish("flops", result, quick=args.quick, started=started,
           load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
