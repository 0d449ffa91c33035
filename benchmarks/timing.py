"""Timing helpers shared by the speed benchmarks: one run timed (wall and CPU, CUDA synchronised), and
several functions run in turn so that each sees the same machine state (medians over the repeats)."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable, Sequence

import torch


def peak_mib() -> float:
    """The process's peak resident memory so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn: Callable, device: torch.device):
    """(wall seconds, CPU seconds, output) of one call of ``fn``, CUDA synchronised before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def interleaved(fns: Sequence[Callable], repeats: int, device: torch.device) -> list[dict]:
    """Run the functions alternately ``repeats`` times: per function the median wall and CPU seconds, the last
    output and the peak-memory growth of its first run."""
    runs = [{"wall": [], "cpu": [], "out": None, "peak": 0.0} for _ in fns]
    for r in range(repeats):
        for fn, run in zip(fns, runs):
            before = peak_mib()
            wall, cpu, run["out"] = timed(fn, device)
            run["wall"].append(wall)
            run["cpu"].append(cpu)
            if r == 0:
                run["peak"] = peak_mib() - before
    for run in runs:
        run["wall"], run["cpu"] = statistics.median(run["wall"]), statistics.median(run["cpu"])
    return runs
