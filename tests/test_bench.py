"""`stylenet bench` prints one JSON line per figure with the machine; no test here asserts a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stylenet.benchmarks.bench import cuda_graph, main
from stylenet.models.losses import weight_keys
from tests.conftest import compose_config

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
    cfg = compose_config("model=transformer_small")  # the step timed is the one training takes: its objective's weights
    assert ours["objective"] == {**{key: cfg.loss[key] for key in weight_keys()}, "relative": cfg.loss.relative}


@pytest.mark.slow  # seconds of end-to-end work: make test runs it, test-fast stays under 3 min
def test_infer_figures_for_each_backend_and_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    table = tmp_path / "bench.md"
    found = rows(capsys, "infer", "--sizes", "32,40x24", "--model", "transformer_small", "--device", "cpu",
                 "--precisions", "fp32", "--warmup", "0", "--repeats", "1", "--markdown", str(table))
    assert [(row["backend"], row["size"]) for row in found] == [
        (backend, size) for backend in ("eager", "torchscript", "onnx") for size in ("32x32", "40x24")
    ]
    assert all(MACHINE_KEYS <= set(row) and row["s_per_image"] > 0 and row["megapixels_per_s"] > 0 for row in found)
    lines = [line for line in table.read_text().splitlines() if line]
    assert lines[0].startswith("| bench | mode | model | backend") and len(lines) == 2 + len(found)


@pytest.mark.slow  # --backend auto measures the tiny network's backends first: seconds
def test_folder_rows_for_the_local_engine(capsys: pytest.CaptureFixture[str], tiny_model: Path) -> None:
    """`bench folder` stylizes a synthetic folder with `stylenet stylize`'s code; the Ray rows need a Ray (the
    figures in BENCHMARKS.md), the engine's own tests are in test_cluster.py."""
    row, = rows(capsys, "folder", "--photos", "3", "--size", "48x32", "--model", str(tiny_model), "--engines", "local")
    assert row["engine"] == "local" and row["photos"] == 3 and row["size"] == "48x32"
    assert row["images_per_s"] > 0 and row["steady_images_per_s"] > 0 and row["first_file_s"] <= row["seconds"]
    assert {"machine", "torch", "threads", "precision", "backend"} <= set(row)


def test_optimize_figures_for_stylenet_and_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--size", "32", "--device", "cpu", "--warmup", "0", "--repeats", "1", "--precision", "bf16"]
    row, = rows(capsys, "optimize", *tiny)
    assert row["bench"] == "optimize" and row["s_per_step"] > 0 and MACHINE_KEYS <= set(row) and row["precision"] == "bf16"
    baseline, = rows(capsys, "optimize", *tiny, "--baseline")  # the reference has no mixed precision
    assert baseline["mode"] == "baseline" and baseline["precision"] == "fp32"


def test_video_figures_per_model_precision_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    found = rows(capsys, "video", "--size", "64x48,40x32", "--frames", "6", "--model", "transformer_small,starry_night",
                 "--precisions", "fp32", "--device", "cpu", "--warmup", "0", "--repeats", "1")
    assert [(row["model"], row["size"]) for row in found] == [
        (model, size) for model in ("transformer_small", "starry_night") for size in ("64x48", "40x32")
    ]
    for row in found:
        assert MACHINE_KEYS <= set(row) and row["bench"] == "video" and row["frames"] == 6
        assert row["frames_per_s"] > 0 and row["network_frames_per_s"] > 0


