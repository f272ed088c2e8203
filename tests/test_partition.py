"""Tests for fedasync_jax.data.partition."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedasync_jax import data
from fedasync_jax import partition


def _balanced_labels(num_classes=10, per_class=600, seed=0):
  labels = np.repeat(np.arange(num_classes), per_class)
  return np.random.default_rng(seed).permutation(labels)


def _schemes(num_clients):
  return {
      "iid": lambda y, s: partition.iid(y, num_clients, seed=s),
      "dirichlet": lambda y, s: partition.dirichlet(y, num_clients, alpha=0.5,
                                                    seed=s),
      "shards": lambda y, s: partition.shards(y, num_clients, seed=s),
      "power_law": lambda y, s: partition.power_law(y, num_clients,
                                                    exponent=1.5, seed=s),
  }


def _assert_exact_cover(parts, n):
  for p in parts:
    assert p.dtype == np.int64
  allidx = np.concatenate(parts)
  assert len(allidx) == n
  np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 200), num_classes=st.integers(1, 6),
       frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1),
       alpha=st.floats(0.01, 100.0))
def test_every_example_exactly_once(n, num_classes, frac, seed, alpha):
  labels = np.random.default_rng(seed).integers(0, num_classes, size=n)
  num_clients = 1 + int(frac * (n // 2 - 1))
  results = {
      "iid": partition.iid(labels, num_clients, seed=seed),
      "dirichlet": partition.dirichlet(labels, num_clients, alpha=alpha,
                                       seed=seed),
      "shards": partition.shards(labels, num_clients, seed=seed),
      "power_law": partition.power_law(labels, num_clients, exponent=alpha,
                                       seed=seed),
  }
  for name, parts in results.items():
    assert len(parts) == num_clients, name
    _assert_exact_cover(parts, n)
    assert min(len(p) for p in parts) >= 1, name


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards",
                                    "power_law"])
def test_deterministic_per_seed_and_seeds_differ(scheme):
  labels = _balanced_labels()
  fn = _schemes(20)[scheme]
  a, b, c = fn(labels, 3), fn(labels, 3), fn(labels, 4)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  assert any(len(u) != len(v) or not np.array_equal(u, v)
             for u, v in zip(a, c))


def test_generator_seed_accepted():
  labels = _balanced_labels()
  a = partition.iid(labels, 5, seed=np.random.default_rng(1))
  b = partition.iid(labels, 5, seed=np.random.default_rng(1))
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)


def test_iid_sizes_balanced_and_labels_mixed():
  labels = _balanced_labels()
  parts = partition.iid(labels, 7, seed=0)
  sizes = [len(p) for p in parts]
  assert max(sizes) - min(sizes) <= 1
  s = partition.stats(labels, parts, num_classes=10)
  assert s.total_variation().mean() < 0.1


def test_dirichlet_alpha_controls_skew():
  labels = _balanced_labels()
  tv = {}
  for alpha in (1000.0, 0.5, 0.05):
    parts = partition.dirichlet(labels, 20, alpha=alpha, seed=0)
    tv[alpha] = partition.stats(labels, parts,
                                num_classes=10).total_variation().mean()
  iid_tv = partition.stats(labels, partition.iid(labels, 20, seed=0),
                           num_classes=10).total_variation().mean()
  assert tv[1000.0] < 2 * iid_tv + 0.02
  assert tv[1000.0] < 0.1
  assert tv[0.5] > 0.3
  assert tv[0.05] > 0.7
  assert tv[1000.0] < tv[0.5] < tv[0.05]


def test_dirichlet_min_size_by_resampling_and_repair():
  labels = _balanced_labels(per_class=50)
  # A tiny alpha and many clients: resampling alone rarely succeeds, the
  # repair step still guarantees min_size.
  parts = partition.dirichlet(labels, 100, alpha=0.01, seed=0, min_size=4)
  _assert_exact_cover(parts, len(labels))
  assert min(len(p) for p in parts) >= 4
  parts = partition.dirichlet(labels, 100, alpha=0.01, seed=0, min_size=5)
  assert all(len(p) == 5 for p in parts)
  # min_size=0 allows empty clients.
  parts = partition.dirichlet(labels, 100, alpha=0.01, seed=0, min_size=0,
                              max_tries=1)
  _assert_exact_cover(parts, len(labels))


def test_shards_two_labels_per_client_when_aligned():
  labels = _balanced_labels(per_class=600)
  parts = partition.shards(labels, 100, shards_per_client=2, seed=0)
  s = partition.stats(labels, parts, num_classes=10)
  assert s.classes_per_client().max() <= 2
  assert (s.examples_per_client == 60).all()
  parts = partition.shards(labels, 50, shards_per_client=4, seed=1)
  assert partition.stats(labels, parts).classes_per_client().max() <= 4


def test_power_law_sizes_heavy_tailed():
  labels = _balanced_labels()
  parts = partition.power_law(labels, 50, exponent=1.0, seed=0, min_size=10)
  sizes = np.array([len(p) for p in parts])
  assert sizes.min() >= 10
  assert sizes.max() / sizes.min() > 10
  flat = partition.power_law(labels, 50, exponent=50.0, seed=0)
  flat_sizes = np.array([len(p) for p in flat])
  assert flat_sizes.max() / flat_sizes.min() < 2
  # Labels stay iid: the biggest client mirrors the global mix.
  s = partition.stats(labels, parts, num_classes=10)
  assert s.total_variation()[sizes.argmax()] < 0.05


def test_make_dispatches_and_feeds_from_partition():
  labels = _balanced_labels(per_class=20)
  x = np.arange(len(labels), dtype=np.float32)[:, None]
  parts = partition.make("dirichlet", labels, 8, seed=0, alpha=0.3)
  ds = data.from_partition(x, labels, parts)
  assert ds.num_clients == 8 and int(ds.counts.sum()) == len(labels)
  for c in range(8):
    xc, yc = ds.client(c)
    np.testing.assert_array_equal(yc, labels[xc[:, 0].astype(int)])
  with pytest.raises(ValueError, match="scheme"):
    partition.make("zipf", labels, 8)


def test_stats_and_format():
  labels = np.array([0, 0, 1, 2, 2, 2])
  parts = [np.array([0, 1]), np.array([2, 3, 4, 5]), np.array([], np.int64)]
  s = partition.stats(labels, parts, num_classes=4)
  np.testing.assert_array_equal(s.examples_per_client, [2, 4, 0])
  np.testing.assert_array_equal(s.label_histogram,
                                [[2, 0, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(s.classes_per_client(), [1, 2, 0])
  tv = s.total_variation()
  np.testing.assert_allclose(tv, [1 - 2 / 6, 0.5 * (2 / 6 + 1 / 12 + 0.25),
                                  0.0])
  text = str(s)
  assert "clients: 3" in text and "empty 1" in text
  assert text == s.format()
  short = s.format(max_rows=1)
  assert "(2 more clients)" in short
  with pytest.raises(ValueError, match="num_classes"):
    partition.stats(labels, parts, num_classes=2)


def test_plot_writes_file(tmp_path):
  pytest.importorskip("matplotlib")
  labels = _balanced_labels(per_class=20)
  s = partition.stats(labels, partition.dirichlet(labels, 12, alpha=0.3,
                                                  seed=0))
  out = tmp_path / "p.png"
  partition.plot(s, out)
  assert out.stat().st_size > 1000


def test_plot_stacks_each_clients_label_fractions_over_its_own_width(
    tmp_path, monkeypatch):
  """The label mix is drawn as one stepped area per label: over
  ``[i - 0.5, i + 0.5]`` label ``c``'s area of client ``i`` ends at the
  client's fraction of labels ``0..c`` (a bar of width 1 each)."""
  pytest.importorskip("matplotlib")
  from matplotlib.figure import Figure
  figs = []
  monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k:
                      figs.append(self))
  labels = _balanced_labels(num_classes=4, per_class=20)
  s = partition.stats(labels, partition.dirichlet(labels, 12, alpha=0.3,
                                                  seed=0))
  partition.plot(s, tmp_path / "p.png", max_clients=7)
  areas = figs[0].axes[1].collections
  assert len(areas) == s.num_classes
  hist = s.label_histogram[:7].astype(float)
  tops = np.cumsum(hist / hist.sum(axis=1, keepdims=True), axis=1)
  for c, area in enumerate(areas):
    verts = area.get_paths()[0].vertices
    for i in range(7):
      for x in (i - 0.5, i + 0.5):
        assert np.any(np.all(np.isclose(verts, [x, tops[i, c]]), axis=1)), \
            (c, i, x)


