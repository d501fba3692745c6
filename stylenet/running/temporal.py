"""Temporal consistency for video: blend each stylized frame with the previous output carried along the optical
flow of the input frames, where that flow is reliable; and the warping error that measures flicker.

A feed-forward network stylizes every frame on its own, so its texture shimmers where the photo barely changed.
FlowBlend (`stylenet stylize clip.mp4 --temporal 0.6`) computes the flow from frame t back to t-1 on the input
frames (OpenCV's DIS, fast on a CPU), warps the previous output along it, and mixes it into the new output by
STRENGTH, only where the flow passes the forward-backward check (Sundaram et al. 2010, as Ruder et al. 2016 use
it for video style transfer): pixels that were occluded, or that left or entered the frame, keep the new frame.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from stylenet.running.options import check_temporal
from stylenet.core.errors import StylenetError, import_optional


def import_cv2() -> ModuleType:
    return import_optional("cv2", "optical flow and the webcam", "pip install opencv-python-headless (make install includes it)")


def gray(frame: np.ndarray) -> np.ndarray:
    cv2 = import_cv2()
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


@functools.lru_cache(maxsize=4)
def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float32 coordinates of every pixel; made once per frame size, not per warp."""
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def flow_between(estimator, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(H, W, 2) flow: for each pixel of `source`, where it is in `target` (grayscale uint8 inputs)."""
    return estimator.calc(source, target, None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image (of the frame the flow points into) resampled at each pixel's position + flow."""
    cv2 = import_cv2()
    x, y = pixel_grid(*flow.shape[:2])
    return cv2.remap(image, x + flow[..., 0], y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def reliable(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of frame t whose backward flow (t -> t-1) the forward flow (t-1 -> t) undoes, and
    that stay inside frame t-1. Sundaram et al.'s check: |b + f(x + b)|^2 <= 0.01 (|b|^2 + |f(x + b)|^2) + 0.5."""
    height, width = backward.shape[:2]
    x, y = pixel_grid(height, width)
    there_x, there_y = x + backward[..., 0], y + backward[..., 1]
    inside = (there_x >= 0) & (there_x <= width - 1) & (there_y >= 0) & (there_y <= height - 1)
    forward_there = warp(forward, backward)
    round_trip = np.square(backward + forward_there).sum(axis=2)
    scale = np.square(backward).sum(axis=2) + np.square(forward_there).sum(axis=2)
    return inside & (round_trip <= 0.01 * scale + 0.5)


def dis(preset: str = "fast"):
    cv2 = import_cv2()
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    return cv2.DISOpticalFlow_create(presets[preset])


PHOTOMETRIC_LEVELS = 12  # largest |previous input warped - input| (0-255) where the previous output may be carried


class FlowBlend:
    """Feed it (input frame, stylized frame) pairs in order; it returns the temporally blended output frames."""

    def __init__(self, strength: float, preset: str = "fast") -> None:
        check_temporal(strength)
        self.strength = strength
        self.estimator = dis(preset)
        self.previous_gray: np.ndarray | None = None
        self.previous_output: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        """frame: the (H, W, 3) uint8 input at the output's size; stylized: the network's (H, W, 3) uint8 output."""
        current = gray(frame)
        output = stylized
        if self.strength > 0 and self.previous_gray is not None and self.previous_gray.shape == current.shape:
            backward = flow_between(self.estimator, current, self.previous_gray)
            forward = flow_between(self.estimator, self.previous_gray, current)
            # the flow must also explain the photo: where the previous input carried along it differs from this
            # one (a small moving figure the smooth flow missed), the previous output would ghost there
            matches = np.abs(warp(self.previous_gray, backward).astype(np.int16) - current) <= PHOTOMETRIC_LEVELS
            mask = (reliable(backward, forward) & matches)[..., None]
            carried = warp(self.previous_output, backward).astype(np.float32)
            mixed = stylized.astype(np.float32) + self.strength * mask * (carried - stylized.astype(np.float32))
            output = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        self.previous_gray, self.previous_output = current, output
        return output


def warping_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], preset: str = "medium") -> float:
    """Flicker: mean |out_t - warp(out_{t-1})| (0-255 levels) over the pixels where the inputs' flow is reliable,
    averaged over consecutive frame pairs. The flow comes from the input frames, so a still scene must give a
    still output and a moving one an output that moves with it."""
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise StylenetError("warping error needs two or more frames, as many outputs as inputs")
    estimator = dis(preset)
    errors = []
    for t in range(1, len(inputs)):
        now, before = gray(inputs[t]), gray(inputs[t - 1])
        backward = flow_between(estimator, now, before)
        mask = reliable(backward, flow_between(estimator, before, now))
        if not mask.any():
            continue
        difference = np.abs(outputs[t].astype(np.float32) - warp(outputs[t - 1], backward).astype(np.float32))
        errors.append(float(difference[mask].mean()))
    return float(np.mean(errors)) if errors else 0.0