def test_every_model_kind_has_train_and_infer_rows(capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--device", "cpu", "--warmup", "0", "--repeats", "1"]
    for model in ("multistyle", "adain", "arbitrary"):
        row, = rows(capsys, "train", "--model", model, "--size", "32", "--batch", "2", *tiny)
        assert row["model"] == model and row["s_per_step"] > 0 and MACHINE_KEYS <= set(row)
    found = rows(capsys, "infer", "--model", "multistyle,adain,arbitrary", "--sizes", "48x32", "--backends", "eager",
                 "--precisions", "fp32,bf16", *tiny)
    assert [(row["model"], row["precision"]) for row in found] == [
        (model, precision) for model in ("multistyle", "adain", "arbitrary") for precision in ("fp32", "bf16")
    ]
    # any-style rows say what reading the painting costs (once per painting), beside the per-image seconds
    assert [row["model"] for row in found if row.get("painting_s", 0) > 0] == ["adain", "adain", "arbitrary", "arbitrary"]
    for row in found:
        assert row["s_per_image"] > 0 and row["peak_memory_mb"] > 0 and row["size"] == "48x32"
    # a bf16 row says how far its picture lies from fp32's: near, but not the same picture
    for row in found[1::2]:
        assert 0 < row["mean_levels_vs_fp32"] < 10 and row["mean_levels_vs_fp32"] <= row["max_levels_vs_fp32"]


def test_each_row_has_its_own_peak_memory(capsys: pytest.CaptureFixture[str]) -> None:
    """A large image's row must not lend its peak to the small one measured after it."""
    found = rows(capsys, "infer", "--model", "transformer_small", "--sizes", "1536,64", "--backends", "eager",
                 "--precisions", "fp32", "--tile", "0", "--device", "cpu", "--warmup", "0", "--repeats", "1")
    large, small = (row["peak_memory_mb"] for row in found)
    assert large > small + 100  # 1536 px: ~0.3 GB of activations in fp32 that 64 px does not have


def test_a_bad_network_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from stylenet.core.errors import StylenetError

    presets = "adain, arbitrary, multistyle, transformer"
    with pytest.raises(StylenetError, match=f"--model starry_night: train benchmarks a network preset: {presets}"):
        main(["train", "--model", "starry_night"])
    with pytest.raises(StylenetError, match="--precisions fp64: valid are auto, fp32, bf16, fp16"):
        main(["infer", "--precisions", "fp64"])


def test_cuda_graph_without_a_gpu_is_one_line() -> None:
    from stylenet.core.errors import StylenetError

    with pytest.raises(StylenetError, match="--cuda-graph captures a training step on a CUDA GPU; this is bench train on cpu"):
        main(["train", "--cuda-graph", "--device", "cpu"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_a_captured_training_step_trains_as_the_eager_one() -> None:
    """bench train --cuda-graph replays one captured step on new batches: its content and style losses must fall
    as those of the same eager steps do (the style weight makes the Gram terms ~40% of the total)."""
    from stylenet.models.kinds.transformer import TransformerNet
    from stylenet.models.loss_network import LossNetwork
    from stylenet.models.losses import PerceptualLoss

    device = torch.device("cuda")
    torch.manual_seed(0)
    batches = torch.rand(2, 2, 3, 64, 64, device=device)  # copied in turn into the step's fixed input
    criterion = PerceptualLoss(LossNetwork("vgg16", "random", ["relu1_2", "relu2_2"]), torch.rand(3, 64, 64),
                               ["relu2_2"], {"relu1_2": 1.0, "relu2_2": 1.0},
                               {"content_weight": 1.0, "style_weight": 3e3, "tv_weight": 1.0}).to(device)
    first = TransformerNet(8, 1).to(device)
    twin = TransformerNet(8, 1).to(device)
    twin.load_state_dict(first.state_dict())

    def training(network: torch.nn.Module, capturable: bool) -> tuple:
        optimizer = torch.optim.Adam(network.parameters(), lr=3e-3, fused=True, capturable=capturable)
        photos = batches[0].clone()
        losses = torch.zeros(2, device=device)  # total, style

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                terms = criterion(network(photos), photos)
            terms["total"].backward()
            optimizer.step()
            losses.copy_(torch.stack([terms["total"], terms["style"]]).detach())

        return optimizer, step, photos, losses

    optimizer, step, photos, losses = training(first, capturable=True)
    replay = cuda_graph(step, optimizer, device, warmup=3)  # 3 real steps, on batch 0
    graphed = []
    for index in range(20):
        photos.copy_(batches[index % 2])
        replay()
        graphed.append(losses.tolist())
    optimizer, step, photos, losses = training(twin, capturable=False)
    eager = []
    for index in range(-3, 20):
        photos.copy_(batches[max(index, 0) % 2])
        optimizer.zero_grad(set_to_none=True)
        step()
        if index >= 0:
            eager.append(losses.tolist())
    for term in (0, 1):  # total, style: it learns, and as the eager steps do
        assert graphed[-1][term] < 0.9 * graphed[0][term]
        assert [row[term] for row in graphed] == pytest.approx([row[term] for row in eager], rel=0.05, abs=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("model", ["transformer", "multistyle", "adain", "arbitrary"])
def test_cuda_graph_rows_for_every_model_kind(capsys: pytest.CaptureFixture[str], model: str) -> None:
    row, = rows(capsys, "train", "--cuda-graph", "--device", "cuda", "--model", model, "--size", "64", "--batch", "2",
                "--warmup", "1", "--repeats", "2")
    assert row["cuda_graph"] and row["s_per_step"] > 0 and row["peak_memory_mb"] > 0
