"""Stylize images too large for memory in tiles that do not show.

A transformer net normalizes every feature map by its own mean and variance (instance norm), so a tile
stylized alone gets other statistics than the whole image and its seams show. TransformerNet (single- and
multi-style models) runs staged (staged_forward below): every conv in tiles, the lower-resolution maps whole
and the full-resolution ones' statistics summed over their tiles, so the result is exactly the whole-image one.
Where even its lower-resolution maps would not fit, and for other networks, we use Thumbnail Instance
Normalization (Chen et al. 2022, "Towards Ultra-Resolution Neural Style Transfer via Thumbnail Instance
Normalization"): the statistics of every norm layer are recorded once on a thumbnail of the whole image and
then used for every tile. The thumbnail is the largest copy that fits in memory, so whenever the whole image
fits, the statistics are exact; the smaller it must be, the further they drift (measured in the README).
Each tile is run with a halo wider than the network's receptive field and only its core is kept, so the
tiled result is exactly the untiled result computed with those statistics: no seams by construction, and no
blending needed.

Runner is where a network runs: on the device and in the precision that stylenet/core/device.py resolves, whole or
in tiles as its memory budget decides, and again in smaller tiles after running out of memory.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.core.device import AUTO, PRECISION_CHOICES, auto_precision, autocast, memory_budget, out_of_memory, resolve_device
from stylenet.core.errors import StylenetError
from stylenet.core.images import resize_images
from stylenet.models.kinds.transformer import TransformerNet, upsample_conv

log = logging.getLogger(__name__)

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
        return normalize_(module, features.to(torch.float32, copy=True), stats[module]).to(features.dtype)

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
        images = resize_images(images, max(16, int(height * scale)), max(16, int(width * scale)))  # floor: within max_pixels
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
    stats = thumbnail_stats(network, images, thumbnail_pixels)
    result = torch.empty_like(images)
    with frozen_norm_stats(network, stats):
        tile_map(network, images, tile, 1, into=result, halo=HALO)
    return result


# Exact statistics at bounded memory, for TransformerNet (the single- and multi-style networks): every conv runs
# in tiles, each tile with a halo wider than the conv's receptive radius. At 1/2 and 1/4 of the resolution each
# conv's output is assembled whole (a quarter and a sixteenth of the pixels) and normalized in place with its own,
# exact statistics. The two full-resolution maps are never whole: their statistics are summed over the tiles in
# a first pass, and a second pass normalizes each tile with them and runs it on through the next conv. So the
# result is the whole-image result, not a thumbnail's approximation; it costs the two full-resolution convs a
# second pass and needs the whole lower-resolution maps in memory (STAGED_PER_PIXEL).
STAGED_HALO = 8  # px at the resolution of each stage's input; a multiple of 4 keeps the stride-2 grid aligned


def conv_part(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A ConvLayer up to its convolution (upsample, pad, conv), without its norm and ReLU."""
    if getattr(layer, "upsample", False) and getattr(layer, "fast_ops", False):
        conv = layer[2]
        return upsample_conv(x, conv.weight, conv.bias)
    for sublayer in layer:
        x = sublayer(x)
        if isinstance(sublayer, nn.Conv2d):
            return x
    raise TypeError("not a ConvLayer: no convolution")


def tiles(height: int, width: int, tile: int, halo: int) -> Iterator[tuple[slice, slice, slice, slice]]:
    """(core rows, core columns, crop rows, crop columns) covering a height x width map in tile x tile cores."""
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            crop_top, crop_left = max(0, top - halo), max(0, left - halo)
            yield (slice(top, bottom), slice(left, right),
                   slice(crop_top, min(height, bottom + halo)), slice(crop_left, min(width, right + halo)))


