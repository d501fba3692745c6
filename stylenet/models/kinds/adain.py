"""Arbitrary style transfer in one forward pass (Huang and Belongie 2017, "Adaptive Instance Normalization").

content, style -> VGG-19 encoder (frozen, up to relu4_1) -> AdaIN: the content features take the style
features' channel means and standard deviations -> a trained decoder -> the stylized image. The encoder is
the loss network's VGG-19 and its weights travel inside every model file, so inference needs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.core.errors import StylenetError
from stylenet.models.loss_network import LossNetwork, conv_shapes
from stylenet.models.registry import BoundStyle, ConfigMixin, ModelKind, StyleInput, register_kind

ENCODER_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")  # Huang & Belongie: style loss layers
ADAIN_LAYER = "relu4_1"  # where AdaIN acts; the decoder inverts the encoder from here
EPSILON = 1e-5  # keeps the standard deviation of a flat feature map away from 0


def channel_stats(features: torch.Tensor, epsilon: float = EPSILON) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> per-channel mean and standard deviation, each (B, C, 1, 1), in float32."""
    flat = features.float().flatten(2)
    mean = flat.mean(-1)[..., None, None]
    std = (flat.var(-1, unbiased=False) + epsilon).sqrt()[..., None, None]
    return mean, std


def frozen_encoder(encoder_weights: str, encoder_state: dict[str, torch.Tensor] | None) -> LossNetwork:
    """VGG-19 up to relu4_1 whose weights are part of the model (persistent buffers, saved in its files), for the
    any-style networks; encoder_state None leaves zero placeholders for a model file's weights to fill."""
    if encoder_weights not in ("caffe", "torchvision"):
        raise ValueError(f"encoder_weights must be caffe or torchvision, got {encoder_weights!r}")
    if encoder_state is None:
        encoder_state = {
            f"{name}.{kind}": torch.zeros((out, inp, 3, 3) if kind == "weight" else (out,))
            for name, (out, inp) in conv_shapes("vgg19").items() for kind in ("weight", "bias")
        }
    return LossNetwork("vgg19", encoder_weights, ENCODER_LAYERS, state=encoder_state, persistent=True)


MARGIN = 16  # px of edge padding around the photo when stylizing: VGG's zero padding otherwise darkens the border


def pad_for_encoder(images: torch.Tensor, margin: int = MARGIN) -> torch.Tensor:
    """Edge-pad by margin on every side, and to a multiple of 8 (three 2x2 poolings) so the decoder lines up."""
    height, width = images.shape[-2:]
    return F.pad(images, (margin, margin + (-width % 8), margin, margin + (-height % 8)), mode="replicate")


