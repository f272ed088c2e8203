"""Trace-driven delays: FedScale's formats, the completion-time formula,
availability intervals, population mapping, and exactness of a
trace-driven schedule."""

import csv
import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_lsq_data
from fedasync_jax import client, delays, executor, reference, rules
from fedasync_jax import scheduler
from fedasync_jax.sim import trace_files, traces

import optax


def write_device_files(tmp_path, rng, rows=7):
  """The same random device table as pickle, JSON and two CSV layouts."""
  ids = [str(1000 + 3 * i) for i in range(rows)]
  comp = rng.uniform(5, 200, rows)
  down = rng.uniform(100, 20000, rows)
  up = rng.uniform(100, 20000, rows)
  rec = {i: {"computation": float(c), "communication": float(d)}
         for i, c, d in zip(ids, comp, down)}
  paths = {"pkl": tmp_path / "device.pkl", "json": tmp_path / "device.json",
           "csv": tmp_path / "device.csv", "csv2": tmp_path / "device2.csv"}
  with open(paths["pkl"], "wb") as f:
    pickle.dump(rec, f)
  paths["json"].write_text(json.dumps(rec))
  with open(paths["csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["client", "computation", "communication"])
    w.writerows(zip(ids, comp, down))
  with open(paths["csv2"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["client", "computation", "download", "upload"])
    w.writerows(zip(ids, comp, down, up))
  return ids, comp, down, up, paths


def test_device_table_formats_agree(tmp_path):
  ids, comp, down, up, paths = write_device_files(
      tmp_path, np.random.default_rng(0))
  with pytest.raises(ValueError, match="trust_pickle"):
    trace_files.read_device_table(paths["pkl"])
  tables = [trace_files.read_device_table(paths["pkl"], trust_pickle=True),
            trace_files.read_device_table(paths["json"]),
            trace_files.read_device_table(paths["csv"])]
  for t in tables:
    assert t.ids.tolist() == ids
    np.testing.assert_allclose(t.computation, comp, rtol=1e-15)
    np.testing.assert_allclose(t.download, down, rtol=1e-15)
    np.testing.assert_allclose(t.upload, down, rtol=1e-15)
  t2 = trace_files.read_device_table(paths["csv2"])
  np.testing.assert_allclose(t2.upload, up, rtol=1e-15)
  # The converter writes JSON that reads back to the same table.
  out = trace_files.convert(paths["pkl"], tmp_path / "conv.json")
  t3 = trace_files.read_device_table(out)
  np.testing.assert_array_equal(t3.computation, tables[0].computation)
  assert trace_files.main(["convert", str(paths["pkl"]),
                           str(tmp_path / "c2.json")]) == 2  # no trust flag


def test_fedscale_completion_time_exactly(tmp_path):
  """Every task lasts 3 * examples * epochs * ms / 1000 + kbit / down +
  kbit / up of its client's mapped device row."""
  rng = np.random.default_rng(1)
  _, comp, down, up, paths = write_device_files(tmp_path, rng)
  n, epochs, kbit = 11, 2, 1234.5
  counts = rng.integers(1, 50, n)
  loaded = trace_files.load(n, device_path=paths["csv2"], mapping="random",
                            seed=5, model_kbit=kbit)
  rows = np.asarray([r[1] for r in loaded.mapping[1:]])
  dm = delays.delay_model(loaded.speed, counts * float(epochs),
                          comm_time=loaded.comm_time, jitter="none")
  s = scheduler.asynchronous(dm, num_updates=40, concurrency=4, seed=0)
  c = s.client
  expected = (3.0 * counts[c] * epochs * comp[rows[c]] / 1000.0
              + kbit / down[rows[c]] + kbit / up[rows[c]])
  got = s.arrival_time - s.dispatch_time
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def write_behaviour(tmp_path, rng, users=6, finish=100.0):
  rec = {}
  for u in range(users):
    cuts = np.sort(rng.uniform(0, finish, 2 * int(rng.integers(1, 4))))
    rec[f"u{u}"] = {"active": cuts[0::2].tolist(),
                    "inactive": cuts[1::2].tolist(),
                    "finish_time": finish, "duration": finish}
  (tmp_path / "behave.json").write_text(json.dumps(rec))
  with open(tmp_path / "behave.pkl", "wb") as f:
    pickle.dump(rec, f)
  with open(tmp_path / "behave.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["client", "start", "end"])
    for u, r in rec.items():
      w.writerows((u, a, b) for a, b in zip(r["active"], r["inactive"]))
  return rec


def test_behaviour_formats_agree_and_follow_the_intervals(tmp_path):
  rng = np.random.default_rng(2)
  rec = write_behaviour(tmp_path, rng)
  a = trace_files.read_availability(tmp_path / "behave.json")
  b = trace_files.read_availability(tmp_path / "behave.pkl",
                                    trust_pickle=True)
  c = trace_files.read_availability(tmp_path / "behave.csv", period=100.0)
  for x in (b, c):
    np.testing.assert_array_equal(x.start, a.start)
    np.testing.assert_array_equal(x.end, a.end)
    np.testing.assert_array_equal(x.period, a.period)
  av = traces.availability_of(a, np.arange(a.num_rows))
  # Brute force over a grid of times, two periods long.
  for t in np.linspace(0, 199.5, 400):
    for r, u in enumerate(a.ids):
      on = any(s <= t % 100.0 < e for s, e in zip(rec[u]["active"],
                                                 rec[u]["inactive"]))
      assert av.available(r, t) == on, (u, t)
      nxt = av.next_start(r, t)
      assert nxt >= t and av.available(r, nxt)
      if not on:  # nothing is online between t and next_start
        for q in np.linspace(t, nxt, 7)[:-1]:
          assert not av.available(r, q)
      else:
        end = av.online_until(r, t)
        assert end > t and av.available(r, (t + end) / 2)
        assert not av.available(r, end + 1e-9)


def trace_run(tmp_path, *, lose_offline, rule_name="fedasync", n=30):
  rng = np.random.default_rng(3)
  _, _, _, _, paths = write_device_files(tmp_path, rng)
  write_behaviour(tmp_path, rng, users=9, finish=50.0)
  loaded = trace_files.load(n, device_path=paths["json"],
                            availability_path=tmp_path / "behave.json",
                            mapping="random", seed=1, model_kbit=50.0)
  ds, _ = make_lsq_data(num_clients=n, dtype=np.float64)
  dm = delays.delay_model(loaded.speed, ds.counts * 1.0,
                          comm_time=loaded.comm_time,
                          availability=loaded.availability,
                          lose_offline=lose_offline)
  return ds, dm


def test_dispatch_only_when_online_and_loss_when_offline(tmp_path):
  for lose in (False, True):
    _, dm = trace_run(tmp_path, lose_offline=lose)
    s = scheduler.asynchronous(dm, num_updates=60, concurrency=5, seed=0)
    av = dm.availability
    assert all(av.available(int(c), float(t))
               for c, t in zip(s.client, s.dispatch_time))
    ends = np.array([av.online_until(int(c), float(t))
                     for c, t in zip(s.client, s.dispatch_time)])
    late = s.arrival_time > ends
    if lose:
      assert late.any()  # the trace is short enough for some to be cut
      np.testing.assert_array_equal(s.lost, late)
    else:
      assert not s.lost.any()


def test_reference_and_executor_agree_on_a_trace_schedule(tmp_path):
  jax.config.update("jax_enable_x64", True)
  try:
    ds, dm = trace_run(tmp_path, lose_offline=True)
    s = scheduler.asynchronous(dm, num_updates=60, concurrency=5, seed=0)
    assert s.lost.any()
    upd = client.local_update(
        lambda w, x, y, m: jnp.sum(m * (x @ w - y) ** 2)
        / jnp.maximum(m.sum(), 1), optax.sgd(0.05), batch_size=4,
        max_examples=ds.max_count)
    rule = rules.fedasync(0.6)
    key = jax.random.key(0)
    p0 = jnp.zeros(5, jnp.float64)
    r = reference.run(rule, upd, p0, ds, s, key=key)
    e = executor.simulate(rule, upd, p0, ds, s, key=key)
    np.testing.assert_allclose(np.asarray(e.state.params),
                               np.asarray(r.state.params), rtol=1e-8,
                               atol=1e-12)
  finally:
    jax.config.update("jax_enable_x64", False)


def test_mapping_is_seeded_and_recorded():
  a = traces.map_clients(10, 4, rule="random", seed=0)
  assert traces.map_clients(10, 4, rule="random", seed=0).tolist() == \
      a.tolist()
  assert traces.map_clients(10, 4, rule="random", seed=1).tolist() != \
      a.tolist()
  assert sorted(np.bincount(a, minlength=4).tolist()) == [2, 2, 3, 3]
  assert traces.map_clients(3, 5).tolist() == [0, 1, 2]
  table = traces.mapping_table({"device": a}, {"device": np.asarray(
      ["a", "b", "c", "d"])})
  assert table[0] == ["client", "device_row", "device_id"]
  assert [r[1] for r in table[1:]] == a.tolist()


@pytest.mark.parametrize("text, match", [
    ("client,start\n1,0\n", "missing column"),
    ("client,start,end\n", "empty"),
    ("client,start,end\n1,5,2\n", "start < end"),
    ("client,start,end\n1,-1,2\n", "start < end"),
    ("client,start,end\n1,0,5\n1,4,6\n", "overlapping"),
    ("client,start,end\n1,0,x\n", "numbers"),
    ("client,start,end\n,0,1\n", "no client id"),
])
def test_bad_availability_csv(tmp_path, text, match):
  p = tmp_path / "a.csv"
  p.write_text(text)
  with pytest.raises(ValueError, match=match):
    trace_files.read_availability(p)


@pytest.mark.parametrize("read, text, message", [
    (trace_files.read_availability, "client,start,end\n0,10,5\n",
     "row 0 (client 0) needs 0 <= start < end, finite; got [10.0, 5.0]"),
    (trace_files.read_availability, "client,start,end\n1,0,5\n1,4,6\n",
     "client 1 has overlapping intervals [0.0, 5.0] and [4.0, 6.0]"),
    (lambda p: trace_files.read_availability(p, period=10.0),
     "client,start,end\n0,0,12\n", "row 0 ends at 12.0, after the period "
     "10.0"),
    (trace_files.read_device_table,
     "client,computation,communication\n7,5,80\n8,-1,80\n",
     "computation must be finite and > 0 for every device, got -1.0 at row "
     "1"),
])
def test_trace_errors_show_plain_values_and_the_file(tmp_path, read, text,
                                                     message):
  p = tmp_path / "trace.csv"
  p.write_text(text)
  with pytest.raises(ValueError) as e:
    read(p)
  assert str(e.value) == f"{p}: {message}"


def test_cli_names_the_field_the_file_and_plain_values(tmp_path, capsys):
  from fedasync_jax import cli
  p = tmp_path / "avail.csv"
  p.write_text("client,start,end\n0,10,5\n")
  out = tmp_path / "never"
  assert cli.main(["run", "--out", str(out), "--set",
                   f"delays.availability_trace={p}", "--set",
                   "run.num_updates=10"]) == 2
  err = capsys.readouterr().err
  assert (f"error: delays.availability_trace: {p}: row 0 (client 0) needs "
          f"0 <= start < end, finite; got [10.0, 5.0]" in err), err
  assert "np." not in err


def test_device_table_ids_must_be_present_and_unique(tmp_path):
  p = tmp_path / "d.csv"
  p.write_text("client,computation,communication\n7,5,80\n7,6,90\n")
  with pytest.raises(ValueError, match="'7' appears twice"):
    trace_files.read_device_table(p)
  p.write_text("client,computation,communication\n ,5,80\n")
  with pytest.raises(ValueError, match="row 0 has no client id"):
    trace_files.read_device_table(p)


@pytest.mark.parametrize("rec, match", [
    ({"1": {"computation": -1, "communication": 5}}, "computation"),
    ({"1": {"computation": 1}}, "communication"),
    ({}, "non-empty"),
    ({"1": {"active": [], "inactive": [], "finish_time": 5}},
     "ever online"),
])
def test_bad_json_traces(tmp_path, rec, match):
  p = tmp_path / "t.json"
  p.write_text(json.dumps(rec))
  read = (trace_files.read_availability if "active" in json.dumps(rec)
          else trace_files.read_device_table)
  with pytest.raises(ValueError, match=match):
    read(p)


def test_a_trace_that_goes_dark_fails_fast(tmp_path):
  """Intervals that end (no period) stop the schedule with an error
  instead of an endless wait."""
  p = tmp_path / "a.csv"
  p.write_text("client,start,end\n0,0,3\n1,1,2\n")
  loaded = trace_files.load(4, availability_path=p)
  dm = delays.delay_model(np.ones(4), np.ones(4), jitter="none",
                          availability=loaded.availability)
  with pytest.raises(scheduler.Stuck, match="cannot make progress"):
    scheduler.asynchronous(dm, num_updates=1000, concurrency=2, seed=0)
  # Through a configuration the error names the trace and the period.
  from fedasync_jax import config as config_lib
  from fedasync_jax.run import setup as setup_lib
  cfg = config_lib.from_dict({"data": {"num_clients": 4},
                              "delays": {"availability_trace": str(p)},
                              "run": {"num_updates": 1000,
                                      "concurrency": 2}})
  with pytest.raises(ValueError, match=r"cannot make progress.*: "
                     r"delays\.availability_trace .*a\.csv has no client "
                     r"online from some time on .*delays\.trace_period "
                     r"is None"):
    setup_lib.setup(cfg)


def test_config_fields_drive_the_schedule(tmp_path):
  """``delays.speeds=trace`` with a device table and
  ``delays.availability_trace`` give FedScale's durations and dispatches
  only while online; bad files name their field."""
  from fedasync_jax import config, experiment
  rng = np.random.default_rng(4)
  _, comp, down, _, paths = write_device_files(tmp_path, rng)
  write_behaviour(tmp_path, rng, users=5, finish=40.0)
  d = {"data": {"num_clients": 12},
       "delays": {"speeds": "trace", "trace_path": str(paths["csv"]),
                  "availability_trace": str(tmp_path / "behave.json"),
                  "jitter": "none", "model_kbit": 10.0,
                  "trace_mapping": "random"},
       "run": {"num_updates": 30, "concurrency": 3, "seed": 2}}
  cfg = config.from_dict(d)
  fed = experiment.load_data(cfg)
  dm = experiment.make_delays(cfg, fed)
  from fedasync_jax.run import setup
  loaded = setup.load_traces(cfg, fed)
  assert loaded.mapping[0] == ["client", "device_row", "device_id",
                               "availability_row", "availability_id"]
  rows = np.asarray([r[1] for r in loaded.mapping[1:]])
  counts = fed.train.counts
  np.testing.assert_allclose(
      dm.speed * dm.work + dm.comm_time,
      3 * counts * comp[rows] / 1000 + 2 * 10.0 / down[rows], rtol=1e-12)
  s = experiment.make_schedule(cfg, fed, experiment.make_rule_from(cfg, fed))
  assert all(dm.availability.available(int(c), float(t))
             for c, t in zip(s.client, s.dispatch_time))
  d["delays"]["availability_trace"] = str(tmp_path / "behave.pkl")
  with pytest.raises(config.ConfigError,
                     match="delays.availability_trace: .*trust_pickle"):
    experiment.make_delays(config.from_dict(d), fed)
  d["delays"]["trust_pickle"] = True
  experiment.make_delays(config.from_dict(d), fed)
  d["delays"]["lose_offline"] = True
  d["delays"]["availability_trace"] = None
  with pytest.raises(config.ConfigError, match="lose_offline"):
    experiment.make_delays(config.from_dict(d), fed)


def test_cli_run_on_trace_files_reports_mapping_and_staleness(tmp_path):
  """``fedasync-jax run --set delays.speeds=trace ...``: a run whose
  outputs record each client's trace rows and the staleness
  distribution (histogram and summary)."""
  import csv as csv_lib
  from fedasync_jax.run import cli
  rng = np.random.default_rng(6)
  _, _, _, _, paths = write_device_files(tmp_path, rng)
  write_behaviour(tmp_path, rng, users=4, finish=2000.0)
  out = tmp_path / "run"
  assert cli.main([
      "run", "--out", str(out), "--set", "data.num_clients=10",
      "--set", "run.num_updates=40", "--set", "run.concurrency=3",
      "--set", "delays.speeds=trace",
      "--set", f"delays.trace_path={paths['json']}",
      "--set", f"delays.availability_trace={tmp_path / 'behave.json'}",
      "--set", "delays.jitter=none", "--set", "delays.lose_offline=true"]) \
      == 0
  rows = list(csv_lib.DictReader(open(out / "trace_mapping.csv")))
  assert [int(r["client"]) for r in rows] == list(range(10))
  assert {r["availability_id"] for r in rows} <= {f"u{i}" for i in range(4)}
  arrivals = list(csv_lib.DictReader(open(out / "arrivals.csv")))
  applied = [int(a["staleness"]) for a in arrivals
             if a["status"] == "applied"]
  hist = {int(r["staleness"]): int(r["applied_updates"])
          for r in csv_lib.DictReader(open(out / "staleness.csv"))}
  assert hist == {k: applied.count(k) for k in set(applied)}
  summary = json.loads((out / "summary.json").read_text())
  assert summary["staleness"]["p50"] == float(np.percentile(applied, 50))
  assert summary["staleness"]["max"] == max(applied)


def test_a_sweeps_members_record_their_own_seeds_trace_rows(tmp_path):
  """With ``delays.trace_mapping=random`` each seed maps the clients onto
  other rows of the device table. A sweep's members wrote no
  ``trace_mapping.csv`` (the documentation lists one); each now writes the
  rows its own seed drew, those of a run with that seed."""
  from fedasync_jax import config
  from fedasync_jax.run import cli, setup as setup_lib
  _, _, _, _, paths = write_device_files(tmp_path, np.random.default_rng(3))
  sets = {"data.num_clients": "12", "client.batch_size": "20",
          "run.num_updates": "12", "run.concurrency": "3",
          "run.eval_every": "12", "delays.speeds": "trace",
          "delays.trace_path": str(paths["csv"]),
          "delays.trace_mapping": "random", "delays.jitter": "none",
          "run.plots": "false"}
  out = tmp_path / "sweep"
  assert cli.main(["sweep", "--out", str(out), "--seeds", "4,5",
                   *[a for k, v in sets.items()
                     for a in ("--set", f"{k}={v}")]]) == 0
  cfg = config.apply_overrides(config.Config(),
                               [f"{k}={v}" for k, v in sets.items()])
  fed = setup_lib.load_data(cfg)
  rows = {}
  for seed in (4, 5):
    c = config.apply_overrides(cfg, [f"run.seed={seed}"])
    want = setup_lib.load_traces(c, fed).mapping
    with open(out / f"seed={seed}" / "trace_mapping.csv") as f:
      got = list(csv.reader(f))
    assert got == [[str(v) for v in r] for r in want]
    rows[seed] = [r[1] for r in got[1:]]
  assert rows[4] != rows[5]

def test_when_every_task_is_lost_the_schedule_fails_fast(tmp_path):
  """Clients online for 1 s each, tasks of 5 s, losses when offline: no
  update can ever arrive. Asynchronous scheduling stops with an error; a
  synchronous round that gets nothing back ends when its tasks would have
  ended."""
  p = tmp_path / "a.csv"
  p.write_text("client,start,end\n0,0,1\n1,2,3\n")
  loaded = trace_files.load(4, availability_path=p, period=4.0)
  dm = delays.delay_model(np.ones(4), np.full(4, 5.0), jitter="none",
                          availability=loaded.availability,
                          lose_offline=True)
  with pytest.raises(ValueError, match="lost and none arrived"):
    scheduler.asynchronous(dm, num_updates=10, concurrency=2, seed=0)
  s = scheduler.synchronous(dm, num_rounds=3, cohort_size=1, seed=0)
  assert s.num_arrivals == 0 and s.lost.all()
  assert s.stats["num_versions"] == 0
