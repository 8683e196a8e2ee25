"""Models, local training, datasets, aggregation and contribution (JAX, imported lazily: see docs/ml.md)."""
