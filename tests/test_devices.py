"""Work split over several devices equals the one-device runs: a sweep's
members in blocks per device, and one run's wave lanes dealt over the
devices (``batching="devices"``). Each runs in a subprocess: the number of
CPU devices is fixed when JAX starts."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEADER = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_enable_x64", True)
    import sys
    import numpy as np, jax.numpy as jnp, optax
    sys.path.insert(0, sys.argv[1])
    from conftest import lsq_loss, make_lsq_data
    from fedasync_jax import (client, delays, executor, reference, rules,
                              scheduler, staleness, sweep)
    assert len(jax.devices()) == 2
""")

SWEEP = textwrap.dedent("""
    ds, _ = make_lsq_data(num_clients=30, dtype=np.float64)
    upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                              max_examples=ds.max_count)
    dm = delays.delay_model(delays.device_speeds("lognormal", 30, seed=0),
                            ds.counts * 1.0)
    scheds = [scheduler.asynchronous(dm, num_updates=80, concurrency=5,
                                     seed=s) for s in range(4)]
    hp = {"alpha": jnp.array([0.3, 0.6, 0.9, 0.5]),
          "a": jnp.array([0.5, 1.0, 0.5, 2.0])}
    mk = lambda h: rules.fedasync(h["alpha"], staleness.polynomial(h["a"]))
    p0 = jnp.zeros(5)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("members",))
    outs = sweep.sweep(mk, hp, upd, p0, ds, scheds, keys=jax.random.key(0),
                       mesh=mesh, members="map")
    worst = 0.0
    for m in range(4):
      rule = rules.fedasync(float(hp["alpha"][m]),
                            staleness.polynomial(float(hp["a"][m])))
      r = executor.simulate(rule, upd, p0, ds, scheds[m],
                            key=jax.random.key(0))
      assert outs[m].stats["members_as"] == "map"
      worst = max(worst, float(np.max(np.abs(
          np.asarray(outs[m].state.params) - np.asarray(r.state.params)))))
    print("SWEEP", worst)
""")

LANES = textwrap.dedent("""
    ds, _ = make_lsq_data(num_clients=40, dtype=np.float64)
    upd = client.local_update(lsq_loss, optax.sgd(0.05), batch_size=4,
                              max_examples=ds.max_count, epochs=2)
    dm = delays.delay_model(delays.device_speeds("lognormal", 40, seed=0),
                            ds.counts * 1.0)
    a = scheduler.asynchronous(dm, num_updates=150, concurrency=10, seed=0)
    b = scheduler.asynchronous(dm, num_updates=150, concurrency=10, seed=1,
                               arrivals_per_version=3)
    s = scheduler.synchronous(dm, num_rounds=12, cohort_size=6, seed=2)
    cases = [(rules.fedasync(0.6, staleness.polynomial(0.5)), a, None),
             (rules.fedbuff(buffer_size=3), b, 6),
             (rules.fedavg(), s, None)]
    worst = 0.0
    for rule, sched, width in cases:
      r = reference.run(rule, upd, jnp.zeros(5), ds, sched,
                        key=jax.random.key(0))
      e = executor.simulate(rule, upd, jnp.zeros(5), ds, sched,
                            key=jax.random.key(0), batching="devices",
                            width=width)
      assert e.stats["batching"] == "devices", e.stats
      assert e.stats["width"] % 2 == 0
      scale = float(np.max(np.abs(np.asarray(r.state.params))))
      worst = max(worst, float(np.max(np.abs(
          np.asarray(e.state.params) - np.asarray(r.state.params)))) / scale)
    print("LANES", worst)
""")


@pytest.fixture(scope="module")
def two_devices():
  """Both checks in one fresh interpreter with two CPU devices:
  ``{"SWEEP": worst difference, "LANES": worst relative difference}``."""
  tests = Path(__file__).resolve().parent
  p = subprocess.run([sys.executable, "-c", HEADER + SWEEP + LANES,
                      str(tests)], capture_output=True, text=True,
                     timeout=300, cwd=tests.parent)
  assert p.returncode == 0, p.stderr[-3000:]
  return {k: float(v) for k, v in (line.split() for line in
                                   p.stdout.splitlines()
                                   if line.split()[:1] in (["SWEEP"],
                                                           ["LANES"]))}


def test_members_split_over_two_cpu_devices_equal_their_runs(two_devices):
  assert two_devices["SWEEP"] <= 1e-12


def test_wave_lanes_dealt_over_two_cpu_devices_equal_the_reference(
    two_devices):
  assert two_devices["LANES"] <= 1e-8


def test_cli_sweep_over_two_devices_equals_one_device(tmp_path, capsys):
  """``fedasync-jax sweep --devices 2`` ends with the same parameters as
  the sweep on one device (this process's); an uneven split is refused
  before any work, even where JAX has started."""
  from fedasync_jax.run import cli
  root = Path(__file__).resolve().parents[1]
  args = ["sweep", "--set", "data.num_clients=12", "--set",
          "run.num_updates=24", "--set", "run.concurrency=3", "--set",
          "run.eval_every=12", "--set", "run.plots=false"]
  members = ["--grid", "rule.alpha=0.3,0.9", "--seeds", "0,1"]
  assert cli.main(args + members + ["--out", str(tmp_path / "d1")]) == 0
  p = subprocess.run([sys.executable, "-m", "fedasync_jax.run.cli", *args,
                      *members, "--devices", "2", "--out",
                      str(tmp_path / "d2")], cwd=root,
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  one, two = ([f for f in sorted((tmp_path / d).glob(
      "*/final_params.msgpack")) if not f.parent.is_symlink()]
      for d in ("d1", "d2"))
  assert len(one) == 4 and [f.parent.name for f in one] == [
      f.parent.name for f in two]
  for a, b in zip(one, two):
    assert a.read_bytes() == b.read_bytes(), a.parent.name
  for n in (1, 2):
    summary = json.loads((tmp_path / f"d{n}" / "summary.json").read_text())
    assert summary["devices"] == n
  capsys.readouterr()
  assert cli.main(args + ["--grid", "rule.alpha=0.3,0.6,0.9", "--seeds",
                          "0", "--devices", "2", "--out",
                          str(tmp_path / "odd")]) == 2
  assert capsys.readouterr().err.strip().endswith(
      "--devices 2: the number of members (3) must be a multiple of it")
  assert not (tmp_path / "odd").exists()
