"""load_model() for every kind of model file, and StyleModel.stylize() on every kind of image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet import StylenetError
from stylenet.models.export import export_model
from stylenet.models.modelfile import load_safetensors
from stylenet.core.images import load_image, to_tensor
from stylenet.running.inference import StyleModel, load_model
from stylenet.running.tiling import HALO, tiled_forward
from tests import reference_fast_neural_style as reference
from tests.conftest import exif_rotated_jpeg


@pytest.fixture
def photo() -> Image.Image:
    """A 61x47 image with structure (odd size on purpose)."""
    generator = np.random.default_rng(0)
    smooth = np.kron(generator.integers(0, 256, (7, 6, 3)), np.ones((9, 11, 1)))[:47, :61]
    return Image.fromarray(smooth.astype(np.uint8), "RGB")


def max_difference(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


@pytest.mark.parametrize("file_format", ["torchscript", "onnx"])
def test_exported_files_load_and_stylize_like_the_module(tiny_model: Path, tmp_path: Path, photo: Image.Image,
                                                        file_format: str) -> None:
    module, metadata = load_safetensors(tiny_model)
    path = tmp_path / f"model.{file_format}"
    assert export_model(module, metadata, path, file_format) < 1e-4
    model = load_model(path, "cpu", "fp32")
    assert model.file_format == file_format and model.metadata["style"] == {"name": "tiny"}
    expected = load_model(tiny_model, "cpu", "fp32").stylize(photo)  # exports run in fp32
    assert model.stylize(photo).size == photo.size
    assert max_difference(model.stylize(photo), expected) <= 1  # one 8-bit level of rounding


def test_lightning_checkpoint_and_bare_state_dicts_load(tiny_model: Path, tmp_path: Path, photo: Image.Image) -> None:
    module, _ = load_safetensors(tiny_model)
    state = module.state_dict()
    checkpoint = {
        "state_dict": {f"transformer.{k}": v for k, v in state.items()},
        "hyper_parameters": {"channels": 4, "num_residual_blocks": 1, "style_name": "tiny"}, "global_step": 9,
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    torch.save(state, tmp_path / "weights.pth")
    expected = load_model(tiny_model, "cpu").stylize(photo)
    from_checkpoint = load_model(tmp_path / "last.ckpt", "cpu")
    assert from_checkpoint.file_format == "checkpoint" and from_checkpoint.metadata["steps"] == 9
    assert max_difference(from_checkpoint.stylize(photo), expected) == 0
    assert max_difference(load_model(tmp_path / "weights.pth", "cpu").stylize(photo), expected) == 0


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-pickle", "zip"])
def test_pytorch_examples_state_dict_gives_their_pixels(tmp_path: Path, legacy: bool) -> None:
    theirs = reference.random_network()
    state = theirs.state_dict()
    for name in ("in1", "in2", "res1.in1"):  # files from PyTorch < 0.4 carry unused running stats
        state[f"{name}.running_mean"], state[f"{name}.running_var"] = torch.zeros(1), torch.ones(1)
    path = tmp_path / "candy.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    model = load_model(path, "cpu", "fp32")  # their reference runs in fp32
    assert model.file_format == "state_dict" and model.loaded.output == "clamp"
    images = torch.rand(1, 3, 64, 80)
    expected = reference.stylize(theirs, images)
    assert 0.05 < expected.mean() < 0.95  # the reference is not saturated, so the comparison means something
    assert (model.stylize_tensor(images) - expected).abs().max() < 1e-4
    # and it converts to a stylenet model file that keeps the same pixels
    safetensors = tmp_path / "candy.safetensors"
    export_model(model.loaded, model.metadata, safetensors, "safetensors")
    assert (load_model(safetensors, "cpu", "fp32").stylize_tensor(images) - expected).abs().max() < 1e-4


def test_unknown_and_damaged_files_fail_with_one_clear_error(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(StylenetError, match="is not a model stylenet knows"):
        load_model(tmp_path / "notes.txt")
    (tmp_path / "cut.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(StylenetError, match="damaged zip"):
        load_model(tmp_path / "cut.zip")
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(StylenetError, match="state dict of an unknown network"):
        load_model(tmp_path / "other.pth")
    state = load_safetensors(tiny_model)[0].state_dict()
    state["encoder.0.1.weight"] = state["encoder.0.1.weight"][:, :2]  # a tampered shape
    torch.save(state, tmp_path / "tampered.pth")
    with pytest.raises(StylenetError, match="weights do not fit the network"):
        load_model(tmp_path / "tampered.pth")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(StylenetError, match="not a loadable ONNX model"):
        load_model(tmp_path / "bad.onnx")


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (17, 9), (61, 47), (130, 66)])
def test_any_size_comes_back_at_exactly_that_size(tiny_model: Path, size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, (120, 40, 200))
    assert load_model(tiny_model, "cpu").stylize(image).size == size


def test_size_and_scale_set_the_output_size(tiny_model: Path, photo: Image.Image) -> None:
    model = load_model(tiny_model, "cpu")
    assert model.stylize(photo, size=122).size == (122, 94)
    assert model.stylize(photo, scale=0.5).size == (30, 24)
    with pytest.raises(StylenetError, match="either a size or a scale"):
        model.stylize(photo, size=10, scale=2.0)


def test_alpha_is_carried_through_unchanged(tiny_model: Path, photo: Image.Image) -> None:
    alpha = Image.linear_gradient("L").resize(photo.size)
    rgba = photo.copy()
    rgba.putalpha(alpha)
    result = load_model(tiny_model, "cpu").stylize(rgba)
    assert result.mode == "RGBA" and result.getchannel("A").tobytes() == alpha.tobytes()
    palette = photo.convert("P")
    palette.info["transparency"] = 0
    assert load_model(tiny_model, "cpu").stylize(palette).mode == "RGBA"


def test_grayscale_16_bit_and_cmyk_inputs_work(tiny_model: Path, tmp_path: Path, photo: Image.Image) -> None:
    model = load_model(tiny_model, "cpu")
    array16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(array16).save(tmp_path / "deep.png")
    photo.convert("CMYK").save(tmp_path / "print.jpg")
    photo.convert("L").save(tmp_path / "grey.png")
    for name in ("deep.png", "print.jpg", "grey.png"):
        result = model.stylize(load_image(tmp_path / name, keep_alpha=True))
        assert result.mode == "RGB" and result.size == photo.size


def test_exif_orientation_is_applied(tiny_model: Path, tmp_path: Path) -> None:
    """Stored sideways with orientation 6 (turn 90 degrees clockwise to view): the result is turned that way, so the
    blue half is on the left as in the upright photo (turned counter-clockwise, it would be on the right)."""
    upright = exif_rotated_jpeg(tmp_path / "sideways.jpg")
    model = load_model(tiny_model, "cpu")
    result = model.stylize(load_image(tmp_path / "sideways.jpg"))
    assert result.size == upright.size == (40, 24)
    shown = np.asarray(model.stylize(load_image(tmp_path / "sideways.jpg"), strength=0.0), dtype=float)  # the photo
    left, right = shown[:, :20].mean(axis=(0, 1)), shown[:, 20:].mean(axis=(0, 1))
    assert left[2] > 200 > left[0] and right[0] > 200 > right[2], (left, right)  # blue left, red right


def test_strength_zero_returns_the_photo_and_one_the_full_style(tiny_model: Path, photo: Image.Image) -> None:
    model = load_model(tiny_model, "cpu")
    assert model.stylize(photo, strength=0.0).tobytes() == photo.tobytes()
    full, half = model.stylize(photo), model.stylize(photo, strength=0.5)
    middle = (np.asarray(photo, dtype=float) + np.asarray(full, dtype=float)) / 2
    assert np.abs(np.asarray(half, dtype=float) - middle).max() <= 1.0
    with pytest.raises(StylenetError, match="strength must be between 0 and 1"):
        model.stylize(photo, strength=1.5)


def test_preserve_color_keeps_the_photos_chroma(tiny_model: Path, photo: Image.Image) -> None:
    model = load_model(tiny_model, "cpu")

    def chroma_error(image: Image.Image) -> float:
        chroma = np.asarray(image.convert("YCbCr"), dtype=float)[..., 1:]
        return float(np.abs(chroma - np.asarray(photo.convert("YCbCr"), dtype=float)[..., 1:]).mean())

    plain, kept = model.stylize(photo), model.stylize(photo, preserve_colors=True)
    assert chroma_error(plain) > 5.0  # the style changes the colours...
    assert chroma_error(kept) < 1.5  # ...and preserve-color keeps them (to YCbCr rounding)
    luminance = lambda image: np.asarray(image.convert("L"), dtype=float)  # noqa: E731
    assert np.abs(luminance(kept) - luminance(plain)).mean() < 2.0  # while the luminance is the style's


def test_tiles_do_not_show_when_statistics_are_shared(tiny_model: Path) -> None:
    network, _ = load_safetensors(tiny_model)
    images = torch.rand(1, 3, 150, 230)
    with torch.no_grad():
        whole = network(images)
        tiled = tiled_forward(network, images, tile=64)  # 3x4 tiles, statistics from the full image
        independent = torch.cat([network(images[..., :, :116]), network(images[..., :, 116:])], -1)
    assert (tiled - whole).abs().max() < 1e-5
    assert (independent - whole).abs().max() > 1e-2  # what tiling without shared statistics would give


def test_large_image_tiles_within_the_memory_budget(tiny_model: Path, photo: Image.Image,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(tiny_model, "cpu")
    budget = 200 * 200 * model.runner.bytes_per_pixel(model.loaded)  # pretend only a 200x200 image fits
    monkeypatch.setattr("stylenet.running.tiling.memory_budget", lambda device: budget)
    seen: list[int] = []
    model.loaded.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[-2] * args[0].shape[-1]))
    image = to_tensor(photo.resize((900, 620), Image.Resampling.BILINEAR)).unsqueeze(0)  # smooth, like a photo
    tile = model.runner.auto_tile(model.loaded, 620, 900)
    assert tile == 256  # the smallest tile we use; 200 px minus the halos would be smaller
    result = model.stylize_tensor(image)
    assert result.shape == image.shape and len(seen) == 1 + 3 * 4  # the statistics pass, then 3x4 tiles
    assert seen[0] <= 200 * 200 and max(seen[1:]) <= (tile + 2 * HALO) ** 2
    with torch.no_grad():
        whole = model.loaded(image)
        independent = torch.cat([torch.cat([model.loaded(image[..., y:y + 256, x:x + 256]) for x in range(0, 900, 256)],
                                           -1) for y in range(0, 620, 256)], -2)

    def seam(images: torch.Tensor) -> float:  # mean jump across the tile borders at x = 256 and 512
        return float(sum((images[..., x] - images[..., x - 1]).abs().mean() for x in (256, 512)) / 2)

    # statistics from a 0.27x thumbnail: near the whole-image result, and no seams where tiles meet
    assert (result - whole).abs().mean() < 0.05
    assert seam(result) < 1.5 * seam(whole) and seam(independent) > 3 * seam(whole), (seam(result), seam(independent))


@pytest.mark.parametrize("fast_ops", [True, False])
def test_an_image_too_large_to_run_whole_is_tiled_with_exact_statistics(
    tiny_model: Path, photo: Image.Image, monkeypatch: pytest.MonkeyPatch, fast_ops: bool,
) -> None:
    """When the half-resolution maps fit but the full-resolution ones do not: the full-resolution layers run in
    tiles, with the whole image's statistics, so the picture is the whole-image one (not a thumbnail's)."""
    from stylenet.models.kinds.transformer import set_fast_ops

    model = load_model(tiny_model, "cpu", "fp32")
    set_fast_ops(model.loaded, fast_ops)
    image = to_tensor(photo.resize((900, 620), Image.Resampling.BILINEAR)).unsqueeze(0)
    channels = model.loaded.channels
    budget = 900 * 620 * 4 * channels * 2  # the staged maps' estimate (STAGED_PER_PIXEL) fits; a whole pass (8) does not
    monkeypatch.setattr("stylenet.running.tiling.memory_budget", lambda device: budget)
    monkeypatch.setattr("stylenet.running.tiling.STAGED_TILE_ELEMENTS", 256 * 256 * channels)  # 256-px tiles
    first_conv = model.loaded.encoder[0][1]
    seen: list[tuple[int, int]] = []
    first_conv.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    result = model.stylize_tensor(image)
    assert seen and max(h * w for h, w in seen) < 500 * 500  # the first layer never saw the whole image
    with torch.no_grad():
        whole = model.loaded(image)
    assert (result - whole).abs().max() < 1e-4  # exact, up to float rounding


def test_tiling_needs_an_eager_model(tiny_model: Path, tmp_path: Path) -> None:
    module, metadata = load_safetensors(tiny_model)
    export_model(module, metadata, tmp_path / "model.pt", "torchscript")
    model = load_model(tmp_path / "model.pt", "cpu")
    with pytest.raises(StylenetError, match="tiling needs the model's weights"):
        model.stylize_tensor(torch.rand(1, 3, 300, 300), tile=128)


def test_devices_and_precisions_are_checked(tiny_model: Path) -> None:
    network, metadata = load_safetensors(tiny_model)
    with pytest.raises(StylenetError, match="fp16 needs a CUDA GPU"):
        StyleModel(network, metadata, "cpu", "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(StylenetError, match="no CUDA GPU"):
            StyleModel(network, metadata, "cuda")
    bf16 = StyleModel(network, metadata, "cpu", "bf16").stylize_tensor(torch.rand(1, 3, 32, 32))
    assert bf16.dtype == torch.float32 and 0 <= bf16.min() and bf16.max() <= 1


def test_torch_hub_loads_a_model_from_the_checkout(tiny_model: Path) -> None:
    from tests.conftest import REPO_ROOT

    model = torch.hub.load(str(REPO_ROOT), "stylenet", str(tiny_model), device="cpu", source="local")
    assert isinstance(model, StyleModel) and model.metadata["style"]["name"] == "tiny"
    assert model.stylize(Image.new("RGB", (20, 20))).size == (20, 20)


def test_to_tensor_round_trip_is_lossless(photo: Image.Image) -> None:
    from stylenet.core.images import to_pil

    assert to_pil(to_tensor(photo)).tobytes() == photo.tobytes()


def test_tampered_metadata_fails_with_one_clear_line(tiny_model: Path, tmp_path: Path) -> None:

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_model), framework="pt") as file:
        state = {name: file.get_tensor(name) for name in file.keys()}
        metadata = json.loads(file.metadata()["stylenet"])
    cases = {
        "huge": ({**metadata, "arguments": {"channels": 10**6, "num_residual_blocks": 1}}, state, "channels must be"),
        "negative": ({**metadata, "arguments": {"channels": 4, "num_residual_blocks": -1}}, state, "num_residual_blocks"),
        "text": ({**metadata, "arguments": "channels=4"}, state, "must be a mapping"),
        "shapes": ({**metadata, "arguments": {"channels": 8, "num_residual_blocks": 1}}, state, "do not match"),
        "nan": (metadata, {**state, "encoder.0.1.bias": state["encoder.0.1.bias"] * float("nan")}, "NaN or infinite"),
    }
    for name, (fields, tensors, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={"stylenet": json.dumps(fields)})
        with pytest.raises(StylenetError, match=f"weights do not fit the network they describe.*{message}") as error:
            load_model(path, "cpu")
        assert "\n" not in str(error.value), name


# what each device's allocator raises: CUDA's OutOfMemoryError, and on a CPU a plain RuntimeError (torch 2.14)
ALLOCATION_FAILURES = {
    "cuda": lambda: torch.OutOfMemoryError("CUDA out of memory (simulated)"),
    "cpu": lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                                "you tried to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)"),
}


@pytest.mark.parametrize("allocator", list(ALLOCATION_FAILURES))
def test_out_of_memory_falls_back_to_tiles(tiny_model: Path, photo: Image.Image, allocator: str) -> None:
    def run_out_of_memory_over(pixels: int) -> StyleModel:
        def fail_when_large(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if args[0].shape[-2] * args[0].shape[-1] > pixels:
                raise ALLOCATION_FAILURES[allocator]()

        model = load_model(tiny_model, "cpu")
        hooks.append(model.loaded.encoder[0][1].register_forward_pre_hook(fail_when_large))  # full resolution, whole or tiled
        return model

    hooks: list[torch.utils.hooks.RemovableHandle] = []
    image = photo.resize((600, 460), Image.Resampling.BILINEAR)
    model = run_out_of_memory_over(400 * 400)  # the whole image and 300-px tiles fail; 256-px tiles fit
    result = model.stylize(image, stroke_size=1)  # the network at the photo's size (not also a copy's, for strokes)
    assert result.size == image.size
    # what one call met does not linger: with memory back, the next call runs the same photo whole, in one pass
    hooks.pop().remove()
    passes: list[torch.Size] = []
    model.loaded.encoder[0][1].register_forward_pre_hook(lambda module, args: passes.append(args[0].shape))
    model.stylize(image, stroke_size=1)
    assert len(passes) == 1
    with pytest.raises(StylenetError, match="out of memory on cpu for a 600x460 image"):
        run_out_of_memory_over(100 * 100).stylize(image, stroke_size=1)  # not even the smallest tiles fit: one line


def test_out_of_memory_on_the_staged_path_retries_on_the_thumbnail_path(
    tiny_model: Path, photo: Image.Image, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Staged tiling keeps whole half-resolution maps whatever its tile: a smaller tile cannot help it, the
    thumbnail path's tiles can."""
    import stylenet.running.tiling

    def staged_runs_out(*args: object, **kwargs: object) -> torch.Tensor:
        raise ALLOCATION_FAILURES["cpu"]()

    monkeypatch.setattr(stylenet.running.tiling, "staged_forward", staged_runs_out)
    image = photo.resize((600, 460), Image.Resampling.BILINEAR)
    model = load_model(tiny_model, "cpu", "fp32")
    result = model.stylize(image, tile=512, stroke_size=1)
    assert result.size == image.size
    expected = load_model(tiny_model, "cpu", "fp32").stylize(image, tile=0, stroke_size=1)
    assert np.abs(np.asarray(result, int) - np.asarray(expected, int)).mean() < 3  # the same picture, in tiles


