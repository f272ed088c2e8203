"""Optimizers by name: the clients' local optimizer and the server's.

Each member of ``OPTIMIZERS`` is a factory of an optax
``GradientTransformation`` with its parameters declared (``lr``, and
``momentum`` for ``sgd``), so that a configuration names an optimizer and
sets its parameters with their ranges checked. The server optimizers of
FedBuff and FedAvg are FedOpt's (Reddi et al. 2020, "Adaptive Federated
Optimization", arXiv:2003.00295): ``sgd`` (with momentum), ``adam``,
``yogi`` (Zaheer et al. 2018, "Adaptive Methods for Nonconvex
Optimization") and ``adagrad``.

Example:
  >>> import jax.numpy as jnp
  >>> opt = OPTIMIZERS.build("sgd", lr=0.5, momentum=0.0)
  >>> updates, _ = opt.update(jnp.ones(2), opt.init(jnp.zeros(2)))
  >>> updates.tolist()
  [-0.5, -0.5]
"""

from __future__ import annotations

import optax

from fedasync_jax.core.registry import Param, Registry

OPTIMIZERS = Registry("optimizer")
"""The optimizers by name; every factory returns an optax optimizer."""

LR = Param("lr", 0.01, low=0, low_open=True, sweepable=True,
           meaning="learning rate")
MOMENTUM = Param("momentum", 0.0, low=0, high=1, high_open=True,
                 meaning="sgd momentum (0: none)")


@OPTIMIZERS.register("sgd", params=(LR, MOMENTUM))
def sgd(lr: float = 0.01, momentum: float = 0.0
        ) -> optax.GradientTransformation:
  """Plain SGD, with heavy-ball momentum when ``momentum > 0``.

  Example:
    >>> isinstance(sgd(0.1, momentum=0.9), optax.GradientTransformation)
    True
  """
  OPTIMIZERS.check("sgd", lr=lr, momentum=momentum)
  return optax.sgd(lr, momentum=momentum or None)


@OPTIMIZERS.register("adam", params=(LR,))
def adam(lr: float = 0.01) -> optax.GradientTransformation:
  """Adam (Kingma and Ba 2015, arXiv:1412.6980) with optax's defaults.

  Example:
    >>> isinstance(adam(1e-3), optax.GradientTransformation)
    True
  """
  OPTIMIZERS.check("adam", lr=lr)
  return optax.adam(lr)


@OPTIMIZERS.register("yogi", params=(LR,))
def yogi(lr: float = 0.01) -> optax.GradientTransformation:
  """Yogi (Zaheer et al. 2018) with optax's defaults.

  Example:
    >>> isinstance(yogi(1e-2), optax.GradientTransformation)
    True
  """
  OPTIMIZERS.check("yogi", lr=lr)
  return optax.yogi(lr)


@OPTIMIZERS.register("adagrad", params=(LR,))
def adagrad(lr: float = 0.01) -> optax.GradientTransformation:
  """Adagrad (Duchi, Hazan, Singer 2011) with optax's defaults.

  Example:
    >>> isinstance(adagrad(0.1), optax.GradientTransformation)
    True
  """
  OPTIMIZERS.check("adagrad", lr=lr)
  return optax.adagrad(lr)
