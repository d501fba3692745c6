"""The `stylenet stylize` and `stylenet export` commands, run in-process through the console script's main()."""

from __future__ import annotations

import re
from dataclasses import replace
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from stylenet.cli import main
from stylenet.running.inference import load_model
from tests.conftest import PYTHON


def run(*args: str) -> int:
    """main() with these arguments; returns the exit code (0 when it returns normally)."""
    try:
        main([str(arg) for arg in args])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_folder_mode_mirrors_the_tree_with_each_format(tiny_model: Path, photo_folder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", out) == 0
    sources = sorted(p.relative_to(photo_folder) for p in photo_folder.rglob("*.*"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.*")) == sources
    for relative in sources:
        with Image.open(out / relative) as result, Image.open(photo_folder / relative) as source:
            assert result.size == source.size and result.format == source.format
    assert "stylized 6 image(s)" in capsys.readouterr().out


def test_existing_outputs_are_kept_unless_overwrite(tiny_model: Path, photo_folder: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    run("stylize", photo_folder, "--model", tiny_model, "-o", out)
    first = out / "photo1.png"
    first.write_bytes(b"keep me")
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", out) == 0
    assert first.read_bytes() == b"keep me" and "6 left as they were" in capsys.readouterr().out
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", out, "--overwrite") == 0
    assert first.read_bytes() != b"keep me"
    single = photo_folder / "photo0.jpg"
    target = tmp_path / "one.png"
    assert run("stylize", single, "--model", tiny_model, "-o", target) == 0
    assert run("stylize", single, "--model", tiny_model, "-o", target) == 2
    assert "one.png exists; pass --overwrite" in capsys.readouterr().err


def test_unreadable_inputs_are_reported_and_the_rest_written(tiny_model: Path, photo_folder: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (photo_folder / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", out) == 1
    captured = capsys.readouterr()
    assert "stylized 6 image(s)" in captured.out and "2 FAILED" in captured.out
    assert "failed:" in captured.err and "broken.jpg" in captured.err and "empty.png" in captured.err
    assert len(list(out.rglob("*.*"))) == 6 and not list(out.rglob(".*"))


def test_interrupt_mid_folder_leaves_only_complete_files(tiny_model: Path, photo_folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    saves = []
    original_save = Image.Image.save

    def save_then_die(image: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        saves.append(fp)
        if len(saves) == 3:
            Path(fp).write_bytes(b"half an ima")  # the bytes a crash mid-write would leave
            raise KeyboardInterrupt
        original_save(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_die)
    out = tmp_path / "out"
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", out) == 130  # 128 + SIGINT, no traceback
    monkeypatch.undo()
    files = sorted(out.rglob("*"))
    written = [path for path in files if path.is_file()]
    assert len(written) == 2 and all(not path.name.startswith(".") for path in written)
    for path in written:
        with Image.open(path) as image:
            image.load()  # complete, decodable


def test_globs_output_names_and_errors(tiny_model: Path, photo_folder: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("stylize", f"{photo_folder}/**/*.png", "--model", tiny_model, "-o", "globbed", "--ext", "jpg") == 0
    assert sorted(p.relative_to("globbed").as_posix() for p in Path("globbed").rglob("*.jpg")) == [
        "nested/deeper/photo4.jpg", "photo1.jpg"
    ]
    assert run("stylize", photo_folder / "photo0.jpg", "--model", tiny_model, "--strength", "0.5") == 0
    assert Path("photo0_stylized.jpg").is_file()
    assert run("stylize", tmp_path / "nope.jpg", "--model", tiny_model) == 2
    assert "input not found" in capsys.readouterr().err
    assert run("stylize", photo_folder / "photo0.jpg", "--model", tiny_model, "-o", "x.xyz") == 2
    assert "unknown image extension '.xyz'" in capsys.readouterr().err
    assert run("stylize", photo_folder / "photo0.jpg", "--model", tmp_path / "missing.safetensors") == 2
    assert "model not found" in capsys.readouterr().err


@pytest.mark.slow  # seconds of end-to-end work: make test runs it, test-fast stays under 3 min
def test_export_writes_verified_files_and_refuses_to_overwrite(tiny_model: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    for file_format, name in (("onnx", "m.onnx"), ("torchscript", "m.pt"), ("safetensors", "m.safetensors")):
        assert run("export", tiny_model, "--format", file_format, "-o", tmp_path / name) == 0
        assert "verified against the module" in capsys.readouterr().out
        model = load_model(tmp_path / name, "cpu")
        assert model.file_format == file_format and model.metadata["exported_from"]["file"] == "tiny.safetensors"
    assert run("export", tiny_model, "--format", "onnx", "-o", tmp_path / "m.onnx") == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert run("export", tmp_path / "m.onnx", "--format", "safetensors", "-o", tmp_path / "x.safetensors") == 2
    assert "export from the .safetensors or .ckpt" in capsys.readouterr().err


def test_export_that_fails_verification_writes_nothing(tiny_model: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from stylenet.models import export

    def broken_writer(transformer, metadata, path) -> None:
        state = {name: tensor.clone() for name, tensor in transformer.state_dict().items()}
        transformer.encoder[0][1].weight.data.zero_()
        export.write_safetensors(transformer, metadata, path)
        transformer.load_state_dict(state)

    monkeypatch.setitem(export.WRITERS, "safetensors", broken_writer)
    assert run("export", tiny_model, "--format", "safetensors", "-o", tmp_path / "bad.safetensors") == 2
    assert "differs from the module" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_python_dash_m_and_console_script_agree(tiny_model: Path, photo_folder: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stylenet", "stylize", str(photo_folder / "photo1.png"), "--model", str(tiny_model),
         "-o", str(tmp_path / "a.png")], capture_output=True, text=True,
    )
    assert result.returncode == 0 and "stylized 1 image(s)" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_closed_pipe_ends_quietly(tiny_model: Path) -> None:
    """`stylenet info M | head`: the reader has gone before stylenet writes; no traceback, the shell's code."""
    stylenet = str(Path(PYTHON).parent / "stylenet")
    result = subprocess.run(["bash", "-c", 'set -o pipefail; "$0" info "$1" | true', stylenet, str(tiny_model)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + signal.SIGPIPE and result.stderr == ""


@pytest.mark.slow
def test_ctrl_c_ends_a_command_quietly_with_130(data_dir: Path, tmp_path: Path) -> None:
    stylenet = str(Path(PYTHON).parent / "stylenet")
    command = [stylenet, "optimize", str(data_dir / "content_test" / "fruits.jpg"), str(data_dir / "styles" / "udnie.jpg"),
               "-o", str(tmp_path / "out.png"), "--size", "128", "--steps", "500"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not re.search(r"optimize: .* [1-9]\d*/500 ", "".join(seen)):  # a step done: well inside the run
        assert process.poll() is None and time.monotonic() < deadline, "".join(seen)
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    reader.join(10)
    stderr = "".join(seen)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted"
    assert not (tmp_path / "out.png").exists()


def test_help_into_a_closed_pipe_ends_quietly_too() -> None:
    stylenet = str(Path(PYTHON).parent / "stylenet")
    result = subprocess.run(["bash", "-c", 'set -o pipefail; "$0" --help | true', stylenet], capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 128 + signal.SIGPIPE) and result.stderr == ""


def test_export_needs_the_weights_not_a_compiled_file(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("export", tiny_model, "--format", "torchscript", "-o", tmp_path / "m.pt") == 0
    assert run("export", tmp_path / "m.pt", "--format", "safetensors", "-o", tmp_path / "again.safetensors") == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("is a torchscript file: export from the .safetensors or .ckpt it came from") and "\n" not in error


def small_photo(data_dir: Path, path: Path) -> Path:
    """A real photo at 48 px: fine detail in every pixel, for JPEG quality and styles to act on."""
    with Image.open(data_dir / "content_test" / "fruits.jpg") as image:
        image.convert("RGB").resize((48, 36), Image.Resampling.LANCZOS).save(path)
    return path


def mean_difference(first: Path, second: Path, mode: str = "RGB") -> float:
    """Mean absolute difference of two images' pixels, 0-255 (in `mode`: "L" compares luminance only)."""
    from PIL import ImageChops, ImageStat

    with Image.open(first) as one, Image.open(second) as other:
        return sum(ImageStat.Stat(ImageChops.difference(one.convert(mode), other.convert(mode))).mean) / len(mode)


def test_quality_trades_jpeg_size_for_detail(tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    photo = small_photo(data_dir, tmp_path / "fruits.png")
    common = ("--model", tiny_model, "--backend", "eager", "--precision", "fp32")
    for name, quality in (("lossless.png", []), ("default.jpg", []), ("q30.jpg", ["--quality", "30"]),
                          ("q95.jpg", ["--quality", "95"])):
        assert run("stylize", photo, "-o", tmp_path / name, *common, *quality) == 0
    low, high = tmp_path / "q30.jpg", tmp_path / "q95.jpg"
    assert low.stat().st_size < 0.6 * high.stat().st_size
    lost_low, lost_high = (mean_difference(path, tmp_path / "lossless.png", "L") for path in (low, high))
    assert lost_low > 2 * lost_high  # the same picture, visibly coarser: blocks and smeared edges
    assert (tmp_path / "default.jpg").read_bytes() == high.read_bytes()  # the default is 95


def test_quality_outside_1_to_100_is_a_one_line_error(tiny_model: Path, photo_folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Was clamped for JPEG, and a traceback for WebP (Pillow's 'invalid configuration')."""
    for name, quality in (("out.jpg", "150"), ("out.webp", "150"), ("out.jpg", "0")):
        assert run("stylize", photo_folder / "photo1.png", "--model", tiny_model, "--backend", "eager",
                   "-o", tmp_path / name, "--quality", quality) == 2
        err = capsys.readouterr().err
        assert err == f"error: --quality {quality}: must be between 1 and 100 (JPEG/WebP; 95 is the default)\n"
        assert not (tmp_path / name).exists()


def test_style_size_changes_the_any_style_picture(data_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    photo = small_photo(data_dir, tmp_path / "fruits.png")
    common = ("--model", "any", "--style-image", data_dir / "styles" / "starry_night.jpg", "--backend", "eager",
              "--precision", "fp32")
    for name, size in (("small.png", ["--style-size", "32"]), ("large.png", ["--style-size", "512"]), ("default.png", [])):
        assert run("stylize", photo, "-o", tmp_path / name, *common, *size) == 0
    assert mean_difference(tmp_path / "small.png", tmp_path / "large.png") > 10  # another picture, not rounding
    assert mean_difference(tmp_path / "default.png", tmp_path / "large.png") == 0  # left out: the model's own (AdaIN: 512 px)
    capsys.readouterr()
    assert run("stylize", photo, "-o", tmp_path / "bad.png", *common, "--style-size", "8") == 2
    assert capsys.readouterr().err == "error: --style-size 8: must be between 16 and 4096 px\n"
    assert not (tmp_path / "bad.png").exists()


def test_max_image_pixels_refuses_larger_photos_and_a_raised_limit_stylizes_them(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # the command sets Pillow's global
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (48, 40), (200, 30, 30)).save(photos / "big.png")  # 1920 pixels
    Image.new("RGB", (20, 20), (30, 200, 30)).save(photos / "small.png")  # 400 pixels
    common = ("--model", tiny_model, "--backend", "eager", "--max-image-pixels")
    assert run("stylize", photos / "big.png", "-o", tmp_path / "one.png", *common, "1000") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too large to decode safely" in err and "--max-image-pixels N" in err
    assert not (tmp_path / "one.png").exists()
    out = tmp_path / "out"
    assert run("stylize", photos, "-o", out, *common, "1000") == 1
    captured = capsys.readouterr()
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "big.png" in failed[0] and "--max-image-pixels N" in failed[0]
    assert "1 FAILED" in captured.out and [path.name for path in out.iterdir()] == ["small.png"]
    assert run("stylize", photos, "-o", out, *common, "2000") == 0
    assert sorted(path.name for path in out.iterdir()) == ["big.png", "small.png"]
    capsys.readouterr()
    assert run("stylize", photos, "-o", out, *common, "0") == 2  # was Pillow's default, silently
    assert capsys.readouterr().err.startswith("error: --max-image-pixels 0: must be at least 1")


@pytest.mark.parametrize("field,value,said", [
    ("size", 0, "--size 0: must be at least 1 px"), ("scale", 0.0, "--scale 0.0: must be above 0"),
    ("strength", 1.5, "strength must be between 0 and 1"), ("tile", -1, "--tile -1: must be 0"),
    ("quality", 0, "--quality 0: must be between 1 and 100"), ("start", -2.0, "--start -2.0: must be 0 or more"),
    ("crf", 70, "--crf 70: must be between 0"), ("frames_per_call", 0, "--batch-size 0: must be at least 1"),
    ("temporal", 1.0, "--temporal 1.0: must be at least 0"),
])
def test_stylize_options_check_themselves_wherever_they_are_made(field: str, value: object, said: str) -> None:
    from stylenet.core.errors import StylenetError
    from stylenet.running.options import StylizeOptions

    with pytest.raises(StylenetError, match=re.escape(said)):
        StylizeOptions(**{field: value})
    with pytest.raises(StylenetError, match="--end 1.0: must be after --start"):
        replace(StylizeOptions(start=2.0), end=1.0)  # a changed copy is checked too (the webcam makes one)
