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
from stylenet.adain import AdaINNet, AdaINStylizer
from stylenet.formats import load_network
from stylenet.images import preserve_color, resize_long_side, split_alpha, to_pil, to_tensor
from stylenet.tiling import HALO, tiled_forward
from stylenet.transformer import MultiStyleTransformerNet, TransformerNet

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STYLE_SIZE = 512  # AdaIN: long side of the style image (Huang & Belongie resized styles to 512)
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


class BoundStyle:
    """A two-input network (multistyle TorchScript/ONNX: style weights; AdaIN: a style image) with its second
    input fixed: images -> images, like a single-style network."""

    def __init__(self, network: Callable[..., torch.Tensor], style: torch.Tensor) -> None:
        self.network, self.style = network, style

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images, self.style.to(images.device))


class StyleModel:
    """A trained style network, its metadata and where it runs; stylize() maps a PIL image to a PIL image.

    Multi-style models run their first style until use_style() picks another or a blend; AdaIN models need
    use_style_images() with one or more paintings first.
    """

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
        self.loaded = network  # as the file holds it: what export writes
        self.architecture = metadata.get("architecture", "transformer")
        self.styles: list[str] = list(metadata.get("styles") or [])  # a multi-style model's paintings
        self.network: Callable[[torch.Tensor], torch.Tensor] | None = network
        if self.architecture == "multistyle":
            if not self.styles:
                raise StylenetError("this multi-style model's metadata lists no styles; re-export it from its .ckpt")
            self.use_style(self.styles[0])
        elif self.architecture == "adain":
            self.network = None  # until use_style_images()

    def use_style(self, spec: str | dict[str, float]) -> None:
        """Multi-style models: one style ("great_wave") or a blend ("starry_night=0.5,great_wave=0.5" or a dict)."""
        if self.architecture != "multistyle":
            raise StylenetError(
                f"--style picks a painting of a multi-style model; this {self.architecture} model "
                + ("takes --style-image PAINTING" if self.architecture == "adain" else "holds one style")
            )
        weights = parse_style_mix(spec, self.styles) if isinstance(spec, str) else dict(spec)
        unknown = [name for name in weights if name not in self.styles]
        if unknown:
            raise StylenetError(f"style '{unknown[0]}' is not in this model; it holds {', '.join(self.styles)}")
        total = sum(weights.values())
        if not all(math.isfinite(w) and w >= 0 for w in weights.values()) or total <= 0:
            raise StylenetError(f"style weights must be numbers >= 0 with a positive sum, got {spec}")
        mix = torch.tensor([[weights.get(name, 0.0) / total for name in self.styles]])  # (1, S)
        if isinstance(self.loaded, MultiStyleTransformerNet):
            self.network = self.loaded.specialize(mix[0])  # a plain TransformerNet: tiling and bf16 work as usual
        else:
            self.network = BoundStyle(self.loaded, mix)

    def use_style_images(
        self, images: list[Image.Image], weights: list[float] | None = None, style_size: int = STYLE_SIZE,
    ) -> None:
        """AdaIN models: stylize with these paintings (any, seen in training or not), blended by weights."""
        if self.architecture != "adain":
            raise StylenetError(
                f"--style-image needs an AdaIN model (model=adain); this is a {self.architecture} model"
                + (f": pick one of its styles with --style ({', '.join(self.styles)})" if self.styles else "")
            )
        weights = list(weights) if weights is not None else [1.0] * len(images)
        if not images or len(weights) != len(images) or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise StylenetError("give one or more style images, each with a weight >= 0 (positive sum)")
        if style_size < 16:
            raise StylenetError(f"--style-size {style_size}: must be at least 16 px")
        styles = [to_tensor(resize_long_side(ImageOps.exif_transpose(image).convert("RGB"), style_size)).unsqueeze(0)
                  for image in images]
        if isinstance(self.loaded, AdaINNet):
            with torch.inference_mode():
                self.network = AdaINStylizer.blend(self.loaded, [s.to(self.device) for s in styles], weights)
        elif len(styles) > 1:
            raise StylenetError(f"blending several style images needs the model's weights; a {self.kind} file takes "
                                "one --style-image (use the .safetensors model to blend)")
        else:
            self.network = BoundStyle(self.loaded, styles[0])

    @property
    def module(self) -> TransformerNet | None:
        """The eager single-style network when there is one (not for TorchScript, ONNX or AdaIN): tiling needs it."""
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
        if self.network is None:
            raise StylenetError("an AdaIN model stylizes with a painting you give it: pass --style-image PAINTING.jpg "
                                "(Python: model.use_style_images([Image.open(...)]))")
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
        strength: 0 returns the photo, 1 the full style, in between blends them (pixels; for AdaIN with its
        weights, the paper's blend of content and style features instead).
        preserve_colors: keep the photo's colours, take only the luminance from the style.
        """
        if not 0.0 <= strength <= 1.0:
            raise StylenetError(f"strength must be between 0 and 1, got {strength}")
        image = ImageOps.exif_transpose(image)
        rgb, alpha = split_alpha(image)
        rgb = resize(rgb, target_size(rgb.size, size, scale))
        feature_blend = isinstance(self.network, AdaINStylizer)
        if feature_blend:
            self.network.alpha = strength
        stylized = to_pil(self.stylize_tensor(to_tensor(rgb).unsqueeze(0), tile))
        if preserve_colors:
            stylized = preserve_color(stylized, rgb)
        if strength < 1.0 and not feature_blend:
            stylized = Image.blend(rgb, stylized, strength)
        if alpha is not None:
            stylized.putalpha(resize(alpha, stylized.size))
        return stylized


def parse_style_mix(spec: str, styles: list[str]) -> dict[str, float]:
    """"great_wave" -> {great_wave: 1}; "starry_night=0.5,great_wave=0.5" -> those weights."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        try:
            weights[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise StylenetError(f"--style {spec}: '{weight}' is not a number (write NAME or NAME=W,NAME=W)") from None
    if not weights:
        raise StylenetError(f"--style is empty; this model holds {', '.join(styles)}")
    return weights


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

