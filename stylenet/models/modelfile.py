"""What a model file says about itself, and stylenet's own file format: weights in safetensors plus JSON.

Every model stylenet writes (model.safetensors, TorchScript, ONNX, and training checkpoints) carries the same
metadata: the kind (`architecture`), the arguments that rebuild its network, and what the caller adds (the
style, the loss, steps). Loading reads it and rebuilds; it never guesses (diffusers' ConfigMixin, nanoGPT's
model_args).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from stylenet.core.errors import StylenetError, __version__, brief
from stylenet.models.kinds import DEFAULT_KIND, get_kind, kind_of

METADATA_KEY = "stylenet"  # safetensors metadata is str -> str; ours is one JSON document under this key
NETWORK_PREFIX = "network."  # a training system's network in a Lightning checkpoint's state dict


def upgrade_checkpoint_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A training checkpoint's state dict with stylenet 0.1's `transformer.` keys renamed `network.`, in place."""
    for key in [key for key in state if key.startswith("transformer.")]:
        state[NETWORK_PREFIX + key[len("transformer."):]] = state.pop(key)
    return state
FORMAT_VERSION = 1


def model_metadata(network: nn.Module, **fields: Any) -> dict[str, Any]:
    """Metadata every model file carries: its kind and network arguments, plus what the caller adds."""
    kind = kind_of(network)
    return {
        "format_version": FORMAT_VERSION,
        "stylenet_version": __version__,
        "architecture": kind.name,
        "arguments": network.config(),
        **fields,
        **kind.metadata(network),
    }


def write_safetensors(network: nn.Module, metadata: dict[str, Any], path: str | Path) -> None:
    state = {name: tensor.detach().float().cpu().contiguous() for name, tensor in network.state_dict().items()}
    save_file(state, path, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def load_safetensors(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from a stylenet .safetensors file; returns (network in eval mode, metadata)."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as file:
            metadata = json.loads((file.metadata() or {})[METADATA_KEY])
        arguments = metadata["arguments"]
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise StylenetError(f"{path} is not a stylenet safetensors model ({type(error).__name__}: {brief(error)})") from None
    return rebuild(state, arguments, str(path), metadata.get("architecture", DEFAULT_KIND)), metadata


def rebuild(state: dict[str, torch.Tensor], arguments: Any, source: str, kind_name: str = DEFAULT_KIND) -> nn.Module:
    """The network of this kind with these weights, checked before any memory is spent: a tampered or
    mismatched file fails with one line naming the problem, not deep inside torch."""
    try:
        network_class = get_kind(kind_name).network
        if not isinstance(arguments, dict):
            raise TypeError(f"architecture arguments must be a mapping, got {type(arguments).__name__}")
        defaults = getattr(network_class, "state_defaults", None)  # tensors older files of this kind lack
        state = {**(defaults(arguments) if defaults else {}), **state}
        with torch.device("meta"):  # shapes only: no allocation for whatever sizes the file claims
            expected = {name: tuple(t.shape) for name, t in network_class(**arguments).state_dict().items()}
        found = {name: tuple(t.shape) for name, t in state.items()}
        if expected != found:
            wrong = sorted(set(expected) ^ set(found)) or [n for n in expected if expected[n] != found[n]]
            raise ValueError(f"tensors do not match the architecture {arguments} (first mismatch: {wrong[0]})")
        if not all(torch.isfinite(tensor).all() for tensor in state.values()):
            raise ValueError("weights contain NaN or infinite values")
        network = network_class(**arguments)
        network.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, StylenetError) as error:
        raise StylenetError(f"{source}: weights do not fit the network they describe ({brief(error)})") from None
    return network.eval()


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, shapes and fp32 values, in name order: equal for equal weights in any
    file format or device (DDP's ranks compare theirs after training)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
