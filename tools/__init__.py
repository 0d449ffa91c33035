"""Developer tools run from the repository root (``python -m tools.X``); not installed, not used at run time."""
