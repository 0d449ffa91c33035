"""Training methods' epoch losses go to the progress line (its postfix), not the log."""

from __future__ import annotations

import dataclasses


def test_epoch_loss_shows_beside_the_stage_until_the_next_job(monkeypatch):
    from fsadbench.run.config import DatasetSpec, MethodSpec
    from fsadbench.run.executors import base
    from fsadbench.run.plan import Job

    shown, logged = [], []

    class Bar:
        def set_postfix_str(self, s, refresh=True):
            shown.append(s)

    clock = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr(base.time, "monotonic", lambda: next(clock))
    p = base.Progress(False, 1, logged.append)
    p.bar = Bar()
    p.begin(Job(MethodSpec("anople"), DatasetSpec("mvtec"), ["bottle"], 1, 0))
    p.step("epoch", 1, 2)
    p.show(loss=0.412345)
    assert shown[-1] == "anople mvtec/bottle k=1 s=0 | epoch 1/2 | loss 0.4123"
    p.step("epoch", 2, 2)  # the figures stay beside the next stage update
    assert shown[-1] == "anople mvtec/bottle k=1 s=0 | epoch 2/2 | loss 0.4123"
    p.begin(Job(MethodSpec("anople"), DatasetSpec("mvtec"), ["cable"], 1, 0))
    assert shown[-1] == "anople mvtec/cable k=1 s=0"  # a new job starts clean
    assert logged == []
    base.Progress(False, 1, logged.append).show(loss=1.0)  # no bar (--no-progress): nothing, no error


def test_method_context_show_reaches_the_bar_and_not_the_log(method_ctx):
    said, values = [], []
    ctx = dataclasses.replace(method_ctx, log=said.append, show_values=lambda **v: values.append(v))
    ctx.show(loss=2.5, pixel=1.0)
    assert values == [{"loss": 2.5, "pixel": 1.0}] and said == []
    dataclasses.replace(method_ctx, show_values=None).show(loss=1.0)  # nobody watching: nothing


def test_resources_wire_show_to_the_cell_progress(tmp_path):
    from fsadbench.run.config import build_config
    from fsadbench.run.executors.base import Progress
    from fsadbench.run.resources import Resources

    cfg = build_config("smoke", overrides={"cache_dir": str(tmp_path)})
    res = Resources(cfg)
    values = []
    res.cell_progress = Progress(False, 1, lambda m: None)
    res.cell_progress.show = lambda **v: values.append(v)
    res.context(0, 4, 4).show(loss=0.5)
    assert values == [{"loss": 0.5}]
    res.cell_progress = None
    res.context(0, 4, 4).show(loss=0.5)  # no bar: nothing
    assert values == [{"loss": 0.5}]
