"""Load scipy's BLAS wrappers without importing the rest of scipy.linalg.

The kernels cimport ``scipy.linalg.cython_blas``; importing it the usual way
first runs ``scipy/linalg/__init__.py``, which pulls in much of scipy (about
0.2 s, most of ``import fastmlp``).  The extension module itself needs
nothing from its package, so it is loaded here straight from its file and
registered under its full name; a later ``import scipy.linalg`` finds it and
uses the same module object.  If anything about that fails, the normal
import happens instead.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_NAME = "scipy.linalg.cython_blas"


class _BindWhenParentLoads(importlib.abc.MetaPathFinder):
    """When ``scipy.linalg`` is imported later, set its ``cython_blas``
    attribute to the module loaded here (the import system only binds
    submodules it loads itself)."""

    def find_spec(self, name, path, target=None):
        if name != "scipy.linalg":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _BindingLoader(spec.loader)
        return spec


class _BindingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        if _NAME in sys.modules and not hasattr(module, "cython_blas"):
            module.cython_blas = sys.modules[_NAME]


def preload_cython_blas():
    if _NAME in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("scipy")
        folder = os.path.join(os.path.dirname(spec.origin), "linalg")
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "cython_blas" + suffix)
            if os.path.exists(path):
                break
        else:
            return
        module_spec = importlib.util.spec_from_file_location(_NAME, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[_NAME] = module
        module_spec.loader.exec_module(module)
    except Exception:          # fall back to the ordinary import
        sys.modules.pop(_NAME, None)
        return
    if "scipy.linalg" in sys.modules:
        sys.modules["scipy.linalg"].cython_blas = module
    else:
        sys.meta_path.insert(0, _BindWhenParentLoads())


preload_cython_blas()
