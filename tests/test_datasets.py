"""Tests for fedasync_jax.data.datasets.

TFDS is exercised offline in two ways: ``tfds.testing.mock_data`` (random
records, no files; its data sources implement ``__getitem__`` but not a
working ``__getitems__``, which ``load_tfds`` handles) and, when present, the
real TFDS mnist directory in ``../shared/data/tfds``.
"""

import io
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fedasync_jax import data
from fedasync_jax import datasets

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                      5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _shared(name):
  path = SHARED_DATA / name
  if not path.exists():
    pytest.skip(f"real data not available: {path.resolve()} is absent (only "
                f"the team machines have ../shared/data)")
  return path


@pytest.fixture(name="tfds")
def _tfds():
  return pytest.importorskip("tensorflow_datasets")


# ----------------------------------------------------------------- load_tfds


@pytest.mark.parametrize("name, shape, num_classes", [
    ("mnist", (28, 28, 1), 10),
    ("fashion_mnist", (28, 28, 1), 10),
    ("cifar10", (32, 32, 3), 10),
    ("emnist/balanced", (28, 28, 1), 47),
])
def test_load_tfds_with_mock_data(tfds, tmp_path, name, shape, num_classes):
  with tfds.testing.mock_data(num_examples=23,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    c = datasets.load_tfds(name, data_dir=tmp_path, batch_size=5)
  assert isinstance(c, datasets.CentralData)
  assert c.x_train.shape == (23,) + shape and c.x_test.shape == (23,) + shape
  assert c.x_train.dtype == np.uint8
  assert c.y_train.dtype == np.int32 and c.y_test.dtype == np.int32
  assert c.num_classes == num_classes and c.name == name
  assert 0 <= c.y_train.min() and c.y_train.max() < num_classes
  fed = c.federate(num_clients=3, partition="iid")
  assert fed.train.num_clients == 3 and fed.num_classes == num_classes


def test_load_tfds_missing_fails_fast_with_help(tfds, tmp_path):
  del tfds  # imported up front so the timing below excludes the import
  start = time.perf_counter()
  with pytest.raises(datasets.DatasetNotFoundError) as info:
    datasets.load_tfds("mnist", data_dir=tmp_path)
  elapsed = time.perf_counter() - start
  assert elapsed < 30.0, elapsed  # no download was attempted (a hang guard)
  message = str(info.value)
  assert "download=True" in message
  # the configuration's field and how to set it from the command line (the
  # experiment scripts have no --download flag)
  assert "data.download=true" in message and "--download" not in message
  assert "--set data.download=true" in message
  assert "data.data_dir" in message
  assert "TFDS_DATA_DIR" in message and "data_dir" in message
  assert str(tmp_path) in message
  assert isinstance(info.value, FileNotFoundError)


def test_a_missing_tfds_set_is_one_error_without_tfds_warnings(
    tfds, tmp_path, caplog):
  """An empty version folder (a download that never finished) made TFDS
  log 'WARNING:absl:Variant folder ... has no dataset_info.json' twice
  before the error."""
  del tfds
  (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
  with caplog.at_level(logging.WARNING, logger="absl"):
    with pytest.raises(datasets.DatasetNotFoundError):
      datasets.load_tfds("mnist", data_dir=tmp_path)
  assert not [r for r in caplog.records if r.name == "absl"], caplog.text
  assert logging.getLogger("absl").level < logging.ERROR  # restored


def test_load_tfds_default_dir_honours_env(tfds, tmp_path, monkeypatch):
  del tfds
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  assert datasets.default_tfds_data_dir() == str(tmp_path)
  start = time.perf_counter()
  with pytest.raises(datasets.DatasetNotFoundError, match=str(tmp_path)):
    datasets.load_tfds("emnist/balanced")
  assert time.perf_counter() - start < 30.0  # no download (a hang guard)
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert datasets.default_tfds_data_dir() == os.path.join(
      os.path.expanduser("~"), "tensorflow_datasets")


def test_load_tfds_bad_arguments(tfds, tmp_path):
  del tfds
  with pytest.raises(ValueError, match="nosuchdataset"):
    datasets.load_tfds("nosuchdataset", data_dir=tmp_path)
  with pytest.raises(ValueError, match="9.9.9"):
    datasets.load_tfds("mnist:9.9.9", data_dir=tmp_path)
  with pytest.raises(ValueError, match="name"):
    datasets.load_tfds("", data_dir=tmp_path)
  with pytest.raises(ValueError, match="batch_size"):
    datasets.load_tfds("mnist", data_dir=tmp_path, batch_size=0)


def test_load_tfds_real_mnist(tfds, caplog):
  del tfds
  root = _shared("tfds")
  _shared("tfds/mnist")
  with caplog.at_level(logging.WARNING, logger="absl"):
    c = datasets.load_tfds("mnist", data_dir=root)
  # (decoding logged "WARNING:absl:OpenCV is not installed" amid a run's
  # progress lines)
  assert not [r for r in caplog.records if r.name == "absl"], caplog.text
  assert c.x_train.shape == (60000, 28, 28, 1)
  assert c.x_test.shape == (10000, 28, 28, 1)
  assert c.x_train.dtype == np.uint8 and c.num_classes == 10
  assert np.bincount(c.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
  assert np.bincount(c.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
  # Same test images (as a set) as the exact mnist.npz, if present.
  npz = SHARED_DATA / "mnist.npz"
  if npz.exists():
    with np.load(npz) as z:
      ref = {(img.tobytes(), int(lab))
             for img, lab in zip(z["x_test"], z["y_test"])}
    got = {(img.tobytes(), int(lab))
           for img, lab in zip(c.x_test[..., 0], c.y_test)}
    assert got == ref


def _damaged_mnist_copy(tmp_path, edit):
  """A TFDS data dir in ``tmp_path`` holding the shared mnist 3.0.1 with
  its training records file passed through ``edit(bytes) -> bytes`` (the
  test split is linked, unchanged); returns ``(data_dir, train file)``."""
  src = _shared("tfds/mnist/3.0.1")
  dst = tmp_path / "tfds" / "mnist" / "3.0.1"
  dst.mkdir(parents=True)
  for f in ("dataset_info.json", "features.json"):
    (dst / f).write_bytes((src / f).read_bytes())
  test = "mnist-test.array_record-00000-of-00001"
  (dst / test).symlink_to(src / test)
  train = dst / "mnist-train.array_record-00000-of-00001"
  train.write_bytes(edit(
      (src / "mnist-train.array_record-00000-of-00001").read_bytes()))
  return tmp_path / "tfds", train


def test_a_truncated_tfds_record_file_is_one_line_naming_it(tfds, tmp_path,
                                                           capsys):
  """A records file cut short (here: its first megabyte) used to raise
  riegeli's ``RuntimeError`` from deep inside array_record, naming no
  file; now one ``ValueError`` line names the file, split and record, and
  the command line prints it as one error line."""
  del tfds
  from fedasync_jax import cli
  root, train = _damaged_mnist_copy(tmp_path, lambda b: b[:1 << 20])
  with pytest.raises(ValueError) as e:
    datasets.load_tfds("mnist", data_dir=root)
  msg = str(e.value)
  assert msg.startswith(f"{train}: cannot read record 0 of split 'train' "
                        f"of TFDS data set 'mnist'; the file is truncated "
                        f"or damaged (RuntimeError: ")
  assert "\n" not in msg
  out = tmp_path / "out"
  assert cli.main(["run", "--set", "data.name=mnist", "--set",
                   f"data.data_dir={root}", "--out", str(out)]) == 2
  lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith(
      "fedasync-jax: error: ")]
  assert len(lines) == 1 and str(train) in lines[0], lines
  assert not out.exists()


def test_a_damaged_tfds_record_is_named_by_its_index(tfds, tmp_path):
  """One flipped byte inside a record (its chunk's hash no longer
  matches): the error names the first record that cannot be read, and
  reading it alone fails while the one before it reads."""
  def flip(blob):
    b = bytearray(blob)
    b[200_000] ^= 0xFF
    return bytes(b)
  root, train = _damaged_mnist_copy(tmp_path, flip)
  with pytest.raises(ValueError, match=f"^{train}: cannot read record 526 "
                                       f"of split 'train'"):
    datasets.load_tfds("mnist", data_dir=root, batch_size=4096)
  source = tfds.data_source("mnist", split="train", data_dir=root,
                            download=False)
  assert int(source[525]["label"]) in range(10)
  with pytest.raises(RuntimeError, match="Corrupted"):
    source[526]


# ------------------------------------------------------------------ load_npz


def _save(path, **arrays):
  np.savez(path, **arrays)
  return path


def _good_arrays(n_train=12, n_test=5, num_classes=3):
  rng = np.random.default_rng(0)
  return dict(
      x_train=rng.normal(size=(n_train, 4, 2)).astype(np.float32),
      y_train=np.arange(n_train) % num_classes,
      x_test=rng.normal(size=(n_test, 4, 2)).astype(np.float32),
      y_test=np.arange(n_test) % num_classes)


def test_load_npz_good_file(tmp_path):
  arrays = _good_arrays()
  path = _save(tmp_path / "toy.npz", **arrays)
  c = datasets.load_npz(path)
  assert c.name == "toy" and c.num_classes == 3
  np.testing.assert_array_equal(c.x_train, arrays["x_train"])
  np.testing.assert_array_equal(c.y_test, arrays["y_test"])
  assert c.y_train.dtype == np.int32
  assert datasets.load_npz(path, num_classes=7).num_classes == 7


def _bad(**changes):
  arrays = _good_arrays()
  for k, v in changes.items():
    if v is None:
      del arrays[k]
    else:
      arrays[k] = v
  return arrays


@pytest.mark.parametrize("arrays, key, what", [
    (_bad(x_test=None), "x_test", "missing key"),
    (_bad(y_train=None, y_test=None), "y_train", "missing key"),
    (_bad(y_train=np.arange(11) % 3), "y_train", "11 labels"),
    (_bad(y_test=np.zeros(6, int)), "y_test", "6 labels"),
    (_bad(x_test=np.zeros((5, 4, 3), np.float32)), "x_test", "shape"),
    (_bad(y_train=np.zeros((12, 1), int)), "y_train", "one-dimensional"),
    (_bad(y_train=np.arange(12) * 1.0), "y_train", "integer"),
    (_bad(y_test=np.array([0, 1, -1, 2, 0])), "y_test", "outside"),
    (_bad(x_train=np.array([["a"]] * 12)), "x_train", "numbers"),
    (_bad(x_test=np.full((5, 4, 2), np.nan, np.float32)), "x_test",
     "non-finite"),
    (_bad(x_train=np.where(np.arange(96).reshape(12, 4, 2) == 50, np.inf,
                           0.0)), "x_train", "example 6"),
    (_bad(x_train=np.zeros((0, 4, 2)), y_train=np.zeros(0, int)), "x_train",
     "no examples"),
])
def test_load_npz_malformed(tmp_path, arrays, key, what):
  path = _save(tmp_path / "bad.npz", **arrays)
  with pytest.raises(ValueError) as info:
    datasets.load_npz(path)
  message = str(info.value)
  assert str(path) in message and key in message and what in message, message


def test_load_npz_labels_beyond_given_num_classes(tmp_path):
  path = _save(tmp_path / "toy.npz", **_good_arrays(num_classes=3))
  with pytest.raises(ValueError, match=r"y_train.*outside \[0, 2\)"):
    datasets.load_npz(path, num_classes=2)
  with pytest.raises(ValueError, match="num_classes"):
    datasets.load_npz(path, num_classes=0)


def test_load_npz_unreadable_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="nofile.npz"):
    datasets.load_npz(tmp_path / "nofile.npz")
  npy = tmp_path / "single.npy"
  np.save(npy, np.zeros(3))
  with pytest.raises(ValueError, match="single .npy"):
    datasets.load_npz(npy)
  junk = tmp_path / "junk.npz"
  junk.write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="junk.npz"):
    datasets.load_npz(junk)
  pickled = tmp_path / "pickled.npz"
  arrays = _good_arrays()
  arrays["y_test"] = np.array([0, 1, 2, None, 0], dtype=object)
  np.savez(pickled, **arrays)
  with pytest.raises(ValueError, match="pickled.npz.*y_test.*pickle"):
    datasets.load_npz(pickled)


def test_load_npz_real_mnist():
  c = datasets.load_npz(_shared("mnist.npz"))
  assert c.x_train.shape == (60000, 28, 28) and c.x_train.dtype == np.uint8
  assert c.x_test.shape == (10000, 28, 28) and c.num_classes == 10
  assert c.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
  assert np.bincount(c.y_train).tolist() == MNIST_TRAIN_COUNTS
  # The standard constants standardize the real training images.
  z = datasets.normalize_for(datasets.add_channel_axis(c.x_train[:20000]),
                             dataset="mnist")
  assert z.dtype == np.float32 and z.shape == (20000, 28, 28, 1)
  assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01


# --------------------------------------------------------- load_cifar10_jpeg


def _jpeg_file(path, images, labels, test_images, test_labels, quality=95):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  arrays = {}
  for split, imgs, labs in (("train", images, labels),
                            ("test", test_images, test_labels)):
    blobs = []
    for img in imgs:
      buf = io.BytesIO()
      Image.fromarray(img).save(buf, format="JPEG", quality=quality)
      blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    arrays[f"jpeg_{split}"] = np.concatenate(blobs)
    arrays[f"offsets_{split}"] = np.concatenate(
        [[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    arrays[f"y_{split}"] = np.asarray(labs, np.uint8)
  np.savez(path, **arrays)
  return path, arrays


def _psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255.0 ** 2 / mse)


def _smooth_images(n, seed):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:32, 0:32]
  out = []
  for _ in range(n):
    a, b, c = rng.uniform(0, 6, size=3)
    img = np.stack([np.sin(xx / 5 + a), np.cos(yy / 7 + b),
                    np.sin((xx + yy) / 9 + c)], axis=-1)
    out.append(((img + 1) * 127.5).astype(np.uint8))
  return np.stack(out)


def test_load_cifar10_jpeg_roundtrip(tmp_path):
  train, test = _smooth_images(6, 0), _smooth_images(3, 1)
  path, _ = _jpeg_file(tmp_path / "c.npz", train, [0, 1, 2, 3, 4, 9], test,
                       [5, 6, 7])
  c = datasets.load_cifar10_jpeg(path)
  assert c.x_train.shape == (6, 32, 32, 3) and c.x_train.dtype == np.uint8
  assert c.x_test.shape == (3, 32, 32, 3) and c.num_classes == 10
  assert c.y_train.tolist() == [0, 1, 2, 3, 4, 9]
  assert c.y_train.dtype == np.int32
  assert _psnr(c.x_train, train) > 30 and _psnr(c.x_test, test) > 30
  assert datasets.load_cifar10_jpeg(path, limit=2).x_train.shape[0] == 2


def test_load_cifar10_jpeg_malformed(tmp_path):
  train = _smooth_images(2, 0)
  path, arrays = _jpeg_file(tmp_path / "c.npz", train, [0, 1], train, [0, 1])
  arrays["offsets_train"] = arrays["offsets_train"][:-1]
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match="c.npz.*offsets_train"):
    datasets.load_cifar10_jpeg(path)
  del arrays["jpeg_test"]
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match="c.npz.*jpeg_test"):
    datasets.load_cifar10_jpeg(path)
  with pytest.raises(ValueError, match="limit"):
    datasets.load_cifar10_jpeg(path, limit=0)


