"""The experiment scripts' shared command line and their recorded results.

Beside the smoke runs of ``tests/test_scripts.py``: each summary's length
line names the options that shorten a run (``common.run_length``); a
non-empty ``--out`` is refused without ``--force``; a bad option is one
line and exit status 2 with nothing written; a skipped run makes no
folder; the recorded FedAsync claims leave out repeated runs; the theory
CSVs are plain; the theory scripts' ``--seed`` moves every replicate draw
(0: the recorded draws). Most checks parse arguments in this process (no JAX
work); the few subprocesses stop before any training.
"""

from __future__ import annotations

import csv
import importlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
RESULTS = EXP / "results"


MODULES = ("command_line", "common", "time_to_accuracy", "sampling",
           "fedasync_staleness", "fedbuff_comparison", "trace_heterogeneity",
           "afl_paper", "conv_in_loop", "jax_function", "theory_common",
           "theory_rate", "theory_sampling", "theory_staleness_bound",
           "theory_staleness_functions", "theory_claims")
# Every module of experiments/ (the scripts import their own helpers).
NAMES = tuple(sorted(p.stem for p in EXP.glob("*.py")))


@pytest.fixture(scope="module")
def scripts():
  """The experiment modules, imported from ``experiments/`` (another
  test may have imported ``benchmarks/common.py`` as ``common``: the
  modules of those names are set aside meanwhile)."""
  saved = {n: sys.modules.pop(n) for n in NAMES
           if n in sys.modules}
  sys.path.insert(0, str(EXP))
  try:
    yield SimpleNamespace(**{n: importlib.import_module(n)
                             for n in MODULES})
  finally:
    sys.path.remove(str(EXP))
    for n in NAMES:
      sys.modules.pop(n, None)
    sys.modules.update(saved)


