"""The image transformation network of Johnson et al. (2016), with the later fixes that remove its artifacts.

Reflection padding (no dark borders), instance norm instead of batch norm (Ulyanov et al. 2016), and
nearest-neighbour upsampling + convolution instead of transposed convolution (no checkerboard; Odena et al. 2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Sequential):
    """Reflection pad -> conv -> (instance norm -> ReLU), optionally after a nearest-neighbour 2x upsample."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        upsample: bool = False, norm_relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        layers += [nn.ReflectionPad2d(kernel_size // 2), nn.Conv2d(in_channels, out_channels, kernel_size, stride)]
        if norm_relu:
            layers += [nn.InstanceNorm2d(out_channels, affine=True), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv layers with an identity shortcut (He et al. 2016, as used by Johnson et al.)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerNet(nn.Module):
    """RGB in [0, 1], any size -> stylized RGB in [0, 1], same size.

    channels is the width of the first layer (32 in the paper); the net goes 1x, 2x, 4x that width.
    output is how the last conv becomes pixels: "sigmoid" (what stylenet trains) or "clamp" (for weights
    imported from nets trained with a linear output, such as pytorch/examples fast_neural_style).
    """

    OUTPUTS = ("sigmoid", "clamp")

    def __init__(self, channels: int = 32, num_residual_blocks: int = 5, output: str = "sigmoid") -> None:
        super().__init__()
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, got {output!r}")
        for name, value, top in (("channels", channels, 1024), ("num_residual_blocks", num_residual_blocks, 64)):
            if not isinstance(value, int) or isinstance(value, bool) or not (name == "channels") <= value <= top:
                raise ValueError(f"{name} must be an integer from {int(name == 'channels')} to {top}, got {value!r}")
        self.channels, self.num_residual_blocks, self.output = channels, num_residual_blocks, output
        width = [channels, channels * 2, channels * 4]
        self.encoder = nn.Sequential(
            ConvLayer(3, width[0], 9),
            ConvLayer(width[0], width[1], 3, stride=2),
            ConvLayer(width[1], width[2], 3, stride=2),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(width[2]) for _ in range(num_residual_blocks)))
        self.decoder = nn.Sequential(
            ConvLayer(width[2], width[1], 3, upsample=True),
            ConvLayer(width[1], width[0], 3, upsample=True),
            ConvLayer(width[0], 3, 9, norm_relu=False),
        )

    def config(self) -> dict[str, int | str]:
        """The constructor arguments: all a checkpoint or export needs to rebuild this network."""
        return {"channels": self.channels, "num_residual_blocks": self.num_residual_blocks, "output": self.output}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W); sides not divisible by 4 are reflection-padded, then cropped back."""
        height, width = images.shape[-2:]
        # padding unconditionally (often by 0) keeps the graph free of shape branches, so exports stay dynamic
        x = F.pad(images, (0, -width % 4, 0, -height % 4), mode="reflect")
        x = self.decoder(self.residuals(self.encoder(x)))
        x = x[..., :height, :width]
        if self.output == "clamp":
            return x.clamp(0.0, 1.0)
        # sigmoid keeps the output a valid image in [0, 1] without clamping away gradients
        return torch.sigmoid(x)
