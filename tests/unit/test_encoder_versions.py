"""Encoder-path versions: changing an encoder path's code without bumping its version fails here.

Each path in ``SPEC_VERSIONS`` is the list of functions below (the adapter's parts
it runs and the method's equations on top). Their normalised source (``ast``
without docstrings or comments, so wording and layout do not count) is hashed;
``golden/encoder_paths.json`` holds ``(version, sha256)`` per path. A second
golden, ``golden/encoder_features.json``, holds a few numbers each path computes
on the tiny random model (tolerance 1e-4: platforms differ in the last bits).

After an intended change: bump the path's version in
``bench/backbone/features.py:SPEC_VERSIONS`` (cached features and results of the
old code are then never reused), then refresh both goldens with

    python tests/unit/test_encoder_versions.py --update

(which refuses to record a changed path whose version was not bumped).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fsadbench.backbone.features import SPEC_VERSIONS, FeatureSpec, spec_versions, token_spec
from fsadbench.core.errors import ConfigError

pytestmark = pytest.mark.openclip_floor

GOLDEN = Path(__file__).parent / "golden"
PATHS_FILE, FEATURES_FILE = GOLDEN / "encoder_paths.json", GOLDEN / "encoder_features.json"

_IMAGE = ["fsadbench.backbone.towers:ImageTower.embed", "fsadbench.backbone.towers:ImageTower.run_blocks",
          "fsadbench.backbone.towers:ImageTower.post_norm", "fsadbench.backbone.towers:ImageTower.project",
          "fsadbench.backbone.towers:Block.__call__"]
_TEXT = ["fsadbench.backbone.towers:TextTower.token_embeddings", "fsadbench.backbone.towers:TextTower.encode",
         "fsadbench.backbone.towers:Block.__call__"]
#: encoder path -> the functions whose code decides what it computes
PATHS: dict[str, list[str]] = {
    "tokens": _IMAGE + ["fsadbench.backbone.towers:ImageTower.encode_tokens",
                        "fsadbench.backbone.clip:Backbone.encode_image_tokens",
                        "fsadbench.backbone.features:token_spec"],
    "vv": _IMAGE + ["fsadbench.backbone.towers:Block.norm1", "fsadbench.backbone.towers:Block.attend",
                    "fsadbench.backbone.towers:Block.scale1", "fsadbench.backbone.towers:Block.mlp_residual",
                    "fsadbench.backbone.towers:attention_values", "fsadbench.backbone.towers:attention_output",
                    "fsadbench.methods.common.vv_attention:vv_attention",
                    "fsadbench.methods.common.vv_attention:resolve_blocks",
                    "fsadbench.methods.common.vv_attention:encode_image_vv",
                    "fsadbench.methods.common.vv_attention:vv_spec",
                    "fsadbench.methods.apt.lat:locality_mask"],
    "winclip-windows": _IMAGE + ["fsadbench.methods.winclip.windows:window_index",
                                 "fsadbench.methods.winclip.windows:window_embeddings",
                                 "fsadbench.methods.winclip.windows:encode_windows"],
    "prompt-text": _TEXT + ["fsadbench.methods.common.text_prompts:build_template",
                            "fsadbench.methods.common.text_prompts:PromptTextEncoder.word_embeddings",
                            "fsadbench.methods.common.text_prompts:PromptTextEncoder.embed",
                            "fsadbench.methods.common.text_prompts:PromptTextEncoder.encode"],
    "anople-prompted": list(dict.fromkeys(_IMAGE + _TEXT)) + [
        "fsadbench.methods.anople.prompts:encode_text_prompted", "fsadbench.methods.anople.prompts:encode_image_prompted"],
    "anomalyclip-dpam": _IMAGE + ["fsadbench.backbone.towers:Block.norm1", "fsadbench.backbone.towers:Block.attend",
                                  "fsadbench.backbone.towers:Block.scale1", "fsadbench.backbone.towers:Block.mlp_residual",
                                  "fsadbench.backbone.towers:attention_values",
                                  "fsadbench.backbone.towers:attention_output",
                                  "fsadbench.methods.common.vv_attention:vv_attention",
                                  "fsadbench.methods.anomalyclip.encoder:encode_dpam",
                                  "fsadbench.methods.anomalyclip.encoder:dpam_spec"],
    "anomalyclip-text": _TEXT + ["fsadbench.methods.common.text_prompts:build_template",
                                 "fsadbench.methods.common.text_prompts:PromptTextEncoder.embed",
                                 "fsadbench.methods.anomalyclip.prompts:templates",
                                 "fsadbench.methods.anomalyclip.prompts:deep_replacer",
                                 "fsadbench.methods.anomalyclip.prompts:encode_prompts"],
    "layers": ["fsadbench.backbone.features:layer_spec", "fsadbench.backbone.vision:VisionBackbone.preprocess",
               "fsadbench.backbone.torchvision_family:tiny_model",
               "fsadbench.backbone.torchvision_family:TorchvisionBackbone.encode",
               "fsadbench.backbone.timm_family:TimmBackbone.build",
               "fsadbench.backbone.timm_family:TimmBackbone.encode"],
}


def _resolve(ref: str):
    module, _, qual = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def normalised_source(obj) -> str:
    """The code of ``obj`` as ``ast.unparse`` writes it, docstrings dropped (comments never reach the AST)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def path_digest(name: str) -> str:
    h = hashlib.sha256()
    for ref in PATHS[name]:
        h.update(f"{ref}\n{normalised_source(_resolve(ref))}\n".encode())
    return h.hexdigest()


