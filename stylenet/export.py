"""Standalone model files: the transformer's weights plus JSON metadata that describes them."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from stylenet import StylenetError, __version__, brief
from stylenet.files import atomic_write
from stylenet.transformer import TransformerNet

METADATA_KEY = "stylenet"  # safetensors metadata is str -> str; ours is one JSON document under this key
FORMAT_VERSION = 1
# Max absolute pixel difference (of [0, 1]) allowed between an exported file and the module it came from.
# safetensors and TorchScript run the same kernels (measured 0); ONNX Runtime's own kernels differ slightly.
TOLERANCES = {"safetensors": 1e-5, "torchscript": 1e-5, "onnx": 1e-4}
VERIFY_SIZES = ((61, 83), (96, 128))  # two sizes, neither a multiple of 4, so the padding path is checked too
ONNX_OPSET = 18  # recent enough for dynamic reflect padding; every onnxruntime since 1.14 runs it


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
    export_model(transformer, metadata, path, "safetensors")
    return Path(path)


def export_model(transformer: TransformerNet, metadata: dict[str, Any], path: str | Path, file_format: str) -> float:
    """Write the network as safetensors, TorchScript or ONNX, atomically and verified; returns the max difference.

    The file is written to a temp name, loaded back the way a user would load it, and run beside the module on
    the same images at two sizes; only if they agree within TOLERANCES[file_format] is it renamed into place.
    """
    from stylenet.formats import load_network  # formats reads what this module writes

    if file_format not in WRITERS:
        raise StylenetError(f"unknown export format '{file_format}'; valid: {', '.join(WRITERS)}")
    transformer = transformer.cpu().eval()
    with atomic_write(path) as tmp:
        WRITERS[file_format](transformer, metadata, tmp)
        loaded, _ = load_network(tmp)
        return verify(transformer, loaded, TOLERANCES[file_format])


def write_safetensors(transformer: TransformerNet, metadata: dict[str, Any], path: Path) -> None:
    state = {name: tensor.detach().float().cpu().contiguous() for name, tensor in transformer.state_dict().items()}
    save_file(state, path, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def write_torchscript(transformer: TransformerNet, metadata: dict[str, Any], path: Path) -> None:
    # Scripted, not traced: tracing would freeze the pad-to-a-multiple-of-4 arithmetic at the example's size.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
        scripted = torch.jit.script(transformer)
    scripted.save(str(path), _extra_files={"stylenet.json": json.dumps(metadata, sort_keys=True)})


def write_onnx(transformer: TransformerNet, metadata: dict[str, Any], path: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise StylenetError("ONNX export needs onnx and onnxscript: pip install 'stylenet[onnx]'") from None
    dims = {"images": {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=16, max=32768),
        3: torch.export.Dim("width", min=16, max=32768),
    }}
    example = torch.rand(2, 3, 64, 96)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        program = torch.onnx.export(
            transformer, (example,), dynamo=True, dynamic_shapes=dims, opset_version=ONNX_OPSET,
            input_names=["image"], output_names=["stylized"], external_data=False,
        )
    model = program.model_proto
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps({**metadata, "onnx_opset": ONNX_OPSET}, sort_keys=True)})
    onnx.save(model, str(path))


WRITERS = {"safetensors": write_safetensors, "torchscript": write_torchscript, "onnx": write_onnx}
EXTENSIONS = {"safetensors": ".safetensors", "torchscript": ".torchscript.pt", "onnx": ".onnx"}


def load_safetensors(path: str | Path) -> tuple[TransformerNet, dict[str, Any]]:
    """Rebuild the TransformerNet from a stylenet .safetensors file; returns (network in eval mode, metadata)."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as file:
            metadata = json.loads((file.metadata() or {})[METADATA_KEY])
        arguments = metadata["arguments"]
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise StylenetError(f"{path} is not a stylenet safetensors model ({type(error).__name__}: {brief(error)})") from None
    return rebuild(state, arguments, str(path)), metadata


def rebuild(state: dict[str, torch.Tensor], arguments: Any, source: str) -> TransformerNet:
    """A TransformerNet with these weights, checked before any memory is spent: a tampered or mismatched
    file fails with one line naming the problem, not deep inside torch."""
    try:
        if not isinstance(arguments, dict):
            raise TypeError(f"architecture arguments must be a mapping, got {type(arguments).__name__}")
        with torch.device("meta"):  # shapes only: no allocation for whatever sizes the file claims
            expected = {name: tuple(t.shape) for name, t in TransformerNet(**arguments).state_dict().items()}
        found = {name: tuple(t.shape) for name, t in state.items()}
        if expected != found:
            wrong = sorted(set(expected) ^ set(found)) or [n for n in expected if expected[n] != found[n]]
            raise ValueError(f"tensors do not match the architecture {arguments} (first mismatch: {wrong[0]})")
        if not all(torch.isfinite(tensor).all() for tensor in state.values()):
            raise ValueError("weights contain NaN or infinite values")
        network = TransformerNet(**arguments)
        network.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as error:
        raise StylenetError(f"{source}: weights do not fit the network they describe ({brief(error)})") from None
    return network.eval()


def verify(
    reference: TransformerNet, loaded: Callable[[torch.Tensor], torch.Tensor], tolerance: float = 1e-5,
    sizes: tuple[tuple[int, int], ...] = VERIFY_SIZES,
) -> float:
    """Run both on the same random images at each size; raise if they differ by more than tolerance."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    was_training, device = reference.training, next(reference.parameters()).device
    reference.eval()
    with torch.no_grad():
        for height, width in sizes:
            images = torch.rand(2, 3, height, width, generator=generator)
            expected = reference(images.to(device)).float().cpu()
            worst = max(worst, (loaded(images).float().cpu() - expected).abs().max().item())
    reference.train(was_training)
    if not worst <= tolerance:  # also catches NaN
        raise StylenetError(f"exported model differs from the module by {worst:.2e} > {tolerance:.0e}; not written")
    return worst
