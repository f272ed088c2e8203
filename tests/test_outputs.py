"""What a run shows and leaves behind: one vocabulary of columns, plots
against client updates and simulated time, progress from the start,
metrics.jsonl as the run goes, warnings instead of silence, paths in a
config file relative to it."""

import csv
import io
import json
import math

import jax
import numpy as np
import pytest

from fedasync_jax import cli, config, executor, experiment
from fedasync_jax.core import types
from fedasync_jax.run import (config_files, metrics, notices, outputs,
                              progress)
from fedasync_jax.sim import faults

# The plots take longer than these runs; the tests that look at them ask.
TINY = {"data": {"num_clients": 20}, "client": {"batch_size": 20},
        "run": {"num_updates": 120, "concurrency": 4, "eval_every": 20,
                "chunk_steps": 4, "plots": False}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A finished tiny run's folder; the progress reports it made, each
  with the ``metrics.jsonl`` lines written by then."""
  out = tmp_path_factory.mktemp("out") / "run"
  seen = []

  class Bar:  # replaces the progress bar: looks at the file mid-run
    def __init__(self, *args, **kwargs):
      del args, kwargs

    def __call__(self, info):
      text = (out / "metrics.jsonl").read_text()
      seen.append((info["arrivals_done"], text.splitlines()))

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(experiment, "ProgressBar", Bar)
    summary = experiment.train_and_evaluate(config.from_dict(TINY), out)
  return out, summary, seen


def _csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_run_history_uses_the_shared_vocabulary_with_train_loss(tiny_run):
  out, _, _ = tiny_run
  rows = _csv(out / "history.csv")
  assert list(rows[0])[:len(types.COLUMNS)] == list(types.COLUMNS)
  assert rows[0]["client_train_loss"] == "nan"  # the initial model
  assert all(math.isfinite(float(r["client_train_loss"])) for r in rows[1:])
  assert int(rows[-1]["client_updates"]) == 120
  # "warnings" is always there, [] without any (a reader's KeyError else)
  summary = json.loads((out / "summary.json").read_text())
  assert summary["warnings"] == []


def test_metrics_jsonl_is_written_as_the_run_goes(tiny_run):
  out, summary, seen = tiny_run
  # during the run: lines already there before the end, growing
  mid = [lines for done, lines in seen if done < 120]
  assert mid and len(mid[-1]) > 1, seen
  assert all(len(a) <= len(b) for a, b in zip(mid, mid[1:]))
  first = json.loads(mid[-1][-1])
  assert set(first) == {"version", "simulated_time", "client_updates",
                        "test_loss", "test_accuracy"}
  # at the end: one object per evaluation, equal to history.csv
  rows = _csv(out / "history.csv")
  lines = [json.loads(x) for x in
           (out / "metrics.jsonl").read_text().splitlines()]
  assert len(lines) == len(rows)
  for line, row in zip(lines, rows):
    assert list(line) == list(row)
    assert line["client_updates"] == int(row["client_updates"])
    assert line["test_accuracy"] == pytest.approx(float(row["test_accuracy"]))
  assert lines[0]["client_train_loss"] is None  # NaN written as null
  # the mid-run lines agree with the final ones at the same evaluation
  by_updates = {x["client_updates"]: x for x in lines}
  for x in map(json.loads, mid[-1]):
    assert x["test_accuracy"] == pytest.approx(
        by_updates[x["client_updates"]]["test_accuracy"])
    assert x["simulated_time"] == pytest.approx(
        by_updates[x["client_updates"]]["simulated_time"])
  assert lines[-1]["test_accuracy"] == pytest.approx(
      summary["final_test_accuracy"])


def test_run_plots_against_client_updates_and_simulated_time(tmp_path,
                                                            monkeypatch):
  pytest.importorskip("matplotlib")
  figs = {}
  monkeypatch.setattr(outputs.results, "write_figure",
                      lambda path, fig, dpi=100: figs.update({path.name: fig}))
  rows = [{"version": v, "simulated_time": 2.0 * v, "client_updates": 3 * v,
           "test_accuracy": 0.1 * v, "test_loss": 1.0 / (v + 1)}
          for v in range(4)]
  for metric in ("test_accuracy", "test_loss"):
    outputs._plot_metric(tmp_path, rows, metric)
    axes = figs[f"{metric}.png"].axes
    assert [a.get_xlabel() for a in axes] == ["client updates",
                                              "simulated time (s)"]
    xs = [list(a.lines[0].get_xdata()) for a in axes]
    assert xs == [[0, 3, 6, 9], [0.0, 2.0, 4.0, 6.0]]


def test_progress_is_plain_lines_off_a_terminal():
  bar = progress.ProgressBar(100, stream=io.StringIO(), every_s=3600)
  for done in range(10, 101, 10):
    bar({"arrivals_done": done, "wall_time_s": 1.0, "last_eval": None})
  text = bar.stream.getvalue()
  assert "\r" not in text
  lines = text.splitlines()
  assert len(lines) == 2, lines  # the first report and the last
  assert "10/100 updates" in lines[0] and "100/100 updates" in lines[1]
  bar = progress.ProgressBar(100, stream=io.StringIO(), every_s=0)
  for done in (10, 20):
    bar({"arrivals_done": done, "wall_time_s": 1.0, "last_eval": None})
  assert len(bar.stream.getvalue().splitlines()) == 2
  tty = progress.ProgressBar(100, stream=io.StringIO(), tty=True)
  tty({"arrivals_done": 10, "wall_time_s": 1.0, "last_eval": None})
  assert tty.stream.getvalue().startswith("\r[")


def test_progress_shows_loading_and_compiling_before_the_first_update(
    tmp_path, capsys):
  cfg = config.from_dict(TINY)
  experiment.train_and_evaluate(cfg, tmp_path / "r")
  lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
  first_bar = next(i for i, x in enumerate(lines) if "updates" in x
                   and "[" in x)
  assert lines[0].startswith("fedasync-jax: loading data (synthetic"), lines
  assert lines[1].startswith("fedasync-jax: compiling"), lines
  assert first_bar == 2 and "\r" not in "".join(lines)


def test_config_file_paths_are_relative_to_the_file(tmp_path, monkeypatch):
  sub = tmp_path / "configs"
  sub.mkdir()
  (sub / "c.yaml").write_text(
      "data: {name: mnist, path: data/x.npz, data_dir: ../tfds}\n"
      "delays: {speeds: trace, trace_path: speeds.csv,\n"
      "         availability_trace: /abs/avail.json}\n")
  monkeypatch.chdir(tmp_path)
  cfg = config.load("configs/c.yaml")
  assert cfg.data.path == str(sub / "data" / "x.npz")
  assert cfg.data.data_dir == str(tmp_path / "tfds")
  assert cfg.delays.trace_path == str(sub / "speeds.csv")
  assert cfg.delays.availability_trace == "/abs/avail.json"
  # --set values stay relative to the current folder
  cfg = config.apply_overrides(cfg, ["data.path=here.npz"])
  assert cfg.data.path == "here.npz"
  assert {f for f in config_files.PATH_FIELDS} == {
      ("data", "path"), ("data", "data_dir"), ("delays", "trace_path"),
      ("delays", "availability_trace")}


def test_a_run_from_a_config_file_finds_its_data_beside_it(tmp_path,
                                                          monkeypatch):
  from conftest import write_image_npz
  sub = tmp_path / "exp"
  sub.mkdir()
  write_image_npz(sub / "img.npz")
  (sub / "c.json").write_text(json.dumps({
      "data": {"name": "npz", "path": "img.npz", "num_clients": 10},
      "run": {"num_updates": 20, "concurrency": 2, "eval_every": 10}}))
  monkeypatch.chdir(tmp_path / "..")
  out = tmp_path / "o"
  assert cli.main(["run", "--config", str(sub / "c.json"), "--out",
                   str(out)]) == 0
  saved = json.loads((out / "config.json").read_text())
  assert saved["data"]["path"] == str(sub / "img.npz")


def test_updates_a_run_cannot_use_are_warned_about():
  """FedAvg ran 250 of 255 updates, and FedBuff and AFL left their last
  partial version unapplied, with no word; FedAvg with num_rounds ignored
  num_updates, and with weighted selection counted sizes twice."""
  def warned(rule, n, **run):
    cfg = config.from_dict({"rule": rule, "run": {"num_updates": n, **run}})
    return [w for w in notices.config_warnings(cfg)
            if w.startswith("run.num_updates=")]
  assert warned({"name": "fedavg"}, 255) == [
      "run.num_updates=255 is not a multiple of run.concurrency=10, the "
      "updates in each round of the synchronous rule 'fedavg': the run has "
      "25 rounds, 250 client updates (set run.num_rounds, or a multiple)"]
  assert warned({"name": "fedbuff", "buffer_size": 3}, 100) == [
      "run.num_updates=100 is not a multiple of rule.buffer_size=3, the "
      "client updates per server version: the last 1 fill no version and "
      "are never applied"]
  assert "rule.params.clients_per_round=4" in warned(
      {"name": "afl", "params": {"clients_per_round": 4}}, 102)[0]
  assert warned({"name": "fedavg"}, 250) == []
  # with num_rounds, num_updates is not read (it was ignored silently);
  # left at its default, nothing is said
  assert warned({"name": "fedavg"}, 255, num_rounds=3) == [
      "run.num_updates=255 does nothing with run.num_rounds=3 (the "
      "synchronous rule 'fedavg' runs 3 rounds of at most "
      "run.concurrency=10 updates)"]
  default = config.Config().run.num_updates
  assert warned({"name": "fedavg"}, default, num_rounds=3) == []
  assert warned({"name": "fedbuff", "buffer_size": 3}, 99) == []
  assert warned({"name": "fedasync"}, 101) == []
  sizes_twice = [w for w in notices.config_warnings(config.from_dict(
      {"rule": {"name": "fedavg"}, "run": {"selection": "weighted"}}))
      if w.startswith("run.selection='weighted'")]
  assert len(sizes_twice) == 1 and "counts twice" in sizes_twice[0]
  assert not [w for w in notices.config_warnings(config.from_dict(
      {"rule": {"name": "fedasync"}, "run": {"selection": "weighted"}}))
      if w.startswith("run.selection")]


def test_an_adaptive_server_optimizer_at_the_default_rate_is_warned_about():
  """server_lr defaults to 1.0, the plain average's rate; with Adam-like
  server optimizers every step moves each coordinate by about 1.0."""
  def warned(rule):
    return [w for w in notices.config_warnings(config.from_dict(
        {"rule": rule})) if w.startswith("rule.server_lr=")]
  fedbuff = {"name": "fedbuff", "buffer_size": 2}
  for opt in ("fedadam", "yogi"):
    [w] = warned({**fedbuff, "server_optimizer": opt})
    assert f"rule.server_optimizer='{opt}' moves every coordinate" in w
  assert warned({**fedbuff, "server_optimizer": "fedadam",
                 "server_lr": 0.01}) == []
  assert warned({**fedbuff, "server_optimizer": "sgd"}) == []
  assert warned({"name": "fedavg", "server_optimizer": "adam"}) != []


def test_fields_that_do_not_apply_are_warned_about(tmp_path, capsys):
  out = tmp_path / "w"
  argv = ["run", "--out", str(out), "--set", "run.num_updates=40",
          "--set", "run.deadline=5", "--set", "rule.buffer_size=3",
          "--set", "data.num_clients=10", "--set", "client.batch_size=20"]
  assert cli.main(argv) == 0
  err = capsys.readouterr().err
  summary = json.loads((out / "summary.json").read_text())
  for field in ("run.deadline=5.0", "rule.buffer_size=3"):
    assert f"fedasync-jax: warning: {field} does nothing with rule.name " \
           f"'fedasync'" in err, err
    assert any(w.startswith(field) for w in summary["warnings"])
  # data.partition with data that come federated (synthetic)
  cfg = config.from_dict({"data": {"partition": "iid"}})
  assert notices.config_warnings(cfg) == [
      "data.partition='iid' does nothing with data.name 'synthetic' (the "
      "data set comes federated)"]
  # a loader's field that the chosen data set's member does not declare
  for name in ("synthetic", "npz"):
    cfg = config.from_dict({"data": {"name": name, "download": True}, **(
        {"data": {"name": name, "download": True, "path": "x.npz"}}
        if name == "npz" else {})})
    assert notices.config_warnings(cfg) == [
        f"data.download=True does nothing with data.name '{name}' (it "
        f"applies to data.name mnist, fashion_mnist, cifar10, emnist)"]
  assert notices.config_warnings(config.from_dict(
      {"data": {"name": "mnist", "download": True}})) == []
  # a setting that applies is not warned about
  cfg = config.from_dict({"rule": {"name": "fedavg"},
                          "run": {"deadline": 5.0}})
  assert notices.config_warnings(cfg) == []
  cfg = config.from_dict({"rule": {"staleness": "constant",
                                   "staleness_a": 2.0}})
  assert notices.config_warnings(cfg) == [
      "rule.staleness_a=2.0 does nothing with rule.staleness 'constant' "
      "(it applies to rule.staleness polynomial, hinge, exponential)"]
  # run.concurrency beside an open loop (was silent)
  cfg = config.from_dict({"run": {"poisson_rate": 1.0, "concurrency": 50},
                          "data": {"num_clients": 100}})
  assert notices.config_warnings(cfg) == [
      "run.concurrency=50 does nothing with run.poisson_rate 1.0 (an open "
      "loop dispatches at that rate; run.concurrency is the closed loop's "
      "tasks in flight)"]
  assert notices.config_warnings(config.from_dict(
      {"run": {"poisson_rate": 1.0}})) == []


def test_epoch_fields_with_a_single_pass_are_warned_about():
  """client.epochs with fixed client.steps, and early stopping or the
  per-epoch decay with one pass of local training, change nothing (the
  results are identical); they are warned about, and not with two
  epochs."""
  steps = config.from_dict({"client": {"steps": 5, "epochs": 3,
                                       "patience": 2, "epoch_decay": True}})
  assert notices.config_warnings(steps) == [
      "client.epochs=3 does nothing with client.steps 5 (fixed local steps "
      "replace epochs)",
      "client.epoch_decay=True does nothing with client.steps 5 (fixed "
      "local steps are one pass; it acts from the second epoch on)",
      "client.patience=2 does nothing with client.steps 5 (fixed local "
      "steps are one pass; it acts from the second epoch on)"]
  # warned about, not refused (local_update itself refuses both)
  from fedasync_jax.run import setup as setup_lib
  assert setup_lib.setup(steps).update.num_steps == 5
  one = config.from_dict({"client": {"patience": 2}})
  assert notices.config_warnings(one) == [
      "client.patience=2 does nothing with client.epochs 1 (one epoch; it "
      "acts from the second epoch on)"]
  two = config.from_dict({"client": {"epochs": 2, "patience": 2,
                                     "epoch_decay": True}})
  assert notices.config_warnings(two) == []


def test_trace_settings_without_the_file_that_reads_them_are_warned_about(
    tmp_path):
  """The trace settings act only through the trace files that read them:
  the device table's cost model (augmentation, model_kbit), the .csv
  availability trace's period, the row mapping, reading pickles. Set with
  no such file they are warned about, naming what they need; set with it,
  they are not."""
  speeds = tmp_path / "speeds.csv"
  speeds.write_text("0.5, 1.0\n")
  avail = tmp_path / "avail.csv"
  avail.write_text("client,start,end\n1,0,5\n")
  table = tmp_path / "table.csv"
  table.write_text("client_id,computation,communication\n1,10,100\n")
  extra = {"augmentation": 2.0, "model_kbit": 8.0, "trace_period": 9.0,
           "trace_mapping": "random", "trust_pickle": True}

  def unused(**delays):
    cfg = config.from_dict({"delays": {**delays, **extra}})
    return {w.split("=", 1)[0][len("delays."):]: w
            for w in notices.config_warnings(cfg)}
  none = unused()
  assert sorted(none) == sorted(extra)
  assert none["model_kbit"] == (
      "delays.model_kbit=8.0 does nothing with delays.speeds 'lognormal' (it "
      "applies with delays.speeds trace to a device table in "
      "delays.trace_path: .pkl, .json, or .csv with a computation column)")
  assert "with delays.availability_trace None (it applies to a .csv " \
         "availability trace)" in none["trace_period"]
  # a list of speeds is cycled: no cost model, no mapping
  listed = unused(speeds="trace", trace_path=str(speeds))
  assert sorted(listed) == sorted(extra)
  assert "a list of speeds, cycled over the clients" in listed["augmentation"]
  # an availability trace reads the period and the mapping
  assert sorted(unused(availability_trace=str(avail))) == [
      "augmentation", "model_kbit", "trust_pickle"]
  # a device table reads its cost model and the mapping
  assert sorted(unused(speeds="trace", trace_path=str(table))) == [
      "trace_period", "trust_pickle"]


def test_runs_that_apply_no_update_are_warned_about(tmp_path):
  cfg = config.from_dict({**TINY, "run": {**TINY["run"],
                                          "num_updates": 12}})
  s = experiment.setup(cfg)
  every = np.asarray(s.fed.train.offsets)
  update = faults.nan_clients(s.update, every)  # every client diverges
  out = executor.simulate(s.rule, update, s.params, s.fed.train, s.schedule,
                          key=jax.random.key(0), eval_fn=s.eval_fn,
                          eval_every=s.eval_every_versions)
  err = io.StringIO()
  summary = outputs.write_outputs(tmp_path / "q", cfg, s, out, wall_time=1.0,
                                  plots=False, stream=err)
  assert summary["quarantined_updates"] == 12
  assert summary["warnings"] == [
      "all 12 client updates were quarantined (NaN or Inf): the model "
      "never changed"]
  assert "fedasync-jax: warning: all 12" in err.getvalue()
  assert json.loads((tmp_path / "q" / "summary.json").read_text())[
      "warnings"] == summary["warnings"]
  # (dropped_updates counts the quarantined ones too)
  none = dict(summary, quarantined_updates=2, dropped_updates=12)
  assert notices.result_warnings(none) == [
      "no client update was applied (12 received, 10 dropped as too stale, "
      "2 quarantined): the model never changed"]
  assert notices.result_warnings(dict(summary, quarantined_updates=3,
                                      dropped_updates=3)) == []


def test_demo_refuses_a_nan_learning_rate(tmp_path, capsys):
  rc = cli.main(["demo", "--out", str(tmp_path / "d"), "--updates", "100",
                 "--client-lr", "nan"])
  assert rc == 2
  out = capsys.readouterr()
  assert "--client-lr must be a number > 0, got nan" in out.err
  assert len(out.err.strip().splitlines()) == 1 and out.out == ""
  assert not (tmp_path / "d").exists()


def test_metrics_stream_skips_what_it_has_written():
  class S:
    version_after = np.arange(1, 7)
    arrival_time = np.arange(6) * 1.0
    arrival_task = np.arange(6)
  f = io.StringIO()
  stream = metrics.MetricsStream(f, S(), eval_every=2, after=1)
  ev = {"test_loss": 1.0, "test_accuracy": 0.5}
  stream({"arrivals_done": 2, "last_eval": ev})  # arrival 1: written before
  assert f.getvalue() == ""
  stream({"arrivals_done": 5, "last_eval": ev})  # arrival 3: new
  stream({"arrivals_done": 5, "last_eval": ev})  # the same again
  # the initial evaluation reported after a resume is not relabelled
  stream({"arrivals_done": 6, "last_eval": {"client_updates": 0, **ev}})
  assert [json.loads(x)["client_updates"]
          for x in f.getvalue().splitlines()] == [4]


def test_a_torn_metrics_line_is_cut_before_a_resume_appends(tmp_path):
  """A kill can tear the line being written; the resumed stream used to
  append to it (``{"client_up{"version": ...}``) and, finding no last line,
  write every row again."""
  path = tmp_path / "metrics.jsonl"
  rows = [{"version": v, "client_updates": v} for v in (0, 2, 4)]
  good = "".join(metrics.json_line(r) for r in rows)
  for torn in ('{"version": 6, "client_up', '{"version": 6}\n', "garbage"):
    path.write_text(good + torn)
    assert metrics.last_written(path) == 3
    assert path.read_text() == good
  with open(path, "a") as f:
    f.write(metrics.json_line({"version": 6, "client_updates": 6}))
  assert [json.loads(x)["client_updates"]
          for x in path.read_text().splitlines()] == [0, 2, 4, 6]
  assert metrics.last_written(tmp_path / "none.jsonl") is None


# ------------------------------------------- issue 15 audit: results


def _summary(**kw):
  base = {"client_updates": 50, "dropped_updates": 0,
          "quarantined_updates": 0, "versions": 5, "simulated_time": 12.0,
          "final_test_loss": 0.5, "final_test_accuracy": 0.8}
  return {**base, **kw}


def test_a_run_that_applies_no_server_version_is_warned_about():
  assert notices.result_warnings(_summary()) == []
  assert notices.result_warnings(_summary(versions=0)) == [
      "no server version was applied (50 client updates received, none "
      "reached the model; a buffered rule's buffer never filled?): the "
      "model never changed"]


def test_a_buffer_that_cannot_fill_is_refused_up_front(tmp_path, capsys):
  with pytest.raises(config.ConfigError) as e:
    config.apply_overrides(config.Config(), [
        "rule.name=fedbuff", "rule.buffer_size=100", "run.num_updates=50"])
  msg = str(e.value)
  assert msg.startswith("rule.buffer_size=100 "), msg
  assert "run.num_updates (50)" in msg, msg
  # a buffer that fills once is fine
  ok = config.apply_overrides(config.Config(), [
      "rule.name=fedbuff", "rule.buffer_size=50", "run.num_updates=50"])
  assert ok.rule.buffer_size == 50
  out = tmp_path / "never"
  assert cli.main(["run", "--out", str(out), "--set", "rule.name=fedbuff",
                   "--set", "rule.buffer_size=100", "--set",
                   "run.num_updates=50"]) == 2
  assert "rule.buffer_size=100" in capsys.readouterr().err
  assert not out.exists()


def test_non_finite_results_and_a_frozen_clock_are_warned_about():
  assert notices.result_warnings(_summary(final_test_loss=math.inf)) == [
      "the final test loss is inf: the model diverged (lower client.lr or "
      "rule.server_lr)"]
  assert notices.result_warnings(_summary(final_test_accuracy=math.nan,
                                          final_test_loss=math.nan)) == [
      "the final test loss is nan: the model diverged (lower client.lr or "
      "rule.server_lr)", "the final test accuracy is nan: the model "
      "diverged (lower client.lr or rule.server_lr)"]
  assert notices.result_warnings(_summary(simulated_time=0.0)) == [
      "simulated time did not advance (every one of the 50 client updates "
      "arrived at time 0): the delays are degenerate (see delays.*)"]


def test_summary_json_writes_non_finite_numbers_as_null(tmp_path):
  from fedasync_jax.run import results

  def strict(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(c))
  path = tmp_path / "summary.json"
  results.write_json(path, {"loss": math.inf, "acc": np.float32("nan"),
                            "nested": {"x": [1.0, -math.inf, np.inf]},
                            "t": (np.float64(2.5), math.nan), "n": 3})
  assert strict(path.read_text()) == {
      "loss": None, "acc": None, "nested": {"x": [1.0, None, None]},
      "t": [2.5, None], "n": 3}


def test_participation_is_a_histogram_beyond_a_few_hundred_clients():
  """A bar per client took 81 s at 100,000 clients, after training, and
  minutes more (memory growing) at a million."""
  pytest.importorskip("matplotlib")
  from matplotlib.figure import Figure
  for n, bars in ((outputs.BAR_CLIENTS, outputs.BAR_CLIENTS),
                  (100_000, 3)):
    ax = Figure().subplots()
    counts = np.arange(n) % 3  # 0, 1 or 2 applied updates per client
    outputs._plot_participation(ax, counts)
    assert len(ax.patches) == bars, n
  # the histogram counts clients per number of applied updates
  assert sorted(p.get_height() for p in ax.patches) == [33333, 33333,
                                                       33334]


def test_a_stopped_runs_summary_counts_only_the_part_it_ran():
  """After Ctrl-C, ``realised_concurrency`` was the whole schedule's
  (16.4 where the part that ran had 66.9) while ``lost_updates`` was the
  part's; both now cover the simulated time the run got to."""
  from types import SimpleNamespace
  from fedasync_jax import delays, scheduler
  n = 200
  avail = delays.availability(n, period=100.0, on_fraction=0.3, seed=0)
  s = scheduler.asynchronous(
      delays.delay_model(np.ones(n), np.full(n, 10.0), dropout=0.2,
                         availability=avail),
      num_updates=600, poisson_rate=2.0, seed=0)
  times = s.arrival_time[s.arrival_task]
  cut = times[:150]
  stopped = SimpleNamespace(stats={"stopped_early": True},
                            arrivals={"simulated_time": cut})
  until = float(cut[-1])
  busy = np.minimum(s.arrival_time, until) - s.dispatch_time
  want = float(np.sum(np.maximum(busy, 0.0))) / until
  got = outputs._realised_concurrency(s, stopped)
  assert got == pytest.approx(want, rel=1e-12)
  assert abs(got - s.stats["realised_concurrency"]) > 0.05
  assert outputs._lost_updates(s, stopped) == int(
      (s.lost & (s.arrival_time <= until)).sum())
  done = SimpleNamespace(stats={}, arrivals={"simulated_time": times})
  assert outputs._realised_concurrency(s, done) == \
      s.stats["realised_concurrency"]


def test_skipped_open_loop_dispatches_are_counted_and_warned_about(tmp_path):
  """An open loop far above what the clients can serve skipped about 5e17
  dispatches, counted in the schedule only: summary.json had no field and
  no warning. A stopped run counts those up to where it got."""
  from types import SimpleNamespace
  cfg = config.from_dict({**TINY, "run": {**TINY["run"], "concurrency": 1,
                                          "poisson_rate": 1e6}})
  s = experiment.setup(cfg)
  skipped = s.schedule.stats["skipped_dispatches"]
  assert skipped == int(s.schedule.stats["skip_counts"].sum()) > 120
  out = executor.simulate(s.rule, s.update, s.params, s.fed.train,
                          s.schedule, key=jax.random.key(0),
                          eval_fn=s.eval_fn, eval_every=s.eval_every_versions)
  summary = outputs.write_outputs(tmp_path / "o", cfg, s, out, wall_time=1.0,
                                  plots=False, stream=io.StringIO())
  assert summary["skipped_dispatches"] == skipped
  assert summary["warnings"] == [
      f"{skipped} open-loop dispatches found no idle, available client and "
      f"were skipped, against 120 client updates: run.poisson_rate is above "
      f"what the clients can serve (the population, its availability and "
      f"its speeds set the load)"]
  times = s.schedule.arrival_time[s.schedule.arrival_task]
  until = float(times[59])
  stopped = SimpleNamespace(stats={"stopped_early": True},
                            arrivals={"simulated_time": times[:60]})
  part = outputs._skipped_dispatches(s.schedule, stopped)
  st = s.schedule.stats
  assert part == int(st["skip_counts"][st["skip_times"] <= until].sum())
  assert 0 < part < skipped
  assert notices.result_warnings({"client_updates": 120,
                                  "skipped_dispatches": 119}) == []
