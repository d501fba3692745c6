"""stylenet: train feed-forward style-transfer networks and run them.

    import stylenet
    model = stylenet.load_model("model.safetensors")
    model.stylize(PIL.Image.open("photo.jpg")).save("stylized.png")
"""

from __future__ import annotations

from typing import Any

from stylenet.core.errors import StylenetError, __version__, brief

__all__ = ["StyleModel", "StylenetError", "__version__", "brief", "evaluate", "load_model"]


def __getattr__(name: str) -> Any:
    """load_model, StyleModel and evaluate on first use, so `import stylenet` (and the CLI's --help) stay fast."""
    if name in ("load_model", "StyleModel"):
        from stylenet.running import inference

        return getattr(inference, name)
    if name == "evaluate":
        from stylenet.benchmarks import judge

        return judge.evaluate
    raise AttributeError(f"module 'stylenet' has no attribute {name!r}")
