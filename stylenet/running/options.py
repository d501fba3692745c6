"""How stylenet stylizes: one options type for `stylenet stylize` (photos, folders and videos, on either engine),
the webcam and the benchmarks. Each command fills the fields it has flags for; a field a path does not use (a
photo's start second, a video's JPEG quality) is simply not read there."""

from __future__ import annotations

from dataclasses import dataclass

QUALITY = 95  # JPEG/WebP quality: visually lossless, about a third of PNG's size
CRF, BATCH = 18, 4  # H.264 at visually lossless quality; frames per network call
# The flow blend's default strength: on vtest (24 frames at 384 px) it cut the warping error 2.1x for +8.4% judged
# style with starry_night and 1.95x for -1.0% with the_scream (README, "Flicker"); 0 stylizes frame by frame.
TEMPORAL = 0.75


@dataclass
class StylizeOptions:
    # the picture: every photo, video frame and camera frame
    size: int | None = None  # long side in px (default: the input's)
    scale: float | None = None  # or a factor on the input's size
    strength: float = 1.0  # 0: the input, 1: full style
    preserve_color: bool = False  # keep the input's colours (luminance transfer)
    tile: int | None = None  # None: tiles only where the image would not fit in memory; 0: never; N: N px tiles
    # photos written to JPEG or WebP
    quality: int = QUALITY
    # videos (the webcam reads temporal and batch, not the rest)
    start: float | None = None  # seconds
    end: float | None = None
    codec: str | None = None  # None: libx264, or libvpx-vp9 for .webm
    crf: int = CRF
    batch: int = BATCH  # frames per network call
    temporal: float = TEMPORAL  # blend with the previous output along the optical flow (stylenet/running/temporal.py); 0: off
