"""`fedasync-jax sweep`'s inputs: --grid and --seeds are checked before any
work, and grid fields that do nothing are warned about."""

import json
import re

import pytest

from fedasync_jax import cli, config
from fedasync_jax.run import notices

TINY = ["--set", "data.num_clients=20", "--set", "client.batch_size=20",
        "--set", "run.num_updates=40", "--set", "run.concurrency=4",
        "--set", "run.eval_every=20", "--set", "run.chunk_steps=8",
        "--set", "run.plots=false"]
SEEDS = (r"--seeds must be a comma-separated list of integers in "
         r"\[0, 2147483647\] \(or @FILE\)")


def _error_line(capsys) -> str:
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err, err
  assert err.startswith("fedasync-jax: error: "), err
  return err


@pytest.mark.parametrize("args, match", [
    (["--grid", "rule.alpha=0.3", "--grid", "rule.alpha=0.6"],
     r"--grid rule\.alpha is given twice; list all its values in one "
     r"--grid rule\.alpha=V1,V2,\.\.\."),
    (["--seeds", "0,x"], SEEDS + r", got '0,x' \('x' is not one\)"),
    (["--seeds", "1.5"], SEEDS + r", got '1\.5'"),
    (["--seeds="], SEEDS + r", got '' \(an empty entry\)"),
    (["--seeds", "0,,1"], SEEDS + r", got '0,,1' \(an empty entry\)"),
    (["--seeds=-1"], SEEDS + r", got '-1'"),
    (["--seeds", "-1"], SEEDS + r", got '-1'"),
    (["--seeds", "-1,2"], SEEDS + r", got '-1,2' \('-1' is not one\)"),
    (["--seeds", "2147483648"], SEEDS),
    (["--seeds", "1,0,1"], r"--seeds lists \[1\] more than once"),
    (["--grid", "rule.alhpa=0.3"],
     r"unknown field rule\.alhpa in --grid 'rule\.alhpa=0\.3'; sweepable "
     r"fields are \[.*\] \(did you mean 'rule\.alpha'\?\)$"),
    (["--grid", "rul.alpha=0.3"], r"unknown field rul\.alpha .*"
                                  r"\(did you mean 'rule\.alpha'\?\)$"),
    (["--grid", "=0.3"], r"a --grid item must look like "
                         r"SECTION\.FIELD=V1,V2,\.\.\., got '=0\.3'$"),
    (["--grid", "rule.alpha"], r"a --grid item must look like .*, got "
                               r"'rule\.alpha'$"),
    (["--grid", "run.seed=0,1"], r"run\.seed cannot vary inside one "
                                 r"compiled sweep through --grid: list the "
                                 r"seeds with --seeds S1,S2"),
    (["--grid", "rule.staleness=constant,hinge"],
     r"rule\.staleness cannot vary inside one compiled sweep \(it changes "
     r"the program or the schedule\): run one sweep per value, each with "
     r"--set rule\.staleness=VALUE; sweepable fields are \[.*\]"),
    (["--grid", "run.plots=true,false"],
     r"run\.plots is a setting of the whole sweep's outputs, not of a "
     r"member: give it once with --set run\.plots=VALUE$"),
    (["--grid", "rule.alpha=0.3,,0.9"], r"grid values of rule\.alpha must "
                                        r"be numbers, got '0\.3,,0\.9' "
                                        r"\(an empty entry\)"),
    (["--grid", "rule.alpha=0.3,"], r"\(an empty entry\)"),
    (["--grid", "rule.alpha="], r"grid rule\.alpha has no values"),
])
def test_bad_grid_or_seeds_exit_2_naming_the_option(tmp_path, capsys, args,
                                                    match):
  out = tmp_path / "s"
  assert cli.main(["sweep", "--out", str(out), *TINY, *args]) == 2
  assert re.search(match, _error_line(capsys).strip())
  assert not out.exists()


