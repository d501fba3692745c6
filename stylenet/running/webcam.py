"""Live stylization from a camera: `stylenet webcam --model starry_night`.

Frames come from OpenCV (a camera index, or a video file or stream URL standing in for one), go through the
network one at a time (smoothed along the optical flow with --temporal), and go to any of: a window (q or Esc
closes it), a virtual camera (--virtual: pyvirtualcam, so video calls and OBS see the stylized picture as a
camera) and a recording (--record out.mp4, written to a temp file and renamed when the run ends). Ctrl-C ends
the run like q does: the recording is kept.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm import tqdm

from stylenet.core.errors import StylenetError, brief, import_optional
from stylenet.core.files import atomic_write
from stylenet.running.inference import StyleModel
from stylenet.running.temporal import FlowBlend, import_cv2 as import_opencv
from stylenet.running.options import StylizeOptions
from stylenet.running.video import add_video_stream, container_format, import_av, stylize_frames

log = logging.getLogger(__name__)

TITLE = "stylenet (q or Esc quits)"
MILLISECONDS = Fraction(1, 1000)  # recording time base: live frames are stamped by the wall clock


@dataclass
class Camera:
    """Where the frames come from and go; how they are stylized is a StylizeOptions (size, strength,
    preserve_color, temporal)."""

    source: str = "0"  # a camera index, or a video file / stream URL
    window: bool = True
    virtual: bool = False
    record: Path | None = None
    max_frames: int | None = None


@dataclass
class WebcamResult:
    frames: int
    seconds: float
    size: tuple[int, int]

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def import_cv2() -> ModuleType:
    cv2 = import_opencv()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no V4L2 warnings for a missing camera
    return cv2


def check_outputs(camera: Camera, options: StylizeOptions, cv2) -> None:
    """Fail before the camera opens when the run would show nothing or cannot show what it was asked to."""
    if not (camera.window or camera.virtual or camera.record):
        raise StylenetError("--no-window leaves nothing to show: add --virtual or --record FILE, or drop --no-window")
    if camera.record is not None and camera.record.suffix.lower() not in (".mp4", ".mkv", ".mov", ".m4v"):
        raise StylenetError(f"--record {camera.record}: give a .mp4, .mkv or .mov file")
    if camera.max_frames is not None and camera.max_frames < 1:
        raise StylenetError(f"--max-frames {camera.max_frames}: must be at least 1")
    if camera.virtual:
        import_pyvirtualcam()
    if camera.window:
        if "GUI:                           NONE" in cv2.getBuildInformation():
            raise StylenetError("this OpenCV has no window support (opencv-python-headless): pip install opencv-python "
                                "for a window, or use --no-window with --virtual or --record out.mp4")
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise StylenetError("no display for a window ($DISPLAY is unset): use --no-window with --virtual or --record out.mp4")


def open_camera(spec: str, cv2):
    """A camera index ("0"), or a video file or URL read as if it were a camera."""
    if spec.isdigit():
        capture = cv2.VideoCapture(int(spec))
        if not capture.isOpened():
            devices = sorted(str(path) for path in Path("/dev").glob("video*")) if sys.platform.startswith("linux") else []
            found = f"this machine has {', '.join(devices)}" if devices else "this machine shows no camera"
            raise StylenetError(f"no camera at index {spec} ({found}): give another with --camera N, "
                                "or a video file with --camera clip.mp4")
        return capture
    if "://" not in spec and not Path(spec).is_file():
        raise StylenetError(f"--camera {spec}: no such file; give a camera index (0, 1, ...) or a video file")
    capture = cv2.VideoCapture(spec)
    if not capture.isOpened():
        raise StylenetError(f"--camera {spec}: OpenCV cannot read it as a video")
    return capture


class Recorder:
    """H.264 into a temp file; frames stamped by their time since the first one (the stream's own clock for a
    file, the wall clock for a live camera, so playback runs at the speed the run achieved)."""

    def __init__(self, target: Path, tmp: Path, width: int, height: int) -> None:
        av = import_av()
        self.av = av
        self.output = av.open(str(tmp), "w", format=container_format(target))
        self.stream = add_video_stream(self.output, StylizeOptions(), width, height, Fraction(30), MILLISECONDS)
        self.last = -1

    def write(self, array: np.ndarray, milliseconds: int) -> None:
        frame = self.av.VideoFrame.from_ndarray(array, format="rgb24")
        self.last = max(self.last + 1, milliseconds)  # strictly increasing, whatever the clock says
        frame.pts, frame.time_base = self.last, MILLISECONDS
        for packet in self.stream.encode(frame):
            self.output.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.output.mux(packet)
        self.output.close()


def import_pyvirtualcam() -> ModuleType:
    return import_optional("pyvirtualcam", "--virtual", "pip install 'stylenet[webcam]' (and a virtual camera: OBS on "
                   "Windows/macOS, v4l2loopback on Linux)")


def virtual_camera(width: int, height: int, fps: float):
    pyvirtualcam = import_pyvirtualcam()
    try:
        return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB)
    except RuntimeError as error:
        raise StylenetError(f"--virtual: no virtual camera to send to ({brief(error, 160)})") from None


def run_webcam(model: StyleModel, camera: Camera, options: StylizeOptions | None = None,
               progress: bool = True) -> WebcamResult:
    """Stylize camera frames until the camera ends, q/Esc, Ctrl-C or --max-frames; returns what it did. options:
    size, strength, preserve_color and temporal (default: StylizeOptions.live(), frame by frame)."""
    options = replace(options, tile=0) if options is not None else StylizeOptions.live()  # a live frame runs whole
    cv2 = import_cv2()
    check_outputs(camera, options, cv2)
    capture = open_camera(camera.source, cv2)
    live = camera.source.isdigit() or "://" in camera.source
    rate = capture.get(cv2.CAP_PROP_FPS) or 30.0
    try:
        if camera.record is None:
            return stream_frames(model, camera, options, capture, cv2, live, rate, None, progress)
        with atomic_write(camera.record) as tmp:
            return stream_frames(model, camera, options, capture, cv2, live, rate, tmp, progress)
    finally:
        capture.release()
        if camera.window:
            cv2.destroyAllWindows()


def stream_frames(model: StyleModel, camera: Camera, options: StylizeOptions, capture, cv2, live: bool, rate: float,
                  tmp: Path | None, progress: bool) -> WebcamResult:
    blend = None
    if options.temporal > 0:
        blend = FlowBlend(options.temporal)
    recorder = sink = None
    frames, size, started = 0, (0, 0), time.perf_counter()
    bar = None  # made at the first frame, so an error before it is the only line printed
    try:
        while camera.max_frames is None or frames < camera.max_frames:
            ok, bgr = capture.read()
            if not ok:
                if frames == 0:
                    raise StylenetError(f"--camera {camera.source}: gave no frame (busy, or an empty video)")
                break  # the end of a file standing in for a camera, or the camera went away
            stylized, inputs = stylize_frames(model, [np.ascontiguousarray(bgr[:, :, ::-1])], options)
            out = blend(inputs[0], stylized[0]) if blend is not None else stylized[0]
            height, width = out.shape[:2]
            size = (width, height)
            milliseconds = round((time.perf_counter() - started) * 1000) if live else round(frames * 1000 / rate)
            if tmp is not None:
                recorder = recorder or Recorder(camera.record, tmp, width, height)
                recorder.write(out, milliseconds)
            if camera.virtual:
                sink = sink or virtual_camera(width, height, rate)
                sink.send(out)
            frames += 1
            bar = bar if bar is not None else tqdm(total=camera.max_frames, desc="webcam", unit="frame", disable=not progress,
                                                   dynamic_ncols=True)
            bar.update(1)
            if camera.window and show(cv2, out, frames / max(time.perf_counter() - started, 1e-9)):
                break
    except KeyboardInterrupt:  # Ctrl-C ends a live run the way q does: what was recorded is kept
        log.info("stopped after %d frames", frames)
    finally:
        if bar is not None:
            bar.close()
        if sink is not None:
            sink.close()
    if recorder is not None:
        recorder.close()
    elif tmp is not None:
        raise StylenetError("no frame was stylized; nothing recorded")
    return WebcamResult(frames, time.perf_counter() - started, size)


def show(cv2, rgb: np.ndarray, fps: float) -> bool:
    """Draw the frame with its rate in the window; True when q or Esc was pressed or the window was closed."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    cv2.putText(bgr, f"{fps:.1f} fps", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.imshow(TITLE, bgr)
    key = cv2.waitKey(1) & 0xFF
    closed = cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1
    return key in (ord("q"), 27) or closed
