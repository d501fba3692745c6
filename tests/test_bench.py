"""`stylenet bench` prints one JSON line per figure with the machine; no test here asserts a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stylenet.bench import main

MACHINE_KEYS = {"machine", "torch", "threads", "device", "precision", "model", "mode", "peak_memory_mb"}


def rows(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    main(list(argv))
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_train_figures_for_stylenet_and_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--size", "32", "--batch", "2", "--model", "transformer_small", "--warmup", "0", "--repeats", "1"]
    ours, = rows(capsys, "train", *tiny, "--device", "cpu")
    baseline, = rows(capsys, "train", *tiny, "--device", "cpu", "--baseline", "--loss-network", "vgg16")
    for row in (ours, baseline):
        assert MACHINE_KEYS <= set(row) and row["s_per_step"] > 0 and row["data"] == "synthetic"
        assert row["images_per_s"] == pytest.approx(2 / row["s_per_step"], rel=0.01)
    assert ours["mode"] == "stylenet" and baseline["mode"] == "baseline" and baseline["loss_network"] == "vgg16"


@pytest.mark.slow  # seconds of end-to-end work: make test runs it, test-fast stays under 3 min
def test_infer_figures_for_each_backend_and_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    table = tmp_path / "bench.md"
    found = rows(capsys, "infer", "--sizes", "32,40x24", "--model", "transformer_small", "--device", "cpu",
                 "--warmup", "0", "--repeats", "1", "--markdown", str(table))
    assert [(row["backend"], row["size"]) for row in found] == [
        (backend, size) for backend in ("eager", "torchscript", "onnx") for size in ("32x32", "40x24")
    ]
    assert all(MACHINE_KEYS <= set(row) and row["s_per_image"] > 0 and row["megapixels_per_s"] > 0 for row in found)
    lines = [line for line in table.read_text().splitlines() if line]
    assert lines[0].startswith("| bench | mode | model | backend") and len(lines) == 2 + len(found)


def test_optimize_figure(capsys: pytest.CaptureFixture[str]) -> None:
    row, = rows(capsys, "optimize", "--size", "32", "--device", "cpu", "--warmup", "0", "--repeats", "1")
    assert row["bench"] == "optimize" and row["s_per_step"] > 0 and MACHINE_KEYS <= set(row)


def test_video_figures_per_model_precision_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    found = rows(capsys, "video", "--size", "64x48,40x32", "--frames", "6", "--model", "transformer_small,starry_night",
                 "--precisions", "fp32", "--device", "cpu", "--warmup", "0", "--repeats", "1")
    assert [(row["model"], row["size"]) for row in found] == [
        (model, size) for model in ("transformer_small", "starry_night") for size in ("64x48", "40x32")
    ]
    for row in found:
        assert MACHINE_KEYS <= set(row) and row["bench"] == "video" and row["frames"] == 6
        assert row["frames_per_s"] > 0 and row["network_frames_per_s"] > 0


def test_a_bad_network_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from stylenet.errors import StylenetError

    with pytest.raises(StylenetError, match="--model starry_night: infer benchmarks a network preset: transformer"):
        main(["infer", "--model", "starry_night"])
