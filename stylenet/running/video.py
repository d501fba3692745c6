"""Stylize video files: decode with PyAV (FFmpeg), run frames through the network in batches, encode, and carry
the audio across.

    stylenet stylize clip.mp4 --model starry_night -o clip_starry.mp4 [--start 5 --end 12] [--codec libx264 --crf 18]

What is kept: the frame timing (each frame's own timestamp, so variable frame rates stay as they were; timestamps
that run out of order, repeat or are missing, as in AVIs with packed B-frames, are put back in presentation order:
timestamps.py), the size
(odd sizes too: encoded 4:4:4, which H.264 allows at any size, where 4:2:0 needs even ones), the rotation (frames
are turned upright, as a player shows them, before stylizing) and the audio, in sync: picture and sound are timed
from the first kept frame, wherever the streams start, and --start/--end count from the video stream's start. Its
packets are copied where the output's muxer takes them as they are (tried first, on the cut's packets), else
decoded, resampled to a rate the encoder takes (PyAV's AudioResampler) and re-encoded: AAC, or Opus at 48 kHz for
WebM. The output is written to a temp file beside the target and renamed at the end, so an interrupted or failed
run leaves nothing under the output name; a failure says whether decoding, encoding or writing failed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from stylenet.core.errors import StylenetError, brief, import_optional
from stylenet.core.files import atomic_write
from stylenet.core.images import resize_images
from stylenet.running.inference import StyleModel, target_size
from stylenet.running.options import StylizeOptions
from stylenet.running.temporal import FlowBlend
from stylenet.running.timestamps import FrameClock, frame_ticks

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
WRITTEN_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm"}  # others (.avi) are written as .mp4
CODEC = "libx264"
WEBM_CODEC = "libvpx-vp9"  # WebM holds VP8/VP9/AV1 only: its default
# audio codecs each container holds as they are (where its muxer takes the packets: copy_refused tries them);
# anything else is re-encoded: to AAC, or to Opus at 48 kHz (its own rate; it takes 48/24/16/12/8 kHz only) for WebM
AUDIO_COPY = {
    ".mp4": ("aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"), ".m4v": ("aac", "mp3", "ac3", "eac3"),
    ".mov": ("aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s24le"), ".webm": ("opus", "vorbis"),
}
AUDIO_ENCODER, OPUS_RATE = {".webm": "libopus"}, 48000  # AAC elsewhere
GAP_FRACTION = 50  # a re-encoded frame more than 1/50 s after where the last one ended starts there (a lost packet)
CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"}
# a title or tag that is not UTF-8 (damage, or an old encoder) is read with U+FFFD for its bad bytes: PyAV's "strict"
# default raised UnicodeDecodeError from av.open, a traceback that ended a whole folder (tests/test_soak.py)
METADATA_ERRORS = "replace"
# the errors that are about the disk, where the advice is to free space; any other is the muxer's or the encoder's
DISK_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def video_suffix(source: Path) -> str:
    return source.suffix.lower() if source.suffix.lower() in WRITTEN_EXTENSIONS else ".mp4"


@dataclass
class VideoResult:
    frames: int
    seconds: float  # wall time
    size: tuple[int, int]
    warning: str | None = None  # the input was damaged: where decoding stopped
    audio: str | None = None  # what became of the sound: "copied", or "re-encoded to aac (why)", ...


def import_av() -> ModuleType:
    return import_optional("av", "video", "pip install av (PyAV; make install includes it)")


def check_options(options: StylizeOptions) -> None:
    """What the options cannot check themselves (StylizeOptions checks its values): this FFmpeg's encoders."""
    av = import_av()
    if options.codec is not None and options.codec not in av.codecs_available:
        raise StylenetError(f"--codec {options.codec}: this FFmpeg has no such encoder (try libx264, libvpx-vp9 or mpeg4)")


