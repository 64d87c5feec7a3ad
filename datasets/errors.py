"""The one exception type of the data side.

Every problem with input data (a missing root, an empty split, an undecodable image, a wrong
folder layout, a bad setting such as sigma <= 0, a stale or corrupt cache, a failed download)
raises :class:`DatasetError` with a message that names the file or the setting at fault.
It subclasses ``ValueError`` so callers that already catch bad values keep working.
"""
from __future__ import annotations


class DatasetError(ValueError):
    """Bad or missing data, or a bad data setting; the message names the file or setting."""


class CacheError(DatasetError):
    """A decoded-image cache file that must not be trusted (stale, truncated or corrupt)."""
