"""The one pixel convention: PIL images <-> float RGB tensors in [0, 1], shaped (3, H, W)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from stylenet.core.errors import StylenetError, brief
from stylenet.core.files import atomic_write

log = logging.getLogger(__name__)

# Errors Pillow raises on unreadable, truncated or hostile files. Images over Image.MAX_IMAGE_PIXELS raise
# DecompressionBombWarning, which we turn into an error (see bounded()); over twice that, Pillow raises itself.
IMAGE_ERRORS = (
    OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError,
    Image.DecompressionBombError, Image.DecompressionBombWarning,
)
DEFAULT_MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS  # Pillow's guard: 89,478,485 pixels (about 9459 x 9459)


def set_max_image_pixels(pixels: int | None) -> None:
    """Raise (or restore, with None) the decompression-bomb limit: the largest image, in pixels, we decode."""
    Image.MAX_IMAGE_PIXELS = int(pixels) if pixels else DEFAULT_MAX_IMAGE_PIXELS


NOTED: set[tuple[str, str]] = set()  # (file, Pillow's warning) logged once: training reads each photo every epoch


@contextmanager
def bounded(source: object = "an image") -> Iterator[None]:
    """Within the block, opening an image over Image.MAX_IMAGE_PIXELS is an error, not just Pillow's warning.

    Pillow's other warnings (a damaged TIFF or EXIF block: "Truncated File Read", "Corrupt EXIF data") are logged as
    one line naming the source once the block succeeds, and dropped when it fails (its error says enough): printed by
    Python they took two lines, one of them Pillow's source code (tests/test_soak.py).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield
    for message in dict.fromkeys(brief(warning.message) for warning in caught):
        if (str(source), message) not in NOTED:
            NOTED.add((str(source), message))
            log.warning("%s: %s", source, message)


def image_extensions() -> set[str]:
    """Every file extension Pillow can open, lower case with the dot ('.jpg', '.png', ...)."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, P, RGBA, CMYK, I;16, I, F, ...) to 8-bit RGB; alpha is dropped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit greyscale: Pillow's convert("L") clips instead of scaling, so scale by the data's range
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")  # palette may carry transparency
    return image.convert("RGB")


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(8-bit RGB, alpha channel or None) of any Pillow image."""
    if not has_alpha(image):
        return to_rgb(image), None
    rgba = image.convert("RGBA")
    return rgba.convert("RGB"), rgba.getchannel("A")


def find_images(root: str | Path) -> list[Path]:
    """Every file under root (recursively) whose extension Pillow opens, sorted."""
    extensions = image_extensions()
    return sorted(path for path in Path(root).rglob("*") if path.suffix.lower() in extensions and path.is_file())


def open_image(path: str | Path, draft_size: int | None = None, keep_alpha: bool = False) -> Image.Image:
    """Open an image file as upright 8-bit RGB (EXIF orientation applied); raises Pillow's errors.

    draft_size lets JPEG decoding scale down by 1/2, 1/4 or 1/8 while keeping both sides >= draft_size.
    keep_alpha returns RGBA instead for images with transparency.
    """
    with bounded(path if isinstance(path, (str, Path)) else "an image"), Image.open(path) as image:
        if draft_size is not None and image.format == "JPEG":
            scale = min(image.size) / draft_size
            image.draft("RGB", (int(image.size[0] / scale) + 1, int(image.size[1] / scale) + 1))
        image.load()
        image = ImageOps.exif_transpose(image)
        image.info.pop("exif", None)  # applied; StyleModel.stylize's exif_transpose would parse a damaged one again
        if keep_alpha and has_alpha(image):
            return image.convert("RGBA")
        return to_rgb(image)


def load_image(path: str | Path, what: str = "image", keep_alpha: bool = False) -> Image.Image:
    """open_image() for user-given files: a missing or unreadable file becomes a StylenetError."""
    path = Path(path)
    if not path.is_file():
        raise StylenetError(f"{what} not found: {path} (check the path)")
    try:
        return open_image(path, keep_alpha=keep_alpha)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise StylenetError(
            f"{what} is too large to decode safely: {path} ({error}); if you trust it, raise the limit "
            "(stylenet stylize --max-image-pixels N, or data.max_image_pixels=N in training)"
        ) from None
    except IMAGE_ERRORS as error:
        raise StylenetError(f"{what} is not a readable image: {path} ({error})") from None


def resize_long_side(image: Image.Image, long_side: int) -> Image.Image:
    """Resize so the longer side is long_side pixels, keeping the aspect ratio."""
    scale = long_side / max(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def resize_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """Resize so the shorter side is short_side pixels, keeping the aspect ratio."""
    scale = short_side / min(image.size)
    size = (max(short_side, round(image.size[0] * scale)), max(short_side, round(image.size[1] * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., H, W) float images at another size: bilinear, antialiased when reducing (Pillow's filter)."""
    if images.shape[-2:] == (height, width):
        return images
    return torch.nn.functional.interpolate(images.float(), size=(height, width), mode="bilinear", antialias=True,
                                           align_corners=False)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) (or (1, 3, H, W)) in [0, 1] -> PIL RGB; values outside are clipped."""
    if tensor.dim() == 4:
        tensor = tensor.squeeze(0)
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def output_format(path: str | Path) -> str:
    """The Pillow format an output path's extension asks for; an unknown one is a StylenetError."""
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None or image_format not in Image.SAVE:
        raise StylenetError(f"unknown image extension '{path.suffix}' for {path}: use .png, .jpg or .webp")
    return image_format


def save_image(image: Image.Image, path: str | Path, **save_args: object) -> None:
    """Write an image atomically: a temp file beside the target, then rename (format from the extension)."""
    path = Path(path)
    image_format = output_format(path)
    try:
        with atomic_write(path) as tmp:
            image.save(tmp, format=image_format, **save_args)
    except OSError as error:  # disk full, permissions, a read-only folder: nothing half-written stays behind
        raise StylenetError(f"could not write {path}: {error.strerror or error}") from None


def preserve_color(stylized: Image.Image, content: Image.Image) -> Image.Image:
    """Luminance transfer (Gatys et al. 2016, "Preserving Color..."): the stylized Y with the photo's Cb, Cr."""
    content = to_rgb(content).resize(stylized.size, Image.Resampling.BICUBIC)
    luminance = to_rgb(stylized).convert("YCbCr").getchannel("Y")
    _, blue, red = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (luminance, blue, red)).convert("RGB")