def test_load_cifar10_jpeg_real_matches_lossless_subset():
  jpeg = _shared("cifar10_jpeg_bytes.npz")
  lossless = _shared("cifar10_lossless_subset.npz")
  c = datasets.load_cifar10_jpeg(jpeg, limit=300)
  with np.load(lossless) as z:
    ref_x, ref_y = z["x_train"][:300], z["y_train"][:300]
  assert c.x_train.shape == (300, 32, 32, 3)
  np.testing.assert_array_equal(c.y_train, ref_y)
  assert _psnr(c.x_train, ref_x) > 25


# ----------------------------------------------------- normalize and helpers


def test_normalize():
  x = np.array([[0, 51, 255]], np.uint8)
  np.testing.assert_allclose(datasets.normalize(x), [[0.0, 0.2, 1.0]],
                             rtol=1e-6)
  np.testing.assert_allclose(datasets.normalize(x, mean=0.5, std=0.5),
                             [[-1.0, -0.6, 1.0]], rtol=1e-6)
  # Per channel over the last axis; float input is not rescaled.
  img = np.ones((2, 2, 2, 3), np.float32)
  out = datasets.normalize(img, mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 2.0))
  np.testing.assert_allclose(out[0, 0, 0], [1.0, 1.0, 0.0])
  assert out.dtype == np.float32
  cifar = datasets.normalize_for(np.zeros((1, 32, 32, 3), np.uint8),
                                 dataset="cifar10")
  np.testing.assert_allclose(cifar[0, 0, 0],
                             [-0.4914 / 0.2470, -0.4822 / 0.2435,
                              -0.4465 / 0.2616], rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(std=0.0), "std"),
    (dict(std=(1.0, -1.0, 1.0)), "std"),
    (dict(mean=float("nan")), "mean"),
    (dict(mean=(0.1, 0.2)), "mean has 2 channels"),
    (dict(scale=0.0), "scale"),
])
def test_normalize_invalid(kwargs, match):
  with pytest.raises(ValueError, match=match):
    datasets.normalize(np.zeros((2, 3), np.uint8), **kwargs)


