"""fedasync_jax: a JAX-accelerated, vectorized simulator of asynchronous FL."""
