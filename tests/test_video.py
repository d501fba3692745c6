"""Videos through `stylenet stylize`: frames, timing, size and audio kept, cuts, folders mixing photos and
videos, and the failure cases (damaged input, not a video, Ctrl-C) leaving nothing half-written."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from stylenet.running.jobs import plan, stylize_jobs
from stylenet.core.errors import StylenetError
from stylenet.running.inference import load_model
from stylenet.running.options import StylizeOptions
from stylenet.running.video import frames_of, stylize_video
from tests.conftest import PYTHON, run_env

STYLENET = str(Path(PYTHON).parent / "stylenet")
RATE = 10


def make_clip(path: Path, size: tuple[int, int] = (65, 49), frames: int = 12, audio: str | None = "aac",
              video_codec: str = "libx264") -> Path:
    """A moving gradient at 10 frames/s, with a 440 Hz tone as long as the video when `audio` names a codec."""
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=RATE)
        video.width, video.height = width, height
        video.pix_fmt = "yuv444p" if video_codec == "libx264" else "yuv420p"
        sound = container.add_stream(audio, rate=8000, layout="mono") if audio else None
        x = np.linspace(0, 255, width)[None, :, None]
        y = np.linspace(0, 255, height)[:, None, None]
        for index in range(frames):
            array = np.concatenate([np.broadcast_to((x + 20 * index) % 256, (height, width, 1)),
                                    np.broadcast_to(y, (height, width, 1)),
                                    np.full((height, width, 1), 40.0 + 10 * index)], axis=2).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, RATE)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = np.sin(2 * np.pi * 440 * np.arange(8000 * frames // RATE) / 8000) * 0.3
            fmt = "fltp" if audio == "aac" else "s16"
            data = samples.astype(np.float32)[None] if fmt == "fltp" else (samples * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
            frame.sample_rate, frame.pts = 8000, 0
            container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        facts = {"size": (video.width, video.height), "rate": video.average_rate, "codec": video.codec_context.name,
                 "audio": audio.codec_context.name if audio else None}
        facts["audio_packets"] = [bytes(p) for p in container.demux(audio) if p.size] if audio else []
    facts["frames"] = list(frames_of(path))
    return facts


@pytest.fixture(scope="module")
def model(tiny_model: Path):
    return load_model(tiny_model, "cpu")


def test_a_clip_keeps_its_frames_timing_odd_size_and_audio(tmp_path: Path, tiny_model: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    result = subprocess.run([STYLENET, "stylize", str(clip), "--model", str(tiny_model), "-o", str(tmp_path / "out.mp4")],
                            capture_output=True, text=True, env=run_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 video(s), 12 frames" in result.stdout
    before, after = streams(clip), streams(tmp_path / "out.mp4")
    assert after["size"] == (65, 49) and after["rate"] == RATE and after["codec"] == "h264"
    assert len(after["frames"]) == 12
    assert after["audio"] == "aac" and after["audio_packets"] == before["audio_packets"]  # copied, not re-encoded
    change = np.abs(after["frames"][5].astype(float) - before["frames"][5].astype(float)).mean()
    assert change > 10  # stylized, not passed through


def test_a_long_video_run_eager_by_auto_names_backend_compile(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """--backend auto never compiles (one photo would wait for nothing); after a video long enough for compiling
    to have paid, the user is told of it, and not when they chose the backend themselves."""
    import importlib.util

    from stylenet import cli
    from tests.test_stylize_cli import run

    real = importlib.util.find_spec  # no ONNX Runtime: auto means eager here, whatever this machine measured
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    clip = make_clip(tmp_path / "clip.mp4")
    tip_seconds = cli.COMPILE_TIP_SECONDS
    monkeypatch.setattr(cli, "COMPILE_TIP_SECONDS", 0.0)  # the tiny clip stands in for a minute of video
    assert run("stylize", clip, "--model", tiny_model, "-o", tmp_path / "auto.mp4", "--temporal", "0", "--device", "cpu") == 0
    assert "tip: --backend compile stylizes long videos faster" in capsys.readouterr().err
    assert run("stylize", clip, "--model", tiny_model, "-o", tmp_path / "eager.mp4", "--backend", "eager", "--device", "cpu") == 0
    assert "--backend compile" not in capsys.readouterr().err
    monkeypatch.setattr(cli, "COMPILE_TIP_SECONDS", tip_seconds)
    assert run("stylize", clip, "--model", tiny_model, "-o", tmp_path / "short.mp4", "--temporal", "0", "--device", "cpu") == 0
    assert "--backend compile" not in capsys.readouterr().err  # a 1-s clip: compiling would not have paid


def test_start_and_end_cut_video_and_audio_together(tmp_path: Path, model) -> None:
    clip = make_clip(tmp_path / "clip.mp4", size=(64, 48), frames=20)
    result = stylize_video(model, clip, tmp_path / "cut.mp4", StylizeOptions(start=0.5, end=1.2), progress=False)
    assert result.frames == 7 and result.size == (64, 48)
    with av.open(str(tmp_path / "cut.mp4")) as container:
        audio = container.streams.audio[0]
        seconds = sum(p.duration or 0 for p in container.demux(audio)) * audio.time_base
    assert 0.6 <= float(seconds) <= 0.9  # the tone cut to the same 0.7 s (whole packets)
    with pytest.raises(StylenetError, match="--end 0.2: must be after --start"):
        stylize_video(model, clip, tmp_path / "bad.mp4", StylizeOptions(start=0.5, end=0.2), progress=False)


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path: Path, model) -> None:
    clip = make_clip(tmp_path / "clip.avi", size=(64, 48), audio="pcm_s16le", video_codec="mpeg4")
    stylize_video(model, clip, tmp_path / "out.mp4", StylizeOptions(size=32), progress=False)
    after = streams(tmp_path / "out.mp4")
    assert after["audio"] == "aac" and after["size"] == (32, 24) and len(after["frames"]) == 12
    stylize_video(model, tmp_path / "out.mp4", tmp_path / "out.webm", StylizeOptions(), progress=False)
    webm = streams(tmp_path / "out.webm")  # WebM holds VP9 and Opus only: both chosen for it
    assert (webm["codec"], webm["audio"], len(webm["frames"])) == ("vp9", "opus", 12)
    with pytest.raises(StylenetError, match="--codec libx264: cannot be written to webm"):
        stylize_video(model, tmp_path / "out.mp4", tmp_path / "x.webm", StylizeOptions(codec="libx264"), progress=False)


def test_a_folder_mixing_photos_and_videos_mirrors_both(tmp_path: Path, model) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "walk.avi", size=(32, 24), frames=4, audio=None, video_codec="mpeg4")
    Image.new("RGB", (20, 16), (200, 40, 40)).save(folder / "photo.png")
    jobs = plan([str(folder)], tmp_path / "out")
    assert sorted(job.target.name for job in jobs) == ["photo.png", "walk.mp4"]  # .avi is written as .mp4
    summary = stylize_jobs(model, jobs, StylizeOptions())
    assert not summary.failed and (tmp_path / "out" / "walk.mp4").is_file() and (tmp_path / "out" / "photo.png").is_file()
    assert "1 image(s)" in summary.line() and "1 video(s), 4 frames" in summary.line()


def test_damaged_and_foreign_inputs_fail_or_stop_with_one_line(tmp_path: Path, model, tiny_model: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", size=(64, 48), frames=30, audio=None)
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all\n" * 20)
    result = subprocess.run([STYLENET, "stylize", str(fake), "--model", str(tiny_model)], capture_output=True, text=True,
                            env=run_env(), timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[0]]
    assert "not a video FFmpeg can read" in result.stderr and not (tmp_path / "notes_stylized.mp4").exists()
    with pytest.raises(StylenetError, match=r"-o out.avi: a video is written as"):
        plan([str(clip)], Path("out.avi"))
    streamable = make_clip(tmp_path / "clip.mkv", size=(64, 48), frames=30, audio=None)
    data = streamable.read_bytes()
    truncated = tmp_path / "truncated.mkv"  # cut part-way: the frames before the cut decode
    truncated.write_bytes(data[: len(data) * 2 // 3])
    result = stylize_video(model, truncated, tmp_path / "t.mkv", StylizeOptions(), progress=False)
    assert 0 < result.frames < 30 and len(list(frames_of(tmp_path / "t.mkv"))) == result.frames
    assert f"ends after {result.frames} of the 30 frames" in result.warning
    truncated.write_bytes(data[: len(data) // 4])  # nothing left to decode: one line, no file
    with pytest.raises(StylenetError, match="no frame could be decoded .*nothing written"):
        stylize_video(model, truncated, tmp_path / "t2.mkv", StylizeOptions(), progress=False)
    assert not (tmp_path / "t2.mkv").exists()


def test_ctrl_c_leaves_no_file_under_the_output_name(tmp_path: Path, model, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    clip = make_clip(tmp_path / "clip.mp4", size=(64, 48), frames=20)
    calls = {"n": 0}
    original = model.stylize_tensor

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "stylize_tensor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stylize_video(model, clip, tmp_path / "out.mp4", StylizeOptions(frames_per_call=4), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no output, no temp file
    assert "interrupted after 8 frames; nothing written" in caplog.text


def pan_clip(path: Path, data_dir: Path, frames: int = 10) -> Path:
    """A camera pan over a real photo, 3 px a frame, with sensor noise: what makes frame-by-frame output flicker."""
    photo = np.asarray(Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB"))
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = 160, 112, "yuv444p"
        video.options = {"crf": "0"}
        for index in range(frames):
            window = photo[60:172, 20 + 3 * index:180 + 3 * index].astype(np.float32)
            array = np.clip(window + rng.normal(0, 4, window.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, RATE)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def test_the_flow_blend_cuts_flicker_on_a_moving_camera(tmp_path: Path, data_dir: Path) -> None:
    from stylenet.running.temporal import warping_error

    clip = pan_clip(tmp_path / "pan.mkv", data_dir)
    model = load_model("starry_night", "cpu")
    errors = {}
    for strength in (0.0, 0.7):
        out = tmp_path / f"out-{strength}.mkv"
        stylize_video(model, clip, out, StylizeOptions(temporal=strength, crf=0), progress=False)
        errors[strength] = warping_error(list(frames_of(clip)), list(frames_of(out)))
    assert errors[0.7] < errors[0.0] / 2, errors  # the blend halves the flicker at least
    with pytest.raises(StylenetError, match="--temporal 1.0: must be at least 0 .off. and below 1"):
        stylize_video(model, clip, tmp_path / "x.mkv", StylizeOptions(temporal=1.0), progress=False)


PHONE = Path(__file__).parent / "data" / "phone_rotated.mp4"  # made by Debian's FFmpeg 5.1, as tests/data/README.md says
PHONE_UPRIGHT = Path(__file__).parent / "data" / "phone_upright.png"  # its first frame as FFmpeg shows it (autorotate)


def test_a_phone_clip_comes_out_upright_with_the_photo_paths_look(tmp_path: Path, model) -> None:
    """A clip stored 64x48 with a display matrix (as a phone held upright writes it) comes out 48x64, turned as
    FFmpeg's player turns it, and stylized as the same picture is through the photo path."""
    upright = np.asarray(Image.open(PHONE_UPRIGHT).convert("RGB")).astype(int)
    passed = tmp_path / "passed.mp4"
    stylize_video(model, PHONE, passed, StylizeOptions(strength=0.0, crf=0, temporal=0), progress=False)
    frames = list(frames_of(passed))
    assert len(frames) == 3 and frames[0].shape == (64, 48, 3)  # taller than wide, as a player shows it
    assert np.abs(frames[0] - upright).mean() < 8  # the picture itself (crf 0; 4:2:0 chroma blurs its colour bars)
    assert np.abs(frames[0] - np.rot90(upright, 2)).mean() > 30  # not turned the other way
    starry, styled = load_model("starry_night", "cpu"), tmp_path / "styled.mp4"
    stylize_video(starry, PHONE, styled, StylizeOptions(crf=0, temporal=0), progress=False)
    photo = np.asarray(starry.stylize(Image.open(PHONE_UPRIGHT))).astype(int)
    turned = np.asarray(starry.stylize(Image.open(PHONE_UPRIGHT).rotate(180))).astype(int)  # the wrong way up
    video = next(frames_of(styled)).astype(int)
    apart, wrong = np.abs(video - photo).mean(), np.abs(video - turned).mean()
    print(f"stylized frame vs the photo path: {apart:.1f} levels (turned the wrong way: {wrong:.1f})")
    assert apart < 10 and apart < wrong / 3 and np.abs(video - upright).mean() > 15  # and stylized, not passed


