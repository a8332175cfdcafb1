"""ヘルスサポート分析ワークブック: the library behind the notebooks.

The modules sit in subpackages by concern, one layer each, lowest first (docs/architecture.md):
core → inputs → rules → stats → analysis → publish → patterns → demo → running. A module imports
only from its own subpackage or a lower one (tests/test_architecture.py).

The public API of docs/design.md §4 keeps its names: `hsutils.stats` is the statistics subpackage
itself, and `hsutils.clinical` is the module `hsutils.rules.clinical` under a second name — the same
module object, imported only when first asked for, so `import hsutils` stays cheap.

The names from before the subpackages (`from hsutils import plots`, `hsutils.pipeline:prepare_cache`
in a run YAML, a cache or pickle that names `hsutils.areas`) still give the same module, with a
FutureWarning that names its new place: a user's own notebook keeps running until it is updated.
The repository's own code uses the new paths (tests/test_architecture.py).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from pathlib import Path

__version__ = "0.1.0"

#: The subpackages, lowest layer first.
LAYERS = ("core", "inputs", "rules", "stats", "analysis", "publish", "patterns", "demo", "running")
#: Old names of docs/design.md §4 that stay without a warning → the module they name.
PUBLIC_ALIASES = {"clinical": "hsutils.rules.clinical"}


def moved_to(name: str) -> str | None:
    """The dotted name of the module that was `hsutils.<name>` before the subpackages, or None.

    Found by looking into the subpackages' folders, so there is no second list of modules to keep."""
    if name in PUBLIC_ALIASES:
        return PUBLIC_ALIASES[name]
    if name.startswith("_") or not name.isidentifier():
        return None
    for folder in __path__:
        for layer in LAYERS:
            if (Path(folder) / layer / f"{name}.py").is_file():
                return f"{__name__}.{layer}.{name}"
    return None


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `hsutils.<old name>` as the module at its new place (the same object, not a copy).

    It sits at the end of `sys.meta_path`, so it is asked only for names the normal import did not find."""

    def __init__(self) -> None:
        self._own_specs: dict[str, object] = {}

    def find_spec(self, fullname, path=None, target=None):
        head, _, name = fullname.partition(".")
        if head != __name__ or "." in name or moved_to(name) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        name = spec.name.partition(".")[2]
        new = moved_to(name)
        if name not in PUBLIC_ALIASES:
            pkg = new.rpartition(".")[0]
            warnings.warn(f"{spec.name} は {new} に移りました。import を `from {pkg} import {name}` に書き換えてください"
                          f"（古い名前は今後の版で使えなくなります）。{spec.name} moved to {new}.",
                          FutureWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # module_from_spec() gave the module the alias's spec; give it back its own.
        module.__spec__ = self._own_specs.pop(module.__spec__.name)


if not any(isinstance(f, _OldNames) for f in sys.meta_path):
    sys.meta_path.append(_OldNames())


def __getattr__(name: str):
    """`hsutils.clinical` (and the subpackages) after a bare `import hsutils`."""
    if name in LAYERS or moved_to(name) is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
