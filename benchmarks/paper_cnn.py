#!/usr/bin/env python
"""The AFL paper's client training: examples/s of ours vs PyTorch, CNN and ResNet-20.

Configuration (Forootani and Iervolino 2025, arXiv:2508.01675): MNIST, 10
clients (iid, 6000 examples each), 5 per round, 10 local epochs, batch 64,
Adam (lr 1e-3); the MNIST CNN (``models.mnist_cnn()``, 19,146 params) and
the CIFAR ResNet-20 (``models.resnet20()``, batch norm, stateful).

Only the client training matters for speed here (the server step is
negligible), so this measures training examples per second of:

* ``lib_scan``: ``client.local_update`` (``lax.scan`` over local steps, the
  library's path inside the executor) on ONE client, jitted, with the
  library's default model (``conv=None``: on CPU the convolutions of
  ``fedasync_jax.models.conv``, whose gradients are canonical forward
  convolutions);
* ``lib_steploop``: one jitted local step of the default model (same loss,
  Adam) called from a Python loop: no XLA loop around the convolutions;
* ``lib_map5`` / ``lib_vmap5``: the update batched over the 5 clients of a
  round the executor's ways: ``lax.map`` and ``vmap`` (vmap turns the
  per-client convolutions into grouped convolutions);
* ``lib_devices5``: the 5 clients of a round over the CPU split into
  ``--cpu-devices`` devices (2: ``jax_num_cpu_devices`` set in the worker
  before JAX starts), the ``batching="devices"`` strategy's way: 6 lanes
  (one padding lane with 0 examples, which trains no step) dealt
  round-robin over the devices with ``jax.shard_map``, ``lax.map`` within
  each device, so that each core trains its own client at the same time
  (2 devices: 3 + 2 clients). Opt-in (``--variants``): every variant of
  that worker then runs with the CPU split (the others on device 0);
* ``lib_devices6``: the same with 6 clients (3 + 3: no core waits for the
  other), the per-core rate a wave of an even number of clients gets;
* ``onepiece_scan``: ``lib_scan`` with each kernel gradient computed in
  ONE convolution over the batch (``kernel_grad_piece=None``), the
  library's form before it cut the batch into pieces of 8 examples: the
  side-by-side evidence for that choice;
* ``flaxbn_scan``, ``flaxbn_devices6`` (ResNet-20 only, opt-in):
  ``lib_scan``, ``lib_devices6`` with ``flax.linen.BatchNorm`` instead of
  the library's ``models/batch_norm.py`` (same values; flax's masked
  statistics), the library's form before 2026-12-03: the side-by-side
  evidence for it;
* ``nowiden_scan``, ``nowiden_devices6`` (opt-in): ``lib_scan``,
  ``lib_devices6`` with ``widen_small=False``: convolutions with at most 16
  channels on both sides not widened for YNNPACK (``models/conv_grads.py``),
  the library's form before 2026-12-05: the side-by-side evidence for it
  (only ResNet-20 has such layers);
* ``laxconv_scan`` / ``laxconv_steploop`` (+ ``laxconv_map5``,
  ``laxconv_vmap5`` on request): the same with ``conv="lax"``, i.e.
  ``jax.lax.conv_general_dilated`` and JAX's own transposed backward
  convolutions: the library's path before ``fedasync_jax/conv.py``
  (jax-ml/jax#12868: slow inside loops on XLA:CPU);
* ``bigbatch_steploop``: one step at batch 320 = 5 x 64 (the convolution
  throughput limit of a bigger batch);
* ``torch`` / ``torch_1thread``: the same network in PyTorch (NCHW, the
  JAX initial weights copied in), Adam lr 1e-3, pre-made tensors, a
  ``randperm`` per epoch, batch 64, 2 threads / 1 thread.

The torch variants need torch (``pip install -e '.[bench]'``); without it
they are left out and the JAX variants still run. Variants of the
prototypes that became ``fedasync_jax/models/conv.py`` (``canon_*``,
``loopconv_*``) and the plain-JAX ``nchw_scan`` were removed; their
results are recorded in RESULTS_vs_pytorch.md, section 3.2.

XLA flag attempts run in fresh subprocesses (``XLA_FLAGS`` is read when the
backend starts), each measuring its JAX variants AND the torch baseline
interleaved, so every ratio is paired under the same machine load. The
flag set ``library`` is what the library sets itself
(``fedasync_jax.configure_cpu()``: convolutions on XLA's multi-threaded
Eigen path on two or more cores), ``default`` XLA as it comes (YNNPACK
convolutions, one thread each); the headline numbers are ``library``'s.
Timing unit: ``--steps`` local steps of batch 64 per call (examples/s is
steady-state; the full paper setting, 10 epochs x 6000 examples = 60,000
examples per client update, is extrapolated from it). Compile time is
reported separately.

``--probe`` adds the op-level evidence: the three convolutions of one CNN
layer (forward, input gradient, kernel gradient) timed alone, outside and
inside a ``lax.fori_loop``, and the convolution instructions of the
compiled HLO of ``lib_scan`` vs ``lib_steploop``.

``--profile`` says where a local step's time goes, per step: the XLA:CPU
ops of ``lib_scan`` under ``jax.profiler`` (grouped by op kind, each op
from its start to its end event, and the time in which any op ran) and
the ``aten::`` ops of ``torch`` and ``torch_1thread`` under
``torch.profiler`` (self CPU time).
``--smoke`` turns it on, so the suite runs both profilers.

The LAST line printed is one JSON object, also written to
``<--out>/paper_cnn_<date>[_quick].json`` (default ``runs/benchmarks/``,
untracked; ``--out benchmarks/results`` records the run).

Recorded (RESULTS_vs_pytorch.md, section 3):
``results/paper_cnn_2026-11-22T055600Z.json`` by ``python
benchmarks/paper_cnn.py --models cnn --flags default,onednn --variants
lib_scan,lib_map5,lib_steploop,torch,torch_1thread --repeats 7 --timeout
800``; ``results/paper_cnn_2026-11-22T055949Z.json`` by ``python
benchmarks/paper_cnn.py --models resnet --flags default --variants
lib_scan,lib_map5,torch,torch_1thread --repeats 5 --timeout 800``;
``results/paper_cnn_2026-11-22T055017Z.json`` (the op-level probe) by the
first command with ``--probe --timeout 1200`` instead of ``--timeout
800``; ``results/paper_cnn_2026-11-22T054246Z.json`` (every variant, CNN
and ResNet-20) by ``python benchmarks/paper_cnn.py --probe --timeout
1800``.

Recorded (two CPU devices, ``lib_devices5``, 2026-12-02; every variant of
these workers ran with ``jax_num_cpu_devices=2``):
``results/paper_cnn_2026-12-02T092935Z.json`` (CNN, load 1.2-2.1) by
``python benchmarks/paper_cnn.py --models cnn --flags
default,eigen_single_thread --variants
lib_scan,lib_map5,lib_devices5,torch,torch_1thread --steps 12 --repeats 7
--timeout 600``; ``results/paper_cnn_2026-12-02T092204Z.json`` (the same
with ``--steps 24 --repeats 9 --timeout 900``, while the test suite ran:
load 3-6.5, no core idle, so no gain); ``results/paper_cnn_2026-12-02T093248Z.json`` (ResNet-20, load
1.4-1.7) by ``python benchmarks/paper_cnn.py --models resnet --flags
default --variants lib_scan,lib_map5,lib_devices5,torch,torch_1thread
--steps 4 --repeats 5 --timeout 600``; the one-device control
``results/paper_cnn_2026-12-02T093607Z.json`` (test suite running again)
by ``python benchmarks/paper_cnn.py --models cnn --flags default
--variants lib_scan,lib_map5,torch,torch_1thread --cpu-devices 1 --steps
12 --repeats 5 --timeout 400``. ``intra_op_parallelism_threads`` is no
XLA flag in jax 0.10.2 (``--intra_op_parallelism_threads=1``: "Unknown
flag in XLA_FLAGS"; without ``--`` it is silently ignored).

Recorded (the kernel gradient in pieces of 8 against one piece,
2026-12-02, Intel VM): ``results/paper_cnn_2026-12-02T201108Z.json`` by
``python benchmarks/paper_cnn.py --models cnn,resnet --flags
library,default --variants
lib_scan,onepiece_scan,lib_devices5,torch,torch_1thread --steps 12
--repeats 5 --timeout 900 --out benchmarks/results``;
``results/paper_cnn_2026-12-02T202821Z.json`` (two one-core devices,
YNNPACK vs Eigen convolutions) by ``python benchmarks/paper_cnn.py
--models cnn,resnet --flags default,library --variants
lib_scan,lib_devices5,lib_devices6,torch,torch_1thread --steps 12
--repeats 5 --timeout 900 --out benchmarks/results``;
``results/paper_cnn_2026-12-02T212543Z.json`` (ResNet-20 with strided
gradients by phases) by ``python benchmarks/paper_cnn.py --models resnet
--flags library,default --variants lib_scan,lib_devices6,torch,torch_1thread
--steps 12 --repeats 5 --timeout 900 --out benchmarks/results``.

``results/paper_cnn_2026-12-03T042722Z.json`` (where a step's time goes)
by ``python benchmarks/paper_cnn.py --models cnn,resnet --flags library
--variants lib_scan,torch,torch_1thread --profile --steps 12 --repeats 5
--timeout 1200 --out benchmarks/results``, and
``results/paper_cnn_2026-12-03T043440Z.json`` by the same with ``--flags
default --variants lib_devices6,torch,torch_1thread`` and no
``--profile`` (also ``..T050340Z.json``: ResNet-20 only, after
``models/batch_norm.py``).
``results/paper_cnn_2026-12-03T053739Z.json`` (the CNN's profile again)
by ``python benchmarks/paper_cnn.py --models cnn --flags library
--variants lib_scan,torch,torch_1thread --profile --steps 12 --repeats 5
--timeout 900 --out benchmarks/results``.
``results/paper_cnn_2026-12-03T050006Z.json`` (the library's batch norm
against flax's) by ``python benchmarks/paper_cnn.py --models resnet
--flags library --variants lib_scan,flaxbn_scan,torch,torch_1thread
--steps 12 --repeats 5 --timeout 1200 --out benchmarks/results`` and
``..T051257Z.json`` by the same with ``--flags default --variants
lib_devices6,flaxbn_devices6,torch``.
``results/paper_cnn_2026-12-03T061858Z.json`` (one core: the
per-device work of the two-device layout, with both profiles) by
``taskset -c 0 python benchmarks/paper_cnn.py --models cnn,resnet --flags
default --variants lib_scan,torch_1thread --profile --steps 12 --repeats 5
--timeout 1500 --out benchmarks/results``.

Usage:
  python benchmarks/paper_cnn.py --quick     # CNN only, library flags
  python benchmarks/paper_cnn.py             # CNN + ResNet-20, library
                                             # flags and XLA's defaults
  python benchmarks/paper_cnn.py --flags default,thunk_runtime_off,...
  python benchmarks/paper_cnn.py --smoke --out /tmp/x   # 1 step, seconds
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common as C  # noqa: E402
from fedasync_jax.sim import xla_cpu  # noqa: E402

SMOKE_OUTPUT = "paper_cnn_*_smoke.json"

# The flags the library itself sets for this process (``fedasync-jax``,
# ``fedasync_jax.configure_cpu()``): convolutions on XLA's Eigen path when
# two or more cores are usable (``sim/xla_cpu.py``); "default" is XLA as
# it comes.
FLAG_SETS = {
    # The library's choice for ONE CPU device; with the CPU split into
    # one-core devices (the devices variants) it keeps XLA's default
    # convolutions instead, i.e. the "default" set.
    "library": xla_cpu.xla_flags_for("") or "",
    "default": "",
    "thunk_runtime_off": "--xla_cpu_use_thunk_runtime=false",
    "eigen_single_thread": "--xla_cpu_multi_thread_eigen=false",
    "onednn": "--xla_cpu_use_onednn=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "ynn_conv": ("--xla_cpu_experimental_ynn_fusion_type="
                 "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"),
    "xnn_graph_greedy": ("--xla_cpu_experimental_xnn_graph_fusion_mode="
                         "XNN_GRAPH_FUSION_MODE_GREEDY"),
    # Convolutions back on XLA's Eigen path (YNNPACK runs them on one
    # thread here; Eigen uses the whole intra-op pool).
    # (the library's choice, set whatever the cores and jaxlib).
    "no_ynn_conv": xla_cpu.EIGEN_CONV_FLAG,
}

CNN_VARIANTS = ("lib_scan", "onepiece_scan", "lib_map5", "lib_vmap5",
                "lib_steploop", "laxconv_scan", "laxconv_steploop",
                "bigbatch_steploop", "torch", "torch_1thread")
RESNET_VARIANTS = ("lib_scan", "onepiece_scan", "lib_map5", "lib_steploop",
                   "laxconv_scan", "laxconv_steploop", "torch",
                   "torch_1thread")
# Variants measured in the XLA-flag subprocesses.
FLAG_VARIANTS = ("lib_scan", "onepiece_scan", "lib_map5", "lib_steploop",
                 "laxconv_steploop", "lib_devices5", "torch",
                 "torch_1thread")
# Flag sets tried by default (the others were measured before and stay
# available through --flags). The first is the headline.
DEFAULT_FLAGS = ("library", "default")
# Flag sets whose attempts run every variant and the probe (the others only
# FLAG_VARIANTS).
FULL_FLAG_SETS = ("library", "default")
# Variants whose convolution gradients run inside an XLA loop on the slow
# path: timed on --slow-steps local steps per client (examples/s is a rate).
SLOW_VARIANTS = ("laxconv_scan", "laxconv_map5", "laxconv_vmap5")
SMOKE_VARIANTS = ("lib_scan", "lib_steploop", "lib_devices5", "torch")
# Variants over several CPU devices (the worker splits the CPU when one of
# them is requested): opt-in, not in CNN_VARIANTS / RESNET_VARIANTS.
DEVICES_VARIANTS = ("lib_devices5", "lib_devices6")


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="CNN only, default flags, fewer repeats")
  C.add_output_args(ap)
  ap.add_argument("--data", default=None)
  ap.add_argument("--steps", type=int, default=None,
                  help="local steps (batch 64) per timed call")
  ap.add_argument("--slow-steps", type=int, default=2,
                  help="local steps per client per timed call of the "
                  "variants with in-loop convolution gradients")
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--models", default=None, help="cnn,resnet")
  ap.add_argument("--flags", default=None,
                  help="comma-separated names of FLAG_SETS to try")
  ap.add_argument("--variants", default=None)
  ap.add_argument("--probe", action="store_true",
                  help="op-level convolution timings and HLO evidence")
  ap.add_argument("--profile", action="store_true",
                  help="where a local step's time goes: XLA:CPU's ops "
                  "(jax.profiler) of lib_scan and PyTorch's (torch.profiler)"
                  " of torch and torch_1thread, per step")
  ap.add_argument("--timeout", type=int, default=900)
  ap.add_argument("--cpu-devices", type=int, default=None,
                  help="jax_num_cpu_devices in the workers (default: 2 "
                  "when a devices variant is requested, else 1)")
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--model", default="cnn", help=argparse.SUPPRESS)
  ap.add_argument("--flag-set", default="library", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  short = args.quick or args.smoke
  if args.steps is None:
    args.steps = 1 if args.smoke else 6 if args.quick else 12
  if args.repeats is None:
    args.repeats = 1 if args.smoke else 2 if args.quick else 3
  if args.models is None:
    args.models = "cnn" if short else "cnn,resnet"
  args.flags_chosen = args.flags is not None
  if args.flags is None:
    args.flags = "library" if short else ",".join(DEFAULT_FLAGS)
  if args.smoke and args.variants is None:
    args.variants = ",".join(SMOKE_VARIANTS)
  if args.smoke:
    args.slow_steps = 1
    args.profile = True
  if args.cpu_devices is None:
    args.cpu_devices = 2 if any(
        v in DEVICES_VARIANTS for v in (args.variants or "").split(",")) else 1
  return args


# ---------------------------------------------------------------------------
# Models.


def torch_cnn_from_jax(params):
  """The paper's CNN in torch (NCHW) with the JAX (flax NHWC/HWIO) weights."""
  import numpy as np
  import torch
  import torch.nn as nn

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.c0 = nn.Conv2d(1, 32, 3, padding=1)
      self.c1 = nn.Conv2d(32, 32, 3, padding=1)
      self.c2 = nn.Conv2d(32, 32, 3, padding=1)
      self.fc = nn.Linear(32, 10)

    def forward(self, x):
      x = torch.relu(self.c0(x))
      x = torch.relu(self.c1(x))
      x = torch.relu(self.c2(x))
      return torch.log_softmax(self.fc(x.mean((2, 3))), 1)

  net = Net()
  with torch.no_grad():
    for i, c in enumerate((net.c0, net.c1, net.c2)):
      k = np.asarray(params[f"Conv_{i}"]["kernel"])  # HWIO
      c.weight.copy_(torch.from_numpy(np.ascontiguousarray(
          k.transpose(3, 2, 0, 1))))
      c.bias.copy_(torch.from_numpy(np.array(params[f"Conv_{i}"]["bias"])))
    net.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(
        np.asarray(params["Dense_0"]["kernel"]).T)))
    net.fc.bias.copy_(torch.from_numpy(np.array(params["Dense_0"]["bias"])))
  return net


