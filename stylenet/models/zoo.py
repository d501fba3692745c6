"""Ready-made models: trained networks shipped inside the package, loadable by name wherever a model file is.

    stylenet stylize photo.jpg --model starry_night
    stylenet.load_model("starry_night")

Each is stylenet/pretrained/NAME.safetensors: fp16 weights plus the metadata every model file carries, with
the recipe that trained it and its `stylenet eval` figures added by `scripts/zoo.py pack`. A file path always
wins over a name, so a file called `starry_night` in the working directory is still that file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from stylenet.core.errors import StylenetError

PRETRAINED = Path(__file__).parent.parent / "pretrained"
SUFFIX = ".safetensors"


def names() -> list[str]:
    """The names of the models this installation ships, sorted."""
    return sorted(path.name[: -len(SUFFIX)] for path in PRETRAINED.glob("*" + SUFFIX))


def path_of(name: str) -> Path:
    """The shipped file of this name; an unknown name is a one-line error listing the names."""
    if name not in names():
        raise StylenetError(f"no ready-made model named {name!r}; stylenet ships {', '.join(names()) or 'none'} "
                            f"(`stylenet models` lists them), or give a model file's path")
    return PRETRAINED / (name + SUFFIX)


def resolve(model: str | Path) -> Path:
    """A model argument as a file: an existing path as it is, else a ready-made model's name.

    Something that looks like a path (a folder or a suffix) and is missing is "model not found"; a bare word
    that is neither a file nor a shipped name is the unknown-name error, which lists the names."""
    path = Path(model)
    if path.is_file():
        return path
    if path.exists():
        raise StylenetError(f"{path} is a folder, not a model file (give its model.safetensors)")
    if len(path.parts) == 1 and not path.suffix:
        return path_of(str(model))
    raise StylenetError(f"model not found: {path} (give a model file, or a ready-made model's name: {', '.join(names())})")


def metadata_of(name: str) -> dict[str, Any]:
    """A shipped model's metadata, read from its header only."""
    with safe_open(str(path_of(name)), framework="pt") as file:
        return json.loads((file.metadata() or {})["stylenet"])


def table() -> list[dict[str, Any]]:
    """One row per shipped model: name, painting, kind, size (MB), eval placement and training."""
    rows = []
    for name in names():
        metadata = metadata_of(name)
        judged = metadata.get("eval") or {}
        training = metadata.get("training") or {}
        rows.append({  # names() came from these files: read them directly, not through path_of's lookup
            "name": name,
            "painting": (metadata.get("style") or {}).get("name", "?"),
            "kind": metadata.get("architecture", "?"),
            "megabytes": round((PRETRAINED / (name + SUFFIX)).stat().st_size / 1e6, 2),
            "placement": judged.get("placement_label", "not evaluated"),
            "recipe": metadata.get("recipe", "?"),
            "minutes": round(training["seconds"] / 60, 1) if "seconds" in training else None,
        })
    return rows