def upright(frame) -> np.ndarray:
    """The frame as an (H, W, 3) uint8 array, turned as its display matrix says (counter-clockwise degrees)."""
    array = frame.to_ndarray(format="rgb24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def open_input(source: Path):
    av = import_av()
    try:
        container = av.open(str(source), metadata_errors=METADATA_ERRORS)
    except av.error.FFmpegError as error:
        raise StylenetError(f"{source}: not a video FFmpeg can read ({brief(error, 160)})") from None
    if not container.streams.video:
        container.close()
        raise StylenetError(f"{source}: holds no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise StylenetError(f"{source}: its video codec is not one this FFmpeg decodes")
    return container


def stylize_video(model: StyleModel, source: Path, target: Path, options: StylizeOptions, progress: bool = True) -> VideoResult:
    """Stylize every frame of `source` (between options.start and options.end) into `target`, with its audio."""
    check_options(options)
    av = import_av()
    started = time.perf_counter()
    container = open_input(source)
    try:
        with atomic_write(target) as tmp:  # the container format comes from the target's suffix, not tmp's
            result = Transcode(av, model, container, source, target, options).run(tmp, progress)
    finally:
        container.close()
    result.seconds = time.perf_counter() - started
    return result


class Transcode:
    """One video's run: decode, stylize in batches, encode, and carry the sound along on the picture's clock (the
    first kept frame is time 0 for both). Decoding errors stop it with a warning (damaged input); encoding and
    writing errors are one-line StylenetErrors that say which step failed."""

    def __init__(self, av: ModuleType, model: StyleModel, container, source: Path, target: Path,
                 options: StylizeOptions) -> None:
        self.av, self.model, self.container, self.options = av, model, container, options
        self.source, self.target = source, target
        self.video = container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.time_base = self.video.time_base
        # --start/--end count from the video stream's own start, which is not 0 in clips cut with stream copy
        self.zero = float(self.video.start_time * self.time_base) if self.video.start_time is not None else 0.0
        self.begin = self.zero + (options.start or 0.0)
        self.end = self.zero + options.end if options.end is not None else float("inf")
        self.audio_in = container.streams.audio[0] if container.streams.audio else None
        self.output = self.out_video = self.audio = None
        self.origin: Fraction | None = None  # the first kept frame's time in the input: 0 in the output
        self.first_pts: int | None = None
        self.frames_done = 0
        self.pending: list[tuple[np.ndarray, int]] = []
        self.backlog: list = []  # audio packets that arrive before the first frame (and the video stream) exist
        self.blend = None
        if options.temporal > 0:
            self.blend = FlowBlend(options.temporal)

    def run(self, tmp: Path, progress: bool) -> VideoResult:
        start, end = self.options.start or 0.0, self.options.end if self.options.end is not None else float("inf")
        total = estimate_frames(self.container, self.video, start, end)
        self.bar = tqdm(total=total, desc="stylize video", unit="frame", disable=not progress, dynamic_ncols=True)
        try:
            self.output = self.writing(lambda: self.av.open(str(tmp), "w", format=container_format(self.target)))
            if self.audio_in is not None:
                self.audio = AudioTrack(self.av, self.output, self.audio_in, self.source, self.target, self.begin, self.end)
            warning = self.decode_all()
            self.flush()
            if self.out_video is None:
                span = "" if start == 0 and end == float("inf") else f" between {start} s and {end} s"
                raise StylenetError(f"no frame could be decoded{span} (a damaged or empty video"
                                    + (f": {warning}" if warning else "") + "); nothing written")
            if warning is None and total and self.frames_done < total - 1 and end == float("inf"):
                warning = f"the input ends after {self.frames_done} of the {total} frames its header promises (truncated?)"
            self.mux(encode(self.out_video, None))
            if self.audio is not None:
                self.mux(self.audio.flush())
            self.writing(self.output.close)
        except BaseException as error:  # atomic_write removes the partial file
            self.bar.close()
            close_quietly(self.output)
            if isinstance(error, KeyboardInterrupt):  # Ctrl-C: say how far it got
                log.error("interrupted after %d frames; nothing written to %s", self.frames_done, self.target)
            raise
        self.bar.close()
        if warning:
            log.warning("%s: %s; the output stops at the last good frame", self.target, warning)
        height, width = self.out_video.codec_context.height, self.out_video.codec_context.width
        return VideoResult(self.frames_done, 0.0, (width, height), warning, self.audio.note if self.audio else None)

    def decode_all(self) -> str | None:
        """Demux and decode to the cut's end; damaged data stops it: then what went wrong and where, else None."""
        if self.options.start:
            self.container.seek(int(self.begin / self.time_base), stream=self.video, backward=True)
        streams = [self.video] + ([self.audio_in] if self.audio_in is not None else [])
        clock = FrameClock(frame_ticks(self.video.average_rate or self.video.guessed_rate, self.time_base))
        warning = None
        try:
            for packet in self.container.demux(*streams):
                if packet.stream.type == "audio":
                    self.take_audio(packet)
                    continue
                for frame in packet.decode():
                    if not all(self.take_frame(held, pts) for held, pts in clock.push(frame, frame.pts)):
                        return None
        except self.av.error.FFmpegError as error:  # encoders and muxers raise StylenetError, not this
            warning = f"{brief(error, 120)}: decoding stopped after {self.frames_done + len(self.pending) + len(clock.held)} frames"
        for held, pts in clock.drain():  # the frames decoded before the end (or the damage)
            if not self.take_frame(held, pts):
                break
        if clock.repaired:
            log.info("%s: %d frame timestamp(s) missing or out of order, given in presentation order", self.source,
                     clock.repaired)
        return warning

    def take_frame(self, frame, pts: int) -> bool:
        """Queue a decoded frame (its presentation time `pts`) that falls in the cut; False once past the cut's end."""
        seconds = float(pts * self.time_base)
        if seconds < self.begin - 1e-6:
            return True
        if seconds >= self.end:
            return False
        if self.first_pts is None:
            self.first_pts, self.origin = pts, pts * self.time_base
        self.pending.append((upright(frame), pts - self.first_pts))
        if len(self.pending) >= self.options.frames_per_call:
            self.flush()
        return True

    def take_audio(self, packet) -> None:
        if self.out_video is None:  # the muxer starts once every stream exists; the clock once the first frame does
            self.backlog.append(packet)
        else:
            self.mux(self.audio.packets(packet, self.origin, self.end))

    def flush(self) -> None:
        """Stylize and encode the queued frames; the first batch sizes the video stream."""
        if not self.pending:
            return
        arrays, stamps = zip(*self.pending)
        self.pending.clear()
        stylized, inputs = stylize_frames(self.model, list(arrays), self.options)
        if self.blend is not None:
            stylized = np.stack([self.blend(frame, output) for frame, output in zip(inputs, stylized)])
        if self.out_video is None:
            rate = self.video.average_rate or self.video.guessed_rate or Fraction(25)
            height, width = stylized.shape[1:3]  # (N, H, W, 3)
            self.out_video = add_video_stream(self.output, self.options, width, height, rate, self.time_base)
            open_encoder(self.out_video)  # else the muxer opens it, and its refusal reads as a writing error
            for waiting in self.backlog:
                self.mux(self.audio.packets(waiting, self.origin, self.end))
            self.backlog.clear()
        for array, pts in zip(stylized, stamps):
            frame = self.av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = pts, self.time_base
            self.mux(encode(self.out_video, frame))
        self.frames_done += len(stamps)
        self.bar.update(len(stamps))

    def mux(self, packets: list) -> None:
        for packet in packets:
            self.writing(lambda packet=packet: self.output.mux(packet), packet)

    def writing(self, step, packet=None):
        """Run one step of writing the output (opening it, muxing `packet`, closing it); a failure is one line that
        says which: the disk (full, or the file too large for it), or the muxer refusing a packet."""
        try:
            return step()
        except (self.av.error.FFmpegError, ValueError) as error:
            cause = brief(error, 160)
            if getattr(error, "errno", None) in DISK_ERRORS:
                raise StylenetError(f"writing {self.target} failed ({cause}); nothing written: its disk is full or "
                                    "takes no file this large: free some space, or write to another disk") from None
            if packet is None:
                raise StylenetError(f"writing {self.target} failed ({cause}); nothing written") from None
            muxer, what = self.output.format.name, packet.stream.type
            raise StylenetError(f"the {muxer} muxer refused a {what} packet of {self.target} ({cause}); nothing "
                                "written: try another container (.mkv holds every codec)") from None


def encode(stream, frame) -> list:
    """The packets for one frame (None: flush the encoder); its error is one line naming it."""
    with encoder_errors(stream):
        return stream.encode(frame)


def open_encoder(stream) -> None:
    """Open the stream's encoder now, so that settings it refuses fail before any frame is stylized."""
    with encoder_errors(stream):
        stream.codec_context.open(strict=False)


@contextlib.contextmanager
def encoder_errors(stream) -> Iterator[None]:
    """An encoder's error as one line naming the stream, its codec and the way out."""
    try:
        yield
    except (av_errors(), ValueError) as error:
        context = stream.codec_context
        what = f"{context.name} at {context.sample_rate} Hz" if stream.type == "audio" else context.name
        fix = "--codec libx264, libvpx-vp9 or mpeg4" if stream.type == "video" else "another output container (.mkv)"
        raise StylenetError(f"encoding the {stream.type} ({what}) failed: {brief(error, 160)}; nothing written: "
                            f"the encoder refuses these settings (size, rate or --crf); try {fix}") from None


def close_quietly(output) -> None:
    """Close an output container that failed part-way (its file is removed by the caller)."""
    if output is None:
        return
    try:
        output.close()
    except Exception:
        pass


def container_format(target: Path) -> str:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}.get(target.suffix.lower(), "mp4")


def estimate_frames(container, video, start: float, end: float) -> int | None:
    duration = float(video.duration * video.time_base) if video.duration else (container.duration or 0) / 1e6
    rate = float(video.average_rate or video.guessed_rate or 0)
    if not duration or not rate:
        return None
    return max(0, round((min(duration, end) - start) * rate))


def add_video_stream(output, options: StylizeOptions, width: int, height: int, rate: Fraction, time_base: Fraction):
    """The encoder stream: options.codec (default H.264, VP9 for WebM) at options.crf, 4:2:0 where the size allows."""
    codec = options.codec or (WEBM_CODEC if output.format.name == "webm" else CODEC)
    try:
        stream = output.add_stream(codec, rate=rate)
    except (ValueError, av_errors()) as error:
        raise StylenetError(f"--codec {codec}: cannot be written to {output.format.name} ({brief(error, 120)})") from None
    stream.width, stream.height = width, height
    even = width % 2 == 0 and height % 2 == 0
    stream.pix_fmt = "yuv420p" if even or codec not in ("libx264", "libx265") else "yuv444p"
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    if codec in CRF_CODECS:
        stream.options = {"crf": str(options.crf), **({"b": "0"} if codec == WEBM_CODEC else {})}
    return stream


def av_errors() -> type[Exception]:
    return import_av().error.FFmpegError


class AudioTrack:
    """The input's sound in the output, on the picture's clock: its packets copied where the output's muxer takes
    them as they are, else decoded, resampled to a rate the encoder takes and re-encoded (AAC; Opus for WebM)."""

    def __init__(self, av: ModuleType, output, audio, source: Path, target: Path,
                 begin: float, end: float) -> None:
        context = audio.codec_context
        name = context.codec.canonical_name  # "mp3", where the decoder's name is "mp3float"
        allowed = AUDIO_COPY.get(target.suffix.lower())  # None: Matroska holds any codec
        if allowed is not None and name not in allowed:
            refused = f"{output.format.name} cannot hold {name}"
        else:
            refused = copy_refused(av, source, target, begin, end)
        self.resampler, self.next_sample = None, None
        if refused is None:
            self.stream, self.note = output.add_stream_from_template(audio), "copied"
            return
        codec = AUDIO_ENCODER.get(target.suffix.lower(), "aac")
        self.rate = encoder_rate(av, codec, context.sample_rate or OPUS_RATE)
        layout = "mono" if context.channels == 1 else "stereo"  # more channels are mixed down (AC-3 5.1 from DVDs)
        self.stream = output.add_stream(codec, rate=self.rate, layout=layout)
        self.stream.time_base = Fraction(1, self.rate)
        self.resampler = av.AudioResampler(format=self.stream.format, layout=layout, rate=self.rate)
        open_encoder(self.stream)
        change = "re-encoded" if self.rate == context.sample_rate else f"resampled {context.sample_rate} -> {self.rate} Hz, re-encoded"
        self.note = f"{change} to {codec} ({refused})"
        log.info("%s: audio %s %s", target, name, self.note)

    def packets(self, packet, origin: Fraction, end: float) -> list:
        """The output packets for one input packet; [] outside the cut."""
        if packet.pts is None or packet.size == 0 or packet.pts * packet.time_base >= end:
            return []
        return self.encoded(packet, origin) if self.resampler is not None else self.copied(packet, origin)

    def copied(self, packet, origin: Fraction) -> list:
        """The packet moved onto the output's clock. From a stream's own start (origin 0) every packet is kept, the
        encoder's priming packet with its negative time too; after a cut, those that start before it go."""
        if origin > 0 and packet.pts * packet.time_base < origin:
            return []
        shift = round(origin / packet.time_base)
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self.stream
        return [packet]

    def encoded(self, packet, origin: Fraction) -> list:
        try:
            frames = packet.decode()
        except av_errors() as error:  # a damaged sound packet: a moment of silence, not the end of the video
            log.debug("audio packet at %s skipped: %s", packet.pts, brief(error))
            return []
        out = []
        for frame in frames:
            stamp = (frame.pts, frame.time_base) if frame.pts is not None else (packet.pts, packet.time_base)
            if stamp[0] is not None:
                expected = round((stamp[0] * stamp[1] - origin) * self.rate)
                # the first frame sets the output's clock and the rest follow on; after a skipped (damaged) packet
                # the next frame's own time moves the clock on, so the sound after the gap stays in sync
                if self.next_sample is None or expected - self.next_sample > self.rate // GAP_FRACTION:
                    self.next_sample = expected
            if self.next_sample is None:  # no timestamp at all yet: from the output's start
                self.next_sample = 0
            for piece in self.resampler.resample(frame):
                out.extend(self.encode(piece))
        return out

    def encode(self, piece) -> list:
        """Encode samples at the next sample's time; those before the output's time 0 are dropped."""
        if self.next_sample + piece.samples <= 0:
            self.next_sample += piece.samples
            return []
        if self.next_sample < 0:
            piece = drop_samples(piece, -self.next_sample)
            self.next_sample = 0
        piece.pts, piece.time_base = self.next_sample, Fraction(1, self.rate)
        self.next_sample += piece.samples
        return encode(self.stream, piece)

    def flush(self) -> list:
        """What the resampler and the encoder still hold (a copy holds nothing)."""
        if self.resampler is None:
            return []
        held = self.resampler.resample(None) if self.next_sample is not None else []
        return [packet for piece in held for packet in self.encode(piece)] + encode(self.stream, None)


def encoder_rate(av: ModuleType, codec: str, rate: int) -> int:
    """The rate `codec` encodes `rate` Hz sound at: Opus at 48 kHz; others at `rate` where they take it, else the
    nearest rate above that they take (the highest when none is above)."""
    if codec == "libopus":
        return OPUS_RATE
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or rate in rates:
        return rate
    return min((r for r in rates if r > rate), default=max(rates))


def drop_samples(frame, count: int):
    """The frame without its first `count` samples."""
    array = frame.to_ndarray()  # (channels, samples) planar; (1, samples * channels) packed
    step = 1 if frame.format.is_planar else frame.layout.nb_channels
    rest = type(frame).from_ndarray(np.ascontiguousarray(array[:, count * step:]), format=frame.format.name,
                                    layout=frame.layout.name)
    rest.sample_rate = frame.sample_rate
    return rest


class _Discard(io.RawIOBase):
    """A seekable file that keeps no bytes: where copy_refused writes."""

    def __init__(self) -> None:
        self.position = self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.position += len(data)
        self.size = max(self.size, self.position)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position


def copy_refused(av: ModuleType, source: Path, target: Path, begin: float, end: float) -> str | None:
    """Why the output's muxer refuses the source's sound packets as they are, or None when it takes them: tried by
    writing the cut's sound alone into a container of the output's format that keeps no bytes. MP4 refuses, for
    one, an AVI whose chunks cut across AC-3 frames: the parser splits them into frames that share their chunk's
    timestamp, and MP4 takes no decoding time twice."""
    container = av.open(str(source), metadata_errors=METADATA_ERRORS)
    trial = None
    try:
        audio = container.streams.audio[0]
        trial = av.open(_Discard(), "w", format=container_format(target))
        stream = trial.add_stream_from_template(audio)
        packets = container.demux(audio)
        while True:
            try:
                packet = next(packets)
            except (StopIteration, av.error.FFmpegError):  # damaged data: the run itself says where it stops
                break
            seconds = packet.pts * packet.time_base if packet.pts is not None else None
            if seconds is None or packet.size == 0 or seconds < begin:
                continue
            if seconds >= end:
                break
            packet.stream = stream
            trial.mux(packet)
        trial.close()
        trial = None
        return None
    except (ValueError, av.error.FFmpegError) as error:
        muxer = trial.format.name if trial else container_format(target)
        return f"the {muxer} muxer refuses its packets as they are: {brief(error, 100)}"
    finally:
        close_quietly(trial)
        container.close()


@torch.inference_mode()
def stylize_frames(model: StyleModel, arrays: list[np.ndarray], options: StylizeOptions) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 frames -> (stylized, inputs): both (N, H', W', 3) uint8, sized by options.size/scale."""
    height, width = arrays[0].shape[:2]
    out_width, out_height = target_size((width, height), options.size, options.scale)
    frames = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
    frames = resize_images(frames, out_height, out_width)
    strength = model.network_strength(options.strength)  # the rest, if any, in model.finish as for a photo
    stylized = model.stylize_tensor(frames.to(model.device), options.tile, strength, options.stroke_size).float().cpu()
    out = stylized.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    source = frames.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if model.finishes(options.strength, options.preserve_color):
        out = np.stack([np.asarray(model.finish(Image.fromarray(o), Image.fromarray(s), options.strength, options.preserve_color))
                        for o, s in zip(out, source)])
    return out, source


def frames_of(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a video as (H, W, 3) uint8, upright: for tests, metrics and the README's pictures."""
    container = open_input(path)
    try:
        for frame in container.decode(video=0):
            yield upright(frame)
    finally:
        container.close()