def torch_resnet20():
  """CIFAR ResNet-20 in torch, the library's architecture: 3x3/16 conv,
  BN, three stages of 3 BasicBlocks (16/32/64, stride 2 at stages 2-3),
  1x1 conv + BN projection shortcuts where the shape changes, global
  average pool, linear (272,474 trainable parameters)."""
  import torch
  import torch.nn as nn

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.b1 = nn.BatchNorm2d(cout)
      self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.b2 = nn.BatchNorm2d(cout)
      self.short = None
      if stride != 1 or cin != cout:
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))

    def forward(self, x):
      y = torch.relu(self.b1(self.c1(x)))
      y = self.b2(self.c2(y))
      return torch.relu(y + (x if self.short is None else self.short(x)))

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.c = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
      self.b = nn.BatchNorm2d(16)
      blocks, cin = [], 16
      for stage, w in enumerate((16, 32, 64)):
        for b in range(3):
          blocks.append(Block(cin, w, 2 if (stage > 0 and b == 0) else 1))
          cin = w
      self.blocks = nn.Sequential(*blocks)
      self.fc = nn.Linear(64, 10)

    def forward(self, x):
      x = torch.relu(self.b(self.c(x)))
      return self.fc(self.blocks(x).mean((2, 3)))

  return Net()


