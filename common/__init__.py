"""Shared models, estimators and utilities for the inference-suboptimality study.

Public API: `inference_gaps(encoder, decoder, x, ...)` measures any VAE's approximation and
amortization gaps with the studies' estimators and certificates (common/measure.py; from the
shell: `python -m common.measure`)."""

from pathlib import Path as _Path

__all__ = ["inference_gaps", "Measurement"]


def __getattr__(name):   # imported on first use, so `import common.x` stays as light as before
    if name in __all__:
        from . import measure
        return getattr(measure, name)
    raise AttributeError(f"module 'common' has no attribute {name!r}")


# ---- the module paths before common/ was split into layers (one release): `import
# common.gaps` and `python -m common.report` still work, as the same module objects as their new
# homes (common.inference.gaps, common.reporting.report). New code uses the new paths.
MOVED = {p.stem: p.parent.name for p in _Path(__file__).parent.glob("*/*.py")
         if p.stem != "__init__"}   # module name -> its layer package: derived, never out of date


def _install_old_paths():
    import importlib
    import importlib.abc
    import importlib.machinery
    import sys

    class Alias(importlib.abc.Loader):
        def __init__(self, new):
            self.new = new

        def create_module(self, spec):      # the module of the new path itself, not a copy
            module = importlib.import_module(self.new)
            self.own_spec = module.__spec__
            return module

        def exec_module(self, module):
            module.__spec__ = self.own_spec  # importlib set the old name's spec on it

        def get_code(self, name):           # python -m common.<old>: run the new module
            return compile(f"import runpy; runpy.run_module({self.new!r}, run_name='__main__', "
                           f"alter_sys=True)", f"<{name} -> {self.new}>", "exec")

    class OldPaths(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            package, _, module = name.rpartition(".")
            if package != __name__ or module not in MOVED:
                return None
            return importlib.machinery.ModuleSpec(name, Alias(f"{__name__}.{MOVED[module]}."
                                                              f"{module}"))

    if not any(type(f).__name__ == "OldPaths" for f in sys.meta_path):
        sys.meta_path.append(OldPaths())


_install_old_paths()
