"""Mutation testing of the methods and the protocol core with mutmut (not part of CI: it takes tens of minutes).

    pip install -e ".[mutation]"
    python -m tools.mutation                    # every module in [tool.fsadbench.mutation] of pyproject.toml
    python -m tools.mutation methods/promptad.py bench/run/identity.py   # some modules
    python -m tools.mutation --list             # the modules and their test selections

mutmut 3 mutates a copy of the sources and imports it by its file path, while
this repository installs ``bench/``, ``methods/`` and ``datasets/`` as ONE
package ``fsadbench`` (see pyproject). So each run builds a staging folder
``.mutation/<module>/`` laid out as the installed package (``fsadbench/``,
``fsadbench/methods/``, ``fsadbench/datasets/``, ``tests/``, ``configs/``, ``benchmarks/``),
writes mutmut's ``[tool.mutmut]`` there (the shared settings of
pyproject.toml's ``[tool.mutmut]`` plus ``only_mutate`` = the module and the
module's test files), and runs ``mutmut run`` in it. mutmut runs, for each
mutant, only the tests that call the mutated function.

Per module it prints killed / total (killed = killed + timeout; total excludes
nothing: "no tests" and survivors count against the score) and writes
``.mutation/summary.json``; ``mutmut results`` / ``mutmut show NAME`` inside a
module's staging folder list and show the survivors. Survivors are killed by a
test or listed as equivalent, with a one-line reason, in the module's test
file (``EQUIVALENT_MUTANTS``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutation"
LAYOUT = (("bench", "fsadbench"), ("methods", "fsadbench/methods"), ("datasets", "fsadbench/datasets"),
          ("tests", "tests"), ("configs", "configs"), ("benchmarks", "benchmarks"))  # some tests import benchmarks


def load_plan(pyproject: Path = ROOT / "pyproject.toml") -> tuple[dict, dict[str, list[str]]]:
    """(shared [tool.mutmut] settings, {module path: [test files]}) from pyproject.toml."""
    data = tomllib.loads(pyproject.read_text())
    tool = data.get("tool", {})
    shared = dict(tool.get("mutmut", {}))
    modules = tool.get("fsadbench", {}).get("mutation", {}).get("modules", {})
    if not modules:
        raise SystemExit("pyproject.toml has no [tool.fsadbench.mutation.modules] table")
    return shared, {m: list(t) for m, t in modules.items()}


def staged_path(module: str) -> str:
    """methods/apt/smgs.py -> fsadbench/methods/apt/smgs.py (the path mutmut sees)."""
    for src, dst in LAYOUT:
        if module == src or module.startswith(src + "/"):
            return dst + module[len(src):]
    raise SystemExit(f"{module}: not under {[s for s, _ in LAYOUT]}")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def stage(module: str, tests: Sequence[str], shared: dict) -> Path:
    """A fresh staging folder for one module (sources copied, mutmut config written)."""
    folder = STAGE / module.replace("/", "__").removesuffix(".py")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for src, dst in LAYOUT:
        shutil.copytree(ROOT / src, folder / dst, ignore=ignore, dirs_exist_ok=True)
    cfg = {**shared, "source_paths": ["fsadbench"], "only_mutate": [staged_path(module)],
           "pytest_add_cli_args_test_selection": list(tests), "also_copy": ["configs", "benchmarks"]}
    body = "\n".join(f"{k} = {_toml_value(v)}" for k, v in cfg.items())
    (folder / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\naddopts = "-p no:cacheprovider"\n'
        'markers = ["slow: longer end-to-end tests"]\n\n[tool.mutmut]\n' + body + "\n")
    return folder


def count(folder: Path) -> dict[str, int]:
    """killed / survived / ... from mutmut's export-cicd-stats."""
    subprocess.run([sys.executable, "-m", "mutmut", "export-cicd-stats"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((folder / "mutants" / "mutmut-cicd-stats.json").read_text())


def run_module(module: str, tests: Sequence[str], shared: dict, max_children: int, timeout: float | None
               ) -> dict:
    folder = stage(module, tests, shared)
    start = time.time()
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    with open(folder / "mutmut.log", "w") as log:  # mutmut's progress spinner, kept out of the summary
        try:
            subprocess.run(cmd, cwd=folder, timeout=timeout, check=False, stdout=log, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
    try:
        stats = count(folder)
    except (subprocess.CalledProcessError, OSError, ValueError):
        return {"module": module, "killed": 0, "total": 0, "survived": 0, "no_tests": 0, "score": None,
                "finished": False, "seconds": round(time.time() - start), "folder": str(folder.relative_to(ROOT)),
                "error": f"mutmut did not finish: see {folder.relative_to(ROOT)}/mutmut.log"}
    killed = stats["killed"] + stats["timeout"]
    total = stats["total"]
    return {"module": module, "killed": killed, "total": total, "survived": stats["survived"],
            "no_tests": stats["no_tests"], "score": killed / total if total else None,
            "finished": finished, "seconds": round(time.time() - start), "folder": str(folder.relative_to(ROOT))}


def survivors(module: str) -> list[tuple[str, str]]:
    """(mutant name, its diff) of every surviving mutant of a module's last run."""
    folder = STAGE / module.replace("/", "__").removesuffix(".py")
    out = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=folder, capture_output=True, text=True)
    names = [line.split(":")[0].strip() for line in out.stdout.splitlines() if line.strip().endswith("survived")]
    diffs = []
    for name in names:
        show = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=folder, capture_output=True,
                              text=True).stdout
        lines = [x for x in show.splitlines() if x[:1] in "+-" and not x.startswith(("+++", "---"))]
        diffs.append((name, "\n".join(lines)))
    return diffs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.mutation", description=__doc__.split("\n\n")[0])
    p.add_argument("modules", nargs="*", help="module paths (default: all configured)")
    p.add_argument("--list", action="store_true", help="print the modules and their tests, run nothing")
    p.add_argument("--survivors", action="store_true", help="print the surviving mutants of the last runs, run nothing")
    p.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--timeout", type=float, help="seconds per module (a time-boxed run reports what it reached)")
    a = p.parse_args(argv)
    shared, plan = load_plan()
    chosen = a.modules or list(plan)
    unknown = [m for m in chosen if m not in plan]
    if unknown:
        raise SystemExit(f"not configured in [tool.fsadbench.mutation.modules]: {unknown}")
    if a.list:
        for m in chosen:
            print(f"{m}: {' '.join(plan[m])}")
        return 0
    if a.survivors:
        for m in chosen:
            for name, diff in survivors(m):
                print(f"{name}\n{diff}\n")
        return 0
    rows = []
    for m in chosen:
        rows.append(run_module(m, plan[m], shared, a.max_children, a.timeout))
        r = rows[-1]
        if r.get("error"):
            print(f"{m}: {r['error']}", flush=True)
            continue
        print(f"{m}: {r['killed']}/{r['total']} killed"
              + (f" ({100 * r['score']:.1f}%)" if r["score"] is not None else "")
              + f", {r['survived']} survived, {r['no_tests']} without tests, {r['seconds']} s"
              + ("" if r["finished"] else " [time-boxed: incomplete]"), flush=True)
    STAGE.mkdir(exist_ok=True)
    (STAGE / "summary.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