def test_grid_values_and_seeds_can_come_from_a_file(tmp_path, capsys):
  """A grid of tens of thousands of values exceeds the shell's limit on
  one argument; ``FIELD=@FILE`` and ``--seeds @FILE`` read them instead,
  with the same checks as the inline lists."""
  from fedasync_jax.run import grid
  lrs = tmp_path / "lrs.txt"
  lrs.write_text("# learning rates\n0.01, 0.02\n0.05 0.1  # two more\n\n")
  seeds = tmp_path / "seeds.txt"
  seeds.write_text("\n".join(str(s) for s in range(3000)) + "\n")
  assert grid.parse_grid([f"client.lr=@{lrs}"]) == \
      grid.parse_grid(["client.lr=0.01,0.02,0.05,0.1"])
  assert grid.parse_seeds(f"@{seeds}") == list(range(3000))
  bad = tmp_path / "bad.txt"
  bad.write_text("0.3\n0.x\n")
  empty = tmp_path / "empty.txt"
  empty.write_text("# nothing\n")
  twice = tmp_path / "twice.txt"
  twice.write_text("4\n5\n4\n")
  out = tmp_path / "s"
  for args, match in [
      (["--grid", f"rule.alpha=@{tmp_path / 'none.txt'}"],
       rf"--grid rule\.alpha: cannot read the values file "
       rf"'{re.escape(str(tmp_path / 'none.txt'))}' \(FileNotFoundError: "),
      (["--grid", f"rule.alpha=@{bad}"],
       rf"grid values of rule\.alpha must be numbers, got '0\.x' in the "
       rf"file '{re.escape(str(bad))}'$"),
      (["--grid", f"rule.alpha=@{empty}"],
       r"grid rule\.alpha has no values \(the file .*empty\.txt'\)"),
      (["--seeds", f"@{bad}"], SEEDS + r", got the file .*bad\.txt' "
                                       r"\('0\.3' is not one\)$"),
      (["--seeds", f"@{twice}"], r"--seeds lists \[4\] more than once"),
      (["--seeds", f"@{tmp_path}"], r"--seeds: cannot read the values file "
                                    r".*\(IsADirectoryError: ")]:
    assert cli.main(["sweep", "--out", str(out), *TINY, *args]) == 2, args
    assert re.search(match, _error_line(capsys).strip()), args
    assert not out.exists()


def test_seeds_with_resume_are_refused_even_when_empty(tmp_path, capsys):
  assert cli.main(["sweep", "--resume", str(tmp_path), "--seeds="]) == 2
  assert "do not pass --config, --set, --grid or --seeds" in \
      _error_line(capsys)


def test_grid_fields_that_do_nothing_are_warned_about(tmp_path, capsys):
  out = tmp_path / "s"
  assert cli.main(["sweep", "--out", str(out), *TINY, "--set",
                   "rule.name=fedbuff", "--grid", "rule.alpha=0.3,0.9",
                   "--seeds", "0"]) == 0
  warning = ("--grid rule.alpha=0.3,0.9 does nothing with rule.name "
             "'fedbuff' (it applies to rule.name fedasync); members that "
             "differ only in it are identical")
  assert f"fedasync-jax: warning: {warning}\n" in capsys.readouterr().err
  assert json.loads((out / "summary.json").read_text())["warnings"] == \
      [warning]


def test_sweep_warnings_cover_grid_fields_once():
  cfg = config.from_dict({"rule": {"staleness": "constant",
                                   "staleness_a": 2.0}})
  base = ("rule.staleness_a=2.0 does nothing with rule.staleness 'constant' "
          "(it applies to rule.staleness polynomial, hinge, exponential)")
  assert notices.sweep_warnings(cfg, {}) == [base]
  assert notices.sweep_warnings(cfg, {"client.lr": [0.01, 0.1]}) == [base]
  # the grid replaces the base value: one warning, for the grid's values
  assert notices.sweep_warnings(cfg, {"rule.staleness_a": [0.5, 1.0]}) == [
      "--grid rule.staleness_a=0.5,1.0 does nothing with rule.staleness "
      "'constant' (it applies to rule.staleness polynomial, hinge, "
      "exponential); members that differ only in it are identical"]
  # whatever the values: the defaults' too
  fedbuff = config.from_dict({"rule": {"name": "fedbuff"}})
  assert len(notices.sweep_warnings(fedbuff, {"rule.alpha": [0.6]})) == 1
  # a grid field that applies is not warned about
  assert notices.sweep_warnings(config.Config(),
                                {"rule.alpha": [0.3, 0.9]}) == []
  # a base value that the grid or the seeds replace (they were dropped
  # silently), unless a member uses it
  mine = config.from_dict({"rule": {"alpha": 0.9}, "run": {"seed": 5}})
  assert notices.sweep_warnings(mine, {"rule.alpha": [0.3, 0.6]},
                                [0, 1]) == [
      "rule.alpha=0.9 in the base configuration does nothing: --grid "
      "rule.alpha gives every member its own value",
      "run.seed=5 in the base configuration does nothing: --seeds 0,1 "
      "gives every member its own seed"]
  assert notices.sweep_warnings(mine, {"rule.alpha": [0.3, 0.9]}, [5]) == []
  assert notices.sweep_warnings(mine, {}, None) == []


