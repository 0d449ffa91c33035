"""SIGINT / SIGTERM during a sweep: unwind, release claims, say how to resume, exit 130 / 143.

:func:`interrupt_guard` (main thread only) turns the first SIGINT or SIGTERM
into :class:`Interrupted`, a ``BaseException`` so that no cell records it as
its failure: it unwinds through the worker, whose ``finally`` releases every
claim it holds. The executor then counts the done cells from the record store
and raises :class:`SweepInterrupted`, whose text is the one line the command
line prints ("interrupted; N cells done, rerun the same command to resume") and
whose ``exit_code`` is 128 + the signal number. Worker processes use
:func:`worker_signals`: they ignore SIGINT (a terminal's Ctrl-C reaches the
whole process group; the parent decides) and unwind the same way on SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; unwinds the sweep (claims are released on the way out)."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = int(signum)


class SweepInterrupted(KeyboardInterrupt):
    """The sweep stopped on a signal after releasing its claims; ``str()`` is the line to print."""

    def __init__(self, signum: int, done: int):
        super().__init__(signum, done)
        self.signum, self.done = int(signum), int(done)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"interrupted; {self.done} cells done, rerun the same command to resume"


def signum_of(exc: BaseException) -> int:
    return exc.signum if isinstance(exc, (Interrupted, SweepInterrupted)) else int(signal.SIGINT)


def _raise_once(fired: list[int]):
    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if fired:
            return  # already unwinding: a second Ctrl-C does not cut the clean-up short
        fired.append(signum)
        raise Interrupted(signum)

    return handler


@contextmanager
def interrupt_guard(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Inside: the first of ``signals`` raises :class:`Interrupted` in the main thread; restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _raise_once([])
    old = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def worker_signals() -> None:
    """In a worker process: ignore SIGINT, turn SIGTERM into :class:`Interrupted` (for good)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_once([]))


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored inside (main thread only): a process started here inherits the disposition."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.SIG_DFL)