def crop_decoded(images: torch.Tensor, height: int, width: int, margin: int = MARGIN) -> torch.Tensor:
    """The decoder's output without the padding pad_for_encoder() added, clamped to [0, 1]."""
    return images[..., margin : margin + height, margin : margin + width].clamp(0.0, 1.0)


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y): the content's features with the style's statistics."""
    mean, std = channel_stats(content)
    return ((content.float() - mean) / std * style_std + style_mean).to(content.dtype)


class Decoder(nn.Module):
    """relu4_1 features (512 channels) -> RGB, unclamped (AdaINNet clamps to [0, 1]): the encoder mirrored,
    pooling replaced by nearest 2x upsampling, reflection padding, no normalization (Huang & Belongie).
    Widths 4c, 2c, c; the paper's c is 64."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        wide, middle = channels * 4, channels * 2
        plan = [  # (in, out, upsample after)
            (512, wide, True), (wide, wide, False), (wide, wide, False), (wide, wide, False), (wide, middle, True),
            (middle, middle, False), (middle, channels, True), (channels, channels, False),
        ]
        layers: list[nn.Module] = []
        for in_channels, out_channels, upsample in plan:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3), nn.ReLU(inplace=True)]
            if upsample:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        # torch's default init, as the paper's code: He init made the first outputs so large that a sigmoid
        # output saturated white, and a linear one spent the run unlearning stripes (probes on a 2-core CPU)
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, 3, 3)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Linear output, as the paper: trained unclamped, clamped to [0, 1] only when stylizing (a sigmoid here
        # saturated: a quick CPU run's outputs went all white by step 300 and the losses stopped falling).
        return self.layers(features)


class ScaledEncoder:
    """What the any-style networks that read VGG-19 features share (AdaINNet, WCTNet): the encoder stays frozen
    in train(), calibrate() sets each layer's mean activation, features() divides by it."""

    encoder: LossNetwork
    feature_scale: torch.Tensor

    def train(self, mode: bool = True) -> ScaledEncoder:
        nn.Module.train(self, mode)  # type: ignore[arg-type]
        self.encoder.train(False)  # frozen
        return self

    @torch.no_grad()
    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Set feature_scale to each layer's mean activation over these (3, H, W) images (none: leave it)."""
        if not images:
            return
        sums = torch.zeros(len(ENCODER_LAYERS))
        for image in images:
            features = self.encoder(image.unsqueeze(0).to(self.feature_scale.device), ENCODER_LAYERS)
            sums += torch.stack([features[layer].float().mean().cpu() for layer in ENCODER_LAYERS])
        self.feature_scale.copy_((sums / len(images)).clamp_min(1e-6))

    def features(self, images: torch.Tensor, layers: Sequence[str] = ENCODER_LAYERS) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> {layer: features / feature_scale}, one encoder pass to the deepest."""
        raw = self.encoder(images, layers)
        return {layer: raw[layer] / self.feature_scale[ENCODER_LAYERS.index(layer)] for layer in layers}


class AdaINNet(ConfigMixin, ScaledEncoder, nn.Module):
    """(content (B, 3, H, W), style (1 or B, 3, H', W')) in [0, 1] -> stylized (B, 3, H, W) in [0, 1].

    encoder_state: the VGG-19 conv weights ({conv1_1.weight: ...}); None leaves placeholders for a model
    file's weights. encoder_weights names their input convention ("caffe" or "torchvision").
    """

    config_ignore = ("encoder_state",)  # the VGG weights: in the state dict, not the config

    def __init__(
        self, channels: int = 64, encoder_weights: str = "caffe", encoder_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 512:
            raise ValueError(f"channels must be an integer from 1 to 512, got {channels!r}")
        self.channels, self.encoder_weights = channels, encoder_weights
        self.encoder = frozen_encoder(encoder_weights, encoder_state)
        # Each layer's mean activation (set by calibrate()): features are divided by it, so the decoder reads
        # inputs near 1 and the style terms of the four layers weigh alike, whatever the VGG weights' scale
        # (Caffe's relu4_1 averages ~500; Huang & Belongie's "normalised" VGG had this built into its weights).
        self.register_buffer("feature_scale", torch.ones(len(ENCODER_LAYERS)))
        self.decoder = Decoder(channels)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> scaled relu4_1 features (B, 512, H/8, W/8)."""
        return self.features(images, (ADAIN_LAYER,))[ADAIN_LAYER]

    def style_stats(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A style image's relu4_1 channel mean and std, each (B, 512, 1, 1): all AdaIN needs of it."""
        return channel_stats(self.encode(style))

    def stylize(
        self, content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, alpha: float = 1.0,
    ) -> torch.Tensor:
        """Decode the content's features renormalized to (style_mean, style_std); alpha < 1 keeps some of the
        content's own statistics (the paper's content-style trade-off, in feature space)."""
        height, width = content.shape[-2:]
        features = self.encode(pad_for_encoder(content))
        target = adain(features, style_mean, style_std)
        if alpha != 1.0:
            target = alpha * target + (1.0 - alpha) * features
        return crop_decoded(self.decoder(target), height, width)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        mean, std = self.style_stats(style)
        return self.stylize(content, mean, std)


class AdaINStylizer(nn.Module):
    """An AdaINNet bound to one style (the mixed statistics of one or more style images): images -> images."""

    def __init__(self, network: AdaINNet, style_mean: torch.Tensor, style_std: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("style_mean", style_mean)
        self.register_buffer("style_std", style_std)

    @classmethod
    def blend(cls, network: AdaINNet, styles: Sequence[torch.Tensor], weights: Sequence[float]) -> AdaINStylizer:
        """Interpolate styles: sum_k w_k AdaIN(c, s_k) = AdaIN with the w-weighted means and stds (w sums to 1)."""
        total = sum(weights)
        mean = std = 0.0
        with torch.no_grad():
            for style, weight in zip(styles, weights):
                style_mean, style_std = network.style_stats(style)
                mean, std = mean + weight / total * style_mean, std + weight / total * style_std
        return cls(network, mean, std)

    def forward(self, images: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """alpha: 1 the style's statistics, less keeps some of the content's own (the paper's trade-off)."""
        return self.network.stylize(images, self.style_mean, self.style_std, alpha)


class ScriptableEncoder(nn.Module):
    """A LossNetwork's VGG-19 up to relu4_1 as plain convolutions, which torch.jit.script compiles (the loss
    network's layer loop looks its weights up by name, which TorchScript cannot). Same input convention."""

    def __init__(self, encoder: LossNetwork) -> None:
        super().__init__()
        self.caffe = encoder.caffe
        self.register_buffer("mean", encoder.mean.clone())
        self.register_buffer("std", encoder.std.clone())
        blocks: list[list[nn.Module]] = [[]]  # the convolutions and ReLUs between two max pools
        for name in encoder.names:
            if name.startswith("conv"):
                weight = getattr(encoder, f"{name}_weight")
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
                conv.weight.data.copy_(weight), conv.bias.data.copy_(getattr(encoder, f"{name}_bias"))
                blocks[-1] += [conv, nn.ReLU()]
            elif name.startswith("pool"):
                blocks.append([])
        # each block split after its first ReLU: relu{block}_1 is what the style statistics read
        self.firsts = nn.ModuleList(nn.Sequential(*block[:2]) for block in blocks)
        self.rests = nn.ModuleList(nn.Sequential(*block[2:]) for block in blocks)

    def first_of_blocks(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1] (unscaled)."""
        x = images.flip(1) * 255.0 if self.caffe else images
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)  # as LossNetwork
        outputs: list[torch.Tensor] = []
        for index, (first, rest) in enumerate(zip(self.firsts, self.rests)):
            if index > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = first(x)
            outputs.append(x)
            x = rest(x)
        return outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> relu4_1 (unscaled)."""
        return self.first_of_blocks(images)[-1]


class ScriptableAdaIN(nn.Module):
    """The same computation as an AdaINNet in a form torch.jit.script compiles: what `stylenet export
    --format torchscript` writes for AdaIN models. forward(content, style) as AdaINNet's."""

    def __init__(self, network: AdaINNet) -> None:
        super().__init__()
        self.encoder = ScriptableEncoder(network.encoder)
        self.register_buffer("scale", network.feature_scale[-1].clone())
        self.decoder = network.decoder

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images) / self.scale

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        height, width = content.shape[-2:]
        style_mean, style_std = channel_stats(self.encode(style))
        target = adain(self.encode(pad_for_encoder(content)), style_mean, style_std)
        return crop_decoded(self.decoder(target), height, width)


STYLE_CHECK_SIZE = (72, 56)  # the style image that export checks use: a size unlike the content's


def bind_paintings(network: nn.Module, paintings: Sequence[torch.Tensor], weights: Sequence[float]) -> Callable[..., torch.Tensor]:
    """Stylize with these paintings (1, 3, H, W), their feature statistics blended by weights."""
    if isinstance(network, AdaINNet):
        with torch.inference_mode():
            return AdaINStylizer.blend(network, paintings, weights)
    return bound_file(network, paintings)


def bound_file(network: Callable[..., torch.Tensor], paintings: Sequence[torch.Tensor]) -> BoundStyle:
    """An exported any-style file (TorchScript, ONNX) with its painting input fixed: one painting, no blend."""
    if len(paintings) > 1:
        raise StylenetError("blending several style images needs the model's weights; an exported TorchScript or "
                            "ONNX file takes one --style-image (use the .safetensors model to blend)")
    return BoundStyle(network, paintings[0])


def with_real_encoder(arguments: dict[str, object]) -> AdaINNet:
    """A preset's AdaIN network: random decoder, the real Caffe VGG-19 encoder (its statistics set the speed)."""
    encoder = LossNetwork("vgg19", "caffe", list(ENCODER_LAYERS))
    return AdaINNet(**arguments, encoder_weights="caffe", encoder_state=encoder.conv_state())


register_kind(ModelKind(
    name="adain",
    network=AdaINNet,
    style_input=StyleInput.IMAGE,
    bind=bind_paintings,
    feature_strength=True,
    tileable=False,  # whole images: the encoder's receptive field is far wider than tiling's halo
    scriptable=ScriptableAdaIN,
    example_style=lambda network, generator: torch.rand(1, 3, *STYLE_CHECK_SIZE, generator=generator),
    onnx_style_dims={2: "style_height", 3: "style_width"},
    presets={"adain": {"channels": 64}},  # conf/model/adain.yaml (Huang & Belongie's decoder); `stylenet bench` times it
    from_preset=with_real_encoder,
))
