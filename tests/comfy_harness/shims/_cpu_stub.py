"""Shared machinery of the torchvision/torchaudio stand-ins: lenient modules and placeholders."""

import importlib.abc
import importlib.machinery
import sys
import types


class Missing:
    """Stands for anything the stand-in does not implement; only calling it fails."""

    def __init__(self, qualname: str):
        self._qualname = qualname

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self._qualname} is not available: this ComfyUI runs with a CPU stand-in "
            "(tests/comfy_harness/shims) because no working CPU build of the package is installed."
        )

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return Missing(f"{self._qualname}.{name}")

    def __mro_entries__(self, bases):
        """Lets `class X(torchvision.Something)` define a class instead of failing at import."""
        return (object,)

    def __repr__(self) -> str:
        return f"<missing {self._qualname} (cpu stand-in)>"


def make_lenient(module: types.ModuleType) -> None:
    """Unknown attributes of `module` become Missing placeholders instead of AttributeError."""

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return Missing(f"{module.__name__}.{name}")

    module.__getattr__ = __getattr__


class _AnySubmodule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an empty lenient package for `import <root>.<anything>` that has no real file.

    It sits at the end of sys.meta_path, so the stand-in's real files are found first.
    """

    def __init__(self, root: str):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(self.root + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        make_lenient(module)
        return module

    def exec_module(self, module):
        pass


def install(package_name: str) -> None:
    """Make the stand-in package `package_name` lenient, submodules included."""
    make_lenient(sys.modules[package_name])
    sys.meta_path.append(_AnySubmodule(package_name))
