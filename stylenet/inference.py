"""Load a trained model and stylize images: imports neither Hydra nor Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stylenet import StylenetError
from stylenet.export import load_safetensors
from stylenet.images import to_pil, to_tensor
from stylenet.transformer import TransformerNet


class StyleModel:
    """A trained transformer net with its metadata; stylize() maps a PIL image to a PIL image."""

    def __init__(self, network: TransformerNet, metadata: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.network, self.metadata, self.device = network.eval().to(device), metadata, torch.device(device)

    @torch.inference_mode()
    def stylize(self, image: Image.Image) -> Image.Image:
        """Stylize one image at its own size."""
        if min(image.size) < 8:
            raise StylenetError(f"image is {image.size[0]}x{image.size[1]}; stylize needs both sides >= 8 px")
        batch = to_tensor(image).unsqueeze(0).to(self.device)  # (1, 3, H, W)
        return to_pil(self.network(batch))


def load_checkpoint(path: Path) -> tuple[TransformerNet, dict[str, Any]]:
    """The transformer from a training checkpoint (.ckpt), loaded with weights_only=True."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    network = TransformerNet(hparams["channels"], hparams["num_residual_blocks"])
    prefix = "transformer."
    network.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    metadata = {"style": {"name": hparams.get("style_name")}, "steps": checkpoint.get("global_step"), **network.config()}
    return network, metadata


def load_model(path: str | Path, device: str | torch.device = "cpu") -> StyleModel:
    """Load a stylenet model: an exported .safetensors file or a training checkpoint (.ckpt)."""
    path = Path(path)
    if not path.is_file():
        raise StylenetError(f"model not found: {path}")
    with path.open("rb") as file:
        head = file.read(8)
    if head[:2] == b"PK":  # torch.save's zip container: a Lightning checkpoint
        try:
            network, metadata = load_checkpoint(path)
        except Exception as error:  # noqa: BLE001 - any failure to read a foreign file is the user's to fix
            raise StylenetError(f"{path} is not a readable stylenet checkpoint ({type(error).__name__}: {error})") from None
    else:
        network, metadata = load_safetensors(path)
    return StyleModel(network, metadata, device)
