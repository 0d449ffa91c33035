"""Method building blocks shared by several methods.

V-V attention (CLIP Surgery style dual path), CoOp-style learnable text
prompts, the VG visual memory bank, and DRAEM-style Perlin pseudo anomalies.
"""
