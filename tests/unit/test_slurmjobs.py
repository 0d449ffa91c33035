"""fsadbench.run.slurmjobs and the slurm executor's request flags, against fake SLURM commands on PATH
(sbatch, sinfo, sacct, squeue as small shell scripts): no cluster needed. The same paths against a real
cluster: tests/integration/test_slurm_cluster.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.run import slurmjobs as sj
from fsadbench.run.config import DatasetSpec, MethodSpec
from fsadbench.run.executors.slurm import SlurmExecutor, group_label
from fsadbench.run.plan import Job
from fsadbench.run.status import SweepStatus, render, status_json

SINFO = 'echo "debug*|2|24105|(null)"; echo "gpu|32|512000|gpu:a100:4"'

EQUIVALENT_MUTANTS = {
    "QueueWatcher.get_info / get_state / is_done: mode default 'standard' -> 'XXstandardXX' / 'STANDARD'":
        "only 'force' and 'cache' are special: any other mode string is the standard, throttled look",
    "QueueWatcher.get_info: elapsed >= poll_s -> elapsed > poll_s": "differs only when two monotonic readings "
        "are exactly poll_s apart (with poll_s = 0: equal readings, which consecutive calls do not give)",
    "_most: int(v.rstrip('+')) -> int(v.rstrip('XX+XX'))": "the value passed isdigit() after stripping '+': "
        "digits then '+', which both strips reduce to the same digits",
}


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    """``fake(name, script)`` puts an executable ``name`` running ``script`` (sh) first on PATH; every call's
    arguments are appended to ``calls/<name>``."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def make(name: str, script: str) -> Path:
        p = bin_dir / name
        p.write_text(f'#!/bin/sh\necho "$*" >> "{calls / name}"\n{script}\n')
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
        return calls / name

    return make


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- the request check ---------------------------------------------------------------------------
def test_sbatch_flags_follow_every_option():
    ex = SlurmExecutor(partition="gpu", time_min=30, gpus=2, cpus=8, mem_gb=1.5)
    assert ex.sbatch_flags() == ["--time", "30", "--nodes", "1", "--ntasks-per-node", "1", "--gpus-per-node", "2",
                                 "--partition", "gpu", "--cpus-per-task", "8", "--mem", "1536M"]
    assert SlurmExecutor(gpus=0).sbatch_flags() == ["--time", "240", "--nodes", "1", "--ntasks-per-node", "1",
                                                    "--gpus-per-node", "0"]
    assert ex.asked() == "partition gpu, 8 CPU(s), 2 GPU(s), 1.5 GB, 30 min"
    assert SlurmExecutor().asked() == "partition (default), 1 CPU(s), 1 GPU(s), 240 min"
    # the same quantities submitit writes into the sbatch file (mem_gb=1.5 -> 1536MB there)
    p = ex.parameters()
    assert (p["cpus_per_task"], p["mem_gb"], p["gpus_per_node"], p["timeout_min"]) == (8, 1.5, 2, 30)


def test_check_request_passes_the_flags_and_refuses_in_one_line_with_slurms_reason(fake):
    sbatch = fake("sbatch", 'echo "allocation failure: Requested node configuration is not available" >&2; exit 1')
    sinfo = fake("sinfo", SINFO)
    ex = SlurmExecutor(partition=None, cpus=64, gpus=0)
    with pytest.raises(ConfigError) as e:
        sj.check_request(ex.sbatch_flags(), ex.asked(), ex.partition)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("--executor slurm: SLURM refuses the array tasks (partition (default), 64 CPU(s), 0 GPU(s), "
                          "240 min): Requested node configuration is not available; ")
    assert "partition debug: nodes up to 2 CPUs, 24105 MB, no GPUs" in msg  # the default partition's node
    assert "--slurm-cpus" in msg
    assert _calls(sbatch) == ["--test-only " + " ".join(ex.sbatch_flags()) + " --wrap true"]
    assert _calls(sinfo) == ["-h -o %P|%c|%m|%G"]


