"""XLA:CPU's convolution path (``sim/xla_cpu.py``): which flags are set
when, that they reach XLA, and that training results do not depend on them
beyond float reassociation."""

import json
import os
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

from fedasync_jax.sim import xla_cpu
from fedasync_jax.run import cli

FLAG = xla_cpu.EIGEN_CONV_FLAG
MEASURED = xla_cpu.xla_flags_for("", conv="eigen") is not None


@pytest.mark.parametrize("flags,kw,expected", [
    ("", dict(conv="auto", cores=2), FLAG),
    ("", dict(conv="auto", cores=16), FLAG),
    ("", dict(conv="auto", cores=1), None),
    ("", dict(conv="eigen", cores=1), FLAG),
    ("", dict(conv="ynnpack", cores=8), None),
    ("--xla_dump_to=/tmp/x", dict(conv="auto", cores=2),
     "--xla_dump_to=/tmp/x " + FLAG),
    # The user's own choice of YNNPACK fusions wins, whatever it is.
    ("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution",
     dict(conv="eigen", cores=2), None),
    ("", dict(conv="eigen", cores=2, jaxlib_version="0.11.0"), None),
    ("", dict(conv="auto", cores=2, jaxlib_version="0.4.30"), None),
    ("", dict(conv="auto", cores=2, jaxlib_version="dev"), None),
    ("", dict(conv="auto", cores=2, jaxlib_version="0.10.1"), None),
    ("", dict(conv="auto", cores=2, jaxlib_version="0.10.7"), FLAG),
    # The CPU split into devices: Eigen only with two cores per device.
    ("", dict(conv="auto", cores=2, devices=2), None),
    ("", dict(conv="auto", cores=3, devices=2), None),
    ("", dict(conv="auto", cores=4, devices=2), FLAG),
    ("", dict(conv="auto", cores=16, devices=8), FLAG),
    ("", dict(conv="eigen", cores=2, devices=2), FLAG),
])
def test_flags_for(flags, kw, expected):
  kw.setdefault("jaxlib_version", "0.10.2")
  assert xla_cpu.xla_flags_for(flags, **kw) == expected


def test_bad_choice_names_parameter_and_choices():
  with pytest.raises(ValueError, match=r"conv must be one of \('auto', "
                     r"'eigen', 'ynnpack'\), got 'fast'"):
    xla_cpu.xla_flags_for("", conv="fast")
  with pytest.raises(SystemExit):  # argparse: invalid choice
    cli.build_parser().parse_args(["--cpu-conv", "fast", "demo"])
  for bad in (0, -2, 1.5, True):
    with pytest.raises(ValueError, match="devices must be a positive int"):
      xla_cpu.xla_flags_for("", conv="auto", devices=bad)


@pytest.mark.skipif(not MEASURED, reason="flag set on jaxlib [0.10.2, 0.11) only")
def test_too_late_warns_and_changes_nothing(monkeypatch):
  jax.devices()  # this process's backend has started
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/keep")
  with pytest.warns(RuntimeWarning, match="already started"):
    assert xla_cpu.configure_cpu(conv="eigen") is False
  assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/keep"


@pytest.mark.skipif(not MEASURED, reason="flag set on jaxlib [0.10.2, 0.11) only")
def test_cli_sets_flags_only_before_jax_starts(monkeypatch):
  args = cli.build_parser().parse_args(["demo"])
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 2)
  monkeypatch.setattr(xla_cpu, "backend_started", lambda: False)
  cli._choose_cpu_conv(args)
  assert os.environ["XLA_FLAGS"] == FLAG
  # In a process where JAX runs, "auto" stays silent and changes nothing.
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setattr(xla_cpu, "backend_started", lambda: True)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    cli._choose_cpu_conv(args)
  assert os.environ["XLA_FLAGS"] == ""
  # `sweep --devices 2` on 2 cores: one core per device keeps YNNPACK; an
  # out-of-range N is left to the sweep's own error.
  monkeypatch.setattr(xla_cpu, "backend_started", lambda: False)
  for devices, expected in ((2, ""), (1, FLAG), (0, FLAG), (999, FLAG)):
    monkeypatch.setenv("XLA_FLAGS", "")
    cli._choose_cpu_conv(cli.build_parser().parse_args(
        ["sweep", "--devices", str(devices)]))
    assert os.environ["XLA_FLAGS"] == expected, devices


