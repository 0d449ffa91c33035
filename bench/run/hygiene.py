"""Worker processes die with the process that started them.

A pool worker or a SLURM-local array task calls :func:`die_with_parent` first
thing. On Linux it asks the kernel for SIGTERM when its parent process exits
(``prctl(PR_SET_PDEATHSIG)`` through ctypes); everywhere, a daemon thread
watches the parent pid and, once it is gone, sends this process SIGTERM (the
worker's handler unwinds and releases its claims) and, if the process is still
there ``grace_s`` later (stuck in native code), ends it with ``os._exit``. So
a SIGKILLed sweep leaves no worker behind for more than a few seconds, and the
claims its workers held turn stale at once (dead pids).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

from fsadbench.run.claims import pid_alive

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int, grace_s: float = 3.0, poll_s: float = 0.5) -> None:
    """End this process soon after ``parent_pid`` ends (its direct parent, or an ancestor such as the
    process that submitted a local job array)."""
    direct = os.getppid() == parent_pid
    set_parent_death_signal(signal.SIGTERM)  # the direct parent; for an ancestor the watchdog below

    def gone() -> bool:
        return os.getppid() != parent_pid if direct else not pid_alive(parent_pid)

    def watch() -> None:
        while not gone():
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="fsadbench-parent-watchdog", daemon=True).start()
