"""AnomalyCLIP: object-agnostic prompts trained on an auxiliary dataset, evaluated zero-shot.

``model`` is the Method, ``prompts`` the learnable prompts and their text pass,
``encoder`` the frozen DPAM image pass, ``losses`` the maps, losses and scores,
``train`` the Adam loop.
"""
