"""Output formats. One module per format; every renderer is deterministic (sorted, stable)."""
