"""The zero-shot transfer pairing (fsadbench.run.transfer): rules, config and CLI, what the method is handed."""

from __future__ import annotations

import pytest

from fixtures_transfer import SYN, transfer_config
from fsadbench.core.errors import ConfigError
from fsadbench.run.config import PIPELINE_CHECK, DatasetSpec, build_config
from fsadbench.run.config_cli import config_from_cli
from fsadbench.run.resources import DataSource
from fsadbench.run.transfer import (ALL_TARGETS, AUXILIARY_SCOPE, PIPELINE_AUXILIARY, auxiliary_for,
                                    auxiliary_identity, auxiliary_label, auxiliary_set)


def test_constants():
    assert (AUXILIARY_SCOPE, ALL_TARGETS, PIPELINE_AUXILIARY) == ("auxiliary", "*", "synthetic-aux")


# -- pairing ------------------------------------------------------------------------------------------
def test_pairing_rules(tmp_path):
    target = DatasetSpec("mvtec")
    visa = DatasetSpec("visa", root="/data/visa", options={"a": 1})
    cfg = transfer_config(tmp_path, datasets=[target, visa], train_on={"mvtec": "visa", "visa": "mvtec"}, preset=None)
    assert auxiliary_for(cfg, target) is visa  # the sweep's own entry (root, options) is reused
    assert auxiliary_for(cfg, visa) is target
    cfg.train_on = {"*": "mpdd"}
    assert auxiliary_for(cfg, target) == DatasetSpec("mpdd")
    cfg.train_on = {"*": "mvtec", "visa": "mpdd"}
    assert auxiliary_for(cfg, visa).name == "mpdd"  # a target's own pair wins over "*"
    with pytest.raises(ConfigError, match="the dataset it is evaluated on"):
        auxiliary_for(cfg, target)
    cfg.train_on_target = True
    assert auxiliary_for(cfg, target) is target
    assert auxiliary_label(target, target) == "trained on mvtec (its own test split)"
    assert auxiliary_label(visa, target) == "trained on visa"
    cfg.train_on = {}
    with pytest.raises(ConfigError, match="--train-on NAME"):
        auxiliary_for(cfg, target, "anomalyclip")


def test_pipeline_check_gets_the_second_synthetic_set(tmp_path):
    target = DatasetSpec("synthetic", categories=["stripes"], options={**SYN, "seed": 3})
    aux = auxiliary_for(transfer_config(tmp_path), target)
    assert aux == DatasetSpec(PIPELINE_AUXILIARY, categories=["stripes"], options=SYN)  # the registered seed 1
    data = DataSource(transfer_config(tmp_path))
    assert data.dataset(aux).params["seed"] == 1 and data.dataset(target).params["seed"] == 3


def test_config_and_cli_name_the_pairing(tmp_path):
    assert build_config(overrides={"train_on": "visa"}).train_on == {"*": "visa"}
    assert build_config(overrides={"train_on": {"mvtec": "visa"}}).train_on == {"mvtec": "visa"}
    assert build_config(overrides={"train_on_target": True}).train_on_target is True
    for bad in (3, "", {"mvtec": 2}):
        with pytest.raises(ConfigError, match="train_on"):
            build_config(overrides={"train_on": bad})
    cfg = config_from_cli({"methods": "anomalyclip", "shots": "0", "seeds": "0"})
    assert cfg.preset == PIPELINE_CHECK and cfg.train_on == {}
    assert config_from_cli({"methods": "anomalyclip", "train_on": "synthetic-aux"}).train_on == {"*": "synthetic-aux"}


def test_the_method_gets_refs_labels_and_masks(tmp_path):
    cfg = transfer_config(tmp_path)
    data = DataSource(cfg)
    aux = auxiliary_for(cfg, cfg.datasets[0])
    s = auxiliary_set(data, aux)
    split = data.split(aux, "stripes")
    assert s.dataset == PIPELINE_AUXILIARY and s.categories == ("stripes",)
    assert list(s.labels) == [x.label for x in split.test] and sum(s.labels) == 2
    assert [m is None for m in s.masks] == [x.mask_path is None for x in split.test]
    assert all(m.path == x.mask_path and len(m.digest) == 40 for m, x in zip(s.masks, split.test) if m)
    assert [r.digest for r in s.images] == [r.digest for r in data.test_refs(aux, "stripes")]


