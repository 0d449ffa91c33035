"""The batch sizes of one attempt at a job, and what happens after an out-of-memory error.

A :class:`BatchPolicy` is a value handed to the cell (:func:`fsadbench.run.cell.run_job`):
the method / evaluation batch (``MethodContext.batch_size``), the feature
store's encoder batch, and whether an out-of-memory error may be retried. With
``retry_oom`` the cell lets such an error propagate while a batch can still
shrink, and :func:`fsadbench.run.cell.run_job_retrying` runs the job again with
:meth:`BatchPolicy.halved` (each size halved, down to 1). At batch 1, or
without ``retry_oom``, the error is recorded as the cell's failure. The record's
config shows the method batch that produced it; nothing in the RunConfig is
changed.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, replace

from fsadbench.run.config import RunConfig


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or allocator) out-of-memory error, which a smaller batch may avoid."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class BatchPolicy:
    batch_size: int  # method / evaluation batch
    feature_batch_size: int  # feature-store encoder batch
    retry_oom: bool = True  # let an out-of-memory error through for a retry while a batch can shrink

    @classmethod
    def from_config(cls, cfg: RunConfig, retry_oom: bool = True) -> "BatchPolicy":
        return cls(cfg.batch_size, cfg.batch_size, retry_oom)

    def can_shrink(self) -> bool:
        return self.batch_size > 1 or self.feature_batch_size > 1

    def retries(self, exc: BaseException) -> bool:
        """True when ``exc`` should end this attempt so that a smaller one can run."""
        return self.retry_oom and self.can_shrink() and is_out_of_memory(exc)

    def halved(self) -> "BatchPolicy":
        return replace(self, batch_size=max(1, self.batch_size // 2),
                       feature_batch_size=max(1, self.feature_batch_size // 2))

    def describe(self) -> str:
        return f"batch size {self.batch_size}, feature batch {self.feature_batch_size}"


def free_memory() -> None:
    """Collect garbage and return cached accelerator memory (best effort) before a retry."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass
