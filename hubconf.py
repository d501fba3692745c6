"""torch.hub entry point: `torch.hub.load(repo_dir, "stylenet", PATH, source="local")`.

The model file is passed positionally or as path=PATH: torch.hub.load's own second parameter is named
`model` (the entry point's name), so a `model=` keyword cannot reach this function.
"""

from __future__ import annotations

dependencies = ["torch", "safetensors", "PIL", "numpy"]


def stylenet(path: str, device: str = "auto", precision: str = "fp32"):  # noqa: ANN201 - hub entry point
    """A ready StyleModel from any stylenet model file (.safetensors, .ckpt, TorchScript, ONNX, pytorch/examples .pth).

    model = torch.hub.load(repo_dir, "stylenet", "model.safetensors", source="local")
    model.stylize(PIL.Image.open("photo.jpg")).save("stylized.png")
    """
    from stylenet.inference import load_model

    return load_model(path, device, precision)
