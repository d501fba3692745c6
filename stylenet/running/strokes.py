"""Strokes that keep their size: a large photo painted as the model paints its working size, only sharper.

A feed-forward network paints strokes of a fixed number of pixels, so a 4K photo comes out as the photo under a
fine grain. --stroke-size S paints strokes S times larger: the network also runs on a copy of the photo S times
smaller, and that copy's stylization replaces the low frequencies of the full-size stylization (a two-band
blend, result = full + up(small - down(full)), repeated BACK_PROJECTIONS times so that the result reduced to the
small copy's size is the small copy's painting). Viewed whole the
result is the small copy's painting, its strokes S times larger; zoomed in it has the full-size pass's edges and
fine brush texture, not an upscaled blur. S below 1 runs the network on a copy 1/S times larger and scales the
result down (finer strokes). The default (None) is S = the photo's long side over the model's working size
(StyleModel.working_size): every photo reads as the working-size result would, and a photo no larger than the
working size is painted as before. Cost: the full-size pass as before, plus the small one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from stylenet.core.errors import StylenetError
from stylenet.core.images import resize_images

WORKING_SIZE = 256  # px, long side: a model's working size when its file records none (stylenet eval's default size)
MIN_STROKE_SIZE, MAX_STROKE_SIZE = 0.25, 64.0  # 0.25: a copy 4x larger (16x the pixels); 64: a copy of a few dozen px
# The low frequencies' exchange, repeated: full + up(copy - down(full)) once is the two-band blend, but bilinear
# down(up(x)) blurs x, so the reduced result would still hold some of the full pass's low band; a repeat
# (iterative back-projection) takes most of the rest away. the_scream at 1024 px, scaled back to 256: 1.3
# iterations behind its working-size result after one, 1.1 ahead after two (docs/quality.md).
BACK_PROJECTIONS = 2


def working_size(metadata: dict) -> int:
    """The long side (px) at which a model's look is defined: its file's working_size, else the size it was judged
    at (eval.size, 256 for the ready-made models), else WORKING_SIZE."""
    recorded = metadata.get("working_size") or (metadata.get("eval") or {}).get("size")
    return int(recorded) if isinstance(recorded, (int, float)) and recorded >= 16 else WORKING_SIZE


def check_stroke_size(stroke_size: float | None) -> None:
    if stroke_size is not None and not MIN_STROKE_SIZE <= stroke_size <= MAX_STROKE_SIZE:
        raise StylenetError(f"--stroke-size {stroke_size}: must be between {MIN_STROKE_SIZE:g} and {MAX_STROKE_SIZE:g} (1: the "
                            "strokes the network paints at any size; 2: twice as large; leave it out to keep the model's "
                            "look at any size)")


def stroke_scale(height: int, width: int, working_size: int, stroke_size: float | None) -> float:
    """How many times smaller the copy for the strokes is: stroke_size, or for None the photo's long side over the
    working size (at least 1: a photo no larger than the working size is painted as it is)."""
    check_stroke_size(stroke_size)
    if stroke_size is None:
        return max(1.0, max(height, width) / working_size)
    return float(stroke_size)


def paint_at_stroke_size(run: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, scale: float) -> torch.Tensor:
    """run (images -> their stylization, the same size) with strokes `scale` times larger than run paints them."""
    height, width = images.shape[-2:]
    if scale == 1.0:
        return run(images)
    copy_height, copy_width = max(16, round(height / scale)), max(16, round(width / scale))
    copy = run(resize_images(images, copy_height, copy_width)).float()
    if scale < 1.0:  # finer strokes: painted larger, then scaled down
        return resize_images(copy, height, width).clamp_(0.0, 1.0)
    result = run(images).float()
    for _ in range(BACK_PROJECTIONS):  # until the result, reduced to the copy's size, is the copy's painting
        result.add_(resize_images(copy - resize_images(result, copy_height, copy_width), height, width))
    return result.clamp_(0.0, 1.0)