def test_refusal_names_each_reason_once_and_the_partitions_there(fake):
    sinfo = fake("sinfo", '[ "$4" = "-p" ] && exit 0; echo "debug*"; echo "gpu"')  # -p nope: nothing listed
    text = ("sbatch: error: invalid partition specified: nope\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
            "sbatch: error: invalid partition specified: nope\n")
    msg = str(sj.refusal(text, "partition nope", "nope"))
    assert ("SLURM refuses the array tasks (partition nope): invalid partition specified: nope; Invalid partition "
            "name specified; partitions here: debug (default), gpu; change --slurm-partition") in msg
    assert _calls(sinfo) == ["-h -o %P|%c|%m|%G -p nope", "-h -o %P"]
    # no error line: the last line; nothing at all: said so; "error:" twice in a line: all after the first
    assert "(x): last words; " in str(sj.refusal("something odd\nmore\nlast words", "x", None))
    assert "(x): no reason given; " in str(sj.refusal("  \n", "x", None))
    assert "(x): a error: b; " in str(sj.refusal("sbatch: error: a error: b", "x", None))
    fake("sinfo", "exit 1")
    assert str(sj.refusal("error: a", "x", "p")).endswith("(x): a; change --slurm-partition / --slurm-cpus / "
                                                         "--slurm-mem-gb / --slurm-gpus / --slurm-time")


def test_refusal_describes_the_partition_asked_for(fake):
    fake("sinfo", '[ "$5" = "gpu" ] && echo "gpu|32|512000|gpu:4" || echo "debug*|2|24105|(null)"')
    assert "; partition gpu: nodes up to 32 CPUs, 512000 MB, gpu:4; " in str(sj.refusal("error: a", "x", "gpu"))
    assert "; partition debug: nodes up to 2 CPUs, 24105 MB, no GPUs; " in str(sj.refusal("error: a", "x", None))


def test_largest_node_of_a_named_partition_lists_its_gres(fake):
    fake("sinfo", 'echo "gpu|16|600000+|gpu:a100:4,mps:100"; echo "gpu|32+|512000|gpu:a100:8"; echo "junk"')
    assert sj.largest_node("gpu") == ("partition gpu: nodes up to 32 CPUs, 600000 MB, gpu:a100:4, gpu:a100:8, "
                                      "mps:100")
    fake("sinfo", 'echo "cpu*|N/A|N/A|(null)"')
    assert sj.largest_node(None) == "partition cpu: nodes up to ? CPUs, ? MB, no GPUs"
    fake("sinfo", 'echo "a|4|8|(null)"; echo "b*|2|16|(null)"')
    assert sj.largest_node(None) == "partition b: nodes up to 2 CPUs, 16 MB, no GPUs"  # the default one
    fake("sinfo", "exit 0")
    assert sj.largest_node(None) == ""
    fake("sinfo", 'echo "bigmemX*|8|64|(null)"')
    assert sj.largest_node(None) == "partition bigmemX: nodes up to 8 CPUs, 64 MB, no GPUs"
    fake("sinfo", 'echo "x*|8X|64|(null)"; echo "x*|4|64|(null)"')  # a count that is not a number is left out
    assert sj.largest_node(None) == "partition x: nodes up to 4 CPUs, 64 MB, no GPUs"
    fake("sinfo", '[ "$4" = "-p" ] && exit 0; echo "debug*"; exit 1')  # the partition list fails: no names
    assert sj.largest_node("nope") == ""


def test_check_request_describes_the_partition_asked_for(fake):
    fake("sbatch", 'echo "allocation failure: Requested node configuration is not available" >&2; exit 1')
    fake("sinfo", '[ "$5" = "gpu" ] && echo "gpu|32|512000|gpu:4" || echo "debug*|2|24105|(null)"')
    with pytest.raises(ConfigError, match="; partition gpu: nodes up to 32 CPUs, 512000 MB, gpu:4; "):
        sj.check_request(["--partition", "gpu"], "x", "gpu")


def test_check_request_is_quiet_when_sbatch_accepts(fake):
    fake("sbatch", 'echo "sbatch: Job 8 to start at 2026-01-01T00:00:00 using 1 processors on nodes vm" >&2')
    sj.check_request(["--time", "5"], "x", None)


# -- accounting ----------------------------------------------------------------------------------
def test_accounting_off_says_sacct_own_reason(fake, monkeypatch):
    sacct = fake("sacct", 'echo "Slurm accounting storage is disabled" >&2; exit 1')
    assert sj.accounting_off() == "Slurm accounting storage is disabled"
    assert _calls(sacct) == ["--noheader -X -o JobID -j 1"]
    fake("sacct", "exit 3")
    assert sj.accounting_off() == "sacct exited with status 3"
    fake("sacct", "exit 0")
    assert sj.accounting_off() is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert sj.accounting_off() == "sacct is not on PATH"


