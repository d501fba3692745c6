"""--stroke-size: larger values paint lower-frequency strokes, the default keeps the working size's look on a
large photo, a photo no larger than the working size is painted as before, and every entry point takes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.cli import main
from stylenet.core.errors import StylenetError
from stylenet.evaluation.look import change_frequency, sharpness
from stylenet.running.inference import load_model
from stylenet.running.options import StylizeOptions


@pytest.fixture(scope="module")
def model():
    return load_model("starry_night", "cpu", "fp32")


@pytest.fixture(scope="module")
def large(data_dir: Path) -> Image.Image:
    """A photo at twice the model's working size."""
    return Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").resize((512, 512), Image.Resampling.LANCZOS)


def test_larger_stroke_sizes_paint_at_lower_frequencies(model, large: Image.Image) -> None:
    """What a stroke size changes in the network's own painting sits at lower frequencies the larger it is."""
    native = model.stylize(large, stroke_size=1)
    frequencies = [change_frequency(model.stylize(large, stroke_size=size), native) for size in (0.5, 2, 4)]
    assert frequencies[0] > 1.5 * frequencies[1] > 1.5 * 1.5 * frequencies[2], frequencies


@pytest.mark.parametrize("stroke", [2.0, 4.0])
def test_a_stroke_size_s_result_seen_s_times_smaller_is_the_painting_at_that_size(model, large: Image.Image, stroke: float) -> None:
    """Strokes S times larger: the result's coarse picture (its low frequencies, seen at 1/S of its size) is the
    network's painting of the photo at 1/S of its size, which the native result's coarse picture is not."""
    side = round(512 / stroke)
    painted_smaller = np.asarray(model.stylize(large, size=side, stroke_size=1), float)
    seen_smaller = lambda result: np.asarray(result.resize((side, side), Image.Resampling.LANCZOS), float)  # noqa: E731
    apart = {size: np.abs(seen_smaller(model.stylize(large, stroke_size=size)) - painted_smaller).mean() for size in (1, stroke)}
    assert apart[stroke] < 0.5 * apart[1], apart


def test_the_default_keeps_the_working_size_look_and_stays_sharp(model, large: Image.Image) -> None:
    working = model.stylize(large, size=model.working_size)
    default, native = model.stylize(large), model.stylize(large, stroke_size=1)
    apart = lambda result: np.abs(np.asarray(result.resize(working.size, Image.Resampling.LANCZOS), float)  # noqa: E731
                                  - np.asarray(working, float)).mean()
    assert apart(default) < 0.6 * apart(native)  # scaled back, the default is the working-size picture; 1 is not
    assert sharpness(default, working) > 2  # and it is not the working-size result upscaled
    small = large.resize((200, 200))  # no larger than the working size: painted as before
    assert np.array_equal(np.asarray(model.stylize(small)), np.asarray(model.stylize(small, stroke_size=1)))


def test_the_tensor_api_paints_natively_unless_asked(model) -> None:
    images = torch.rand(1, 3, 300, 300)
    assert torch.equal(model.stylize_tensor(images), model.stylize_tensor(images, stroke_size=1))
    assert not torch.equal(model.stylize_tensor(images, stroke_size=None), model.stylize_tensor(images))


@pytest.mark.parametrize("value", [0.0, -1.0, 100.0])
def test_a_stroke_size_out_of_range_is_one_line(value: float, model, large: Image.Image) -> None:
    with pytest.raises(StylenetError, match=f"--stroke-size {value}: must be between 0.25 and 64"):
        StylizeOptions(stroke_size=value)
    with pytest.raises(StylenetError, match="--stroke-size"):
        model.stylize(large, stroke_size=value)


def test_stylize_and_a_video_take_the_stroke_size(tmp_path: Path, data_dir: Path) -> None:
    photo = data_dir / "content_test" / "fruits.jpg"
    for size in ("1", "2"):
        main(["stylize", str(photo), "--model", "starry_night", "--size", "200", "--stroke-size", size,
              "-o", str(tmp_path / f"s{size}.png"), "--precision", "fp32", "--backend", "eager"])
    one, two = (np.asarray(Image.open(tmp_path / f"s{size}.png"), float) for size in ("1", "2"))
    assert one.shape == two.shape and np.abs(one - two).mean() > 3

    from stylenet.running.video import stylize_frames

    frame = np.asarray(Image.open(photo).convert("RGB").resize((200, 150)))
    frames = {size: stylize_frames(load_model("starry_night", "cpu", "fp32"), [frame], StylizeOptions(stroke_size=size))[0]
              for size in (1.0, 2.0)}
    assert np.abs(frames[1.0].astype(float) - frames[2.0]).mean() > 3
