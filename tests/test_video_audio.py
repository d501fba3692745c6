"""Video files' sound through `stylize_video`: rates an encoder cannot take (resampled), copied packets a muxer
refuses (re-encoded), encoder and muxer errors named as such, sync measured on a click and a flash, and the
matrix of input containers x audio codecs x rates x output containers (RELIABILITY.md, "Video containers and
audio"; `python -m tests.test_video_audio` prints that table)."""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stylenet.core.errors import StylenetError
from stylenet.running.inference import load_model
from stylenet.running.options import StylizeOptions
from stylenet.running.video import frames_of, stylize_video
from tests.conftest import PYTHON, run_env
from tests.test_video import lone_frame

STYLENET = str(Path(PYTHON).parent / "stylenet")
PASS = StylizeOptions(strength=0.0, temporal=0, crf=0)  # strength 0: the picture passes through, so a flash stays one
VIDEO_CODEC = {".webm": "libvpx-vp9", ".avi": "mpeg4"}  # libx264 elsewhere
SAMPLE_FORMAT = {"aac": "fltp", "mp3": "fltp", "libopus": "flt", "ac3": "fltp", "pcm_s16le": "s16"}


def make_clip(path: Path, audio: str, rate: int, seconds: float = 1.0, fps: int = 10, video_start: float = 0.0,
              event: float | None = None, channels: int = 1) -> Path:
    """A 64x48 clip, its video from `video_start` and its sound from 0: grey frames and a quiet 440 Hz tone, or,
    with `event`, silence and dark frames but for a white frame and a click at that time (seconds)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(VIDEO_CODEC.get(path.suffix, "libx264"), rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream(audio, rate=rate, layout="mono" if channels == 1 else "stereo")
        first = round(video_start * fps)
        for index in range(first, round(seconds * fps)):
            level = 250 if event is not None and index == round(event * fps) else 30 if event is not None else 120
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        times = np.arange(round(seconds * rate)) / rate
        if event is None:
            samples = 0.2 * np.sin(2 * np.pi * 440 * times)
        else:
            samples = click_at(times, event)
        fmt = SAMPLE_FORMAT[audio]
        data = np.repeat(samples[None], channels, axis=0) if fmt.endswith("p") else np.repeat(samples, channels)[None]
        data = (data * 32767).astype(np.int16) if fmt == "s16" else data.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=sound.layout.name)
        frame.sample_rate, frame.pts = rate, 0
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


def click_at(times: np.ndarray, event: float) -> np.ndarray:
    """Silence but for a 3-ms burst at 1 kHz from `event` seconds: the samples at `times`."""
    return np.where((times >= event) & (times < event + 0.003), 0.9 * np.sin(2 * np.pi * 1000 * times), 0.0)


def audio_facts(path: Path) -> dict:
    """The output's sound: codec, rate, its packets, its first and last sample's time and its samples."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return {"codec": None}
        stream = container.streams.audio[0]
        facts = {"codec": stream.codec_context.name, "rate": stream.codec_context.sample_rate}
        facts["packets"] = [bytes(p) for p in container.demux(stream) if p.size]
        container.seek(0)
        chunks, first, last = [], None, 0.0
        for frame in container.decode(stream):
            samples = frame.to_ndarray().astype(np.float64)
            mono = samples.reshape(-1, frame.layout.nb_channels)[:, 0] if not frame.format.is_planar else samples[0]
            if first is None:
                first = float(frame.time)
            scale = 32768 if frame.format.name.startswith("s16") else 1
            chunks.append((float(frame.time), frame.sample_rate, mono / scale))
            last = float(frame.time) + frame.samples / frame.sample_rate
    facts.update(first=first, last=last, chunks=chunks)
    return facts


def click_time(path: Path) -> float:
    """When the output's sound first passes half of full scale (the click)."""
    for start, rate, samples in audio_facts(path)["chunks"]:
        loud = np.flatnonzero(np.abs(samples) > 0.45)
        if loud.size:
            return start + loud[0] / rate
    raise AssertionError(f"{path}: no click in its sound")


