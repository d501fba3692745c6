"""The any-style network (Ghiasi et al. 2017): a painting's predicted style vector sets a transformer's norms;
a bound painting is a plain TransformerNet; blends, strength, exports with the painting as a second input or
baked in, and the train command. Tiny random weights: quality is `stylenet eval`'s, never a test's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.models.export import export_model
from stylenet.models.formats import load_network
from stylenet.running.inference import StyleModel, load_model
from stylenet.models.kinds.arbitrary import ArbitraryStyleNet, bind_paintings
from stylenet.models.kinds.transformer import TransformerNet
from stylenet.models.loss_network import LossNetwork
from stylenet.models.modelfile import model_metadata
from tests.conftest import PYTHON, TRAIN_PY, run_env

STYLENET = str(Path(PYTHON).parent / "stylenet")


@pytest.fixture(scope="module")
def network() -> ArbitraryStyleNet:
    """A narrow transformer behind a random VGG-19, its style weights scaled up so paintings differ visibly."""
    torch.manual_seed(0)
    network = ArbitraryStyleNet(4, 1, 8, "caffe", LossNetwork("vgg19", "random", ["relu4_1"]).conv_state())
    with torch.no_grad():
        network.bottleneck.weight.mul_(20.0)
        for name, parameter in network.transfer.named_parameters():
            if name.endswith("norm.weight") or name.endswith("norm.bias"):
                parameter[:-1].normal_(0.0, 0.5)
    return network.eval()


@pytest.fixture(scope="module")
def model_file(network: ArbitraryStyleNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("arbitrary") / "any.safetensors"
    export_model(network, model_metadata(network, style={"name": "any (--style-image)"}), path, "safetensors")
    return path


def stripes(colour: tuple[int, int, int], period: int, size: tuple[int, int] = (72, 56)) -> torch.Tensor:
    picture = np.full((size[1], size[0], 3), 20, dtype=np.uint8)
    picture[::period] = colour
    return torch.from_numpy(picture).permute(2, 0, 1).float().div(255).unsqueeze(0)


def test_the_painting_decides_the_picture_and_a_bound_painting_is_a_plain_transformer(network: ArbitraryStyleNet) -> None:
    content, red, blue = torch.rand(1, 3, 61, 83), stripes((250, 30, 30), 4), stripes((30, 30, 250), 9)
    with torch.no_grad():
        first, second = network(content, red), network(content, blue)
        assert (first - second).abs().mean() > 1e-3  # a different painting, a different picture
        bound = bind_paintings(network, [red], [1.0])
        assert isinstance(bound, TransformerNet)  # tiling, bf16, torch.compile and small exports apply
        assert torch.allclose(bound(content), first, atol=1e-4)  # the same sums in another order


def test_blends_average_style_vectors_and_weights_one_zero_are_the_painting_alone(network: ArbitraryStyleNet) -> None:
    content, red, blue = torch.rand(1, 3, 40, 48), stripes((250, 30, 30), 4), stripes((30, 30, 250), 9)
    with torch.no_grad():
        alone = bind_paintings(network, [red], [1.0])(content)
        assert torch.allclose(bind_paintings(network, [red, blue], [1.0, 0.0])(content), alone, atol=1e-6)
        half = bind_paintings(network, [red, blue], [0.5, 0.5])
        vector = (network.style_vector(red) + network.style_vector(blue)) / 2
        assert torch.allclose(half(content), network.transfer(content, network.condition(vector)), atol=1e-4)
        assert (half(content) - alone).abs().mean() > 1e-4


@pytest.mark.parametrize("file_format", ["safetensors", "torchscript", "onnx"])
def test_exports_take_the_painting_as_a_second_input_and_match_the_module(
    network: ArbitraryStyleNet, file_format: str, tmp_path: Path,
) -> None:
    path = tmp_path / f"any.{file_format}"
    assert export_model(network, model_metadata(network), path, file_format) <= 1e-4
    loaded, metadata = load_network(path)
    assert metadata["architecture"] == "arbitrary"
    content, style = torch.rand(1, 3, 57, 75), torch.rand(1, 3, 90, 61)  # sizes the export never saw
    with torch.no_grad():
        assert (loaded(content, style) - network(content, style)).abs().max() < 1e-4


def test_strength_blends_with_the_photo_and_preserve_color_keeps_its_colours(model_file: Path, data_dir: Path) -> None:
    model = load_model(model_file, "cpu", "fp32")
    model = model.with_paintings([Image.open(data_dir / "styles" / "udnie.jpg")])
    photo = Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").resize((64, 48))
    full, none = np.asarray(model.stylize(photo), float), np.asarray(model.stylize(photo, strength=0.0), float)
    half = np.asarray(model.stylize(photo, strength=0.5), float)
    assert np.abs(none - np.asarray(photo, float)).max() <= 1  # strength 0: the photo
    assert np.abs(half - (full + np.asarray(photo, float)) / 2).max() <= 1.5  # halfway between
    kept = model.stylize(photo, preserve_colors=True).convert("YCbCr")
    chroma = lambda image: np.asarray(image.convert("YCbCr"), float)[..., 1:]  # noqa: E731
    assert np.abs(chroma(kept) - chroma(photo)).mean() < np.abs(chroma(Image.fromarray(full.astype(np.uint8))) - chroma(photo)).mean()


@pytest.mark.slow  # the real commands end to end: 20 s
def test_the_cli_paints_blends_and_bakes_a_painting_into_a_small_model(model_file: Path, data_dir: Path, tmp_path: Path) -> None:
    photo, udnie, scream = (data_dir / "content_test" / "fruits.jpg", data_dir / "styles" / "udnie.jpg",
                            data_dir / "styles" / "the_scream.jpg")
    # --backend eager: --backend auto would measure ONNX Runtime against eager for each new model (tens of seconds)
    common = [STYLENET, "stylize", str(photo), "--model", str(model_file), "--size", "64", "--backend", "eager"]
    for name, styles in (("one", [str(udnie)]), ("blend", [f"{udnie}=0.5", f"{scream}=0.5"])):
        done = subprocess.run([*common, *sum((["--style-image", s] for s in styles), []), "-o", str(tmp_path / f"{name}.png")],
                              capture_output=True, text=True, env=run_env())
        assert done.returncode == 0, done.stderr
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), np.asarray(Image.open(tmp_path / "blend.png")))
    baked = tmp_path / "udnie.safetensors"
    done = subprocess.run([STYLENET, "export", str(model_file), "--format", "safetensors", "--style-image", str(udnie),
                           "-o", str(baked)], capture_output=True, text=True, env=run_env())
    assert done.returncode == 0, done.stderr
    small = load_model(baked, "cpu", "fp32")
    assert small.metadata["architecture"] == "transformer" and small.metadata["style"]["name"] == "udnie"
    assert baked.stat().st_size < model_file.stat().st_size / 10  # the painting is read once, the VGG left out
    done = subprocess.run([STYLENET, "stylize", str(photo), "--model", str(baked), "--size", "64", "--backend", "eager",
                           "-o", str(tmp_path / "baked.png")],
                          capture_output=True, text=True, env=run_env())
    assert done.returncode == 0, done.stderr
    difference = np.abs(np.asarray(Image.open(tmp_path / "baked.png"), int) - np.asarray(Image.open(tmp_path / "one.png"), int))
    assert difference.max() <= 2  # the same picture (bf16 rounding at most)
    missing = subprocess.run([*common, "-o", str(tmp_path / "none.png")], capture_output=True, text=True, env=run_env())
    assert missing.returncode == 2 and "give the painting with --style-image" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_per_painting_model_refuses_to_bake_a_painting_in(tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run([STYLENET, "export", str(tiny_model), "--format", "safetensors", "--style-image",
                           str(data_dir / "styles" / "udnie.jpg"), "-o", str(tmp_path / "x.safetensors")],
                          capture_output=True, text=True, env=run_env())
    assert done.returncode == 2 and "bakes a painting into an any-style model" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_the_train_command_learns_from_the_painting_folder(tmp_path: Path, data_dir: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [PYTHON, TRAIN_PY, "model=arbitrary", "experiment=cpu_any", "data.image_size=48", "data.batch_size=2",
         "model.channels=4", "model.num_residual_blocks=1", "data.num_workers=0", "samples.size=48", "samples.count=2",
         "samples.every_n_steps=4", "checkpoint.every_n_steps=4", "trainer.max_steps=4",
         f"style_dataset.root={data_dir / 'styles'}", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=run_env(), timeout=480,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_model(run_dir / "model.safetensors", "cpu")
    assert model.metadata["architecture"] == "arbitrary" and model.metadata["steps"] == 4
    assert isinstance(model, StyleModel) and model.model_kind.style_input == "style_image"


def test_a_video_is_painted_with_a_painting_read_once(model_file: Path, data_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    from stylenet.running.options import StylizeOptions
    from stylenet.running.video import stylize_video
    from tests.test_video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", frames=6, audio=None)
    reads = []
    original = ArbitraryStyleNet.style_vector
    monkeypatch.setattr(ArbitraryStyleNet, "style_vector", lambda self, style: reads.append(style.shape) or original(self, style))
    model = load_model(model_file, "cpu", "fp32")
    model = model.with_paintings([Image.open(data_dir / "styles" / "udnie.jpg")])  # as `stylenet stylize --style-image`
    result = stylize_video(model, clip, tmp_path / "out.mp4", StylizeOptions(frames_per_call=2), progress=False)
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6 == result.frames
    assert len(reads) == 1  # the painting's statistics once, for the 6 frames in 3 batches
