"""Executors: local, gpus (CPU worker processes here) and slurm (submitit's local back end) run the
same cell function and write records with identical metrics; grouping; OOM retry; NaN cells."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run.executors import (CellWorker, ClaimOptions, GpuPoolExecutor, LocalExecutor, SlurmExecutor,
                                     make_executor)
from fsadbench.core.errors import ConfigError
from fsadbench.methods.memory import MemoryBank
from fsadbench.results.records import RecordStore
from fsadbench.core.registry import METHODS
from fsadbench.run.plan import Job, job_claim_relpath, job_groups, plan_jobs
from fsadbench.run.resources import Resources
from fsadbench.core.types import Prediction

SYN = {"size": 120, "n_train": 4, "n_test_good": 3, "n_test_bad": 4}
CATS = ["stripes", "disc"]


def _cfg(tmp_path, name: str, **kw) -> RunConfig:
    base = dict(methods=[MethodSpec("memory")],
                datasets=[DatasetSpec("synthetic", categories=list(CATS), options=dict(SYN))],
                shots=[1, 2], seeds=[0], model="fsad-tiny-vit", pretrained="none",
                protocol=Protocol(eval_size=64), results_dir=str(tmp_path / name / "res"),
                cache_dir=str(tmp_path / name / "cache"), device="cpu", batch_size=8)
    base.update(kw)
    return RunConfig(**base)


def _metrics(results_dir) -> dict[str, dict]:
    return {str(r.cell): r.metrics for r in RecordStore(results_dir)}


def _fast_claims() -> ClaimOptions:
    return ClaimOptions(lease_s=30.0, heartbeat_s=1.0, poll_s=0.2)


# -- grouping -------------------------------------------------------------------------------------
def test_jobs_grouped_by_dataset_category_in_plan_order():
    m, ds = MethodSpec("memory"), DatasetSpec("synthetic")
    jobs = [Job(m, ds, ["a"], 1, 0), Job(m, ds, ["b"], 1, 0), Job(m, ds, ["a"], 2, 0),
            Job(MethodSpec("anople"), ds, ["a", "b"], 1, 0, scope="dataset"), Job(m, ds, ["b"], 2, 1)]
    groups = job_groups(jobs)
    assert [[(j.categories[0], j.shots, j.seed) for j in g] for g in groups[:2]] == [
        [("a", 1, 0), ("a", 2, 0)], [("b", 1, 0), ("b", 2, 1)]]
    assert len(groups) == 3 and groups[2][0].scope == "dataset"
    assert str(job_claim_relpath(jobs[0])) == "memory/synthetic/a/k1_s0.json"
    assert str(job_claim_relpath(jobs[3])) == "anople/synthetic/_dataset/k1_s0.json"


def test_make_executor_names_and_errors():
    assert isinstance(make_executor("local"), LocalExecutor)
    assert make_executor("gpus", workers=3).workers == 3
    with pytest.raises(ConfigError, match="unknown"):
        make_executor("kubernetes")
    with pytest.raises(ConfigError, match="--workers"):
        GpuPoolExecutor(workers=0)
    with pytest.raises(ConfigError, match="slurm-cluster"):
        SlurmExecutor(cluster="pbs")
    p = SlurmExecutor(partition="gpu", time_min=30, gpus=2, array_parallelism=4).parameters()
    assert p["slurm_partition"] == "gpu" and p["slurm_array_parallelism"] == 4 and p["gpus_per_node"] == 2


def test_gpus_executor_devices_without_gpu():
    ex = GpuPoolExecutor(workers=3)
    assert ex.devices(RunConfig(device="cpu")) == ["cpu"] * 3
    if not torch.cuda.is_available():
        assert GpuPoolExecutor(workers=2).devices(RunConfig(device="auto")) == ["cpu", "cpu"]


# -- one cell function, same records ------------------------------------------------------------------
def test_local_gpus_and_slurm_write_identical_metrics(tmp_path):
    """Same cells, same metrics on CPU, whichever executor ran them (fresh cache for each).

    One category keeps it to one worker process per back end (process start-up dominates here);
    several groups on several workers run in `python run_bench.py --preset smoke --executor gpus`.
    """
    runs = {
        "local": LocalExecutor(_fast_claims()),
        "gpus": GpuPoolExecutor(workers=2, claims=_fast_claims()),
        "slurm": SlurmExecutor(cluster="local", gpus=0, time_min=5, claims=_fast_claims()),
    }
    summaries, metrics = {}, {}
    for name, ex in runs.items():
        cfg = _cfg(tmp_path, name, datasets=[DatasetSpec("synthetic", categories=["disc"], options=dict(SYN))])
        summaries[name] = ex.run(cfg)
        metrics[name] = _metrics(cfg.results_dir)
    n_images = SYN["n_train"] + SYN["n_test_good"] + SYN["n_test_bad"]
    for name, s in summaries.items():
        assert (s.computed, s.failed) == (2, 0), name
        # grouped by category: a category's images go through the encoder once per sweep
        assert s.encoded_images <= n_images, name
    assert len(metrics["local"]) == 2
    assert metrics["gpus"] == metrics["local"]
    assert metrics["slurm"] == metrics["local"]
    # the array tasks ran under submitit and left their logs beside the records
    assert list((tmp_path / "slurm" / "res" / "slurm").rglob("*_result.pkl"))
    assert json.loads((tmp_path / "gpus" / "res" / "run.json").read_text())["executor"] == "gpus"
    # claims are released when the work is done
    assert not list((tmp_path / "gpus" / "res" / "claims").rglob("*.claim"))
    # a rerun through any executor finds everything done
    cfg = _cfg(tmp_path, "local", datasets=[DatasetSpec("synthetic", categories=["disc"], options=dict(SYN))])
    s = GpuPoolExecutor(workers=2).run(cfg)
    assert (s.computed, s.skipped) == (0, 2)


# -- out of memory: retry with halved batches ------------------------------------------------------
class _OomOverTwo(MemoryBank):
    """Raises the CUDA OOM error whenever predict gets more than two images."""

    name = "test_oom_over_two"

    def predict(self, images):
        if len(images) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test)")
        return super().predict(images)


class _OomAlways(MemoryBank):
    name = "test_oom_always"

    def predict(self, images):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 byte (test)")


class _NanMaps(MemoryBank):
    name = "test_nan_maps"

    def predict(self, images):
        out = super().predict(images)["w/ VG"]
        maps = out.maps.copy()
        maps[:, 0, 0] = np.nan
        return {"w/ VG": Prediction(maps=maps, scores=out.scores)}


for _cls in (_OomOverTwo, _OomAlways, _NanMaps):
    if _cls.name not in METHODS:
        METHODS.add(_cls.name, _cls)


def test_oom_retries_cell_with_halved_batch_then_restores(tmp_path):
    cfg = _cfg(tmp_path, "oom", methods=[MethodSpec("test_oom_over_two")], shots=[1],
               datasets=[DatasetSpec("synthetic", categories=["stripes"], options=dict(SYN))])
    res = Resources(cfg)
    s = LocalExecutor().run(cfg, resources=res)
    assert (s.computed, s.failed) == (1, 0)
    rec = RecordStore(cfg.results_dir).records()[0]
    assert rec.status == "ok" and rec.config["batch_size"] == 2  # 8 -> 4 -> 2: the size that produced it
    assert cfg.batch_size == 8  # the policy is a value: the config is never changed
    assert rec.timings["total_s"] > 0


def test_oom_at_batch_one_is_recorded_as_failed(tmp_path):
    cfg = _cfg(tmp_path, "oom1", methods=[MethodSpec("test_oom_always")], shots=[1], batch_size=4,
               datasets=[DatasetSpec("synthetic", categories=["stripes"], options=dict(SYN))])
    s = LocalExecutor().run(cfg)
    assert (s.computed, s.failed) == (0, 1)
    rec = RecordStore(cfg.results_dir).records()[0]
    assert rec.status == "failed" and "OutOfMemoryError" in rec.error and rec.config["batch_size"] == 1


def test_nan_map_fails_that_cell_only_and_names_it(tmp_path):
    cfg = _cfg(tmp_path, "nan", methods=[MethodSpec("test_nan_maps"), MethodSpec("memory")], shots=[1],
               seeds=[3], datasets=[DatasetSpec("synthetic", categories=["disc"], options=dict(SYN))])
    s = LocalExecutor().run(cfg)
    assert (s.computed, s.failed) == (1, 1)
    recs = {r.key["method"]: r for r in RecordStore(cfg.results_dir)}
    err = recs["test_nan_maps"].error
    assert recs["test_nan_maps"].status == "failed" and recs["memory"].status == "ok"
    assert "test_nan_maps" in err and "disc" in err and "seed 3" in err and "NaN/inf" in err


def test_worker_rechecks_store_after_claim(tmp_path):
    """A job finished by someone else between planning and claiming is not recomputed."""
    cfg = _cfg(tmp_path, "recheck", shots=[1], datasets=[DatasetSpec("synthetic", categories=["disc"],
                                                                    options=dict(SYN))])
    res = Resources(cfg)
    jobs = plan_jobs(cfg, res)
    LocalExecutor().run(cfg)  # "another runner" finishes it
    before = RecordStore(cfg.results_dir).records()[0].provenance
    out = CellWorker(res, _fast_claims().store(cfg.results_dir, "test")).run_jobs(jobs)
    assert [o["status"] for o in out] == ["skipped"]
    assert RecordStore(cfg.results_dir).records()[0].provenance == before


def test_cli_flags_build_the_executors(tmp_path, monkeypatch):
    import shutil

    from fsadbench.cli.run import build_parser as _run_parser
    from fsadbench.run.executors import executor_from_args

    def ex(*argv):
        return executor_from_args(_run_parser().parse_args(list(argv)))

    s = ex("--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time", "30", "--slurm-gpus", "2",
           "--slurm-array-parallelism", "4", "--slurm-no-wait", "--lease", "60")
    assert isinstance(s, SlurmExecutor) and (s.partition, s.time_min, s.gpus, s.array_parallelism) == ("gpu", 30, 2, 4)
    assert s.wait is False and s.claims.lease_s == 60 and s.cluster == "slurm"
    assert ex("--executor", "gpus", "--workers", "2").workers == 2
    assert isinstance(ex(), LocalExecutor) and ex("--no-claims").claims.enabled is False
    with pytest.raises(ConfigError, match="--lease"):
        ex("--lease", "0")
    # no SLURM here (hidden where CI runs a test cluster): a clear message, nothing submitted
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None if cmd == "sbatch" else which(cmd, *a, **k))
    cfg = _cfg(tmp_path, "nosbatch", shots=[1],
               datasets=[DatasetSpec("synthetic", categories=["disc"], options=dict(SYN))])
    with pytest.raises(ConfigError, match="--slurm-cluster local"):
        s.run(cfg)
    assert not (tmp_path / "nosbatch" / "res" / "slurm").exists()