# -- squeue ----------------------------------------------------------------------------------------
SQUEUE = 'echo "12_0|RUNNING|vm|None"; echo "12_1|PENDING||Resources"; echo "13|COMPLETED|vm|None"'


def test_queue_states_reads_every_task_of_the_arrays(fake):
    squeue = fake("squeue", SQUEUE)
    got = sj.queue_states(["12_0", "12_1", "13", "12_1"])
    assert got == {"12_0": {"State": "RUNNING", "NodeList": "vm", "Reason": "None"},
                   "12_1": {"State": "PENDING", "NodeList": "", "Reason": "Resources"},
                   "13": {"State": "COMPLETED", "NodeList": "vm", "Reason": "None"}}
    assert _calls(squeue) == ["-h -r -t all -o %i|%T|%N|%r -j 12,13"]
    assert sj.queue_states([]) == {}


def test_slurm_cmd_missing_or_silent_command(fake, monkeypatch):
    rc, out, err = sj.slurm_cmd(["/nonexistent/squeue"])
    assert (rc, out) == (127, "") and "/nonexistent/squeue" in err
    fake("squeue", "sleep 5")
    monkeypatch.setattr(sj, "TIMEOUT_S", 0.2)
    rc, out, err = sj.slurm_cmd(["squeue"])
    assert (rc, out) == (127, "") and "timed out" in err
    assert sj.TIMEOUT_S == 0.2 and sj.slurm_cmd(["true"]) == (0, "", "")


