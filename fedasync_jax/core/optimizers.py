"""Optimizers by name: the clients' local optimizer and the server's.

Each member of ``OPTIMIZERS`` is a factory of an optax
``GradientTransformation`` with its parameters declared (``lr``, and
``momentum`` for ``sgd``), so that a configuration names an optimizer and
sets its parameters with their ranges checked.

The server optimizers of FedBuff and FedAvg (FedOpt: Reddi et al. 2021,
"Adaptive Federated Optimization", arXiv:2003.00295) are any of them.
``fedadam``, ``fedyogi`` and ``fedadagrad`` are that paper's Algorithm 2:
no bias correction, ``tau`` (the degree of adaptivity) outside the square
root, the second moment started at ``tau^2``. ``adam``, ``yogi`` (Zaheer
et al. 2018, "Adaptive Methods for Nonconvex Optimization") and
``adagrad`` are optax's, with optax's constants (Adam: bias correction,
``b2 = 0.999``, ``eps = 1e-8``; Adagrad: accumulator started at 0.1), which
are not the paper's: on pseudo-gradients of size 1e-3, optax's Adam takes
sign-like steps of size ``lr`` and its Adagrad is plain SGD at ``3.2 lr``.

Example:
  >>> import jax.numpy as jnp
  >>> opt = OPTIMIZERS.build("sgd", lr=0.5, momentum=0.0)
  >>> updates, _ = opt.update(jnp.ones(2), opt.init(jnp.zeros(2)))
  >>> updates.tolist()
  [-0.5, -0.5]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedasync_jax.core.registry import Param, Registry

OPTIMIZERS = Registry("optimizer")
"""The optimizers by name; every factory returns an optax optimizer whose
rate multiplies its step last, so that the optimizer at rate ``v`` steps
bit for bit ``v`` times its step at rate 1 (a sweep over ``client.lr``
builds one client update at rate 1 and scales it per member)."""

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
  """Adam (Kingma and Ba 2015, arXiv:1412.6980) with optax's defaults (as
  a server optimizer not FedAdam: that is ``fedadam``).

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


B1 = Param("b1", 0.9, low=0, high=1, high_open=True,
           meaning="first-moment decay beta1")
B2 = Param("b2", 0.99, low=0, high=1, high_open=True,
           meaning="second-moment decay beta2 (fedadam, fedyogi)")
TAU = Param("tau", 1e-3, low=0, low_open=True,
            meaning="degree of adaptivity tau (tune it)")


class FedOptState(NamedTuple):
  """The moments of ``fedadam`` / ``fedyogi`` / ``fedadagrad``."""
  m: Any
  v: Any


def _second_moment(kind: str, v, g2, b2):
  """Algorithm 2's ``v_t`` from ``v_{t-1}`` and the squared update."""
  if kind == "adagrad":
    return v + g2
  if kind == "yogi":
    return v - (1.0 - b2) * g2 * jnp.sign(v - g2)
  return b2 * v + (1.0 - b2) * g2


def fedopt(kind: str, lr: float, *, b1: float, b2: float, tau: float
           ) -> optax.GradientTransformation:
  """Reddi et al.'s Algorithm 2 (arXiv:2003.00295) as an optax optimizer
  of the pseudo-gradient ``g = -Delta`` (the rules' convention):
  ``m = b1 m + (1 - b1) g``; ``v`` by ``kind`` (``"adagrad"``: ``v + g^2``;
  ``"yogi"``: ``v - (1 - b2) g^2 sign(v - g^2)``; ``"adam"``:
  ``b2 v + (1 - b2) g^2``); the step ``-lr m / (sqrt(v) + tau)``, with
  ``m`` started at 0 and ``v`` at ``tau^2`` (the paper's ``v_{-1} >=
  tau^2``).

  Example:
    >>> opt = fedopt("adam", 0.1, b1=0.0, b2=0.0, tau=1e-3)
    >>> upd, _ = opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)))
    >>> round(float(upd[0]), 4)  # -lr g / (|g| + tau)
    -0.1
  """
  def init(params):
    return FedOptState(
        jax.tree.map(jnp.zeros_like, params),
        jax.tree.map(lambda p: jnp.full_like(p, tau * tau), params))

  def update(grads, state, params=None):
    del params
    m = jax.tree.map(lambda m_, g: b1 * m_ + (1.0 - b1) * g, state.m, grads)
    v = jax.tree.map(lambda v_, g: _second_moment(kind, v_, g * g, b2),
                     state.v, grads)
    # (the rate last, as every member's: OPTIMIZERS)
    updates = jax.tree.map(lambda m_, v_: m_ / (jnp.sqrt(v_) + tau) * -lr,
                           m, v)
    return updates, FedOptState(m, v)

  return optax.GradientTransformation(init, update)


@OPTIMIZERS.register("fedadam", params=(LR, B1, B2, TAU))
def fedadam(lr: float = 0.01, b1: float = 0.9, b2: float = 0.99,
            tau: float = 1e-3) -> optax.GradientTransformation:
  """FedAdam: Algorithm 2 of arXiv:2003.00295, no bias correction.

  ``fedopt("adam", ...)``.

  Example:
    >>> isinstance(fedadam(0.01, tau=1e-2), optax.GradientTransformation)
    True
  """
  c = OPTIMIZERS.check("fedadam", lr=lr, b1=b1, b2=b2, tau=tau)
  return fedopt("adam", c["lr"], b1=c["b1"], b2=c["b2"], tau=c["tau"])


@OPTIMIZERS.register("fedyogi", params=(LR, B1, B2, TAU))
def fedyogi(lr: float = 0.01, b1: float = 0.9, b2: float = 0.99,
            tau: float = 1e-3) -> optax.GradientTransformation:
  """FedYogi: Algorithm 2 of arXiv:2003.00295, no bias correction.

  ``fedopt("yogi", ...)``.

  Example:
    >>> isinstance(fedyogi(0.01), optax.GradientTransformation)
    True
  """
  c = OPTIMIZERS.check("fedyogi", lr=lr, b1=b1, b2=b2, tau=tau)
  return fedopt("yogi", c["lr"], b1=c["b1"], b2=c["b2"], tau=c["tau"])


@OPTIMIZERS.register("fedadagrad", params=(LR, B1, TAU))
def fedadagrad(lr: float = 0.01, b1: float = 0.9, tau: float = 1e-3
               ) -> optax.GradientTransformation:
  """FedAdagrad: Algorithm 2 of arXiv:2003.00295, with momentum ``b1``.

  ``fedopt("adagrad", ...)``; its first moment decays with ``b1`` as the
  paper's does.

  Example:
    >>> isinstance(fedadagrad(0.01), optax.GradientTransformation)
    True
  """
  c = OPTIMIZERS.check("fedadagrad", lr=lr, b1=b1, tau=tau)
  return fedopt("adagrad", c["lr"], b1=c["b1"], b2=0.0, tau=c["tau"])
