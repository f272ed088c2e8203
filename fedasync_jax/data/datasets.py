"""Named data sets: ``DATASETS``, the family that lists them, and ``load``.

The data sets and where they come from:

* ``synthetic``: FedProx's Synthetic(alpha, beta) (Li et al. 2020,
  arXiv:1812.06127), generated already federated (``synthetic.synthetic``);
* ``mnist``: MNIST (LeCun, Bottou, Bengio and Haffner 1998);
* ``fashion_mnist``: Fashion-MNIST (Xiao, Rasul and Vollgraf 2017,
  arXiv:1708.07747);
* ``cifar10``: CIFAR-10 (Krizhevsky 2009);
* ``emnist``: EMNIST balanced (Cohen, Afshar, Tapson and van Schaik 2017,
  arXiv:1702.05373);
* ``npz``: a user's ``.npz`` with ``x_train, y_train, x_test, y_test``.

The image data sets are read from tensorflow-datasets
(``tfds_loader.load_tfds``) or, given a ``path``, from an ``.npz``
(``npz.load_npz``; ``npz.load_cifar10_jpeg`` for the team's JPEG copy of
CIFAR-10). Their members return a ``CentralData`` to ``federate``
(``central``); ``synthetic`` returns a ``data.FederatedData``
(``Member.info["federated"]`` says which). The AFL paper (Forootani and
Iervolino 2025, arXiv:2508.01675) splits MNIST and CIFAR-10 with
``Dirichlet(0.5)``, the default of ``federate``.

This module also re-exports the loaders, ``CentralData``, ``federate`` and
the image helpers (``images``), so ``datasets.load_npz``,
``datasets.normalize`` etc. keep working.

Example:
  >>> DATASETS.names()
  ('synthetic', 'mnist', 'fashion_mnist', 'cifar10', 'emnist', 'npz')
  >>> fed = DATASETS.build("synthetic", num_clients=3, dim=4, seed=0)
  >>> fed.train.num_clients, DATASETS["mnist"].info["num_classes"]
  (3, 10)
  >>> import numpy as np
  >>> x = np.zeros((40, 2, 2), np.uint8); y = np.arange(40) % 4
  >>> federate(x, y, x[:8], y[:8], num_clients=4, seed=0).num_classes
  4
"""

from __future__ import annotations

import os
from pathlib import Path

from fedasync_jax.core.registry import REQUIRED, Param, Registry
from fedasync_jax.data import synthetic as synthetic_lib
from fedasync_jax.data.central import (CentralData, DatasetNotFoundError,
                                       federate)
from fedasync_jax.data.images import (NORMALIZATION, add_channel_axis,
                                      image_transform, normalization,
                                      normalize, normalize_for,
                                      with_image_inputs)
from fedasync_jax.data.npz import load_cifar10_jpeg, load_npz
from fedasync_jax.data.tfds_loader import default_tfds_data_dir, load_tfds

__all__ = [
    "DATASETS", "load", "CentralData", "DatasetNotFoundError", "federate",
    "load_tfds", "default_tfds_data_dir", "load_npz", "load_cifar10_jpeg",
    "NORMALIZATION", "normalization", "normalize", "normalize_for",
    "image_transform", "with_image_inputs", "add_channel_axis",
]

DATASETS = Registry("dataset")
"""The data set family: name -> loader, parameters and ``info``
(``federated``; for image sets ``tfds_name``, ``num_classes``,
``image_shape``)."""

# tensorflow-datasets names of the image data sets.
_TFDS_NAMES = {"emnist": "emnist/balanced"}
_JPEG_SUFFIX = "jpeg_bytes.npz"

_PATH = Param("path", None, kind=str, optional=True,
              meaning=".npz file with x_train, y_train, x_test, y_test "
              "instead of tensorflow-datasets (cifar10: also the "
              "*jpeg_bytes.npz copy)")
_DATA_DIR = Param("data_dir", None, kind=str, optional=True,
                  meaning="tensorflow-datasets folder (else $TFDS_DATA_DIR, "
                  "else ~/tensorflow_datasets)")
_DOWNLOAD = Param("download", False, kind=bool,
                  meaning="let tensorflow-datasets download a missing data "
                  "set (needs network)")


