"""Where a backbone's weights come from, said precisely when they cannot be loaded.

:func:`weights_help` is the text of the WeightsError for a tag open_clip cannot fetch: the exact
checkpoint (Hugging Face repo and file, or URL, from open_clip's pretrained config), its approximate
size, the file to pass as ``--pretrained FILE``, and where open_clip's cache expects it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from fsadbench.core.errors import WeightsError


def weights_help(model: str, pretrained: str, reason: str, cache_dir: str | None = None,
                 option: str | None = None) -> str:
    """The WeightsError text: the exact checkpoint of the tag, its size, where to put it, the alternatives.
    ``option``: the flags that pass a file for this backbone, ``{file}`` where the path goes (default
    ``--model MODEL --pretrained {file}``, the sweep's)."""
    lines = [f"could not load weights {model!r} / {pretrained!r}: {reason}"]
    facts = checkpoint_facts(model, pretrained)
    target = "/path/to/open_clip_pytorch_model.bin"
    if facts:
        size = f", about {facts['size_mb']:,.0f} MB" if facts.get("size_mb") else ""
        lines.append(f"The checkpoint for this tag{size}:")
        if facts.get("hf_repo"):
            lines.append(f"  https://huggingface.co/{facts['hf_repo']}/resolve/main/{facts['hf_file']}")
            target = f"/path/to/{facts['hf_file']}"
        if facts.get("url"):
            lines.append(f"  {'or ' if facts.get('hf_repo') else ''}{facts['url']}")
            target = target if facts.get("hf_repo") else f"/path/to/{facts['url'].rsplit('/', 1)[-1]}"
    lines += ["Remedies:",
              f"  1. download it on a machine with internet and pass the file: "
              f"{(option or f'--model {model} --pretrained {{file}}').format(file=target)}"]
    if facts.get("hf_repo"):
        from huggingface_hub.constants import HF_HUB_CACHE

        repo_dir = Path(cache_dir or HF_HUB_CACHE) / ("models--" + facts["hf_repo"].replace("/", "--"))
        lines.append(f"  2. or put it where open_clip looks for --pretrained {pretrained}: "
                     f"{repo_dir}/snapshots/local/{facts['hf_file']} and write 'local' into {repo_dir}/refs/main")
    lines.append(f"  {3 if facts.get('hf_repo') else 2}. or run the offline pipeline check with random weights: "
                 f"python run_bench.py --preset smoke")
    return "\n".join(lines)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file's tensors (``torch.load(weights_only=True)`` or safetensors); a nested
    ``state_dict`` is unwrapped and a ``module.`` prefix dropped; anything else names the file and the fix."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text advises weights_only=False: never repeated here
        raise WeightsError(
            f"checkpoint {path} holds Python objects besides tensors, which fsad-bench never unpickles "
            f"(torch.load weights_only=True); save a plain state dict (torch.save(model.state_dict(), f)) "
            f"or a .safetensors file") from exc
    except (OSError, RuntimeError, ValueError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise WeightsError(f"checkpoint {path} cannot be read ({why}); it may be truncated: download it "
                           f"again") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError(f"checkpoint {path}: expected a state dict, found {type(sd).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def state_fingerprint(model: torch.nn.Module) -> str:
    """sha1 over every parameter and buffer (name, shape, bytes): the weights' identity."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def checkpoint_facts(model: str, pretrained: str, size: bool = True) -> dict[str, Any]:
    """What open_clip would download for (model, tag): Hugging Face repo + file, URL, approximate size in MB.

    The size is the fp32 parameter count of the model (built on the meta device, no memory); {} for an
    unknown tag.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    if not cfg:
        return {}
    out: dict[str, Any] = {}
    if cfg.get("hf_hub"):  # "org/repo/" (open_clip's default file name) or "org/repo/file", as open_clip splits it
        repo, file = os.path.split(cfg["hf_hub"])
        out.update(hf_repo=repo, hf_file=file or "open_clip_pytorch_model.bin")
    if cfg.get("url"):
        out["url"] = cfg["url"]
    if not size:
        return out
    try:
        with quiet_random_init():
            meta = open_clip.create_model(model, pretrained=None, device="meta")
        out["size_mb"] = sum(t.numel() * 4 for t in meta.state_dict().values()) / 1e6
    except Exception:  # noqa: BLE001 - an estimate only; an older open_clip may not build on "meta"
        pass
    return out


def cached_checkpoint(model: str, pretrained: str, cache_dir: str | None = None) -> str | None:
    """The local file open_clip would load for (model, tag) from ``cache_dir``, or None when not there."""
    facts = checkpoint_facts(model, pretrained, size=False)
    if facts.get("hf_repo"):
        from huggingface_hub import try_to_load_from_cache

        stem = facts["hf_file"].rsplit(".", 1)[0]
        for name in ("open_clip_model.safetensors", stem + ".safetensors", facts["hf_file"]):
            hit = try_to_load_from_cache(facts["hf_repo"], name, cache_dir=cache_dir)
            if isinstance(hit, str):
                return hit
    if facts.get("url"):
        p = Path(cache_dir or Path.home() / ".cache" / "clip") / facts["url"].rsplit("/", 1)[-1]
        if p.is_file():
            return str(p)
    return None


def reachable(host: str, timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_weights(model: str, pretrained: str, cache_dir: str | None = None, option: str | None = None) -> None:
    """Fail before any cell (WeightsError with :func:`weights_help`) when a tag's checkpoint is neither in the
    cache nor downloadable (offline); random weights, an existing file and unknown tags pass (the backbone
    reports those itself). ``option``: as for :func:`weights_help`."""
    from urllib.parse import urlparse

    from fsadbench.core.errors import WeightsError

    if pretrained.lower() in ("none", "random", "") or Path(pretrained).expanduser().is_file():
        return
    facts = checkpoint_facts(model, pretrained, size=False)
    if not facts or cached_checkpoint(model, pretrained, cache_dir):
        return
    import huggingface_hub.constants as hf_constants

    host = "huggingface.co" if facts.get("hf_repo") else urlparse(facts.get("url", "")).hostname or ""
    if hf_constants.HF_HUB_OFFLINE or not reachable(host):
        raise WeightsError(weights_help(model, pretrained, f"not in the local cache and {host} cannot be reached "
                                                           f"(offline)", cache_dir, option=option))


class quiet_random_init:
    """Silence open_clip's "No pretrained weights loaded ... initialized randomly" while a model is built
    that the harness fills right after (from a file) or says is random itself."""

    class _Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    def __enter__(self):
        self.f = self._Filter()
        logging.getLogger().addFilter(self.f)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self.f)
        return False
