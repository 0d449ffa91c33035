"""The tiny zero-shot transfer configuration shared by the transfer tests (unit and integration)."""

from __future__ import annotations

import hashlib

from PIL import Image

from fsadbench.core.types import ImageRef
from fsadbench.run.config import PIPELINE_CHECK, DatasetSpec, MethodSpec, Protocol, RunConfig

SYN = {"size": 48, "n_train": 2, "n_test_good": 2, "n_test_bad": 2}


def transfer_config(tmp_path, **kw) -> RunConfig:
    """AnomalyCLIP (one epoch) on one synthetic category, zero shots, the tiny random model, results and
    caches under ``tmp_path``, the pipeline-check preset; ``kw`` replaces any field."""
    base = dict(methods=[MethodSpec("anomalyclip", {"epochs": 1})],
                datasets=[DatasetSpec("synthetic", categories=["stripes"], options=dict(SYN))],
                shots=[0], seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=32),
                results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), device="cpu", batch_size=8,
                preset=PIPELINE_CHECK)
    base.update(kw)
    return RunConfig(**base)


def image_ref(path, arr) -> ImageRef:
    """Save the uint8 array ``arr`` as the image ``path``: its ImageRef (content digest of the array), for the
    hand-made auxiliary sets of the transfer methods' tests."""
    Image.fromarray(arr).save(path)
    return ImageRef(path, hashlib.sha1(arr.tobytes()).hexdigest())
