"""The persistent compilation cache: a second process loads the executor's
program instead of compiling it, and gets the same result."""

import subprocess
import sys
import textwrap

import pytest

from fedasync_jax import compile_cache

RUN = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from fedasync_jax import (client, compile_cache, data, delays, executor,
                              rules, scheduler)
    hits = []
    jax.monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if "cache_hits" in name else 0)
    compile_cache.enable(sys.argv[1])
    rng = np.random.default_rng(0)
    ds = data.from_client_arrays(
        [rng.normal(size=(3, 2)).astype(np.float32) for _ in range(8)],
        [rng.normal(size=3).astype(np.float32) for _ in range(8)])
    loss = lambda w, x, y, m: jnp.sum(m * (x @ w - y) ** 2) / m.sum()
    upd = client.local_update(loss, optax.sgd(0.1), batch_size=2,
                              max_examples=3)
    s = scheduler.asynchronous(delays.delay_model(np.ones(8), np.ones(8)),
                               num_updates=20, concurrency=3, seed=0)
    out = executor.simulate(rules.fedasync(0.5), upd, jnp.zeros(2), ds, s,
                            key=jax.random.key(0))
    print("HITS", len(hits), "PARAMS", *np.asarray(out.state.params).tolist())
""")


def run(directory):
  proc = subprocess.run([sys.executable, "-c", RUN, str(directory)],
                        capture_output=True, text=True, timeout=300)
  line = [x for x in proc.stdout.splitlines() if x.startswith("HITS")]
  assert line, proc.stderr[-3000:]
  words = line[0].split()
  return int(words[1]), words[3:]


def test_second_process_loads_compiled_programs(tmp_path):
  hits1, params1 = run(tmp_path)
  assert hits1 == 0
  assert any(tmp_path.iterdir())
  hits2, params2 = run(tmp_path)
  assert hits2 > 0
  assert params1 == params2


def test_rejects_bad_min_compile_time(tmp_path):
  with pytest.raises(ValueError, match="min_compile_time_s"):
    compile_cache.enable(tmp_path, min_compile_time_s=-1)


def test_command_line_enables_the_cache_unless_off(tmp_path):
  import argparse
  import jax
  from fedasync_jax import cli
  before = jax.config.jax_compilation_cache_dir  # (the suite's own cache)
  jax.config.update("jax_compilation_cache_dir", None)
  try:
    cli._enable_compile_cache(argparse.Namespace(compile_cache="off",
                                                 command="run"))
    assert jax.config.jax_compilation_cache_dir is None
    cli._enable_compile_cache(argparse.Namespace(
        compile_cache=str(tmp_path / "c"), command="run"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert (tmp_path / "c").is_dir()
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
  args = cli.build_parser().parse_args(["--compile-cache", "off", "demo"])
  assert args.compile_cache == "off"
