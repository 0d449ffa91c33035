"""The evaluation protocol: the Method interface, k-shot sampling, the evaluator and the metrics.

``method`` is what a method implements (``fit`` / ``predict``), ``sampler``
draws seeded shots with manifests, ``evaluator`` turns maps into metrics
(upsample, Gaussian, masks) and ``metrics`` holds the exact, streamed pixel
and image metrics. ``check_data`` inspects dataset folders against the
protocol. Imports ``core`` and ``backbone`` only.
"""
