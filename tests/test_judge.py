"""`stylenet eval`: the judge and its Gatys curve behave, artifacts are caught, the cache is reused, every model
kind and file format is judged. Never a trained model's quality number: the models here are random or tiny."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.core.errors import StylenetError
from stylenet.core.images import load_image, resize_long_side
from stylenet.evaluation.judge import Curve, Judge, artifacts, evaluate, reference_curve
from tests.conftest import PYTHON

ITERATIONS = (3, 8, 15)  # a short curve: enough to see it fall


@pytest.fixture(scope="module")
def painting(data_dir: Path) -> Path:
    return data_dir / "styles" / "starry_night.jpg"


@pytest.fixture(scope="module")
def photo_path(data_dir: Path) -> Path:
    return data_dir / "content_test" / "fruits.jpg"


@pytest.fixture(scope="module")
def judge(painting: Path) -> Judge:
    return Judge(load_image(painting), 48)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def curve(photo_path: Path, painting: Path, judge: Judge, cache: Path) -> Curve:
    return reference_curve(photo_path, painting, 48, judge, cache, ITERATIONS)[0]


def test_a_gatys_result_scores_better_than_the_photo(curve: Curve, photo_path: Path, judge: Judge) -> None:
    assert curve.iterations == [0, *ITERATIONS]
    totals = [terms["total"] for terms in curve.terms]
    assert totals[-1] < 0.7 * totals[0] and curve.terms[0]["content"] == 0  # the photo: no content error
    photo = resize_long_side(load_image(photo_path), 48)
    assert curve.placement(judge(photo, photo)["total"]) == (0.0, "no better than the photo")
    painted = judge(curve.image, photo)
    assert painted["style"] < 0.5 * curve.terms[0]["style"] and painted["content"] < curve.lost_threshold()
    middle = (totals[1] * totals[2]) ** 0.5  # halfway between two points, in log
    assert ITERATIONS[0] < curve.placement(middle)[0] < ITERATIONS[1]


def test_the_style_term_splits_by_layer(curve: Curve, photo_path: Path, judge: Judge) -> None:
    photo = resize_long_side(load_image(photo_path), 48)
    for image in (photo, curve.image):
        layers = judge.style_by_layer(image)
        assert list(layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
        assert sum(layers.values()) == pytest.approx(judge(image, photo)["style"], rel=1e-4)
    before, after = judge.style_by_layer(photo), judge.style_by_layer(curve.image)
    assert after["relu1_1"] < before["relu1_1"]  # Gatys paints the painting's colours and fine texture first


def test_placement_reads_the_best_so_far_and_never_scores_a_nan() -> None:
    image = Image.new("RGB", (8, 8))
    rising = Curve([0, 10, 25, 50], [{"total": 10.0}, {"total": 5.0}, {"total": 2.0}, {"total": 3.0}], image)
    assert 10 < rising.placement(2.5)[0] < 25  # worse than @25, though the curve ends at 3
    assert rising.placement(1.0) == (50.0, "beyond 50") and rising.placement(11.0) == (0.0, "no better than the photo")
    placement, label = rising.placement(float("nan"))
    assert label == "n/a" and placement != placement


def test_the_reference_is_cached_by_photo_and_size_and_a_damaged_entry_is_redone(
    curve: Curve, photo_path: Path, painting: Path, judge: Judge, cache: Path, data_dir: Path,
) -> None:
    again, cached = reference_curve(photo_path, painting, 48, judge, cache, ITERATIONS)
    assert cached and again.terms == curve.terms
    assert not reference_curve(data_dir / "content_test" / "baboon.jpg", painting, 48, judge, cache, ITERATIONS)[1]
    assert not reference_curve(photo_path, painting, 40, Judge(load_image(painting), 40), cache, ITERATIONS)[1]
    for record in cache.rglob("*.json"):
        record.write_text("{not json")
    redone, cached = reference_curve(photo_path, painting, 48, judge, cache, ITERATIONS)
    assert not cached and redone.iterations == curve.iterations


def test_a_checkerboard_a_dark_border_and_a_tint_are_measured(photo_path: Path) -> None:
    photo = resize_long_side(load_image(photo_path), 128)
    pixels = np.asarray(photo, dtype=np.float32)
    rows, columns = np.indices(pixels.shape[:2])
    checkered = pixels + 20.0 * np.where((rows // 2 + columns // 2) % 2, 1, -1)[..., None]  # period 4
    framed = pixels.copy()
    framed[:6], framed[-6:], framed[:, :6], framed[:, -6:] = 0, 0, 0, 0
    image = lambda array: Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))  # noqa: E731
    clean = artifacts(photo, photo)
    assert clean["checkerboard"] == pytest.approx(1.0) and clean["border"] == 0 and clean["colour_shift"] == 0
    assert artifacts(image(checkered), photo)["checkerboard"] > 3
    assert artifacts(image(framed), photo)["border"] > 20
    assert artifacts(image(pixels + [30, 0, 0]), photo)["colour_shift"] == pytest.approx(30, abs=1.5)


def test_an_output_that_erases_the_photo_is_flagged(curve: Curve, photo_path: Path, painting: Path, judge: Judge) -> None:
    photo = resize_long_side(load_image(photo_path), 48)
    erased = resize_long_side(load_image(painting), 48).resize(photo.size)  # the painting itself: all style, no photo
    blank = Image.new("RGB", photo.size, (128, 128, 128))
    tinted = Image.fromarray((np.asarray(photo, dtype=np.float32) * [0.6, 0.8, 1.0]).astype(np.uint8))
    assert judge(erased, photo)["content"] > curve.lost_threshold() and judge(blank, photo)["content"] > curve.lost_threshold()
    assert judge(curve.image, photo)["content"] < curve.lost_threshold() and judge(tinted, photo)["content"] < curve.lost_threshold()


def test_bad_inputs_are_one_line_errors(tiny_model: Path, tmp_path: Path, data_dir: Path) -> None:
    photos = data_dir / "content_test"
    with pytest.raises(StylenetError, match="no images there"):
        evaluate([tiny_model], tmp_path)
    with pytest.raises(StylenetError, match="--photos .*missing.jpg: no such folder or image file"):
        evaluate([tiny_model], [photos, tmp_path / "missing.jpg"])
    with pytest.raises(StylenetError, match="names no painting: pass --style-image PATH"):
        evaluate([tiny_model], photos)  # its metadata names no painting file
    with pytest.raises(StylenetError, match="--size 16: must be at least 32"):
        evaluate([tiny_model], photos, size=16)
    with pytest.raises(StylenetError, match="give one or more model files"):
        evaluate([], photos)
    (tmp_path / "wide").mkdir()
    Image.new("RGB", (640, 20), (90, 120, 40)).save(tmp_path / "wide" / "panorama.png")
    with pytest.raises(StylenetError, match="panorama.png: 64x2 at --size 64; the judge needs a short side of 16 px"):
        evaluate([tiny_model], tmp_path / "wide", style_image=data_dir / "styles" / "udnie.jpg", size=64)
    (tmp_path / "report").write_text("a file")
    with pytest.raises(StylenetError, match="is a file; give a folder"):
        evaluate([tiny_model], photos, output=tmp_path / "report")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """Tiny random models of every kind, with the metadata training writes; the single-style one also as ONNX."""
    from stylenet.models.export import export_model, save_safetensors
    from stylenet.models.kinds.adain import ENCODER_LAYERS, AdaINNet
    from stylenet.models.kinds.multistyle import MultiStyleTransformerNet
    from stylenet.models.kinds.transformer import TransformerNet
    from stylenet.models.loss_network import LossNetwork
    from stylenet.models.modelfile import model_metadata

    folder, styles = tmp_path_factory.mktemp("models"), data_dir / "styles"
    torch.manual_seed(0)
    single = TransformerNet(4, 1)
    save_safetensors(single, model_metadata(single, style={"name": "starry_night", "image": str(styles / "starry_night.jpg")}),
                     folder / "single.safetensors")
    export_model(single, model_metadata(single, style={"name": "starry_night", "image": str(styles / "starry_night.jpg")}),
                 folder / "single.onnx", "onnx")
    multi = MultiStyleTransformerNet(["great_wave", "starry_night"], 4, 1)
    paintings = [str(styles / "great_wave.jpg"), str(styles / "starry_night.jpg")]
    save_safetensors(multi, model_metadata(multi, style={"names": multi.styles, "images": paintings}), folder / "multi.safetensors")
    adain = AdaINNet(8, "caffe", LossNetwork("vgg19", "caffe", ENCODER_LAYERS).conv_state())
    save_safetensors(adain, model_metadata(adain, style={"name": "any (--style-image)"}), folder / "adain.safetensors")
    return {"single": folder / "single.safetensors", "onnx": folder / "single.onnx",
            "multi": folder / "multi.safetensors", "adain": folder / "adain.safetensors"}


@pytest.mark.slow
def test_eval_judges_every_kind_and_format_and_writes_its_report(
    models: dict[str, Path], tmp_path: Path, data_dir: Path, cache: Path,
) -> None:
    """One reference curve (one photo, one painting, 32 px), computed once and then read from the cache (the
    module's: the tests below judge the same photo and painting at this size, and read it)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "fruits.jpg").write_bytes((data_dir / "content_test" / "fruits.jpg").read_bytes())
    common = ["--size", "32", "--cache-dir", str(cache)]
    stylenet = str(Path(PYTHON).parent / "stylenet")
    runs = {  # --photos takes folders or image files
        "single": [str(models["single"]), str(models["onnx"]), "--photos", str(photos), "--precision", "fp32"],  # as ONNX runs
        "multi": [str(models["multi"]), "--style", "starry_night", "--photos", str(photos / "fruits.jpg")],
        "adain": [str(models["adain"]), "--style-image", str(data_dir / "styles" / "starry_night.jpg"), "--photos", str(photos)],
    }
    for name, arguments in runs.items():
        done = subprocess.run([stylenet, "eval", *arguments, *common, "-o", str(tmp_path / name)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "(median of 1 photo); content" in done.stdout
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["judge"] == "v1" and report["painting"].endswith("starry_night.jpg")
        assert report["curves"]["fruits.jpg"]["cached"] == (name != "single")  # computed by the first run only
        for model in report["models"]:
            assert model["photos"][0]["placement_label"] and model["metadata"]["architecture"] in ("transformer", "multistyle", "adain")
        markdown = (tmp_path / name / "report.md").read_text()
        assert markdown.startswith("# stylenet eval (judge v1)") and "| Gatys@200 (the reference) | 200 |" in markdown
        grid = Image.open(tmp_path / name / "grid.jpg")
        assert grid.size[0] > grid.size[1] * (len(report["models"]) + 2)  # photo | models | Gatys | painting
    single = json.loads((tmp_path / "single" / "report.json").read_text())["models"]
    assert single[0]["photos"][0]["total"] == pytest.approx(single[1]["photos"][0]["total"], rel=1e-3)  # ONNX = eager


@pytest.mark.slow  # seconds of end-to-end work: make test runs it, test-fast stays under 3 min
def test_multistyle_and_adain_need_their_style_to_be_judged(models: dict[str, Path], data_dir: Path) -> None:
    photos = data_dir / "content_test"
    with pytest.raises(StylenetError, match="any-style model takes any painting: pass --style-image"):
        evaluate([models["adain"]], photos)
    with pytest.raises(StylenetError, match="the models name different paintings"):
        evaluate([models["single"], models["multi"]], photos, style="great_wave")
    with pytest.raises(StylenetError, match="judge one of this model's styles"):
        evaluate([models["multi"]], photos, style="starry_night=0.5,great_wave=0.5")


@pytest.mark.slow  # two evals of one photo at 32 px
def test_a_report_folder_inside_the_photos_is_never_judged_however_the_paths_are_written(
    tiny_model: Path, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, cache: Path,
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "fruits.jpg").write_bytes((data_dir / "content_test" / "fruits.jpg").read_bytes())  # the cached curve's
    monkeypatch.chdir(tmp_path)
    common = {"style_image": data_dir / "styles" / "starry_night.jpg", "size": 32, "cache": cache}
    for photo_folder, output in (("photos", "photos/eval"), (photos, "photos/eval"), ("photos", photos / "eval")):
        report = evaluate([tiny_model], photo_folder, output=output, **common)
        assert (photos / "eval" / "grid.jpg").is_file()
        assert [row["photo"] for row in report["models"][0]["photos"]] == ["fruits.jpg"]  # not eval/grid.jpg


@pytest.mark.slow  # two paintings x one photo at 32 px
def test_an_any_style_model_is_judged_on_each_painting_and_placed_by_the_median(
    models: dict[str, Path], tmp_path: Path, data_dir: Path, cache: Path,
) -> None:
    from stylenet.evaluation.judge import evaluate_paintings

    paintings = [data_dir / "styles" / "starry_night.jpg", data_dir / "styles" / "udnie.jpg"]
    photo = data_dir / "content_test" / "fruits.jpg"
    result = evaluate_paintings([models["adain"]], paintings, [photo], size=32, output=tmp_path / "any",
                                names=["adain"], cache=cache)
    entry = result["models"]["adain"]
    assert list(entry["paintings"]) == ["starry_night", "udnie"] and entry["photos"] == 2
    lower = min(entry["paintings"].values(), key=lambda row: row["placement"])  # of two, the lower median
    assert entry["placement_label"] == lower["placement_label"]
    for painting in ("starry_night", "udnie"):  # each painting's own report and grid
        assert (tmp_path / "any" / painting / "report.json").is_file() and (tmp_path / "any" / painting / "grid.jpg").is_file()
    table = (tmp_path / "any" / "summary.md").read_text()
    assert "| `adain` |" in table and "udnie" in table and json.loads((tmp_path / "any" / "summary.json").read_text())["models"]
