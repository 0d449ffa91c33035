"""Results: the versioned record schema, the atomic record store, loading and aggregation.

One JSON record per cell (``records``); ``aggregate`` turns records into a
pandas frame and mean ± std over seeds of per-category means. Imports
``core`` only (no torch).
"""
