"""experiment.make_model ties the image transform to uint8 data."""

import jax
import numpy as np
import optax
import pytest

from conftest import write_image_npz
from fedasync_jax import (client, config, executor, experiment, models, rules,
                          staleness)


@pytest.fixture
def image_cfg(tmp_path):
  path = write_image_npz(tmp_path / "img.npz", size=28)
  # data.name "mnist" with an .npz path: MNIST's normalization is used.
  return config.from_dict({
      "data": {"name": "mnist", "path": str(path), "num_clients": 10},
      "model": {"name": "logistic_regression"},
      "run": {"num_updates": 60, "concurrency": 3, "eval_every": 20}})


def test_make_model_standardizes_uint8_inputs(image_cfg):
  fed = experiment.load_data(image_cfg)
  assert fed.train.x.dtype == np.uint8 and fed.x_test.dtype == np.float32
  model = experiment.make_model(image_cfg, fed)
  raw = models.logistic_regression(28 * 28, 2)
  # random weights (logistic regression starts at zero, which would hide
  # the inputs)
  p = jax.tree.map(lambda a: jax.random.normal(jax.random.key(1), a.shape),
                   model.init(jax.random.key(1)))
  x8 = fed.train.x[:16]
  xf = np.asarray(experiment.image_transform("mnist")(x8))
  assert abs(float(xf.mean())) < 3  # standardized, not 0..255
  mask = np.ones(16, np.float32)
  y = fed.train.y[:16]
  np.testing.assert_allclose(model.apply(p, x8), raw.apply(p, xf),
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(raw.apply(p, x8), raw.apply(p, xf), rtol=0.1)
  y = 1 - y  # make the loss non-trivial
  np.testing.assert_allclose(model.loss(p, x8, y, mask),
                             raw.loss(p, xf, y, mask), rtol=1e-5)
  # float inputs (the standardized test set) pass through unchanged
  np.testing.assert_allclose(model.apply(p, fed.x_test),
                             raw.apply(p, fed.x_test), rtol=1e-6)
  np.testing.assert_allclose(model.evaluate(p, x8, y)[0],
                             raw.evaluate(p, xf, y)[0], rtol=1e-6)


def test_the_obvious_call_trains_on_uint8_images(image_cfg):
  """The README's recipe: load_data, make_model, local_update(model.loss)."""
  image_cfg = config.apply_overrides(image_cfg, ["model.name=mlp"])
  fed = experiment.load_data(image_cfg)
  model = experiment.make_model(image_cfg, fed)
  update = client.local_update(model.loss, optax.sgd(0.1), batch_size=8,
                               max_examples=fed.train.max_count)
  rule = rules.fedasync(0.6, staleness.polynomial(0.5))
  sched = experiment.make_schedule(image_cfg, fed, rule)
  out = executor.simulate(
      rule, update, model.init(jax.random.key(0)), fed.train, sched,
      key=jax.random.key(0), eval_every=20,
      eval_fn=models.make_evaluator(model, fed.x_test, fed.y_test))
  assert out.evals[-1]["test_accuracy"] > 0.9


def test_float_data_models_are_not_wrapped():
  cfg = config.from_dict({"data": {"num_clients": 20}})
  fed = experiment.load_data(cfg)
  assert fed.train.x.dtype != np.uint8
  model = experiment.make_model(cfg, fed)
  p = model.init(jax.random.key(0))
  raw = models.logistic_regression(fed.train.x.shape[1], fed.num_classes)
  np.testing.assert_array_equal(model.apply(p, fed.x_test[:4]),
                                raw.apply(p, fed.x_test[:4]))


def test_progress_bar_takes_every_simulators_progress_dict(lsq, lsq_update):
  """executor.simulate and reference.run report the same dict; the bar
  draws both (simulated time from the schedule, accuracy from last_eval,
  with the updates it was evaluated after: 4 of 6 at eval_every=4, where
  the bar's last line used to read like the final model's)."""
  import io
  import jax.numpy as jnp
  from fedasync_jax import delays, reference, scheduler
  ds, _ = lsq
  sched = scheduler.asynchronous(
      delays.delay_model(np.ones(ds.num_clients), np.ones(ds.num_clients),
                         jitter="none"), num_updates=6, concurrency=2,
      seed=0)
  rule = rules.fedasync(0.5)
  evaluate = lambda p: {"accuracy": jnp.sum(p) * 0 + 0.25}  # noqa: E731
  for run in (executor.simulate, reference.run):
    bar = experiment.ProgressBar(sched.num_arrivals, sched,
                                 stream=io.StringIO(), tty=True)
    run(rule, lsq_update, jnp.zeros(5), ds, sched, key=jax.random.key(0),
        eval_fn=evaluate, eval_every=4, progress=bar)
    text = bar.stream.getvalue()
    last = text.rstrip("\n").split("\r")[-1]
    assert "6/6 updates" in last and "test acc  0.250 at 4 " in last, last
    t_end = float(sched.arrival_time[sched.arrival_task[-1]])
    assert f"sim time {t_end:9.1f}" in last
    assert text.endswith("\n")
  # Without a schedule or total (a sweep): the dict's num_arrivals.
  bar = experiment.ProgressBar(stream=io.StringIO(), label="sweep",
                               tty=True)
  bar({"arrivals_done": 3, "num_arrivals": 12, "version": 3,
       "wall_time_s": 2.0, "last_eval": None})
  out = bar.stream.getvalue()
  assert out.startswith("\rsweep [") and "3/12 updates" in out
  assert "sim time" not in out and "2.0 s elapsed" in out


def test_experiment_keeps_its_public_names():
  for name in ("train_and_evaluate", "sweep_and_evaluate", "setup",
               "load_data", "make_model", "make_rule_from", "make_delays",
               "make_schedule", "make_staleness", "parse_grid", "SWEEPABLE",
               "Setup", "Interrupted", "ProgressBar", "write_outputs",
               "plot_run", "load_trace", "image_transform",
               "with_image_inputs", "normalization", "CHECKPOINT",
               "_optimizer"):
    assert hasattr(experiment, name), name
  opt = experiment._optimizer("sgd", 0.1, 0.9)
  assert isinstance(opt, optax.GradientTransformation)
  with pytest.raises(ValueError, match="momentum"):
    experiment._optimizer("sgd", 0.1, 1.5)


def test_progress_after_a_resume_has_no_eta_until_a_rate_is_measured():
  """After a resume, no ETA until a second report has measured a rate."""
  import io
  bar = experiment.ProgressBar(1000, stream=io.StringIO(), tty=True)
  bar({"arrivals_done": 500, "num_arrivals": 1000, "version": 500,
       "wall_time_s": 0.1, "last_eval": {"test_accuracy": 0.75}})
  first = bar.stream.getvalue()
  assert "500/1000 updates" in first and "test acc  0.750" in first, first
  assert "ETA      ? s" in first, first
  bar({"arrivals_done": 600, "num_arrivals": 1000, "version": 600,
       "wall_time_s": 0.2, "last_eval": {"test_accuracy": 0.8}})
  second = bar.stream.getvalue().split("\r")[-1]
  assert "test acc  0.800" in second and "ETA      ?" not in second
  initial = {"version": 0, "simulated_time": 0.0, "client_updates": 0,
             "client_train_loss": float("nan"), "test_accuracy": 0.1}
  # A run's first report has no rate yet either; its last has nothing left.
  bar = experiment.ProgressBar(stream=io.StringIO(), tty=True)
  bar({"arrivals_done": 8, "num_arrivals": 16, "version": 8,
       "wall_time_s": 5.0, "last_eval": initial})
  assert "test acc  0.100" in bar.stream.getvalue()
  assert "ETA      ? s" in bar.stream.getvalue()
  bar({"arrivals_done": 16, "num_arrivals": 16, "version": 16,
       "wall_time_s": 5.1, "last_eval": None})
  assert bar.stream.getvalue().endswith("ETA    0.0 s \n")


def test_a_file_of_other_images_is_refused_under_a_named_data_set(
    tmp_path):
  """8x8 images given as data.name mnist (MNIST's statistics, a model
  built for 28x28) are refused, naming the shapes and the way out; the
  same file loads as npz."""
  path = write_image_npz(tmp_path / "small.npz")
  cfg = config.from_dict({"data": {"name": "mnist", "path": str(path),
                                   "num_clients": 10}})
  with pytest.raises(config.ConfigError, match=(
      r"data\.name='mnist'.*holds examples of shape \(8, 8\), not mnist's "
      r"\(28, 28\) or \(28, 28, 1\); .* name 'npz' for other data")):
    experiment.load_data(cfg)
  npz = config.apply_overrides(cfg, ["data.name=npz"])
  assert experiment.load_data(npz).train.x.shape[1:] == (8, 8)


def test_labels_beyond_the_models_classes_are_refused(image_cfg):
  fed = experiment.load_data(image_cfg)
  assert int(fed.train.y.max()) == 1  # two classes
  with pytest.raises(config.ConfigError,
                     match=r"y_train holds labels up to 1, but model.name "
                           r"'logistic_regression' has 1 classes"):
    experiment.make_model(image_cfg, fed._replace(num_classes=1))
  from fedasync_jax.core import checks
  with pytest.raises(ValueError, match="y_test holds labels down to -1"):
    checks.labels("y_test", np.array([0, -1]), 3)
  # Float labels are class labels when the model has classes: whole
  # numbers in range pass; 0.5 (read as 0 by the loss) and 5.0 for 3
  # classes (NaN losses) used to pass too.
  assert checks.labels("y", np.array([0.0, 1.0]), 2) is not None
  with pytest.raises(ValueError, match=r"y holds np.float64\(0.5\), not a "
                     r"class label: the model has 2 classes \(labels must be "
                     r"whole numbers in \[0, 2\)\)"):
    checks.labels("y", np.array([0.5, 1.0]), 2)
  with pytest.raises(ValueError, match="y holds labels up to 5, but the "
                     "model has 3 classes"):
    checks.labels("y", np.array([0.0, 5.0]), 3)
  with pytest.raises(ValueError, match=r"holds np.float32\(nan\)"):
    checks.labels("y", np.array([np.nan], np.float32), 3)
