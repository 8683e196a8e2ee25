"""Role plugins: data, model and compute providers."""
