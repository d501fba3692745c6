"""N paintings in one network (Dumoulin, Shlens, Kudlur 2017, "A Learned Representation for Artistic Style"):
TransformerNet whose instance norms have a scale and shift per painting; a blend of paintings mixes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.models.kinds.transformer import TransformerNet, instance_norm, upsample_conv
from stylenet.models.registry import BoundStyle, ConfigMixin, ModelKind, StyleInput, register_kind


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with a scale and shift per style (Dumoulin, Shlens, Kudlur 2017).

    `mix` (N, S) weighs the styles for each image (N is 1 or the batch): a one-hot row selects one style, other
    rows interpolate between styles by mixing their scales and shifts, as the paper does.
    """

    def __init__(self, channels: int, num_styles: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_styles, channels))  # (S, C)
        self.bias = nn.Parameter(torch.zeros(num_styles, channels))  # (S, C)

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        scale = (mix @ self.weight)[:, :, None, None]  # (N, C, 1, 1)
        shift = (mix @ self.bias)[:, :, None, None]
        return instance_norm(x) * scale + shift


class ConditionalConvLayer(nn.Module):
    """ConvLayer with a conditional instance norm: (upsample ->) reflection pad -> conv -> norm (-> ReLU)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, num_styles: int, stride: int = 1,
        upsample: bool = False, relu: bool = True,
    ) -> None:
        super().__init__()
        self.upsample, self.relu, self.padding = upsample, relu, kernel_size // 2
        self.fast_ops = True
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)
        self.norm = ConditionalInstanceNorm2d(out_channels, num_styles)

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        if self.upsample and self.fast_ops and self.padding == 1:
            x = upsample_conv(x, self.conv.weight, self.conv.bias)
        else:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.conv(F.pad(x, [self.padding] * 4, mode="reflect"))
        x = self.norm(x, mix)
        return F.relu(x) if self.relu else x


class ConditionalResidualBlock(nn.Module):
    def __init__(self, channels: int, num_styles: int) -> None:
        super().__init__()
        self.first = ConditionalConvLayer(channels, channels, 3, num_styles)
        self.second = ConditionalConvLayer(channels, channels, 3, num_styles, relu=False)

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        return x + self.second(self.first(x, mix), mix)


# Where each tensor of MultiStyleTransformerNet sits in TransformerNet (same layers, same order).
def single_style_names(num_residual_blocks: int) -> dict[str, str]:
    names = {}
    for index in range(3):
        names[f"encoder.{index}.conv"], names[f"encoder.{index}.norm"] = f"encoder.{index}.1", f"encoder.{index}.2"
    for block in range(num_residual_blocks):
        for ours, theirs in (("first.conv", "0.1"), ("first.norm", "0.2"), ("second.conv", "2"), ("second.norm", "3")):
            names[f"residuals.{block}.{ours}"] = f"residuals.{block}.body.{theirs}"
    for index in range(2):
        names[f"decoder.{index}.conv"], names[f"decoder.{index}.norm"] = f"decoder.{index}.2", f"decoder.{index}.3"
    names["output"] = "decoder.2.1"
    return names


class ConditionalTransformerNet(ConfigMixin, nn.Module):
    """TransformerNet whose instance norms take their scales and shifts from a condition vector: each norm's
    (scale, shift) is mix @ (its weight, its bias), mix (1 or B, S). The multi-style network's mix weighs its
    S paintings; the any-style network's is a predicted style vector. specialize(mix) gives the equivalent
    single-style TransformerNet, which is what tiling, bf16, torch.compile and most exports run."""

    def __init__(self, conditions: int, channels: int = 32, num_residual_blocks: int = 5) -> None:
        super().__init__()
        TransformerNet(channels, num_residual_blocks)  # the same argument checks, on a throwaway net
        self.channels, self.num_residual_blocks = channels, num_residual_blocks
        count, width = conditions, [channels, channels * 2, channels * 4]
        self.encoder = nn.ModuleList([
            ConditionalConvLayer(3, width[0], 9, count),
            ConditionalConvLayer(width[0], width[1], 3, count, stride=2),
            ConditionalConvLayer(width[1], width[2], 3, count, stride=2),
        ])
        self.residuals = nn.ModuleList([ConditionalResidualBlock(width[2], count) for _ in range(num_residual_blocks)])
        self.decoder = nn.ModuleList([
            ConditionalConvLayer(width[2], width[1], 3, count, upsample=True),
            ConditionalConvLayer(width[1], width[0], 3, count, upsample=True),
        ])
        self.output = nn.Conv2d(width[0], 3, 9)
        self.fast_ops = True

    def forward(self, images: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1], mix (1 or B, S) -> (B, 3, H, W) in [0, 1]; padding as TransformerNet."""
        height, width = images.shape[-2:]
        x = F.pad(images, (0, -width % 4, 0, -height % 4), mode="reflect")
        mix = mix.to(x.dtype)
        for layer in self.encoder:
            x = layer(x, mix)
        for block in self.residuals:
            x = block(x, mix)
        for layer in self.decoder:
            x = layer(x, mix)
        x = F.pad(x, [4, 4, 4, 4], mode="reflect")
        x = self.output(x.contiguous(memory_format=torch.channels_last) if self.fast_ops else x)  # see NARROW_OUTPUT
        return torch.sigmoid(x[..., :height, :width])

    def specialize(self, mix: torch.Tensor) -> TransformerNet:
        """The single-style TransformerNet that this network is for one mix (S,)."""
        mix = mix.detach().float().reshape(1, -1).to(self.output.weight.device)
        state = {}
        for ours, theirs in single_style_names(self.num_residual_blocks).items():
            module = self.get_submodule(ours)
            for name, tensor in module.named_parameters():
                value = (mix @ tensor.float())[0] if isinstance(module, ConditionalInstanceNorm2d) else tensor
                state[f"{theirs}.{name}"] = value.detach().clone()
        network = TransformerNet(self.channels, self.num_residual_blocks).to(self.output.weight.device)
        network.load_state_dict(state)
        return network.eval()


