"""Models, local training, datasets, aggregation and contribution (JAX)."""
