"""Shared helpers of the benchmark harnesses (not imported by the library).

* the W1 workload (MNIST over 1000 Dirichlet(0.5) clients; ``W1``,
  ``w1_data``, ``w1_delay_model``) and, for ``--smoke`` runs, a tiny
  MNIST-shaped stand-in generated on the spot (``smoke_mnist``);
* a lean PyTorch copy of the 784-200-200-10 MLP that starts from the same
  initial weights as the JAX model, and a lean PyTorch simulator loop
  (``TorchFed``); torch is imported lazily and is optional;
* machine / version / thread information, the load average, medians, and
  writing one JSON result per run (``finish``) into ``--out DIR``: by
  default the untracked ``runs/benchmarks/`` of the checkout (a new
  temporary folder for ``--smoke`` runs); a run is recorded by passing
  ``--out benchmarks/results``.

Every harness takes ``--smoke``: a tiny configuration on generated data
that runs the real code path in seconds (``tests/test_scripts.py`` runs it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
  sys.path.insert(0, str(ROOT))

DEFAULT_MNIST = ROOT / ".." / "shared" / "data" / "mnist.npz"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""The recorded results (tracked): written only with ``--out
benchmarks/results``."""
DEFAULT_OUT = ROOT / "runs" / "benchmarks"
"""Where a run writes without ``--out`` (``runs/`` is not tracked)."""

W1 = {
    "num_clients": 1000, "dirichlet_alpha": 0.5, "partition_seed": 0,
    "normalization": "(x/255 - 0.1307) / 0.3081",
    "model": "mlp 784-200-200-10 relu (models.mlp)", "epochs": 1,
    "batch_size": 10, "client_lr": 0.05,
    "rule": "fedasync(0.6, polynomial(0.5))", "concurrency": 100,
    "speeds": "lognormal sigma=1 seed=0", "work": "example counts",
    "jitter": "exponential (library default)",
    "num_updates": 5000, "schedule_seed": 0, "model_seed": 0, "train_key": 0,
}
# W1 shrunk for --smoke runs (generated data, seconds).
W1_SMOKE = dict(W1, num_clients=20, concurrency=5, num_updates=100,
                data="generated MNIST-shaped images (smoke_mnist)")


def rel_diff(a, b):
  """max |a - b| over all leaves / max |b| (pytrees of arrays)."""
  import jax
  import numpy as np
  la = [np.asarray(x, np.float64) for x in jax.tree.leaves(a)]
  lb = [np.asarray(x, np.float64) for x in jax.tree.leaves(b)]
  num = max(float(np.max(np.abs(x - y))) for x, y in zip(la, lb))
  den = max(float(np.max(np.abs(y))) for y in lb)
  return num / den if den > 0 else num


def log(msg):
  print(msg, file=sys.stderr, flush=True)


def measured(x) -> bool:
  """Whether ``x`` holds a measurement (``None`` and NaN mark none)."""
  return x is not None and not (isinstance(x, float) and math.isnan(x))


def rate(x, unit: str = "updates/s") -> str:
  """A measured rate for a log line: ``'123 updates/s'``, or says that it
  was not measured (a run of fewer than three chunks has no steady
  state)."""
  if not measured(x):
    return f"no steady {unit} (fewer than 3 chunks)"
  return f"{x:.0f} {unit}"


def seconds(x) -> str:
  """A measured time in seconds for a log line (``'n/a'`` when not
  measured)."""
  return f"{x:.1f} s" if measured(x) else "n/a"


def median(xs):
  xs = [x for x in xs if measured(x)]
  return statistics.median(xs) if xs else float("nan")


def loadavg():
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


# ---------------------------------------------------------------------------
# Command line: --smoke / --out, and skipping.


def add_output_args(ap: argparse.ArgumentParser):
  """Adds ``--smoke`` and ``--out`` to a harness's parser."""
  ap.add_argument("--smoke", action="store_true",
                  help="a tiny configuration on generated data (seconds); "
                  "writes to --out (default: a new temporary folder)")
  ap.add_argument("--out", type=Path, default=None,
                  help="folder for the result JSON (default: runs/benchmarks/"
                  " of the checkout, untracked, or a temporary folder with "
                  "--smoke; --out benchmarks/results records a run)")
  return ap


