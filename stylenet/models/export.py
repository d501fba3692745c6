"""Write a network as safetensors, TorchScript or ONNX, each checked against the module before it is kept.

Layers: registry/kinds <- modelfile (metadata, safetensors) <- formats (readers) <- export (writers, verify).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylenet.core.errors import StylenetError
from stylenet.models.registry import StyleInput
from stylenet.core.files import atomic_write
from stylenet.models.formats import load_network
from stylenet.models.kinds import kind_of
from stylenet.models.modelfile import METADATA_KEY, write_safetensors

# Max absolute pixel difference (of [0, 1]) allowed between an exported file and the module it came from.
# safetensors and TorchScript run the same kernels (measured 0); ONNX Runtime's own kernels differ slightly.
TOLERANCES = {"safetensors": 1e-5, "torchscript": 1e-5, "onnx": 1e-4}
VERIFY_SIZES = ((61, 83), (96, 128))  # two sizes, neither a multiple of 4, so the padding path is checked too
ONNX_OPSET = 18  # recent enough for dynamic reflect padding; every onnxruntime since 1.14 runs it


def save_safetensors(network: nn.Module, metadata: dict[str, Any], path: str | Path) -> Path:
    """Write weights + metadata atomically, then reload the file and check it reproduces the module."""
    export_model(network, metadata, path, "safetensors")
    return Path(path)


def export_model(network: nn.Module, metadata: dict[str, Any], path: str | Path, file_format: str) -> float:
    """Write the network as safetensors, TorchScript or ONNX, atomically and verified; returns the max difference.

    The file is written to a temp name, loaded back the way a user would load it, and run beside the module on
    the same images at two sizes; only if they agree within TOLERANCES[file_format] is it renamed into place.
    """
    if file_format not in WRITERS:
        raise StylenetError(f"unknown export format '{file_format}'; valid: {', '.join(WRITERS)}")
    network = network.cpu().eval()
    with atomic_write(path) as tmp:
        WRITERS[file_format](network, metadata, tmp)
        loaded, _ = load_network(tmp)
        return verify(network, loaded, TOLERANCES[file_format])


def write_torchscript(network: nn.Module, metadata: dict[str, Any], path: Path) -> None:
    # Scripted, not traced: tracing would freeze the pad-to-a-multiple-of-4 arithmetic at the example's size.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
        scripted = torch.jit.script(kind_of(network).scriptable(network))
    scripted.save(str(path), _extra_files={"stylenet.json": json.dumps(metadata, sort_keys=True)})


def write_onnx(network: nn.Module, metadata: dict[str, Any], path: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise StylenetError("ONNX export needs onnx and onnxscript: pip install 'stylenet[onnx]'") from None
    kind = kind_of(network)
    if kind.no_onnx:
        raise StylenetError(f"a {kind.name} model has no ONNX export: {kind.no_onnx}; use --format torchscript or safetensors")
    image_dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=16, max=32768),
        3: torch.export.Dim("width", min=16, max=32768),
    }
    generator = torch.Generator().manual_seed(0)
    example = kind.example_inputs(network, torch.rand(2, 3, 64, 96), generator)
    dims: list[dict[int, Any] | None] = [image_dims]
    if kind.style_input is not StyleInput.NONE:  # multistyle's style weights (1, S) are fixed; AdaIN's style image is any size
        style_dims = kind.onnx_style_dims
        dims.append({axis: torch.export.Dim(name, min=16, max=32768) for axis, name in style_dims.items()} if style_dims else None)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        program = torch.onnx.export(
            network, example, dynamo=True, dynamic_shapes=tuple(dims), opset_version=ONNX_OPSET,
            input_names=kind.input_names(), output_names=["stylized"], external_data=False,
        )
    model = program.model_proto
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps({**metadata, "onnx_opset": ONNX_OPSET}, sort_keys=True)})
    onnx.save(model, str(path))


WRITERS = {"safetensors": write_safetensors, "torchscript": write_torchscript, "onnx": write_onnx}
EXTENSIONS = {"safetensors": ".safetensors", "torchscript": ".torchscript.pt", "onnx": ".onnx"}


def verify(
    reference: nn.Module, loaded: Callable[..., torch.Tensor], tolerance: float = 1e-5,
    sizes: tuple[tuple[int, int], ...] = VERIFY_SIZES,
) -> float:
    """Run both on the same random inputs at each size; raise if they differ by more than tolerance."""
    kind = kind_of(reference)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    was_training, device = reference.training, next(reference.parameters()).device
    reference.eval()
    with torch.no_grad():
        for height, width in sizes:
            inputs = kind.example_inputs(reference, torch.rand(2, 3, height, width, generator=generator), generator)
            expected = reference(*(x.to(device) for x in inputs)).float().cpu()
            worst = max(worst, (loaded(*inputs).float().cpu() - expected).abs().max().item())
    reference.train(was_training)
    if not worst <= tolerance:  # also catches NaN
        raise StylenetError(f"exported model differs from the module by {worst:.2e} > {tolerance:.0e}; not written")
    return worst
