"""PaDiM (per-position Gaussian, Mahalanobis): torch_model holds the functional core."""