def test_normalize_for_unknown_and_channel_axis():
  with pytest.raises(ValueError, match="dataset"):
    datasets.normalize_for(np.zeros(2), dataset="imagenet")
  assert datasets.add_channel_axis(np.zeros((2, 5, 5))).shape == (2, 5, 5, 1)
  assert datasets.add_channel_axis(np.zeros((2, 5, 5, 3))).shape == (2, 5, 5,
                                                                     3)
  with pytest.raises(ValueError, match="x must have shape"):
    datasets.add_channel_axis(np.zeros((2, 5)))


# ------------------------------------------------------------------ federate


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards",
                                    "power_law"])
def test_federate_keeps_examples_with_their_labels(scheme):
  n = 200
  y = np.arange(n) % 4
  x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
  fed = datasets.federate(x, y, x[:10], y[:10], partition=scheme,
                          num_clients=8, seed=1, name="toy")
  assert isinstance(fed, data.FederatedData)
  assert fed.train.num_clients == 8 and fed.num_classes == 4
  assert fed.name == "toy" and (fed.train.counts >= 1).all()
  assert fed.train.y.dtype == np.int32 and fed.y_test.dtype == np.int32
  ids = fed.train.x[:, 0].astype(int)
  np.testing.assert_array_equal(np.sort(ids), np.arange(n))
  np.testing.assert_array_equal(fed.train.y, y[ids])
  np.testing.assert_array_equal(fed.x_test, x[:10])
  again = datasets.federate(x, y, x[:10], y[:10], partition=scheme,
                            num_clients=8, seed=1)
  np.testing.assert_array_equal(again.train.x, fed.train.x)


