import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet import StylenetError
from stylenet.training.data import ContentDataModule, find_images
from stylenet.core.images import load_image, open_image, save_image, to_pil, to_tensor


def test_modes_convert_to_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 6), 100).save(tmp_path / "grey.png")
    Image.new("RGBA", (8, 6), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    palette = Image.new("P", (8, 6), 1)
    palette.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    palette.save(tmp_path / "palette.gif", transparency=0)
    Image.fromarray(np.full((6, 8), 65535, dtype=np.uint16)).save(tmp_path / "sixteen.png")
    for name, pixel in [("grey.png", (100, 100, 100)), ("alpha.png", (10, 20, 30)), ("palette.gif", (250, 10, 10)),
                        ("sixteen.png", (255, 255, 255))]:
        image = open_image(tmp_path / name)
        assert image.mode == "RGB" and image.size == (8, 6), name
        assert image.getpixel((3, 3)) == pixel, name
    cmyk = open_image(tmp_path / "cmyk.jpg").getpixel((3, 3))
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60  # CMYK (0, 255, 255, 0) is red


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 10))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = open_image(tmp_path / "rotated.jpg")
    assert upright.size == (10, 20)
    assert upright.getpixel((5, 2))[0] > 200 and upright.getpixel((5, 17))[0] < 50  # white half now on top


def test_tensor_round_trip_and_atomic_save(tmp_path: Path) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8))
    tensor = to_tensor(image)
    assert tensor.shape == (3, 7, 9) and tensor.dtype == torch.float32 and 0 <= tensor.min() <= tensor.max() <= 1
    assert np.array_equal(np.asarray(to_pil(tensor)), np.asarray(image))
    save_image(image, tmp_path / "out" / "x.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "x.png")), np.asarray(image))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.png"]  # no temp file left behind
    with pytest.raises(StylenetError, match="unknown image extension '.xyz'"):
        save_image(image, tmp_path / "x.xyz")


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(StylenetError, match="style.image not found: .*nope.jpg"):
        load_image(tmp_path / "nope.jpg", "style.image")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(StylenetError, match="input is not a readable image: .*text.jpg"):
        load_image(tmp_path / "text.jpg", "input")


def test_find_images_is_recursive_and_skips_other_files(photo_folder: Path) -> None:
    (photo_folder / "notes.txt").write_text("hello")
    found = find_images(photo_folder)
    assert len(found) == 6 and all(path.suffix in {".jpg", ".png", ".webp"} for path in found)


def test_data_module_serves_square_crops(photo_folder: Path) -> None:
    datamodule = ContentDataModule(str(photo_folder), image_size=32, batch_size=4, num_workers=0)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1 and batch.std() > 0.05


def test_broken_files_are_skipped_counted_and_listed(
    photo_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (photo_folder / "empty.jpg").write_bytes(b"")
    (photo_folder / "nested" / "text.png").write_text("this is not a png")
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(photo_folder / "whole.jpg", quality=90)
    good = (photo_folder / "whole.jpg").read_bytes()
    (photo_folder / "whole.jpg").unlink()
    (photo_folder / "truncated.jpg").write_bytes(good[: len(good) // 2])  # header fine, body cut
    datamodule = ContentDataModule(str(photo_folder), image_size=32, batch_size=2, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="stylenet.training.data"):
        files = datamodule.scan()
    assert len(files) == 7 and len(datamodule.skipped) == 2  # truncated.jpg passes the header check
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 unreadable file(s) of 9" in warnings[0]
    datamodule.skipped_log = tmp_path / "skipped.txt"
    datamodule.write_skipped()
    assert {Path(line.split("\t")[0]).name for line in (tmp_path / "skipped.txt").read_text().splitlines()} == {
        "empty.jpg", "text.png"}
    datamodule.setup("fit")
    truncated = files.index(photo_folder / "truncated.jpg")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stylenet.training.data"):
        sample = datamodule.dataset[truncated]  # another photo is served instead
    assert sample.shape == (3, 32, 32)
    assert any("skipping unreadable image" in r.getMessage() and "truncated.jpg" in r.getMessage() for r in caplog.records)
    assert sum(batch.shape[0] for batch in datamodule.train_dataloader()) == 6  # a full epoch, no crash


def test_missing_or_empty_folder_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(StylenetError, match=f"image folder not found: {tmp_path / 'nope'}"):
        ContentDataModule(str(tmp_path / "nope")).scan()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StylenetError, match="holds 0 readable image"):
        ContentDataModule(str(tmp_path / "empty")).scan()


def test_loader_position_survives_a_restart_and_a_changed_worker_count(photo_folder: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    def loader(workers: int):
        datamodule = ContentDataModule(str(photo_folder), image_size=32, batch_size=1, num_workers=workers)
        datamodule.setup("fit")
        return datamodule.train_dataloader()

    torch.manual_seed(0)
    first = loader(0)
    batches = iter(first)
    next(batches), next(batches)
    state = first.state_dict()
    def colours(batches) -> list[list[int]]:  # each photo is one colour: which one (its crop may differ)
        return [batch.mean(dim=(0, 2, 3)).mul(10).round().tolist() for batch in batches]

    rest = colours(batches)
    resumed = loader(0)
    resumed.load_state_dict(state)
    again = colours(resumed)
    assert len(again) == len(rest) == 4  # continues, not from the start
    assert again == rest, (again, rest)  # the same photos in the same order (the README's promise)
    changed = loader(2)
    with caplog.at_level(logging.WARNING, logger="stylenet.training.data"):
        changed.load_state_dict(state)
    assert "starts a new shuffle" in caplog.text and len(list(changed)) == 6
