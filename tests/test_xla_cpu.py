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
  monkeypatch.setattr(xla_cpu, "_usable_cores", lambda: 2)
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
