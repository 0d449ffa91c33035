"""Test doubles for method wiring tests: hand-made features in place of the feature store."""

from __future__ import annotations


class StubFeatures:
    """``ctx.features`` serving fixed tensors: ``get(images, spec)`` gives each of ``feats``' first
    ``len(images)`` rows, whatever the spec (the test built them for the spec it exercises)."""

    def __init__(self, feats):
        self.feats = feats

    def get(self, images, spec):
        return {k: v[:len(images)] for k, v in self.feats.items()}


class RecordingCore:
    """A stand-in functional core (``method.core``): records the arguments of every ``fit`` / ``predict``
    call and answers ``predict`` with the given (maps, scores)."""

    def __init__(self, maps=None, scores=None):
        self.calls: list = []
        self.out = (maps, scores)

    def fit(self, *args):
        self.calls.append(("fit", args))

    def predict(self, *args):
        self.calls.append(("predict", args))
        return self.out