# ---------------------------------------------------------------------------
# Worker: one XLA flag set, one model, all variants interleaved.


def load_images(model_name, data_path, n):
  """``n`` training images (NHWC float32) and labels: MNIST for the CNN,
  the CIFAR-10 lossless subset beside ``data_path`` (repeated) for
  ResNet-20, or None when that file is absent."""
  import numpy as np
  if model_name == "cnn":
    x, y, _, _ = C.load_mnist(data_path, flat=False)
    return x[:n, :, :, None], y[:n]
  path = os.path.join(os.path.dirname(str(data_path)),
                      "cifar10_lossless_subset.npz")
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    x = f["x_train"].astype(np.float32) / 255.0
    y = f["y_train"].astype(np.int32).reshape(-1)
  mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
  std = np.array([0.2470, 0.2435, 0.2616], np.float32)
  x = (x - mean) / std
  reps = -(-n // len(x))
  return (np.concatenate([x] * reps)[:n].astype(np.float32),
          np.concatenate([y] * reps)[:n])


def flax_batch_norm_resnet20():
  """The library's ResNet-20 with ``flax.linen.BatchNorm`` layers (the
  library's model before ``models/batch_norm.py``; same parameters and
  values)."""
  import flax.linen as nn
  from fedasync_jax.models import conv, networks
  return networks._resnet20_fns(
      networks._ResNetCifar(num_classes=10, conv_fn=conv.resolve_conv(None),
                            norm=nn.BatchNorm), 10)


class Variants:
  """Builds the timed callables of one model: ``make(v)`` returns
  ``(fn, examples per call)`` for variant ``v``."""

  def __init__(self, args, x_np, y_np):
    import jax
    import jax.numpy as jnp
    import optax
    from fedasync_jax import ClientHParams, conv, models
    self.args, self.x_np, self.y_np, self.B = args, x_np, y_np, 64
    self.stateful = args.model == "resnet"
    cnn = args.model == "cnn"
    self.lib = models.mnist_cnn() if cnn else models.resnet20()
    self.laxlib = (models.mnist_cnn(conv="lax") if cnn
                   else models.resnet20(conv="lax"))
    one_piece = functools.partial(conv.conv_general_dilated,
                                  kernel_grad_piece=None)
    self.onepiece = (models.mnist_cnn(conv=one_piece) if cnn
                     else models.resnet20(conv=one_piece))
    self.flaxbn = None if cnn else flax_batch_norm_resnet20()
    no_widen = functools.partial(conv.conv_general_dilated,
                                 widen_small=False)
    self.nowiden = (models.mnist_cnn(conv=no_widen) if cnn
                    else models.resnet20(conv=no_widen))
    self.params = self.lib.init(jax.random.key(0))
    self.X, self.Y = jnp.asarray(x_np), jnp.asarray(y_np)
    self.key = jax.random.key(0)
    self.hp = ClientHParams(jnp.float32(1.0), jnp.float32(0.0))
    self.opt = optax.adam(1e-3)

  def scan_update(self, loss, n):
    from fedasync_jax import client
    return client.local_update(loss, self.opt, batch_size=self.B,
                               max_examples=n, epochs=1,
                               stateful=self.stateful)

  def one_client(self, upd, n):
    import jax
    from fedasync_jax import ClientRef
    f = jax.jit(lambda p: upd.update(p, ClientRef(self.X, self.Y, 0, n),
                                     self.key, self.hp))
    return lambda: f(self.params)

  def batched(self, upd, how, n):
    import jax
    import jax.numpy as jnp
    from fedasync_jax import ClientRef
    offs = jnp.arange(5, dtype=jnp.int32) * n

    def g(p):
      def one(o):
        return upd.update(p, ClientRef(self.X, self.Y, o, n),
                          jax.random.fold_in(self.key, o), self.hp)
      return jax.vmap(one)(offs) if how == "vmap" else jax.lax.map(one, offs)
    f = jax.jit(g)
    return lambda: f(self.params)

  def devices(self, upd, n, clients=5):
    """``clients`` client updates over the CPU devices, the
    ``batching="devices"`` strategy's way (``sim/strategies.py``,
    ``Devices``): lanes padded to a multiple of the devices (padding lanes:
    0 examples, no step), dealt round-robin, ``shard_map`` over the
    devices, ``lax.map`` within each."""
    import numpy as np
    import jax
    import jax.numpy as jnp
    from fedasync_jax import ClientRef
    devs = jax.devices()
    D = len(devs)
    W = -(-clients // D) * D
    deal = np.arange(W).reshape(W // D, D).T.ravel()  # round-robin
    valid = deal < clients
    offs = jnp.asarray(np.where(valid, deal * n, 0), jnp.int32)
    counts = jnp.asarray(np.where(valid, n, 0), jnp.int32)
    mesh = jax.sharding.Mesh(np.array(devs), ("lanes",))
    P = jax.sharding.PartitionSpec
    X, Y, hp, key = self.X, self.Y, self.hp, self.key

    def g(p):
      keys = jax.vmap(lambda o: jax.random.fold_in(key, o))(offs)

      def one(a):
        o, c, k = a
        return upd.update(p, ClientRef(X, Y, o, c), k, hp)
      lanes = jax.shard_map(lambda a: jax.lax.map(one, a), mesh=mesh,
                            in_specs=P("lanes"), out_specs=P("lanes"),
                            check_vma=False)
      return lanes((offs, counts, keys))
    f = jax.jit(g)
    return lambda: f(self.params)

  def step_loop(self, loss, batch):
    """One jitted local step called from a Python loop (no XLA loop)."""
    import jax
    import jax.numpy as jnp
    import optax
    stateful, opt, X, Y = self.stateful, self.opt, self.X, self.Y
    split = (lambda p: (p["params"], p["batch_stats"])) if stateful else (
        lambda p: (p, None))
    tr0, _ = split(self.params)
    opt_state0 = opt.init(tr0)

    def obj(tr, st, xb, yb):
      full = {"params": tr, "batch_stats": st} if stateful else tr
      out = loss(full, xb, yb, jnp.ones((batch,), jnp.float32))
      return out if stateful else (out, None)

    @jax.jit
    def step(tr, st, o, i):
      idx = i * batch + jnp.arange(batch)
      (_, st2), g = jax.value_and_grad(obj, has_aux=True)(
          tr, st, X[idx], Y[idx])
      upd, o = opt.update(g, o, tr)
      return optax.apply_updates(tr, upd), (st2 if stateful else st), o
    n_steps = (5 * self.args.steps * self.B) // batch

    def run():
      tr, st = split(self.params)
      o = opt_state0
      for i in range(n_steps):
        tr, st, o = step(tr, st, o, i % n_steps)
      return tr
    return run, n_steps * batch

  def make(self, v):
    a, B = self.args, self.B
    n = (a.slow_steps if v in SLOW_VARIANTS else a.steps) * B
    prefix, _, kind = v.partition("_")
    model = {"laxconv": self.laxlib, "onepiece": self.onepiece,
             "flaxbn": self.flaxbn, "nowiden": self.nowiden}.get(prefix,
                                                                 self.lib)
    if model is None:
      raise ValueError(f"variant {v!r} is for ResNet-20 only")
    if v == "bigbatch_steploop":
      return self.step_loop(self.lib.loss, 5 * B)
    if v.startswith("torch"):
      threads = 1 if v == "torch_1thread" else 2
      return torch_trainer(a.model, self.params, self.x_np, self.y_np, B,
                           threads), len(self.y_np)
    if prefix in ("lib", "laxconv", "onepiece", "flaxbn", "nowiden"):
      if kind == "scan":
        return self.one_client(self.scan_update(model.loss, n), n), n
      if kind == "steploop":
        return self.step_loop(model.loss, B)
      if kind in ("devices5", "devices6"):
        clients = int(kind[-1])
        return self.devices(self.scan_update(model.loss, n), n,
                            clients), clients * n
      if kind in ("map5", "vmap5"):
        return self.batched(self.scan_update(model.loss, n), kind[:-1],
                            n), 5 * n
    raise ValueError(f"unknown variant {v!r}")


def time_variants(fns, examples, args):
  """First call (compile) of each, then ``--repeats`` rotating passes;
  examples/s medians and paired ratios against torch."""
  import jax
  variants = list(fns)
  out = {v: {"rates": [], "loadavg": []} for v in variants}
  for v in variants:  # compile / warm up
    t = time.perf_counter()
    jax.block_until_ready(fns[v]())
    out[v]["first_call_s"] = time.perf_counter() - t
    C.log(f"    [{args.model}] {v}: first call {out[v]['first_call_s']:.1f} s")
  for r in range(args.repeats):
    for v in variants[r % len(variants):] + variants[:r % len(variants)]:
      t = time.perf_counter()
      jax.block_until_ready(fns[v]())
      out[v]["rates"].append(examples[v] / (time.perf_counter() - t))
      out[v]["loadavg"].append(C.loadavg())
    C.log(f"    [{args.model}] repeat {r + 1}/{args.repeats}: " + ", ".join(
        f"{v} {out[v]['rates'][-1]:.0f}" for v in variants))
  for v in variants:
    o = out[v]
    o["examples_per_s"] = C.median(o["rates"])
    o["compile_s_estimate"] = max(0.0, o["first_call_s"]
                                  - examples[v] / o["examples_per_s"])
    o["examples_per_call"] = examples[v]
  if "lib_scan" in out:
    for v in variants:
      out[v]["vs_lib_scan_paired"] = C.median(
          [a / b for a, b in zip(out[v]["rates"], out["lib_scan"]["rates"])])
  if "torch" in out:
    for v in variants:
      out[v]["vs_torch_paired"] = C.median(
          [a / b for a, b in zip(out[v]["rates"], out["torch"]["rates"])])
      if "torch_1thread" in out:
        out[v]["vs_best_torch_paired"] = C.median(
            [a / max(b, c) for a, b, c in zip(out[v]["rates"],
                                              out["torch"]["rates"],
                                              out["torch_1thread"]["rates"])])
  return out


def worker(args):
  """One XLA flag set (from the environment), one model, all variants
  interleaved, in this fresh process."""
  import jax
  jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  if C.has_torch():
    C.torch_setup(2)
  data_path = args.data or C.DEFAULT_MNIST
  imgs = load_images(args.model, data_path, 6 * args.steps * 64)
  if imgs is None:
    return {"skipped": "CIFAR-10 subset not found"}
  variants = [v for v in (args.variants.split(",") if args.variants else
                          (CNN_VARIANTS if args.model == "cnn"
                           else RESNET_VARIANTS))]
  if args.flag_set not in FULL_FLAG_SETS:
    variants = [v for v in variants if v in FLAG_VARIANTS]
  if not C.has_torch():
    variants = [v for v in variants if not v.startswith("torch")]
  vs = Variants(args, *imgs)
  fns, examples = {}, {}
  for v in variants:
    fns[v], examples[v] = vs.make(v)
  res = {"variants": time_variants(fns, examples, args),
         "steps_per_call": args.steps, "slow_steps_per_call": args.slow_steps,
         "batch": vs.B, "flags": os.environ.get("XLA_FLAGS", ""),
         "cpu_devices": len(jax.devices()),
         "threads": C.thread_settings(), "versions": C.versions()}
  if args.profile:
    res["profile"] = {
        v: (profile_torch if v.startswith("torch") else profile_xla)(
            fns[v], examples[v] // vs.B)
        for v in ("lib_scan", "torch", "torch_1thread") if v in fns}
  if (args.probe and args.model == "cnn"
      and args.flag_set in FULL_FLAG_SETS):
    res["probe"] = probe(vs.X, vs.Y, {"lib": vs.lib, "laxconv": vs.laxlib},
                         vs.params, lambda loss: vs.scan_update(
                             loss, args.slow_steps * vs.B))
  return res


def torch_trainer(model_name, jparams, x_np, y_np, B, threads):
  import numpy as np
  import torch
  import torch.nn.functional as F
  if model_name == "cnn":
    net = torch_cnn_from_jax(jparams)
    X = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
  else:
    net = torch_resnet20()
    X = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
  net.train()
  Y = torch.from_numpy(y_np.astype(np.int64))
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  gen = torch.Generator().manual_seed(0)
  lossf = F.nll_loss if model_name == "cnn" else F.cross_entropy

  def run():
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
      perm = torch.randperm(len(Y), generator=gen)
      for i in range(0, len(Y), B):
        idx = perm[i:i + B]
        opt.zero_grad(set_to_none=True)
        lossf(net(X[idx]), Y[idx]).backward()
        opt.step()
    finally:
      torch.set_num_threads(old)
    return None
  return run


# ---------------------------------------------------------------------------
# Where a step's time goes (--profile).

# Thunks that contain others (their time is their children's) and the
# runtime's own markers: not ops of the step.
_CONTAINERS = ("while", "call", "conditional")


def group_thunk_events(events, steps):
  """Milliseconds per local step by op group, from ``jax.profiler``'s
  trace events of XLA:CPU thunks.

  An op's name (``conv_general_dilated.145``) loses its number to name its
  group. An op's time runs from its start to its ``end: NAME`` event
  where it has one (a convolution handed to the intra-op pool returns at
  once and ends there), else for its own duration; ops that overlap are
  each counted in full. ``busy_ms`` is the union of all the ops'
  intervals: the time in which at least one op ran. Python frames
  (``$...``), executor markers and container thunks (``while``, ``call``,
  ``conditional``) are left out.

  Args:
    events: the trace's ``traceEvents`` (dicts with ``ph``, ``name``,
      ``ts`` and ``dur`` in microseconds).
    steps: local steps the trace covers.

  Returns:
    ``{"ops_ms": {group: ms per step, largest first}, "busy_ms": ms per
    step}``.

  Example:
    >>> ev = [{"ph": "X", "name": "conv.1", "ts": 0, "dur": 1},
    ...       {"ph": "X", "name": "end: conv.1", "ts": 9000, "dur": 1000},
    ...       {"ph": "X", "name": "add_fusion.2", "ts": 500, "dur": 2000}]
    >>> group_thunk_events(ev, steps=1)["ops_ms"]
    {'conv': 10.0, 'add_fusion': 2.0}
  """
  import re
  starts, ends, group_of = {}, {}, {}
  for e in events:
    if e.get("ph") != "X":
      continue
    name = e["name"]
    if name.startswith("end: "):
      ends.setdefault(name[5:], []).append(e["ts"] + e["dur"])
      continue
    op = re.fullmatch(r"([a-z][a-z0-9_\-]*)(\.\d+)?", name)
    if op and op.group(1) not in _CONTAINERS:
      group_of[name] = op.group(1)
      starts.setdefault(name, []).append((e["ts"], e["dur"]))
  groups, spans = {}, []
  for name, begun in starts.items():
    begun, done = sorted(begun), sorted(ends.get(name, []))
    group = group_of[name]
    if done and len(done) == len(begun):  # ran on, to its end event
      mine = [(t, end) for (t, _), end in zip(begun, done)]
    else:
      mine = [(t, t + d) for t, d in begun]
    spans += mine
    groups[group] = groups.get(group, 0.0) + sum(hi - lo for lo, hi in mine)
  busy, last = 0.0, None
  for lo, hi in sorted(spans):
    if last is None or lo > last[1]:
      busy += 0.0 if last is None else last[1] - last[0]
      last = [lo, hi]
    else:
      last[1] = max(last[1], hi)
  busy += 0.0 if last is None else last[1] - last[0]
  per_step = 1e3 * max(steps, 1)  # us -> ms per step
  ops = sorted(groups.items(), key=lambda kv: -kv[1])
  return {"ops_ms": {k: round(v / per_step, 3) for k, v in ops},
          "busy_ms": round(busy / per_step, 3)}


def profile_xla(fn, steps, calls=2, top=14):
  """``fn`` (a jitted JAX callable of ``steps`` local steps) under
  ``jax.profiler``: its step time and :func:`group_thunk_events`."""
  import glob
  import gzip
  import tempfile
  import jax
  step_ms = _median_ms(fn, jax.block_until_ready, repeats=calls) / steps
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      for _ in range(calls):
        jax.block_until_ready(fn())
    files = sorted(glob.glob(os.path.join(d, "**", "*.trace.json.gz"),
                             recursive=True))
    if not files:
      return {"error": "jax.profiler wrote no trace"}
    with gzip.open(files[-1]) as f:
      events = json.load(f)["traceEvents"]
  out = group_thunk_events(events, calls * steps)
  out["ops_ms"] = dict(list(out["ops_ms"].items())[:top])
  out["step_ms"] = round(step_ms, 3)
  out["note"] = ("ms per local step, each op from its start to its end "
                 "event; ops that overlap (convolutions on the intra-op "
                 "pool) add up past the step; busy_ms: time any op ran")
  return out


def profile_torch(fn, steps, calls=1, top=14):
  """``fn`` (a PyTorch training loop of ``steps`` steps) under
  ``torch.profiler``: self CPU time per step of its ``aten::`` ops."""
  from torch.profiler import ProfilerActivity, profile
  step_ms = _median_ms(fn, lambda r: r, repeats=calls) / steps
  with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(calls):
      fn()
  rows = sorted(((e.key, e.self_cpu_time_total / 1e3 / (calls * steps))
                 for e in prof.key_averages() if e.key.startswith("aten::")),
                key=lambda kv: -kv[1])
  return {"ops_ms": {k: round(v, 3) for k, v in rows[:top]},
          "all_aten_ms": round(sum(v for _, v in rows), 3),
          "step_ms": round(step_ms, 3),
          "note": "self CPU time per local step on the calling thread "
                  "(an op's intra-op threads included in its wall time)"}


# ---------------------------------------------------------------------------
# Op-level evidence.


def probe(X, Y, libs, params, scan_update):
  """Op-level evidence: ``probe_ops`` and ``probe_hlo``."""
  out = probe_ops()
  out.update(probe_hlo(X, Y, libs, params, scan_update))
  return out


def probe_ops(K=5):
  """Times the three convolutions of the CNN's middle layer (batch 64,
  28x28x32 -> 32): forward, input gradient, kernel gradient, alone
  (jitted, called ``K`` times) and inside a ``fori_loop`` of ``K``
  iterations, with ``lax.conv_general_dilated`` (``lax_*``) and with
  ``fedasync_jax.models.conv.conv_general_dilated`` (``canonical_*``)."""
  import jax
  import jax.numpy as jnp
  from jax import lax
  from fedasync_jax import conv as conv_lib
  dn = ("NHWC", "HWIO", "NHWC")
  x = jax.random.normal(jax.random.key(1), (64, 28, 28, 32))
  w = jax.random.normal(jax.random.key(2), (3, 3, 32, 32)) * 0.1
  out = {}
  for impl, conv_fn in (("lax", lax.conv_general_dilated),
                        ("canonical", conv_lib.conv_general_dilated)):
    def fwd(x, w, conv_fn=conv_fn):
      return conv_fn(x, w, (1, 1), "SAME", dimension_numbers=dn)
    y = fwd(x, w)
    ops = {"forward": lambda x, w, g, f=fwd: f(x, w),
           "input_grad": lambda x, w, g, f=fwd: jax.vjp(f, x, w)[1](g)[0],
           "kernel_grad": lambda x, w, g, f=fwd: jax.vjp(f, x, w)[1](g)[1]}
    for op_name, op in ops.items():
      name = f"{impl}_{op_name}"
      alone = jax.jit(op)
      jax.block_until_ready(alone(x, w, y))

      def looped(x, w, g, op=op):
        # Every input depends on the carry, so XLA cannot hoist the op out
        # (the input gradient does not read x, the kernel gradient not w).
        def body(i, acc):
          s = 1.0 + acc * 1e-12
          r = op(x * s, w * s, g * s)
          return acc + jnp.sum(r) * 1e-12 + 1.0
        return lax.fori_loop(0, K, body, jnp.float32(0))
      loop = jax.jit(looped)
      jax.block_until_ready(loop(x, w, y))
      ta, tl = [], []
      for _ in range(3):
        t = time.perf_counter()
        for _ in range(K):
          r = alone(x, w, y)
        jax.block_until_ready(r)
        ta.append((time.perf_counter() - t) / K * 1e3)
        t = time.perf_counter()
        jax.block_until_ready(loop(x, w, y))
        tl.append((time.perf_counter() - t) / K * 1e3)
      out[name] = {"alone_ms": C.median(ta),
                   "in_fori_loop_ms": C.median(tl),
                   "loop_slowdown": C.median(tl) / C.median(ta)}
      C.log(f"    probe {name}: alone {out[name]['alone_ms']:.2f} ms, in "
            f"loop {out[name]['in_fori_loop_ms']:.2f} ms")
  flops = 2 * 64 * 28 * 28 * 32 * 32 * 9
  for o in out.values():
    o["gflop_per_s_alone"] = flops / o["alone_ms"] / 1e6
    o["gflop_per_s_in_loop"] = flops / o["in_fori_loop_ms"] / 1e6
  out.update(probe_roofline(x, w, y, flops))
  return out


def _median_ms(fn, sync, repeats=9):
  """Median milliseconds of ``repeats`` timed calls after one warm-up."""
  sync(fn())
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    sync(fn())
    ts.append((time.perf_counter() - t) * 1e3)
  return C.median(ts)


def probe_roofline(x, w, y, flops):
  """What a faster convolution could reach on this machine.

  For the CNN's middle layer (the ``probe_ops`` shapes): PyTorch's forward,
  input and kernel gradients (2 threads and 1), XLA:CPU's dense matmul rate
  (2048 x 2048, the fastest thing XLA:CPU does here) and the core of a
  Winograd F(2x2, 3x3) forward, its 16 batched ``(tiles x 32) @ (32 x 32)``
  products alone (2.25x fewer multiplications than the direct
  convolution; the tile transforms, not timed, only add to it)."""
  import jax
  import jax.numpy as jnp
  out = {}
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  ms = _median_ms(lambda: mm(a), jax.block_until_ready)
  out["xla_matmul_2048"] = {"ms": ms, "gflop_per_s": 2 * n ** 3 / ms / 1e6}
  tiles = x.shape[0] * (x.shape[1] // 2) * (x.shape[2] // 2)
  v = jnp.ones((16, tiles, x.shape[3]), jnp.float32)
  u = jnp.ones((16, x.shape[3], w.shape[3]), jnp.float32)
  bmm = jax.jit(lambda v, u: jnp.einsum("ptc,pck->ptk", v, u))
  ms = _median_ms(lambda: bmm(v, u), jax.block_until_ready)
  out["xla_winograd_f2x2_products"] = {
      "ms": ms, "gflop_per_s": 2 * v.size * u.shape[2] / ms / 1e6,
      "direct_equivalent_gflop_per_s": flops / ms / 1e6}
  if not C.has_torch():
    return out
  import numpy as np
  import torch
  xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  wt = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy())
  gt = torch.from_numpy(np.asarray(y).transpose(0, 3, 1, 2).copy())
  grad = torch.nn.grad
  ops = {"forward": lambda: torch.nn.functional.conv2d(xt, wt, padding=1),
         "input_grad": lambda: grad.conv2d_input(xt.shape, wt, gt, padding=1),
         "kernel_grad": lambda: grad.conv2d_weight(xt, wt.shape, gt,
                                                    padding=1)}
  before = torch.get_num_threads()
  try:
    for threads in (2, 1):
      torch.set_num_threads(threads)
      for op_name, op in ops.items():
        with torch.no_grad():
          ms = _median_ms(op, lambda r: r)
        out[f"torch{threads}_{op_name}"] = {
            "ms": ms, "gflop_per_s": flops / ms / 1e6}
        C.log(f"    probe torch {threads} thread(s) {op_name}: {ms:.2f} ms")
  finally:
    torch.set_num_threads(before)
  return out


def probe_hlo(X, Y, libs, params, scan_update):
  """The convolution instructions (dimension labels), YNNPACK fusions and
  custom calls of the compiled HLO of the scanned client update of each
  model in ``libs``."""
  import re
  import jax
  import jax.numpy as jnp
  from fedasync_jax import ClientHParams, ClientRef
  hp = ClientHParams(jnp.float32(1.0), jnp.float32(0.0))
  out = {}
  for lib_name, lib in libs.items():
    upd = scan_update(lib.loss)
    n = int(upd.max_examples)
    txt = jax.jit(lambda p: upd.update(p, ClientRef(X, Y, 0, n),
                                       jax.random.key(0), hp)).lower(
        params).compile().as_text()
    convs = re.findall(
        r"convolution\([^)]*\)[^\n]*dim_labels=([a-z0-9_>\-]+)", txt)
    customs = sorted(set(re.findall(r'custom_call_target="([^"]+)"', txt)))
    out[f"hlo_scan_{lib_name}"] = {
        "convolutions_dim_labels": convs,
        "ynn_fusions": len(re.findall(
            r"= [^\n]*fusion\([^\n]*__ynn_fusion", txt)),
        "custom_call_targets": customs,
        "while_loops": txt.count(" while(")}
  return out


# ---------------------------------------------------------------------------
# Driver.


def run_attempt(args, model, flag_name):
  """One model under one XLA flag set, in a fresh subprocess."""
  env = dict(os.environ)
  flags = FLAG_SETS[flag_name]
  if flags:
    env["XLA_FLAGS"] = flags
  else:
    env.pop("XLA_FLAGS", None)
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model",
         model, "--steps", str(args.steps), "--slow-steps",
         str(args.slow_steps if model == "cnn" else 1), "--repeats",
         str(args.repeats), "--data", str(args.data), "--cpu-devices",
         str(args.cpu_devices), "--flag-set", flag_name]
  if args.variants:
    cmd += ["--variants", args.variants]
  if args.probe and flag_name in FULL_FLAG_SETS:
    cmd += ["--probe"]
  if args.profile:
    cmd += ["--profile"]
  C.log(f"attempt: model={model} flags={flag_name!r} ({flags})")
  t = time.perf_counter()
  try:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=args.timeout)
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    res = (json.loads(line[-1][7:]) if line else
           {"error": f"rc={p.returncode}", "stderr_tail": p.stderr[-2000:]})
    for l in p.stderr.splitlines():
      if l.startswith("    "):
        C.log(l)
    warn = [l for l in p.stderr.splitlines()
            if "no longer supported" in l or "Unknown flag" in l
            or "unknown" in l.lower() and "flag" in l.lower()]
    if warn:
      res["xla_warnings"] = warn[:5]
  except subprocess.TimeoutExpired:
    res = {"error": f"timeout after {args.timeout} s"}
  res.update({"model": model, "flag_set": flag_name, "xla_flags": flags,
              "subprocess_wall_s": time.perf_counter() - t})
  if "variants" in res:
    C.log("  => " + ", ".join(f"{v} {o['examples_per_s']:.0f}/s"
                             for v, o in res["variants"].items()))
  else:
    C.log(f"  => {res.get('error') or res.get('skipped')}")
  return res


def summarize_model(attempts, model):
  """The numbers of one model under the first of FULL_FLAG_SETS measured
  (the library's flags, else XLA's defaults) and its best variant."""
  base = next((a for f in FULL_FLAG_SETS for a in attempts
               if a["model"] == model and a["flag_set"] == f
               and "variants" in a), None)
  if base is None:
    return None
  rows = [(o.get("vs_torch_paired", float("nan")), v, a["flag_set"],
           o["examples_per_s"]) for a in attempts
          if a["model"] == model and "variants" in a
          for v, o in a["variants"].items() if not v.startswith("torch")]
  rows = [r for r in rows if r[0] == r[0]]
  b = max(rows) if rows else None
  v = base["variants"]

  def get(variant, field):
    return v.get(variant, {}).get(field)
  return {
      "ours_lib_scan_examples_per_s": get("lib_scan", "examples_per_s"),
      "torch_examples_per_s": get("torch", "examples_per_s"),
      "torch_1thread_examples_per_s": get("torch_1thread", "examples_per_s"),
      "lib_scan_vs_torch": get("lib_scan", "vs_torch_paired"),
      "lib_scan_vs_best_torch": get("lib_scan", "vs_best_torch_paired"),
      "laxconv_scan_examples_per_s": get("laxconv_scan", "examples_per_s"),
      "lib_scan_vs_laxconv_scan": (
          v["lib_scan"]["examples_per_s"]
          / v["laxconv_scan"]["examples_per_s"]
          if "lib_scan" in v and "laxconv_scan" in v else None),
      "lib_devices5_examples_per_s": get("lib_devices5", "examples_per_s"),
      "lib_devices5_vs_torch": get("lib_devices5", "vs_torch_paired"),
      "lib_devices5_vs_lib_scan": get("lib_devices5", "vs_lib_scan_paired"),
      "lib_map5_vs_lib_scan": get("lib_map5", "vs_lib_scan_paired"),
      "cpu_devices": base.get("cpu_devices"),
      "flag_set": base["flag_set"],
      "best": ({"vs_torch": b[0], "variant": b[1], "flag_set": b[2],
                "examples_per_s": b[3]} if b else None),
      "paper_client_update_s_lib_scan": (
          60000 / v["lib_scan"]["examples_per_s"] if "lib_scan" in v
          else None),
      "paper_client_update_s_torch": (
          60000 / v["torch"]["examples_per_s"] if "torch" in v else None),
  }


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  if args.worker:
    print("RESULT " + json.dumps(worker(args)))
    return 0
  args.data = C.mnist_path(args, C.out_dir(args) if args.smoke else None)
  if C.skip_if_no_mnist(args.data, "paper_cnn"):
    return 0
  if not C.has_torch():
    C.log("torch is not installed: the torch variants are left out")
  started, load0 = time.perf_counter(), C.loadavg()
  attempts = [run_attempt(args, model, flag_name)
              for model in args.models.split(",")
              for flag_name in args.flags.split(",")
              # the default flag sets' attempts on the CNN only (keeps
              # compute reasonable); flag sets named by --flags on every model
              if model == "cnn" or flag_name == "default"
              or args.flags_chosen]
  summary = {m: s for m in args.models.split(",")
             for s in [summarize_model(attempts, m)] if s is not None}
  result = {"config": {"dataset": "MNIST (CNN) / CIFAR-10 lossless subset, "
                       "repeated (ResNet-20)", "clients": 10,
                       "per_round": 5, "local_epochs": 10, "batch": 64,
                       "optimizer": "adam(1e-3)",
                       "steps_per_timed_call": args.steps},
            "summary": summary, "attempts": attempts,
            "torch": C.has_torch(),
            "target": "issue 16: the library's client training (CNN and "
                      "ResNet-20, batch 64, Adam) at least 1.2x PyTorch's "
                      "examples/s on 2 threads",
            "method": "per attempt a fresh subprocess (XLA_FLAGS), variants "
                      "and torch interleaved, repeats in rotating order; "
                      "examples/s = medians; vs_torch = median of per-repeat "
                      "paired ratios"}
  C.finish("paper_cnn", result, args=args, started=started,
           load_start=load0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
