"""Standalone model files: the transformer's weights plus JSON metadata that describes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from stylenet import StylenetError, __version__
from stylenet.files import atomic_write
from stylenet.transformer import TransformerNet

METADATA_KEY = "stylenet"  # safetensors metadata is str -> str; ours is one JSON document under this key
FORMAT_VERSION = 1
VERIFY_TOLERANCE = 1e-5  # max absolute pixel difference (of [0, 1]) allowed between file and module


def model_metadata(transformer: TransformerNet, **fields: Any) -> dict[str, Any]:
    """Metadata every exported model carries: its architecture and arguments, plus what the caller adds."""
    return {
        "format_version": FORMAT_VERSION,
        "stylenet_version": __version__,
        "architecture": "transformer",
        "arguments": transformer.config(),
        **fields,
    }


def save_safetensors(transformer: TransformerNet, metadata: dict[str, Any], path: str | Path) -> Path:
    """Write weights + metadata atomically, then reload the file and check it reproduces the module."""
    path = Path(path)
    state = {name: tensor.detach().float().cpu().contiguous() for name, tensor in transformer.state_dict().items()}
    with atomic_write(path) as tmp:
        save_file(state, tmp, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
        verify(transformer, load_safetensors(tmp)[0])
    return path


def load_safetensors(path: str | Path) -> tuple[TransformerNet, dict[str, Any]]:
    """Rebuild the TransformerNet from a stylenet .safetensors file; returns (network in eval mode, metadata)."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as file:
            metadata = json.loads((file.metadata() or {})[METADATA_KEY])
        network = TransformerNet(**metadata["arguments"])
        network.load_state_dict(state)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise StylenetError(f"{path} is not a stylenet safetensors model ({type(error).__name__}: {error})") from None
    return network.eval(), metadata


def verify(reference: TransformerNet, loaded: TransformerNet, sizes: tuple[int, ...] = (64, 96)) -> float:
    """Run both networks on the same random images at two sizes; raise if they differ by more than the tolerance."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    was_training, device = reference.training, next(reference.parameters()).device
    reference.eval()
    with torch.no_grad():
        for size in sizes:
            images = torch.rand(1, 3, size, size + 8, generator=generator)
            expected = reference(images.to(device)).float().cpu()
            worst = max(worst, (loaded.to(torch.float32)(images) - expected).abs().max().item())
    reference.train(was_training)
    if worst > VERIFY_TOLERANCE:
        raise StylenetError(f"exported model differs from the module by {worst:.2e} > {VERIFY_TOLERANCE:.0e}")
    return worst
