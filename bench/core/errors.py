"""Errors a user can act on: each names the thing at fault and the fix."""


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