def test_federate_real_mnist_dirichlet():
  c = datasets.load_npz(_shared("mnist.npz"))
  fed = c.federate(num_clients=100, alpha=0.5, seed=0)
  assert fed.train.x.dtype == np.uint8 and fed.name == "mnist"
  assert int(fed.train.counts.sum()) == 60000
  assert (fed.train.counts >= 1).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(partition="zipf"), "partition"),
    (dict(num_classes=2), "num_classes"),
    (dict(alpha=0.0), "alpha"),
    (dict(num_clients=0), "num_clients"),
])
def test_federate_invalid(kwargs, match):
  x = np.zeros((20, 2))
  y = np.arange(20) % 4
  options = dict(num_clients=4)
  options.update(kwargs)
  with pytest.raises(ValueError, match=match):
    datasets.federate(x, y, x, y, **options)
  with pytest.raises(ValueError, match="y_train"):
    datasets.federate(x, y[:-1], x, y, num_clients=2)
  with pytest.raises(ValueError, match="y_train"):
    datasets.federate(x, y * 0.5, x, y, num_clients=2)


# ------------------------------------------------------ registry and images


def test_registry_lists_every_data_set():
  assert datasets.DATASETS.names() == ("synthetic", "mnist", "fashion_mnist",
                                       "cifar10", "emnist", "npz")
  for m in datasets.DATASETS.members():
    assert m.doc and all(p.meaning for p in m.params), m.name
    assert m.info["federated"] == (m.name == "synthetic")
  syn = datasets.DATASETS["synthetic"]
  assert [p.name for p in syn.params][:2] == ["alpha", "beta"]
  assert syn.param("test_fraction").range_text == "in [0, 1)"
  assert not datasets.DATASETS["npz"].param("path").optional
  fed = datasets.DATASETS.build("synthetic", num_clients=3.0, dim=4, seed=1)
  assert fed.train.num_clients == 3
  with pytest.raises(ValueError, match="dataset 'synthetic': num_clients"):
    datasets.DATASETS.build("synthetic", num_clients=True)
  with pytest.raises(ValueError, match="missing parameter"):
    datasets.DATASETS.build("npz")
  with pytest.raises(ValueError, match="download must be true or false"):
    datasets.DATASETS.build("mnist", download="yes")


