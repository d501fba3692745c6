"""Training checkpoints describe themselves: real .ckpt files of every model kind, written by real (tiny)
training runs, load by their metadata alone; checkpoints from before they carried it still load and resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.running.inference import StyleModel, load_model
from stylenet.training.trainer import train
from tests.conftest import compose_config

pytestmark = pytest.mark.slow

TINY = ["experiment=quick", "data.image_size=32", "style.size=64", "model.channels=4", "data.num_workers=0",
        "samples.size=32", "samples.count=1", "samples.every_n_steps=2", "checkpoint.every_n_steps=2",
        "trainer.max_steps=2"]
KINDS = {
    "transformer": ["model.num_residual_blocks=1"],
    "multistyle": ["model=multistyle", "style=[starry_night,great_wave]", "model.num_residual_blocks=1"],
    "adain": ["model=adain", "data.batch_size=2"],
    "arbitrary": ["model=arbitrary", "data.batch_size=2", "model.num_residual_blocks=1"],
}
LEGACY = Path(__file__).parent / "data"  # last.ckpt of tiny runs made by stylenet 0.1 at commit 3f6523d


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{kind: run directory} of one 2-step training run of each kind."""
    runs = {}
    for kind, overrides in KINDS.items():
        run_dir = tmp_path_factory.mktemp(kind)
        train(compose_config(*TINY, *overrides, run_dir=run_dir))
        runs[kind] = run_dir
    return runs


def bind_a_style(model: StyleModel, data: Path) -> StyleModel:
    if model.model_kind.style_input == "style_weights":
        return model.with_style("great_wave")
    if model.model_kind.style_input == "style_image":
        return model.with_paintings([Image.open(data / "styles" / "udnie.jpg")])
    return model


def stylized(path: Path, data: Path) -> torch.Tensor:
    model = bind_a_style(load_model(path, "cpu"), data)
    photo = Image.open(data / "content_test" / "fruits.jpg").convert("RGB").resize((48, 40))
    return torch.from_numpy(np.asarray(model.stylize(photo), dtype=np.int16))


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_checkpoint_carries_the_metadata_of_its_model_file_and_stylizes_alike(runs: dict[str, Path], kind: str, data_dir: Path) -> None:
    run_dir = runs[kind]
    checkpoint, exported = run_dir / "checkpoints" / "last.ckpt", run_dir / "model.safetensors"
    from_checkpoint, from_file = load_model(checkpoint, "cpu").metadata, load_model(exported, "cpu").metadata
    assert from_checkpoint.pop("format") == "checkpoint" and from_file.pop("format") == "safetensors"
    assert from_file["training"].pop("seconds") > 0  # the run's training time, known once it has ended
    assert from_checkpoint == from_file and from_file["architecture"] == kind
    assert torch.equal(stylized(checkpoint, data_dir), stylized(exported, data_dir))


@pytest.mark.parametrize("kind", list(KINDS))
def test_loading_a_checkpoint_reads_its_metadata_never_its_hyperparameters(runs: dict[str, Path], kind: str,
                                                                         tmp_path: Path, data_dir: Path) -> None:
    checkpoint = torch.load(runs[kind] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"] = {"renamed": True}  # what a renamed training argument would leave behind
    torch.save(checkpoint, tmp_path / "renamed.ckpt")
    assert load_model(tmp_path / "renamed.ckpt", "cpu").metadata["architecture"] == kind
    assert torch.equal(stylized(tmp_path / "renamed.ckpt", data_dir), stylized(runs[kind] / "model.safetensors", data_dir))


@pytest.mark.parametrize("kind", ["transformer", "multistyle"])
def test_checkpoints_from_before_the_metadata_still_load(kind: str, data_dir: Path) -> None:
    model = load_model(LEGACY / f"legacy_{kind}.ckpt", "cpu")
    assert model.metadata["architecture"] == kind and model.metadata["arguments"]["channels"] == 4
    if kind == "multistyle":
        assert model.styles == ["starry_night", "great_wave"]
    assert stylized(LEGACY / f"legacy_{kind}.ckpt", data_dir).shape == (40, 48, 3)


def test_an_adain_checkpoint_from_before_the_metadata_still_loads(runs: dict[str, Path], tmp_path: Path, data_dir: Path) -> None:
    """stylenet 0.1 wrote AdaIN checkpoints as today's, less the metadata, with its network under `transformer.`
    and these hyperparameters (an AdaIN .ckpt holds the 15 MB encoder, too large to keep in the repository)."""
    checkpoint = torch.load(runs["adain"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    del checkpoint["stylenet"]
    checkpoint["state_dict"] = {key.replace("network.", "transformer.", 1): value for key, value in checkpoint["state_dict"].items()}
    checkpoint["hyper_parameters"] = {"channels": 4, "loss_weights": "caffe", "content_weight": 1.0, "style_weight": 10.0,
                                      "lr": 2e-3, "on_nonfinite_loss": "stop", "sample_styles": []}
    torch.save(checkpoint, tmp_path / "old_adain.ckpt")
    assert load_model(tmp_path / "old_adain.ckpt", "cpu").metadata["architecture"] == "adain"
    assert torch.equal(stylized(tmp_path / "old_adain.ckpt", data_dir), stylized(runs["adain"] / "model.safetensors", data_dir))


def test_a_run_from_before_the_metadata_resumes(tmp_path: Path) -> None:
    checkpoint = tmp_path / "last.ckpt"
    shutil.copy(LEGACY / "legacy_transformer.ckpt", checkpoint)
    overrides = [*TINY, *KINDS["transformer"], "trainer.max_steps=4", f"ckpt_path={checkpoint}"]
    model_path = train(compose_config(*overrides, run_dir=tmp_path / "resumed"))
    metadata = load_model(model_path, "cpu").metadata
    assert metadata["steps"] == 4 and metadata["architecture"] == "transformer"


def test_a_run_that_dies_between_step_checkpoints_keeps_the_last_ckpt_every_n_minutes_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """checkpoint.every_n_minutes: last.ckpt is written by the clock as well as every N steps, so a run killed
    long before its first step checkpoint (1000 here) resumes from its last finished step, not from nothing."""
    from stylenet.training.systems.transformer import StyleTransferSystem

    objective = StyleTransferSystem.objective

    def dies_at_step_3(self: StyleTransferSystem, content: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.global_step == 3:  # a crash, not a stop: no on_train_end writes a checkpoint
            raise RuntimeError("killed at step 3")
        return objective(self, content)

    monkeypatch.setattr(StyleTransferSystem, "objective", dies_at_step_3)
    overrides = [*TINY, *KINDS["transformer"], "trainer.max_steps=10", "checkpoint.every_n_steps=1000",
                 "checkpoint.every_n_minutes=1e-6"]
    with pytest.raises(RuntimeError, match="killed at step 3"):
        train(compose_config(*overrides, run_dir=tmp_path))
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3
    assert load_model(last, "cpu").metadata["steps"] == 3
