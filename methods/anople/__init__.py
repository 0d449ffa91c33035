"""AnoPLe: bidirectional deep prompts on both CLIP towers, trained on Perlin pseudo anomalies.

``model`` is the Method, ``prompts`` the coupled deep prompts and prompted
tower passes, ``losses`` the paper losses and the fusion.
"""
