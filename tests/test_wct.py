"""WCT (Li et al. 2017): any painting by its feature mean and covariance, decoders per level, numerics that hold."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet import StylenetError
from stylenet.models.export import export_model
from stylenet.models.formats import load_network
from stylenet.running.inference import StyleModel
from stylenet.models.kinds.wct import PaintingSide, WCTNet, WCTStylizer, colouring_matrix, wct
from stylenet.models.loss_network import LossNetwork
from stylenet.models.modelfile import model_metadata
from tests.conftest import PYTHON, TRAIN_PY, compose_config, run_env


@pytest.fixture(scope="module")
def network() -> WCTNet:
    """Narrow decoders at every level behind a random (Kaiming) VGG-19: the weights do not matter for these checks."""
    torch.manual_seed(0)
    encoder = LossNetwork("vgg19", "random", ["relu4_1"])
    network = WCTNet(["relu4_1", "relu3_1", "relu2_1", "relu1_1"], 4, encoder_state=encoder.conv_state())
    network.calibrate([torch.rand(3, 64, 64)])
    for layer in network.decoders.modules():  # He init: untrained decoders whose output still varies
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return network.eval()


def covariance(features: torch.Tensor) -> torch.Tensor:
    centred = features - features.mean(1, keepdim=True)
    return centred @ centred.T / (features.shape[1] - 1)


def test_the_transform_gives_the_content_the_paintings_mean_and_covariance(network: WCTNet) -> None:
    with torch.no_grad():
        content = network.features(torch.rand(1, 3, 48, 40), ["relu1_1"])["relu1_1"]  # 64 channels, 1920 positions
        painting = network.features(torch.rand(1, 3, 56, 48) * 0.6, ["relu1_1"])["relu1_1"][0].flatten(1)
    mean, colouring = colouring_matrix(painting)
    target = wct(content, mean, colouring)[0].flatten(1)
    assert torch.allclose(target.mean(1, keepdim=True), mean, atol=1e-4)
    # the covariance too (Gram statistics are what style terms measure), on the directions that carry signal
    assert torch.allclose(covariance(target), covariance(painting), atol=2e-3 * covariance(painting).abs().max())
    assert not torch.allclose(covariance(content[0].flatten(1)), covariance(painting), atol=1e-2)  # it did change them


def test_whitening_a_rank_deficient_or_flat_covariance_stays_finite() -> None:
    def whiten(features: torch.Tensor) -> torch.Tensor:  # WCT with the identity for colouring and no mean: whitening
        channels = features.shape[0]
        return wct(features[None, :, None], torch.zeros(channels, 1), torch.eye(channels))[0, :, 0]

    torch.manual_seed(1)
    few = torch.rand(512, 64)  # relu4_1 of a 64-px image: 64 positions for 512 channels, rank 63
    whitened = whiten(few)
    assert whitened.isfinite().all()
    # identity covariance on the 63 directions that carry signal, nothing on the rest
    eigenvalues = torch.linalg.eigvalsh(covariance(whitened).double())
    assert (eigenvalues[-63:] - 1).abs().max() < 1e-3 and eigenvalues[:-63].abs().max() < 1e-3
    flat = torch.full((64, 100), 3.0)  # a flat image: zero covariance, nothing to whiten
    assert torch.equal(whiten(flat), torch.zeros_like(flat))
    mean, colouring = colouring_matrix(flat)
    assert torch.equal(colouring, torch.zeros(64, 64)) and torch.allclose(mean, torch.full((64, 1), 3.0))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_flat_photos_and_paintings_and_tiny_sizes_give_pictures_never_nan(network: WCTNet, precision: str) -> None:
    white, grey = torch.ones(1, 3, 40, 40), torch.full((1, 3, 64, 48), 0.4)
    photo, painting = torch.rand(1, 3, 24, 20), torch.rand(1, 3, 32, 32)  # relu4_1 of the photo: a handful of positions
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        outputs = [network(white, painting), network(photo, grey), network(white, grey), network(photo, painting)]
    for output in outputs:
        assert output.isfinite().all() and output.min() >= 0 and output.max() <= 1
    assert outputs[-1].float().std() > 0.01  # a picture, not a flat field


def test_blends_mix_the_paintings_sides_and_strength_zero_ignores_the_painting(network: WCTNet) -> None:
    content, first, second = torch.rand(1, 3, 40, 56), torch.rand(1, 3, 48, 48), torch.rand(1, 3, 64, 32) * 0.5
    with torch.no_grad():
        sides = [network.painting_side(first), network.painting_side(second)]
        pure = network(content, first)
        assert torch.allclose(WCTStylizer(network, PaintingSide.blend(sides, [1.0, 0.0]))(content), pure, atol=1e-5)
        half = PaintingSide.blend(sides, [2.0, 2.0])
        for level in network.levels:
            assert torch.allclose(half.colourings[level], (sides[0].colourings[level] + sides[1].colourings[level]) / 2)
        mixed = WCTStylizer(network, half)(content)
        assert not torch.allclose(mixed, pure, atol=1e-3)
        one, two = (WCTStylizer(network, side) for side in sides)
        assert torch.allclose(one(content, alpha=0.0), two(content, alpha=0.0), atol=1e-6)  # alpha 0: the photo's own
        assert not torch.allclose(one(content), two(content), atol=1e-3)


def test_a_photo_in_tiles_shares_one_transform_and_shows_no_seams(network: WCTNet) -> None:
    """Tiles (with their halo) pool one mean and covariance for the whole photo: the result is the whole pass's."""
    photo, painting = torch.rand(1, 3, 150, 230), torch.rand(1, 3, 64, 64)
    coarse = WCTNet(["relu4_1"], 4, encoder_state=network.encoder.conv_state())  # the level with the widest reach
    coarse.load_state_dict(network.state_dict(), strict=False)
    with torch.no_grad():
        whole, tiled = (coarse.stylize(photo, coarse.painting_side(painting), tile=tile) for tile in (0, 96))
        difference = (whole - tiled).abs()
        assert difference.max() < 1e-2 and difference.mean() < 1e-4 and whole.std() > 0.01  # float rounding only
        # four levels in a row pass the small differences on, but no seam or tile of its own appears
        whole, tiled = (network.stylize(photo, network.painting_side(painting), tile=tile) for tile in (0, 96))
    assert (whole - tiled).abs().mean() < 3e-3  # measured 8e-4 (random weights: outputs mostly saturated)