def test_plot_without_matplotlib(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
  s = partition.stats(np.array([0, 1]), [np.array([0]), np.array([1])])
  with pytest.raises(ImportError, match="plots"):
    partition.plot(s, tmp_path / "p.png")


@pytest.mark.parametrize("call, match", [
    (lambda y: partition.iid(y, 0), "num_clients"),
    (lambda y: partition.iid(y, 101), r"num_clients must be <= the number "
     r"of examples 100 \(each client holds at least one\), got 101$"),
    (lambda y: partition.iid(y, 2.5), "num_clients"),
    (lambda y: partition.iid(y, True), "num_clients"),
    (lambda y: partition.iid(y.reshape(10, 10), 2), "labels"),
    (lambda y: partition.dirichlet(y, 5, alpha=0.0), "alpha"),
    (lambda y: partition.dirichlet(y, 5, alpha=float("inf")), "alpha"),
    (lambda y: partition.dirichlet(y, 5, alpha=1.0, min_size=-1),
     "min_size"),
    (lambda y: partition.dirichlet(y, 30, alpha=1.0, min_size=4),
     "min_size"),
    (lambda y: partition.dirichlet(y, 5, alpha=1.0, max_tries=0),
     "max_tries"),
    (lambda y: partition.shards(y, 51), "shards_per_client"),
    (lambda y: partition.shards(y, 5, shards_per_client=0),
     "shards_per_client"),
    (lambda y: partition.power_law(y, 5, exponent=-1.0), "exponent"),
    (lambda y: partition.power_law(y, 20, exponent=1.0, min_size=6),
     "min_size"),
])
def test_invalid_arguments(call, match):
  labels = np.arange(100) % 10
  with pytest.raises(ValueError, match=match):
    call(labels)


def test_stats_needs_clients():
  with pytest.raises(ValueError, match="parts"):
    partition.stats(np.array([0, 1]), [])


def test_integer_options_follow_the_shared_checks():
  # core.checks: an integer is an int or an integral float, never a bool.
  labels = np.arange(100) % 10
  for fn, kw in ((partition.iid, {}), (partition.shards, {}),
                 (partition.power_law, {}),
                 (partition.dirichlet, {"alpha": 0.5})):
    a = fn(labels, 5.0, seed=0, **kw)
    b = fn(labels, 5, seed=0, **kw)
    assert len(a) == 5
    for pa, pb in zip(a, b):
      np.testing.assert_array_equal(pa, pb)
  np.testing.assert_array_equal(
      np.concatenate(partition.shards(labels, 5, shards_per_client=2.0,
                                      seed=1)),
      np.concatenate(partition.shards(labels, 5, shards_per_client=2,
                                      seed=1)))
  with pytest.raises(ValueError, match="min_size must be an integer >= 0"):
    partition.dirichlet(labels, 5, alpha=1.0, min_size=True)
  with pytest.raises(ValueError, match="alpha must be a number > 0"):
    partition.dirichlet(labels, 5, alpha=True)


def test_registry_lists_every_scheme_with_its_options():
  assert partition.PARTITIONS.names() == ("iid", "dirichlet", "shards",
                                          "power_law")
  assert partition.SCHEMES == partition.PARTITIONS.names()
  params = {m.name: [p.name for p in m.params]
            for m in partition.PARTITIONS.members()}
  assert params == {"iid": [], "dirichlet": ["alpha", "min_size",
                                             "max_tries"],
                    "shards": ["shards_per_client"],
                    "power_law": ["exponent", "min_size"]}
  alpha = partition.PARTITIONS["dirichlet"].param("alpha")
  assert (alpha.low, alpha.low_open, alpha.range_text) == (0, True, "> 0")
  assert all(p.meaning for m in partition.PARTITIONS.members()
             for p in m.params)
  labels = np.arange(100) % 10
  built = partition.PARTITIONS.build("dirichlet", labels, 5, seed=3,
                                     alpha=0.5)
  direct = partition.dirichlet(labels, 5, alpha=0.5, seed=3)
  for a, b in zip(built, direct):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="partition 'dirichlet': alpha"):
    partition.PARTITIONS.build("dirichlet", labels, 5, seed=0, alpha=0.0)
  with pytest.raises(ValueError, match="unknown parameter"):
    partition.PARTITIONS.build("shards", labels, 5, seed=0, alpha=1.0)
