"""The demo: FedAsync, FedBuff and FedAvg on the embedded Synthetic(1, 1).

Runs the three algorithms on the same FedProx Synthetic(1, 1) population
(arXiv:1812.06127) with heterogeneous (lognormal) device speeds, the same
number of client updates each, prints test accuracy against client updates
and against simulated time, and writes into an output folder, with the
names ``fedasync-jax run`` uses (``types.COLUMNS``,
``types.ARRIVAL_COLUMNS``):

* ``history_<algorithm>.csv``: one row per evaluation (``types.COLUMNS``);
* ``metrics.jsonl``: the same rows of every algorithm, one JSON object per
  line, each with ``algorithm`` first (``metrics.MetricsStream``: appended
  as the runs go, rewritten with every evaluation as each one ends);
* ``arrivals_<algorithm>.csv``: one row per arrival
  (``types.ARRIVAL_COLUMNS``);
* ``summary.json`` and ``tables.txt``: final metrics and the two tables.

Needs no download.

Example:
  >>> out = run_demo("/tmp/fedasync-demo", num_updates=200)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
import optax

from fedasync_jax import models
from fedasync_jax.core import (checks, client, optimizers, rules,
                               staleness)
from fedasync_jax.data import synthetic
from fedasync_jax.run import folders, metrics, outputs, results
from fedasync_jax.sim import delays, executor, scheduler


def _accuracy_at(rows, key, points):
  """Latest evaluated test accuracy with ``rows[key] <= point`` (``rows``:
  history rows, ``RunResult.evals``), and whether that evaluation is the
  initial model's (no update evaluated by then)."""
  xs = np.array([r[key] for r in rows])
  acc = np.array([r["test_accuracy"] for r in rows])
  ups = np.array([r["client_updates"] for r in rows])
  out = []
  for p in points:
    i = np.searchsorted(xs, p, side="right") - 1
    out.append((float(acc[i]), bool(ups[i] == 0)) if i >= 0
               else (float("nan"), True))
  return out


def _table(title, header, rows):
  """A text table; a cell whose evaluation is the initial model's is
  marked ``*`` and explained below the table."""
  lines = [title, "  " + " | ".join(f"{h:>12}" for h in header)]
  marked = False
  for name, vals in rows:
    cells = [f"{name:>12}"] + [f"{v:11.3f}" + ("*" if initial else " ")
                               for v, initial in vals]
    marked |= any(initial for _, initial in vals)
    lines.append("  " + " | ".join(cells))
  if marked:
    lines.append("  * no evaluation after an update yet: the initial "
                 "model's accuracy")
  return "\n".join(lines)


MAX_UPDATES = 10**6
"""The demo's longest run per algorithm (about half an hour each on a
2-core CPU); ``fedasync-jax run`` takes longer ones."""
MAX_CLIENTS = 10**5
"""The demo's largest population (about 100 examples of 60 features each:
2.4 GB); ``fedasync-jax run`` takes larger ones."""


def _check(num_updates, concurrency, num_clients, client_lr, seed):
  checks.number("client_lr", client_lr, low=0, low_open=True)
  checks.integer("seed", seed, low=0, high=checks.INT_LIMIT)
  num_clients = checks.integer("num_clients", num_clients, low=1,
                               high=MAX_CLIENTS)
  num_updates = checks.integer("num_updates", num_updates)
  if not 100 <= num_updates <= MAX_UPDATES or num_updates % 100:
    raise ValueError(f"num_updates must be a multiple of 100 in [100, "
                     f"{MAX_UPDATES}] (fedasync-jax run takes longer runs), "
                     f"got {num_updates}")
  concurrency = checks.integer("concurrency", concurrency, low=1,
                               high=num_clients)
  return num_updates, concurrency, num_clients


EVAL_UPDATES = 100
"""The demo evaluates every algorithm about every 100 client updates."""
ALGORITHMS = ("fedasync", "fedbuff", "fedavg")
"""The demo's runs, in order (``_runs``)."""
FILES = tuple(f"{kind}_{name}.csv" for kind in ("history", "arrivals")
              for name in ALGORITHMS) + ("tables.txt",)
