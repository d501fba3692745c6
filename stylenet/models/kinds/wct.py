"""Any painting by matching its feature statistics (Li et al. 2017, "Universal Style Transfer via Feature Transforms").

content, painting -> VGG-19 features at one level -> whitening-colouring transform (WCT): the content's features
take the painting's mean and covariance, which is what Gram-based style terms measure -> that level's decoder ->
the next, finer level, coarse to fine. Nothing about styles is learnt: each decoder only inverts its level's VGG
features (trained on reconstruction of photos and paintings). The painting's side (its means and colouring
matrices at every level) is computed once and reused for every photo, frame and blend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from stylenet.models.kinds.adain import (
    ENCODER_LAYERS, MARGIN, STYLE_CHECK_SIZE, ScaledEncoder, ScriptableEncoder, bound_file, crop_decoded, frozen_encoder,
    pad_for_encoder,
)
from stylenet.models.registry import ConfigMixin, ModelKind, StyleInput, register_kind

LEVELS = ["relu4_1", "relu3_1", "relu2_1", "relu1_1"]  # coarse to fine, as Li et al. (relu5_1: see MODELS.md); a list as
# model files write it (JSON), so a network built with the default rebuilds with an equal config
LEVEL_CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512}  # VGG-19's widths
# Eigenvalues of a covariance below this carry no signal (Li et al. drop those under 1e-5): whitening leaves
# those directions out instead of dividing by ~0, so a flat image or a rank-deficient covariance stays finite.
EIGEN_FLOOR = 1e-5
TILE_PIXELS = 2048 * 2048  # larger images run in tiles that share one transform (a 3840x2160 photo: 8.3 MP)
TILE = 1024  # px, a multiple of 8 (three poolings)
Box = tuple[int, int, int, int]  # top, left, bottom, right (px)
HALO = 96  # px of context around each tile (a multiple of 8): the encoder's and decoder's reach


def decoder_plan(level: str, channels: int) -> list[tuple[int, int, bool]]:
    """(in, out, upsample after) of each 3x3 convolution before the last (to RGB): the encoder mirrored from this
    level, AdaIN's decoder (widths 4c, 2c, c) for relu4_1, shorter ones for the finer levels (Li et al.'s shape)."""
    wide, middle = channels * 4, channels * 2
    return {
        "relu4_1": [(512, wide, True), (wide, wide, False), (wide, wide, False), (wide, wide, False),
                    (wide, middle, True), (middle, middle, False), (middle, channels, True), (channels, channels, False)],
        "relu3_1": [(256, middle, True), (middle, middle, False), (middle, channels, True), (channels, channels, False)],
        "relu2_1": [(128, channels, True), (channels, channels, False)],
        "relu1_1": [],
    }[level]


class LevelDecoder(nn.Module):
    """One level's features -> RGB (unclamped): reflection-padded 3x3 convolutions, nearest 2x upsampling, no
    normalization. For relu4_1 the layer layout is AdaIN's Decoder, so an AdaIN model's decoder can start it."""

    def __init__(self, level: str, channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        plan = decoder_plan(level, channels)
        for in_channels, out_channels, upsample in plan:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3), nn.ReLU(inplace=True)]
            if upsample:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        last = plan[-1][1] if plan else LEVEL_CHANNELS[level]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(last, 3, 3)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, N) features -> their mean (C, 1) float32 and covariance (C, C) float64: a float32 matrix product
    (autocast does not reach it), kept in float64 for the eigendecomposition."""
    features = features.float()
    mean = features.mean(1, keepdim=True)
    centred = features - mean
    return mean, (centred @ centred.T / max(features.shape[1] - 1, 1)).double()


def covariance_power(covariance: torch.Tensor, exponent: float, floor: float = EIGEN_FLOOR) -> torch.Tensor:
    """E D^exponent E^T (float32) of a float64 covariance E D E^T, with the directions whose eigenvalue is under
    floor left out: exponent -0.5 whitens, 0.5 colours. float64 because float32's eigh of 512 channels returns
    small negative eigenvalues that whitening would blow up."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    powered = torch.where(eigenvalues > floor, eigenvalues.clamp_min(floor).pow(exponent), torch.zeros_like(eigenvalues))
    return ((eigenvectors * powered) @ eigenvectors.T).float()


def colouring_matrix(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A painting's (C, N) features -> its mean (C, 1) and colouring matrix (C, C): applied to whitened
    features, they give the painting's mean and covariance."""
    mean, covariance = moments(features)
    return mean, covariance_power(covariance, 0.5)


