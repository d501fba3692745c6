"""Property-based fuzzing of image loading and stylizing: random bytes and odd-but-valid images.

Examples are derandomized (the same every run, so CI is repeatable) and bounded; set HYPOTHESIS_EXPLORE=1 for
fresh random examples while hunting bugs locally.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch
from PIL import Image

from stylenet import StylenetError
from stylenet.training.data import ImageFolderDataset
from stylenet.core.images import load_image
from stylenet.running.inference import StyleModel, load_model

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's note on some generated TIFFs

EXPLORE = os.environ.get("HYPOTHESIS_EXPLORE") == "1"
FUZZ = settings(
    deadline=None, derandomize=not EXPLORE, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The first bytes of formats Pillow decodes, so random tails reach the decoders and not just the sniffing.
MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM",
          b"II*\x00", b"MM\x00*", b"P6\n", b"\x00\x00\x01\x00"]


@settings(FUZZ, max_examples=300)
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=600))
def test_random_bytes_load_or_fail_with_one_clear_error(tmp_path: Path, magic: bytes, tail: bytes) -> None:
    path = tmp_path / "fuzz.img"
    path.write_bytes(magic + tail)
    try:
        image = load_image(path, "input", keep_alpha=True)
    except StylenetError as error:
        assert "\n" not in str(error)
    else:
        assert image.mode in ("RGB", "RGBA") and min(image.size) >= 1


@settings(FUZZ, max_examples=60)
@given(tail=st.binary(min_size=1, max_size=400))
def test_random_bytes_in_a_dataset_are_skipped(tmp_path: Path, tail: bytes) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + tail)
    dataset = ImageFolderDataset([bad, good], image_size=32)
    sample = dataset[0]
    try:  # the rare tail that makes a readable JPEG is served as itself
        load_image(bad, "input")
    except StylenetError:  # else the good photo is served in the broken one's place
        green = torch.tensor([10, 200, 30]) / 255
        assert torch.allclose(sample.mean(dim=(1, 2)), green, atol=0.03), sample.mean(dim=(1, 2))
    assert sample.shape == (3, 32, 32)


FORMATS = {  # the modes each format can store
    "PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"},
    "JPEG": {"L", "RGB", "CMYK"},
    "GIF": {"L", "P", "RGB"},
    "WEBP": {"RGB", "RGBA"},
    "TIFF": {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"},
    "BMP": {"1", "L", "P", "RGB"},
}


@st.composite
def odd_images(draw: st.DrawFn) -> tuple[bytes, tuple[int, int], str]:
    """(file bytes, size, format) for an image of an odd mode and size, sometimes animated or transparent."""
    image_format = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(sorted(FORMATS[image_format])))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    pixels = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    if mode in ("I;16", "I", "F"):  # 16-bit greyscale, and the 32-bit modes made from it
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
        image = image if mode == "I;16" else image.convert(mode)
    else:
        image = Image.fromarray(pixels).convert(mode)
    save_args: dict = {}
    if mode == "P" and draw(st.booleans()):
        save_args["transparency"] = 0
    frames = draw(st.integers(1, 3)) if image_format in ("GIF", "WEBP") else 1
    if frames > 1:
        save_args.update(save_all=True, append_images=[image.transpose(Image.Transpose.ROTATE_180)] * (frames - 1))
    buffer = io.BytesIO()
    image.save(buffer, image_format, **save_args)
    return buffer.getvalue(), size, image_format


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> StyleModel:
    return load_model(tiny_model, "cpu")


@settings(FUZZ, max_examples=60)
@given(case=odd_images())
def test_odd_valid_images_stylize_at_their_own_size(tmp_path: Path, model: StyleModel,
                                                    case: tuple[bytes, tuple[int, int], str]) -> None:
    data, size, image_format = case
    path = tmp_path / f"odd.{image_format.lower()}"
    path.write_bytes(data)
    image = load_image(path, "input", keep_alpha=True)
    assert image.size == size
    result = model.stylize(image)
    assert result.size == size and result.mode == image.mode
    if image.mode == "RGBA":  # the transparency carried through unchanged
        assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(image.getchannel("A")))
    if size[0] * size[1] >= 64:  # stylized, not passed through (one pixel may land near its own colour by chance)
        photo = np.asarray(image.convert("RGB"), dtype=float)
        assert np.abs(np.asarray(result.convert("RGB"), dtype=float) - photo).mean() > 1
