"""hinas: HiNAS neural architecture search for image denoising, as a Ray Tune pipeline.

Installed, ``hinas.datasets`` and ``hinas.pipeline`` are the repository's ``datasets/`` and
``pipeline/`` folders (see pyproject.toml). Run from an uninstalled source checkout - e.g. the
working directory ``ray job submit --working-dir .`` uploads to a cluster - the same names are
resolved from the checkout itself.
"""
import os as _os

__version__ = "0.1.0"

_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if all(_os.path.isfile(_os.path.join(_root, *p)) for p in (("pyproject.toml",), ("pipeline", "cli.py"), ("datasets", "__init__.py"))):
    __path__.append(_root)  # noqa: F821 - a package's __path__; only in a hinas source checkout