"""The files only the demo writes (its ``summary.json`` and
``metrics.jsonl`` a run writes too); a new run, sweep or demo in the same
folder removes them (``sweep_outputs.remove_previous``)."""


def _runs(dm, *, num_updates, concurrency, seed):
  """The three algorithms: ``{name: (rule, schedule, eval_every)}``,
  each evaluated about every ``EVAL_UPDATES`` client updates."""
  K = concurrency // 2 or 1
  return {
      "fedasync": (rules.fedasync(0.6, staleness.polynomial(0.5)),
                   scheduler.asynchronous(dm, num_updates=num_updates,
                                          concurrency=concurrency,
                                          seed=seed), EVAL_UPDATES),
      "fedbuff": (rules.fedbuff(K, optax.sgd(1.0), staleness.polynomial(0.5)),
                  scheduler.asynchronous(dm, num_updates=num_updates,
                                         concurrency=concurrency,
                                         arrivals_per_version=K, seed=seed),
                  math.ceil(EVAL_UPDATES / K)),
      "fedavg": (rules.fedavg(),
                 scheduler.synchronous(dm, num_rounds=num_updates //
                                       concurrency, cohort_size=concurrency,
                                       seed=seed),
                 math.ceil(EVAL_UPDATES / concurrency)),
  }


def _run_one(name, rule, sched, every, *, upd, params, ds, evaluate, seed,
             out, log, streamed) -> dict:
  """Runs one algorithm, writes its CSVs and its rows of ``metrics.jsonl``
  (after those of ``streamed``, the rows of the algorithms run before,
  which it extends), returns its summary entry (and its history rows,
  ``RunResult.evals``, under ``"history"``)."""
  t0 = time.perf_counter()

  def progress(info):
    log(f"  {name}: {info['arrivals_done']}/{info['num_arrivals']} updates, "
        f"version {info['version']}, {time.perf_counter() - t0:.1f} s")
  path = out / metrics.METRICS
  with open(path, "a" if streamed else "w") as f:  # (an earlier file gone)
    stream = metrics.MetricsStream(f, sched, eval_every=every,
                                   fields={"algorithm": name})
    res = executor.simulate(rule, upd, params, ds, sched,
                            key=jax.random.key(seed), eval_fn=evaluate,
                            eval_every=every, chunk_steps=128,
                            progress=metrics.fan_out(progress, stream))
  wall = time.perf_counter() - t0
  rows = res.evals
  streamed.extend({"algorithm": name, **r} for r in rows)
  metrics.write_jsonl(path, streamed)
  results.write_csv(out / f"history_{name}.csv", rows)
  results.write_columns(out / f"arrivals_{name}.csv",
                        outputs.arrival_columns(res.arrivals))
  return {
      "final_test_accuracy": rows[-1]["test_accuracy"],
      "final_test_loss": rows[-1]["test_loss"],
      "versions": int(res.state.version),
      "simulated_time": float(sched.stats["end_time"]),
      "mean_staleness": float(np.mean(res.arrivals["staleness"])),
      "max_staleness": int(np.max(res.arrivals["staleness"])),
      "wall_time_s": wall,
      "padding_waste": res.stats["padding_waste"],
      "history": rows,
  }


def _report(summary, histories, num_updates):
  """The two accuracy tables (text), recorded in ``summary`` too: the
  accuracy of each algorithm's last evaluation by N client updates (N on
  the evaluation grid of every 100 updates) and by simulated time T."""
  updates = sorted({max(EVAL_UPDATES, int(num_updates * i / 4 / EVAL_UPDATES
                                          + 0.5) * EVAL_UPDATES)
                    for i in range(1, 5)})
  t_max = min(r["simulated_time"] for r in summary["runs"].values())
  times = [t_max / 4 * i for i in range(1, 5)]
  by_updates = {n: _accuracy_at(h, "client_updates", updates)
                for n, h in histories.items()}
  by_time = {n: _accuracy_at(h, "simulated_time", times)
             for n, h in histories.items()}
  t1 = _table(f"test accuracy at the last evaluation by N client updates "
              f"(evaluated every {EVAL_UPDATES})", ["updates"] + updates,
              list(by_updates.items()))
  t2 = _table("test accuracy at the last evaluation by simulated time T "
              "(seconds)", ["time"] + [round(t, 1) for t in times],
              list(by_time.items()))
  summary["accuracy_by_updates"] = {
      n: dict(zip(map(str, updates), [a for a, _ in v]))
      for n, v in by_updates.items()}
  summary["accuracy_by_time"] = {
      n: dict(zip([f"{t:.1f}" for t in times], [a for a, _ in v]))
      for n, v in by_time.items()}
  return t1, t2