def _run(script, *argv, cwd=ROOT):
  return subprocess.run([sys.executable, str(EXP / script), *map(str, argv)],
                        cwd=cwd, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------
# 1. The length line.


@pytest.mark.parametrize("module, argv, want", [
    ("time_to_accuracy",
     "--updates 500 --speeds lognormal --rules fedasync,fedavg",
     ["SHORTENED RUN: ", "--updates 500 (full 30000)",
      "--speeds lognormal (full lognormal,pareto)",
      "--rules fedasync,fedavg (full fedasync,fedbuff,fedavg)"]),
    ("time_to_accuracy", "", ["Full-length run."]),
    ("time_to_accuracy", "--quick",
     ["SHORTENED RUN (`--quick`): --updates 6000 (full 30000)."]),
    ("sampling", "--model mlp --rounds 4 --steps 2 --seeds 0,1",
     ["SHORTENED RUN: ", "--model mlp (full mnist_cnn)",
      "--rounds 4 (full 40)", "--steps 2 (full 10 epochs)",
      "--seeds 0,1 (full 0,1,2,3,4)"]),
    ("sampling", "", ["Full-length run."]),
    ("fedasync_staleness", "--updates 300 --seeds 0,1",
     ["SHORTENED RUN: ", "--updates 300 (default 2500, full 10000)",
      "--seeds 0,1 (default and full 0,1,2)"]),
    ("fedasync_staleness", "",
     ["Default-length run, shorter than `--full`: --updates 2500 "
      "(full 10000)."]),
    ("fedasync_staleness", "--full", ["Full-length run (`--full`)."]),
    ("fedbuff_comparison",
     "--concurrency 1000 --server-lrs 4,8 --variants fedbuff,fedavgm",
     ["SHORTENED RUN: ", "--concurrency 1000 (default and full "
      "10,100,1000)", "--server-lrs 4,8 (default 1,2,4, full 0.5,1,2,4,8)",
      "--variants fedbuff,fedavgm ("]),
    ("trace_heterogeneity", "--updates 500", ["SHORTENED RUN: --updates "
                                              "500 (full 10000)."]),
    ("jax_function", "--updates 50", ["SHORTENED RUN: --updates 50 "
                                      "(full 200)."]),
    ("conv_in_loop", "--smoke", ["SMOKE RUN"]),
])
def test_the_length_line_names_every_option_that_shortens_a_run(
    scripts, module, argv, want):
  m = getattr(scripts, module)
  text = m.length(m.parse_args(argv.split()))
  for w in want:
    assert w in text, text
  assert text.startswith(want[0])


def test_afl_length_line_keeps_its_meaning(scripts):
  afl = scripts.afl_paper

  def length(argv):
    return afl.length(afl.resolve("mnist", afl.parse_args("mnist", argv)))
  assert length([]).startswith("Default-length run, shorter than `--full`: "
                               "--rounds 10 (full 1000)")
  assert length(["--full"]) == "Full-length run (`--full`)."
  assert length(["--seeds", "0,1", "--rounds", "3"]).startswith(
      "SHORTENED RUN: --rounds 3 (default 10, full 1000)")


def test_the_summary_opens_with_the_length_line(scripts):
  t = scripts.time_to_accuracy
  args = t.parse_args("--updates 500 --speeds lognormal --rules "
                      "fedasync,fedavg".split())
  fed = SimpleNamespace(train=SimpleNamespace(num_clients=1000,
                                              counts=np.array([8, 60, 179])))
  base = SimpleNamespace(run=SimpleNamespace(eval_every=100))
  prov = SimpleNamespace(markdown=lambda: "- command: x\n")
  md = t.summary_markdown(args, base, fed, [], [], prov)
  assert md.splitlines()[2].startswith("SHORTENED RUN: --updates 500 "
                                       "(full 30000)")
  assert "Full-length run" not in md


def test_recorded_grid8_summary_says_it_is_not_the_default():
  md = (RESULTS / "fedbuff_comparison_c1000_grid8" / "summary.md"
        ).read_text()
  assert md.splitlines()[2].startswith("NOT THE DEFAULT RUN")
  assert ("--concurrency 1000 --server-lrs 4,8 --variants fedbuff,fedavgm"
          in md.split("## Setting")[0])


# ---------------------------------------------------------------------------
# 2, 5. Refused folders and bad options: one line, exit 2, nothing written.


PARSERS = {
    "time_to_accuracy": lambda s, a: s.time_to_accuracy.parse_args(a),
    "sampling": lambda s, a: s.sampling.parse_args(a),
    "fedasync_staleness": lambda s, a: s.fedasync_staleness.parse_args(a),
    "fedbuff_comparison": lambda s, a: s.fedbuff_comparison.parse_args(a),
    "trace_heterogeneity": lambda s, a: s.trace_heterogeneity.parse_args(a),
    "afl_mnist": lambda s, a: s.afl_paper.parse_args("mnist", a),
    "conv_in_loop": lambda s, a: s.conv_in_loop.parse_args(a),
    "jax_function": lambda s, a: s.jax_function.parse_args(a),
    "theory_rate": lambda s, a: s.theory_common.parse_args(
        "doc", "theory_rate", a),
}


def _fails(capsys, parse, argv) -> str:
  """The one line ``parse(argv)`` stops with (exit status 2)."""
  with pytest.raises(SystemExit) as e:
    parse(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  return err.strip()


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_a_non_empty_out_folder_is_refused_without_force(
    scripts, name, tmp_path, capsys):
  out = tmp_path / "earlier"
  out.mkdir()
  own = "theory_rate_smoke.md" if name.startswith("theory") else "old.csv"
  (out / own).write_text("earlier results")
  parse = lambda argv: PARSERS[name](scripts, argv)  # noqa: E731
  err = _fails(capsys, parse, ["--smoke", "--out", str(out)])
  assert "--force" in err and str(out) in err
  assert parse(["--smoke", "--out", str(out), "--force"]).force
  assert not parse(["--smoke", "--out", str(tmp_path / "new")]).force


def test_theory_scripts_share_a_folder_but_not_their_files(
    scripts, tmp_path):
  """The four theory scripts write into one folder: another script's
  files there are no reason to refuse."""
  (tmp_path / "theory_sampling_smoke.md").write_text("another script's")
  args = scripts.theory_common.parse_args(
      "doc", "theory_rate", ["--smoke", "--out", str(tmp_path)])
  assert args.out == tmp_path


def test_a_refused_run_writes_nothing(tmp_path):
  out = tmp_path / "earlier"
  out.mkdir()
  (out / "summary.md").write_text("earlier results")
  p = _run("time_to_accuracy.py", "--smoke", "--out", out)
  assert p.returncode == 2, p.stderr
  assert p.stderr.strip().splitlines() == [
      f"time_to_accuracy.py: error: --out {out} is not empty (1 entries, "
      f"e.g. summary.md); pass --force to write into it anyway"]
  assert [f.name for f in out.iterdir()] == ["summary.md"]
  assert (out / "summary.md").read_text() == "earlier results"


@pytest.mark.parametrize("name, argv, line", [
    ("fedasync_staleness", "--updates -5",
     "--updates must be a positive integer, got -5"),
    ("fedasync_staleness", "--max-staleness -1",
     "--max-staleness must be comma-separated non-negative integers, got -1"),
    ("fedasync_staleness", "--seeds a",
     "--seeds must be comma-separated non-negative integers, got a"),
    ("fedasync_staleness", "--eval-every 0",
     "--eval-every must be a positive integer, got 0"),
    ("fedasync_staleness", "--prox-rho -1",
     "--prox-rho must be a number in [0, 1e+18], got -1"),
    ("time_to_accuracy", "--updates 0",
     "--updates must be a positive integer, got 0"),
    ("time_to_accuracy", "--eval-every 0",
     "--eval-every must be a positive integer, got 0"),
    ("time_to_accuracy", "--eval-every 12",
     "--eval-every must be a multiple of the concurrency 5, got 12"),
    ("time_to_accuracy", "--eval-every 15 --rules fedbuff",
     "--eval-every must be a multiple of FedBuff's K=10, got 15"),
    ("sampling", "--rounds 0", "--rounds must be a positive integer, got 0"),
    ("fedbuff_comparison", "--seeds 0", "--tune-seed must not be among "
                                        "--seeds"),
    ("afl_mnist", "--ms 0,3",
     "--ms must be comma-separated integers >= 1, got 0,3"),
    # Checked when parsed, not after the first runs wrote their files.
    ("afl_mnist", "--afl-lr -1", "--afl-lr must be a number in [0, 1e+18], "
                                 "got -1"),
    ("afl_mnist", "--afl-lr nan", "--afl-lr must be a number in [0, "
                                  "1e+18], got nan"),
    ("afl_mnist", "--delay-beta inf", "--delay-beta must be a number in "
                                      "[0, 1e+18], got inf"),
    ("afl_mnist", "--seeds 0,0", "--seeds must not repeat a value, got 0,0"),
    ("afl_mnist", "--epochs 2 --steps 3",
     "--epochs and --steps cannot be given together (choose one)"),
    ("fedbuff_comparison", "--lr -1",
     "--lr must be a number in (0, 1e+18], got -1"),
    ("fedbuff_comparison", "--tune-seed -1",
     "--tune-seed must be an integer in [0, 2147483647], got -1"),
    ("fedbuff_comparison", "--server-lrs 1,-1",
     "--server-lrs must be comma-separated numbers in (0, 1e+18], got 1,-1"),
    ("fedbuff_comparison", "--momenta 1.5",
     "--momenta must be comma-separated numbers in [0, 1), got 1.5"),
    ("trace_heterogeneity", "--device-trace /nonexistent.json",
     "--device-trace must be an existing file, got /nonexistent.json "
     "(not found)"),
    ("trace_heterogeneity", "--rules fedasync,fedasync",
     "--rules must not repeat a name, got fedasync,fedasync"),
    # A configuration's error names the option typed, not the field.
    ("time_to_accuracy", "--seed -1",
     "--seed must be an integer in [0, 2147483647], got -1"),
    ("time_to_accuracy", "--speeds fast",
     "--speeds must be one of ['constant', 'uniform', 'exponential', "
     "'lognormal', 'pareto', 'trace'], got 'fast'"),
    ("time_to_accuracy", "--rules fedsgd", "--rules must be one of ["),
])
def test_a_bad_option_is_one_line(scripts, capsys, tmp_path, name, argv,
                                  line):
  parse = lambda a: PARSERS[name](scripts, a)  # noqa: E731
  err = _fails(capsys, parse, ["--smoke", *argv.split(), "--out",
                               str(tmp_path / "out")])
  assert err.startswith(f"{_prog()}: error: {line}"), err
  assert line.endswith("[") or err == f"{_prog()}: error: {line}"
  assert not (tmp_path / "out").exists()


def test_an_unreadable_trace_is_refused_when_parsed(scripts, capsys,
                                                    tmp_path):
  """A trace file that exists but cannot be read stops the run before it
  writes anything (it failed after the lognormal half of the runs)."""
  bad = tmp_path / "device.json"
  bad.write_text('{"0": {"computation": "fast"}}')
  err = _fails(capsys, scripts.trace_heterogeneity.parse_args,
               ["--smoke", "--device-trace", str(bad), "--out",
                str(tmp_path / "out")])
  assert err.startswith(f"{_prog()}: error: --device-trace: {bad}: "), err
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["afl_mnist", "fedasync_staleness",
                                  "fedbuff_comparison"])
def test_lengths_that_cannot_go_together_are_refused(scripts, capsys,
                                                     tmp_path, name):
  """``--quick --full`` (``--quick`` silently won) and ``--smoke`` with
  either."""
  parse = lambda a: PARSERS[name](scripts, a)  # noqa: E731
  for pair in (("--quick", "--full"), ("--smoke", "--quick")):
    err = _fails(capsys, parse, [*pair, "--out", str(tmp_path / "out")])
    assert err == (f"{_prog()}: error: {pair[0]} and {pair[1]} cannot be "
                   f"given together (choose one)")
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_an_out_that_is_a_file_is_refused(scripts, capsys, tmp_path, name):
  """A file named by ``--out`` (or on its path) is refused when parsed,
  with or without ``--force`` (it was a FileExistsError traceback)."""
  (tmp_path / "afile").write_text("not a folder")
  parse = lambda a: PARSERS[name](scripts, a)  # noqa: E731
  for out, where in ((tmp_path / "afile", "it"),
                     (tmp_path / "afile" / "sub", tmp_path / "afile")):
    err = _fails(capsys, parse, ["--smoke", "--force", "--out", str(out)])
    assert err == (f"{_prog()}: error: --out {out} must name a folder, but "
                   f"{where} is a file")
  assert (tmp_path / "afile").read_text() == "not a folder"


def _prog() -> str:
  """argparse's program name in this process: the running file's
  (pytest's; a script's own name when it runs, as the subprocess tests
  check)."""
  return Path(sys.argv[0]).name


def test_a_bad_option_leaves_no_folder(tmp_path):
  p = _run("fedasync_staleness.py", "--smoke", "--updates", "-5", "--out",
           tmp_path / "out")
  assert p.returncode == 2
  assert p.stderr.strip().splitlines() == [
      "fedasync_staleness.py: error: --updates must be a positive integer, "
      "got -5"]
  assert not (tmp_path / "out").exists()


def test_a_skipped_run_makes_no_folder(tmp_path):
  """No data: SKIPPED, exit 0, and neither ``--out`` nor the default
  ``runs/<name>-<time>/`` is made."""
  p = _run("time_to_accuracy.py", "--data-dir", tmp_path, "--out",
           tmp_path / "out")
  assert p.returncode == 0 and "SKIPPED" in p.stderr, p.stderr
  assert not (tmp_path / "out").exists()
  code = (
      "import sys; from pathlib import Path; sys.path.insert(0, "
      f"{str(EXP)!r}); import common, time_to_accuracy as t; "
      f"common.new_run_dir = lambda name: Path({str(tmp_path)!r}) / name; "
      f"common.prepare(t.parse_args(['--data-dir', {str(tmp_path)!r}]), "
      "'default')")
  p = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 0 and "SKIPPED" in p.stderr, p.stderr
  assert not (tmp_path / "default").exists()


# ---------------------------------------------------------------------------
# 4. FedAsync's claims leave out repeated runs.


def test_fedasync_claims_leave_out_repeated_runs(scripts):
  cl = {c["id"]: c for c in scripts.fedasync_staleness.claims_from(
      RESULTS / "fedasync_staleness")}
  comps = cl["fedasync_beats_fedavg"]["comparisons"]
  assert len(comps) == 20
  assert sum(c["significant_against"] for c in comps) == 6
  assert not any(c["what"].startswith("max 4: hinge") for c in comps)
  assert len(cl["adaptivity_not_step_size"]["comparisons"]) == 12
  with open(RESULTS / "fedasync_staleness" / "comparisons.csv") as f:
    rows = [r for r in csv.DictReader(f)
            if r["claim"] == "fedasync_beats_fedavg"]
  assert len(rows) == 20
  assert sum(r["significant_against"] == "True" for r in rows) == 6
  md = (RESULTS / "fedasync_staleness" / "summary.md").read_text()
  assert "0 of 20 comparisons significant as claimed" in md
  assert "6 significant against" in md
  assert "24 comparisons" not in md


# ---------------------------------------------------------------------------
# 7, 8. Theory outputs.


def test_theory_csvs_are_plain_with_a_provenance_sidecar(scripts, tmp_path,
                                                         monkeypatch):
  tc = scripts.theory_common
  monkeypatch.setattr(sys, "argv", ["experiments/theory_rate.py", "--smoke"])
  path = tmp_path / "t.csv"
  tc.write_csv(path, [{"T": 1, "x": 0.5}, {"T": 2, "x": 0.25}])
  with open(path) as f:
    assert list(csv.DictReader(f)) == [{"T": "1", "x": "0.5"},
                                       {"T": "2", "x": "0.25"}]
  assert np.genfromtxt(path, delimiter=",", names=True)["x"].tolist() == [
      0.5, 0.25]
  assert "theory_rate.py --smoke" in tc.provenance_path(path).read_text()
  recorded = sorted((RESULTS / "theory").glob("theory_*.csv"))
  assert len(recorded) == 4
  for p in recorded:
    with open(p) as f:
      rows = list(csv.DictReader(f))
    assert rows and not next(iter(rows[0])).startswith("#"), p
    assert tc.provenance_path(p).read_text().startswith("produced by: ")
  rate = np.genfromtxt(RESULTS / "theory" / "theory_rate.csv",
                       delimiter=",", names=True)
  assert rate["T"][0] == 500 and rate.size == 192


def test_theory_verdicts_name_their_level(scripts):
  verdict = scripts.theory_rate._verdict
  assert verdict(SimpleNamespace(p_value=0.014)) == (
      "fits within the seed noise at the 1% level (p = 0.014 >= 0.01)")
  assert verdict(SimpleNamespace(p_value=0.002)) == (
      "does not fit at the 1% level (p = 0.002 < 0.01)")
  md = (RESULTS / "theory" / "theory_rate.md").read_text()
  assert "noise (p =" not in md and "does not fit (p =" not in md


# ---------------------------------------------------------------------------
# 9. Intervals of bounded quantities.


def test_intervals_are_clipped_to_the_metric_range(scripts):
  c = scripts.common
  acc = [0.0, 0.05, 0.25]            # 0.100 +- 0.329 unclipped
  assert c.fmt_ci(acc, 3) == "0.100 +- 0.329 (n=3)"
  assert c.fmt_ci(acc, 3, c.BOUNDS["test_accuracy"]) == (
      "0.100 [0.000, 0.429] (n=3)")
  assert c.fmt_ci([0.98, 0.99, 1.0], 3, c.BOUNDS["test_accuracy"]).endswith(
      ", 1.000] (n=3)")
  assert c.interval_of([0.1, 2.0], c.BOUNDS["test_loss"])[1] == 0.0


# ---------------------------------------------------------------------------
# 10. Cited files exist.


def test_every_repository_file_cited_by_the_experiments_exists():
  """A path such as ``fedasync_jax/models/conv.py`` named in a script, a
  recorded summary or docs/experiments.md names a file of the repository
  (``fedasync_jax/conv.py`` was cited after the file moved)."""
  import re
  texts = ([*EXP.glob("*.py"), *EXP.rglob("*.md"),
            ROOT / "docs" / "experiments.md"])
  pattern = re.compile(r"(?<![\w/.])((?:fedasync_jax|experiments|benchmarks"
                       r"|tests|docs)/[\w/.-]*\w\.(?:py|md|json|csv))")
  missing = sorted({(str(t.relative_to(ROOT)), m) for t in texts
                    for m in pattern.findall(t.read_text())
                    if not (ROOT / m).exists()})
  assert not missing, missing


# ---------------------------------------------------------------------------
# 11. Outputs replace a recording only when complete; Ctrl-C; length lines.


def test_a_run_replaces_its_folder_only_when_it_finishes(scripts, tmp_path):
  """A run writes into ``<out>.partial-<time>``; the earlier recording is
  untouched until ``finish``, which replaces the same names and keeps the
  rest (another theory script's files)."""
  c = scripts.common
  target = tmp_path / "results"
  target.mkdir()
  (target / "summary.md").write_text("old summary")
  (target / "other.md").write_text("another script's")
  out = c.partial_dir(target)
  assert out.parent == tmp_path and out.name.startswith("results.partial-")
  assert c.target_of(out) == target
  c.write_text(out / "summary.md", "new summary")
  assert (target / "summary.md").read_text() == "old summary"
  assert c.finish(out) == target
  assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
  assert (target / "summary.md").read_text() == "new summary"
  assert (target / "other.md").read_text() == "another script's"


def test_a_theory_script_makes_its_folder_before_computing(
    scripts, tmp_path, monkeypatch):
  """The folder comes first, so a stopped or failed computation leaves
  the partial folder, and ``--out`` exists before any work."""
  tr = scripts.theory_rate

  def stopped(args):
    raise KeyboardInterrupt("SIGINT")
  monkeypatch.setattr(tr, "measure", stopped)
  monkeypatch.setattr(sys, "argv", ["experiments/theory_rate.py", "--smoke",
                                    "--out", str(tmp_path / "out")])
  with pytest.raises(SystemExit) as stop:  # Ctrl-C: exit 130, one line
    tr.main()
  assert stop.value.code == 130
  [partial] = tmp_path.iterdir()
  assert partial.name.startswith("out.partial-")


def test_theory_markdown_opens_with_its_length(scripts, tmp_path,
                                               monkeypatch):
  tc, tr = scripts.theory_common, scripts.theory_rate
  quick = SimpleNamespace(quick=True, smoke=False)
  assert tr.length(quick) == (
      "SHORTENED RUN (`--quick`): horizons T 250,500,1000,2000,4000 (full "
      "500,1000,2000,4000,8000,16000), seeds 8 (full 32).")
  assert tr.length(SimpleNamespace(quick=False, smoke=False)) == (
      "Full-length run.")
  monkeypatch.setattr(sys, "argv", ["experiments/theory_rate.py", "--quick"])
  tc.write_md(tmp_path / "t.md", "Title", "body", tr.length(quick))
  assert (tmp_path / "t.md").read_text().splitlines()[2].startswith(
      "SHORTENED RUN (`--quick`): horizons T")


def test_theory_markdown_says_whether_each_claim_reproduced(scripts):
  """The theory reports named no paper number (or none beside the claim)
  and gave no verdict; docs/theory.md alone did. Each opens with its
  claims, the papers by arXiv number, and verdicts computed from the run's
  numbers (both ways)."""
  cl = scripts.theory_claims
  fit = lambda p, lo, hi: SimpleNamespace(p=p, ci_low=lo, ci_high=hi)
  text = cl.rate(fit(0.49, 0.459, 0.517))
  assert text.startswith("## Claims and verdicts")
  assert "arXiv:1903.03934" in text and "arXiv:2508.01675" in text
  assert "| partly: decays at least as fast as T^-1/2" in text
  assert "not reproduced: slower than T^-1/2" in cl.rate(fit(0.3, 0.2, 0.4))
  rows = [{"ratio": 1.01}, {"ratio": 0.995}, {"ratio": float("nan")}]
  ok = cl.sampling(rows, rows[0], 50_000)
  assert "Section 2.2" in ok and "| reproduced: within 4 Monte-Carlo" in ok
  assert "over 2 (N, m, scheme) rows" in ok
  assert "not reproduced" in cl.sampling(rows, {"ratio": 1.2}, 50_000)
  lian = [{"holds": True, "ratio": 0.3}, {"holds": False, "ratio": 1.2}]
  drift = {0: {}, 4: {"measured": 0.2, "bound": 1.0}}
  m = SimpleNamespace(lian=lian, taus=[0, 4], horizons=[50, 100],
                      kol={"thm6": {"ratio_last": 1.1}}, drift=drift)
  text = cl.staleness_bound(m, 3.03)
  assert "arXiv:1506.08272" in text and "arXiv:2206.08307" in text
  assert "| not reproduced at 1 points |" in text
  assert "not reproduced: the measured ratio 3.03 > 1.1" in text
  assert "consistent: measured / bound 0.2 <= 1" in text
  m.lian = lian[:1]
  assert "| reproduced |" in cl.staleness_bound(m, 1.0)
  assert "consistent: the measured ratio 1 <= 1.1" in cl.staleness_bound(
      m, 1.0)


def test_theory_force_help_says_which_folders_are_refused(scripts):
  """It said any non-empty --out was refused; a theory script refuses
  only a folder holding its own run's files (they share one folder)."""
  text = " ".join(scripts.theory_common.parser("doc").format_help().split())
  assert "without it a folder that holds this run's files is refused" in text
  other = " ".join(scripts.common.add_output_args(
      scripts.common.Parser()).format_help().split())
  assert "without it such a folder is refused" in other


def test_summaries_are_written_through_the_atomic_writer():
  """No script writes an output with a plain ``write_text`` or
  ``open(..., "w")`` (a run stopped mid-write left a torn summary.md):
  ``common.write_text`` / ``write_rows`` / ``write_json`` do it."""
  import re
  plain = re.compile(r"(?<!common)\.write_text\(|open\([^)]*[\"']wb?[\"']")
  found = [f"{p.name}:{i}" for p in sorted(EXP.glob("*.py"))
           if p.name != "common.py"
           for i, line in enumerate(p.read_text().splitlines(), 1)
           if plain.search(line)]
  assert not found, found


def test_ctrl_c_keeps_the_recording_and_says_how_far_it_got(tmp_path):
  """SIGINT after the first of two runs: exit status 130, the line
  ``interrupted (SIGINT) after 1 of 2 runs; completed runs are in
  history.csv`` in the partial folder's log, and the earlier recording
  (a ``--force`` target) unchanged."""
  import os
  import signal
  import time
  out = tmp_path / "out"
  out.mkdir()
  (out / "summary.md").write_text("earlier recording")
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             MPLBACKEND="Agg")
  p = subprocess.Popen(
      [sys.executable, str(EXP / "time_to_accuracy.py"), "--smoke", "--out",
       str(out), "--force"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  t0 = time.time()
  while not list(tmp_path.glob("out.partial-*/history.csv")):
    assert p.poll() is None and time.time() - t0 < 120, p.communicate()
    time.sleep(0.05)
  p.send_signal(signal.SIGINT)
  _, err = p.communicate(timeout=60)
  assert p.returncode == 130, err
  [partial] = tmp_path.glob("out.partial-*")
  last = (partial / "log.txt").read_text().splitlines()[-1]
  assert last.startswith("interrupted (SIGINT) after 1 of 2 runs; completed "
                         "runs are in history.csv"), last
  assert f"{out} is unchanged" in last
  assert [f.name for f in out.iterdir()] == ["summary.md"]
  assert (out / "summary.md").read_text() == "earlier recording"


@pytest.mark.parametrize("name,work", [
    ("theory_rate", "measure"), ("theory_sampling", "monte_carlo"),
    ("theory_staleness_bound", "measure"),
    ("theory_staleness_functions", "measure"), ("conv_in_loop", "measure")])
def test_ctrl_c_in_a_script_without_a_log_exits_130_and_says_so(
    scripts, tmp_path, monkeypatch, capsys, name, work):
  """The scripts that keep no ``log.txt``: Ctrl-C during the work ends
  with exit status 130 and one line naming the partial folder and saying
  the target folder is unchanged, not a traceback."""
  def stop(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(getattr(scripts, name), work, stop)
  out = tmp_path / "out"
  out.mkdir()
  (out / "keep.md").write_text("earlier")
  argv = ["--smoke", "--out", str(out), "--force"]
  monkeypatch.setattr(sys, "argv", [f"experiments/{name}.py", *argv])
  main = getattr(scripts, name).main
  with pytest.raises(SystemExit) as e:
    main(argv) if name == "conv_in_loop" else main()
  assert e.value.code == 130
  [partial] = tmp_path.glob("out.partial-*")
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err == (f"interrupted (SIGINT) before its results were written "
                 f"(in {partial}; {out} is unchanged)"), err
  assert [f.name for f in out.iterdir()] == ["keep.md"]


# ---------------------------------------------------------------------------
# 12. The theory scripts' --seed: other draws, the recorded ones at 0.


def test_theory_seed_parses_and_refuses_bad_values(scripts, capsys,
                                                   tmp_path):
  """``--seed S`` defaults to 0 (the recorded results' draws); a bad
  value is one line naming ``--seed`` and its range, exit status 2. The
  largest keeps every derived seed in the library's range."""
  def parse(argv):
    return scripts.theory_common.parse_args("doc", "theory_rate", argv)
  tc = scripts.theory_common
  assert parse([]).seed == 0
  assert parse(["--seed", "7"]).seed == 7
  assert parse([f"--seed={tc.SEED_MAX}"]).seed == tc.SEED_MAX == 2146
  assert tc.seed_base(parse(["--seed", "2146"])) + tc.SEED_GAP - 1 \
      <= 2**31 - 1
  for bad in ("-1", "2147", "x"):
    err = _fails(capsys, parse, ["--seed", bad, "--out",
                                 str(tmp_path / "out")])
    assert err == (f"{_prog()}: error: --seed must be an integer in [0, "
                   f"2146], got {bad}")
  assert not (tmp_path / "out").exists()
  text = " ".join(scripts.theory_common.parser("doc").format_help().split())
  assert "the recorded results use 0" in text
  assert tc.seed_line(0) == "" and "`--seed 7`" in tc.seed_line(7)
  tc.write_md(tmp_path / "t.md", "T", "body", "Full-length run.", 7)
  tc.write_md(tmp_path / "z.md", "T", "body", "Full-length run.", 0)
  assert (tmp_path / "t.md").read_text().splitlines()[4].startswith(
      "SEED 7 (`--seed 7`)")
  assert "SEED" not in (tmp_path / "z.md").read_text()


class _Swept(Exception):
  """Stops a theory script's ``measure`` at its first sweep."""


def _first_sweep(scripts, monkeypatch, name, seed):
  """The schedules and keys that ``measure`` of theory script ``name``
  hands its first ``sweep.sweep`` at ``--smoke --seed seed`` (the sweep is
  not run)."""
  import jax
  module = getattr(scripts, name)

  def stop(make_rule, grid, upd, w0, data, scheds, *, keys, **kwargs):
    raise _Swept(scheds, jax.random.key_data(keys))
  monkeypatch.setattr(module, "sweep", SimpleNamespace(sweep=stop))
  args = scripts.theory_common.parse_args(
      module.__doc__, name, ["--smoke", "--seed", str(seed)])
  with pytest.raises(_Swept) as e:
    module.measure(args)
  return e.value.args


def _same_schedules(a, b) -> bool:
  return len(a) == len(b) and all(
      np.array_equal(x.client, y.client)
      and np.array_equal(x.arrival_time, y.arrival_time)
      for x, y in zip(a, b))


def _drawn(name, seed):
  """The first sweep's schedules and keys at ``--smoke`` sizes: the
  scripts' literal seeds before ``--seed`` plus ``seed`` (at 0, exactly
  what the recorded runs drew)."""
  import jax
  from fedasync_jax import delays, scheduler
  ones = np.ones(100)
  if name == "theory_rate":        # horizon 0: seeds 10_000 * 0 + s, key 0
    dm = delays.delay_model(ones, ones, jitter="exponential")
    scheds = [scheduler.asynchronous(dm, num_updates=50, concurrency=8,
                                     max_staleness=16, seed=seed + s)
              for s in range(2)]
    keys = jax.random.split(jax.random.key(seed + 0), 2)
  elif name == "theory_staleness_bound":  # tau 0, T 50: offset 100_000
    dm = delays.delay_model(ones, ones, jitter="none")
    scheds = [scheduler.asynchronous(dm, num_updates=50, concurrency=1,
                                     max_staleness=0, seed=seed + 100_000 + s)
              for s in range(2)]
    scheds = [scheds[s] for s in np.repeat(np.arange(2), 3)]
    keys = jax.random.split(jax.random.key(seed + 100_000), 2)[
        np.repeat(np.arange(2), 3)]
  else:                            # speeds seed 1, schedule seed 0, key 0
    dists = {"constant": {}, "exponential": {}, "lognormal": {"sigma": 1.0},
             "pareto": {"shape": 1.5}}
    one = {}
    for d, kw in dists.items():
      sp = delays.device_speeds(d, 100, seed=seed + 1, **kw)
      dm = delays.delay_model(sp, ones, jitter="none")
      one[d] = scheduler.asynchronous(dm, num_updates=100, concurrency=16,
                                      seed=seed + 0)
    scheds = [one[d] for _ in range(6) for d in dists]
    keys = jax.random.split(jax.random.key(seed + 0), len(scheds))
  return scheds, jax.random.key_data(keys)


@pytest.mark.parametrize("name", ["theory_rate", "theory_staleness_bound",
                                  "theory_staleness_functions"])
def test_theory_seed_moves_the_draws_and_zero_keeps_the_recorded_ones(
    scripts, monkeypatch, name):
  """``--seed 0`` draws the schedules, device speeds and keys that the
  literal seeds drew before the option; ``--seed 7`` draws others, each
  from its literal seed plus 7 x 1,000,000."""
  scheds, keys = _drawn(name, 0)
  at0, keys0 = _first_sweep(scripts, monkeypatch, name, 0)
  at7, keys7 = _first_sweep(scripts, monkeypatch, name, 7)
  assert _same_schedules(at0, scheds)
  assert np.array_equal(keys0, keys)
  assert not any(np.array_equal(x.client, y.client)
                 for x, y in zip(at7, scheds))
  assert not np.array_equal(keys7, keys)
  scheds7, keys7_want = _drawn(name, 7 * scripts.theory_common.SEED_GAP)
  assert _same_schedules(at7, scheds7)
  assert np.array_equal(keys7, keys7_want)


def test_theory_seed_moves_the_bootstraps_and_sampling_draws(
    scripts, monkeypatch):
  """theory_rate's bootstrap intervals and theory_sampling's draws follow
  ``--seed`` too (0: the literal seeds of the recorded runs)."""
  from fedasync_jax import theory
  tr, ts, tc = scripts.theory_rate, scripts.theory_sampling, (
      scripts.theory_common)
  horizons = [50, 100, 200]
  T = np.asarray(horizons, float)  # 10 seeds: bootstraps that differ
  vals = (T ** -0.5 + 5 / T) * np.random.default_rng(5).lognormal(
      sigma=0.1, size=(10, 3))
  offsets = []

  def fake_run(h, seeds, *, seed_offset, **kw):
    offsets.append(seed_offset)
    return vals, [{"tau_avg": 1.0, "tau_max": 2}], 0.0
  monkeypatch.setattr(tr, "run", fake_run)

  def fits(seed):
    m = tr.measure(tc.parse_args(tr.__doc__, "theory_rate",
                                 ["--smoke", "--seed", str(seed)]))
    assert tr.summary(m)["setup"]["seed"] == seed  # recorded in the JSON
    return [(f.ci_low, f.ci_high) for f in (m.fit, m.tail, m.curve, m.power)]
  today = [(f.ci_low, f.ci_high) for f in (
      theory.loglog_slope(horizons, vals, num_boot=200, seed=0),
      theory.loglog_slope(horizons, vals, num_boot=200, seed=1),
      theory.rate_fit(horizons, vals, num_boot=200, seed=2),
      theory.rate_fit(horizons, vals, inverse_t=False, num_boot=200,
                      seed=3))]
  assert fits(0) == today
  assert all(a != b for a, b in zip(fits(7), today))
  assert offsets == [0, 7 * tc.SEED_GAP]
  # theory_sampling: the population, Monte-Carlo and scheduler draws.
  u = ts.updates_for(10)[0]
  mc = lambda seed: [r["empirical"] for r in ts.monte_carlo(  # noqa: E731
      20, seed=seed) if r["N"] == 10]
  assert mc(0)[2] == theory.empirical_sampling_variance(
      u, 2, replace=True, num_trials=20, seed=10_002)
  assert mc(7) != mc(0)
  sched = lambda seed: [r["empirical"] for r in ts.scheduler_rows(  # noqa
      2, seed=seed)[0]]
  assert sched(7) != sched(0)
  seeds = []

  def fake_rows(n, *, seed):
    seeds.append(seed)
    return [{"ratio": 1.0, "empirical": 0.0, "closed_form": 0.0}]
  monkeypatch.setattr(ts, "monte_carlo", fake_rows)
  monkeypatch.setattr(ts, "scheduler_rows", lambda n, *, seed: (
      fake_rows(n, seed=seed), 50))
  m = ts.measure(tc.parse_args(ts.__doc__, "theory_sampling",
                               ["--smoke", "--seed", "7"]))
  assert seeds == [7 * tc.SEED_GAP] * 2 and ts.summary(m)["seed"] == 7
