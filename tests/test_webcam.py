"""`stylenet webcam`: a video file stands in for the camera (tests have none); the recording holds every
stylized frame, and a missing camera, a missing display or a run that would show nothing is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylenet.running.inference import load_model
from stylenet.running.options import StylizeOptions
from stylenet.running.video import frames_of, stylize_frames
from tests.test_stylize_cli import run
from tests.test_video import make_clip


def test_a_video_file_as_camera_is_recorded_stylized(tiny_model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "camera.mp4", size=(64, 48), frames=8, audio=None)
    record = tmp_path / "live.mp4"
    assert run("webcam", "--model", tiny_model, "--camera", clip, "--no-window", "--record", record) == 0
    assert "8 frames of 64x48" in capsys.readouterr().out
    recorded, source = list(frames_of(record)), list(frames_of(clip))
    assert len(recorded) == len(source) == 8
    expected, _ = stylize_frames(load_model(tiny_model), source[:1], StylizeOptions(tile=0))
    to_stylized = np.abs(recorded[0].astype(int) - expected[0]).mean()  # through H.264 4:2:0: a few levels off
    to_camera = np.abs(recorded[0].astype(int) - source[0]).mean()
    assert to_stylized < 10 and to_camera > 3 * to_stylized
    assert not list(tmp_path.glob(".live.mp4.*"))  # no temp file left beside it


def test_max_frames_and_size(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "camera.mp4", size=(64, 48), frames=8, audio=None)
    record = tmp_path / "short.mp4"
    assert run("webcam", "--model", tiny_model, "--camera", clip, "--no-window", "--record", record,
               "--max-frames", "3", "--size", "32", "--temporal", "0.5") == 0
    assert "3 frames of 32x24" in capsys.readouterr().out
    assert [frame.shape for frame in frames_of(record)] == [(24, 32, 3)] * 3


@pytest.mark.parametrize(("arguments", "message"), [
    (["--camera", "7", "--no-window", "--record", "{tmp}/x.mp4"], "error: no camera at index 7"),
    (["--camera", "{tmp}/missing.mp4", "--no-window", "--record", "{tmp}/x.mp4"], "missing.mp4: no such file"),
    (["--no-window"], "--no-window leaves nothing to show: add --virtual or --record FILE"),
    (["--camera", "{tmp}/camera.mp4", "--no-window", "--record", "{tmp}/x.gif"], "give a .mp4, .mkv or .mov file"),
    (["--camera", "{tmp}/camera.mp4"], "no window support (opencv-python-headless): pip install opencv-python"),
])
def test_what_cannot_run_is_one_line(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     arguments: list[str], message: str) -> None:
    make_clip(tmp_path / "camera.mp4", size=(32, 24), frames=2, audio=None)
    argv = [text.format(tmp=tmp_path) for text in arguments]
    assert run("webcam", "--model", tiny_model, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_an_existing_recording_is_kept_without_overwrite(tiny_model: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "camera.mp4", size=(32, 24), frames=2, audio=None)
    record = tmp_path / "mine.mp4"
    record.write_bytes(b"keep me")
    assert run("webcam", "--model", tiny_model, "--camera", clip, "--no-window", "--record", record) == 2
    assert "mine.mp4 exists; pass --overwrite" in capsys.readouterr().err and record.read_bytes() == b"keep me"
    assert run("webcam", "--model", tiny_model, "--camera", clip, "--no-window", "--record", record, "--overwrite") == 0
    assert len(list(frames_of(record))) == 2


def test_virtual_camera_without_its_driver_is_one_line(tiny_model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "camera.mp4", size=(32, 24), frames=2, audio=None)
    assert run("webcam", "--model", tiny_model, "--camera", clip, "--no-window", "--virtual") == 2
    err = capsys.readouterr().err.strip()
    # without pyvirtualcam (as here) the first; with it but no v4l2loopback/OBS device, the second
    assert err.startswith(("error: --virtual needs pyvirtualcam: pip install", "error: --virtual: no virtual camera"))
    assert len(err.splitlines()) == 1
