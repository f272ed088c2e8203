"""A run's state between two compiled chunks: the ``Checkpoint`` the driver
hands out, and the run digest a resume must match.

A checkpoint holds the host copies of the program's carry, the index of
the next chunk and the per-step outputs so far; ``Checkpoint.to_bytes``
serialises it with flax's msgpack. ``run_digest`` is a SHA-256 of what
makes two runs the same beyond their shapes (schedules, plan, keys,
hyperparameter tables, ``chunk_steps``): a checkpoint records it and a
resume with another digest is refused.

Example:
  >>> import numpy as np
  >>> ck = Checkpoint([np.zeros(2)], 1, {"applied": np.ones(4, bool)}, "ab")
  >>> Checkpoint.from_bytes(ck.to_bytes()).run_digest
  'ab'
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedasync_jax.sim.scheduler import Schedule


class Checkpoint(NamedTuple):
  """The driver's state between two chunks, on the host.

  ``carry_leaves``: the leaves of the program's ``Carry``; ``next_chunk``:
  the first chunk still to run; ``outputs``: the per-step outputs of the
  chunks already run, concatenated (a dict); ``run_digest``: the run's
  ``run_digest`` (schedules, plan, keys, hyperparameters, ``chunk_steps``),
  which a resume must match (empty in checkpoints written before it was
  recorded: not checked).
  """
  carry_leaves: list
  next_chunk: int
  outputs: dict
  run_digest: str = ""

  @classmethod
  def capture(cls, carry, next_chunk, outs, step_axis: int = 0,
              run_digest: str = ""):
    leaves = [np.asarray(x) for x in jax.device_get(jax.tree.leaves(carry))]
    return cls(leaves, int(next_chunk), merge(outs, step_axis), run_digest)

  def restore(self, like, run_digest: str = ""):
    """Returns ``(carry, next_chunk, outs)``, checking shapes against
    ``like`` (a freshly initialised carry of the same run) and, where both
    are known, the checkpoint's ``run_digest`` against this call's."""
    if run_digest and self.run_digest and run_digest != self.run_digest:
      raise ValueError(
          "resume: the checkpoint is of another run: its schedule, plan, "
          "key, client hyperparameters, rule_hp or chunk_steps differ from "
          "this call's (run digest " + self.run_digest[:12] + " saved, "
          + run_digest[:12] + " here); resume with the run's own arguments")
    ref, treedef = jax.tree.flatten(like)
    if len(ref) != len(self.carry_leaves):
      raise ValueError(f"checkpoint has {len(self.carry_leaves)} arrays but "
                       f"this run needs {len(ref)}: it is from another run")
    for a, b in zip(ref, self.carry_leaves):
      if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(f"checkpoint array {b.shape} {b.dtype} does not "
                         f"match this run's {a.shape} {a.dtype}: it is from "
                         f"another run")
    carry = jax.tree.unflatten(treedef, [jnp.asarray(x)
                                         for x in self.carry_leaves])
    return carry, self.next_chunk, [self.outputs]

  def to_bytes(self) -> bytes:
    """Serialises with flax's msgpack serialization."""
    from flax import serialization
    return serialization.msgpack_serialize({
        "carry": {str(i): x for i, x in enumerate(self.carry_leaves)},
        "next_chunk": self.next_chunk, "outputs": self.outputs,
        "run_digest": self.run_digest})

  @classmethod
  def from_bytes(cls, payload: bytes) -> "Checkpoint":
    from flax import serialization
    d = serialization.msgpack_restore(payload)
    carry = [np.asarray(d["carry"][str(i)]) for i in range(len(d["carry"]))]
    return cls(carry, int(d["next_chunk"]), d["outputs"],
               str(d.get("run_digest", "")))


def run_digest(schedules: Sequence[Schedule], steps, *arrays,
               chunk_steps: int) -> str:
  """SHA-256 of what a resumed run must share with the one that wrote its
  checkpoint: the schedules' event arrays, the plan's steps, ``arrays``
  (keys, hyperparameter tables, ``rule_hp``: any pytrees; PRNG keys by
  their data) and ``chunk_steps``. Data, rule, client update and
  evaluation function are not in it (functions have no stable digest).

  Example:
    >>> import numpy as np
    >>> from fedasync_jax import delays, scheduler
    >>> m = delays.delay_model(np.ones(4), np.ones(4))
    >>> a, b = [scheduler.asynchronous(m, num_updates=6, concurrency=2,
    ...                                seed=s) for s in (0, 1)]
    >>> run_digest([a], None, chunk_steps=4) == run_digest(
    ...     [a], None, chunk_steps=4)
    True
    >>> run_digest([a], None, chunk_steps=4) == run_digest(
    ...     [b], None, chunk_steps=4)
    False
  """
  seen: dict = {}  # members sharing one schedule hash it once
  order = [seen.setdefault(id(s), len(seen)) for s in schedules]
  unique = list({id(s): s for s in schedules}.values())
  h = hashlib.sha256(f"chunk_steps={int(chunk_steps)} {order}".encode())
  events = [[f for f in s if isinstance(f, np.ndarray)] for s in unique]

  def add(leaf):
    if jnp.issubdtype(getattr(leaf, "dtype", None) or np.float64,
                      jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
  for leaf in jax.tree.leaves((events, steps, arrays)):
    add(leaf)
  return h.hexdigest()


def outputs_dict(out) -> dict:
  """``StepOutputs`` as a plain dict (the checkpoint's format)."""
  d = {"applied": out.applied, "version": out.version,
       "train_loss": out.train_loss}
  if out.eval is not None:
    d["eval"] = out.eval
  return d


def merge(outs: list, axis: int) -> dict:
  """Per-chunk outputs (dicts of arrays) concatenated along ``axis``."""
  return jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *outs)
