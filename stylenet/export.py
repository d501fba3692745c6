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
from stylenet.adain import AdaINNet, ScriptableAdaIN
from stylenet.transformer import MultiStyleTransformerNet, TransformerNet

Network = TransformerNet | MultiStyleTransformerNet | AdaINNet
# The `architecture` a model file names -> the class its `arguments` rebuild.
ARCHITECTURES: dict[str, type[Network]] = {
    "transformer": TransformerNet, "multistyle": MultiStyleTransformerNet, "adain": AdaINNet,
}

METADATA_KEY = "stylenet"  # safetensors metadata is str -> str; ours is one JSON document under this key
FORMAT_VERSION = 1
# Max absolute pixel difference (of [0, 1]) allowed between an exported file and the module it came from.
# safetensors and TorchScript run the same kernels (measured 0); ONNX Runtime's own kernels differ slightly.
TOLERANCES = {"safetensors": 1e-5, "torchscript": 1e-5, "onnx": 1e-4}
VERIFY_SIZES = ((61, 83), (96, 128))  # two sizes, neither a multiple of 4, so the padding path is checked too
STYLE_SIZE = (72, 56)  # AdaIN's style input in verification: another size again
ONNX_OPSET = 18  # recent enough for dynamic reflect padding; every onnxruntime since 1.14 runs it


def architecture(network: torch.nn.Module) -> str:
    """The name a model file gives its network class: what rebuild() constructs from the arguments."""
    names = {cls: name for name, cls in ARCHITECTURES.items()}
    if type(network) not in names:
        raise TypeError(f"not a stylenet network: {type(network).__name__}")
    return names[type(network)]


def model_metadata(transformer: Network, **fields: Any) -> dict[str, Any]:
    """Metadata every exported model carries: its architecture and arguments, plus what the caller adds."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "stylenet_version": __version__,
        "architecture": architecture(transformer),
        "arguments": transformer.config(),
        **fields,
    }
    if isinstance(transformer, MultiStyleTransformerNet):
        metadata["styles"] = list(transformer.styles)  # what `stylenet stylize --style NAME` accepts
    return metadata


def save_safetensors(transformer: Network, metadata: dict[str, Any], path: str | Path) -> Path:
    """Write weights + metadata atomically, then reload the file and check it reproduces the module."""
    export_model(transformer, metadata, path, "safetensors")
    return Path(path)


def export_model(transformer: Network, metadata: dict[str, Any], path: str | Path, file_format: str) -> float:
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


def write_safetensors(transformer: Network, metadata: dict[str, Any], path: Path) -> None:
    state = {name: tensor.detach().float().cpu().contiguous() for name, tensor in transformer.state_dict().items()}
    save_file(state, path, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def write_torchscript(transformer: Network, metadata: dict[str, Any], path: Path) -> None:
    # Scripted, not traced: tracing would freeze the pad-to-a-multiple-of-4 arithmetic at the example's size.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
        scripted = torch.jit.script(ScriptableAdaIN(transformer) if isinstance(transformer, AdaINNet) else transformer)
    scripted.save(str(path), _extra_files={"stylenet.json": json.dumps(metadata, sort_keys=True)})


def write_onnx(transformer: Network, metadata: dict[str, Any], path: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise StylenetError("ONNX export needs onnx and onnxscript: pip install 'stylenet[onnx]'") from None
    image_dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=16, max=32768),
        3: torch.export.Dim("width", min=16, max=32768),
    }
    generator = torch.Generator().manual_seed(0)
    example = example_inputs(transformer, torch.rand(2, 3, 64, 96), generator)
    # second inputs: multistyle's style weights (1, S), fixed; AdaIN's style image (1, 3, H', W'), any size
    names, dims = ["image"], [image_dims]
    if isinstance(transformer, MultiStyleTransformerNet):
        names, dims = ["image", "style_weights"], [image_dims, None]
    elif isinstance(transformer, AdaINNet):
        style_dims = {2: torch.export.Dim("style_height", min=16, max=32768), 3: torch.export.Dim("style_width", min=16, max=32768)}
        names, dims = ["image", "style_image"], [image_dims, style_dims]
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        program = torch.onnx.export(
            transformer, example, dynamo=True, dynamic_shapes=tuple(dims), opset_version=ONNX_OPSET,
            input_names=names, output_names=["stylized"], external_data=False,
        )
    model = program.model_proto
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps({**metadata, "onnx_opset": ONNX_OPSET}, sort_keys=True)})
    onnx.save(model, str(path))


WRITERS = {"safetensors": write_safetensors, "torchscript": write_torchscript, "onnx": write_onnx}
EXTENSIONS = {"safetensors": ".safetensors", "torchscript": ".torchscript.pt", "onnx": ".onnx"}


def load_safetensors(path: str | Path) -> tuple[Network, dict[str, Any]]:
    """Rebuild the network from a stylenet .safetensors file; returns (network in eval mode, metadata)."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as file:
            metadata = json.loads((file.metadata() or {})[METADATA_KEY])
        arguments = metadata["arguments"]
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise StylenetError(f"{path} is not a stylenet safetensors model ({type(error).__name__}: {brief(error)})") from None
    return rebuild(state, arguments, str(path), metadata.get("architecture", "transformer")), metadata


