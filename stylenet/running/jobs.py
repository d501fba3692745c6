"""Stylize many files: expand inputs (files, folders, globs), mirror them into an output folder, report."""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from stylenet.core.errors import StylenetError
from stylenet.core.images import find_images, image_extensions, load_image, output_format, save_image
from stylenet.running.inference import StyleModel
from stylenet.running.options import StylizeOptions
from stylenet.running.video import VIDEO_EXTENSIONS, WRITTEN_EXTENSIONS, is_video, stylize_video, video_suffix

log = logging.getLogger(__name__)

KEPT_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}  # others are written as .png


@dataclass
class Job:
    source: Path
    target: Path


@dataclass
class Outcome:
    """What one job did: the local engine and the Ray workers (stylenet/running/cluster.py) report the same."""

    target: Path | str
    error: str | None = None  # one line, when the job failed
    megapixels: float = 0.0
    video: bool = False
    frames: int = 0
    video_seconds: float = 0.0


@dataclass
class Summary:
    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0
    videos: int = 0
    frames: int = 0
    video_seconds: float = 0.0
    first_seconds: float | None = None  # from the start until the first file was done: start-up (model, workers)

    def add(self, source: Path | str, outcome: Outcome) -> None:
        """Count one job's outcome."""
        if outcome.error is not None:
            self.failed.append((source, outcome.error))
            return
        self.written.append(outcome.target)
        self.megapixels += outcome.megapixels
        if outcome.video:
            self.videos, self.frames = self.videos + 1, self.frames + outcome.frames
            self.video_seconds += outcome.video_seconds

    def line(self) -> str:
        images = len(self.written) - self.videos
        parts = [f"{images} image(s), {self.megapixels:.1f} MP"] if images or not self.videos else []
        if self.videos:
            rate = self.frames / self.video_seconds if self.video_seconds else 0.0
            parts.append(f"{self.videos} video(s), {self.frames} frames at {rate:.1f} frames/s")
        text = f"stylized {'; '.join(parts)} in {self.seconds:.1f} s"
        if images and self.seconds:
            text += f" ({images / self.seconds:.2f} images/s)"
        if self.existing:
            text += f"; {len(self.existing)} left as they were (output exists; --overwrite replaces)"
        if self.failed:
            text += f"; {len(self.failed)} FAILED (listed above)"
        return text


def find_media(root: Path) -> list[Path]:
    """Every image and video file under root (recursively), sorted."""
    videos = [path for path in root.rglob("*") if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()]
    return sorted(find_images(root) + videos)


def expand_input(text: str) -> tuple[list[Path], Path]:
    """(image and video files, the folder their output paths are relative to) for one file, folder or glob."""
    path = Path(text)
    if path.is_dir():
        return find_media(path), path
    if path.is_file():
        return [path], path.parent
    if glob.has_magic(text):
        extensions = image_extensions() | VIDEO_EXTENSIONS
        matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
        prefix = next((i for i, part in enumerate(path.parts) if glob.has_magic(part)), 0)
        base = Path(*path.parts[:prefix]) if prefix else Path(".")
        return [m for m in matches if m.is_file() and m.suffix.lower() in extensions], base
    raise StylenetError(f"input not found: {text} (give image or video files, folders or quoted globs)")


def output_suffix(source: Path, extension: str | None) -> str:
    if is_video(source):
        return video_suffix(source)  # --ext names image formats
    if extension:
        return "." + extension.lower().lstrip(".")
    return source.suffix.lower() if source.suffix.lower() in KEPT_EXTENSIONS else ".png"


def one_file(inputs: list[str]) -> bool:
    """True for the single-file case: one input, and it is a file (its output is a file, not a folder)."""
    return len(inputs) == 1 and Path(inputs[0]).is_file()


