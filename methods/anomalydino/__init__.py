"""AnomalyDINO (DINOv2 patch kNN, cosine): torch_model holds the functional core."""
