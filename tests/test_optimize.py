"""stylenet optimize: pixel optimization with the training's loss network and losses, on real images."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylenet import StylenetError
from stylenet.core.images import open_image, resize_long_side
from stylenet.models.losses import PerceptualLoss
from stylenet.running.optimize import OptimizeSettings, optimize
from tests.conftest import PYTHON


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> Image.Image:
    return resize_long_side(open_image(data_dir / "content_test" / "fruits.jpg"), 96)


@pytest.fixture(scope="module")
def paintings(data_dir: Path) -> list[Image.Image]:
    return [open_image(data_dir / "styles" / f"{name}.jpg") for name in ("starry_night", "great_wave")]


def tiny(**changes: object) -> OptimizeSettings:
    return OptimizeSettings(**{"size": 64, "steps": 30, **changes})


def first_and_last_totals(photo: Image.Image, style: Image.Image, settings: OptimizeSettings) -> tuple[float, float]:
    """The total loss at the first and the last evaluation, recorded by wrapping PerceptualLoss.forward."""
    totals: list[float] = []
    original = PerceptualLoss.forward

    def recording(self: PerceptualLoss, *args: object) -> dict:
        terms = original(self, *args)
        totals.append(terms["total"].item())
        return terms

    PerceptualLoss.forward = recording
    try:
        optimize(photo, [style], settings=settings)
    finally:
        PerceptualLoss.forward = original
    return totals[0], totals[-1]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_total_loss_falls_by_a_large_factor(photo: Image.Image, paintings: list[Image.Image], optimizer: str) -> None:
    first, last = first_and_last_totals(photo, paintings[0], tiny(optimizer=optimizer, steps=40))
    assert last < first / 4, (first, last)


def test_result_changes_the_photo_and_a_seed_repeats_it(photo: Image.Image, paintings: list[Image.Image]) -> None:
    one, summary = optimize(photo, paintings[:1], settings=tiny(init="noise", seed=3))
    two, _ = optimize(photo, paintings[:1], settings=tiny(init="noise", seed=3))
    other, _ = optimize(photo, paintings[:1], settings=tiny(init="noise", seed=4))
    assert np.array_equal(np.asarray(one), np.asarray(two))
    assert not np.array_equal(np.asarray(one), np.asarray(other))
    assert summary["steps"] == 30 and summary["seconds"] > 0 and {"content", "style", "tv", "total"} <= set(summary)


def test_multi_scale_gives_the_requested_size(photo: Image.Image, paintings: list[Image.Image]) -> None:
    image, summary = optimize(photo, paintings[:1], settings=tiny(scales=[48, 80], steps=10))
    assert max(image.size) == 80 and image.size == resize_long_side(photo, 80).size
    assert summary["steps"] == 10 + 5  # the second scale gets half the steps


def test_blend_weights_one_zero_equal_the_single_style(photo: Image.Image, paintings: list[Image.Image]) -> None:
    single, _ = optimize(photo, paintings[:1], settings=tiny(steps=10))
    blended, _ = optimize(photo, paintings, [1.0, 0.0], settings=tiny(steps=10))
    mixed, _ = optimize(photo, paintings, [0.5, 0.5], settings=tiny(steps=10))
    assert np.array_equal(np.asarray(single), np.asarray(blended))
    assert not np.array_equal(np.asarray(single), np.asarray(mixed))


def test_preserve_color_keeps_the_photos_chroma(photo: Image.Image, paintings: list[Image.Image]) -> None:
    plain, _ = optimize(photo, paintings[:1], settings=tiny(steps=10))
    kept, _ = optimize(photo, paintings[:1], settings=tiny(steps=10, preserve_color=True))
    reference = np.asarray(resize_long_side(photo, 64).convert("YCbCr"), dtype=np.float32)[..., 1:]
    chroma = lambda image: np.asarray(image.convert("YCbCr"), dtype=np.float32)[..., 1:]  # noqa: E731
    assert np.abs(chroma(kept) - reference).mean() < 2.0 < np.abs(chroma(plain) - reference).mean()


@pytest.mark.parametrize(
    "changes,blend,message",
    [
        ({"weights": {"content_weight": 0.0, "style_weight": 0.0}}, None, "both 0: nothing to optimize"),
        ({"weights": {"content_weight": 1.0, "temporal_weight": 1.0}}, None,
         "stylenet optimize weighs content_weight, style_weight, tv_weight"),
        ({}, [1.0], "--style-blend has 1 weights for 2 style image"),
        ({}, [0.0, 0.0], "not all 0"),
        ({"optimizer": "sgd"}, None, "--optimizer sgd: valid are lbfgs, adam"),
    ],
)
def test_bad_settings_fail_clearly(
    photo: Image.Image, paintings: list[Image.Image], changes: dict, blend: list[float] | None, message: str
) -> None:
    with pytest.raises(StylenetError, match=message):
        optimize(photo, paintings, blend, settings=tiny(**changes))


def test_command_writes_the_image_and_intermediates(data_dir: Path, tmp_path: Path) -> None:
    stylenet = str(Path(PYTHON).parent / "stylenet")
    output = tmp_path / "out.png"
    result = subprocess.run(
        [stylenet, "optimize", str(data_dir / "content_test" / "orange.jpg"), str(data_dir / "styles" / "udnie.jpg"),
         "-o", str(output), "--size", "64", "--steps", "6", "--save-every", "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert max(Image.open(output).size) == 64
    assert (tmp_path / "out_step0003.png").is_file() and (tmp_path / "out_step0006.png").is_file()
    assert result.stdout.startswith(f"wrote {output} (") and "6 steps in" in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.jpg", "STYLE"], "error: content image not found: missing.jpg"),
        (["NOTIMAGE", "STYLE"], "error: content image is not a readable image"),
        (["CONTENT", "STYLE", "--content-weight", "0", "--style-weight", "0"], "error: --content-weight and --style-weight are both 0"),
    ],
)
def test_command_errors_are_one_line_exit_2(data_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "note.jpg").write_text("not an image")
    names = {"CONTENT": str(data_dir / "content_test" / "orange.jpg"), "STYLE": str(data_dir / "styles" / "udnie.jpg"),
             "NOTIMAGE": str(tmp_path / "note.jpg")}
    command = [str(Path(PYTHON).parent / "stylenet"), "optimize", *[names.get(a, a) for a in args], "-o",
               str(tmp_path / "out.png"), "--size", "64", "--steps", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message) and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
