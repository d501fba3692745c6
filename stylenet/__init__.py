"""stylenet: train feed-forward style-transfer networks and run them.

    import stylenet
    model = stylenet.load_model("model.safetensors")
    model.stylize(PIL.Image.open("photo.jpg")).save("stylized.png")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


class StylenetError(Exception):
    """An error the user can fix; its message says how. The CLI prints it as one line and exits 2."""


def brief(error: BaseException, limit: int = 300, last: bool = False) -> str:
    """One line of a library's error message for ours: the first (or last) non-empty line, cut to limit."""
    lines = str(error).strip().splitlines()
    return (lines[-1] if last else lines[0])[:limit] if lines else ""


def __getattr__(name: str) -> Any:
    """load_model and StyleModel on first use, so `import stylenet` (and the CLI's --help) stay fast."""
    if name in ("load_model", "StyleModel"):
        from stylenet import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'stylenet' has no attribute {name!r}")
