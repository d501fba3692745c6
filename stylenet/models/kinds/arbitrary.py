"""Any painting at run time through a predicted style vector (Ghiasi, Lee, Kudlur, Dumoulin, Shlens 2017,
"Exploring the structure of a real-time, arbitrary neural artistic stylization network": what Magenta ships).

painting -> frozen VGG-19 (relu1_1..relu4_1) -> each channel's mean and standard deviation -> a linear
bottleneck -> a style vector of `style_dims` numbers -> the scales and shifts of every instance norm of a
conditional TransformerNet -> the stylized photo. Ghiasi et al. predicted from Inception-v3; here the predictor
reads the loss network's VGG-19 (whose weights travel in every model file), so inference needs nothing else.

A bound painting (or a blend: style vectors average) turns the network into a plain TransformerNet
(specialize), so tiling, bf16, torch.compile and `stylenet export --style-image` work as for a per-painting
model, at its speed: the painting is read once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.models.kinds.adain import ENCODER_LAYERS, ScriptableEncoder, bound_file, channel_stats, frozen_encoder
from stylenet.models.kinds.multistyle import ConditionalInstanceNorm2d, ConditionalTransformerNet
from stylenet.models.loss_network import VGG_BLOCKS
from stylenet.models.registry import StyleInput
from stylenet.models.registry import ConfigMixin, ModelKind, register_kind

STYLE_SIZE = 256  # long side (px) of the painting the predictor reads: the scale its training crops had
STATISTICS = 2 * sum(VGG_BLOCKS["vgg19"][block][0] for block in range(len(ENCODER_LAYERS)))  # mean and std: 1920


def style_statistics(features: list[torch.Tensor]) -> torch.Tensor:
    """[relu1_1..relu4_1: (B, C, H, W)] -> (B, 1920): log(1 + x) of each channel's mean and std (the four layers'
    scales differ 25x: Caffe's relu4_1 averages ~500), standardized over the 1920 numbers of each painting."""
    parts: list[torch.Tensor] = []
    for features_of_layer in features:
        mean, std = channel_stats(features_of_layer)
        parts += [mean.flatten(1), std.flatten(1)]
    statistics = torch.log1p(torch.cat(parts, 1).clamp_min(0))
    return F.layer_norm(statistics, statistics.shape[-1:])


def unit_vector(vector: torch.Tensor) -> torch.Tensor:
    """The style vector the norms read, of length 1. A bound on its size bounds how far one Adam step moves every
    norm's scale (by at most lr x sqrt(style_dims)): with raw vectors of size ~35 the first CPU run's norms
    collapsed within 300 steps, every output one flat grey."""
    return F.normalize(vector.float(), dim=-1).to(vector.dtype)


def with_constant(vector: torch.Tensor) -> torch.Tensor:
    """(B, style_dims) -> (B, style_dims + 1): a style vector and the constant 1 whose row is each norm's own."""
    return torch.cat([vector, vector.new_ones(vector.shape[0], 1)], 1)


class ArbitraryStyleNet(ConfigMixin, nn.Module):
    """(content (B, 3, H, W), style (1 or B, 3, H', W')) in [0, 1] -> stylized (B, 3, H, W) in [0, 1].

    The style vector v (style_dims) is extended by a constant 1, so each norm's scale is v @ W + w0 and its
    shift v @ B + b0: at initialization (W, B small) every painting starts from plain instance norm.
    encoder_state: the VGG-19 conv weights; None leaves placeholders for a model file's weights.
    """

    config_ignore = ("encoder_state",)  # the VGG weights: in the state dict, not the config

    def __init__(
        self, channels: int = 16, num_residual_blocks: int = 5, style_dims: int = 100,
        encoder_weights: str = "caffe", encoder_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(style_dims, int) or isinstance(style_dims, bool) or not 1 <= style_dims <= 4096:
            raise ValueError(f"style_dims must be an integer from 1 to 4096, got {style_dims!r}")
        self.channels, self.num_residual_blocks = channels, num_residual_blocks
        self.style_dims, self.encoder_weights = style_dims, encoder_weights
        self.encoder = frozen_encoder(encoder_weights, encoder_state)
        self.bottleneck = nn.Linear(STATISTICS, style_dims)  # Ghiasi et al.: a 100-d style embedding
        self.transfer = ConditionalTransformerNet(style_dims + 1, channels, num_residual_blocks)
        with torch.no_grad():  # the constant's row is the plain norm's scale 1 and shift 0; the others start small
            for module in self.transfer.modules():
                if isinstance(module, ConditionalInstanceNorm2d):
                    module.weight[:-1].normal_(0.0, 0.01), module.weight[-1].fill_(1.0)
                    module.bias[:-1].normal_(0.0, 0.01), module.bias[-1].zero_()

    def train(self, mode: bool = True) -> ArbitraryStyleNet:
        super().train(mode)
        self.encoder.train(False)  # frozen
        return self

    def style_vector(self, style: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) paintings in [0, 1] -> (B, style_dims), each of length 1."""
        with torch.no_grad():
            features = self.encoder(style, ENCODER_LAYERS)
            statistics = style_statistics([features[layer] for layer in ENCODER_LAYERS])
        return unit_vector(self.bottleneck(statistics.to(self.bottleneck.weight.dtype)))

    def condition(self, vector: torch.Tensor) -> torch.Tensor:
        """(B, style_dims) -> (B, style_dims + 1): the norms' condition, with the constant 1."""
        return with_constant(vector)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.transfer(content, self.condition(self.style_vector(style)))


class ScriptableArbitrary(nn.Module):
    """ArbitraryStyleNet in a form torch.jit.script compiles (the loss network looks its weights up by name,
    which TorchScript cannot): what `stylenet export --format torchscript` writes. forward(content, style)."""

    def __init__(self, network: ArbitraryStyleNet) -> None:
        super().__init__()
        self.encoder = ScriptableEncoder(network.encoder)
        self.bottleneck, self.transfer = network.bottleneck, network.transfer

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        vector = unit_vector(self.bottleneck(style_statistics(self.encoder.first_of_blocks(style))))
        return self.transfer(content, with_constant(vector))


STYLE_CHECK_SIZE = (72, 56)  # the style image that export checks use: a size unlike the content's


def bind_paintings(network: nn.Module, paintings: Sequence[torch.Tensor], weights: Sequence[float]) -> Callable[..., torch.Tensor]:
    """Stylize with these paintings (1, 3, H, W): their style vectors averaged by weights (Ghiasi et al.'s
    blend), then the equivalent plain TransformerNet."""
    if isinstance(network, ArbitraryStyleNet):
        total = sum(weights)
        with torch.inference_mode():
            vector = sum(weight / total * network.style_vector(painting.float()) for painting, weight in zip(paintings, weights))
            return network.transfer.specialize(network.condition(vector)[0])
    return bound_file(network, paintings)


register_kind(ModelKind(
    name="arbitrary",
    network=ArbitraryStyleNet,
    style_input=StyleInput.IMAGE,
    bind=bind_paintings,
    style_size=STYLE_SIZE,
    scriptable=ScriptableArbitrary,
    example_style=lambda network, generator: torch.rand(1, 3, *STYLE_CHECK_SIZE, generator=generator),
    onnx_style_dims={2: "style_height", 3: "style_width"},
    presets={"arbitrary": {"channels": 16, "num_residual_blocks": 5, "style_dims": 100}},  # conf/model/arbitrary.yaml
))