def test_registry_loads_files_by_name(tmp_path):
  path = _save(tmp_path / "toy.npz", **_good_arrays())
  c = datasets.DATASETS.build("npz", path=str(path))
  assert c.name == "toy" and c.num_classes == 3
  with pytest.raises(ValueError, match=r"holds examples of shape \(4, 2\), "
                     r"not mnist's \(28, 28\) or \(28, 28, 1\)"):
    datasets.DATASETS.build("mnist", path=str(path))
  arrays = _good_arrays()
  for key in ("x_train", "x_test"):
    arrays[key] = np.zeros((len(arrays[key]), 28, 28), np.uint8)
  c = datasets.DATASETS.build("mnist", path=str(_save(
      tmp_path / "m28.npz", **arrays)))
  assert c.name == "mnist" and c.x_train.shape == (12, 28, 28)
  jpeg, _ = _jpeg_file(tmp_path / "c_jpeg_bytes.npz", _smooth_images(2, 0),
                       [0, 1], _smooth_images(1, 1), [2])
  c = datasets.DATASETS.build("cifar10", path=str(jpeg))
  assert c.name == "cifar10_jpeg" and c.x_train.shape == (2, 32, 32, 3)
  with pytest.raises(ValueError, match="path must name an .npz"):
    datasets.load("npz")


