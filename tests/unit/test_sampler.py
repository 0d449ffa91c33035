from pathlib import Path

import pytest

from fsadbench.core.errors import DataError
from fsadbench.protocol.sampler import file_digest, manifest, sample_shots
from fsadbench.core.types import Sample


def _pool(tmp_path: Path, n: int):
    out = []
    for i in range(n):
        p = tmp_path / f"{i:03d}.png"
        p.write_bytes(f"image {i}".encode())
        out.append(Sample(p, 0, "good", None, f"train/good/{i:03d}.png"))
    return out


def test_seeded_and_order_independent(tmp_path):
    pool = _pool(tmp_path, 20)
    a = sample_shots(pool, 4, seed=3)
    b = sample_shots(list(reversed(pool)), 4, seed=3)  # input order does not matter: sorted by rel path
    assert [s.rel_path for s in a] == [s.rel_path for s in b]
    assert len({s.rel_path for s in a}) == 4
    assert [s.rel_path for s in sample_shots(pool, 4, seed=4)] != [s.rel_path for s in a]


def test_manifest_has_paths_and_content_hashes(tmp_path):
    import hashlib

    shots = sample_shots(_pool(tmp_path, 5), 2, seed=0)
    man = manifest(shots)
    assert [m["rel_path"] for m in man] == [s.rel_path for s in shots]
    for m, s in zip(man, shots):
        assert m["sha1"] == hashlib.sha1(s.image_path.read_bytes()).hexdigest()


def test_zero_and_too_many(tmp_path):
    pool = _pool(tmp_path, 3)
    assert sample_shots(pool, 0, 0) == []
    with pytest.raises(DataError, match="only 3"):
        sample_shots(pool, 4, 0)


def test_digest_is_content_based(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert file_digest(a) == file_digest(b)
