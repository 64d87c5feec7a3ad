"""`--set key=value` overrides: parsing and applying them to nested config dicts."""
from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, Tuple

import yaml


class OverrideError(ValueError):
    pass


def parse_override(text: str) -> Tuple[str, Any]:
    """``"search.epochs=3"`` -> ``("search.epochs", 3)``; values are read as YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OverrideError(f"--set {text!r}: expected key=value, e.g. --set search.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise OverrideError(f"--set {text!r}: the value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except RecursionError:
        raise OverrideError(f"--set {key}=...: the value is nested too deeply") from None
    except (ValueError, IndexError, TypeError, OverflowError) as exc:  # PyYAML on e.g. `!!int ` alone
        raise OverrideError(f"--set {text!r}: the value is not valid YAML ({type(exc).__name__}: {exc})") from None
    return key, value


def apply_overrides(config: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """A copy of ``config`` with each dotted ``key=value`` set (intermediate dicts created)."""
    out = copy.deepcopy(config)
    for text in overrides:
        key, value = parse_override(text)
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise OverrideError(f"--set {text!r}: {'.'.join(parts[:i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return out
