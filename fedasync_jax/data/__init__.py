"""Data: the population's examples laid out once (``dataset``, whose names
this package re-exports), the embedded Synthetic(alpha, beta) data
(``synthetic``), real data sets (``datasets``) and partitions
(``partition``).

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