MEGAMIND = "video/Megamind_bugy.avi"  # MPEG-4 ASP (Xvid) with packed B-frames: stamps 1, 2, 3, 5, 4, 6, 8, 7, ...


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def lone_frame(frames: list[np.ndarray]) -> int:
    """The index of the frame least like both its neighbours: the shared AVI's one-frame flash."""
    frames = [frame.astype(float) for frame in frames]
    apart = [min(np.abs(frames[i] - frames[i - 1]).mean(), np.abs(frames[i] - frames[i + 1]).mean())
             for i in range(1, len(frames) - 1)]
    return int(np.argmax(apart)) + 1


def test_a_real_avi_with_b_frames_comes_out_whole_in_order(tmp_path: Path, data_dir: Path, tiny_model: Path) -> None:
    """The shared data's AVI, whose decoder hands frames over with timestamps out of order, failed at frame 44 in
    every container ("writing failed ... check the disk"). Its first 3 s (past that frame), small, through the CLI:
    every frame, in presentation order (its one-frame flash, frame 40, stays where it was), at 30 frames/s."""
    source = data_dir / MEGAMIND
    out = tmp_path / "megamind.mp4"
    run = subprocess.run([STYLENET, "stylize", str(source), "--model", str(tiny_model), "--end", "3", "--size", "96",
                          "--strength", "0", "--temporal", "0", "--crf", "0", "--backend", "eager", "-o", str(out)],
                         capture_output=True, text=True, env=run_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    times = frame_times(out)
    # its first frame is stamped 1/30 s (as FFmpeg's own best-effort times say), so 3 s hold 89 frames
    assert len(times) == 89 and times[0] == 0 and all(b > a for a, b in zip(times, times[1:]))
    assert abs(times[-1] - 88 / 30) < 1e-3
    assert lone_frame(list(frames_of(out))) == 40  # sorted by their own timestamps instead, the flash lands elsewhere


def damaged_clip(path: Path, stamps: list[int]) -> Path:
    """Twelve intra-coded frames, each brighter than the last, muxed with the given timestamps (tenths of a second):
    out of order, repeated, and a jump back, as damaged or joined files have them."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mjpeg", rate=RATE)
        video.width, video.height, video.pix_fmt = 32, 24, "yuvj444p"
        for index, stamp in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 20 + 15 * index, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                packet.pts, packet.dts, packet.time_base = stamp * 100, index, Fraction(1, 1000)
                container.mux(packet)
    return path


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_damaged_timestamps_give_every_frame_in_order(tmp_path: Path, model, suffix: str) -> None:
    stamps = [0, 1, 3, 2, 4, 4, 5, 7, 6, 2, 10, 11]
    clip = damaged_clip(tmp_path / f"damaged{suffix}", stamps)
    out = tmp_path / f"out{suffix}"
    result = stylize_video(model, clip, out, StylizeOptions(strength=0.0, temporal=0, crf=0), progress=False)
    times = frame_times(out)
    levels = [frame.mean() for frame in frames_of(out)]
    assert result.frames == len(times) == 12 and all(b > a for a, b in zip(times, times[1:])), times
    assert all(b > a for a, b in zip(levels, levels[1:])), levels  # the frames in the order they were decoded
    assert abs(times[-1] - 1.1) < 0.01  # the last frame where its own timestamp put it


def test_a_muxer_refusal_is_named_as_such_not_as_a_full_disk(tmp_path: Path, data_dir: Path, model,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With the timestamps passed on as decoded (the repair switched off), MP4's muxer refuses the AVI's frames:
    the error names the muxer and the stream, and sends the user to another container, not to the disk."""
    from stylenet.running import video

    class AsDecoded(video.FrameClock):
        def release(self, keep: int):
            while len(self.held) > keep:
                yield self.held.popleft(), self.order.pop(0)

        def push(self, frame, pts):
            self.order = getattr(self, "order", []) + [pts]
            return super().push(frame, pts)

    monkeypatch.setattr(video, "FrameClock", AsDecoded)
    with pytest.raises(StylenetError) as error:
        stylize_video(model, data_dir / MEGAMIND, tmp_path / "out.mp4", StylizeOptions(temporal=0, end=2, size=64),
                      progress=False)
    message = str(error.value)
    assert message.startswith("the mp4 muxer refused a video packet of ") and "Invalid argument" in message, message
    assert "disk" not in message and "try another container" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_default_flow_blend_leaves_no_ghost_where_people_walk(tmp_path: Path, data_dir: Path) -> None:
    """The shared street clip's first 12 frames at 192 px, stylized by `stylenet stylize` with no --temporal: the
    default is 0.75 (the same frames as --temporal 0.75), it blends (unlike --temporal 0), and where people walked
    the last frame is the network's own picture of it, not a trail of the earlier frames carried along a flow that
    missed them: the occlusion mask (all ones in its place: 58% of those pixels ghost by more than 30 levels)."""
    source, default = data_dir / "video" / "vtest.avi", tmp_path / "default.mkv"
    run = subprocess.run([STYLENET, "stylize", str(source), "--model", "starry_night", "--end", "1.2", "--size", "192",
                          "--crf", "0", "--backend", "eager", "-o", str(default)],
                         capture_output=True, text=True, env=run_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    model = load_model("starry_night", "cpu")
    outputs = {}
    for temporal in (0.0, 0.75):
        out = tmp_path / f"temporal-{temporal}.mkv"
        stylize_video(model, source, out, StylizeOptions(temporal=temporal, crf=0, size=192, end=1.2), progress=False)
        outputs[temporal] = [frame.astype(float) for frame in frames_of(out)]
    blended = [frame.astype(float) for frame in frames_of(default)]
    assert len(blended) == 12 and max(np.abs(a - b).mean() for a, b in zip(blended, outputs[0.75])) < 0.5
    assert np.abs(blended[-1] - outputs[0.0][-1]).mean() > 2  # the blend is on by default
    inputs = [np.asarray(Image.fromarray(frame).resize((192, 144))).astype(float)
              for frame, _ in zip(frames_of(source), range(12))]
    walked = np.abs(inputs[-1] - inputs[-4]).mean(axis=2) > 30  # where people moved in the last 0.3 s
    ghost = np.abs(blended[-1] - outputs[0.0][-1]).max(axis=2)[walked] > 30
    print(f"{walked.mean():.1%} of the frame walked through; {ghost.mean():.1%} of it more than 30 levels from the "
          "frame's own stylization")
    assert walked.mean() > 0.01 and ghost.mean() < 0.2
