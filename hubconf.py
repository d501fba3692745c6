"""torch.hub entry points: `torch.hub.load(repo_dir, "starry_night", source="local")` for a ready-made model,
or `torch.hub.load(repo_dir, "stylenet", PATH, source="local")` for any model file.

The model file is passed positionally or as path=PATH: torch.hub.load's own second parameter is named
`model` (the entry point's name), so a `model=` keyword cannot reach this function.
"""

from __future__ import annotations

from collections.abc import Callable

from stylenet.models import zoo

dependencies = ["torch", "safetensors", "PIL", "numpy"]


def stylenet(path: str, device: str = "auto", precision: str = "fp32"):
    """A ready StyleModel from any stylenet model file (.safetensors, .ckpt, TorchScript, ONNX, pytorch/examples .pth)
    or a ready-made model's name.

    model = torch.hub.load(repo_dir, "stylenet", "model.safetensors", source="local")
    model.stylize(PIL.Image.open("photo.jpg")).save("stylized.png")
    """
    from stylenet.running.inference import load_model

    return load_model(path, device, precision)


def _ready_made(name: str) -> Callable:
    def entry(device: str = "auto", precision: str = "fp32"):
        from stylenet.running.inference import load_model

        return load_model(zoo.path_of(name), device, precision)

    entry.__name__ = name
    entry.__doc__ = f"stylenet's ready-made {name} model (MODELS.md): model.stylize(PIL.Image.open('photo.jpg'))"
    return entry


for _name in zoo.names():  # one entry point per shipped model: torch.hub.list(repo_dir) shows them
    globals()[_name] = _ready_made(_name)