def flash_time(path: Path) -> float:
    """The timestamp of the output's white frame."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.to_ndarray(format="rgb24").mean() > 180:
                return float(frame.time)
    raise AssertionError(f"{path}: no white frame")


@pytest.fixture(scope="module")
def model(tiny_model: Path):
    return load_model(tiny_model, "cpu")


def test_44k_aac_to_webm_is_resampled_to_48k_opus(tmp_path: Path, model) -> None:
    """libopus takes 48/24/16/12/8 kHz only; 44.1 kHz, the most common rate, failed as a 'damaged input'."""
    clip = make_clip(tmp_path / "clip.mp4", "aac", 44100)
    result = stylize_video(model, clip, tmp_path / "out.webm", StylizeOptions(temporal=0), progress=False)
    sound = audio_facts(tmp_path / "out.webm")
    assert (sound["codec"], sound["rate"]) == ("opus", 48000) and result.frames == 10
    assert "resampled" in result.audio and abs(sound["last"] - 1.0) < 0.05


def split_audio_chunks(path: Path, size: int) -> Path:
    """Regroup an AVI's audio into `size`-byte chunks that cut across AC-3 frames, as DVD rips and camcorder files
    hold them; idx1 goes (the demuxer reads the chunks in order)."""
    data = path.read_bytes()
    movi = data.find(b"movi") - 8  # the LIST that holds the chunks
    end = movi + 8 + struct.unpack("<I", data[movi + 4:movi + 8])[0]
    position, video, audio = movi + 12, [], bytearray()
    while position < end:
        tag, length = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        body = data[position + 8:position + 8 + length]
        audio.extend(body) if tag.endswith(b"wb") else video.append((tag, body))
        position += 8 + length + (length & 1)
    pieces = [(b"01wb", bytes(audio[i:i + size])) for i in range(0, len(audio), size)]
    per_frame = len(pieces) // len(video) + 1
    chunks = [c for i, v in enumerate(video) for c in (*pieces[i * per_frame:(i + 1) * per_frame], v)]
    chunks += pieces[len(video) * per_frame:]
    movi_body = b"".join(tag + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1) for tag, body in chunks)
    out = bytearray(data[:movi]) + b"LIST" + struct.pack("<I", 4 + len(movi_body)) + b"movi" + movi_body
    struct.pack_into("<I", out, 4, len(out) - 8)
    flags = out.find(b"avih") + 8 + 12
    struct.pack_into("<I", out, flags, struct.unpack("<I", out[flags:flags + 4])[0] & ~0x10)  # no AVIF_HASINDEX
    path.write_bytes(bytes(out))
    return path


def test_ac3_avi_to_mp4_copies_or_reencodes_never_a_traceback(tmp_path: Path, model, tiny_model: Path) -> None:
    """MP4 holds AC-3 (frame-aligned packets are copied); what it refused were the timestamps of an AVI whose chunks
    cut across frames: the parser splits them into frames that share a chunk's timestamp, and the muxer takes no
    dts twice. Such audio is re-encoded to AAC."""
    aligned = make_clip(tmp_path / "aligned.avi", "ac3", 48000, seconds=2, channels=2)
    result = stylize_video(model, aligned, tmp_path / "aligned.mp4", StylizeOptions(temporal=0), progress=False)
    assert audio_facts(tmp_path / "aligned.mp4")["codec"] == "ac3" and result.audio == "copied"
    dvd = split_audio_chunks(make_clip(tmp_path / "dvd.avi", "ac3", 48000, seconds=2, channels=2), 1000)
    with av.open(str(dvd)) as container:  # the cause: two packets with one dts
        stamps = [p.dts for p in container.demux(container.streams.audio[0]) if p.size]
    assert any(b <= a for a, b in zip(stamps, stamps[1:]))
    run = subprocess.run([STYLENET, "stylize", str(dvd), "--model", str(tiny_model), "-o", str(tmp_path / "dvd.mp4"),
                          "--temporal", "0"], capture_output=True, text=True, env=run_env(), timeout=300)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    sound = audio_facts(tmp_path / "dvd.mp4")
    assert sound["codec"] == "aac" and sound["rate"] == 48000 and abs(sound["last"] - 2.0) < 0.1
    assert len(list(frames_of(tmp_path / "dvd.mp4"))) == 20


def test_encoder_and_muxer_errors_say_which_step_failed(tmp_path: Path, model, tiny_model: Path) -> None:
    """One line naming the step (encoding, writing), not 'damaged input'; no traceback; nothing left behind."""
    clip = make_clip(tmp_path / "clip.mp4", "aac", 8000)
    with pytest.raises(StylenetError, match=r"encoding the video \(mpeg2video\) failed: Invalid argument") as error:
        stylize_video(model, clip, tmp_path / "out.mp4", StylizeOptions(codec="mpeg2video", temporal=0), progress=False)
    assert "decod" not in str(error.value) and "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]

    def small_files() -> None:  # a disk that takes 8 KB per file: the muxer's writes fail (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    long_clip = make_clip(tmp_path / "long.mkv", "aac", 48000, seconds=3)
    (tmp_path / "out").mkdir()
    command = [STYLENET, "stylize", str(long_clip), "--model", str(tiny_model), "-o", str(tmp_path / "out" / "x.mkv"),
               "--temporal", "0", "--crf", "0"]
    run = subprocess.run(command, capture_output=True, text=True, env=run_env(), timeout=300, preexec_fn=small_files)
    lines = [line for line in run.stderr.strip().splitlines() if not line.startswith("stylize video")]  # the bar
    assert run.returncode == 2 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "writing" in lines[0] and "File too large" in lines[0] and "decod" not in lines[0]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_sound_and_picture_stay_in_sync_when_the_video_starts_late(tmp_path: Path, model, suffix: str) -> None:
    """Measured: a click and a white frame at 1.5 s, the video stream starting at 0.5 s (a clip cut with stream copy).
    The click must keep its place against the flash within one frame (40 ms), for copied (.mp4) and re-encoded
    (.webm: Opus) sound, whole and cut; --start counts from the video stream's start."""
    clip = make_clip(tmp_path / "clip.mp4", "aac", 48000, seconds=3, fps=25, video_start=0.5, event=1.5)
    with av.open(str(clip)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    source = click_time(clip) - flash_time(clip)  # -20 ms: MP4's edit list puts the video at 0.48 s, not 0.5
    assert abs(source) < 0.04 and abs(times[0] - 0.5) < 0.04
    out = tmp_path / f"out{suffix}"
    stylize_video(model, clip, out, PASS, progress=False)
    offset = click_time(out) - flash_time(out)
    print(f"{suffix}: click - flash = {offset * 1000:+.1f} ms (the input: {source * 1000:+.1f} ms)")
    assert abs(offset - source) < 0.04, offset
    cut = tmp_path / f"cut{suffix}"
    result = stylize_video(model, clip, cut, StylizeOptions(strength=0.0, temporal=0, start=0.5, end=2.0), progress=False)
    kept = [t for t in times if times[0] + 0.5 - 1e-6 <= t < times[0] + 2.0]  # 0.5 s to 2 s after the stream's start
    assert result.frames == len(kept) and abs(flash_time(cut) - (flash_time(clip) - kept[0])) < 1e-3
    offset = click_time(cut) - flash_time(cut)
    print(f"{suffix} cut: click - flash = {offset * 1000:+.1f} ms")
    assert abs(offset - source) < 0.04, offset


def megamind_with_a_click(source: Path, path: Path, audio: str, seconds: float = 2.0, rate: int = 48000) -> Path:
    """The shared AVI's own video packets (packed B-frames: timestamps out of order) for `seconds`, remuxed into an
    AVI with generated stereo sound: silence but for a click at 41/30 s, where its one-frame flash (frame 40, stamped
    41 as FFmpeg's best-effort timestamps count) is shown."""
    with av.open(str(source)) as original, av.open(str(path), "w") as container:
        video_in = original.streams.video[0]
        video = container.add_stream_from_template(video_in)
        sound = container.add_stream(audio, rate=rate, layout="stereo")
        for packet in original.demux(video_in):
            if packet.dts is None:
                continue
            if packet.dts * video_in.time_base >= seconds:
                break
            packet.stream = video
            container.mux(packet)
        samples = click_at(np.arange(round(seconds * rate)) / rate, 41 / 30).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.repeat(samples[None], 2, axis=0), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


def lone_frame_time(path: Path, presentation_order: bool = False) -> float:
    """The time of the frame unlike both its neighbours (the flash); presentation_order: the input's timestamps
    sorted, as FFmpeg's best-effort timestamps give them (its decoder hands frames over in presentation order)."""
    with av.open(str(path)) as container:
        decoded = [(frame.to_ndarray(format="gray"), frame.pts, frame.time_base) for frame in container.decode(video=0)]
    stamps = sorted(pts for _, pts, _ in decoded) if presentation_order else [pts for _, pts, _ in decoded]
    return float(stamps[lone_frame([frame for frame, _, _ in decoded])] * decoded[0][2])


@pytest.mark.slow
@pytest.mark.parametrize("audio", ["ac3", "mp3"])
def test_a_real_avi_with_b_frames_keeps_its_sound_in_sync(tmp_path: Path, data_dir: Path, model, audio: str) -> None:
    """Measured as above, on the shared AVI's own video packets with AC-3 and MP3 sound: in every output container
    the click stays on the flash within one frame (1/30 s) of where it was in the input."""
    clip = megamind_with_a_click(data_dir / "video" / "Megamind_bugy.avi", tmp_path / f"in-{audio}.avi", audio)
    source = click_time(clip) - lone_frame_time(clip, presentation_order=True)
    assert abs(source) < 1 / 30
    for suffix in OUTPUTS:
        out = tmp_path / f"out{suffix}"
        result = stylize_video(model, clip, out, StylizeOptions(strength=0.0, temporal=0, size=96), progress=False)
        offset = click_time(out) - lone_frame_time(out)
        print(f"{audio} -> {suffix} ({result.audio}): click - flash = {offset * 1000:+.1f} ms (input {source * 1000:+.1f})")
        assert result.frames == 60 and abs(offset - source) < 1 / 30, (suffix, offset, source)


# The matrix: what each output does with each input's sound. Rates span 8-48 kHz where the codec allows.
INPUTS = {".mp4": ("aac", "mp3", "libopus", "ac3"), ".mkv": ("aac", "mp3", "libopus", "ac3", "pcm_s16le"),
          ".mov": ("aac", "mp3", "ac3", "pcm_s16le"), ".webm": ("libopus",), ".avi": ("aac", "mp3", "ac3", "pcm_s16le")}
RATES = {"aac": (8000, 22050, 44100, 48000), "mp3": (8000, 22050, 44100, 48000), "libopus": (8000, 16000, 48000),
         "ac3": (32000, 44100, 48000), "pcm_s16le": (8000, 22050, 44100, 48000)}
OUTPUTS = (".mp4", ".mkv", ".mov", ".webm")  # no .avi: stylenet writes .avi inputs as .mp4 (video_suffix)
CASES = [(suffix, codec, rate) for suffix, codecs in INPUTS.items() for codec in codecs for rate in RATES[codec]
         if not (codec == "mp3" and rate < 16000 and suffix == ".mp4")]  # MP4 refuses MP3 below 16 kHz


def matrix_row(tmp_path: Path, model, suffix: str, codec: str, rate: int) -> dict[str, str]:
    """Stylize a 1-s clip into every output container; each cell says what became of its sound."""
    clip = make_clip(tmp_path / f"in{suffix}", codec, rate)
    before = audio_facts(clip)
    row = {}
    for out_suffix in OUTPUTS:
        out = tmp_path / f"out{out_suffix}"
        stylize_video(model, clip, out, StylizeOptions(temporal=0, frames_per_call=10), progress=False)
        after = audio_facts(out)
        assert after["codec"] is not None and len(list(frames_of(out))) == 10, out_suffix
        assert abs(after["first"]) < 0.1 and abs(after["last"] - before["last"]) < 0.15, (out_suffix, after, before["last"])
        if after["codec"] == before["codec"]:  # the same bytes (MOV cuts PCM into other packets)
            assert b"".join(after["packets"]) == b"".join(before["packets"]) and after["rate"] == before["rate"], out_suffix
            row[out_suffix] = "copied"
        elif after["rate"] == before["rate"]:
            row[out_suffix] = f"re-encoded {after['codec']}"
        else:
            row[out_suffix] = f"resampled {after['codec']} {after['rate'] // 1000} kHz"
    return row


@pytest.mark.parametrize(("suffix", "codec", "rate"), CASES, ids=[f"{s[1:]}-{c}-{r}" for s, c, r in CASES])
def test_every_container_codec_and_rate_comes_out_with_its_sound(tmp_path: Path, model, suffix: str, codec: str,
                                                                  rate: int) -> None:
    row = matrix_row(tmp_path, model, suffix, codec, rate)
    assert row[".mkv"] == "copied"  # Matroska holds every codec here
    webm = "copied" if codec == "libopus" else "re-encoded opus" if rate == 48000 else "resampled opus 48 kHz"
    assert row[".webm"] == webm  # WebM holds Opus (and Vorbis, which this FFmpeg cannot encode well) only


def print_table() -> None:  # pragma: no cover - `python -m tests.test_video_audio`: RELIABILITY.md's table
    import tempfile

    import torch

    from stylenet.models.export import save_safetensors
    from stylenet.models.kinds.transformer import TransformerNet
    from stylenet.models.modelfile import model_metadata

    torch.manual_seed(0)  # the tiny_model fixture's network
    network = TransformerNet(channels=4, num_residual_blocks=1)
    with tempfile.TemporaryDirectory() as folder:
        metadata = model_metadata(network, style={"name": "tiny"}, steps=0)
        model = load_model(save_safetensors(network, metadata, Path(folder) / "m.safetensors"), "cpu")
        print("| input | audio | rate | " + " | ".join(f"-> {s}" for s in OUTPUTS) + " |")
        print("| --- | --- | --- |" + " --- |" * len(OUTPUTS))
        for suffix, codec, rate in CASES:
            case = Path(folder) / f"{suffix[1:]}-{codec}-{rate}"
            case.mkdir()
            row = matrix_row(case, model, suffix, codec, rate)
            print(f"| {suffix} | {codec.removeprefix('lib')} | {rate} | " + " | ".join(row[s] for s in OUTPUTS) + " |")
            sys.stdout.flush()


if __name__ == "__main__":
    print_table()