def run_demo(out_dir, *, num_updates: int = 3000, concurrency: int = 10,
             num_clients: int = 100, seed: int = 0, client_lr: float = 0.01,
             log: Callable[[str], None] = print,
             force: bool = False) -> dict:
  """Runs the demo and writes its files into ``out_dir``.

  Args:
    out_dir: output folder: a new or empty one (``force``: any), locked
      while the demo writes into it (``folders.open_folder``).
    num_updates: client updates per algorithm (a multiple of 100).
    concurrency: clients in flight (FedAsync, FedBuff) and cohort (FedAvg).
    num_clients: population of Synthetic(1, 1).
    seed: seed of data, delays, schedule and training.
    client_lr: the clients' SGD learning rate.
    log: where the output folder, progress and tables go.
    force: write into a non-empty folder (its files may be replaced).

  Returns:
    The summary dict (also written to ``summary.json``).

  Raises:
    ValueError: a bad argument, or a taken or locked folder (before
      anything is logged or written).
  """
  num_updates, concurrency, num_clients = _check(
      num_updates, concurrency, num_clients, client_lr, seed)
  with folders.open_folder(Path(out_dir), command="demo",
                           force=force) as out:
    return _demo(out, num_updates=num_updates, concurrency=concurrency,
                 num_clients=num_clients, seed=seed, client_lr=client_lr,
                 log=log)


def _demo(out: Path, *, num_updates, concurrency, num_clients, seed,
          client_lr, log) -> dict:
  from fedasync_jax.run.sweep_outputs import remove_previous
  for said in remove_previous(out):  # (--force: the folder is the demo's)
    log(f"fedasync-jax: warning: {said}")
  log(f"output folder: {out}")
  t_all = time.perf_counter()
  fed = synthetic.synthetic(1.0, 1.0, num_clients=num_clients, seed=seed,
                            mean_examples=100, min_examples=20)
  ds = fed.train
  model = models.logistic_regression(ds.x.shape[1], fed.num_classes)
  upd = client.local_update(model.loss, optimizers.sgd(client_lr),
                            batch_size=10, max_examples=ds.max_count)
  speeds = delays.device_speeds("lognormal", num_clients, seed=seed,
                                sigma=1.0, mean=0.01)
  dm = delays.delay_model(speeds, ds.counts * 1.0, comm_time=0.5)
  log(f"fedasync-jax demo: Synthetic(1,1), {num_clients} clients "
      f"({int(ds.counts.sum())} training examples), logistic regression, "
      f"lognormal device speeds, {num_updates} client updates per algorithm")
  summary = {"data": fed.name, "num_clients": num_clients,
             "num_updates": num_updates, "concurrency": concurrency,
             "seed": seed, "backend": jax.default_backend(), "runs": {}}
  histories = {}
  common = dict(upd=upd, params=model.init(jax.random.key(seed)), ds=ds,
                evaluate=models.make_evaluator(model, fed.x_test, fed.y_test),
                seed=seed, out=out, log=log, streamed=[])
  for name, (rule, sched, every) in _runs(
      dm, num_updates=num_updates, concurrency=concurrency,
      seed=seed).items():
    entry = _run_one(name, rule, sched, every, **common)
    histories[name] = entry.pop("history")
    summary["runs"][name] = entry
  t1, t2 = _report(summary, histories, num_updates)
  summary["wall_time_s"] = time.perf_counter() - t_all
  results.write_json(out / "summary.json", summary)
  results.atomic_write_bytes(out / "tables.txt",
                             (t1 + "\n\n" + t2 + "\n").encode())
  for text in ("", t1, "", t2, ""):
    log(text)
  log(f"wrote {out}/summary.json, tables.txt, history_*.csv, "
      f"{metrics.METRICS}, arrivals_*.csv ({summary['wall_time_s']:.1f} s)")
  return summary