def wct(
    content: torch.Tensor, style_mean: torch.Tensor, colouring: torch.Tensor, alpha: float = 1.0,
    statistics: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, C, H, W) content features -> the same with the painting's mean (C, 1) and covariance (through its
    colouring matrix (C, C)), each image on its own; alpha < 1 blends back the content's own features.
    statistics: (B, C, h, w) the positions whose statistics are the content's (the photo without its padding)."""
    batch, channels, height, width = content.shape
    outputs = []
    for index in range(batch):
        rows = pixel_rows(content[index])  # (N, C) float32
        mean, covariance = moments(pixel_rows(content[index] if statistics is None else statistics[index]).T)
        matrix, offset = affine_map(mean, covariance_power(covariance, -0.5), style_mean, colouring, alpha)
        outputs.append(torch.addmm(offset, rows, matrix).view(height, width, channels).permute(2, 0, 1))
    stacked = outputs[0][None] if batch == 1 else torch.stack(outputs)  # one image: no copy
    return stacked.to(content.dtype)  # channels-last when the encoder's features were


def pixel_rows(features: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (H*W, C) float32: a view of channels-last features (the encoder's layout), else one copy."""
    # contiguous: the same layout (so the same sums) however the features were laid out, eager or TorchScript
    return features.permute(1, 2, 0).reshape(-1, features.shape[0]).float().contiguous()


def affine_map(
    mean: torch.Tensor, whitening: torch.Tensor, style_mean: torch.Tensor, colouring: torch.Tensor, alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """WCT with the blend back, alpha (colouring whitening (x - mean) + style_mean) + (1 - alpha) x, as one affine
    map of feature rows: (matrix (C, C), offset (1, C)) with rows -> rows @ matrix + offset. One pass over the
    features instead of five (they are the largest tensors of a big photo: 64 channels at full resolution)."""
    transform = colouring.float() @ whitening  # (C, C)
    identity = torch.eye(transform.shape[0], dtype=transform.dtype, device=transform.device)
    matrix = alpha * transform + (1.0 - alpha) * identity
    offset = alpha * (style_mean.float() - transform @ mean.float())  # (C, 1)
    return matrix.T, offset.T


def on_image(
    features: torch.Tensor, top: int, left: int, bottom: int, right: int, scale: int, margin: int = MARGIN,
) -> torch.Tensor:
    """The positions of (..., h, w) features of pad_for_encoder(image) that lie on image[top:bottom, left:right]
    (pixels of the image before padding; scale: the features' stride in px)."""
    return features[..., (margin + top) // scale : -(-(margin + bottom) // scale),
                    (margin + left) // scale : -(-(margin + right) // scale)]


def pooled_whitening(parts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (C, 1) and whitening matrix (C, C) of the features of all these (C, n) parts taken together."""
    total = sum(part.float().sum(1, dtype=torch.float64) for part in parts)
    outer = sum((part.float() @ part.float().T).double() for part in parts)
    count = sum(part.shape[1] for part in parts)
    mean = (total / count)[:, None]  # (C, 1) float64
    covariance = (outer - count * mean @ mean.T) / max(count - 1, 1)
    return mean.float(), covariance_power(covariance, -0.5)


@dataclass
class PaintingSide:
    """What WCT needs of one painting (or a blend): per level, the mean (C, 1) and colouring matrix (C, C)."""

    means: dict[str, torch.Tensor]
    colourings: dict[str, torch.Tensor]

    @staticmethod
    def blend(sides: Sequence[PaintingSide], weights: Sequence[float]) -> PaintingSide:
        """Li et al.'s style interpolation, sum_k w_k WCT(c, s_k): WCT is affine in the painting's side, so it is
        the transform with the w-weighted means and colouring matrices (w normalised to sum to 1)."""
        total = float(sum(weights))
        levels = sides[0].means
        return PaintingSide(
            {level: sum(w / total * side.means[level] for side, w in zip(sides, weights)) for level in levels},
            {level: sum(w / total * side.colourings[level] for side, w in zip(sides, weights)) for level in levels},
        )


class WCTNet(ConfigMixin, ScaledEncoder, nn.Module):
    """(content (B, 3, H, W), painting (1, 3, H', W')) in [0, 1] -> stylized (B, 3, H, W) in [0, 1].

    levels: where WCT acts, coarse to fine, each with its own decoder; channels: the decoders' base width c.
    strength: the share of the transformed features at full --strength, the rest the photo's own (Li et al.'s
    alpha; their code's default is 0.6), one for all levels or one per level: what the model was judged at, so
    --strength 1 is its best picture.
    encoder_state: the VGG-19 conv weights; None leaves placeholders for a model file's weights.
    """

    config_ignore = ("encoder_state",)

    def __init__(
        self, levels: Sequence[str] = LEVELS, channels: int = 32, strength: float | Sequence[float] = 1.0, encoder_weights: str = "caffe",
        encoder_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        levels = list(levels)
        if not levels or any(level not in LEVEL_CHANNELS for level in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"levels must be distinct ones of {', '.join(LEVELS)}, got {levels!r}")
        if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 512:
            raise ValueError(f"channels must be an integer from 1 to 512, got {channels!r}")
        strengths = [strength] * len(levels) if isinstance(strength, (int, float)) else list(strength)
        if len(strengths) != len(levels) or not all(0.0 < value <= 1.0 for value in strengths):
            raise ValueError(f"strength must be above 0 and at most 1, one number or one per level, got {strength!r}")
        self.levels, self.channels, self.encoder_weights = levels, channels, encoder_weights
        self.strengths = [float(value) for value in strengths]  # per level
        self.encoder = frozen_encoder(encoder_weights, encoder_state)
        # each layer's mean activation, as AdaINNet: the decoders read features near 1 whatever the VGG's scale
        self.register_buffer("feature_scale", torch.ones(len(ENCODER_LAYERS)))
        self.decoders = nn.ModuleDict({level: LevelDecoder(level, channels) for level in levels})

    @torch.no_grad()
    def painting_side(self, painting: torch.Tensor) -> PaintingSide:
        """A (1, 3, H, W) painting -> its mean and colouring matrix at every level (one encoder pass)."""
        features = self.features(painting, self.levels)
        with torch.autocast(painting.device.type, enabled=False):
            sides = {level: colouring_matrix(features[level][0].flatten(1)) for level in self.levels}
        return PaintingSide({level: side[0] for level, side in sides.items()},
                            {level: side[1] for level, side in sides.items()})

    def stylize(self, content: torch.Tensor, side: PaintingSide, alpha: float = 1.0, tile: int | None = None) -> torch.Tensor:
        """Coarse to fine: at each level the image so far is encoded, its features take the painting's statistics
        (alpha < 1 keeps more of its own: the share is alpha x the model's strength at that level) and that level's
        decoder turns them back into an image. tile: None runs images over TILE_PIXELS in TILE-px tiles, 0 never,
        N in N-px tiles (a multiple of 8)."""
        height, width = content.shape[-2:]
        if tile is None:
            tile = TILE if height * width > TILE_PIXELS else 0
        image = content
        for level, strength in zip(self.levels, self.strengths):
            if tile and max(height, width) > tile:
                image = torch.cat([self.tiled_level(one[None], level, side, alpha * strength, tile) for one in image])
                continue
            features = self.features(pad_for_encoder(image), (level,))[level]  # (B, C, h, w)
            statistics = on_image(features, 0, 0, height, width, 2 ** ENCODER_LAYERS.index(level))  # not the padding
            with torch.autocast(features.device.type, enabled=False):  # float32/64 statistics whatever the precision
                target = wct(features, side.means[level], side.colourings[level], alpha * strength, statistics)
            image = crop_decoded(self.decoders[level](target), height, width)
        return image

    def tiled_level(self, image: torch.Tensor, level: str, side: PaintingSide, alpha: float, tile: int) -> torch.Tensor:
        """One level of stylize() for a (1, 3, H, W) image too large for one pass: each tile (with a HALO of
        context) is encoded, the content's mean and covariance are pooled over all tiles, and every tile is
        transformed by that one whitening of the whole image, so no tile has statistics of its own (no seams)."""
        height, width = image.shape[-2:]
        pieces = list(self.tile_features(image, level, tile))
        output = torch.empty_like(image)
        with torch.autocast(image.device.type, enabled=False):
            mean, whitening = pooled_whitening([inner for _, _, _, inner in pieces])
            matrix, offset = affine_map(mean, whitening, side.means[level], side.colourings[level], alpha)
        for box, (top, left, bottom, right), features, _ in pieces:
            channels, rows, columns = features.shape
            with torch.autocast(features.device.type, enabled=False):
                mapped = torch.addmm(offset, pixel_rows(features), matrix).view(rows, columns, channels).permute(2, 0, 1)
                target = mapped[None].to(features.dtype)
            decoded = crop_decoded(self.decoders[level](target), box[2] - box[0], box[3] - box[1])
            output[..., top:bottom, left:right] = decoded[..., top - box[0]:bottom - box[0], left - box[1]:right - box[1]]
        return output

    def tile_features(self, image: torch.Tensor, level: str, tile: int) -> Iterator[tuple[Box, Box, torch.Tensor, torch.Tensor]]:
        """Per tile of a (1, 3, H, W) image: (the box read, with its halo; the tile's own box; features of the
        box read (C, h, w); the tile's own positions' features (C, n))."""
        height, width = image.shape[-2:]
        scale = 2 ** ENCODER_LAYERS.index(level)
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                box = (max(0, top - HALO), max(0, left - HALO), min(height, bottom + HALO), min(width, right + HALO))
                features = self.features(pad_for_encoder(image[..., box[0]:box[2], box[1]:box[3]]), (level,))[level][0]
                inner = on_image(features, top - box[0], left - box[1], bottom - box[0], right - box[1], scale)
                yield box, (top, left, bottom, right), features, inner.flatten(1)

    def forward(self, content: torch.Tensor, painting: torch.Tensor) -> torch.Tensor:
        return self.stylize(content, self.painting_side(painting[:1]))


class WCTStylizer(nn.Module):
    """A WCTNet bound to one painting side (one painting or a blend): images -> images."""

    def __init__(self, network: WCTNet, side: PaintingSide) -> None:
        super().__init__()
        self.network, self.side = network, side

    def forward(self, images: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """alpha: 1 the painting's statistics, less keeps some of the photo's own (in feature space, every level)."""
        side = PaintingSide({k: v.to(images.device) for k, v in self.side.means.items()},
                            {k: v.to(images.device) for k, v in self.side.colourings.items()})
        return self.network.stylize(images, side, alpha)


class ScriptableWCT(nn.Module):
    """A WCTNet as torch.jit.script compiles it (`stylenet export --format torchscript`): forward(content, painting)."""

    def __init__(self, network: WCTNet) -> None:
        super().__init__()
        self.encoder = ScriptableEncoder(network.encoder)
        self.register_buffer("feature_scale", network.feature_scale.clone())
        self.depths = [ENCODER_LAYERS.index(level) for level in network.levels]
        self.scales = [2 ** depth for depth in self.depths]  # each level's stride in px
        self.strengths = network.strengths
        self.decoders = nn.ModuleList(network.decoders[level] for level in network.levels)

    def encode(self, images: torch.Tensor, depth: int) -> torch.Tensor:
        return self.encoder.first_of_blocks(images)[depth] / self.feature_scale[depth]

    def forward(self, content: torch.Tensor, painting: torch.Tensor) -> torch.Tensor:
        height, width = content.shape[-2:]
        painting_features = self.encoder.first_of_blocks(painting[:1])
        image = content
        for index, decoder in enumerate(self.decoders):
            depth = self.depths[index]
            mean, colouring = colouring_matrix((painting_features[depth] / self.feature_scale[depth])[0].flatten(1))
            features = self.encode(pad_for_encoder(image), depth)
            target = wct(features, mean, colouring, self.strengths[index], on_image(features, 0, 0, height, width, self.scales[index]))
            image = crop_decoded(decoder(target), height, width)
        return image


def bind_paintings(network: nn.Module, paintings: Sequence[torch.Tensor], weights: Sequence[float]) -> Callable[..., torch.Tensor]:
    """Stylize with these paintings (1, 3, H, W), their sides blended by weights."""
    if isinstance(network, WCTNet):
        with torch.inference_mode():
            return WCTStylizer(network, PaintingSide.blend([network.painting_side(p) for p in paintings], weights))
    return bound_file(network, paintings)


register_kind(ModelKind(
    name="wct",
    network=WCTNet,
    style_input=StyleInput.IMAGE,
    bind=bind_paintings,
    feature_strength=True,
    tileable=False,  # whole images: the transform's statistics are the whole image's
    scriptable=ScriptableWCT,
    example_style=lambda network, generator: torch.rand(1, 3, *STYLE_CHECK_SIZE, generator=generator),
    no_onnx="ONNX has no eigendecomposition operator (torch.linalg.eigh), which whitening needs for every photo",
    presets={"wct": {"channels": 32}},  # conf/model/wct.yaml
))