def mnist_parser(doc: str) -> argparse.ArgumentParser:
  """A W1 harness's parser: its description (``doc``'s first paragraph),
  ``--quick``, ``--smoke``, ``--out`` and ``--data`` (the MNIST file)."""
  ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  add_output_args(ap)
  ap.add_argument("--data", default=None,
                  help="MNIST .npz (default: the shared copy)")
  return ap


def out_dir(args) -> Path:
  """Where this run writes: ``--out``, else a temporary folder for
  ``--smoke`` runs, else ``runs/benchmarks/`` (``DEFAULT_OUT``; never the
  tracked ``benchmarks/results/`` unless ``--out`` names it)."""
  if args.out is not None:
    path = Path(args.out)
  elif getattr(args, "smoke", False):
    path = Path(tempfile.mkdtemp(prefix="benchmark_smoke_"))
  else:
    path = DEFAULT_OUT
  path.mkdir(parents=True, exist_ok=True)
  args.out = path  # later calls (and subprocesses) use the same folder
  return path


def skip(name, reason):
  """Prints why ``name`` is skipped (and the one-line JSON saying so)."""
  print(reason)
  print(json.dumps({"benchmark": name, "skipped": True, "reason": reason}))


def skip_if_no_mnist(path, name):
  """Prints a skip message and returns True when MNIST is absent."""
  path = Path(path)
  if path.exists():
    return False
  skip(name, f"{name} needs MNIST at {path.resolve()} (x_train, y_train, "
       f"x_test, y_test); it is absent, so the benchmark is skipped. Pass "
       f"--data PATH to point at a copy (or --smoke for generated data).")
  return True


def has_torch() -> bool:
  return importlib.util.find_spec("torch") is not None


def skip_if_no_torch(name):
  """Prints a skip message and returns True when torch is not installed."""
  if has_torch():
    return False
  skip(name, f"{name} compares against PyTorch, which is not installed "
       f"(pip install -e '.[bench]'); skipped.")
  return True


# ---------------------------------------------------------------------------
# Data.


def fake_images(n, shape, seed=0, num_classes=10):
  """``n`` uint8 images of ``shape`` whose class is a bright horizontal
  band (class c at rows 2c..2c+2) on noise, and their int64 labels: a
  learnable stand-in for MNIST/CIFAR in smoke runs."""
  import numpy as np
  rng = np.random.default_rng(seed)
  y = rng.integers(0, num_classes, n)
  x = rng.integers(0, 60, (n,) + tuple(shape)).astype(np.uint8)
  rows = np.arange(shape[0])[None, :]
  band = (rows >= 2 * y[:, None]) & (rows < 2 * y[:, None] + 3)
  x[band] += np.uint8(150)
  return x, y.astype(np.int64)


def smoke_mnist(folder, n_train=2000, n_test=200):
  """Writes ``<folder>/mnist_smoke.npz`` (MNIST-shaped ``fake_images``:
  ``x_train, y_train, x_test, y_test``) and returns its path."""
  import numpy as np
  path = Path(folder) / "mnist_smoke.npz"
  if not path.exists():
    x, y = fake_images(n_train, (28, 28), seed=0)
    xt, yt = fake_images(n_test, (28, 28), seed=1)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
  return path


def mnist_path(args, out):
  """The MNIST file of this run: ``--data``, the shared copy, or (with
  ``--smoke``) a generated stand-in written into ``out``."""
  if getattr(args, "smoke", False):
    return smoke_mnist(out)
  return Path(getattr(args, "data", None) or DEFAULT_MNIST)


def normalize_mnist(x, flat=True):
  import numpy as np
  x = x.astype(np.float32) / np.float32(255.0)
  x = ((x - np.float32(0.1307)) / np.float32(0.3081)).astype(np.float32)
  return x.reshape(x.shape[0], -1) if flat else x


def load_mnist(path, flat=True):
  import numpy as np
  with np.load(path) as f:
    return (normalize_mnist(f["x_train"], flat), f["y_train"].astype(np.int32),
            normalize_mnist(f["x_test"], flat), f["y_test"].astype(np.int32))