def test_auxiliary_identity_names_the_data(tmp_path):
    cfg = transfer_config(tmp_path)
    data = DataSource(cfg)
    aux = auxiliary_for(cfg, cfg.datasets[0])
    ident = auxiliary_identity(data, aux)
    assert (ident["name"], ident["options"], ident["categories"]) == (PIPELINE_AUXILIARY, SYN, ["stripes"])
    assert set(ident["data"]) == {"stripes"} and len(ident["data"]["stripes"]) >= 12
    two = auxiliary_identity(data, DatasetSpec(PIPELINE_AUXILIARY, categories=["stripes", "disc"], options=SYN))
    assert two["data"]["stripes"] == ident["data"]["stripes"] and two["data"]["disc"] != ident["data"]["stripes"]


def test_auxiliary_set_spans_every_category_and_messages(tmp_path):
    cfg = transfer_config(tmp_path)
    data = DataSource(cfg)
    aux = DatasetSpec(PIPELINE_AUXILIARY, categories=["stripes", "disc"], options=SYN)
    s = auxiliary_set(data, aux)
    assert s.categories == ("stripes", "disc") and len(s.images) == len(s.labels) == len(s.masks) == 8
    assert sum(s.labels) == 4 and sum(m is not None for m in s.masks) == 4
    assert [r.digest for r in s.images[4:]] == [r.digest for r in data.test_refs(aux, "disc")]
    cfg.preset = None
    with pytest.raises(ConfigError, match=r"^method '' trains on an auxiliary dataset: name it with --train-on "
                                          r"NAME \(e\.g\. --train-on visa\) or train_on: \{synthetic: NAME\} "
                                          r"in the config$"):
        auxiliary_for(cfg, cfg.datasets[0])


EQUIVALENT_MUTANTS = {
    "auxiliary_identity: content_fingerprint(test, []) -> (test, )": "the shots default to () : no shots either way",
    "auxiliary_identity (held_out): content_fingerprint(train, []) -> (train, )": "the same default, for the "
                                                                                  "leave-one-out training images",
}


def test_the_cell_key_carries_the_auxiliary_set(tmp_path):
    """A transfer cell's resume key holds the auxiliary set's identity (name, options, categories, content), so
    changing the set recomputes; an unreadable set still names itself in the key."""
    from fsadbench.run.identity import cell_identity
    from fsadbench.run.plan import Job

    cfg = transfer_config(tmp_path)
    data = DataSource(cfg)
    aux = auxiliary_for(cfg, cfg.datasets[0])
    job = Job(method=cfg.methods[0], dataset=cfg.datasets[0], categories=["stripes"], shots=0, seed=0,
              scope=AUXILIARY_SCOPE, auxiliary=aux)
    assert cell_identity(cfg, data, job)["auxiliary"] == auxiliary_identity(data, aux)
    other = DatasetSpec(PIPELINE_AUXILIARY, categories=["disc"], options=SYN)
    # the same target paired with another auxiliary set in the same data source: its own key, not the cached one
    key_other = cell_identity(cfg, data, Job(**{**job.__dict__, "auxiliary": other}))["auxiliary"]
    assert key_other == auxiliary_identity(data, other) and key_other != auxiliary_identity(data, aux)
    assert cell_identity(cfg, data, job)["auxiliary"] == auxiliary_identity(data, aux)  # the first pairing's again
    plain = cell_identity(cfg, data, Job(**{**job.__dict__, "auxiliary": None}))
    assert "auxiliary" not in plain  # a cell without an auxiliary set does not take a transfer cell's key
    gone = DatasetSpec("folder", root=str(tmp_path / "nowhere"))
    bad = cell_identity(cfg, data, Job(**{**job.__dict__, "auxiliary": gone}))["auxiliary"]
    assert bad == {"name": "folder", "data": "unreadable (DataError)"}


def test_equal_auxiliary_sets_share_one_cached_key_whatever_their_option_order(tmp_path):
    from pathlib import Path

    from fsadbench.run.identity import cell_identity
    from fsadbench.run.plan import Job

    cfg = transfer_config(tmp_path)
    data = DataSource(cfg)
    where = str(tmp_path / "nowhere")
    one = DatasetSpec("folder", root=where, options={"a": 1, "hint": Path("/x")})  # an option JSON cannot hold
    two = DatasetSpec("folder", root=where, options={"hint": Path("/x"), "a": 1})
    job = Job(method=cfg.methods[0], dataset=cfg.datasets[0], categories=["stripes"], shots=0, seed=0,
              scope=AUXILIARY_SCOPE, auxiliary=one)
    first = cell_identity(cfg, data, job)
    assert cell_identity(cfg, data, Job(**{**job.__dict__, "auxiliary": two})) is first