def plan(inputs: list[str], output: Path | None, extension: str | None = None) -> list[Job]:
    """One Job per image; a single file input maps to a file, anything else mirrors into a folder."""
    expanded = [expand_input(text) for text in inputs]
    if one_file(inputs) and not (output and output.is_dir()):
        source = Path(inputs[0])
        target = output or Path(f"{source.stem}_stylized{output_suffix(source, extension)}")
        check_target(source, target)
        return [Job(source, target)]
    root = output or Path("stylized")
    if root.is_file():
        raise StylenetError(f"-o {root} is a file, but there are several inputs: give a folder")
    jobs = []
    for text, (files, base) in zip(inputs, expanded):
        folder = root / Path(text).name if len(inputs) > 1 and Path(text).is_dir() else root
        for source in files:
            relative = source.relative_to(base) if source.is_relative_to(base) else Path(source.name)
            jobs.append(Job(source, (folder / relative).with_suffix(output_suffix(source, extension))))
    if not jobs:
        raise StylenetError(f"no images found in {' '.join(inputs)}")
    targets: dict[Path, Path] = {}
    for job in jobs:
        check_target(job.source, job.target)
        if job.target in targets:
            raise StylenetError(f"{targets[job.target]} and {job.source} would both be written to {job.target}")
        targets[job.target] = job.source
    return jobs


def check_target(source: Path, target: Path) -> None:
    """An image goes to an image format Pillow writes, a video to a video container stylenet writes."""
    if not is_video(source):
        output_format(target)
    elif target.suffix.lower() not in WRITTEN_EXTENSIONS:
        raise StylenetError(f"-o {target}: a video is written as {', '.join(sorted(WRITTEN_EXTENSIONS))}; "
                            f"choose one of those extensions")


def stylize_file(model: StyleModel, job: Job, options: StylizeOptions) -> Image.Image:
    image = load_image(job.source, "input", keep_alpha=True)
    result = model.stylize(image, options.size, options.scale, options.strength, options.preserve_color, options.tile,
                           options.stroke_size)
    image_format = output_format(job.target)
    if result.mode == "RGBA" and image_format in ("JPEG", "BMP"):
        log.warning("%s: %s has no alpha channel; transparency dropped", job.target, image_format)
        result = result.convert("RGB")
    save_args = {"quality": options.quality} if image_format in ("JPEG", "WEBP") else {}
    save_image(result, job.target, **save_args)
    return result


def run_job(model: StyleModel, job: Job, options: StylizeOptions, progress: bool = True) -> Outcome:
    """Stylize one image or video; a StylenetError becomes the outcome's error, written nowhere."""
    try:
        if is_video(job.source):
            video = stylize_video(model, job.source, job.target, options, progress=progress)
            return Outcome(job.target, video=True, frames=video.frames, video_seconds=video.seconds)
        result = stylize_file(model, job, options)
    except StylenetError as error:
        return Outcome(job.target, error=str(error))
    return Outcome(job.target, megapixels=result.size[0] * result.size[1] / 1e6)


def pending(jobs: list[Job], overwrite: bool, exists: Callable[[Job], bool] = lambda job: job.target.exists(),
            ) -> tuple[list[Job], list[Job]]:
    """(jobs to run, jobs whose output exists and stays): a rerun does only what is missing. exists: whether a
    job's output is there (the Ray engine answers it from one listing of a remote output folder)."""
    todo, existing = [], []
    for job in jobs:
        (todo if overwrite or not exists(job) else existing).append(job)
    return todo, existing


def stylize_jobs(model: StyleModel, jobs: list[Job], options: StylizeOptions, overwrite: bool = False) -> Summary:
    """Stylize every job; a failing image is recorded and the rest go on. Outputs are written atomically."""
    started = time.perf_counter()
    todo, existing = pending(jobs, overwrite)
    summary = Summary(existing=[job.target for job in existing])
    for job in tqdm(todo, desc="stylize", unit="file", disable=len(todo) < 2, dynamic_ncols=True):
        summary.add(job.source, run_job(model, job, options))
        summary.first_seconds = summary.first_seconds or time.perf_counter() - started
    summary.seconds = time.perf_counter() - started
    return summary