def w1_data(path, num_clients=W1["num_clients"], flat=True):
  """``(ClientDataset, x_test, y_test)`` of W1 (``num_clients``
  Dirichlet(0.5) clients, seed 0, normalized; flattened, or 28x28x1
  images with ``flat=False``)."""
  from fedasync_jax import data, partition
  x, y, xt, yt = load_mnist(path, flat)
  if not flat:
    x, xt = x[..., None], xt[..., None]
  parts = partition.dirichlet(y, num_clients, alpha=W1["dirichlet_alpha"],
                              seed=W1["partition_seed"])
  return data.from_partition(x, y, parts), xt, yt


def w1_delay_model(ds):
  from fedasync_jax import delays
  speeds = delays.device_speeds("lognormal", ds.num_clients, sigma=1.0,
                                seed=0)
  return delays.delay_model(speeds, ds.counts.astype(float) * W1["epochs"])


def w1_pieces(ds):
  """W1's model, initial parameters, client update, rule and key."""
  import jax
  import optax
  from fedasync_jax import client, models, rules, staleness
  model = models.mlp()
  params = model.init(jax.random.key(W1["model_seed"]))
  update = client.local_update(model.loss, optax.sgd(W1["client_lr"]),
                               batch_size=W1["batch_size"],
                               max_examples=ds.max_count, epochs=W1["epochs"])
  rule = rules.fedasync(0.6, staleness.polynomial(0.5))
  return model, params, update, rule, jax.random.key(W1["train_key"])


# ---------------------------------------------------------------------------
# PyTorch side.


def torch_setup(threads):
  import torch
  torch.set_num_threads(int(threads))
  try:
    torch.set_num_interop_threads(1)
  except RuntimeError:
    pass  # already set in this process
  return torch


def torch_mlp_from_jax(params):
  """A ``torch.nn.Sequential`` 784-200-200-10 ReLU MLP holding the JAX
  parameters ``params`` (flax Dense kernels are (in, out); torch Linear
  weights are (out, in))."""
  import numpy as np
  import torch
  names = sorted(params.keys(), key=lambda s: int(s.split("_")[-1]))
  layers = []
  for i, n in enumerate(names):
    k = np.asarray(params[n]["kernel"])
    lin = torch.nn.Linear(k.shape[0], k.shape[1])
    with torch.no_grad():
      lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.T)))
      lin.bias.copy_(torch.from_numpy(np.array(params[n]["bias"])))
    layers.append(lin)
    if i < len(names) - 1:
      layers.append(torch.nn.ReLU())
  return torch.nn.Sequential(*layers)


class FlatModel:
  """A torch model whose parameters (and gradients) are views into one flat
  buffer, so that loading a start state, an SGD step and FedAsync mixing are
  each ONE vector operation (the lean way to write a simulator loop)."""

  def __init__(self, module):
    import torch
    self.module = module
    ps = list(module.parameters())
    n = sum(p.numel() for p in ps)
    self.flat = torch.zeros(n)
    self.grad = torch.zeros(n)
    i = 0
    for p in ps:
      k = p.numel()
      with torch.no_grad():
        self.flat[i:i + k].copy_(p.data.reshape(-1))
      p.data = self.flat[i:i + k].view_as(p)
      p.grad = self.grad[i:i + k].view_as(p)
      i += k
    self.params = ps

  def check_views(self):
    """Gradients must still be views of the flat buffer (autograd
    accumulates into an existing ``.grad`` in place)."""
    for p in self.params:
      if p.grad is None or p.grad.untyped_storage().data_ptr() != \
          self.grad.untyped_storage().data_ptr():
        raise AssertionError("gradients are no longer views of the flat "
                             "buffer")


def torch_accuracy(module, x_test, y_test, batch=1000):
  import torch
  x = torch.from_numpy(x_test)
  y = torch.from_numpy(y_test.astype("int64"))
  correct = 0
  with torch.no_grad():
    for i in range(0, len(y), batch):
      correct += int((module(x[i:i + batch]).argmax(1) == y[i:i + batch])
                     .sum())
  return correct / len(y)


# ---------------------------------------------------------------------------
# Reporting.