CHILD = r"""
import json, sys
import numpy as np
import fedasync_jax as fj
changed = fj.configure_cpu(conv=sys.argv[1])
import jax, jax.numpy as jnp
from fedasync_jax import models
fns = models.mnist_cnn()
params = fns.init(jax.random.key(0))
x = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
y = jnp.arange(8) % 10
grad = jax.jit(jax.grad(lambda p: fns.loss(p, x, y, jnp.ones(8))))
hlo = grad.lower(params).compile().as_text()
g = np.concatenate([np.ravel(l) for l in jax.tree.leaves(grad(params))])
np.save(sys.argv[2], g)
print(json.dumps({"changed": changed, "ynn_convolutions": any(
    "__ynn_fusion" in l and "conv_general_dilated" in l
    for l in hlo.splitlines())}))
"""


@pytest.mark.skipif(not MEASURED, reason="flag set on jaxlib [0.10.2, 0.11) only")
def test_eigen_reaches_xla_and_keeps_gradients(tmp_path):
  """In a fresh process, ``configure_cpu(conv="eigen")`` takes the CNN's
  convolutions out of YNNPACK (``ynnpack`` keeps them there) and its loss
  gradient equals the one XLA's own path gives, to float reassociation."""
  out = {}
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  for choice in ("eigen", "ynnpack"):
    p = subprocess.run([sys.executable, "-c", CHILD, choice,
                        str(tmp_path / f"{choice}.npy")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out[choice] = json.loads(p.stdout.strip().splitlines()[-1])
  assert out["eigen"] == {"changed": True, "ynn_convolutions": False}
  assert out["ynnpack"] == {"changed": False, "ynn_convolutions": True}
  a = np.load(tmp_path / "eigen.npy")
  b = np.load(tmp_path / "ynnpack.npy")
  assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b))


# ----------------------------------------------------------------------------
# The same choice per compiled program (compiler_options).

OPTIONS = xla_cpu.EIGEN_CONV_OPTIONS


@pytest.mark.parametrize("kw,expected", [
    (dict(), OPTIONS),
    (dict(cores=16), OPTIONS),
    (dict(cores=1), {}),
    (dict(devices=2), {}),  # one core per device: YNNPACK's convolutions
    (dict(cores=4, devices=2), OPTIONS),
    (dict(conv="ynnpack"), {}),
    (dict(conv="eigen", cores=1), OPTIONS),
    (dict(backend="gpu"), {}),
    # The process's own flags hold: configure_cpu's, or the user's.
    (dict(xla_flags=FLAG), {}),
    (dict(xla_flags="--xla_cpu_experimental_ynn_fusion_type="
                    "+individual_convolution"), {}),
    (dict(jaxlib_version="0.11.0"), {}),
])
def test_compiler_options(kw, expected):
  kw = {"backend": "cpu", "xla_flags": "", "cores": 2,
        "jaxlib_version": "0.10.2", **kw}
  assert xla_cpu.compiler_options(**kw) == expected


def test_compiler_options_follow_the_configure_cpu_choice(monkeypatch):
  monkeypatch.setitem(xla_cpu._CHOICE, "conv", "auto")
  monkeypatch.setenv("XLA_FLAGS", "")
  kw = dict(backend="cpu", xla_flags="", cores=2, jaxlib_version="0.10.2")
  assert xla_cpu.compiler_options(**kw) == OPTIONS
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # "ynnpack" sets no flag: no warning
    assert xla_cpu.configure_cpu(conv="ynnpack") is False
  assert xla_cpu.compiler_options(**kw) == {}
  assert xla_cpu.compiler_options(conv="auto", **kw) == OPTIONS
  with pytest.raises(ValueError, match="conv must be one of"):
    xla_cpu.configure_cpu(conv="fast")
  assert xla_cpu._CHOICE["conv"] == "ynnpack"  # a refused call keeps it


def _ynn_kinds(compiled_text):
  """The op kinds (dot, convolution, reduce) inside YNNPACK fusions."""
  bodies, name = {}, None
  for line in compiled_text.splitlines():
    if line and not line.startswith(" ") and line.rstrip().endswith("{"):
      name = line.split()[0].lstrip("%")
      bodies[name] = []
    elif name is not None:
      bodies[name].append(line)
  kinds = set()
  for line in compiled_text.splitlines():
    if "ynn_fusion" in line and "calls=" in line:
      callee = line.split("calls=")[1].split(",")[0].split()[0].lstrip("%")
      body = "\n".join(bodies.get(callee, []))
      kinds |= {k for k in ("dot", "convolution", "reduce")
                if f" {k}(" in body}
  return kinds


