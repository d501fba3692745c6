"""End-to-end runs of the real commands on ../shared/data: train, resume, errors, the console script, DDP."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stylenet.models.modelfile import load_safetensors, weights_digest
from stylenet.running.inference import load_model
from tests.conftest import PYTHON, TRAIN_PY, run_env

pytestmark = pytest.mark.slow

# A tiny but real run: 64-px crops of the real photos, a narrow net, the real Caffe VGG-19 and painting.
TINY = [
    "experiment=quick", "data.image_size=64", "style.size=128", "model.channels=8", "data.num_workers=0",
    "samples.size=64", "samples.count=3", "samples.every_n_steps=10",
    "checkpoint.every_n_steps=10", "trainer.log_every_n_steps=1",
]


def train(run_dir: Path, *overrides: str, command: list[str] | None = None) -> subprocess.CompletedProcess:
    command = command or [PYTHON, TRAIN_PY]
    result = subprocess.run(
        [*command, *TINY, f"hydra.run.dir={run_dir}", *overrides],
        capture_output=True, text=True, env=run_env(), timeout=480,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return {event.step: event.value for event in events.Scalars(tag)}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    train(run_dir, "trainer.max_steps=40")
    return run_dir


def test_run_directory_holds_config_logs_checkpoints_and_model(trained_run: Path) -> None:
    for name in [".hydra/config.yaml", "checkpoints/last.ckpt", "checkpoints/step-000010.ckpt",
                 "checkpoints/step-000040.ckpt", "model.safetensors"]:
        assert (trained_run / name).is_file(), name
    assert not list(trained_run.rglob("*.tmp"))
    _, metadata = load_safetensors(trained_run / "model.safetensors")
    assert metadata["steps"] == 40 and metadata["architecture"] == "transformer"
    assert metadata["arguments"] == {"channels": 8, "num_residual_blocks": 5, "output": "sigmoid"}
    assert metadata["style"]["name"] == "starry_night" and len(metadata["style"]["sha256"]) == 64
    assert metadata["style"]["image"] == "styles/starry_night.jpg"  # relative to the data root: no local path ships
    assert metadata["loss_network"]["name"] == "vgg19_caffe" and metadata["image_size"] == 64
    assert metadata["loss_network"]["content_layers"] == ["relu4_2"]


def test_style_loss_falls_and_tensorboard_holds_scalars_and_images(trained_run: Path) -> None:
    events = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for name in ["content", "style", "tv", "total"]:
        assert f"train/{name}_loss" in tags["scalars"]
    style = [event.value for event in events.Scalars("train/style_loss")]
    assert len(style) == 40
    first, last = sum(style[:5]) / 5, sum(style[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    images = events.Images("samples")
    assert [image.step for image in images] == [10, 20, 30, 40]
    assert images[-1].width == 3 * 64 + 4 * 2 and images[-1].height == 2 * 64 + 3 * 2  # 3 photos over 3 outputs


def test_exported_model_and_checkpoint_stylize_alike(trained_run: Path, data_dir: Path) -> None:
    photo = Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").resize((96, 80))
    from_export = load_model(trained_run / "model.safetensors").stylize(photo)
    from_checkpoint = load_model(trained_run / "checkpoints" / "last.ckpt").stylize(photo)
    assert from_export.size == photo.size
    pixels = [np.asarray(image, dtype=np.int16) for image in (from_export, from_checkpoint, photo)]
    assert np.abs(pixels[0] - pixels[1]).max() <= 1
    assert np.abs(pixels[0] - pixels[2]).mean() > 10  # the network changed the photo


def test_resume_continues_at_the_saved_step(trained_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "resumed"
    shutil.copytree(trained_run, run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 40 and checkpoint["optimizer_states"][0]["state"]
    train(run_dir, "trainer.max_steps=50", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    # Lightning logs step k's losses at index k - 1: the first run wrote 0..39, the resumed one 40..49
    assert sorted(scalars(run_dir, "train/style_loss")) == list(range(50))
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 50
    assert load_safetensors(run_dir / "model.safetensors")[1]["steps"] == 50


def test_bad_config_is_one_line_exit_2_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, TRAIN_PY, "data.image_size=30", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, env=run_env(), timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.image_size=30: must be a multiple of 4")
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_data_folder_names_the_path(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, TRAIN_PY, f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, env=run_env(), timeout=120,
    )
    assert result.returncode == 2 and f"image folder not found: {tmp_path / 'nowhere'}" in result.stderr


def test_console_script_trains_with_the_same_overrides(tmp_path: Path) -> None:
    stylenet = str(Path(PYTHON).parent / "stylenet")
    train(tmp_path / "cli", "trainer.max_steps=2", command=[stylenet, "train"])
    assert (tmp_path / "cli" / "model.safetensors").is_file()
    assert load_safetensors(tmp_path / "cli" / "model.safetensors")[1]["steps"] == 2


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """train.py under DDP with two CPU processes: both ranks step the same model; one checkpoint, one model file."""
    result = train(
        tmp_path / "ddp", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=3",
        "checkpoint.every_n_steps=3",
    )
    output = result.stdout + result.stderr
    assert "All distributed processes registered. Starting with 2 processes" in output
    agreed = re.search(r"DDP: 2 ranks at step 3 hold the same weights \(sha256 ([0-9a-f]{16})\)", output)
    assert agreed, output[-3000:]
    network, _ = load_safetensors(tmp_path / "ddp" / "model.safetensors")
    assert weights_digest(network.state_dict())[:16] == agreed.group(1)  # the file holds the weights both ranks trained
    assert sorted(path.name for path in (tmp_path / "ddp").glob("*.safetensors")) == ["model.safetensors"]
    assert sorted(path.name for path in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["last.ckpt", "step-000003.ckpt"]
    assert torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_stylize_and_info_commands(trained_run: Path, data_dir: Path, tmp_path: Path) -> None:
    stylenet = str(Path(PYTHON).parent / "stylenet")
    photo = data_dir / "content_test" / "orange.jpg"
    output = tmp_path / "out" / "orange.png"
    result = subprocess.run([stylenet, "stylize", str(photo), "--model", str(trained_run / "model.safetensors"),
                             "-o", str(output)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Image.open(output).size == Image.open(photo).size
    info = subprocess.run([stylenet, "info", str(trained_run / "model.safetensors")], capture_output=True, text=True)
    assert info.returncode == 0 and '"name": "starry_night"' in info.stdout and '"steps": 40' in info.stdout
    missing = subprocess.run([stylenet, "stylize", str(photo), "--model", str(tmp_path / "none.safetensors"),
                              "-o", str(output)], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().startswith(
        f"error: model not found: {tmp_path / 'none.safetensors'} (")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_relative_losses_give_terms_near_one_whatever_the_painting(tmp_path: Path) -> None:
    """loss.relative=true: content and style errors relative to their targets (the judge's and optimize's terms),
    so the logged style term is of order style_weight for every painting, not the raw Gram scale (~1e5 here)."""
    from stylenet.training.trainer import train as train_in_process
    from tests.conftest import compose_config

    runs = {"starry_night": ["style=starry_night"], "mondrian": ["style=mondrian"],
            "both": ["model=multistyle", "style=[starry_night,mondrian]"]}  # multistyle: each photo's own painting
    for name, choice in runs.items():
        run_dir = tmp_path / name
        overrides = [*TINY, *choice, "trainer.max_steps=3", "loss.relative=true", "loss.tv_weight=1", "loss.style_weight=1"]
        model = train_in_process(compose_config(*overrides, run_dir=run_dir))
        assert load_model(model, "cpu").metadata["loss"]["relative"] is True
        style_terms = list(scalars(run_dir, "train/style_loss").values())
        assert 0.05 < style_terms[0] < 20, style_terms


def test_eval_during_training_logs_quality_and_keeps_each_report(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval.every_n_steps=2: `stylenet eval` of the network so far at steps 2, 4 and the end; TensorBoard's eval/*
    and a report per step; the photo's reference curve is computed at the first eval only."""
    import json

    from stylenet.training.trainer import train as train_in_process
    from tests.conftest import compose_config

    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    run_dir, photo = tmp_path / "run", data_dir / "content_test" / "fruits.jpg"
    overrides = [*TINY, "trainer.max_steps=5", "eval.every_n_steps=2", f"eval.photos=[{photo}]", "eval.size=32"]
    train_in_process(compose_config(*overrides, run_dir=run_dir))
    assert sorted(scalars(run_dir, "eval/placement")) == [2, 4, 5]
    minutes = scalars(run_dir, "eval/train_minutes")
    assert minutes[2] <= minutes[4] <= minutes[5]
    for step in (2, 4, 5):
        report = json.loads((run_dir / "eval" / f"step-{step:06d}" / "report.json").read_text())
        assert report["models"][0]["metadata"]["steps"] == step and (run_dir / "eval" / f"step-{step:06d}" / "grid.jpg").is_file()
        assert report["curves"]["fruits.jpg"]["cached"] == (step != 2)


