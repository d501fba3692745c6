"""End-to-end runs of the real commands on ../shared/data: train, resume, errors, the console script, DDP."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stylenet.modelfile import load_safetensors
from stylenet.inference import load_model
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
    result = train(
        tmp_path / "ddp", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=3",
        "checkpoint.every_n_steps=3",
    )
    assert "All distributed processes registered. Starting with 2 processes" in result.stdout + result.stderr
    assert (tmp_path / "ddp" / "model.safetensors").is_file()
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
    from stylenet.training import train as train_in_process
    from tests.conftest import compose_config

    for style in ("starry_night", "mondrian"):
        run_dir = tmp_path / style
        overrides = [*TINY, f"style={style}", "trainer.max_steps=3", "loss.relative=true", "loss.tv_weight=1", "loss.style_weight=1"]
        model = train_in_process(compose_config(*overrides, run_dir=run_dir))
        assert load_model(model, "cpu").metadata["loss"]["relative"] is True
        style_terms = list(scalars(run_dir, "train/style_loss").values())
        assert 0.05 < style_terms[0] < 20, style_terms