@pytest.mark.skipif(not MEASURED, reason="options set on jaxlib [0.10.2, 0.11) only")
def test_options_take_convolutions_off_ynnpack_and_keep_the_rest():
  """EIGEN_CONV_OPTIONS restate jaxlib's default fusion types less the
  convolutions: a program's matrix product and reduction stay on YNNPACK,
  its convolution leaves it, and the values agree."""
  if jax.default_backend() != "cpu":
    pytest.skip("XLA:CPU only")
  import jax.numpy as jnp
  from jax import lax
  a = jax.random.normal(jax.random.key(0), (256, 256))
  x = jax.random.normal(jax.random.key(1), (8, 28, 28, 32))
  w = jax.random.normal(jax.random.key(2), (3, 3, 32, 32))
  r = jax.random.normal(jax.random.key(3), (512, 512))

  def f(a, x, w, r):
    conv = lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO",
                                                       "NHWC"))
    return a @ a, conv, jnp.sum(jnp.exp(r), axis=0)
  default = jax.jit(f)
  eigen = jax.jit(f, compiler_options=OPTIONS)
  assert _ynn_kinds(default.lower(a, x, w, r).compile().as_text()) == {
      "dot", "convolution", "reduce"}
  assert _ynn_kinds(eigen.lower(a, x, w, r).compile().as_text()) == {
      "dot", "reduce"}
  for u, v in zip(default(a, x, w, r), eigen(a, x, w, r)):
    np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(not MEASURED, reason="options set on jaxlib [0.10.2, 0.11) only")
def test_options_change_nothing_without_convolutions():
  """A program with no convolution (an MLP's local training: matrix
  products, reductions, elementwise ops) compiles to the same program with
  and without the options: they drop nothing else from jaxlib's default."""
  if jax.default_backend() != "cpu":
    pytest.skip("XLA:CPU only")
  import jax.numpy as jnp
  import optax
  from fedasync_jax import ClientHParams, ClientRef, client, models
  fns = models.mlp(hidden=(64, 64), input_dim=784)
  params = fns.init(jax.random.key(0))
  x, y = jnp.zeros((40, 784)), jnp.zeros((40,), jnp.int32)
  upd = client.local_update(fns.loss, optax.adam(1e-3), batch_size=10,
                            max_examples=40)
  hp = ClientHParams(jnp.float32(1.0), jnp.float32(0.0))

  def f(p):
    return upd.update(p, ClientRef(x, y, 0, 40), jax.random.key(0), hp)

  def program(**kw):
    text = jax.jit(f, **kw).lower(params).compile().as_text()
    return [l for l in text.splitlines() if not l.startswith("HloModule")]
  assert program() == program(compiler_options=OPTIONS)


def test_simulate_and_sweep_compile_with_the_program_options(monkeypatch,
                                                             lsq,
                                                             lsq_update):
  """The executor's and the sweep's programs are compiled with
  ``driver.program_options``: an option XLA refuses reaches XLA."""
  import jax.numpy as jnp
  from fedasync_jax import delays, executor, rules, scheduler, staleness
  from fedasync_jax.sim import driver, program, strategies, sweep
  assert driver.program_options(strategies.Direct()) == tuple(sorted(
      xla_cpu.compiler_options().items()))
  two = type("TwoDevices", (), {"num_devices": 2})()
  assert driver.program_options(two) == tuple(sorted(
      xla_cpu.compiler_options(devices=2).items()))
  ds, _ = lsq
  s = scheduler.asynchronous(
      delays.delay_model(np.ones(ds.num_clients), np.ones(ds.num_clients)),
      num_updates=4, concurrency=2, seed=0)
  rule = rules.fedasync(0.5, staleness.constant())
  bad = ((xla_cpu._FLAG_NAME, "NOT_A_FUSION_TYPE"),)
  monkeypatch.setattr(driver, "program_options", lambda *a, **k: bad)
  program.clear_cache()
  try:
    with pytest.raises(Exception, match="NOT_A_FUSION_TYPE"):
      executor.simulate(rule, lsq_update, jnp.zeros(5), ds, s,
                        key=jax.random.key(0))
    with pytest.raises(Exception, match="NOT_A_FUSION_TYPE"):
      sweep.sweep(lambda hp: rules.fedasync(hp["alpha"],
                                            staleness.constant()),
                  {"alpha": jnp.array([0.5, 0.6])}, lsq_update, jnp.zeros(5),
                  ds, s, keys=jax.random.split(jax.random.key(0), 2))
  finally:
    program.clear_cache()


YNN_TYPES = "--xla_cpu_experimental_ynn_fusion_type="