def test_queue_states_forgotten_ids_and_no_answer(fake):
    fake("squeue", 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1')
    assert sj.queue_states(["7_0"]) == {}  # slurmctld forgot them: all ended
    fake("squeue", 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1')
    assert sj.queue_states(["7_0"]) is None


def test_queue_watcher_states_ended_tasks_and_keeps_states_when_squeue_fails(fake, tmp_path):
    flag = tmp_path / "phase"
    squeue = fake("squeue", f'case "$(cat {flag})" in\n run) echo "12_0|RUNNING|vm|None" ;;\n'
                            f' gone) echo "12_9|RUNNING|vm|None" ;;\n *) exit 1 ;;\nesac')
    w = sj.QueueWatcher(poll_s=3600)
    flag.write_text("run")
    assert w.get_state("12_0") == "RUNNING" and not w.is_done("12_0")
    assert w.get_info("12_0") == {"State": "RUNNING", "NodeList": "vm", "Reason": "None"}
    flag.write_text("gone")
    assert not w.is_done("12_0") and len(_calls(squeue)) == 1  # within poll_s: no new call
    assert w.is_done("12_0", mode="cache") is False
    flag.write_text("fail")
    assert w.get_state("12_0", mode="force") == "RUNNING"  # squeue did not answer: last state kept
    flag.write_text("gone")
    assert w.is_done("12_0", mode="force") and w.get_state("12_0", mode="cache") == sj.ENDED
    n = len(_calls(squeue))
    w.update()  # every registered task has ended: no more calls
    assert len(_calls(squeue)) == n and w.num_calls == 3
    assert w.get_info("12_0", mode="cache") == {"State": sj.ENDED, "NodeList": "", "Reason": "no longer listed by squeue"}
    w.clear()
    assert w.get_state("12_0", mode="cache") == "UNKNOWN"
    flag.write_text("run")
    assert w.get_state("12_0") == "RUNNING"  # after clear() the next look polls again
    assert sj.QueueWatcher().poll_s == 5.0


def test_queue_watcher_polls_again_after_poll_s(fake):
    squeue = fake("squeue", 'echo "5_0|PENDING||Priority"')
    w = sj.QueueWatcher(poll_s=0.0)
    w.register_job("5_0")
    for _ in range(3):
        assert w.get_state("5_0") == "PENDING"
    assert len(_calls(squeue)) == 3


@pytest.mark.parametrize("state, done", [("COMPLETED", True), ("CANCELLED", True), ("FAILED", True),
                                         ("TIMEOUT", True), ("PENDING", False), ("RUNNING", False),
                                         ("REQUEUED", False), ("COMPLETING", False), ("SUSPENDED", False)])
def test_queue_watcher_done_states(fake, state, done):
    fake("squeue", f'echo "3_0|{state} by 0|vm|None"')  # "CANCELLED by 0": the first word is the state
    assert sj.QueueWatcher().is_done("3_0") is done


# -- the arrays of a results folder, and status ---------------------------------------------------
def test_record_and_read_arrays(tmp_path, monkeypatch):
    assert sj.read_arrays(tmp_path) == []
    monkeypatch.setattr(sj, "MAX_ARRAYS", 3)
    for i in range(5):
        sj.record_array(tmp_path, [(f"{100 + i}_0", f"synthetic/disc ({i} cells)"), (f"{100 + i}_1", "b")])
    arrays = sj.read_arrays(tmp_path)
    assert [a["array"] for a in arrays] == ["102", "103", "104"]
    assert arrays[-1]["tasks"] == [{"job": "104_0", "label": "synthetic/disc (4 cells)"}, {"job": "104_1", "label": "b"}]
    assert arrays[-1]["submitted"] > 0
    (tmp_path / sj.JOBS_FILE).write_text("{not json")
    assert sj.read_arrays(tmp_path) == []
    (tmp_path / sj.JOBS_FILE).write_text(json.dumps({"arrays": [{"array": "1"}, {"array": "2", "tasks": []}, 3,
                                                                 {"array": "4", "tasks": ["4_0"]}]}))
    assert [a["array"] for a in sj.read_arrays(tmp_path)] == ["2"]


def test_array_states_of_a_hand_written_file_and_of_forgotten_jobs(fake, tmp_path):
    fake("squeue", 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1')
    (tmp_path / sj.JOBS_FILE).write_text(json.dumps({"arrays": [{"array": "9", "tasks": [{"job": "9"}]}]}))
    assert sj.array_states(tmp_path) == [{"array": "9", "submitted": 0.0, "tasks": [
        {"job": "9", "label": "", "State": sj.ENDED, "NodeList": "", "Reason": ""}]}]


def test_status_shows_the_latest_array_and_arrays_still_queued(fake, tmp_path):
    fake("squeue", SQUEUE)
    sj.record_array(tmp_path, [("11_0", "synthetic/stripes (2 cells)")])  # ended, not the latest: left out
    sj.record_array(tmp_path, [("12_0", "synthetic/stripes (2 cells)"), ("12_1", "synthetic/disc (2 cells)")])
    sj.record_array(tmp_path, [("13", "synthetic/disc (1 cell)")])  # one task: a plain job
    shown = sj.array_states(tmp_path)
    assert [a["array"] for a in shown] == ["12", "13"]
    assert [(t["job"], t["State"]) for t in shown[0]["tasks"]] == [("12_0", "RUNNING"), ("12_1", "PENDING")]
    st = SweepStatus(cells={"c1": "done", "c2": "running"}, arrays=shown)
    text = render(st, tmp_path, "here")
    assert "SLURM array 12 (submitted 0 s ago):\n  12_0  RUNNING on vm  synthetic/stripes (2 cells)\n" \
           "  12_1  PENDING (Resources)  synthetic/disc (2 cells)\nSLURM array 13" in text
    assert "  13  COMPLETED on vm  synthetic/disc (1 cell)" in text
    assert "2 cell(s): 1 done, 1 running, 0 failed, 0 pending" in text
    assert json.loads(status_json(st))["slurm_arrays"][0]["tasks"][1]["Reason"] == "Resources"


def test_status_without_squeue_says_states_are_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    sj.record_array(tmp_path, [("12_0", "synthetic/disc (2 cells)")])
    shown = sj.array_states(tmp_path)
    assert shown[0]["tasks"][0]["State"] == "?"
    text = render(SweepStatus(arrays=shown), tmp_path, "here")
    assert "  12_0  ?  synthetic/disc (2 cells)" in text and "SLURM states unknown" in text
    assert sj.array_states(tmp_path / "nothing") == []


def test_group_label():
    m, ds = MethodSpec("memory"), DatasetSpec("synthetic")
    assert group_label([Job(m, ds, ["disc"], 1, 0), Job(m, ds, ["disc"], 2, 0)]) == "synthetic/disc (2 cells)"
    assert group_label([Job(m, ds, ["disc"], 1, 0)]) == "synthetic/disc (1 cell)"
    assert group_label([Job(MethodSpec("anople"), ds, ["a", "b"], 1, 0, scope="dataset")]) == \
        "synthetic (all categories) (2 cells)"
