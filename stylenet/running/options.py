"""How stylenet stylizes: one options type for `stylenet stylize` (photos, folders and videos, on either engine),
the webcam and the benchmarks. Each command fills the fields it has flags for; a field a path does not use (a
photo's start second, a video's JPEG quality) is simply not read there."""

from __future__ import annotations

from dataclasses import dataclass

from stylenet.core.errors import StylenetError
from stylenet.running.strokes import check_stroke_size

QUALITY = 95  # JPEG/WebP quality: visually lossless, about a third of PNG's size
CRF, BATCH = 18, 4  # H.264 at visually lossless quality; frames per network call
IMAGES_PER_TASK = 4  # --engine ray: the images one task takes (a video is a task of its own)
# The flow blend's default strength: on vtest (24 frames at 384 px) it cut the warping error 2.1x for +8.4% judged
# style with starry_night and 1.95x for -1.0% with the_scream (README, "Flicker"); 0 stylizes frame by frame.
TEMPORAL = 0.75
LIVE_TEMPORAL = 0.0  # the webcam: frame by frame unless asked (the flow costs each live frame its time)


@dataclass
class StylizeOptions:
    # the picture: every photo, video frame and camera frame
    size: int | None = None  # long side in px (default: the input's)
    scale: float | None = None  # or a factor on the input's size
    strength: float = 1.0  # 0: the input, 1: full style
    preserve_color: bool = False  # keep the input's colours (luminance transfer)
    tile: int | None = None  # None: tiles only where the image would not fit in memory; 0: never; N: N px tiles
    stroke_size: float | None = None  # None: the model's look at any size (running/strokes.py); 1: its native strokes
    # photos written to JPEG or WebP
    quality: int = QUALITY
    # videos (the webcam reads temporal and frames_per_call, not the rest)
    start: float | None = None  # seconds
    end: float | None = None
    codec: str | None = None  # None: libx264, or libvpx-vp9 for .webm
    crf: int = CRF
    frames_per_call: int = BATCH  # video and camera frames per network call (--batch-size)
    temporal: float = TEMPORAL  # blend with the previous output along the optical flow (stylenet/running/temporal.py); 0: off

    @classmethod
    def live(cls, **fields: object) -> StylizeOptions:
        """A camera's options (`stylenet webcam`): whole frames (a live frame is never tiled), frame by frame
        unless temporal is given."""
        return cls(**{"temporal": LIVE_TEMPORAL, **fields, "tile": 0})

    def __post_init__(self) -> None:
        """Every value checked where the options are made, named by its flag: one line, before any work."""
        if self.size is not None and self.size < 1:
            raise StylenetError(f"--size {self.size}: must be at least 1 px")
        if self.scale is not None and not self.scale > 0:
            raise StylenetError(f"--scale {self.scale}: must be above 0")
        check_strength(self.strength)
        check_stroke_size(self.stroke_size)
        if self.tile is not None and self.tile < 0:
            raise StylenetError(f"--tile {self.tile}: must be 0 (never tile) or a tile side in px")
        if not 1 <= self.quality <= 100:
            raise StylenetError(f"--quality {self.quality}: must be between 1 and 100 (JPEG/WebP; {QUALITY} is the default)")
        if self.start is not None and self.start < 0:
            raise StylenetError(f"--start {self.start}: must be 0 or more seconds")
        if self.end is not None and self.end <= (self.start or 0):
            raise StylenetError(f"--end {self.end}: must be after --start ({self.start or 0} s)")
        if not 0 <= self.crf <= 63:
            raise StylenetError(f"--crf {self.crf}: must be between 0 (lossless) and 51 (H.264) or 63 (VP9/AV1)")
        if self.frames_per_call < 1:
            raise StylenetError(f"--batch-size {self.frames_per_call}: must be at least 1")
        check_temporal(self.temporal)


def check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise StylenetError(f"strength must be between 0 and 1, got {strength}")


def check_temporal(strength: float) -> None:
    """--temporal's range: where options are made and where a flow blend is made."""
    if not 0.0 <= strength < 1.0:
        raise StylenetError(f"--temporal {strength}: must be at least 0 (off) and below 1 (1 would freeze the "
                            f"first frame); 0.5-0.8 is typical")
