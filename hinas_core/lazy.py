"""Package attributes that load on first use (PEP 562), so that importing a package is cheap."""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Iterable, Mapping, Tuple


def lazy_exports(package: str, modules: Mapping[str, Iterable[str]]) -> Tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``modules[sub]`` is imported
    from the submodule ``sub`` (relative to ``package``) when it is first read, then kept."""
    where = {name: sub for sub, names in modules.items() for name in names}
    module = sys.modules[package]

    def __getattr__(name: str):
        sub = where.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(sub, package), name)
        setattr(module, name, value)
        return value

    def __dir__():
        return sorted(set(vars(module)) | set(where))

    return __getattr__, __dir__
