"""The image transformation network of Johnson et al. (2016), with the later fixes that remove its artifacts.

Reflection padding (no dark borders), instance norm instead of batch norm (Ulyanov et al. 2016), and
nearest-neighbour upsampling + convolution instead of transposed convolution (no checkerboard; Odena et al. 2016).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.core.errors import StylenetError
from stylenet.models.registry import ConfigMixin, ModelKind, register_kind


def phase_taps(weight: torch.Tensor, dim: int) -> list[torch.Tensor]:
    """A 3-tap kernel axis -> its two 2-tap forms after nearest 2x upsampling: an even output row 2i reads
    upsampled rows 2i-1, 2i, 2i+1 = input rows i-1, i, i, so (w0, w1 + w2) over rows (i-1, i); an odd row
    2i+1 reads input rows i, i, i+1: (w0 + w1, w2) over rows (i, i+1)."""
    first, middle, last = weight.unbind(dim)
    return [torch.stack([first, middle + last], dim), torch.stack([first + middle, last], dim)]


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv3x3(reflection_pad(nearest_upsample_2x(x), 1)) computed exactly, with 2.25x fewer multiply-adds.

    Each of the four output phases is a 2x2 conv of the input itself (sub-pixel convolution, Shi et al. 2016);
    reflection padding of the upsampled image equals replicate padding of the input. One 2x2 conv with 4x the
    output channels computes all phases at once: x (B, C, H, W) -> (B, C_out, 2H, 2W).
    """
    out_channels = weight.shape[0]
    even_rows, odd_rows = phase_taps(weight, 2)
    phase_weights = phase_taps(even_rows, 3) + phase_taps(odd_rows, 3)  # phases (0, 0), (0, 1), (1, 0), (1, 1)
    phase_bias = bias.repeat(4) if bias is not None else None
    y = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), torch.cat(phase_weights), phase_bias)  # (B, 4C, H+1, W+1)
    if not torch.jit.is_scripting():  # nested: TorchScript then compiles neither the test nor its branch
        # not with gradients: there TorchInductor's replication_pad2d_backward failed its own stride check (torch 2.14)
        if inductor_cpu(y) and not torch.is_grad_enabled():
            return interleaved_channels_last(y, out_channels)
    # phase (row p, column q) starts p rows and q columns in: even phases read from the padding row/column
    phases = [y[:, 0:out_channels, :-1, :-1], y[:, out_channels : 2 * out_channels, :-1, 1:],
              y[:, 2 * out_channels : 3 * out_channels, 1:, :-1], y[:, 3 * out_channels :, 1:, 1:]]
    return F.pixel_shuffle(torch.stack(phases, 2).flatten(1, 2), 2)  # channel c*4 + 2p + q -> pixel (2i+p, 2j+q)


def inductor_cpu(x: torch.Tensor) -> bool:
    """Whether torch.compile (--backend compile: TorchInductor) is tracing this for a CPU, not torch.export."""
    return x.device.type == "cpu" and torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def interleaved_channels_last(y: torch.Tensor, channels: int) -> torch.Tensor:
    """upsample_conv's last step for TorchInductor on a CPU: the same pixels, interleaved with the channel
    innermost, as oneDNN lays out y. TorchInductor compiles this to vector loads; the pixel_shuffle of
    channels-first phases that eager runs faster (its backward too) compiled to scalar gathers."""
    batch, height, width = y.shape[0], y.shape[2] - 1, y.shape[3] - 1
    phases = y.permute(0, 2, 3, 1).unflatten(3, (2, 2, channels))  # (B, H+1, W+1, p, q, C)
    rows = [torch.stack([phases[:, p : p + height, q : q + width, p, q] for q in (0, 1)], 3) for p in (0, 1)]
    return torch.stack(rows, 2).reshape(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)


