"""Classification models as bundles of pure functions.

Every model is exposed the optax way: a factory returns a :class:`ModelFns`
NamedTuple of pure functions (``init``, ``apply``, ``loss``, ``evaluate``)
with the hyperparameters held in the closure. Parameters are plain pytrees,
randomness comes in as an explicit PRNG key, and every function can be
``jit``-ed, ``vmap``-ed or differentiated.

Modules: ``base`` (``ModelFns``, ``from_flax``, ``make_evaluator``, the
loss helpers), ``params`` (``count_params``/``split_params``/
``merge_params``, ``loss_and_grad``), ``networks`` (the papers' networks,
the ``MODELS`` family, ``get_model``), ``conv`` (a convolution with
loop-friendly gradients) and ``batch_norm`` (batch normalization with
masked statistics). This package re-exports their public names.

The models and the papers they come from (the AFL paper's MNIST CNN and
CIFAR ResNet-20, FedAvg's 2NN MLP, FedProx's logistic regression) are
listed, with their parameter counts, in ``networks``; ``MODELS`` is their
family.

Convolutions. :func:`mnist_cnn` and :func:`resnet20` take a keyword-only
``conv`` option choosing the function their ``nn.Conv`` layers call.
XLA:CPU runs JAX's own (transposed) backward convolutions 8-108x slower
inside loops than alone (jax-ml/jax#12868), and clients train inside
``lax.scan``; :func:`fedasync_jax.models.conv.conv_general_dilated` has the same
forward and a gradient made of canonical forward convolutions, fast in
loops. The choice changes neither parameters, initialisation nor outputs;
gradients agree up to float reassociation. Values of ``conv``:

* ``None`` or ``"auto"`` (default): decided when the model is traced, from
  ``jax.default_backend()``: the canonical gradient on CPU,
  ``jax.lax.conv_general_dilated`` elsewhere.
* ``"canonical"``: :func:`fedasync_jax.models.conv.conv_general_dilated` on every
  backend.
* ``"lax"``: ``jax.lax.conv_general_dilated``. Use it for forward-mode
  differentiation (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``), which the
  canonical path (a ``custom_vjp``) does not support.
* a callable with the signature of ``jax.lax.conv_general_dilated``, given
  to flax's ``nn.Conv(conv_general_dilated=...)`` as is; for example
  ``functools.partial(conv.conv_general_dilated, kernel_grad_piece=16)``
  to size the pieces the kernel gradient is cut into (``conv``'s
  docstring).

On CPU, JAX 0.10's XLA:CPU runs each convolution on one thread (YNNPACK)
unless told otherwise. ``executor.simulate`` and ``sweep.sweep`` tell it
for their own programs (``sim/xla_cpu.py``, ``compiler_options``), and
both models then train 1.2-1.7x faster on two cores; for your own jitted
code, call ``fedasync_jax.configure_cpu()`` before the first JAX
computation.

The training contract (used by the client trainer inside ``lax.scan``)::

  loss(params, x, y, mask) -> scalar                    # stateless
  loss(params, x, y, mask) -> (scalar, new_batch_stats)  # batch norm

where ``mask`` is a float32 ``(B,)`` array, 1 for real examples and 0 for
padding; the loss is the mean over real examples and 0 (with a finite, zero
gradient) when the mask is all zero. :func:`split_params`,
:func:`merge_params` and :func:`loss_and_grad` hide the difference between
the two kinds, so one trainer handles both.

Example:
  >>> import jax, jax.numpy as jnp
  >>> fns = get_model("mlp")
  >>> params = fns.init(jax.random.key(0))
  >>> count_params(params)
  199210
  >>> x, y = jnp.zeros((4, 784)), jnp.zeros((4,), jnp.int32)
  >>> loss, grads = jax.value_and_grad(fns.loss)(params, x, y, jnp.ones(4))
  >>> "cnn" in model_aliases() and "resnet20" in MODELS
  True
"""

from fedasync_jax.models import base, conv, networks, params
from fedasync_jax.models.base import ModelFns, from_flax, make_evaluator
from fedasync_jax.models.params import (count_params, loss_and_grad,
                                        merge_params, split_params)
from fedasync_jax.models.networks import (MODEL_NAMES, MODELS, get_model,
                                          logistic_regression, mlp,
                                          mnist_cnn, model_aliases, resnet20)

__all__ = [
    "ModelFns",
    "from_flax",
    "mnist_cnn",
    "resnet20",
    "mlp",
    "logistic_regression",
    "get_model",
    "model_aliases",
    "MODELS",
    "MODEL_NAMES",
    "count_params",
    "split_params",
    "merge_params",
    "loss_and_grad",
    "make_evaluator",
]