# -- code fingerprints -----------------------------------------------------------------------------
def test_every_path_has_sources_and_a_golden():
    golden = json.loads(PATHS_FILE.read_text())
    assert set(PATHS) == set(SPEC_VERSIONS) == set(golden), (
        f"SPEC_VERSIONS {sorted(SPEC_VERSIONS)}, PATHS here {sorted(PATHS)} and {PATHS_FILE.name} "
        f"{sorted(golden)} must name the same encoder paths")


@pytest.mark.parametrize("name", sorted(PATHS))
def test_path_code_unchanged_or_version_bumped(name):
    golden = json.loads(PATHS_FILE.read_text())[name]
    version, digest = SPEC_VERSIONS[name], path_digest(name)
    if digest != golden["sha256"] and version == golden["version"]:
        pytest.fail(f"the code of encoder path {name!r} changed ({', '.join(PATHS[name])}) but its version is "
                    f"still {version}: bump SPEC_VERSIONS[{name!r}] to {version + 1} in bench/backbone/features.py "
                    f"(so stale cached features and results are not reused), then run "
                    f"`python tests/unit/test_encoder_versions.py --update`")
    assert (version, digest) == (golden["version"], golden["sha256"]), (
        f"encoder path {name!r} is at version {version}; {PATHS_FILE.name} records version {golden['version']}: "
        f"run `python tests/unit/test_encoder_versions.py --update`")


def test_normalised_source_ignores_docstrings_and_comments():
    def a(x):
        """Doc."""
        return x + 1  # a comment

    def b(x):
        return x + 1

    def c(x):
        return x + 2

    strip = lambda f: normalised_source(f).split("\n", 1)[1]  # noqa: E731 - names differ, bodies compared
    assert strip(a) == strip(b) != strip(c)


# -- versions in keys and in the cell hash -----------------------------------------------------------
def test_version_is_in_the_cache_key_and_must_match_the_registry():
    spec = token_spec((3,))
    assert spec.version == SPEC_VERSIONS["tokens"] and spec.key.startswith(f"tokens@v{spec.version}:")
    with pytest.raises(ConfigError, match="bump both together"):
        FeatureSpec("tokens", (), spec.compute, version=spec.version + 1)
    with pytest.raises(ConfigError, match="no registered version"):
        FeatureSpec.make("unknown-path", spec.compute)


