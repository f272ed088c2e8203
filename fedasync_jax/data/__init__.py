"""Data: the population's examples laid out once (``dataset``, whose names
this package re-exports), the embedded Synthetic(alpha, beta) data
(``synthetic``), named data sets and their family ``DATASETS``
(``datasets``, which re-exports the loaders of ``tfds_loader`` and ``npz``,
``central``'s ``CentralData`` and ``federate``, and ``images``), image
normalization and decoding (``images``) and partitions with their family
``PARTITIONS`` (``partition``).

Example:
  >>> import numpy as np
  >>> from fedasync_jax import data
  >>> data.from_client_arrays([np.zeros((2, 1))], [np.zeros(2)]).counts
  array([2])
"""

from fedasync_jax.data.dataset import (ClientDataset, FederatedData,
                                       from_client_arrays, from_partition)

__all__ = ["ClientDataset", "FederatedData", "from_client_arrays",
           "from_partition"]