def tile_map(
    run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, scale: float,
    into: torch.Tensor | None = None, halo: int = STAGED_HALO,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """run() on every tile of x (tile px cores, at least ALIGN, with `halo` px around) where run maps a crop to a
    map `scale` times its size. With `into`, the tiles' cores are written there; without, the per-(image,
    channel) mean and variance of run's output over the whole map are returned (summed in float64 over the
    cores)."""
    height, width = x.shape[-2:]
    sums = squares = None
    count = 0
    for rows, columns, crop_rows, crop_columns in tiles(height, width, max(ALIGN, tile), halo):
        out = run(x[..., crop_rows, crop_columns])
        core = out[..., int((rows.start - crop_rows.start) * scale):int((rows.stop - crop_rows.start) * scale),
                   int((columns.start - crop_columns.start) * scale):int((columns.stop - crop_columns.start) * scale)]
        if into is not None:
            into[..., int(rows.start * scale):int(rows.stop * scale), int(columns.start * scale):int(columns.stop * scale)] = core
            continue
        core = core.double()
        sums = core.sum((2, 3)) if sums is None else sums + core.sum((2, 3))
        squares = core.square().sum((2, 3)) if squares is None else squares + core.square().sum((2, 3))
        count += core.shape[-2] * core.shape[-1]
    if into is not None:
        return None
    mean = sums / count
    variance = (squares / count - mean.square()).clamp_min(0)
    return mean.float()[..., None, None], variance.float()[..., None, None]


def conv_map(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, scale: float,
             channels: int) -> torch.Tensor:
    """The whole map run(x) computed tile by tile: run is convolutions only (no norm), channels its output's."""
    out = x.new_empty((*x.shape[:-3], channels, int(x.shape[-2] * scale), int(x.shape[-1] * scale)), dtype=torch.float32)
    tile_map(run, x, tile, scale, into=out)
    return out


def normalize_(
    norm: nn.Module, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None, relu: bool = False,
) -> torch.Tensor:
    """Instance norm (then ReLU) of x in place: with its own statistics, or with stats = (mean, var) given."""
    mean, var = stats if stats is not None else reversed(torch.var_mean(x, (2, 3), unbiased=False, keepdim=True))
    x.sub_(mean).mul_(torch.rsqrt(var + norm.eps))
    if norm.affine:
        x.mul_(norm.weight.view(1, -1, 1, 1)).add_(norm.bias.view(1, -1, 1, 1))
    return x.relu_() if relu else x


def staged_forward(network: nn.Module, images: torch.Tensor, tile: int) -> torch.Tensor:
    """TransformerNet(images) with exact statistics: every conv runs in tiles (tile x tile px at full resolution,
    proportionally smaller below) into whole maps at 1/2 and 1/4 resolution, normalized in place; the two
    full-resolution maps are never whole (their statistics are summed over the tiles in a first pass)."""
    tile = max(ALIGN, tile // ALIGN * ALIGN)
    height, width = images.shape[-2:]
    x = F.pad(images, (0, -width % 4, 0, -height % 4), mode="reflect")  # as TransformerNet.forward
    first, down, down2 = network.encoder
    stats = tile_map(lambda crop: conv_part(first, crop), x, tile, 1)
    h = conv_map(lambda crop: conv_part(down, normalize_(first[-2], conv_part(first, crop).float(), stats, relu=True)),
                 x, tile, 0.5, down[-2].num_features)
    normalize_(down[-2], h, relu=True)  # 1/2 resolution
    h = conv_map(lambda crop: conv_part(down2, crop), h, tile // 2, 0.5, down2[-2].num_features)
    normalize_(down2[-2], h, relu=True)  # 1/4 resolution
    for block in network.residuals:
        inner, pad, conv, norm = block.body
        t = conv_map(lambda crop: conv_part(inner, crop), h, tile // 4, 1, inner[-2].num_features)
        normalize_(inner[-2], t, relu=True)
        t = conv_map(lambda crop: conv(pad(crop)), t, tile // 4, 1, norm.num_features)
        h.add_(normalize_(norm, t))
        del t
    rise, up, last = network.decoder
    h = conv_map(lambda crop: conv_part(rise, crop), h, tile // 4, 2, rise[-2].num_features)
    normalize_(rise[-2], h, relu=True)  # 1/2 resolution
    stats = tile_map(lambda crop: conv_part(up, crop), h, tile // 2, 2)
    result = x.new_empty((*x.shape[:-3], 3, *x.shape[-2:]))
    tile_map(lambda crop: last(normalize_(up[-2], conv_part(up, crop).float(), stats, relu=True)), h, tile // 2, 2,
             into=result)
    result = result[..., :height, :width]
    return result.clamp(0.0, 1.0) if network.output == "clamp" else torch.sigmoid(result)


MIN_SIDE = 16  # smaller images are edge-padded to this, stylized, and cropped back (reflect padding needs room)
# Peak activation memory of TransformerNet per output pixel, in units of `channels` elements: the second
# upsampling layer holds 2c channels upsampled, their padded copy, and c-channel conv and norm outputs (~6c);
# 8c leaves headroom for the allocator.
ACTIVATIONS_PER_PIXEL = 8
# staged_forward's whole maps per full-resolution pixel, in the same units: a 2c-channel map at half resolution is
# c/2 elements per pixel, and about four of them (conv output, norm, the next layer's input and output) are alive.
STAGED_PER_PIXEL = 2
STAGED_TILE_ELEMENTS = 2**24  # pixels x channels of one staged tile: 1024x1024 px for 16 channels


class Runner:
    """Runs images -> images networks on one device in one precision: whole when they fit in memory, else in
    tiles with shared norm statistics; after an out-of-memory error, that call again in smaller tiles. It keeps
    nothing between calls, so one Runner serves several threads."""

    def __init__(self, device: str | torch.device = "cpu", precision: str = AUTO, autocast: bool = True) -> None:
        self.device = resolve_device(device)
        if precision not in PRECISION_CHOICES:
            raise StylenetError(f"precision '{precision}' unknown; valid: {', '.join(PRECISION_CHOICES)}")
        self.auto = precision == AUTO  # chosen for this machine, not asked for
        if self.auto:
            precision = auto_precision(self.device, inference=True) if autocast else "fp32"
        if precision == "fp16" and self.device.type != "cuda":
            raise StylenetError("fp16 needs a CUDA GPU; on CPU use --precision bf16 or fp32")
        self.precision, self.use_autocast = precision, autocast  # autocast False: the network runs as it is (ONNX)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return autocast(self.device, self.precision if self.use_autocast else "fp32")

    def __call__(
        self, network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: int | None = None,
        tileable: nn.Module | None = None, pixel_limit: int | None = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> network's (B, 3, H, W) in [0, 1], on the input's device.

        tileable: the eager network when it may run in tiles (else whole images only). tile: None tiles only
        when the image would not fit in memory, 0 never tiles, N tiles N px. pixel_limit: images this large ran
        out of memory (set by the retry after an out-of-memory error, for this call only).
        """
        source_device = images.device
        images = images.to(self.device, torch.float32)
        height, width = images.shape[-2:]
        if min(height, width) < MIN_SIDE:
            padded = F.pad(images, (0, max(0, MIN_SIDE - width), 0, max(0, MIN_SIDE - height)), mode="replicate")
            return self(network, padded, tile, tileable, pixel_limit)[..., :height, :width].to(source_device)
        tile = self.auto_tile(tileable, height, width, images.shape[0], pixel_limit) if tile is None else tile
        try:
            return self.forward(network, images, tile, tileable, pixel_limit).float().clamp_(0, 1).to(source_device)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not out_of_memory(error):
                raise
            if tileable is None or (tile and tile <= 256):
                raise StylenetError(f"out of memory on {self.device} for a {width}x{height} image") from None
        # retried outside the except block: its traceback would keep the failed pass's tensors alive
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        # what did not fit (per image), so the tiles' shared statistics come from a smaller copy too
        pixel_limit = min(pixel_limit or height * width, height * width) // 2
        smaller = max(256, (tile or max(height, width)) // 2)
        log.warning("out of memory on %s at %dx%d; retrying in %d px tiles", self.device, width, height, smaller)
        return self(network, images, smaller, tileable, pixel_limit).to(source_device)

    def forward(
        self, network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: int, tileable: nn.Module | None,
        pixel_limit: int | None = None,
    ) -> torch.Tensor:
        with self.autocast():
            if not tile or tile >= max(images.shape[-2:]):
                return network(images)
            if tileable is None:
                raise StylenetError(
                    "tiling needs the model's weights and a single- or multi-style network; this model runs whole "
                    "images (use the .safetensors or .ckpt model, or --tile 0)"
                )
            if isinstance(tileable, TransformerNet) and self.staged_fits(tileable, images, pixel_limit):
                # exact statistics; tiles of at most STAGED_TILE_ELEMENTS / channels pixels keep its tile passes
                # small beside the whole half-resolution maps (a 3840x2160 frame: 2.2 GB of RSS, 1920-px tiles 2.7)
                side = int(math.sqrt(STAGED_TILE_ELEMENTS / getattr(tileable, "channels", 32))) // 64 * 64
                return staged_forward(tileable, images, min(tile, side))
            # norm statistics from the largest copy of the image that fits: exact when the whole image does
            return tiled_forward(tileable, images, tile, self.fitting_pixels(tileable, pixel_limit) // images.shape[0])

    def auto_tile(
        self, tileable: nn.Module | None, height: int, width: int, batch: int = 1, pixel_limit: int | None = None,
    ) -> int:
        """0 when the whole batch fits in memory; else the largest tile side (multiple of 64) that does."""
        if tileable is None:
            return 0
        fitting = self.fitting_pixels(tileable, pixel_limit) // batch
        if height * width <= fitting:
            return 0
        side = int(math.sqrt(fitting)) - 2 * HALO
        return max(256, side // 64 * 64)

    def fitting_pixels(self, tileable: nn.Module, pixel_limit: int | None = None) -> int:
        """The most pixels one forward pass of the eager network may take on this device."""
        fitting = memory_budget(self.device) // self.bytes_per_pixel(tileable)
        return min(fitting, pixel_limit) if pixel_limit else fitting

    def bytes_per_pixel(self, tileable: nn.Module) -> int:
        """Estimated peak activation memory of the eager network per image pixel. Not less in bf16: autocast
        keeps the norms in fp32 and adds bf16 copies (a 3840x2160 frame took more memory in bf16 than in fp32)."""
        return ACTIVATIONS_PER_PIXEL * getattr(tileable, "channels", 32) * 4

    def staged_fits(self, tileable: nn.Module, images: torch.Tensor, pixel_limit: int | None = None) -> bool:
        """Whether staged_forward's whole half- and quarter-resolution maps fit the memory budget, and no image
        this large ran out of memory before (its whole maps do not shrink with the tile: the retry after an
        out-of-memory error takes the thumbnail path, whose memory does)."""
        pixels = images.shape[0] * images.shape[-2] * images.shape[-1]
        if pixel_limit is not None and images.shape[-2] * images.shape[-1] > pixel_limit:  # per image
            return False
        return pixels * STAGED_PER_PIXEL * getattr(tileable, "channels", 32) * 4 <= memory_budget(self.device)
