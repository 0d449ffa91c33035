"""A tool that explains itself: ``list --method`` (option meanings and sources, paper, default backbone and
weights, fidelity notes), ``list --layouts``, the generated config reference (docs/config.md, tested to be
current), ``categories`` as a top-level config key from Python, and progress on where a person watches."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from fsadbench.cli import main
from fsadbench.core.errors import ConfigError
from fsadbench.core.optiondoc import field_comments

REPO = Path(__file__).resolve().parents[2]


# -- field comments -----------------------------------------------------------------------------------------
@dataclass
class _Base:
    a: int = 1  # the base's a
    b: int = 2  # the base's b


@dataclass
class _Opts(_Base):
    # schedule (Sec. 4)
    epochs: int = 10
    lr: float = 0.1  # step size, official train.py l. 12

    #: one line above
    #: and a second
    depth: int = 9
    plain: int = 0
    b: int = 3  # overridden here

    def method(self):
        inner: int = 5  # not a field
        return inner


def test_field_comments_trailing_above_heading_and_bases():
    assert field_comments(_Opts) == {
        "a": "the base's a", "b": "overridden here", "epochs": "schedule (Sec. 4)",
        "lr": "step size, official train.py l. 12", "depth": "one line above and a second"}


def test_field_comments_of_a_class_without_source():
    klass = type("Dyn", (), {"__annotations__": {"x": int}})
    assert field_comments(klass) == {}


# -- list ------------------------------------------------------------------------------------------------
def test_list_method_of_a_baseline_shows_paper_backbone_meanings_and_notes(capsys):
    assert main(["list", "--method", "patchcore"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "patchcore: PatchCore (Roth et al., CVPR 2022): Towards Total Recall in Industrial Anomaly Detection"
    assert ("    backbone: torchvision:wide_resnet50_2 (its own), weights IMAGENET1K_V1; pipeline check: "
            "torchvision:wide_resnet50_2-tiny, random weights (options backbone, backbone_weights)") in out
    opt = {line.split("=")[0].strip(): line for line in out if line.startswith("      ") and " = " in line}
    assert "-> torchvision:wide_resnet50_2 (pipeline check torchvision:wide_resnet50_2-tiny)" in opt["backbone"]
    assert "-> IMAGENET1K_V1 (pipeline check none)" in opt["backbone_weights"]
    assert opt["num_neighbors"].split() == ["num_neighbors", "=", "9", "anomalib", "torch_model.py", "l.", "113", "(scoring=anomalib", "only)"]
    assert "(Baseline.reference_layers)" in opt["layers"]  # reST literals unwrapped
    i = out.index("    fidelity notes (departures from the paper / reference code; in every record and table):")
    from fsadbench.methods.patchcore.model import PatchCoreMethod

    assert out[i + 1:] == [f"      - {n}" for n in PatchCoreMethod.fidelity_notes]


@pytest.mark.parametrize("name,paper", [("padim", "PaDiM (Defard et al."), ("spade", "SPADE (Cohen and Hoshen"),
                                        ("anomalydino", "AnomalyDINO (Damm et al., WACV 2025)"),
                                        ("fastrecon", "FastRecon (Fang et al., ICCV 2023)")])
def test_every_classic_baseline_names_its_paper(capsys, name, paper):
    assert main(["list", "--method", name]) == 0
    assert capsys.readouterr().out.startswith(f"{name}: {paper}")


def test_list_method_of_a_clip_method_names_the_sweep_backbone_and_option_meanings(capsys):
    assert main(["list", "--method", "apt"]) == 0
    out = capsys.readouterr().out
    assert ("backbone: the sweep's open_clip model (--model, default ViT-B-16-plus-240; --pretrained, default "
            "laion400m_e32); pipeline check: fsad-tiny-vit, random weights") in out
    lines = {line.split()[0]: line.split(None, 3) for line in out.splitlines() if line.startswith("      ") and " = " in line}
    assert lines["so"] == ["so", "=", "True", "self-optimising meta prompts, eq. 11"]
    assert lines["epochs"] == ["epochs", "=", "100", "SMGS schedule (Sec. 4)"]
    assert "version 1" in out and "fidelity notes" in out
    assert main(["list", "--method", "anomalyclip"]) == 0
    assert "backbone: open_clip:ViT-L-14-336@518 (its own), weights openai" in capsys.readouterr().out


def test_every_builtin_method_option_line_is_explained_or_listed(capsys):
    """Every option is printed with its default; one without a comment in the source prints no meaning."""
    from fsadbench.core.registry import METHODS

    for name in METHODS.names():
        assert main(["list", "--method", name]) == 0
        out = capsys.readouterr().out
        cls, _ = METHODS.get(name)
        import dataclasses

        for f in dataclasses.fields(cls.Options):
            assert f"      {f.name} " in out
        assert "backbone: " in out and "''" not in out.split("backbone: ")[1].splitlines()[0]


def test_list_layouts_and_plain_list(capsys):
    assert main(["list", "--layouts"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("apt_table3: Chen et al. 2025") and "Table 3" in line for line in out)
    assert any(line.startswith("anople_table1: ") for line in out)
    assert main(["paper-table", "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == out  # one listing
    assert main(["list"]) == 0
    assert "paper layouts: anople_table1, " in capsys.readouterr().out


# -- config reference ---------------------------------------------------------------------------------------
def test_config_reference_is_current():
    from fsadbench.run.config_doc import config_reference

    assert (REPO / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is stale: python run_bench.py list --config-reference > docs/config.md")


def test_config_reference_names_every_accepted_key(capsys):
    from dataclasses import fields

    from fsadbench.run.config import EXTRA_KEYS, Protocol, RunConfig, apply_mapping

    assert main(["list", "--config-reference"]) == 0
    text = capsys.readouterr().out
    for key in [f.name for f in fields(RunConfig)] + list(EXTRA_KEYS):
        assert f"| `{key}` |" in text
    for key in [f.name for f in fields(Protocol)]:
        assert f"| `protocol.{key}` |" in text
    with pytest.raises(ConfigError) as e:
        apply_mapping(RunConfig(), {"nope": 1}, "x")
    assert "'categories'" in str(e.value) and "'backbone'" in str(e.value)


# -- categories as a top-level key ---------------------------------------------------------------------------
def test_categories_top_level_key_from_python_and_yaml(tmp_path):
    from fsadbench.api import as_config
    from fsadbench.run.config import build_config

    base = {"methods": ["memory"], "shots": [1], "seeds": [0]}
    for data in ({**base, "datasets": ["synthetic", "mvtec"], "categories": ["disc"]},
                 {"categories": ["disc"], **base, "datasets": ["synthetic", "mvtec"]}):  # any key order
        cfg = as_config(data)
        assert [(d.name, d.categories) for d in cfg.datasets] == [("synthetic", ["disc"]), ("mvtec", ["disc"])]
    with pytest.raises(ConfigError, match="'categories' entry '../x' is not a plain folder name"):
        as_config({**base, "datasets": ["synthetic"], "categories": ["../x"]})
    path = tmp_path / "c.yaml"
    path.write_text("datasets: [synthetic]\ncategories: [stripes, disc]\n")
    assert build_config(config_file=str(path)).datasets[0].categories == ["stripes", "disc"]
    # --categories still wins over the file's (it is applied after every layer)
    assert build_config(config_file=str(path), categories=["grain"]).datasets[0].categories == ["grain"]


# -- progress where a person watches -------------------------------------------------------------------------
class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty,given,expected", [(True, None, True), (False, None, False), (True, False, False),
                                                (False, True, True)])
def test_run_shows_progress_by_default_on_a_terminal(monkeypatch, tty, given, expected):
    import sys

    import fsadbench.api as api
    import fsadbench.run.api as run_api

    seen = {}

    def fake_sweep(cfg, executor, force=False, log=None, progress=False, **kw):
        seen["progress"] = progress

    monkeypatch.setattr(run_api, "sweep", fake_sweep)
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    kw = {} if given is None else {"progress": given}
    api.run({"methods": ["memory"], "datasets": ["synthetic"], "shots": [1], "seeds": [0]}, **kw)
    assert seen["progress"] is expected


# -- drift ----------------------------------------------------------------------------------------------------
def test_csv_percentages_are_100_times_load_results_fractions(tmp_path, capsys):
    """The CSV (and the tables) print aggregated percentages, load_results per-cell fractions (documented)."""
    import csv

    import fsadbench
    from fsadbench.results.records import RecordStore
    from tests.unit.test_core_reports import _records

    store = RecordStore(tmp_path / "run")
    for r in _records():
        store.write(r)
    df = fsadbench.load_results(tmp_path / "run")
    assert df["pixel_auroc"].between(0, 1).all()
    assert main(["report", "--results-dir", str(tmp_path / "run"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    row = next(r for r in rows if r["method"] == "A" and r["variant"] == "w/ VG" and r["shots"] == "1")
    cells = df[(df.method == "A") & (df.variant == "w/ VG") & (df.shots == 1)]
    per_seed = cells.groupby("seed")["pixel_auroc"].mean()
    assert float(row["mean"]) == pytest.approx(100 * per_seed.mean(), abs=1e-4)
    assert fsadbench.load_results.__doc__.count("fractions in [0, 1]") == 1


def test_no_fidelity_note_cites_a_file_the_repository_lacks():
    import re

    from fsadbench.core.registry import METHODS

    for name in METHODS.names():
        cls, _ = METHODS.get(name)
        for note in cls.fidelity_notes:
            for ref in re.findall(r"[\w./-]+\.md\b", note):  # a document (reference code files are cited by name)
                assert (REPO / ref).exists(), f"{name}: {note!r} cites {ref}, which is not in the repository"


def test_markdown_output_never_shows_html_entities_for_arrows(tmp_path, capsys):
    from fsadbench.reports.tables import Table
    from fsadbench.reports.render import to_markdown

    t = Table("t", ["method"], [("d", 1)], ["v"], [(["a -> b"], [None])], notes=["x -> y; p > 0.05"])
    md = to_markdown(t)
    assert "&gt;" not in md and "a -> b" in md and "> x -> y; p > 0.05" in md
