"""Which file a weights tag is, where it was found, and its content hash (the checkpoint's identity).

A tag resolves to ONE file (:func:`tag_source`): an open_clip tag to its Hugging Face copy (repo + file, what
open_clip itself prefers) or its release URL; a timm tag to ``timm/<model>.<tag>`` / ``model.safetensors``; a
torchvision weights name to its download URL. open_clip's config can point two tags at one hub copy (open_clip
3.x: ``ViT-B-16-plus-240`` ``laion400m_e32`` -> ``timm/vit_base_patch16_plus_clip_240.laion400m_e31``): the
copy belongs to the tag its repo is named after, and any other tag sharing it resolves to its own release URL
(``vit_b_16_plus_240-laion400m_e32-699c4b84.pt``), or is refused when it has none.

Caches are searched in this order (:func:`cache_places`): the standard Hugging Face cache (``HF_HUB_CACHE``,
else ``HF_HOME/hub``, else ``XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``, read at call
time), torch hub's ``checkpoints`` folder (``TORCH_HOME``), open_clip's URL folder (``~/.cache/clip``), then
the harness's own cache folder (the ``cache_dir`` argument, Hugging Face layout and flat files).
:func:`find_checkpoint` says which place held the file; :func:`file_sha256` hashes it (memoised per path, size
and modification time).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsadbench.core.errors import WeightsError

OPEN_CLIP_HF_FILE = "open_clip_pytorch_model.bin"
TIMM_HF_FILE = "model.safetensors"
HF, TORCH_HUB, OPEN_CLIP_URL_DIR, HARNESS = "huggingface cache", "torch hub cache", "open_clip cache", "harness cache"


@dataclass(frozen=True)
class Source:
    """The one file a tag names: a Hugging Face repo + file (``hf_repo``) or a URL, and the sha256 prefix the
    address itself carries (open_clip's release names; '' when none)."""

    file: str
    url: str
    hf_repo: str = ""
    expected_sha256: str = ""

    @property
    def alternatives(self) -> tuple[str, ...]:
        """File names accepted in a Hugging Face cache: the file, then open_clip's safetensors twins."""
        if not self.hf_repo:
            return (self.file,)
        stem = self.file.rsplit(".", 1)[0]
        return tuple(dict.fromkeys(("open_clip_model.safetensors", stem + ".safetensors", self.file)
                                   if self.file == OPEN_CLIP_HF_FILE else (self.file,)))


def _hf_source(repo: str, file: str) -> Source:
    return Source(file=file, url=f"https://huggingface.co/{repo}/resolve/main/{file}", hf_repo=repo)


def _url_source(url: str) -> Source:
    name = url.rsplit("/", 1)[-1]
    if "openaipublic" in url:  # open_clip's own checks (pretrained.download_pretrained_from_url)
        expected = url.split("/")[-2]
    elif "mlfoundations" in url:
        expected = name.rsplit(".", 1)[0].split("-")[-1]
    else:
        expected = ""
    return Source(file=name, url=url, expected_sha256=expected)


def open_clip_source(model: str, tag: str) -> Source | None:
    """The file of open_clip tag ``tag`` of ``model`` (None: open_clip has no such tag); WeightsError when the
    tag's hub copy is another tag's and the tag has no release URL of its own."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    if not cfg:
        return None
    hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
    if hub:
        repo, file = os.path.split(hub)
        owner = [t for t in open_clip.list_pretrained_tags_by_model(model)
                 if t != tag and (open_clip.get_pretrained_cfg(model, t) or {}).get("hf_hub") == hub
                 and repo.endswith("." + t)]
        if not owner:
            return _hf_source(repo, file or OPEN_CLIP_HF_FILE)
        if not url:
            raise WeightsError(f"open_clip tag {model!r} / {tag!r} points at {repo}, the checkpoint of tag "
                               f"{owner[0]!r}, and names no file of its own; pass the checkpoint file of {tag} "
                               f"or use --pretrained {owner[0]}")
    return _url_source(url) if url else None


def timm_source(base: str, tag: str) -> Source:
    return _hf_source(f"timm/{base}.{tag}", TIMM_HF_FILE)


def torchvision_source(model: str, weights: str) -> Source:
    """The download URL of torchvision weights ``weights`` of ``model``; WeightsError for unknown weights."""
    import torchvision

    try:
        return _url_source(torchvision.models.get_model_weights(model)[weights].url)
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"backbone torchvision:{model}: unknown torchvision weights {weights!r}; e.g. "
                           f"IMAGENET1K_V1, a checkpoint file, or none") from exc


def hf_hub_cache() -> Path:
    """The standard Hugging Face hub cache, from the environment as it is now."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def cache_places(cache_dir: str | None = None) -> list[tuple[str, Path]]:
    """(label, folder) in search order: Hugging Face, torch hub, open_clip's URL folder, the harness's."""
    import torch

    places = [(HF, hf_hub_cache()), (TORCH_HUB, Path(torch.hub.get_dir()) / "checkpoints"),
              (OPEN_CLIP_URL_DIR, Path("~/.cache/clip").expanduser())]
    if cache_dir:
        places.append((HARNESS, Path(cache_dir).expanduser()))
    return places


@dataclass(frozen=True)
class Found:
    path: Path
    cache: str  # which place held it (a label of :func:`cache_places`)


def find_checkpoint(source: Source, cache_dir: str | None = None) -> Found | None:
    """Where ``source``'s file already is: Hugging Face layout for a hub file, a flat file for a URL file
    (the harness cache holds both), first place in :func:`cache_places` order; None when nowhere."""
    from huggingface_hub import try_to_load_from_cache

    for label, folder in cache_places(cache_dir):
        if source.hf_repo and label in (HF, HARNESS):
            for name in source.alternatives:
                hit = try_to_load_from_cache(source.hf_repo, name, cache_dir=str(folder))
                if isinstance(hit, str) and Path(hit).is_file():
                    return Found(Path(hit), label)
        if not source.hf_repo and label != HF and (folder / source.file).is_file():
            return Found(folder / source.file, label)
    return None


def cache_hint(source: Source, cache_dir: str | None = None) -> str:
    """Where to put the file by hand so the tag finds it (the standard cache of its kind)."""
    if source.hf_repo:
        repo_dir = hf_hub_cache() / ("models--" + source.hf_repo.replace("/", "--"))
        return f"{repo_dir}/snapshots/local/{source.file} and write 'local' into {repo_dir}/refs/main"
    places = dict(cache_places(cache_dir))
    return str(places.get(HARNESS, places[TORCH_HUB]) / source.file)


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (streamed; memoised per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def identity(source: Source | None, found: Found | Path | None) -> dict[str, Any]:
    """The record's / plan's ``checkpoint``: the file (address, hub repo), where it is, its sha256 (of the
    local file) or ``hash on first load`` when not yet downloaded."""
    out: dict[str, Any] = {}
    if source is not None:
        out.update(file=source.file, address=source.url)
        if source.hf_repo:
            out["hf_repo"] = source.hf_repo
        if source.expected_sha256:
            out["address_sha256_prefix"] = source.expected_sha256
    path = found.path if isinstance(found, Found) else found
    if path is None:
        out.update(local_path=None, found_in=None, sha256=None, hash="hash on first load (not downloaded yet)")
        return out
    out.update(local_path=str(path), found_in=found.cache if isinstance(found, Found) else "file given",
               sha256=file_sha256(path), hash="sha256 of the local file")
    if source is None or (isinstance(found, Found) and found.path.name != source.file):
        out["file"] = path.name
    return out


def reachable(host: str, timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def host_of(source: Source) -> str:
    from urllib.parse import urlparse

    return urlparse(source.url).hostname or ""


def offline(source: Source) -> bool:
    """No download possible: ``HF_HUB_OFFLINE`` set (the harness's offline switch for every download, as CI and
    the tests set it) or the host unreachable."""
    import huggingface_hub.constants as hf_constants

    return bool(hf_constants.HF_HUB_OFFLINE) or not reachable(host_of(source))


def fetch_checkpoint(source: Source, cache_dir: str | None, remedy) -> Found:
    """The local file of ``source``: found in a cache, or downloaded (hub files into the harness cache's
    Hugging Face layout, or the standard one without ``cache_dir``; URL files into the harness cache, or
    torch hub's); ``remedy(reason)`` is the WeightsError text when neither works."""
    hit = find_checkpoint(source, cache_dir)
    if hit is not None:
        return hit
    if offline(source):
        raise WeightsError(remedy(f"not in any local cache and {host_of(source)} cannot be reached (offline)"))
    try:
        if source.hf_repo:
            from huggingface_hub import hf_hub_download

            return Found(Path(hf_hub_download(source.hf_repo, source.file, cache_dir=cache_dir)),
                         HARNESS if cache_dir else HF)
        import torch

        label, folder = (HARNESS, Path(cache_dir)) if cache_dir else (TORCH_HUB, Path(torch.hub.get_dir()) / "checkpoints")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / source.file
        torch.hub.download_url_to_file(source.url, str(target), progress=False)
    except Exception as exc:  # noqa: BLE001 - hubs raise many kinds; one line with the remedy
        raise WeightsError(remedy(f"download failed ({str(exc).strip()[:200]})")) from exc
    if source.expected_sha256 and not file_sha256(target).startswith(source.expected_sha256):
        target.unlink()
        raise WeightsError(remedy(f"the download's sha256 does not start with {source.expected_sha256} as its "
                                  f"address says; it was deleted"))
    return Found(target, label)


def place_of(path: str | Path, cache_dir: str | None = None) -> Found:
    """``path`` labelled with the cache place that holds it (``file given`` outside every place)."""
    p = Path(path).expanduser().absolute()
    for label, folder in cache_places(cache_dir):
        if p.is_relative_to(folder.absolute()):
            return Found(Path(path), label)
    return Found(Path(path), "file given")
