"""fsadbench: a benchmark harness for few-shot anomaly detection with CLIP.

The repository folders map onto one import package:
``bench/`` -> ``fsadbench``, ``methods/`` -> ``fsadbench.methods``,
``datasets/`` -> ``fsadbench.datasets``.

For notebooks (loaded on first use, so ``import fsadbench`` imports neither torch nor pandas)::

    import fsadbench
    df = fsadbench.load_results("results/run")    # pandas, one row per cell and variant
    res = fsadbench.run("my_sweep.yaml")          # or a RunConfig / a mapping of the YAML keys
"""

__version__ = "0.1.0"

# public name -> "module:attribute", imported when first used (PEP 562)
_LAZY = {
    "load_results": "fsadbench.api:load_results",
    "results_frame": "fsadbench.api:results_frame",
    "Results": "fsadbench.api:Results",
    "RunConfig": "fsadbench.run.config:RunConfig",
}
# ``fsadbench.run`` is the run-layer package; it is callable: ``fsadbench.run(config) -> Results``
__all__ = ["__version__", "run", *_LAZY]


def __getattr__(name: str):
    if name == "run":  # not imported yet: import the (callable) subpackage
        import importlib

        return importlib.import_module("fsadbench.run")
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'fsadbench' has no attribute {name!r}")
    import importlib

    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + ["run"])
