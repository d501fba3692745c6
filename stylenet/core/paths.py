"""Where the data lives (the photos, paintings and test photos) and how a model file names a painting in it."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> str:
    """$STYLENET_DATA if set; else the nearest shared/data in or above the working directory (../shared/data
    beside a checkout run from its root); else ./data (where `make data` fetches the paintings)."""
    if os.environ.get("STYLENET_DATA"):
        return os.environ["STYLENET_DATA"]
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "shared" / "data").is_dir():
            return str(folder / "shared" / "data")
    return "data"


def data_relative(path: str | Path) -> str:
    """How a model file names a painting: its path relative to the data root (styles/udnie.jpg), else its file
    name alone; never a path on the machine that trained it (the painting's sha256 says which file it was)."""
    path, root = Path(path).resolve(), Path(data_root()).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def painting_path(recorded: str) -> Path | None:
    """The painting a model file names, on this machine: as written (older files: a full path), relative to the
    data root (data_relative), or by its file name in the data root's styles/; None when it is not here."""
    root = Path(data_root())
    for candidate in (Path(recorded), root / recorded, root / "styles" / Path(recorded).name):
        if candidate.is_file():
            return candidate
    return None