def test_a_time_limit_ends_the_run_with_a_model_and_the_precision_is_recorded(tmp_path: Path) -> None:
    """trainer.max_time (what experiment=cpu budgets by) stops early and still exports; trainer.precision=auto
    picks bf16-mixed or 32-true by the CPU and the model's metadata says which."""
    from stylenet.core.device import native_bf16

    train(tmp_path, "trainer.max_steps=100000", "trainer.max_time=00:00:00:04", "trainer.precision=auto")
    metadata = load_model(tmp_path / "model.safetensors", "cpu").metadata
    assert 1 <= metadata["steps"] < 100000
    assert metadata["training"]["precision"] == ("bf16-mixed" if native_bf16(torch.device("cpu")) else "32-true")
    assert metadata["training"]["seconds"] >= 4 and metadata["training"]["machine"]


def test_a_cosine_schedule_warms_up_then_decays_to_zero(tmp_path: Path) -> None:
    train(tmp_path, "trainer.max_steps=8", "optimizer.schedule=cosine", "optimizer.warmup_steps=3", "optimizer.lr=1e-3")
    rates = scalars(tmp_path, "lr-Adam")
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1e-3)  # warm-up: (step + 1) / 3 of the peak
    assert rates[2] > rates[4] > rates[6] > rates[7] >= 0 and rates[7] < 1e-4  # cosine to zero at max_steps


def test_the_stability_term_trains_and_is_recorded(tmp_path: Path) -> None:
    """loss.temporal_weight adds train/temporal_loss (and to the total), and the model file records the weight."""
    from stylenet.training.trainer import train as train_in_process
    from tests.conftest import compose_config

    run_dir = tmp_path / "run"
    model = train_in_process(compose_config(*TINY, "trainer.max_steps=3", "loss.temporal_weight=100", run_dir=run_dir))
    assert load_model(model, "cpu").metadata["loss"]["temporal_weight"] == 100
    temporal = scalars(run_dir, "train/temporal_loss")
    assert len(temporal) == 3 and all(value > 0 for value in temporal.values())
    totals = scalars(run_dir, "train/total_loss")
    parts = [scalars(run_dir, f"train/{name}_loss") for name in ("content", "style", "tv", "temporal")]
    assert totals[2] == pytest.approx(sum(part[2] for part in parts), rel=1e-3)
