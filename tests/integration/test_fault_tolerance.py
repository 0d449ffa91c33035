"""Fault tolerance: claims (exclusive, stale when the pid is gone or the heartbeat expired), SIGKILL
mid-sweep then resume, two concurrent runners on one folder, concurrent feature-cache writers, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fixtures_sweep import SYN, slow_sweep, sweep_env
from fsadbench.run.claims import ClaimInfo, ClaimStore, hostname
from fsadbench.results.records import RecordStore

REL = Path("memory/synthetic/disc/k1_s0.json")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- claims ---------------------------------------------------------------------------------------
def test_claim_is_exclusive_and_released_by_its_owner_only(tmp_path):
    a, b = ClaimStore(tmp_path, lease_s=30), ClaimStore(tmp_path, lease_s=30)
    ca = a.acquire(REL, ["memory/synthetic/disc/k1_s0.json"])
    assert ca is not None and b.acquire(REL) is None  # held by a live pid (this one)
    info = ClaimInfo.read(a.path_for(REL))
    assert (info.pid, info.token, info.cells) == (os.getpid(), ca.token, ["memory/synthetic/disc/k1_s0.json"])
    assert [c.token for c in b.live()] == [ca.token]
    b.release(ClaimInfo(**{**ca.__dict__, "token": "not-mine"}))  # a foreign token removes nothing
    assert a.path_for(REL).exists()
    a.release(ca)
    assert not a.path_for(REL).exists()
    assert b.acquire(REL) is not None
    b.release_all()


def test_stale_claims_dead_pid_or_expired_heartbeat_are_taken_over(tmp_path):
    store = ClaimStore(tmp_path, lease_s=30)
    path = store.path_for(REL)
    path.parent.mkdir(parents=True)
    now = time.time()
    dead = ClaimInfo(path, _dead_pid(), hostname(), "t-dead", now, now, 30.0)
    path.write_text(dead.to_json())
    assert "is gone" in ClaimInfo.read(path).stale_reason()
    assert store.live() == []
    mine = store.acquire(REL)
    assert mine is not None and ClaimInfo.read(path).token == mine.token
    store.release(mine)
    # another host, heartbeat older than its lease: stale whatever its pid
    old = ClaimInfo(path, 1, "other-host", "t-old", now - 100, now - 100, 30.0)
    path.write_text(old.to_json())
    assert "heartbeat" in ClaimInfo.read(path).stale_reason()
    # another host, fresh heartbeat: live, not ours to take
    path.write_text(ClaimInfo(path, 1, "other-host", "t-live", now, now, 30.0).to_json())
    assert ClaimInfo.read(path).stale_reason() is None and store.acquire(REL) is None


@pytest.mark.parametrize("stale_first", [False, True])
def test_racing_takers_exactly_one_wins(tmp_path, stale_first):
    """Eight threads at a barrier try to take a free (or a dead owner's) claim: one succeeds."""
    import threading

    stores = [ClaimStore(tmp_path, lease_s=30) for _ in range(8)]
    path = stores[0].path_for(REL)
    if stale_first:
        path.parent.mkdir(parents=True)
        now = time.time()
        path.write_text(ClaimInfo(path, _dead_pid(), hostname(), "dead", now, now, 30.0).to_json())
    barrier, won = threading.Barrier(8), []

    def take(st: ClaimStore) -> None:
        barrier.wait()
        c = st.acquire(REL)
        if c is not None:
            won.append(c.token)

    threads = [threading.Thread(target=take, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and ClaimInfo.read(path).token == won[0]
    for st in stores:
        st.release_all()
    assert not path.exists()


def test_heartbeat_renews_the_lease(tmp_path):
    store = ClaimStore(tmp_path, lease_s=2.0, heartbeat_s=0.2)
    c = store.acquire(REL)
    t0 = ClaimInfo.read(c.path).heartbeat
    time.sleep(1.0)
    info = ClaimInfo.read(c.path)
    assert info.heartbeat > t0 and info.stale_reason() is None
    store.release_all()
    assert not c.path.exists()


# -- whole runs in subprocesses --------------------------------------------------------------------
def _computed(stderr: str) -> int:
    line = [ln for ln in stderr.splitlines() if "cell(s) computed" in ln][-1]
    return int(line.split()[0])


def _record_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in (root / "records").rglob("*.json") if not p.name.startswith(".tmp-")}


def _young_claim(res: Path, max_age_s: float) -> bool:
    """A claim taken less than ``max_age_s`` ago for cells that have no record yet."""
    now = time.time()
    return any(now - c.started < max_age_s and not any((res / "records" / cell).exists() for cell in c.cells)
               for c in ClaimStore(res))


def _register_slow_memory(tmp_path) -> None:
    """The same plugin in this process (status plans the sweep, so it needs the method)."""
    from fsadbench.core.registry import METHODS

    sys.path.insert(0, str(tmp_path))
    try:
        METHODS.add("slow_memory", "slow_plugin:SlowMemory")
        METHODS.get("slow_memory")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slow_plugin", None)


def test_sigkill_mid_sweep_loses_only_cells_in_flight_and_rerun_completes(tmp_path, capsys):
    cmd = slow_sweep(tmp_path)
    res = tmp_path / "res"
    proc = subprocess.Popen(cmd, env=sweep_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    # kill when two cells are done and a third was claimed < 0.25 s ago: it is surely mid-cell (its predict
    # alone sleeps 0.5 s), so a claim is left behind; a kill between two claims would leave none
    while not (len(_record_files(res)) >= 2 and _young_claim(res, 0.25)) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    finished = _record_files(res)
    assert 2 <= len(finished) < 6, "the runner must be killed mid-sweep"
    for p in (res / "records").rglob("*.json"):  # whatever is on disk is a whole record
        if not p.name.startswith(".tmp-"):
            assert json.loads(p.read_text())["status"] == "ok"
    stale = list(ClaimStore(res))
    assert stale and all(c.stale_reason() for c in stale)  # the cell in flight left a dead claim
    out = subprocess.run(cmd, env=sweep_env(SLOW_S="0"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    after = _record_files(res)
    assert len(after) == 6 and _computed(out.stderr) == 6 - len(finished)
    assert {k: after[k] for k in finished} == finished  # no finished cell was recomputed
    assert not list(ClaimStore(res))  # the rerun released everything, stale claim included
    _register_slow_memory(tmp_path)
    from fsadbench.cli.status import main as cli_main

    assert cli_main(["--results-dir", str(res)]) == 0
    assert "6 cell(s): 6 done, 0 running, 0 failed, 0 pending" in capsys.readouterr().out


def test_two_concurrent_runners_one_record_per_cell_no_duplicated_work(tmp_path):
    cmd = slow_sweep(tmp_path)
    res = tmp_path / "res"
    procs = [subprocess.Popen(cmd, env=sweep_env(SLOW_S="0.3"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-1500:] for e in errs)
    files = sorted((res / "records").rglob("*.json"))
    assert len(files) == 6 and len({f.relative_to(res) for f in files}) == 6
    assert all(json.loads(f.read_text())["status"] == "ok" for f in files)
    done = [_computed(e) for e in errs]
    assert sum(done) == 6, done  # claims: every cell computed by exactly one runner
    assert not list(ClaimStore(res))
    assert len(RecordStore(res).records()) == 6
    # both runners encoded the same test images at once (one waits on a claim of a category and moves
    # on to another seed of it) into one feature cache: every entry is whole, no temp file is left
    feats = tmp_path / "cache" / "features"
    entries = list(feats.rglob("*.pt"))
    assert entries and not list(feats.rglob(".tmp-*"))
    for e in entries:
        assert torch.load(e, weights_only=True)["layer3"].ndim == 2


def test_concurrent_cache_writers_leave_whole_entries(tmp_path, tiny_backbone):
    """Two stores on one folder encode and write the same entries at once while a reader polls the
    files: a reader never sees a partial entry, and every entry equals the encoder's output.
    (Threads here, processes in the concurrent-runner test: the writes are the same temp + rename.)"""
    import threading

    from fixtures_layouts import random_image_refs

    from fsadbench.backbone.features import FeatureStore, token_spec

    refs = random_image_refs(tmp_path, 8, 32, 32, prefix="")
    cache = tmp_path / "cache"
    spec = token_spec((3,))
    from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec

    # one backbone per writer, as in two processes (a backbone's token hooks are not for two threads at once)
    other = Backbone(BackboneSpec(TINY_MODEL, "none"), device="cpu")
    stores = [FeatureStore(bb, cache_dir=cache, batch_size=1) for bb in (tiny_backbone, other)]
    stop, torn = threading.Event(), []

    def read_all() -> None:
        while not stop.is_set():
            for e in (cache / "features").rglob("*.pt") if (cache / "features").is_dir() else ():
                if e.name.startswith(".tmp-"):
                    continue  # a writer's temp file: never read by the store
                try:
                    torch.load(e, weights_only=True)
                except FileNotFoundError:
                    pass
                except Exception as exc:  # noqa: BLE001 - a partial entry is the failure we look for
                    torn.append(f"{e.name}: {exc}")

    reader = threading.Thread(target=read_all)
    reader.start()
    outs: list = [None, None]
    writers = [threading.Thread(target=lambda i=i: outs.__setitem__(i, stores[i].get(refs, spec)))
               for i in range(2)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert torn == []
    assert len([e for e in (cache / "features").rglob("*.pt") if not e.name.startswith(".tmp-")]) == 8
    assert not list(cache.rglob(".tmp-*"))
    check = FeatureStore(tiny_backbone, cache_dir=cache)
    got = check.get(refs, spec)
    assert check.stats.disk_hits == 8 and check.stats.encoded == 0
    direct = tiny_backbone.encode_image_tokens(tiny_backbone.load_pixels([r.path for r in refs]), (3,))
    assert torch.allclose(got["layer3"], direct["layer3"], atol=1e-5)
    assert all(torch.equal(o["layer3"], got["layer3"]) for o in outs)


def test_status_shows_running_failed_pending_and_ignores_stale(tmp_path):
    from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
    from fsadbench.results.records import RecordStore
    from fsadbench.run.cell import record_failure
    from fsadbench.run.executors import CellWorker, LocalExecutor, write_run_manifest
    from fsadbench.run.plan import plan_jobs
    from fsadbench.run.resources import Resources
    from fsadbench.run.status import config_for, render, sweep_status

    cfg = RunConfig(methods=[MethodSpec("memory")], datasets=[DatasetSpec("synthetic", categories=["disc"],
                                                                          options=dict(SYN))],
                    shots=[1, 2, 3], seeds=[0, 1], model="fsad-tiny-vit", pretrained="none",
                    protocol=Protocol(eval_size=48), results_dir=str(tmp_path / "res"),
                    cache_dir=str(tmp_path / "cache"), device="cpu")
    res = Resources(cfg)
    jobs = plan_jobs(cfg, res)
    # 2 done, 1 failed, 1 running here, 1 with a stale claim (pending), 1 untouched (pending)
    write_run_manifest(cfg, "local")
    CellWorker(res).run_jobs(jobs[:2])
    record_failure(jobs[2], "disc", res, RecordStore(cfg.results_dir), RuntimeError("boom in test"))
    claims = ClaimStore(cfg.results_dir, lease_s=30)
    live = claims.acquire(jobs[3].keys()[0].relpath(), [str(jobs[3].keys()[0].relpath())])
    stale_path = claims.path_for(jobs[4].keys()[0].relpath())
    stale_path.parent.mkdir(parents=True, exist_ok=True)
    stale_path.write_text(ClaimInfo(stale_path, _dead_pid(), hostname(), "x",
                                    time.time(), time.time(), 30.0, [str(jobs[4].keys()[0].relpath())]).to_json())
    loaded, source = config_for(Path(cfg.results_dir))
    assert source.endswith("run.json") and loaded.shots == [1, 2, 3]
    st = sweep_status(loaded)
    assert st.counts() == {"done": 2, "running": 1, "failed": 1, "pending": 2}
    assert st.errors[str(jobs[2].keys()[0])] == "RuntimeError: boom in test"
    text = render(st, Path(cfg.results_dir), source)
    assert "1 stale claim(s) ignored" in text and "is gone" in text and str(jobs[3].keys()[0]) in text
    claims.release(live)
    assert sweep_status(loaded).counts()["running"] == 0
    # the next run redoes the failed cell and the stale-claimed one, not the done ones
    s = LocalExecutor().run(cfg)
    assert (s.computed, s.skipped, s.failed) == (4, 2, 0)
    assert sweep_status(loaded).counts() == {"done": 6, "running": 0, "failed": 0, "pending": 0}


def test_status_without_a_plan_says_what_to_pass(tmp_path):
    from fsadbench.core.errors import ConfigError
    from fsadbench.run.status import config_for

    with pytest.raises(ConfigError, match="--preset or\\s+--config|--preset"):
        config_for(tmp_path)


def test_status_plans_without_building_models(tmp_path, monkeypatch):
    from fsadbench.backbone import clip, features
    from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
    from fsadbench.run.status import sweep_status

    def refuse(*args, **kwargs):
        raise AssertionError("status must not build a backbone or a feature store")

    monkeypatch.setattr(clip.Backbone, "__init__", refuse)
    monkeypatch.setattr(features.FeatureStore, "__init__", refuse)
    cfg = RunConfig(methods=[MethodSpec("memory"), MethodSpec("winclip")],
                    datasets=[DatasetSpec("synthetic", categories=["disc", "grain"], options=dict(SYN))],
                    shots=[1, 2], seeds=[0], model="fsad-tiny-vit", pretrained="none",
                    protocol=Protocol(eval_size=48), results_dir=str(tmp_path / "res"),
                    cache_dir=str(tmp_path / "cache"), device="cpu")
    assert sweep_status(cfg).counts() == {"done": 0, "running": 0, "failed": 0, "pending": 8}