def test_exports_match_the_module_and_onnx_says_why_not(network: WCTNet, tmp_path: Path) -> None:
    # two levels: four random (He-initialised) decoders in a row carry TorchScript's 1e-6 differences in the
    # convolutions up to 2e-3 at the end; the shipped model's export differs by 4e-6
    network = WCTNet(["relu2_1", "relu1_1"], 4, encoder_state=network.encoder.conv_state())
    torch.manual_seed(4)
    network.calibrate([torch.rand(3, 64, 64)])
    for file_format in ("safetensors", "torchscript"):
        path = tmp_path / f"wct.{file_format}"
        assert export_model(network, model_metadata(network, steps=1), path, file_format) <= 1e-4
        loaded, metadata = load_network(path)
        assert metadata["architecture"] == "wct" and metadata["arguments"]["levels"] == network.levels
        content, painting = torch.rand(1, 3, 57, 75), torch.rand(1, 3, 90, 61)  # sizes the export never saw
        with torch.no_grad():
            assert (loaded(content, painting) - network(content, painting)).abs().max() < 1e-4
    with pytest.raises(StylenetError, match="no ONNX export: ONNX has no eigendecomposition.*--format torchscript"):
        export_model(network, model_metadata(network, steps=1), tmp_path / "wct.onnx", "onnx")
    assert not (tmp_path / "wct.onnx").exists()


