"""Stylize images too large for memory in tiles that do not show.

A transformer net normalizes every feature map by its own mean and variance (instance norm), so a tile
stylized alone gets other statistics than the whole image and its seams show. We use Thumbnail Instance
Normalization (Chen et al. 2022, "Towards Ultra-Resolution Neural Style Transfer via Thumbnail Instance
Normalization"): the statistics of every norm layer are recorded once on a thumbnail of the whole image and
then used for every tile. The thumbnail is the largest copy that fits in memory, so whenever the whole image
fits, the statistics are exact; the smaller it must be, the further they drift (measured in the README).
Each tile is run with a halo wider than the network's receptive field and only its core is kept, so the
tiled result is exactly the untiled result computed with those statistics: no seams by construction, and no
blending needed.

Runner is where a network runs: the device and precision, the memory budget that decides when to tile, and
the retry in smaller tiles after running out of memory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.errors import StylenetError

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


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MIN_SIDE = 16  # smaller images are edge-padded to this, stylized, and cropped back (reflect padding needs room)
# Peak activation memory of TransformerNet per output pixel, in units of `channels` elements: the second
# upsampling layer holds 2c channels upsampled, their padded copy, and c-channel conv and norm outputs (~6c);
# 8c leaves headroom for the allocator.
ACTIVATIONS_PER_PIXEL = 8


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when there is a GPU, else cpu; asking for a missing GPU is a StylenetError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StylenetError("--device cuda: no CUDA GPU is visible to torch (use --device cpu or auto)")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether the hardware computes bf16 itself: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX
    (there bf16 autocast trained 1.8x faster than fp32; on AVX2-only CPUs it is emulated and slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own CPUID checks
    return device.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model, core count and the vector flags that decide its speed (CPUs of one
    model name differ: AVX2 only, or AVX-512 with native bf16): what every measured figure names."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu, flags = "CPU", set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and cpu == "CPU":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    named = " ".join(flag for flag in SPEED_FLAGS if flag in flags)
    return f"{cpu}, {os.cpu_count()} cores" + (f" ({named})" if named else "")


def memory_budget(device: torch.device) -> int:
    """Bytes one image's activations may take: 70% of the GPU's free memory, or half of available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    try:
        with open("/proc/meminfo") as meminfo:
            available_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
        return available_kib * 1024 // 2
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


class Runner:
    """Runs images -> images networks on one device in one precision: whole when they fit in memory, else in
    tiles with shared norm statistics; after an out-of-memory error, again in smaller tiles."""

    def __init__(self, device: str | torch.device = "cpu", precision: str = "fp32", autocast: bool = True) -> None:
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise StylenetError(f"precision '{precision}' unknown; valid: {', '.join(PRECISIONS)}")
        if precision == "fp16" and self.device.type != "cuda":
            raise StylenetError("fp16 needs a CUDA GPU; on CPU use --precision bf16 or fp32")
        self.precision, self.use_autocast = precision, autocast  # autocast False: the network runs as it is (ONNX)
        self.pixel_limit: int | None = None  # set after an out-of-memory error: images this large did not fit

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.precision == "fp32" or not self.use_autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def __call__(
        self, network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: int | None = None,
        tileable: nn.Module | None = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> network's (B, 3, H, W) in [0, 1], on the input's device.

        tileable: the eager network when it may run in tiles (else whole images only). tile: None tiles only
        when the image would not fit in memory, 0 never tiles, N tiles N px.
        """
        source_device = images.device
        images = images.to(self.device, torch.float32)
        height, width = images.shape[-2:]
        if min(height, width) < MIN_SIDE:
            padded = F.pad(images, (0, max(0, MIN_SIDE - width), 0, max(0, MIN_SIDE - height)), mode="replicate")
            return self(network, padded, tile, tileable)[..., :height, :width].to(source_device)
        tile = self.auto_tile(tileable, height, width, images.shape[0]) if tile is None else tile
        try:
            return self.forward(network, images, tile, tileable).float().clamp_(0, 1).to(source_device)
        except torch.OutOfMemoryError:
            if tileable is None or (tile and tile <= 256):
                raise StylenetError(f"out of memory on {self.device} for a {width}x{height} image") from None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            # remember what did not fit, so the tiles' shared statistics come from a smaller copy too
            self.pixel_limit = min(self.pixel_limit or height * width, height * width) // 2
            smaller = max(256, (tile or max(height, width)) // 2)
            log.warning("out of memory on %s at %dx%d; retrying in %d px tiles", self.device, width, height, smaller)
            return self(network, images, smaller, tileable).to(source_device)

    def forward(
        self, network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: int, tileable: nn.Module | None,
    ) -> torch.Tensor:
        with self.autocast():
            if not tile or tile >= max(images.shape[-2:]):
                return network(images)
            if tileable is None:
                raise StylenetError(
                    "tiling needs the model's weights and a single- or multi-style network; this model runs whole "
                    "images (use the .safetensors or .ckpt model, or --tile 0)"
                )
            # norm statistics from the largest copy of the image that fits: exact when the whole image does
            return tiled_forward(tileable, images, tile, self.fitting_pixels(tileable) // images.shape[0])

    def auto_tile(self, tileable: nn.Module | None, height: int, width: int, batch: int = 1) -> int:
        """0 when the whole batch fits in memory; else the largest tile side (multiple of 64) that does."""
        if tileable is None:
            return 0
        fitting = self.fitting_pixels(tileable) // batch
        if height * width <= fitting:
            return 0
        side = int(math.sqrt(fitting)) - 2 * HALO
        return max(256, side // 64 * 64)

    def fitting_pixels(self, tileable: nn.Module) -> int:
        """The most pixels one forward pass of the eager network may take on this device."""
        fitting = memory_budget(self.device) // self.bytes_per_pixel(tileable)
        return min(fitting, self.pixel_limit) if self.pixel_limit else fitting

    def bytes_per_pixel(self, tileable: nn.Module) -> int:
        """Estimated peak activation memory of the eager network per image pixel."""
        channels = getattr(tileable, "channels", 32)
        return ACTIVATIONS_PER_PIXEL * channels * (4 if self.precision == "fp32" else 2)