def instance_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5,
) -> torch.Tensor:
    """F.instance_norm; where TorchInductor compiles it for a CPU (--backend compile), as sums instead.

    TorchInductor's CPU code computes instance norm's variance with Welford's algorithm, which it left scalar
    (one channel at a time, strided) on 16-channel maps; written as E[x] and E[x^2] it becomes two vectorized
    sums in one pass (with interleaved_channels_last, the light network compiled ran 2x faster at 640x360 on a
    2-core Xeon; BENCHMARKS.md). The sums are taken about each map's first pixel so that E[x^2] - E[x]^2 does
    not cancel (on a faint pattern over a bright level this is nearer float64 than eager float32 is). Eager
    runs, TorchScript and exports keep F.instance_norm; the test sits under `not torch.jit.is_scripting()`,
    a block TorchScript skips, because it cannot compile torch.compiler's functions.
    """
    if not torch.jit.is_scripting():
        if inductor_cpu(x):
            return summed_instance_norm(x, weight, bias, eps)
    return F.instance_norm(x, weight=weight, bias=bias, eps=eps)


def summed_instance_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
) -> torch.Tensor:
    shifted = x.float() - x[:, :, :1, :1].float()
    mean = shifted.mean((2, 3), keepdim=True)
    variance = ((shifted * shifted).mean((2, 3), keepdim=True) - mean * mean).clamp_min(0)
    y = (shifted - mean) * torch.rsqrt(variance + eps)
    if weight is not None:
        y = y * weight[:, None, None]
    if bias is not None:
        y = y + bias[:, None, None]
    return y.to(x.dtype)  # as F.instance_norm: the input's dtype (bf16 under autocast)


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same parameters and state dict) through instance_norm above; as the networks use it:
    no running statistics (track_running_stats False, nn.InstanceNorm2d's default)."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False) -> None:
        super().__init__(num_features, eps=eps, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x, self.weight, self.bias, self.eps)


# Convs with this few output channels (the RGB output) take channels-last input: there oneDNN's channels-first
# input gradient ran at ~3 G multiply-adds/s, 4x slower than channels-last (2-core CPU; BENCHMARKS.md).
NARROW_OUTPUT = 4


def set_fast_ops(module: nn.Module, enabled: bool) -> nn.Module:
    """Turn the exact faster rewrites (upsample_conv, NARROW_OUTPUT) on or off in every layer;
    off runs the layers as written, as pytorch/examples does (`stylenet bench --baseline`)."""
    for layer in module.modules():
        if hasattr(layer, "fast_ops"):
            layer.fast_ops = enabled
    return module


class ConvLayer(nn.Sequential):
    """Reflection pad -> conv -> (instance norm -> ReLU), optionally after a nearest-neighbour 2x upsample."""

    __constants__ = ["upsample", "narrow"]  # TorchScript then compiles only the branch in use

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        upsample: bool = False, norm_relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        layers += [nn.ReflectionPad2d(kernel_size // 2), nn.Conv2d(in_channels, out_channels, kernel_size, stride)]
        if norm_relu:
            layers += [InstanceNorm2d(out_channels, affine=True), nn.ReLU(inplace=True)]
        super().__init__(*layers)
        self.upsample = upsample and kernel_size == 3 and norm_relu
        self.narrow = out_channels <= NARROW_OUTPUT
        self.fast_ops = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample and self.fast_ops:  # layers 0-2 (upsample, pad, conv) in one exact step
            conv = self[2]
            return self[4](self[3](upsample_conv(x, conv.weight, conv.bias)))
        if self.narrow and self.fast_ops:
            x = x.contiguous(memory_format=torch.channels_last)
        for layer in self:
            x = layer(x)
        return x


class ResidualBlock(nn.Module):
    """Two 3x3 conv layers with an identity shortcut (He et al. 2016, as used by Johnson et al.)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


CLAMP_MARKER = "clamp_output"  # the state dict key that says a network's output is clamped, not a sigmoid


class TransformerNet(ConfigMixin, nn.Module):
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
        if output == "clamp":  # a marker in the state dict, so that a bare one (torch.save of it) reloads as clamp
            self.register_buffer(CLAMP_MARKER, torch.ones(()))
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

    @staticmethod
    def state_defaults(arguments: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Tensors a file written before they existed lacks: the clamp marker of a clamp-output network."""
        return {CLAMP_MARKER: torch.ones(())} if arguments.get("output") == "clamp" else {}

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


# pytorch/examples fast_neural_style layer names -> ours (same layers, same order)
EXAMPLES_LAYERS = {
    "conv1.conv2d": "encoder.0.1", "in1": "encoder.0.2", "conv2.conv2d": "encoder.1.1", "in2": "encoder.1.2",
    "conv3.conv2d": "encoder.2.1", "in3": "encoder.2.2", "deconv1.conv2d": "decoder.0.2", "in4": "decoder.0.3",
    "deconv2.conv2d": "decoder.1.2", "in5": "decoder.1.3", "deconv3.conv2d": "decoder.2.1",
}
EXAMPLES_RESIDUAL_LAYERS = {"conv1.conv2d": "0.1", "in1": "0.2", "conv2.conv2d": "2", "in2": "3"}
StateDictReading = tuple[dict[str, Any], dict[str, torch.Tensor], str]  # (arguments, our tensors, what it was)


def read_state_dict(state: dict[str, torch.Tensor], source: str) -> StateDictReading | None:
    """A bare state dict of ours or of pytorch/examples fast_neural_style (the widely shared .pth/.model files)."""
    if "conv1.conv2d.weight" in state:
        arguments, renamed = from_pytorch_examples(state, source)
        return arguments, renamed, "pytorch/examples fast_neural_style state dict"
    if "encoder.0.1.weight" in state:
        return architecture_of(state), state, "stylenet state dict"
    return None


def architecture_of(state: dict[str, torch.Tensor], **more: Any) -> dict[str, Any]:
    """The TransformerNet arguments a state dict in our layer names was made with."""
    blocks = len({key.split(".")[1] for key in state if key.startswith("residuals.")})
    output = {"output": "clamp"} if CLAMP_MARKER in state else {}
    return {"channels": state["encoder.0.1.weight"].shape[0], "num_residual_blocks": blocks, **output, **more}


def from_pytorch_examples(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """pytorch/examples' TransformerNet weights as ours: renamed, with its [0, 255] pixel range folded in."""
    renamed = {}
    for key, tensor in state.items():
        if re.search(r"\.(running_mean|running_var|num_batches_tracked)$", key):
            continue  # old InstanceNorm kept running stats it never used in eval; pytorch/examples drops them too
        layer, _, parameter = key.rpartition(".")
        residual = re.fullmatch(r"res(\d+)\.(.+)", layer)
        if residual and residual[2] in EXAMPLES_RESIDUAL_LAYERS:
            renamed[f"residuals.{int(residual[1]) - 1}.body.{EXAMPLES_RESIDUAL_LAYERS[residual[2]]}.{parameter}"] = tensor
        elif layer in EXAMPLES_LAYERS:
            renamed[f"{EXAMPLES_LAYERS[layer]}.{parameter}"] = tensor
        else:
            raise StylenetError(f"{source}: unexpected key '{key}' for a pytorch/examples fast_neural_style model")
    # Their net reads pixels in [0, 255] and writes them unbounded in [0, 255]; both ends are convolutions,
    # which are linear, so scale the first conv's weights by 255 and the last conv's weights and bias by 1/255.
    renamed["encoder.0.1.weight"] = renamed["encoder.0.1.weight"] * 255.0
    renamed["decoder.2.1.weight"] = renamed["decoder.2.1.weight"] / 255.0
    renamed["decoder.2.1.bias"] = renamed["decoder.2.1.bias"] / 255.0
    renamed[CLAMP_MARKER] = torch.ones(())
    return architecture_of(renamed, output="clamp"), renamed  # their linear output, clamped


register_kind(ModelKind(
    name="transformer",
    network=TransformerNet,
    read_state_dict=read_state_dict,
    presets={  # conf/model/<preset>.yaml trains these; `stylenet bench --model` times them
        "transformer": {"channels": 32, "num_residual_blocks": 5},  # Johnson et al. 2016
        "transformer_small": {"channels": 16, "num_residual_blocks": 3},  # ~4.6x fewer multiply-adds per pixel
    },
))