def test_an_error_that_is_not_about_memory_is_not_retried(tiny_model: Path, photo: Image.Image) -> None:
    model = load_model(tiny_model, "cpu")
    calls = []

    def broken(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        calls.append(args[0].shape)
        raise RuntimeError("shape mismatch (simulated)")

    model.loaded.encoder[0][1].register_forward_pre_hook(broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        model.stylize(photo.resize((64, 48)))
    assert len(calls) == 1


def test_a_bare_state_dict_of_a_clamp_network_reloads_as_clamp_and_older_clamp_files_still_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from stylenet.models.kinds.transformer import TransformerNet

    torch.manual_seed(0)
    network = TransformerNet(4, 1, output="clamp").eval()
    torch.save(network.state_dict(), tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth", "cpu", "fp32")
    assert loaded.metadata["arguments"]["output"] == "clamp" and loaded.loaded.output == "clamp"
    images = torch.rand(1, 3, 40, 48) * 3 - 1  # the clamp shows where a sigmoid would not
    with torch.no_grad():
        assert torch.equal(loaded.loaded(images), network(images))
    # a clamp model file from before the marker existed: its metadata says clamp, its tensors lack the marker
    old = {name: tensor for name, tensor in network.state_dict().items() if name != "clamp_output"}
    metadata = {"architecture": "transformer", "arguments": network.config()}
    save_file(old, str(tmp_path / "old.safetensors"), metadata={"stylenet": json.dumps(metadata)})
    assert load_model(tmp_path / "old.safetensors", "cpu", "fp32").loaded.output == "clamp"
