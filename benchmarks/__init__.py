"""Speed benchmarks: each prints a ratio against a baseline run in the same process.

Run from the repository root, e.g. ``python -m benchmarks.metrics_speed``.
"""