@pytest.mark.parametrize("name", ["mnist", "emnist"])
def test_registry_info_matches_tfds(tfds, tmp_path, name):
  info = datasets.DATASETS[name].info
  with tfds.testing.mock_data(num_examples=4,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    c = datasets.DATASETS.build(name, data_dir=str(tmp_path))
  assert c.x_train.shape[1:] == info["image_shape"]
  assert c.num_classes == info["num_classes"] and c.name == info["tfds_name"]


def test_image_normalization_per_data_set():
  assert datasets.normalization("mnist") == datasets.NORMALIZATION["mnist"]
  assert datasets.normalization("npz") == ((0.0,), (1.0,))
  x = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3) * 7
  for name in ("cifar10", "emnist"):
    mean, std = datasets.normalization(name)
    z = np.asarray(datasets.image_transform(name)(x))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, datasets.normalize(x, mean=mean, std=std),
                               rtol=1e-6, atol=1e-6)
  grey = np.full((1, 4), 255, np.uint8)
  expected = (1.0 - 0.1307) / 0.3081
  np.testing.assert_allclose(np.asarray(
      datasets.image_transform("mnist")(grey)), expected, rtol=1e-6)


def test_with_image_inputs_standardizes_uint8_only():
  import jax  # pylint: disable=import-outside-toplevel
  from fedasync_jax import models  # pylint: disable=import-outside-toplevel
  m = datasets.with_image_inputs(models.logistic_regression(4, 2), "mnist")
  p = jax.tree.map(lambda a: a + 0.1, m.init(jax.random.key(0)))
  x8 = np.arange(8, dtype=np.uint8).reshape(2, 4) * 30
  xf = np.asarray(datasets.image_transform("mnist")(x8))
  np.testing.assert_array_equal(np.asarray(m.apply(p, x8)),
                                np.asarray(m.apply(p, xf)))
  y, mask = np.zeros(2, np.int32), np.ones(2, np.float32)
  assert float(m.loss(p, x8, y, mask)) == float(m.loss(p, xf, y, mask))
