"""WinCLIP / WinCLIP+: compositional prompt ensemble and multi-scale window embeddings.

``model`` is the Method, ``windows`` the window index and batched window
embeddings with harmonic aggregation.
"""
