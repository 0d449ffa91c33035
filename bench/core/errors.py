"""Errors a user can act on: each names the thing at fault and the fix; one-line summaries of any error."""

import re


class BenchError(Exception):
    """Base class of every error the harness raises on purpose."""


class ConfigError(BenchError):
    """A configuration value is wrong (names the field and the fix)."""


class RegistryError(BenchError, KeyError):
    """Unknown method or dataset name (lists the registered ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(BenchError):
    """A dataset folder, image or mask is missing or malformed."""


class WeightsError(BenchError):
    """Backbone weights could not be loaded or downloaded."""


class MethodError(BenchError):
    """A method cannot run a cell (e.g. it needs shots > 0)."""


class NotApplicable(MethodError):
    """The method does not apply to this cell (recorded, not a failure)."""


class PluginWarning(UserWarning):
    """A plugin (an entry point) was skipped or refused: names it and why; the CLI prints it as one line."""


class StorageError(BenchError, OSError):
    """A file or folder could not be written (disk full, read-only folder): names the folder and the fix."""

    def __str__(self) -> str:  # OSError would prefix "[Errno n]" when built with two arguments
        return str(self.args[0]) if self.args else ""


_UNSAFE_ADVICE = re.compile(r"weights_only\W{0,4}(?:set to|=)\W{0,4}False", re.IGNORECASE)
NO_UNPICKLING = "fsad-bench loads tensors only (weights_only=True) and never unpickles Python objects"


def scrub(text: str) -> str:
    """``text`` without any line advising ``torch.load(weights_only=False)`` (arbitrary code execution)."""
    if not _UNSAFE_ADVICE.search(text):
        return text
    return "\n".join(f"[advice removed: {NO_UNPICKLING}]" if _UNSAFE_ADVICE.search(ln) else ln
                     for ln in text.splitlines())


def error_summary(exc: BaseException) -> str:
    """One line, cause first: a harness error's first line, else ``Type: first line of the message``."""
    text = str(exc).strip()
    if type(exc).__name__ == "UnpicklingError":  # torch's first line invites loading "if you trust the source"
        text = f"a checkpoint holds Python objects besides tensors; {NO_UNPICKLING}"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if isinstance(exc, BenchError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def error_text(exc: BaseException) -> str:
    """What a failed record stores: :func:`error_summary`, a blank line, then the full traceback."""
    import traceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return error_summary(exc) + "\n\n" + scrub(tb)


def error_line(text: str | None) -> str:
    """The one-line cause of a stored error text (:func:`error_text`, or an older bare traceback)."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1]  # records written before error_text: the exception line ends the traceback
    return lines[0]
