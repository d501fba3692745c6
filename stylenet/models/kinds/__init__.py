"""One file per model kind: its network and its ModelKind entry. Importing this package registers them all.

Adding a kind is a new file here (the network and its `register_kind(...)`), its training system in
stylenet/training/systems/, and its config in conf/model/: nothing else in stylenet changes.
"""

from __future__ import annotations

import importlib
import pkgutil

from stylenet.models.registry import DEFAULT_KIND, KINDS, ModelKind, find_kind, get_kind, kind_of, presets, register_kind

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DEFAULT_KIND", "KINDS", "ModelKind", "find_kind", "get_kind", "kind_of", "presets", "register_kind"]
