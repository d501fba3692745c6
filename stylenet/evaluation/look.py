"""Figures of a stylization's look across sizes (docs/quality.md, "Stroke size"; scripts/stroke_look.py):
how sharp a large result is, and at what spatial frequency the style sits."""

from __future__ import annotations

import torch
from PIL import Image

from stylenet.core.images import to_tensor


def gray(image: Image.Image) -> torch.Tensor:
    """(H, W) luma in [0, 1]."""
    rgb = to_tensor(image.convert("RGB"))
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def edge_energy(image: Image.Image) -> float:
    """Mean squared difference between neighbouring pixels (horizontal plus vertical), in [0, 1] units: how much
    fine detail an image holds. An upscaled image has little; sharp edges and fine brush texture add to it."""
    y = gray(image)
    return float((y[:, 1:] - y[:, :-1]).pow(2).mean() + (y[1:, :] - y[:-1, :]).pow(2).mean())


def sharpness(result: Image.Image, working_result: Image.Image) -> float:
    """edge_energy of a large result over that of the working-size result upscaled (bicubic) to its size: above 1,
    the large result is sharper than an upscaled small one."""
    upscaled = working_result.convert("RGB").resize(result.size, Image.Resampling.BICUBIC)
    return edge_energy(result) / max(edge_energy(upscaled), 1e-12)


def spectrum(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(power, radial frequency in cycles per pixel) of (H, W) values, their mean left out."""
    power = torch.fft.rfft2(values - values.mean()).abs().pow(2)
    fy = torch.fft.fftfreq(values.shape[0]).abs().unsqueeze(1)
    fx = torch.fft.rfftfreq(values.shape[1]).unsqueeze(0)
    return power, torch.sqrt(fy**2 + fx**2).expand_as(power)


def fine_share(stylized: Image.Image, photo: Image.Image, wavelength: float = 8.0) -> float:
    """The share of what the style added (stylized minus photo, luma; its mean left out) that lies at wavelengths
    under `wavelength` px: the fine grain. A description only: it mixes the stroke scale with how much of the photo
    a result keeps, so it does not order stroke sizes on every photo (change_frequency does; docs/quality.md)."""
    photo = photo.convert("RGB").resize(stylized.size, Image.Resampling.BICUBIC)
    power, radius = spectrum(gray(stylized) - gray(photo))
    return float(power[radius > 1.0 / wavelength].sum() / power.sum().clamp_min(1e-12))


def change_frequency(result: Image.Image, native: Image.Image) -> float:
    """The median spatial frequency (cycles per long side; half the power lies below it) of what a stroke setting
    changed in the network's own painting (`native`, --stroke-size 1), in luma: where the strokes it painted sit.
    Larger strokes, lower frequency (docs/quality.md: it halves as the stroke size doubles)."""
    change = gray(result) - gray(native.convert("RGB").resize(result.size, Image.Resampling.BICUBIC))
    power, radius = spectrum(change)
    radius = radius.flatten() * max(change.shape)  # cycles per long side
    order = radius.argsort()
    cumulative = power.flatten()[order].cumsum(0)
    return float(radius[order][torch.searchsorted(cumulative, cumulative[-1] / 2).clamp_max(len(order) - 1)])
