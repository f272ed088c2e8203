"""Shared test set-up: strict rank promotion and small shared problems."""

import os
import tempfile

# The suite checks what programs compute, not how fast they run. XLA's
# cheap code generation (LLVM at optimisation level 0; XLA's graph passes,
# fusions and library calls are unchanged, and LLVM keeps IEEE arithmetic
# either way) took the suite from 590 s to 509 s on 2 cores (2026-12-03,
# every test passing both ways). Set before JAX is first imported (pytest
# loads this file before collecting), so that the subprocesses tests start
# inherit it too; a value set outside is kept.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Many tests build the same small programs through different Python
# functions, which JAX's in-memory caches compile again; its persistent
# cache, keyed by the program itself, loads them instead. One fresh folder
# per session, shared with the processes the tests start, removed at the
# end (pytest_sessionfinish).
_XLA_CACHE = tempfile.mkdtemp(prefix="fedasync-test-xla-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# The command line keeps compiled programs on disk by default; tests that
# call it in-process must not change this process's JAX configuration.
os.environ["FEDASYNC_JAX_CACHE_DIR"] = "off"
# Nor its XLA options: the command line sets them (cli._choose_cpu_conv)
# when JAX has not started, so whether the first in-process command came
# before any array decided them for the whole session (a subset starting
# with tests/test_sweep_cli.py ran tests/test_xla_cpu.py's default-options
# checks on Eigen's convolutions). Started here, every subset runs on
# XLA's defaults, as the whole suite does.
jax.devices()

# CI runs the property tests with a fixed seed so a red run can be replayed;
# local runs keep exploring new examples.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
  settings.load_profile("ci")

from fedasync_jax import client, data  # noqa: E402


def interrupt_after_checkpoint(argv, out, *, env=None, timeout=120):
  """Starts ``python -m fedasync_jax.run.cli *argv`` in a subprocess, sends
  SIGINT once ``out/checkpoint.msgpack`` exists (within ``timeout``
  seconds) and returns ``(returncode, stderr)``."""
  import signal
  import subprocess
  import sys
  import time
  env = dict(env or os.environ, PYTHONUNBUFFERED="1")
  proc = subprocess.Popen(
      [sys.executable, "-m", "fedasync_jax.run.cli", *argv], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + timeout
  while not (out / "checkpoint.msgpack").exists():
    assert proc.poll() is None, proc.communicate()
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  return proc.returncode, err


def lsq_loss(w, x, y, mask):
  """Mean squared error of a linear model over the masked examples."""
  err = (x @ w - y) ** 2
  return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def make_lsq_data(num_clients=40, dim=5, seed=0, dtype=np.float64,
                  noise=0.1, max_size=20):
  """A federated least-squares problem with ragged client sizes."""
  rng = np.random.default_rng(seed)
  sizes = rng.integers(1, max_size, size=num_clients)
  w_true = rng.normal(size=dim)
  xs = [rng.normal(size=(int(n), dim)).astype(dtype) for n in sizes]
  ys = [(x @ w_true + noise * rng.normal(size=len(x))).astype(dtype)
        for x in xs]
  return data.from_client_arrays(xs, ys), w_true


@pytest.fixture(scope="session")
def lsq():
  """(dataset in float64, true weights)."""
  return make_lsq_data()


@pytest.fixture(scope="session")
def lsq_update(lsq):
  ds, _ = lsq
  return client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                             max_examples=ds.max_count)


def entry_points(rule, update, params, data, schedule, *, key,
                 make_rule=None, hparams=None) -> dict:
  """Callables that run ``rule`` on ``schedule`` through each entry point
  of the package: ``simulate`` (its default batching) and ``simulate_vmap``,
  ``reference``, ``track``, ``pure`` and a two-member ``sweep`` (of
  ``make_rule`` over ``hparams``; default: ``rule`` for both members).
  A test of what every entry point refuses picks them by name."""
  import jax
  import jax.numpy as jnp
  from fedasync_jax import executor, reference, sweep, theory
  from fedasync_jax.sim import pure
  make = make_rule if make_rule is not None else (lambda h: rule)
  hp = hparams if hparams is not None else {"h": jnp.zeros(2)}
  args = (update, params, data, schedule)
  return {
      "simulate": lambda: executor.simulate(rule, *args, key=key),
      "simulate_vmap": lambda: executor.simulate(rule, *args, key=key,
                                                 batching="vmap"),
      "reference": lambda: reference.run(rule, *args, key=key),
      "track": lambda: theory.track(rule, *args, key=key),
      "pure": lambda: pure.run(rule, update, params, pure.prepare(schedule),
                               key=key, data=data),
      "sweep": lambda: sweep.sweep(make, hp, update, params, data,
                                   [schedule, schedule],
                                   keys=jax.random.split(key, 2))}


def two_class_images(rng, n, size=8):
  """``n`` uint8 ``size`` x ``size`` grey images of two classes (bright top
  half vs bright bottom half) and their int64 labels."""
  y = rng.integers(0, 2, n)
  x = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
  for i, c in enumerate(y):
    x[i, :size // 2] += np.uint8(150 * (c == 0))
    x[i, size // 2:] += np.uint8(150 * (c == 1))
  return x, y.astype(np.int64)


def write_image_npz(path, seed=0, size=8):
  """Writes 400 training and 100 test ``two_class_images`` as an .npz with
  ``x_train, y_train, x_test, y_test``; returns ``path``. ``size=28``
  gives MNIST's shape, for a file loaded as ``data.name`` ``mnist``."""
  rng = np.random.default_rng(seed)
  x_tr, y_tr = two_class_images(rng, 400, size)
  x_te, y_te = two_class_images(rng, 100, size)
  np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
  return path


def pytest_collection_finish(session):
  """Starts the scripts' smoke runs (tests/test_scripts.py) as soon as the
  tests are known, so that they run beside the rest of the suite."""
  if session.config.option.collectonly:
    return
  for item in session.items:
    if getattr(item, "originalname", "") == "test_script_smoke":
      item.module.start_smoke_runs(session)
      return


def pytest_sessionfinish(session, exitstatus):
  import shutil
  shutil.rmtree(_XLA_CACHE, ignore_errors=True)
  for item in getattr(session, "items", ()):
    if getattr(item, "originalname", "") == "test_script_smoke":
      item.module.stop_smoke_runs()
      return
