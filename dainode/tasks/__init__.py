"""Transport-free core of a training task: manifest, per-task keys, sealed documents, rounds, split, verify, report."""
