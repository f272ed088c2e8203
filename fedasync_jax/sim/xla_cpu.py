"""XLA:CPU's convolution backend: all cores for convolutional clients.

JAX 0.10's XLA:CPU hands convolutions to YNNPACK, which runs each one on a
single thread. XLA's other convolution path (Eigen) uses the whole intra-op
thread pool. Measured on the project's 2-core CPU
(``benchmarks/paper_cnn.py --flags library,default``, docs/benchmarks.md):
the AFL paper's MNIST CNN trained 1.48-1.57x faster and ResNet-20
1.20-1.72x faster with convolutions on Eigen, while pinned to one core
Eigen was 0.88x YNNPACK.
:func:`configure_cpu` therefore moves convolutions to Eigen when the process
may use two or more cores. Split into CPU devices of one core each
(``jax_num_cpu_devices``, each device training its own clients), the
one-thread YNNPACK convolutions were the faster choice: a wave of 6 CNN
clients over two devices trained at 2,875 examples/s with YNNPACK and
2,379 with Eigen, ResNet-20 at 484 and 465
(``benchmarks/results/paper_cnn_2026-12-02T202821Z.json``), so Eigen is
chosen only when every device has two or more cores (``devices=``).
Nothing else changes: matrix products and other fusions stay where XLA
puts them, and results agree to float reassociation.

XLA reads its flags (the ``XLA_FLAGS`` environment variable) once, when
JAX's first backend starts, so a flag must be set before the first JAX
computation of the process. ``fedasync-jax`` does that itself (option
``--cpu-conv``). The same choice is also an option of one compilation
(:func:`compiler_options`), which the library's own compiled programs
(``executor.simulate``, ``sweep.sweep``) pass to ``jax.jit``: Python users
get the faster path with no call of their own, at any time in the
process. :func:`configure_cpu` (first thing) still sets the flag for the
whole process, so that the user's own jitted code gets it too, and its
``conv=`` choice is what the library's programs then follow.

Example:
  >>> xla_flags_for("", conv="eigen", cores=2, jaxlib_version="0.10.2")
  '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
  >>> xla_flags_for("", conv="auto", cores=1, jaxlib_version="0.10.2") is None
  True
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

# The YNNPACK flag's name, the jaxlib releases it is set on (an unknown
# flag in XLA_FLAGS aborts the process) and where a traced convolution
# learns its program's choice live in core/conv_path.py, which the models
# read too (they may not import sim/).
from fedasync_jax.core.conv_path import (  # noqa: F401  (re-exported)
    FLAG_NAME as _FLAG_NAME, _default_backend,
    measured_release as _measured_release, traced_options, traced_with,
    ynn_convolutions)

__all__ = ["CPU_CONV_CHOICES", "EIGEN_CONV_FLAG", "EIGEN_CONV_OPTIONS",
           "backend_started", "compiler_options", "configure_cpu",
           "traced_options", "traced_with", "usable_cores", "xla_flags_for",
           "ynn_convolutions"]

CPU_CONV_CHOICES = ("auto", "eigen", "ynnpack")
# Removes convolutions from YNNPACK's default fusion types; XLA then emits
# them on its Eigen path.
EIGEN_CONV_FLAG = ("--xla_cpu_experimental_ynn_fusion_type="
                   "-individual_convolution")
# The same as an option of one compilation: the fusion types jaxlib 0.10.2
# gives YNNPACK by default (matrix products, convolutions and reductions,
# read from compiled programs) less the convolutions. The option takes
# the enum's full names and replaces the whole list.
EIGEN_CONV_OPTIONS = {_FLAG_NAME: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
                                  "LIBRARY_FUSION_TYPE_REDUCE"}
# The conv= of the last configure_cpu call: the process's choice, which
# compiler_options follows.
_CHOICE = {"conv": "auto"}


def usable_cores() -> int:
  """The cores this process may run on (its affinity), else all."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):  # not Linux
    return os.cpu_count() or 1


