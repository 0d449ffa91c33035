"""Where a backbone's weights come from, said precisely when they cannot be loaded.

:func:`weights_help` is the text of the WeightsError for a tag open_clip cannot fetch: the exact
checkpoint (Hugging Face repo and file, or URL, from open_clip's pretrained config), its approximate
size, the file to pass as ``--pretrained FILE``, and where open_clip's cache expects it.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from fsadbench.backbone.checkpoints import reachable  # noqa: F401 - the families import it from here
from fsadbench.core.errors import WeightsError


def file_remedy(model: str, target: str, option: str | None = None) -> str:
    """The flags that set this backbone's weights to the file ``target``: ``option`` (``{file}`` where the
    path goes, e.g. ``--method-option anomalyclip.backbone_weights={file}``), else the sweep's
    ``--model M --pretrained {file}``."""
    return (option or f"--model {model} --pretrained {{file}}").format(file=target)


def weights_help(model: str, pretrained: str, reason: str, cache_dir: str | None = None,
                 option: str | None = None) -> str:
    """The WeightsError text: the exact checkpoint of the tag, its size, where to put it, the alternatives
    (``option``: the flags that set this backbone's weights, ``{file}`` where the path goes; see
    :func:`file_remedy`)."""
    from fsadbench.backbone.checkpoints import cache_hint, open_clip_source

    lines = [f"could not load weights {model!r} / {pretrained!r}: {reason}"]
    facts = checkpoint_facts(model, pretrained)
    try:
        source = open_clip_source(model, pretrained) if pretrained else None
    except WeightsError:
        source = None
    target = "/path/to/open_clip_pytorch_model.bin"
    if source is not None:
        size = f", about {facts['size_mb']:,.0f} MB" if facts.get("size_mb") else ""
        lines += [f"The checkpoint for this tag{size}:", f"  {source.url}"]
        target = f"/path/to/{source.file}"
    lines += ["Remedies:",
              f"  1. download it on a machine with internet and pass the file: {file_remedy(model, target, option)}"]
    if facts.get("quick_gelu"):
        lines.append(f"     (these weights were trained with QuickGELU: as a file they need a QuickGELU model, e.g. "
                     f"{model}-quickgelu where open_clip has it; remedy 2 keeps the tag, which sets it)")
    if source is not None:
        lines.append(f"  2. or put it where the tag is looked for (--pretrained {pretrained}): "
                     f"{cache_hint(source, cache_dir)}")
    lines.append(f"  {3 if source is not None else 2}. or run the offline pipeline check with random weights: "
                 f"python run_bench.py --preset smoke")
    return "\n".join(lines)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file's tensors (``torch.load(weights_only=True)`` or safetensors); a nested
    ``state_dict`` is unwrapped and a ``module.`` prefix dropped; anything else names the file and the fix."""
    if _is_torchscript(path):  # OpenAI's own release files: TorchScript archives, never deserialised here
        raise WeightsError(
            f"checkpoint {path} is a TorchScript archive (OpenAI's original release format), which fsad-bench "
            f"does not load (it reads plain tensors only: torch.load weights_only=True or safetensors); pass "
            f"the tag instead (--pretrained openai reads the Hugging Face copy, a plain state dict), or convert "
            f"the file once where you trust it: torch.save(torch.jit.load(FILE).state_dict(), OUT)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text advises weights_only=False: never repeated here
        with open(path, "rb") as f:
            head = f.read(2)
        if not head.startswith(b"\x80") and head != b"PK":  # neither a pickle nor torch's zip archive
            raise WeightsError(
                f"checkpoint {path} is not a checkpoint file (neither torch's .pt/.pth format nor a pickle; "
                f"it starts with {head!r}): pass the downloaded weights file, a .safetensors file, or a tag"
            ) from exc
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


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_clip_state(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path, model_name: str,
                    option: str | None = None) -> None:
    """A strict load of checkpoint ``sd`` into an open_clip model, prepared the way open_clip's own
    ``factory.load_checkpoint`` does: a scalar / 1-d ``logit_scale`` reshaped, and the image and text position
    embeddings resized to the model (``open_clip.model.resize_pos_embed``: bicubic over the patch grid, class
    token kept), so a checkpoint loads at any ``@size``."""
    from open_clip.model import resize_pos_embed, resize_text_pos_embed

    sd = dict(sd)
    scale = getattr(model, "logit_scale", None)
    if "logit_scale" in sd and scale is not None and scale.ndim != sd["logit_scale"].ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(scale.shape)
    try:
        resize_pos_embed(sd, model)
        resize_text_pos_embed(sd, model)
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise WeightsError(
            f"checkpoint {path} does not fit model {model_name!r}: {key_mismatch(model, sd) or str(exc)[:500]}\n"
            f"Pass the model the checkpoint was trained as ({file_remedy(model_name, str(path), option)} "
            f"with that model).") from exc


def key_mismatch(model: torch.nn.Module, sd: dict[str, torch.Tensor], shown: int = 4) -> str:
    """Why ``sd`` does not fit ``model``, names first: the missing keys, the unexpected keys and the tensors
    of another shape (the first ``shown`` of each, with counts); "" when the keys and shapes all agree."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} (model {tuple(own[k].shape)})" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]

    def few(names: list[str]) -> str:
        return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")

    parts = [f"{len(v)} {what}: {few(v)}" for what, v in (("missing key(s)", missing), ("unexpected key(s)",
             unexpected), ("tensor(s) of another shape", shapes)) if v]
    return "; ".join(parts)


def state_fingerprint(model: torch.nn.Module) -> str:
    """sha1 over every parameter and buffer (name, shape, bytes): the weights' identity."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def tag_quick_gelu(model: str, pretrained: str) -> bool:
    """Whether tag ``pretrained`` was trained with QuickGELU: its open_clip config says so (2.29+), or it is an
    ``openai`` tag (older open_clip releases built those through their OpenAI loader, always QuickGELU)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    return bool(cfg) and (bool(cfg.get("quick_gelu")) or pretrained == "openai")


def checkpoint_facts(model: str, pretrained: str, size: bool = True) -> dict[str, Any]:
    """The one file of open_clip tag (model, pretrained): ``file``, ``address`` (its URL), ``hf_repo`` + ``hf_file``
    (a Hugging Face copy) or ``url`` (a release file), ``quick_gelu``, and ``size_mb`` (approximate).

    The size is the fp32 parameter count of the model (built on the meta device, no memory); {} for an
    unknown tag (or a tag whose hub copy is another tag's and has no file of its own: the load says why).
    """
    import open_clip

    from fsadbench.backbone.checkpoints import open_clip_source

    try:
        source = open_clip_source(model, pretrained) if pretrained else None
    except WeightsError:
        source = None
    if source is None:
        return {}
    out: dict[str, Any] = {"file": source.file, "address": source.url, "quick_gelu": tag_quick_gelu(model, pretrained)}
    if source.hf_repo:
        out.update(hf_repo=source.hf_repo, hf_file=source.file)
    else:
        out["url"] = source.url
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
    """The local file of open_clip tag (model, pretrained), searched in the standard caches first and then
    ``cache_dir`` (:func:`fsadbench.backbone.checkpoints.find_checkpoint`), or None when nowhere."""
    from fsadbench.backbone.checkpoints import find_checkpoint, open_clip_source

    try:
        source = open_clip_source(model, pretrained) if pretrained else None
    except WeightsError:
        return None
    hit = find_checkpoint(source, cache_dir) if source is not None else None
    return str(hit.path) if hit is not None else None


def check_weights(model: str, pretrained: str, cache_dir: str | None = None, option: str | None = None) -> None:
    """Fail before any cell (WeightsError with :func:`weights_help`) when a tag's checkpoint is neither in a
    cache nor downloadable (offline), or the tag has no file of its own; random weights, an existing file and
    unknown tags pass (the backbone reports those itself)."""
    from fsadbench.backbone.checkpoints import find_checkpoint, host_of, offline, open_clip_source

    if pretrained.lower() in ("none", "random", "") or Path(pretrained).expanduser().is_file():
        return
    source = open_clip_source(model, pretrained)
    if source is None or find_checkpoint(source, cache_dir):
        return
    if offline(source):
        raise WeightsError(weights_help(model, pretrained, f"not in any local cache and {host_of(source)} cannot "
                                                           f"be reached (offline)", cache_dir, option))


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
