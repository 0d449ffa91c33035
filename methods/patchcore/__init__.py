"""PatchCore (memory of patch embeddings, kNN score): torch_model holds the functional core."""