def xla_flags_for(xla_flags: str, *, conv: str = "auto",
                  cores: Optional[int] = None, devices: int = 1,
                  jaxlib_version: Optional[str] = None) -> Optional[str]:
  """The ``XLA_FLAGS`` value :func:`configure_cpu` sets, or ``None``.

  Args:
    xla_flags: the current ``XLA_FLAGS`` value (``""`` when unset).
    conv: ``"auto"``: Eigen when every CPU device has two or more cores to
      itself (``cores // devices >= 2``), else XLA's own choice;
      ``"eigen"``: Eigen whatever the cores; ``"ynnpack"``: XLA's own
      choice, nothing set. Eigen is only ever set on jaxlib 0.10.2 and
      later 0.10 releases, where the flag was measured.
    cores: CPU cores the process may use (default: its affinity mask).
    devices: the CPU devices the process will split its cores into
      (``jax_num_cpu_devices``; 1 unless the CPU is split).
    jaxlib_version: default: the installed jaxlib's.

  Returns:
    The new ``XLA_FLAGS`` string, or ``None`` when nothing is to change:
    ``conv="ynnpack"``, fewer than two cores per device under ``"auto"``,
    a jaxlib outside
    [0.10.2, 0.11), or ``xla_flags`` that already set the YNNPACK fusion
    types (the user's own setting wins).

  Raises:
    ValueError: ``conv`` is not one of :data:`CPU_CONV_CHOICES`, or
      ``devices`` is not a positive int.

  Example:
    >>> xla_flags_for("--xla_dump_to=/tmp/d", conv="eigen", cores=4,
    ...               jaxlib_version="0.10.2").split()
    ['--xla_dump_to=/tmp/d', '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution']
  """
  if conv not in CPU_CONV_CHOICES:
    raise ValueError(f"conv must be one of {CPU_CONV_CHOICES}, got {conv!r}")
  if isinstance(devices, bool) or not isinstance(devices, int) or (
      devices < 1):
    raise ValueError(f"devices must be a positive int, got {devices!r}")
  if conv == "ynnpack" or _FLAG_NAME in xla_flags:
    return None
  if not _measured_release(jaxlib_version):
    return None
  if conv == "auto" and (
      cores if cores is not None else usable_cores()) // devices < 2:
    return None
  return " ".join(f for f in (xla_flags.strip(), EIGEN_CONV_FLAG) if f)


def backend_started() -> bool:
  """Whether JAX has started a backend in this process (after which XLA's
  flags are fixed).

  Example:
    >>> isinstance(backend_started(), bool)
    True
  """
  from jax._src import xla_bridge
  return bool(getattr(xla_bridge, "backends_are_initialized",
                      lambda: False)())


def configure_cpu(*, conv: str = "auto", devices: int = 1) -> bool:
  """Chooses XLA:CPU's convolution path for this process (see the module).

  Call it before the process's first JAX computation; ``fedasync-jax``
  calls it itself. Afterwards it can no longer take effect: it then warns
  and changes nothing.

  Args:
    conv: ``"auto"`` (default: Eigen when each CPU device has two or more
      cores), ``"eigen"`` or ``"ynnpack"`` (leave XLA's choice), as for
      :func:`xla_flags_for`.
    devices: the number of CPU devices the process will split the CPU
      into (``jax_num_cpu_devices``); pass it when you split the CPU, so
      that ``"auto"`` keeps YNNPACK's one-thread convolutions for devices
      of one core each.

  Returns:
    Whether ``XLA_FLAGS`` was changed.

  Raises:
    ValueError: ``conv`` is not one of :data:`CPU_CONV_CHOICES`, or
      ``devices`` is not a positive int.

  Example:
    >>> import fedasync_jax as fj
    >>> fj.configure_cpu()  # first thing, before any JAX computation
    ... # doctest: +SKIP
    True
  """
  flags = xla_flags_for(os.environ.get("XLA_FLAGS", ""), conv=conv,
                        devices=devices)
  _CHOICE["conv"] = conv
  if flags is None:
    return False
  if backend_started():
    warnings.warn(
        "configure_cpu: JAX's backend has already started in this process, "
        "so XLA_FLAGS can no longer change; call it before the first JAX "
        "computation", RuntimeWarning, stacklevel=2)
    return False
  os.environ["XLA_FLAGS"] = flags
  return True


def compiler_options(*, devices: int = 1, conv: Optional[str] = None,
                     backend: Optional[str] = None,
                     xla_flags: Optional[str] = None,
                     cores: Optional[int] = None,
                     jaxlib_version: Optional[str] = None) -> dict:
  """The XLA options of one compiled program (``jax.jit(...,
  compiler_options=...)``): Eigen's convolutions where the module's rule
  picks them, else nothing.

  Args:
    devices: the CPU devices the program runs on at once (the
      ``"devices"`` strategy's count; 1 for a program on one device).
    conv: ``"auto"``, ``"eigen"`` or ``"ynnpack"``; default: the choice of
      the last :func:`configure_cpu` call, else ``"auto"``.
    backend: default: JAX's default backend; only ``"cpu"`` gets options.
    xla_flags: the process's ``XLA_FLAGS`` (default: the environment's);
      when they already set the YNNPACK fusion types (the user's own
      setting, or :func:`configure_cpu`'s), they hold and nothing is set.
    cores: CPU cores the process may use (default: its affinity mask).
    jaxlib_version: default: the installed jaxlib's.

  Returns:
    ``{}`` or a copy of :data:`EIGEN_CONV_OPTIONS`.

  Raises:
    ValueError: as for :func:`xla_flags_for`.

  Example:
    >>> compiler_options(backend="cpu", xla_flags="", cores=2,
    ...                  jaxlib_version="0.10.2") == EIGEN_CONV_OPTIONS
    True
    >>> compiler_options(devices=2, backend="cpu", xla_flags="", cores=2,
    ...                  jaxlib_version="0.10.2")
    {}
  """
  if (backend or _default_backend()) != "cpu":
    return {}
  flags = xla_flags_for(
      os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags,
      conv=_CHOICE["conv"] if conv is None else conv, cores=cores,
      devices=devices, jaxlib_version=jaxlib_version)
  return dict(EIGEN_CONV_OPTIONS) if flags is not None else {}