def versions():
  import jax
  import jaxlib
  import numpy as np
  out = {"python": platform.python_version(), "jax": jax.__version__,
         "jaxlib": jaxlib.__version__, "numpy": np.__version__}
  for mod in ("flax", "optax", "torch"):
    try:
      out[mod] = __import__(mod).__version__
    except ImportError:
      out[mod] = None
  return out


def machine_info():
  import jax
  info = {"platform": platform.platform(), "machine": platform.machine(),
          "cpu_count": os.cpu_count(),
          "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()]}
  try:
    info["cpu_affinity"] = len(os.sched_getaffinity(0))
  except AttributeError:
    pass
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          info["cpu_model"] = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  try:
    with open("/proc/meminfo") as f:
      info["mem_total_kb"] = int(f.readline().split()[1])
  except (OSError, ValueError, IndexError):
    pass
  return info


def thread_settings():
  out = {k: os.environ.get(k) for k in (
      "XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
      "OPENBLAS_NUM_THREADS", "JAX_PLATFORMS")}
  if "torch" in sys.modules:
    t = sys.modules["torch"]
    out["torch_num_threads"] = t.get_num_threads()
    out["torch_num_interop_threads"] = t.get_num_interop_threads()
  out["xla_cpu"] = ("XLA:CPU uses its own intra-op thread pool (one "
                    "thread per core by default, here "
                    f"{os.cpu_count()}); not set by torch.set_num_threads")
  return out


def _library_sources():
  pkg = ROOT / "fedasync_jax"
  return [(f.relative_to(pkg).as_posix(), f)
          for f in sorted(pkg.rglob("*.py"))]


def library_fingerprint():
  """sha256 of the library's sources (the library changes while benchmarks
  run; this says which version a result measured) and the mtimes of the
  files that matter most for speed."""
  import hashlib
  h = hashlib.sha256()
  mtimes = {}
  for name, f in _library_sources():
    h.update(name.encode())
    h.update(f.read_bytes())
    mtimes[name] = datetime.datetime.fromtimestamp(
        f.stat().st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")
  return {"sha256": h.hexdigest()[:16], "mtimes": {
      k: v for k, v in mtimes.items()
      if Path(k).name in ("client.py", "executor.py", "plan.py", "rules.py",
                          "sweep.py", "conv.py", "__init__.py")
      and not k.endswith("/__init__.py")}}


def library_files():
  """sha256 (first 12 hex) and mtime of every library source file, by path
  inside the package (``sim/executor.py``)."""
  import hashlib
  out = {}
  for name, f in _library_sources():
    out[name] = {
        "sha256": hashlib.sha256(f.read_bytes()).hexdigest()[:12],
        "mtime": datetime.datetime.fromtimestamp(
            f.stat().st_mtime, datetime.timezone.utc).isoformat(
                timespec="seconds")}
  return out


def command_line():
  return " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)


def now_iso():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def clean(o):
  import numpy as np
  if isinstance(o, dict):
    return {str(k): clean(v) for k, v in o.items()}
  if isinstance(o, (list, tuple)):
    return [clean(v) for v in o]
  if isinstance(o, (np.floating, float)):
    v = float(o)
    return float(f"{v:.6g}") if math.isfinite(v) else None
  if isinstance(o, np.integer):
    return int(o)
  if isinstance(o, np.bool_):
    return bool(o)
  if isinstance(o, np.ndarray):
    return clean(o.tolist())
  return o


def write_json(name, result, *, quick, folder=DEFAULT_OUT, smoke=False):
  """Writes ``result`` atomically to
  ``<folder>/<name>_<UTC stamp>[_quick|_smoke].json``; returns the path."""
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%dT%H%M%SZ")
  tag = "_smoke" if smoke else "_quick" if quick else ""
  path = folder / f"{name}_{stamp}{tag}.json"
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(result, indent=2) + "\n")
  os.replace(tmp, path)
  return path


def finish(name, result, *, args, started, load_start):
  """Adds the machine, versions, threads, date, command, load averages and
  wall time; writes ``<out_dir(args)>/<name>_<stamp>[_quick|_smoke].json``;
  prints the one-line JSON last. Returns the path."""
  result = dict(result)
  quick, smoke = bool(getattr(args, "quick", False)), bool(args.smoke)
  result.update({
      "benchmark": name, "quick": quick, "smoke": smoke,
      "machine": machine_info(), "versions": versions(),
      "threads": thread_settings(), "library": library_fingerprint(),
      "date": now_iso(), "command": command_line(),
      "loadavg_start": load_start, "loadavg_end": loadavg(),
      "wall_s": time.perf_counter() - started})
  result = clean(result)
  path = write_json(name, result, quick=quick, folder=out_dir(args),
                    smoke=smoke)
  log(f"wrote {path}")
  print(json.dumps(result, separators=(",", ":")))
  return path


def peak_rss_mb():
  """Peak resident set size of this process, MiB (Linux ru_maxrss is KiB)."""
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------
# The lean PyTorch simulator loop (W1 FedAsync and W2 FedAvg).


class TorchFed:
  """A lean PyTorch simulator that walks a ``scheduler.Schedule``'s events
  with ONE reusable model (parameters and gradients views of flat buffers).

  * dispatch: snapshot the current global parameters (one clone per
    version, shared by every client that downloaded it, freed after the
    last of them arrives);
  * arrival: copy the snapshot into the model, train the client's pre-made
    tensors (no DataLoader; a permutation per epoch, minibatches of
    ``batch_size``, plain SGD as one vector op), then
    ``rule="fedasync"``: mix ``(1 - a) w + a w_k`` with
    ``a = alpha (1 + tau)^-staleness_a``, ``tau`` from its own version
    counter; ``rule="fedavg"``: accumulate ``n_k (w_k - w)`` and, on the
    arrival that ends the round, add the example-weighted mean.

  ``perm(task, count)``: the permutation source (default ``torch.randperm``
  with a seeded generator; ``jax_perm`` gives the library's, for the exact
  equal-work check).
  """

  def __init__(self, module, ds, *, lr, batch_size, epochs=1):
    import numpy as np
    import torch
    import torch.nn.functional as F
    self.torch, self.F = torch, F
    self.tm = FlatModel(module)
    self.init_flat = self.tm.flat.clone()
    self.X = torch.from_numpy(np.ascontiguousarray(ds.x))
    self.Y = torch.from_numpy(ds.y.astype(np.int64))
    self.offs, self.cnts = ds.offsets.tolist(), ds.counts.tolist()
    self.lr, self.B, self.E = float(lr), int(batch_size), int(epochs)

  def run(self, sched, *, rule, alpha=0.6, staleness_a=0.5, perm=None,
          seed=0):
    """Returns ``(global flat params, staleness list, wall seconds)``."""
    import numpy as np
    torch, F, tm = self.torch, self.F, self.tm
    events = sched.events.tolist()
    task_client = sched.client.tolist()
    ends_round = sched.ends_round.tolist()
    X, Y, B, lr = self.X, self.Y, self.B, self.lr
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    glob = self.init_flat.clone()
    acc = torch.zeros_like(glob)
    acc_n = 0.0
    version = 0
    task_v, snaps, taus = {}, {}, []
    for kind, k in events:
      if kind == 0:  # dispatch: download the current version
        s = snaps.get(version)
        if s is None:
          s = snaps[version] = [glob.clone(), 0]
        s[1] += 1
        task_v[k] = version
        continue
      v0 = task_v.pop(k)
      s = snaps[v0]
      s[1] -= 1
      if kind == 2:  # lost: never arrives
        if s[1] == 0:
          del snaps[v0]
        continue
      tm.flat.copy_(s[0])
      c = task_client[k]
      o, m = self.offs[c], self.cnts[c]
      xs, ys = X[o:o + m], Y[o:o + m]
      for e in range(self.E):
        p = perm(k, m, e) if perm is not None else torch.randperm(
            m, generator=gen)
        for i in range(0, m, B):
          idx = p[i:i + B]
          tm.grad.zero_()
          F.cross_entropy(tm.module(xs[idx]), ys[idx]).backward()
          with torch.no_grad():
            tm.flat.add_(tm.grad, alpha=-lr)
      tau = version - v0
      taus.append(tau)
      with torch.no_grad():
        if rule == "fedasync":
          a = alpha * (1.0 + tau) ** -staleness_a
          glob.mul_(1.0 - a).add_(tm.flat, alpha=a)
          version += 1
        elif rule == "fedavg":
          acc.add_(tm.flat - s[0], alpha=float(m))
          acc_n += m
          if ends_round[len(taus) - 1]:
            glob.add_(acc, alpha=1.0 / max(acc_n, 1e-30))
            acc.zero_()
            acc_n = 0.0
            version += 1
        else:
          raise ValueError(rule)
      if s[1] == 0:
        del snaps[v0]
    wall = time.perf_counter() - t0
    tm.check_views()
    if not np.array_equal(np.asarray(taus), sched.staleness):
      raise AssertionError("torch loop staleness differs from the schedule")
    return glob, taus, wall

  def accuracy(self, flat, x_test, y_test):
    self.tm.flat.copy_(flat)
    return torch_accuracy(self.tm.module, x_test, y_test)

  def rel_diff_to_jax(self, flat, jax_params):
    """max |torch - jax| / max |jax| over the MLP's parameters."""
    import numpy as np
    t_leaves, i = [], 0
    for lp in self.tm.params:
      t_leaves.append(flat[i:i + lp.numel()].view_as(lp).numpy())
      i += lp.numel()
    j_leaves = []
    for name in sorted(jax_params, key=lambda s: int(s.split("_")[-1])):
      j_leaves += [np.asarray(jax_params[name]["kernel"]).T,
                   np.asarray(jax_params[name]["bias"])]
    return max(float(np.max(np.abs(a - b))) for a, b in
               zip(t_leaves, j_leaves)) / max(float(np.max(np.abs(b)))
                                              for b in j_leaves)


def jax_perm_fn(key, max_examples):
  """``perm(task, count, epoch)``: the permutation ``client.local_update``
  uses for that task and epoch, as a torch tensor."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  @jax.jit
  def perm(k, m, e):
    u = jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, k), e),
                           (max_examples,))
    return jnp.argsort(jnp.where(jnp.arange(max_examples) < m, u, 2.0))

  return lambda k, m, e: torch.from_numpy(
      np.asarray(perm(k, m, e))[:m].astype(np.int64))


def simulate_timed(executor_mod, rule, update, params, ds, sched, key, **kw):
  """``executor.simulate`` timed as a user calls it. Returns ``(dict,
  RunResult)``: ``updates_per_s`` (whole call, compilation included),
  ``steady_updates_per_s`` (chunks after the first), ``compile_s``
  (estimate: first chunk minus its steady-state share)."""
  import jax
  marks = []
  t0 = time.perf_counter()
  out = executor_mod.simulate(
      rule, update, params, ds, sched, key=key,
      progress=lambda i: marks.append((time.perf_counter(),
                                       i["arrivals_done"])), **kw)
  jax.block_until_ready(out.state.params)
  wall = time.perf_counter() - t0
  n = sched.num_arrivals
  steady = ((marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
            if len(marks) > 2 else float("nan"))
  compile_s = (max(0.0, (marks[0][0] - t0) - marks[0][1] / steady)
               if steady > 0 else float("nan"))
  return {"updates_per_s": n / wall, "steady_updates_per_s": steady,
          "compile_s": compile_s, "wall_s": wall,
          "chunks": len(marks), "width": out.stats.get("width"),
          "arrivals_per_step": out.stats.get("arrivals_per_step"),
          "batching": out.stats.get("batching"),
          "padding_waste": out.stats.get("padding_waste")}, out


# ---------------------------------------------------------------------------
# Our executor against the lean torch loop on one schedule (W1 and W2).


class _Versus:
  """What ``versus_torch``'s steps share: W1's data, model, client update,
  test-set evaluator and the torch loop, built once."""

  def __init__(self, args, num_clients):
    import jax
    from fedasync_jax import models
    self.torch = torch_setup(args.torch_threads)
    self.ds, self.x_test, self.y_test = w1_data(args.data_path, num_clients)
    self.model, self.params, self.update, _, self.key = w1_pieces(self.ds)
    self.evaluate = jax.jit(models.make_evaluator(self.model, self.x_test,
                                                  self.y_test))
    self.tf = TorchFed(torch_mlp_from_jax(jax.device_get(self.params)),
                       self.ds, lr=W1["client_lr"],
                       batch_size=W1["batch_size"])
    self.finals = {}

  def equal_work(self, name, rule, torch_rule, chk):
    """The torch loop fed the library's permutations against
    ``executor.simulate`` on ``chk``: max relative parameter difference."""
    from fedasync_jax import executor
    p_ours = executor.simulate(rule, self.update, self.params, self.ds, chk,
                               key=self.key).state.params
    g_torch, _, _ = self.tf.run(
        chk, perm=jax_perm_fn(self.key, self.ds.max_count), **torch_rule)
    out = {"updates": chk.num_arrivals,
           "max_rel_param_diff": self.tf.rel_diff_to_jax(g_torch, p_ours)}
    log(f"{name}: equal-work check ({chk.num_arrivals} updates, library "
        f"permutations): max rel param diff "
        f"{out['max_rel_param_diff']:.2e}")
    return out

  def ours(self, label, rule, sched, **kw):
    """One whole ``executor.simulate`` run, timed (a callable)."""
    import jax
    from fedasync_jax import executor

    def run():
      res, out = simulate_timed(executor, rule, self.update, self.params,
                                self.ds, sched, self.key, **kw)
      res["accuracy"] = float(self.evaluate(out.state.params)["accuracy"])
      res["direct"] = out.stats["direct"]
      self.finals[label] = jax.device_get(out.state.params)
      return res
    return run

  def torch_loop(self, sched, torch_rule, threads, default_threads):
    """One whole run of the lean torch loop with ``threads`` threads."""
    def run():
      self.torch.set_num_threads(threads)
      try:
        glob, taus, wall = self.tf.run(sched, **torch_rule)
      finally:
        self.torch.set_num_threads(default_threads)
      return {"updates_per_s": len(taus) / wall, "wall_s": wall,
              "accuracy": self.tf.accuracy(glob, self.x_test, self.y_test),
              "threads": threads}
    return run

  def param_diffs(self):
    """Max relative difference of every variant's final parameters from
    ``ours_default``'s."""
    import jax
    import numpy as np
    if "ours_default" not in self.finals:
      return {}
    ref = jax.tree.leaves(self.finals["ours_default"])
    scale = max(float(np.abs(b).max()) for b in ref)
    return {k: max(float(np.abs(a - b).max()) for a, b in
                   zip(jax.tree.leaves(p), ref)) / scale
            for k, p in self.finals.items() if k != "ours_default"}


def run_rotating(systems, names, repeats):
  """Runs every system once per repeat, in rotating order; returns the
  samples per system."""
  runs = {k: [] for k in names}
  for r in range(repeats):
    for label in names[r % len(names):] + names[:r % len(names)]:
      res = systems[label]()
      res["loadavg"] = loadavg()
      runs[label].append(res)
      log(f"  repeat {r + 1}/{repeats} {label}: "
          f"{res['updates_per_s']:.1f} updates/s"
          + (f" (steady {res['steady_updates_per_s']:.1f}, compile "
             f"{res['compile_s']:.1f} s)" if "compile_s" in res else "")
          + f", accuracy {res['accuracy']:.4f}, load {res['loadavg']}")
  return runs


def summarize_versus(runs, names):
  """Medians per system and the paired ratios of ours against torch."""
  def med(label, field):
    return median([x[field] for x in runs[label]])

  def paired(label, field, others):
    return median([a[field] / max(o["updates_per_s"] for o in os_)
                   for a, *os_ in zip(runs[label], *(runs[o] for o in others))])

  summary = {k: {"updates_per_s": med(k, "updates_per_s"),
                 "accuracy": med(k, "accuracy")} for k in names}
  ratios = {}
  for k in names:
    if not k.startswith("ours"):
      continue
    summary[k].update(
        steady_updates_per_s=med(k, "steady_updates_per_s"),
        compile_s=med(k, "compile_s"),
        config={f: runs[k][0][f] for f in ("width", "arrivals_per_step",
                                           "batching", "padding_waste",
                                           "direct")})
    if "torch" in runs:
      ratios[f"{k}_vs_torch"] = paired(k, "updates_per_s", ["torch"])
      ratios[f"{k}_steady_vs_torch"] = paired(k, "steady_updates_per_s",
                                              ["torch"])
      ratios[f"{k}_accuracy_minus_torch"] = (summary[k]["accuracy"]
                                             - summary["torch"]["accuracy"])
      if "torch_1thread" in runs:
        ratios[f"{k}_vs_best_torch"] = paired(k, "updates_per_s",
                                              ["torch", "torch_1thread"])
  return summary, ratios


def versus_torch(name, args, *, rule, torch_rule, make_sched, check_sched,
                 target, workload_config, waves_width):
  """Runs ``executor.simulate`` (library defaults, and the wave path of
  width ``waves_width``) and ``TorchFed`` (``--torch-threads`` threads and
  1 thread) on W1's data, model and client training, whole runs in
  rotating order for ``args.repeats`` repeats; records medians, per-repeat
  paired ratios, test accuracies, an exact equal-work check on
  ``check_sched`` (the torch loop fed the library's permutations) and the
  final parameters' differences between our variants. Writes the result
  with ``finish``."""
  started, load0 = time.perf_counter(), loadavg()
  vs = _Versus(args, workload_config["num_clients"])
  sched = make_sched(vs.ds)
  log(f"{name}: {sched.num_arrivals} client updates")
  equal_work = vs.equal_work(name, rule, torch_rule, check_sched(vs.ds))
  systems = {
      "ours_default": vs.ours("ours_default", rule, sched),
      "ours_waves": vs.ours("ours_waves", rule, sched, width=waves_width),
      "torch": vs.torch_loop(sched, torch_rule, args.torch_threads,
                             args.torch_threads),
      "torch_1thread": vs.torch_loop(sched, torch_rule, 1,
                                     args.torch_threads)}
  names = args.systems.split(",") if args.systems else list(systems)
  runs = run_rotating(systems, names, args.repeats)
  summary, ratios = summarize_versus(runs, names)
  result = {
      "workload": name, "workload_config": workload_config,
      "updates": sched.num_arrivals, "repeats": args.repeats,
      "summary": summary, "ratios": ratios, "target": target,
      "equal_work_check": equal_work,
      "max_rel_param_diff_vs_ours_default": vs.param_diffs(),
      "schedule": {"mean_staleness": float(sched.staleness.mean()),
                   "max_staleness": int(sched.staleness.max()),
                   "realised_concurrency":
                       sched.stats.get("realised_concurrency")},
      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
      "samples": runs,
      "method": "each system runs the whole workload once per repeat, "
                "systems in rotating order; updates_per_s = updates / wall "
                "time of the whole call (ours: executor.simulate including "
                "compilation); steady = after the first chunk; ratios are "
                "medians of per-repeat paired ratios",
  }
  return finish(f"torch_{name.lower()}", result, args=args, started=started,
                load_start=load0)


def versus_torch_args(argv, doc, *, sizes, size_help):
  """The command line shared by torch_w1.py and torch_w2.py; ``sizes`` maps
  the workload-size option (``--updates`` / ``--rounds``) to its (full,
  quick, smoke) defaults."""
  ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--data", default=None, help="path of mnist.npz")
  add_output_args(ap)
  (opt, (full, quick, smoke)), = sizes.items()
  ap.add_argument(f"--{opt}", type=int, default=None, help=size_help)
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--torch-threads", type=int, default=2)
  ap.add_argument("--omp-wait-policy", default="PASSIVE",
                  help="PASSIVE (default), ACTIVE, or 'default' (unset)")
  ap.add_argument("--systems", default=None,
                  help="comma-separated subset of ours_default, ours_waves, "
                       "torch, torch_1thread")
  args = ap.parse_args(argv)
  if getattr(args, opt) is None:
    setattr(args, opt, smoke if args.smoke else quick if args.quick
            else full)
  if args.repeats is None:
    args.repeats = 1 if args.smoke else 2 if args.quick else 3
  if args.omp_wait_policy.lower() != "default":
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
  return args