def test_spec_versions_for_the_cell_hash():
    assert spec_versions(["vv", "prompt-text", "vv"]) == {"prompt-text": SPEC_VERSIONS["prompt-text"],
                                                          "vv": SPEC_VERSIONS["vv"]}
    with pytest.raises(ConfigError, match="register_spec_version"):
        spec_versions(["tokens", "nope"])


def test_builtin_methods_declare_the_specs_they_build(context_for):
    from fsadbench.core.builtin import BUILTIN_METHODS
    from fsadbench.core.registry import METHODS

    for name in BUILTIN_METHODS:
        cls, options = METHODS.get(name)
        assert cls.feature_specs and set(cls.feature_specs) <= set(SPEC_VERSIONS), name
        spec = getattr(cls(context_for(cls, options), **options), "spec", None)
        if spec is not None:
            assert spec.name in cls.feature_specs and spec.version == SPEC_VERSIONS[spec.name], name


# -- golden numbers ------------------------------------------------------------------------------------
def path_outputs(bb) -> dict[str, dict[str, torch.Tensor]]:
    """What each path computes on the tiny random model for fixed inputs."""
    from fsadbench.methods.anomalyclip.encoder import dpam_spec
    from fsadbench.methods.anomalyclip.prompts import PromptLearner as AnomalyCLIPLearner
    from fsadbench.methods.anomalyclip.prompts import encode_prompts, templates
    from fsadbench.methods.anople.prompts import PromptLearner, encode_image_prompted, encode_text_prompted
    from fsadbench.methods.apt.lat import locality_mask
    from fsadbench.methods.common.text_prompts import PromptTextEncoder, Slot
    from fsadbench.methods.common.vv_attention import vv_spec
    from fsadbench.methods.winclip.windows import encode_windows

    gen = torch.Generator().manual_seed(11)
    px = torch.randn(1, 3, bb.image_size, bb.image_size, generator=gen)
    ctx = torch.randn(4, bb.width, generator=gen) * 0.02
    with torch.no_grad():
        out = {"tokens": token_spec((3, 8)).compute(bb, px),
               "vv": vv_spec(mem_layers=(3,), mask_name="locality_k2",
                             mask_fn=lambda g: locality_mask(g, 2)).compute(bb, px),
               "winclip-windows": encode_windows(bb, px, (2,))}
        enc = PromptTextEncoder(bb.model, bb.tokenizer)
        out["prompt-text"] = {"text": enc.encode([(enc.template([Slot("ctx", 4), "metal nut."]), {"ctx": ctx})])}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            pl = PromptLearner(bb.width, bb.width, 2, 2, depth=4, n_signals=2, init_std=0.5)
        tokens = bb.tokenizer(["X X X X bottle.", "X X X X damaged bottle."])
        img = encode_image_prompted(bb.model, px, pl.visual_prompts(), pl.signal[[1]], layers=(3,))
        out["anople-prompted"] = {"text": encode_text_prompted(bb.model, tokens, pl.text_prompts()),
                                  "embedding": img.embedding, "patches": img.patches, "layer3": img.layers[3]}
        out["anomalyclip-dpam"] = dpam_spec(3, (3, 12)).compute(bb, px)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            acl = AnomalyCLIPLearner(bb.width, 6, 4, 2, init_std=0.5)
        out["anomalyclip-text"] = {"text": encode_prompts(enc, acl, templates(enc, 6)),
                                   "text_fp16": encode_prompts(enc, acl, templates(enc, 6), fp16=True)}
    out["layers"] = vision_outputs()
    return out


