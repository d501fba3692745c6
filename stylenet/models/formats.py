"""Read every model file format stylenet runs, telling the format from the file's bytes, not its name.

Formats: a Lightning training checkpoint (.ckpt), stylenet's .safetensors, TorchScript, ONNX (run with
onnxruntime), and a bare state dict: ours, or pytorch/examples fast_neural_style's (.pth/.model, the format
of the widely shared pretrained models). Pickled files are read with weights_only=True only.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stylenet.core.errors import StylenetError, brief
from stylenet.models.kinds import DEFAULT_KIND, KINDS, get_kind
from stylenet.models.modelfile import (
    METADATA_KEY, NETWORK_PREFIX, load_safetensors, model_metadata, rebuild, upgrade_checkpoint_state,
)

Loaded = tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]  # (network, metadata)

def detect_format(path: Path) -> str:
    """'torchscript', 'torch' (torch.save: checkpoint or state dict), 'safetensors' or 'onnx', from the bytes."""
    with path.open("rb") as file:
        head = file.read(16)
    if head[:2] == b"PK":  # a zip: torch.save's container, or TorchScript's (which also holds code/)
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            raise StylenetError(f"{path} is a damaged zip file, not a readable model (re-download or re-export it)") from None
        return "torchscript" if any("/code/" in name or name.endswith("constants.pkl") for name in names) else "torch"
    # safetensors first: its 8-byte little-endian header length can itself start with 0x80, a pickle's first byte
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        return "safetensors"
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy (pre-1.6) format
        return "torch"
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version) as a varint: how every ONNX model starts
        return "onnx"
    raise StylenetError(
        f"{path} is not a model stylenet knows: expected a .ckpt, .safetensors, TorchScript, ONNX or state dict file"
    )


def torch_load(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise StylenetError(
            f"refusing to load {path}: it holds Python objects beyond tensors, which could run code "
            f"({brief(error, 200, last=True)}); export it to .safetensors where it was made"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise StylenetError(f"{path} is not a readable torch file ({type(error).__name__}: {error})") from None


def with_format(stored: dict[str, Any], file_format: str) -> dict[str, Any]:
    """A file's own metadata plus "format": what file it was read from (safetensors, checkpoint, state_dict,
    torchscript, onnx). "kind" names the architecture's registry entry everywhere else; files exported before the
    two were told apart may hold their source file's format under "kind" (a stale one): it is dropped."""
    return {**{key: value for key, value in stored.items() if key not in ("kind", "format")}, "format": file_format}


def load_network(path: Path) -> Loaded:
    """(network, metadata) from any model file; the network maps (B, 3, H, W) in [0, 1] to the same, and
    metadata["format"] says which file format it came from."""
    file_format = detect_format(path)
    if file_format == "safetensors":
        network, metadata = load_safetensors(path)
        return network, with_format(metadata, "safetensors")
    if file_format == "torchscript":
        return load_torchscript(path)
    if file_format == "onnx":
        return load_onnx(path)
    content = torch_load(path)
    if isinstance(content, dict) and "state_dict" in content and "hyper_parameters" in content:
        return from_checkpoint(content)
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return from_state_dict(path, content)
    raise StylenetError(f"{path} is a torch file but neither a stylenet checkpoint nor a transformer state dict")


def from_checkpoint(checkpoint: dict[str, Any]) -> Loaded:
    """The network from a Lightning checkpoint written by stylenet's training: its metadata says what it holds."""
    metadata = checkpoint.get(METADATA_KEY)
    if not isinstance(metadata, dict):  # written before checkpoints carried metadata
        metadata = legacy_checkpoint_metadata(checkpoint["hyper_parameters"])
    trained = upgrade_checkpoint_state(checkpoint["state_dict"])
    state = {key[len(NETWORK_PREFIX):]: value for key, value in trained.items() if key.startswith(NETWORK_PREFIX)}
    network = rebuild(state, metadata.get("arguments"), "training checkpoint", metadata.get("architecture", DEFAULT_KIND))
    return network, with_format({**metadata, "steps": checkpoint.get("global_step")}, "checkpoint")


def legacy_checkpoint_metadata(hparams: dict[str, Any]) -> dict[str, Any]:
    """Metadata for a checkpoint from stylenet 0.1 before checkpoints carried it, read from the training
    system's hyperparameters of that time (the only place that still tells a kind from parameter names)."""
    if "sample_styles" in hparams:  # stylenet 0.1's AdaINModule
        kind, arguments = "adain", {"channels": hparams["channels"], "encoder_weights": hparams["loss_weights"]}
        style: dict[str, Any] = {"name": "any (--style-image)"}
    else:
        arguments = {"channels": hparams["channels"], "num_residual_blocks": hparams["num_residual_blocks"]}
        kind = "multistyle" if isinstance(hparams.get("style_name"), list) else "transformer"
        if kind == "multistyle":
            arguments["styles"] = list(hparams["style_name"])
        style = {"name": hparams.get("style_name"), "image": hparams.get("style_image"), "size": hparams.get("style_size")}
    with torch.device("meta"):
        network = get_kind(kind).network(**arguments)
    return model_metadata(network, style=style)


def from_state_dict(path: Path, state: dict[str, torch.Tensor]) -> Loaded:
    """A bare state dict (no metadata): the first kind whose reader knows its layer names rebuilds it."""
    for kind in KINDS.values():
        reading = kind.read_state_dict(state, str(path)) if kind.read_state_dict else None
        if reading is not None:
            arguments, weights, source = reading
            network = rebuild(weights, arguments, str(path), kind.name)
            return network, with_format(model_metadata(network, source=source, style={"name": path.stem}), "state_dict")
    raise StylenetError(f"{path}: a state dict of an unknown network (first key: {next(iter(state))})")


def load_torchscript(path: Path) -> Loaded:
    extra_files = {"stylenet.json": ""}
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still the format many deploy
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")
            network = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
    except RuntimeError as error:
        raise StylenetError(f"{path} is not a loadable TorchScript file ({brief(error, 200)})") from None
    metadata = json.loads(extra_files["stylenet.json"] or "{}")
    return network.eval(), with_format(metadata, "torchscript")


class OnnxNetwork:
    """An ONNX model run by onnxruntime, called like the torch module it was exported from."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise StylenetError("ONNX models need onnxruntime: pip install 'stylenet[onnx]'") from None
        try:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # torch's threads (OMP_NUM_THREADS, a Ray worker's CPUs)
            self.session = onnxruntime.InferenceSession(str(path), options, providers=self.providers(onnxruntime))
        except Exception as error:
            raise StylenetError(f"{path} is not a loadable ONNX model ({brief(error, 200)})") from None
        self.input_names = [node.name for node in self.session.get_inputs()]

    @staticmethod
    def providers(onnxruntime: Any) -> list[str]:
        available = onnxruntime.get_available_providers()
        return [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]

    def metadata(self) -> dict[str, Any]:
        return json.loads(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}"))

    def __call__(self, images: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        """images, plus the style weights (multistyle) or style image (AdaIN) the model's second input takes."""
        arrays = [tensor.detach().float().cpu().contiguous().numpy() for tensor in (images, *more)]
        if len(arrays) != len(self.input_names):
            raise StylenetError(f"this ONNX model takes {len(self.input_names)} input(s): {', '.join(self.input_names)}")
        outputs = self.session.run(None, dict(zip(self.input_names, arrays)))
        return torch.from_numpy(outputs[0]).to(images.device)


def load_onnx(path: Path) -> Loaded:
    network = OnnxNetwork(path)
    return network, with_format(network.metadata(), "onnx")
