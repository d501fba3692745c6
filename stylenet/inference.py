"""Load any trained model and stylize images with it: imports neither Hydra nor Lightning.

    model = stylenet.load_model("model.safetensors")
    result = model.stylize(Image.open("photo.jpg"), strength=0.8)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from stylenet import StylenetError
from stylenet.formats import load_network
from stylenet.images import preserve_color, split_alpha, to_pil, to_tensor
from stylenet.tiling import HALO, tiled_forward
from stylenet.transformer import TransformerNet

log = logging.getLogger(__name__)

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


class StyleModel:
    """A trained style network, its metadata and where it runs; stylize() maps a PIL image to a PIL image."""

    def __init__(
        self, network: Callable[[torch.Tensor], torch.Tensor], metadata: dict[str, Any],
        device: str | torch.device = "cpu", precision: str = "fp32",
    ) -> None:
        self.device = resolve_device(device)
        self.metadata, self.kind = metadata, metadata.get("kind", "unknown")
        if precision not in PRECISIONS:
            raise StylenetError(f"precision '{precision}' unknown; valid: {', '.join(PRECISIONS)}")
        if precision != "fp32" and self.kind == "onnx":
            raise StylenetError("ONNX models run in fp32 only (use --precision fp32, or the .safetensors model)")
        if precision == "fp16" and self.device.type != "cuda":
            raise StylenetError("fp16 needs a CUDA GPU; on CPU use --precision bf16 or fp32")
        self.precision = precision
        self.pixel_limit: int | None = None  # set after an out-of-memory error: images this large did not fit
        if isinstance(network, torch.nn.Module):
            network = network.eval().to(self.device)
        self.network = network

    @property
    def module(self) -> TransformerNet | None:
        """The eager network when there is one (not for TorchScript or ONNX): tiling and export need it."""
        return self.network if isinstance(self.network, TransformerNet) else None

    def __repr__(self) -> str:
        style = (self.metadata.get("style") or {}).get("name")
        return f"StyleModel(kind={self.kind!r}, style={style!r}, device='{self.device}', precision={self.precision!r})"

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.precision == "fp32" or self.kind == "onnx":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    @torch.inference_mode()
    def stylize_tensor(self, images: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1] on the same device as the input.

        tile: None picks tiling only when the image would not fit in memory, 0 never tiles, N tiles N px.
        """
        source_device = images.device
        images = images.to(self.device, torch.float32)
        height, width = images.shape[-2:]
        if min(height, width) < MIN_SIDE:
            padded = F.pad(images, (0, max(0, MIN_SIDE - width), 0, max(0, MIN_SIDE - height)), mode="replicate")
            return self.stylize_tensor(padded, tile)[..., :height, :width].to(source_device)
        tile = self.auto_tile(height, width, images.shape[0]) if tile is None else tile
        try:
            return self.run(images, tile).float().clamp_(0, 1).to(source_device)
        except torch.OutOfMemoryError:
            if self.module is None or (tile and tile <= 256):
                raise StylenetError(f"out of memory on {self.device} for a {width}x{height} image") from None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            # remember what did not fit, so the tiles' shared statistics come from a smaller copy too
            self.pixel_limit = min(self.pixel_limit or height * width, height * width) // 2
            smaller = max(256, (tile or max(height, width)) // 2)
            log.warning("out of memory on %s at %dx%d; retrying in %d px tiles", self.device, width, height, smaller)
            return self.stylize_tensor(images, smaller).to(source_device)

    def run(self, images: torch.Tensor, tile: int) -> torch.Tensor:
        with self.autocast():
            if not tile or tile >= max(images.shape[-2:]):
                return self.network(images)
            if self.module is None:
                raise StylenetError(
                    f"tiling needs the model's weights; {self.kind} files run whole images "
                    "(use the .safetensors or .ckpt model, or --tile 0)"
                )
            # norm statistics from the largest copy of the image that fits: exact when the whole image does
            return tiled_forward(self.module, images, tile, self.fitting_pixels() // images.shape[0])

    def auto_tile(self, height: int, width: int, batch: int = 1) -> int:
        """0 when the whole batch fits in memory; else the largest tile side (multiple of 64) that does."""
        if self.module is None:
            return 0
        fitting = self.fitting_pixels() // batch
        if height * width <= fitting:
            return 0
        side = int(math.sqrt(fitting)) - 2 * HALO
        return max(256, side // 64 * 64)

    def fitting_pixels(self) -> int:
        """The most pixels one forward pass of the eager network may take on this device."""
        fitting = memory_budget(self.device) // self.bytes_per_pixel()
        return min(fitting, self.pixel_limit) if self.pixel_limit else fitting

    def bytes_per_pixel(self) -> int:
        """Estimated peak activation memory of the eager network per image pixel."""
        channels = self.module.channels if self.module is not None else 32
        return ACTIVATIONS_PER_PIXEL * channels * (4 if self.precision == "fp32" else 2)

    def stylize(
        self, image: Image.Image, size: int | None = None, scale: float | None = None, strength: float = 1.0,
        preserve_colors: bool = False, tile: int | None = None,
    ) -> Image.Image:
        """Stylize a PIL image (any mode; EXIF orientation applied; alpha carried through unchanged).

        size: long side of the result in px; scale: factor on the input size (default: the input's size).
        strength: 0 returns the photo, 1 the full style, in between blends them.
        preserve_colors: keep the photo's colours, take only the luminance from the style.
        """
        if not 0.0 <= strength <= 1.0:
            raise StylenetError(f"strength must be between 0 and 1, got {strength}")
        image = ImageOps.exif_transpose(image)
        rgb, alpha = split_alpha(image)
        rgb = resize(rgb, target_size(rgb.size, size, scale))
        stylized = to_pil(self.stylize_tensor(to_tensor(rgb).unsqueeze(0), tile))
        if preserve_colors:
            stylized = preserve_color(stylized, rgb)
        if strength < 1.0:
            stylized = Image.blend(rgb, stylized, strength)
        if alpha is not None:
            stylized.putalpha(resize(alpha, stylized.size))
        return stylized


def target_size(size: tuple[int, int], long_side: int | None, scale: float | None) -> tuple[int, int]:
    if long_side is not None and scale is not None:
        raise StylenetError("give either a size or a scale, not both")
    if long_side is not None:
        if long_side < 1:
            raise StylenetError(f"size must be a positive number of pixels, got {long_side}")
        scale = long_side / max(size)
    if scale is None:
        return size
    if scale <= 0:
        raise StylenetError(f"scale must be positive, got {scale}")
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


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


def load_model(path: str | Path, device: str | torch.device = "auto", precision: str = "fp32") -> StyleModel:
    """Load any stylenet model file: .ckpt, .safetensors, TorchScript, ONNX, or a pytorch/examples state dict."""
    path = Path(path)
    if not path.is_file():
        raise StylenetError(f"model not found: {path} (give the model.safetensors from a training run)")
    network, metadata = load_network(path)
    return StyleModel(network, metadata, device, precision)

