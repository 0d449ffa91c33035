"""InCTRL (Zhu and Pang, CVPR 2024): in-context residual learning with few-shot normal prompts on CLIP.

``residual`` (the patch-level residual maps and the text prior), ``head`` (adapter, scoring heads, the
holistic score and the focal loss), ``train`` (the balanced training on an auxiliary dataset), ``model``
(the Method).
"""