def vision_outputs() -> dict[str, torch.Tensor]:
    """The ``layers`` path on the tiny torchvision and timm configurations, for fixed inputs."""
    from fsadbench.backbone.features import layer_spec
    from fsadbench.backbone.load import load_backbone
    from fsadbench.backbone.spec import parse_backbone

    out = {}
    for name, layers in (("wide_resnet50_2-tiny", ("layer2", "layer3")), ("dinov2-tiny", ("block4",))):
        bb = load_backbone(parse_backbone(name, "none"))
        gen = torch.Generator().manual_seed(11)
        px = torch.randn(1, 3, bb.image_size, bb.image_size, generator=gen)
        with torch.no_grad():
            out.update({f"{name}/{k}": v for k, v in layer_spec(layers).compute(bb, px).items()})
    return out


def summarise(t: torch.Tensor) -> dict:
    d = t.detach().double().flatten()
    return {"shape": list(t.shape), "sum": float(d.sum()), "abs_sum": float(d.abs().sum()),
            "head": [float(v) for v in d[:4]]}


def features_differ(got: dict, want: dict) -> list[str]:
    bad = []
    for key in sorted(set(got) | set(want)):
        g, w = got.get(key), want.get(key)
        if g is None or w is None or g["shape"] != w["shape"]:
            bad.append(f"{key}: {g and g['shape']} vs golden {w and w['shape']}")
        elif (g["sum"] != pytest.approx(w["sum"], rel=1e-4, abs=1e-3)
              or g["abs_sum"] != pytest.approx(w["abs_sum"], rel=1e-4)
              or g["head"] != pytest.approx(w["head"], rel=1e-4, abs=1e-5)):
            bad.append(f"{key}: {g} vs golden {w}")
    return bad


def test_golden_features(tiny_backbone):
    golden = json.loads(FEATURES_FILE.read_text())
    for name, outs in path_outputs(tiny_backbone).items():
        g = golden[name]
        bad = features_differ({k: summarise(v) for k, v in outs.items()}, g["outputs"])
        if bad and SPEC_VERSIONS[name] == g["version"]:
            pytest.fail(f"encoder path {name!r} computes other numbers than at version {g['version']}:\n  "
                        + "\n  ".join(bad) + f"\nIf intended, bump SPEC_VERSIONS[{name!r}] in "
                        f"bench/backbone/features.py and run `python tests/unit/test_encoder_versions.py --update`")
        assert SPEC_VERSIONS[name] == g["version"], (
            f"{FEATURES_FILE.name} holds version {g['version']} of {name!r}: run "
            f"`python tests/unit/test_encoder_versions.py --update`")


def update() -> None:
    """Rewrite both goldens; refuse paths whose code or numbers changed under the same version."""
    from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec

    old_paths = json.loads(PATHS_FILE.read_text()) if PATHS_FILE.is_file() else {}
    old_feats = json.loads(FEATURES_FILE.read_text()) if FEATURES_FILE.is_file() else {}
    outputs = path_outputs(Backbone(BackboneSpec(TINY_MODEL, "none"), device="cpu"))
    paths, feats, refused = {}, {}, []
    for name in sorted(SPEC_VERSIONS):
        v, digest = SPEC_VERSIONS[name], path_digest(name)
        summary = {k: summarise(t) for k, t in outputs[name].items()}
        op, of = old_paths.get(name), old_feats.get(name)
        if op and op["version"] == v and op["sha256"] != digest:
            refused.append(f"{name}: code changed, version still {v}")
        if of and of["version"] == v and features_differ(summary, of["outputs"]):
            refused.append(f"{name}: numbers changed, version still {v}")
        paths[name] = {"version": v, "sha256": digest}
        feats[name] = {"version": v, "outputs": summary}
    if refused:
        sys.exit("not updated; bump these in bench/backbone/features.py:SPEC_VERSIONS first:\n  " + "\n  ".join(refused))
    PATHS_FILE.write_text(json.dumps(paths, indent=1, sort_keys=True) + "\n")
    FEATURES_FILE.write_text(json.dumps(feats, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PATHS_FILE} and {FEATURES_FILE}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/unit/test_encoder_versions.py --update")
    update()