class MultiStyleTransformerNet(ConditionalTransformerNet):
    """N paintings in one network (Dumoulin et al. 2017): forward(images, mix), mix (1 or B, S) holds each
    image's style weights (one-hot for one style; rows that sum to 1 interpolate)."""

    def __init__(self, styles: list[str], channels: int = 32, num_residual_blocks: int = 5) -> None:
        if not styles or len(set(styles)) != len(styles) or not all(isinstance(s, str) and s for s in styles):
            raise ValueError(f"styles must be distinct non-empty names, got {styles!r}")
        super().__init__(len(styles), channels, num_residual_blocks)
        self.styles = list(styles)


def bind_styles(network: nn.Module, rows: Sequence[torch.Tensor], weights: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network for one blend of its styles: rows are one-hot (1, S) style weights, mixed by weights."""
    total = sum(weights)
    mix = sum(weight / total * row for row, weight in zip(rows, weights))  # (1, S)
    if isinstance(network, MultiStyleTransformerNet):
        return network.specialize(mix[0])  # a plain TransformerNet: tiling and bf16 work as usual
    return BoundStyle(network, mix)  # TorchScript / ONNX take the weights as their second input


register_kind(ModelKind(
    name="multistyle",
    network=MultiStyleTransformerNet,
    style_input=StyleInput.WEIGHTS,
    bind=bind_styles,
    example_style=lambda network, generator: torch.rand(1, len(network.styles), generator=generator).softmax(-1),
    metadata=lambda network: {"styles": list(network.styles)},  # what `stylenet stylize --style NAME` accepts
    presets={  # conf/model/multistyle.yaml's network, for the seven paintings of conf/style/; `stylenet bench` times it
        "multistyle": {"styles": ["composition_vii", "great_wave", "mondrian", "starry_night", "the_scream", "udnie",
                                       "woman_in_peasant_dress"], "channels": 32, "num_residual_blocks": 5},
    },
))