def load(name: str, *, path: str | os.PathLike | None = None,
         data_dir: str | os.PathLike | None = None,
         download: bool = False) -> CentralData:
  """Loads a named image data set, or an ``.npz``, as ``CentralData``.

  With ``path`` (always for ``name="npz"``) the arrays come from that file:
  ``load_cifar10_jpeg`` for ``cifar10`` and a file ending in
  ``jpeg_bytes.npz``, else ``load_npz`` (the result is named ``name``, or
  the file's stem for ``"npz"``). Without it they come from
  tensorflow-datasets (``emnist`` is ``emnist/balanced``).

  Args:
    name: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"emnist"``,
      ``"npz"`` or any other tensorflow-datasets name.
    path: an ``.npz`` file.
    data_dir: the tensorflow-datasets folder (see ``load_tfds``).
    download: whether tensorflow-datasets may download.

  Returns:
    A ``CentralData`` (images as stored, int32 labels).

  Example:
    >>> load("npz")
    Traceback (most recent call last):
    ...
    ValueError: path must name an .npz file when name is 'npz'
  """
  if name == "npz" and not path:
    raise ValueError("path must name an .npz file when name is 'npz'")
  if path:
    if name == "cifar10" and str(path).endswith(_JPEG_SUFFIX):
      return load_cifar10_jpeg(path)
    # A named data set's labels stay below its own number of classes.
    known = DATASETS[name].info.get("num_classes") if name in DATASETS \
        else None
    raw = load_npz(path, **({"max_classes": known} if known else {}))
    _check_image_shape(name, path, raw.x_train.shape[1:])
    return raw._replace(name=name if name != "npz" else Path(path).stem)
  return load_tfds(_TFDS_NAMES.get(name, name), data_dir=data_dir,
                   download=download)


def _check_image_shape(name: str, path, shape) -> None:
  """Refuses a file whose examples are not the named set's images (say,
  CIFAR-10 given as ``mnist``, which would be standardised with MNIST's
  statistics and trained without a word)."""
  want = DATASETS[name].info.get("image_shape") if name in DATASETS \
      else None
  if want is None:
    return
  allowed = {tuple(want)} | ({tuple(want[:-1])} if want[-1] == 1 else set())
  if tuple(shape) not in allowed:
    shown = " or ".join(str(a) for a in sorted(allowed, key=len))
    raise ValueError(
        f"path {path} holds examples of shape {tuple(shape)}, not "
        f"{name}'s {shown}; give the file of {name}, or name 'npz' for "
        f"other data")


def _image_member(name: str, doc: str, **info) -> None:
  """Registers the image data set ``name`` (loaded by ``load``)."""

  def factory(*, path=None, data_dir=None, download=False) -> CentralData:
    return load(name, path=path, data_dir=data_dir, download=download)

  factory.__name__ = factory.__qualname__ = f"load_{name}"
  factory.__doc__ = doc
  DATASETS.add(name, factory, params=(_PATH, _DATA_DIR, _DOWNLOAD), doc=doc,
               federated=False, tfds_name=_TFDS_NAMES.get(name, name),
               **info)


DATASETS.add("synthetic", synthetic_lib.synthetic,
             params=synthetic_lib.PARAMS, federated=True,
             doc="FedProx's Synthetic(alpha, beta), generated federated "
             "(Li et al. 2020, arXiv:1812.06127).")
_image_member("mnist", "MNIST (LeCun et al. 1998): 28x28 grey digits.",
              num_classes=10, image_shape=(28, 28, 1))
_image_member("fashion_mnist", "Fashion-MNIST (Xiao et al. 2017, "
              "arXiv:1708.07747): 28x28 grey clothing.", num_classes=10,
              image_shape=(28, 28, 1))
_image_member("cifar10", "CIFAR-10 (Krizhevsky 2009): 32x32 colour images.",
              num_classes=10, image_shape=(32, 32, 3))
_image_member("emnist", "EMNIST balanced (Cohen et al. 2017, "
              "arXiv:1702.05373): 28x28 grey characters.", num_classes=47,
              image_shape=(28, 28, 1))


@DATASETS.register("npz", params=(_PATH._replace(
    default=REQUIRED, optional=False,
    meaning=".npz file with x_train, y_train, x_test, y_test"),),
                   federated=False)
def _load_npz_member(*, path) -> CentralData:
  """A user's .npz with x_train, y_train, x_test, y_test."""
  return load("npz", path=path)