def test_a_style_model_binds_the_painting_once_and_strength_is_per_call(network: WCTNet) -> None:
    model = StyleModel(network, model_metadata(network), "cpu")
    with pytest.raises(StylenetError, match="pass --style-image"):
        model.stylize(Image.new("RGB", (32, 32)))
    painting = Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8))
    model = model.with_paintings([painting])
    photo = torch.rand(1, 3, 40, 48)
    full = model.stylize_tensor(photo)
    weak = model.stylize_tensor(photo, strength=0.3)
    assert not torch.allclose(weak, full, atol=1e-3)
    assert not torch.allclose(weak, torch.lerp(photo, full, 0.3), atol=1e-3)  # features blended, not pixels
    assert torch.equal(model.stylize_tensor(photo), full)  # the strength of the call before is gone
    kept = model.stylize(Image.new("RGB", (48, 40), (200, 30, 30)), preserve_colors=True)
    assert np.asarray(kept)[..., 0].mean() > np.asarray(kept)[..., 2].mean()  # the photo's red stays


def test_a_painting_used_again_is_not_read_again(network: WCTNet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page and loops come back to a painting: its side is computed once (the model keeps the last few)."""
    reads = []
    monkeypatch.setattr(network, "painting_side", lambda painting: reads.append(1) or WCTNet.painting_side(network, painting))
    model = StyleModel(network, model_metadata(network), "cpu")
    first, second = (Image.fromarray((np.random.default_rng(seed).random((40, 30, 3)) * 255).astype(np.uint8)) for seed in (2, 3))
    photo = torch.rand(1, 3, 32, 32)
    model = model.with_paintings([first])
    once = model.stylize_tensor(photo)
    model = model.with_paintings([second])
    assert not torch.equal(model.stylize_tensor(photo), once)
    model = model.with_paintings([first.copy()])
    assert torch.equal(model.stylize_tensor(photo), once) and len(reads) == 2


def test_short_training_lowers_each_levels_reconstruction_loss() -> None:
    """The system's loss on a fixed batch of real photo/painting crops through the real Caffe VGG-19."""
    from stylenet.training.data import ImageFolderDataset
    from stylenet.training.systems.wct import WCTSystem

    torch.manual_seed(0)
    data = Path(compose_config().paths.data)
    photos = [data / "content_test" / name for name in ("fruits.jpg", "baboon.jpg")]
    paintings = [data / "styles" / name for name in ("the_scream.jpg", "great_wave.jpg")]
    content = torch.stack([ImageFolderDataset(photos, 32)[i] for i in range(2)])
    style = torch.stack([ImageFolderDataset(paintings, 32)[i] for i in range(2)])
    module = WCTSystem(["relu2_1", "relu1_1"], channels=8, lr=3e-3, feature_weight=0.1)
    optimizer = module.configure_optimizers()
    history = []
    for _ in range(30):
        terms = module.losses(content, style)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        history.append({name: value.item() for name, value in terms.items()})
    for term in ("pixel", "feature"):
        first, last = np.mean([h[term] for h in history[:3]]), np.mean([h[term] for h in history[-3:]])
        assert last < 0.7 * first, (term, first, last)


def test_the_linear_decoder_is_fitted_by_least_squares_and_reconstructs_closely(network: WCTNet) -> None:
    from stylenet.training.systems.wct import fit_linear_decoder

    torch.manual_seed(3)
    smooth = [torch.nn.functional.interpolate(torch.rand(4, 3, 8, 8), size=32, mode="bilinear") for _ in range(2)]
    fine = WCTNet(["relu1_1"], 4, encoder_state=network.encoder.conv_state())
    fine.feature_scale.copy_(network.feature_scale)
    before = (fine.decoders["relu1_1"](fine.features(smooth[0], ["relu1_1"])["relu1_1"]) - smooth[0]).abs().mean()
    error = fit_linear_decoder(fine, smooth)
    after = (fine.decoders["relu1_1"](fine.features(smooth[1], ["relu1_1"])["relu1_1"]) - smooth[1]).abs().mean()
    assert error < 0.05 and after < 0.05 < before  # measured: 0.006 on photos it never read, 0.61 untrained


def test_wct_config_errors_name_the_key() -> None:
    from stylenet.training.trainer import check_config

    with pytest.raises(StylenetError, match="model=wct: its encoder is VGG-19"):
        check_config(compose_config("model=wct", "loss_network=vgg16"))
    with pytest.raises(StylenetError, match=r"model.levels=\['relu5_1'\]: must be distinct ones of relu4_1"):
        check_config(compose_config("model=wct", "model.levels=[relu5_1]"))
    with pytest.raises(StylenetError, match="model.train_levels=.*must be among model.levels"):
        check_config(compose_config("model=wct", "model.levels=[relu2_1]", "model.train_levels=[relu1_1]"))
    with pytest.raises(StylenetError, match="model.start_from=nowhere.safetensors: no such file"):
        check_config(compose_config("model=wct", "model.start_from=nowhere.safetensors"))


@pytest.mark.slow
def test_train_one_level_then_the_next_from_it_then_stylize_a_video(tmp_path: Path, data_dir: Path) -> None:
    """Decoders trained one at a time (the second run starts from the first's file), then a painting it never saw
    on a photo, a blend and a video through the CLI."""
    common = ["model=wct", "experiment=quick", "data.image_size=32", "data.batch_size=2", "model.channels=4",
              "data.num_workers=0", "samples.size=32", "samples.count=2", "trainer.max_steps=3", "checkpoint.every_n_steps=3"]
    first, second = tmp_path / "first", tmp_path / "second"
    for run_dir, extra in ((first, ["model.levels=[relu2_1,relu1_1]", "model.train_levels=[relu2_1]"]),
                           (second, ["model.levels=[relu2_1,relu1_1]", "model.train_levels=[relu1_1]",
                                     f"model.start_from={first / 'model.safetensors'}"])):
        done = subprocess.run([PYTHON, TRAIN_PY, *common, *extra, f"hydra.run.dir={run_dir}"],
                              capture_output=True, text=True, env=run_env(), timeout=480)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (load_network(run / "model.safetensors")[0] for run in (first, second))
    assert torch.equal(two.decoders["relu2_1"].layers[1].weight, one.decoders["relu2_1"].layers[1].weight)  # taken
    assert not torch.equal(two.decoders["relu1_1"].layers[1].weight, one.decoders["relu1_1"].layers[1].weight)  # trained
    stylenet = str(Path(PYTHON).parent / "stylenet")
    model = ["--model", str(second / "model.safetensors"), "--backend", "eager"]
    painting = data_dir / "styles" / "udnie.jpg"
    photo = data_dir / "content_test" / "orange.jpg"
    for source, output, extra in (
        (photo, tmp_path / "a.png", ["--style-image", str(painting), "--size", "48"]),
        (photo, tmp_path / "b.png", ["--style-image", f"{painting}=0.5", "--style-image",
                                     str(data_dir / "styles" / "great_wave.jpg") + "=0.5", "--size", "48"]),
        (Path(__file__).parent / "data" / "phone_rotated.mp4", tmp_path / "c.mp4", ["--style-image", str(painting)]),
    ):
        done = subprocess.run([stylenet, "stylize", str(source), *model, *extra, "-o", str(output)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert output.stat().st_size > 0
    assert Image.open(tmp_path / "a.png").size == Image.open(tmp_path / "b.png").size
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    onnx = subprocess.run([stylenet, "export", str(second / "model.safetensors"), "--format", "onnx", "-o",
                           str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert onnx.returncode == 2 and "no ONNX export" in onnx.stderr and len(onnx.stderr.strip().splitlines()) == 1
