"""fsadbench: a benchmark harness for few-shot anomaly detection with CLIP.

The repository folders map onto one import package:
``bench/`` -> ``fsadbench``, ``methods/`` -> ``fsadbench.methods``,
``datasets/`` -> ``fsadbench.datasets``.
"""

__version__ = "0.1.0"
