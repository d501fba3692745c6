"""Conditional instance norm (Dumoulin et al. 2017): one network, several paintings, blends between them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet import StylenetError
from stylenet.models.export import export_model
from stylenet.models.modelfile import model_metadata
from stylenet.models.formats import load_network
from stylenet.running.inference import StyleModel
from stylenet.models.kinds.multistyle import MultiStyleTransformerNet
from stylenet.models.kinds.transformer import TransformerNet
from tests.conftest import PYTHON, TRAIN_PY, compose_config, run_env

STYLES = ["starry_night", "great_wave", "the_scream"]


@pytest.fixture
def network() -> MultiStyleTransformerNet:
    torch.manual_seed(0)
    network = MultiStyleTransformerNet(STYLES, channels=4, num_residual_blocks=2)
    with torch.no_grad():
        for parameter in network.parameters():  # norm scales and shifts that differ per style
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return network.eval()


def one_hot(index: int, count: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([index]), count).float()


def test_one_hot_style_equals_the_single_style_network_it_specializes_to(network: MultiStyleTransformerNet) -> None:
    """What `stylize --style NAME` runs (a plain TransformerNet with that style's norms, which tiles and exports
    like any single-style model) equals the two-input network that TorchScript and ONNX files hold."""
    images = torch.rand(2, 3, 45, 58)
    with torch.no_grad():
        outputs = [network(images, one_hot(index)) for index in range(3)]
        for index in range(3):
            single = network.specialize(one_hot(index)[0])
            assert type(single) is TransformerNet
            assert torch.allclose(single(images), outputs[index], atol=1e-5)
    assert (outputs[0] - outputs[1]).abs().mean() > 1e-3


def test_each_image_of_a_batch_takes_its_own_style(network: MultiStyleTransformerNet) -> None:
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        batched = network(images, torch.eye(3))
        separate = torch.cat([network(images[i : i + 1], one_hot(i)) for i in range(3)])
        assert torch.allclose(batched, separate, atol=1e-5)
        assert (network(images, one_hot(0)) - network(images, one_hot(1))).abs().mean() > 1e-3  # styles differ


def test_interpolation_weights_one_zero_equal_the_pure_style(network: MultiStyleTransformerNet) -> None:
    model = StyleModel(network, model_metadata(network), "cpu", "fp32")
    images = torch.rand(1, 3, 40, 36)
    model = model.with_style("great_wave")
    pure = model.stylize_tensor(images)
    model = model.with_style("great_wave=1,starry_night=0")
    assert torch.equal(model.stylize_tensor(images), pure)
    model = model.with_style({"starry_night": 0.5, "great_wave": 0.5})
    half = model.stylize_tensor(images)
    with torch.no_grad():
        mixed = network(images, torch.tensor([[0.5, 0.5, 0.0]]))
    assert torch.allclose(half, mixed, atol=1e-5)  # a blend mixes the norm parameters, as the paper does
    assert (half - pure).abs().mean() > 1e-3


def test_a_style_binds_a_new_model_and_leaves_the_loaded_one_as_it_was(network: MultiStyleTransformerNet) -> None:
    model = StyleModel(network, model_metadata(network), "cpu", "fp32")
    images = torch.rand(1, 3, 40, 36)
    first = model.stylize_tensor(images)  # its first style, starry_night
    scream = model.with_style("the_scream")
    assert not torch.equal(scream.stylize_tensor(images), first)
    assert torch.equal(model.stylize_tensor(images), first)  # nothing the other call chose lingers


def test_unknown_or_bad_style_names_the_models_styles(network: MultiStyleTransformerNet) -> None:
    model = StyleModel(network, model_metadata(network), "cpu")
    with pytest.raises(StylenetError, match="'monet' is not in this model; it holds starry_night, great_wave, the_scream"):
        model.with_style("monet")
    with pytest.raises(StylenetError, match="not a number"):
        model.with_style("great_wave=lots")
    with pytest.raises(StylenetError, match="positive sum"):
        model.with_style("great_wave=0")
    with pytest.raises(StylenetError, match="needs an any-style model"):
        model.with_paintings([Image.new("RGB", (32, 32))])


@pytest.mark.parametrize("file_format", ["safetensors", "torchscript", "onnx"])
def test_exports_hold_every_style_and_match_the_module(
    network: MultiStyleTransformerNet, file_format: str, tmp_path: Path
) -> None:
    path = tmp_path / f"model.{file_format}"
    assert export_model(network, model_metadata(network, steps=1), path, file_format) <= 1e-4
    loaded, metadata = load_network(path)
    assert metadata["styles"] == STYLES and metadata["architecture"] == "multistyle"
    model = StyleModel(loaded, metadata, "cpu", "fp32")
    model = model.with_style("the_scream=0.3,great_wave=0.7")
    images = torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        expected = network(images, torch.tensor([[0.0, 0.7, 0.3]]))
    assert (model.stylize_tensor(images) - expected).abs().max() < 1e-4


def test_several_styles_need_model_multistyle() -> None:
    from stylenet.training.trainer import check_config

    with pytest.raises(StylenetError, match=r"style=\[starry_night,great_wave\] selects 2 paintings, but model=transformer"):
        check_config(compose_config("style=[starry_night,great_wave]"))
    cfg = compose_config("style=[starry_night,great_wave,the_scream]", "model=multistyle")
    check_config(cfg)
    from stylenet.training.config import paintings

    assert list(paintings(cfg)) == STYLES


@pytest.mark.slow
def test_three_style_training_lowers_both_losses_and_stylizes_each_style(tmp_path: Path, data_dir: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [PYTHON, TRAIN_PY, "model=multistyle", f"style=[{','.join(STYLES)}]", "experiment=quick",
         "data.image_size=64", "style.size=128", "model.channels=8", "data.num_workers=0", "samples.size=64",
         "samples.count=2", "samples.every_n_steps=30", "checkpoint.every_n_steps=30", "trainer.max_steps=30",
         "trainer.log_every_n_steps=1", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=run_env(), timeout=480,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from tests.test_train import scalars

    for term in ("style", "content"):
        values = list(scalars(run_dir, f"train/{term}_loss").values())
        assert np.mean(values[-5:]) < np.mean(values[:5]), (term, values)
    stylenet = str(Path(PYTHON).parent / "stylenet")
    photo = data_dir / "content_test" / "orange.jpg"
    outputs = {}
    for style in [*STYLES, "starry_night=0.5,great_wave=0.5"]:
        output = tmp_path / f"{style}.png"
        done = subprocess.run([stylenet, "stylize", str(photo), "--model", str(run_dir / "model.safetensors"),
                               "--style", style, "--size", "64", "--backend", "eager", "-o", str(output)],
                              capture_output=True, text=True)  # eager: not a backend measurement per new model
        assert done.returncode == 0, done.stderr
        outputs[style] = np.asarray(Image.open(output), dtype=np.int16)
    assert np.abs(outputs["starry_night"] - outputs["great_wave"]).mean() > 1  # the styles differ
    info = subprocess.run([stylenet, "info", str(run_dir / "checkpoints" / "last.ckpt")], capture_output=True, text=True)
    assert info.returncode == 0 and '"the_scream"' in info.stdout
