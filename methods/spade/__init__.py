"""SPADE (image kNN, then pixel kNN over the nearest normal images): torch_model holds the functional core."""
