"""The one exception type for errors a user can fix, and the package version that model files record."""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"


class StylenetError(Exception):
    """An error the user can fix; its message says how. The CLI prints it as one line and exits 2."""


def brief(error: BaseException, limit: int = 300, last: bool = False) -> str:
    """One line of a library's error message for ours: the first (or last) non-empty line, cut to limit."""
    lines = str(error).strip().splitlines()
    return (lines[-1] if last else lines[0])[:limit] if lines else ""


def import_optional(module: str, purpose: str, install: str) -> ModuleType:
    """Import an optional library, or say in one line what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise StylenetError(f"{purpose} needs {module}: {install}") from None