def test_a_required_staleness_parameter_can_be_given_by_the_grid(tmp_path):
  """``--grid rule.staleness_params.n=2,4`` with mishchenko's staleness
  was refused as 'required by staleness mishchenko' unless a throwaway
  ``--set rule.staleness_params.n`` was added; the grid gives it."""
  out = tmp_path / "s"
  assert cli.main(["sweep", "--out", str(out), *TINY, "--set",
                   "rule.staleness=mishchenko", "--grid",
                   "rule.staleness_params.n=2,4", "--seeds", "0"]) == 0
  rows = [line.split(",") for line in
          (out / "sweep.csv").read_text().splitlines()]
  col = rows[0].index("rule.staleness_params.n")
  assert [float(r[col]) for r in rows[1:]] == [2.0, 4.0]
  # the saved base configuration holds the grid's first value
  saved = json.loads((out / "config.json").read_text())
  assert saved["base"]["rule"]["staleness_params"]["n"] == 2.0
  # a plain field keeps its base value (client.lr scales from it)
  out2 = tmp_path / "lr"
  assert cli.main(["sweep", "--out", str(out2), *TINY, "--grid",
                   "client.lr=0.02,0.05", "--seeds", "0"]) == 0
  base = json.loads((out2 / "config.json").read_text())["base"]
  assert base["client"]["lr"] == config.Config().client.lr


def test_more_devices_than_cores_is_warned_about(monkeypatch, capsys):
  """``--devices 3`` on 2 cores ran with no word; one core each is what
  the docs promise."""
  import jax
  from fedasync_jax.run import cli as cli_module
  from fedasync_jax.sim import xla_cpu
  monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 2)
  split = []  # (this process's JAX configuration is left alone)
  monkeypatch.setattr(jax.config, "update",
                      lambda name, value: split.append((name, value)))
  cli_module._split_cpu(3)
  assert ("warning: --devices 3 splits the CPU into more devices than the "
          "2 cores" in capsys.readouterr().err)
  cli_module._split_cpu(2)
  assert "warning" not in capsys.readouterr().err
  assert split == [("jax_num_cpu_devices", 3), ("jax_num_cpu_devices", 2)]


def test_a_sweeps_members_are_checked_once(monkeypatch, capsys):
  """The command line checks before it makes the folder and the sweep
  again (three times in all): each check of 4,000 members took 8-12 s.
  A grid point is checked once, not once per seed."""
  from fedasync_jax.run import sweep_run
  calls = []
  other = config.from_dict({"rule": {"staleness_a": 1.0}})
  real = config.from_dict
  monkeypatch.setattr(sweep_run.config_lib, "from_dict",
                      lambda d: calls.append(d["run"]["seed"]) or real(d))
  cfg, grid = config.Config(), {"rule.alpha": [0.3, 0.6]}
  first = sweep_run.checked(cfg, grid, [5, 1, 2])
  assert [m[1] for m in first[2]] == [5, 5, 1, 1, 2, 2]
  assert sweep_run.checked(cfg, grid, [5, 1, 2]) == first
  assert calls == [5, 5]
  sweep_run.checked(cfg, grid, [0, 2])  # other inputs: checked again
  sweep_run.checked(other, grid, [0, 2])
  assert len(calls) == 2 + 2 + 2
  with pytest.raises(ValueError, match="rule.alpha"):
    sweep_run.checked(cfg, {"rule.alpha": [0.3, 1.5]}, [0])
  with pytest.raises(ValueError, match="rule.alpha"):  # errors are not kept
    sweep_run.checked(cfg, {"rule.alpha": [0.3, 1.5]}, [0])
  for seeds in ([0, -1], [0, 1.5], [2, 2 ** 31]):  # each seed is checked
    with pytest.raises(ValueError, match=r"seeds: run\.seed must be an "
                                         r"integer in \[0, 2147483647\]"):
      sweep_run.checked(cfg, grid, seeds)
  assert "checking" not in capsys.readouterr().err
  monkeypatch.setattr(sweep_run, "SAY_CHECKING", 3)
  sweep_run.checked(cfg, {"rule.alpha": [0.1, 0.2, 0.3]}, [0, 1])
  assert "checking the configurations of 3 grid points" in \
      capsys.readouterr().err


def test_each_seeds_schedule_is_drawn_once_with_progress(tmp_path,
                                                         monkeypatch, capsys):
  """A sweep drew the base configuration's schedule (and initialised its
  parameters) besides every seed's, and used neither; its per-seed draws
  showed no progress. Now each seed's schedule is drawn once, with
  ``drawing seed S's schedule`` lines."""
  import functools
  from fedasync_jax.run import progress, setup as setup_lib, sweep_run
  drawn = []

  def counting(real):
    def make_schedule(c, *args, **kwargs):
      report = kwargs.get("progress")
      drawn.append((c.run.seed, report is not None))
      if report is not None:
        report(1, c.run.num_updates)
      return real(c, *args, **kwargs)
    return make_schedule

  monkeypatch.setattr(setup_lib, "make_schedule",
                      counting(setup_lib.make_schedule))
  monkeypatch.setattr(sweep_run, "ProgressBar", functools.partial(
      progress.ProgressBar, every_s=0.0))
  out = tmp_path / "s"
  assert cli.main(["sweep", "--out", str(out), *TINY, "--seeds",
                   "3,1"]) == 0
  assert drawn == [(3, True), (1, True)]
  err = capsys.readouterr().err
  for seed in (3, 1):
    assert f"drawing seed {seed}'s schedule: 1 of 40 updates (" in err