@pytest.mark.parametrize("flags,kw,expected", [
    ("", {}, True),
    (FLAG, {}, False),
    ("--xla_dump_to=/tmp/x", {}, True),
    (YNN_TYPES + "+individual_convolution", {}, True),
    (YNN_TYPES + "-individual_dot", {}, True),
    (YNN_TYPES + "individual_dot,reduce", {}, False),
    (YNN_TYPES + "INDIVIDUAL_CONVOLUTION,individual_dot", {}, True),
    ("", dict(backend="gpu"), False),
    ("", dict(jaxlib_version="0.11.0"), False),
    ("", dict(jaxlib_version="0.10.1"), False),
    ("", dict(jaxlib_version="dev"), False),
])
def test_ynn_convolutions_from_the_process_flags(flags, kw, expected):
  args = dict(backend="cpu", jaxlib_version="0.10.2") | kw
  assert xla_cpu.ynn_convolutions(xla_flags=flags, **args) is expected


def test_ynn_convolutions_follow_the_program_being_traced():
  """Inside ``traced_with`` the options of the program win over the
  process's flags; the innermost program counts; leaving (also by an
  exception) restores the outer answer."""
  def ask(flags):
    return xla_cpu.ynn_convolutions(backend="cpu", xla_flags=flags,
                                    jaxlib_version="0.10.2")
  with_conv = {xla_cpu._FLAG_NAME: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
               "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}
  assert xla_cpu.traced_with(lambda: ask(""),
                             xla_cpu.EIGEN_CONV_OPTIONS)() is False
  assert xla_cpu.traced_with(lambda: ask(FLAG), with_conv)() is True
  # Options that say nothing about YNNPACK leave the process's flags.
  assert xla_cpu.traced_with(lambda: ask(FLAG), {})() is False
  assert xla_cpu.traced_with(lambda: ask(""), {})() is True
  inner = xla_cpu.traced_with(lambda: ask(""), xla_cpu.EIGEN_CONV_OPTIONS)
  outer = xla_cpu.traced_with(lambda: (inner(), ask("")), with_conv)
  assert outer() == (False, True)

  def fails():
    raise RuntimeError("boom")
  with pytest.raises(RuntimeError):
    xla_cpu.traced_with(fails, xla_cpu.EIGEN_CONV_OPTIONS)()
  assert ask("") is True


@pytest.mark.parametrize("options", [(), tuple(
    xla_cpu.EIGEN_CONV_OPTIONS.items())])
def test_simulate_and_sweep_trace_the_model_under_their_options(
    monkeypatch, lsq, options):
  """What a model's convolution asks while the executor's and the sweep's
  programs are traced is the answer for those programs' options."""
  import jax.numpy as jnp
  import optax
  from conftest import lsq_loss
  from fedasync_jax import client, delays, executor, rules, scheduler
  from fedasync_jax import staleness
  from fedasync_jax.sim import driver, program, sweep
  asked = []

  def loss(w, x, y, mask):
    # Shape checks trace the update outside any program: not counted.
    if xla_cpu.traced_options() is not None:
      asked.append(xla_cpu.ynn_convolutions())
    return lsq_loss(w, x, y, mask)

  ds, _ = lsq
  update = client.local_update(loss, optax.sgd(0.05), batch_size=4,
                               max_examples=ds.max_count)
  s = scheduler.asynchronous(
      delays.delay_model(np.ones(ds.num_clients), np.ones(ds.num_clients)),
      num_updates=4, concurrency=2, seed=0)
  rule = rules.fedasync(0.5, staleness.constant())
  monkeypatch.setattr(driver, "program_options", lambda *a, **k: options)
  # The process's flags say YNNPACK (XLA reads them at start only, so
  # this changes what the library reads, not XLA); Eigen's options of the
  # program must win.
  monkeypatch.setenv("XLA_FLAGS", "")
  expected = xla_cpu.ynn_convolutions() and not options
  program.clear_cache()
  try:
    executor.simulate(rule, update, jnp.zeros(5), ds, s,
                      key=jax.random.key(0))
    # Each entry point traced its model inside its program.
    assert asked and set(asked) == {expected}
    asked.clear()
    sweep.sweep(lambda hp: rules.fedasync(hp["alpha"], staleness.constant()),
                {"alpha": jnp.array([0.5, 0.6])}, update, jnp.zeros(5), ds,
                s, keys=jax.random.split(jax.random.key(0), 2))
    assert asked and set(asked) == {expected}
  finally:
    program.clear_cache()
