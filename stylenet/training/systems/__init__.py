"""The training systems (LightningModules), one per model kind: stylenet/training/systems/<kind>.py registers the
system that trains stylenet/models/kinds/<kind>.py's network. Importing this package registers them all."""

from __future__ import annotations

import importlib
import pkgutil

from stylenet.core.errors import StylenetError
from stylenet.training.systems.base import SYSTEMS, StyleSystem, register_system

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def system_for(kind_name: str) -> type[StyleSystem]:
    """The training system of a model kind (model.kind in the config)."""
    if kind_name not in SYSTEMS:
        raise StylenetError(f"model.kind={kind_name}: no training system; valid are {', '.join(sorted(SYSTEMS))}")
    return SYSTEMS[kind_name]


__all__ = ["SYSTEMS", "StyleSystem", "register_system", "system_for"]
