"""Registry: decorator, lazy entries, default options, entry-point plugins, clear errors."""

import pytest

from fixtures_plugins import install_plugin
from fsadbench.core.errors import RegistryError
from fsadbench.core.registry import DATASETS, METHODS, Registry


def test_builtin_names_are_listed_without_importing():
    assert {"memory", "winclip", "promptad", "promptad-g", "apt", "anople", "anople-oc"} <= set(METHODS.names())
    assert {"synthetic", "mvtec", "visa", "mpdd", "sdd"} <= set(DATASETS.names())


def test_decorator_and_default_options():
    reg = Registry("thing", "fsadbench.test-nothing")

    @reg.register("a")
    @reg.register("a-g", generic=True)
    class A:
        pass

    assert reg.get("a") == (A, {})
    assert reg.get("A-G") == (A, {"generic": True})


def test_lazy_entry_resolves_on_use():
    assert METHODS.entry("promptad-g").options == {"generic_only": True}
    assert isinstance(METHODS.entry("apt").target, (str, type))
    from fsadbench.methods.memory import MemoryBank

    assert METHODS.get("memory")[0] is MemoryBank


def test_unknown_name_lists_registered():
    with pytest.raises(RegistryError) as e:
        METHODS.get("nosuchmethod")
    msg = str(e.value)
    assert "nosuchmethod" in msg and "memory" in msg and "winclip" in msg


def test_entry_point_plugin_installed_in_test(tmp_path, monkeypatch):
    """A package outside the repo adds a method through the entry-point group."""
    install_plugin(tmp_path, monkeypatch, "fsadbench.methods", 'demo-plugin = "fsad_demo_plugin:DemoMethod"', """
        from dataclasses import dataclass
        from fsadbench.protocol.method import Method
        class DemoMethod(Method):
            name = "demo-plugin"
            variants = ("w/ VG",)
            @dataclass
            class Options:
                pass
            def fit(self, normals, category):
                pass
            def predict(self, images):
                raise RuntimeError("not used")
    """)
    reg = Registry("method", "fsadbench.methods")  # a fresh registry reads the entry points anew
    assert "demo-plugin" in reg.names()
    cls, _ = reg.get("demo-plugin")
    assert cls.__name__ == "DemoMethod" and cls.name == "demo-plugin"
