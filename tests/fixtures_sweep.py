"""A sweep in a subprocess with a slow method (``slow_memory``), for tests that kill or signal runners.

``SLOW_S`` (seconds per predict batch) and ``MARK_DIR`` (a folder where each process inside a cell
touches a file named by its pid) are read from the driver's environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SYN = {"size": 120, "n_train": 4, "n_test_good": 3, "n_test_bad": 3}

PLUGIN = '''
import os, time
from fsadbench.methods.memory import MemoryBank

class SlowMemory(MemoryBank):
    """memory, with a pause per predict batch so that a test can act mid-sweep."""
    name = "slow_memory"

    def predict(self, images):
        marks = os.environ.get("MARK_DIR")
        if marks:  # "this process is inside a cell now", for tests that act mid-cell
            open(os.path.join(marks, str(os.getpid())), "a").close()
        time.sleep(float(os.environ.get("SLOW_S", "0.5")))
        return super().predict(images)
'''

# The plugin is registered at import, outside the main guard: spawned pool workers import this
# script as their main module and so know the method too.
DRIVER = '''
import sys
sys.path.insert(0, {plugin_dir!r})
from fsadbench.core.registry import METHODS
METHODS.add("slow_memory", "slow_plugin:SlowMemory")

if __name__ == "__main__":
    from fsadbench.cli import main
    sys.exit(main(sys.argv[1:]))
'''


def slow_sweep(tmp_path: Path, seeds=(0, 1, 2), categories=("stripes", "disc")) -> list[str]:
    """Write the plugin, driver and config of a slow_memory sweep under ``tmp_path``; the command to run it."""
    (tmp_path / "slow_plugin.py").write_text(PLUGIN)
    (tmp_path / "driver.py").write_text(DRIVER.format(plugin_dir=str(tmp_path)))
    cfg = {"methods": ["slow_memory"],
           "datasets": [{"name": "synthetic", "categories": list(categories), "options": SYN}],
           "shots": [1], "seeds": list(seeds), "backbone": {"model": "fsad-tiny-vit", "pretrained": "none"},
           "protocol": {"eval_size": 48}, "results_dir": str(tmp_path / "res"),
           "cache_dir": str(tmp_path / "cache"), "device": "cpu", "batch_size": 8}
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    return [sys.executable, str(tmp_path / "driver.py"), "--config", str(tmp_path / "cfg.yaml"), "--no-progress"]


def sweep_env(**kw) -> dict[str, str]:
    """The environment of a driver process: one torch thread, offline."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **kw}
