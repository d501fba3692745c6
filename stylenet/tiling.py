"""Stylize images too large for memory in tiles that do not show.

A transformer net normalizes every feature map by its own mean and variance (instance norm), so a tile
stylized alone gets other statistics than the whole image and its seams show. We use Thumbnail Instance
Normalization (Chen et al. 2022, "Towards Ultra-Resolution Neural Style Transfer via Thumbnail Instance
Normalization"): the statistics of every norm layer are recorded once on a thumbnail of the whole image and
then used for every tile. The thumbnail is the largest copy that fits in memory, so whenever the whole image
fits, the statistics are exact; the smaller it must be, the further they drift (measured in the README).
Each tile is run with a halo wider than the network's receptive field and only its core is kept, so the tiled result is exactly the untiled result computed with those statistics: no seams by
construction, and no blending needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# Receptive radius of TransformerNet at full resolution: 9x9 convs (4 px each end), 2 stride-2 3x3 convs
# (1 + 2 px), 2 convs per residual block at 1/4 scale (4 px each), 2 upsampling 3x3 convs (2 + 1 px): 54 px
# with 5 blocks. The halo covers it with room for 2 more blocks; a multiple of 4 keeps the stride-2 grids aligned.
HALO = 64
ALIGN = 4  # tiles start on multiples of 4 so each tile's downsampling grid matches the whole image's
NormStats = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]  # norm layer -> (mean, var), each (B, C, 1, 1)


def norm_layers(network: nn.Module) -> list[nn.InstanceNorm2d]:
    return [module for module in network.modules() if isinstance(module, nn.InstanceNorm2d)]


@contextmanager
def recording_norm_stats(network: nn.Module) -> Iterator[NormStats]:
    """Within the block, every forward pass stores each norm layer's input mean and variance."""
    stats: NormStats = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        features = inputs[0].float()
        stats[module] = (features.mean((2, 3), keepdim=True), features.var((2, 3), unbiased=False, keepdim=True))

    handles = [layer.register_forward_hook(record) for layer in norm_layers(network)]
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def frozen_norm_stats(network: nn.Module, stats: NormStats) -> Iterator[None]:
    """Within the block, every norm layer normalizes with the given statistics instead of its input's."""

    def normalize(module: nn.InstanceNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        features = inputs[0]
        mean, var = stats[module]
        normalized = (features.float() - mean) * torch.rsqrt(var + module.eps)
        if module.affine:
            normalized = normalized * module.weight.view(1, -1, 1, 1) + module.bias.view(1, -1, 1, 1)
        return normalized.to(features.dtype)

    handles = [layer.register_forward_hook(normalize) for layer in norm_layers(network)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def thumbnail_stats(network: nn.Module, images: torch.Tensor, max_pixels: int | None) -> NormStats:
    """Norm statistics of the whole image, measured on a copy of at most max_pixels pixels (None: full size)."""
    height, width = images.shape[-2:]
    scale = 1.0 if max_pixels is None else min(1.0, (max_pixels / (height * width)) ** 0.5)
    if scale < 1.0:
        size = (max(16, int(height * scale)), max(16, int(width * scale)))  # floor: stay within max_pixels
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    with recording_norm_stats(network) as stats:
        network(images)
    return stats


def tiled_forward(
    network: nn.Module, images: torch.Tensor, tile: int, thumbnail_pixels: int | None = None,
) -> torch.Tensor:
    """network(images) computed tile by tile: (B, 3, H, W) -> (B, 3, H, W).

    tile is the side of each tile's kept core (rounded down to a multiple of 4); each tile is run with HALO
    extra pixels on every side that the image has. The norm statistics come from one pass over a copy of at
    most thumbnail_pixels pixels (None: the full-size image, exact), so memory is bounded by the larger of
    that pass and one tile.
    """
    tile = max(ALIGN, tile // ALIGN * ALIGN)
    height, width = images.shape[-2:]
    stats = thumbnail_stats(network, images, thumbnail_pixels)
    result = torch.empty_like(images)
    with frozen_norm_stats(network, stats):
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                crop_top, crop_left = max(0, top - HALO), max(0, left - HALO)
                crop = images[..., crop_top:min(height, bottom + HALO), crop_left:min(width, right + HALO)]
                stylized = network(crop)
                result[..., top:bottom, left:right] = stylized[
                    ..., top - crop_top:bottom - crop_top, left - crop_left:right - crop_left
                ].to(result.dtype)
    return result
