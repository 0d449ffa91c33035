"""Command line: ``python run_bench.py [COMMAND] ...`` (``fsad-bench`` when installed).

One module per command group, each with a ``build_parser()`` and a ``main(argv)``;
the flags several commands share come from :mod:`fsadbench.cli.common` so they
are spelled (and default) the same everywhere. A command's module is imported
only when that command runs, and the work itself lives in the layers below
(the CLI parses, builds the config through ``RunConfig.from_cli`` and prints).

    python run_bench.py --methods apt,winclip --shots 1,2,4 --datasets mvtec --data-root /data
    python run_bench.py --preset smoke                       # offline pipeline check
    python run_bench.py report --format html --output report.html
    python run_bench.py list --method apt                    # paper, backbone, options (meaning, default), notes

Any command takes ``--debug`` (or ``FSADBENCH_DEBUG=1``): errors then come with their traceback.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Sequence

from fsadbench.core.errors import BenchError, PluginWarning, error_summary, scrub

# command -> (module under fsadbench.cli, function, one-line help); imported only when used
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("run", "main", "sweep methods x datasets x shots x seeds (the default command)"),
    "report": ("report", "main", "tables from records: markdown, latex, csv, json or a self-contained html"),
    "rescore": ("report", "rescore_main", "recompute metrics from the stored per-image scores, without a refit"),
    "list": ("listing", "main", "methods, datasets, paper layouts (--method M: options, backbone, paper, notes)"),
    "check-data": ("data", "main", "check dataset folders: counts, masks, unreadable files"),
    "status": ("status", "main", "done / running / failed / pending cells of a sweep"),
    "compare": ("regression", "compare_main", "per-cell and per-table deltas between two sets of records"),
    "baseline": ("regression", "baseline_main", "rewrite the committed baseline of a preset"),
    "history": ("regression", "history_main", "a metric over commits for one method and dataset"),
    "paper-table": ("paper", "main", "a paper table layout (APT, AnoPLe, a plugin's) with the published figures"),
    "figures": ("figures", "main", "per-category bars and qualitative grids (PNG + PDF)"),
}
PROG = "run_bench.py"


def version() -> str:
    from fsadbench import __version__

    return f"fsad-bench {__version__}"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} [COMMAND] [options]   ({PROG} COMMAND --help for a command's options)", "",
             "Few-shot anomaly detection benchmark harness. Without COMMAND, `run` is implied:",
             f"  {PROG} --methods apt,winclip --shots 1,2,4 --datasets mvtec --data-root /data", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help     this list", "  --version      the harness version",
              "  --debug        (any command) errors with their traceback; also FSADBENCH_DEBUG=1"]
    return "\n".join(lines) + "\n"


def _one_line_deprecations(show):
    """``warnings.showwarning`` that prints a DeprecationWarning as one ``note:`` line, a PluginWarning as one
    ``warning:`` line, others as ``show``."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecationWarning):
            print(f"note: {message}", file=sys.stderr)
        elif issubclass(category, PluginWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Errors print one line, cause first (``--debug`` or FSADBENCH_DEBUG=1: with the
    traceback); Ctrl-C prints one line and exits 130; an unexpected exception exits 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("FSADBENCH_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(usage(), end="")
        return 0
    if argv[:1] == ["--version"]:
        print(version())
        return 0
    cmd = "run"
    if argv and argv[0] in COMMANDS:
        cmd = argv.pop(0)
    elif argv and not argv[0].startswith("-"):
        print(f"unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)} ({PROG} --help)", file=sys.stderr)
        return 2
    module, fn, _ = COMMANDS[cmd]
    from fsadbench.run.signals import Interrupted, interrupt_guard

    try:
        # SIGTERM unwinds every command (the atomic writers remove their temporary files on the way out);
        # a sweep installs its own guard inside, which releases its claims too
        with warnings.catch_warnings(), interrupt_guard((signal.SIGTERM,)):
            # a deprecated option name is said once, in one line (Python hides DeprecationWarning by default)
            warnings.filterwarnings("default", message=r"method '.*': option '.*' is deprecated",
                                    category=DeprecationWarning)
            warnings.showwarning = _one_line_deprecations(warnings.showwarning)
            rc = int(getattr(importlib.import_module(f"fsadbench.cli.{module}"), fn)(argv) or 0)
            sys.stdout.flush()  # a reader that went away (| head) shows here, not at interpreter exit
            return rc
    except KeyboardInterrupt as exc:
        _fail(exc, debug, "interrupted; finished cells are kept, rerun the same command to resume")
        return 130
    except Interrupted as exc:  # SIGTERM outside a sweep (report, rescore, figures, ...)
        _fail(exc, debug, f"interrupted (signal {exc.signum}); no file was left half-written, rerun the same "
                          f"command")
        return 128 + exc.signum
    except BenchError as exc:  # cause first; the lines after it (if any) are the fix
        _fail(exc, debug, f"error: {exc}")
        return 2
    except BrokenPipeError:  # the reader of our output went away (| head): nothing to say
        _quiet_stdout()
        return 0
    except OSError as exc:  # a write that no layer wrapped: still the one-line "cannot write" message
        from fsadbench.core.io import WRITE_ERRNOS, storage_error

        if exc.errno not in WRITE_ERRNOS:
            _fail(exc, debug, f"error: {error_summary(exc)} (rerun with --debug for the traceback)")
            return 1
        where = Path(exc.filename).parent if exc.filename else Path.cwd()
        _fail(exc, debug, f"error: {storage_error(exc, where, Path(exc.filename).name if exc.filename else '')}")
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug or an environment fault: one line, traceback on request
        _fail(exc, debug, f"error: {error_summary(exc)}" + ("" if debug else " (rerun with --debug for the traceback)"))
        return 1


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _fail(exc: BaseException, debug: bool, line: str) -> None:
    if debug:
        print(scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))), file=sys.stderr)
    print(scrub(line), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