def rebuild(state: dict[str, torch.Tensor], arguments: Any, source: str, name: str = "transformer") -> Network:
    """The network with these weights, checked before any memory is spent: a tampered or mismatched
    file fails with one line naming the problem, not deep inside torch."""
    try:
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {name!r}; this stylenet knows {', '.join(ARCHITECTURES)}")
        if not isinstance(arguments, dict):
            raise TypeError(f"architecture arguments must be a mapping, got {type(arguments).__name__}")
        with torch.device("meta"):  # shapes only: no allocation for whatever sizes the file claims
            expected = {name: tuple(t.shape) for name, t in ARCHITECTURES[name](**arguments).state_dict().items()}
        found = {name: tuple(t.shape) for name, t in state.items()}
        if expected != found:
            wrong = sorted(set(expected) ^ set(found)) or [n for n in expected if expected[n] != found[n]]
            raise ValueError(f"tensors do not match the architecture {arguments} (first mismatch: {wrong[0]})")
        if not all(torch.isfinite(tensor).all() for tensor in state.values()):
            raise ValueError("weights contain NaN or infinite values")
        network = ARCHITECTURES[name](**arguments)
        network.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as error:
        raise StylenetError(f"{source}: weights do not fit the network they describe ({brief(error)})") from None
    return network.eval()


def example_inputs(network: Network, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """What forward() takes besides the images: style weights (1, S) for multistyle, a style image for AdaIN."""
    if isinstance(network, MultiStyleTransformerNet):
        return images, torch.rand(1, len(network.styles), generator=generator).softmax(-1)  # a blend of all
    if isinstance(network, AdaINNet):
        return images, torch.rand(1, 3, *STYLE_SIZE, generator=generator)
    return (images,)


def verify(
    reference: Network, loaded: Callable[..., torch.Tensor], tolerance: float = 1e-5,
    sizes: tuple[tuple[int, int], ...] = VERIFY_SIZES,
) -> float:
    """Run both on the same random inputs at each size; raise if they differ by more than tolerance."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    was_training, device = reference.training, next(reference.parameters()).device
    reference.eval()
    with torch.no_grad():
        for height, width in sizes:
            inputs = example_inputs(reference, torch.rand(2, 3, height, width, generator=generator), generator)
            expected = reference(*(x.to(device) for x in inputs)).float().cpu()
            worst = max(worst, (loaded(*inputs).float().cpu() - expected).abs().max().item())
    reference.train(was_training)
    if not worst <= tolerance:  # also catches NaN
        raise StylenetError(f"exported model differs from the module by {worst:.2e} > {tolerance:.0e}; not written")
    return worst
