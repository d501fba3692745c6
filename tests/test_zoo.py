"""The ready-made models: every shipped file loads by name in every interface, is what its metadata says, and
stylizes; names and paths resolve as a user expects."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from stylenet.models import zoo
from stylenet.core.errors import StylenetError
from stylenet.running.inference import load_model
from stylenet.models.kinds import get_kind
from tests.conftest import PYTHON, REPO_ROOT, run_env

STYLENET = str(Path(PYTHON).parent / "stylenet")
SHIPPED = zoo.names()
ANY_STYLE = [name for name in SHIPPED if get_kind(zoo.metadata_of(name)["architecture"]).style_input == "style_image"]


def test_stylenet_ships_ready_made_models_within_its_size_budget() -> None:
    assert "starry_night" in SHIPPED and "any" in ANY_STYLE
    # the wheel stays under 30 MB (issues 29 and 36): each any-style model carries its VGG-19 encoder (~7 MB in fp16)
    assert sum(zoo.path_of(name).stat().st_size for name in SHIPPED) < 29e6


def painted(model: object, data: Path) -> object:
    """A ready-made model ready to stylize: an any-style one with a painting it never trained on."""
    if model.model_kind.style_input == "style_image":
        model = model.with_paintings([Image.open(data / "styles" / "udnie.jpg")])
    return model


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_names_its_painting_without_a_path_of_the_machine_that_trained_it(name: str, data_dir: Path) -> None:
    metadata = zoo.metadata_of(name)

    def strings(value: object) -> list[str]:
        if isinstance(value, dict):
            return [text for item in value.values() for text in strings(item)]
        if isinstance(value, list):
            return [text for item in value for text in strings(item)]
        return [value] if isinstance(value, str) else []

    assert not [text for text in strings(metadata) if text.startswith(("/", "~")) or ":\\" in text]
    image = metadata["style"].get("image")
    if image is not None:  # a per-painting model: the painting relative to the data root, and which file it was
        assert image == f"styles/{name}.jpg" and len(metadata["style"]["sha256"]) == 64
        assert (data_dir / image).is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_loads_by_name_matches_its_metadata_and_stylizes(name: str, data_dir: Path) -> None:
    with safe_open(str(zoo.path_of(name)), framework="pt") as file:
        assert {file.get_slice(key).get_dtype() for key in file.keys()} == {"F16"}  # stored at half the bytes
    model = load_model(name, "cpu")
    metadata = model.metadata
    assert metadata["weights"] == "float16" and metadata["eval"]["judge"] == "v1"
    assert metadata["recipe"].startswith("python train.py") and metadata["training"]["seconds"] > 0
    if name in ANY_STYLE:  # judged on the seven held-out paintings: a placement on each
        assert metadata["style"]["name"].startswith("any") and len(metadata["eval"]["per_painting"]) == 7
    else:
        assert metadata["style"]["name"] == name and len(metadata["eval"]["per_photo"]) == len(metadata["eval"]["photos"])
    photo = Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").resize((96, 64))
    stylized = painted(model, data_dir).stylize(photo)
    assert stylized.size == photo.size
    change = np.abs(np.asarray(stylized, dtype=np.float32) - np.asarray(photo, dtype=np.float32))
    assert change.mean() > 10  # painted, not passed through


def test_a_file_path_wins_over_a_name_and_unknown_names_list_the_shipped_ones(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(tiny_model, tmp_path / "starry_night")
    monkeypatch.chdir(tmp_path)
    assert load_model("starry_night", "cpu").metadata["style"]["name"] == "tiny"  # the file here, not the shipped one
    with pytest.raises(StylenetError, match="no ready-made model named 'starry_nite'; stylenet ships .*starry_night"):
        load_model("starry_nite", "cpu")
    with pytest.raises(StylenetError, match="model not found: runs/x/model.safetensors"):
        load_model("runs/x/model.safetensors", "cpu")
    with pytest.raises(StylenetError, match="is a folder, not a model file"):
        load_model(tmp_path, "cpu")


@pytest.mark.slow  # seconds of end-to-end work: make test runs it, test-fast stays under 3 min
def test_every_command_takes_a_name(tmp_path: Path, data_dir: Path) -> None:
    listing = subprocess.run([STYLENET, "models"], capture_output=True, text=True, env=run_env(), timeout=120)
    assert listing.returncode == 0 and all(name in listing.stdout for name in SHIPPED)
    rows = [json.loads(line) for line in subprocess.run([STYLENET, "models", "--json"], capture_output=True, text=True,
                                                        env=run_env(), timeout=120).stdout.splitlines()]
    assert [row["name"] for row in rows] == SHIPPED and all(row["placement"] != "not evaluated" for row in rows)
    photo = tmp_path / "photo.png"
    Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").resize((64, 48)).save(photo)
    stylize = subprocess.run([STYLENET, "stylize", str(photo), "--model", "starry_night", "-o", str(tmp_path / "out.png")],
                             capture_output=True, text=True, env=run_env(), timeout=120)
    assert stylize.returncode == 0, stylize.stderr
    assert Image.open(tmp_path / "out.png").size == (64, 48)
    wrong = subprocess.run([STYLENET, "stylize", str(photo), "--model", "starry_nite"], capture_output=True, text=True,
                           env=run_env(), timeout=120)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    assert "starry_night" in wrong.stderr
    export = subprocess.run([STYLENET, "export", "starry_night", "--format", "torchscript", "-o", str(tmp_path / "s.pt")],
                            capture_output=True, text=True, env=run_env(), timeout=300, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert load_model(tmp_path / "s.pt", "cpu").metadata["eval"]["judge"] == "v1"  # the metadata travels


def test_torch_hub_has_an_entry_point_per_shipped_model(data_dir: Path) -> None:
    for name in SHIPPED:
        model = torch.hub.load(str(REPO_ROOT), name, device="cpu", source="local")
        assert model.metadata["style"]["name"] == name or name in ANY_STYLE
        assert painted(model, data_dir).stylize(Image.new("RGB", (24, 16), (120, 80, 40))).size == (24, 16)


@pytest.mark.slow  # seconds of end-to-end work
def test_the_first_minute_a_painting_alone_uses_the_shipped_any_style_model(tmp_path: Path, data_dir: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").resize((64, 48)).save(photo)
    painting = data_dir / "styles" / "the_scream.jpg"
    done = subprocess.run([STYLENET, "stylize", str(photo), "--style-image", str(painting), "-o", str(tmp_path / "a.png"),
                           "--strength", "0.8", "--preserve-color"], capture_output=True, text=True, env=run_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "a.png").size == (64, 48)
    blend = subprocess.run([STYLENET, "stylize", str(photo), "--style-image", f"{painting}=0.5", "--style-image",
                            str(data_dir / "styles" / "great_wave.jpg") + "=0.5", "-o", str(tmp_path / "b.png")],
                           capture_output=True, text=True, env=run_env(), timeout=120)
    assert blend.returncode == 0, blend.stderr
    neither = subprocess.run([STYLENET, "stylize", str(photo)], capture_output=True, text=True, env=run_env(), timeout=120)
    assert neither.returncode == 2 and "--style-image PAINTING" in neither.stderr and len(neither.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # seconds of end-to-end work: make test runs it, test-fast stays under 3 min
def test_eval_finds_a_models_painting_in_this_machines_data_when_its_training_path_is_gone(
    tiny_model: Path, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model trained elsewhere names a painting path that is not here; eval looks in $STYLENET_DATA/styles/."""
    from stylenet.models.export import save_safetensors
    from stylenet.evaluation.judge import evaluate

    from stylenet.models.modelfile import load_safetensors

    network, metadata = load_safetensors(tiny_model)
    metadata["style"] = {"name": "udnie", "image": "/home/someone/paintings/udnie.jpg"}
    model = save_safetensors(network, metadata, tmp_path / "elsewhere.safetensors")
    data = tmp_path / "data"
    (data / "styles").mkdir(parents=True)
    shutil.copy(data_dir / "styles" / "udnie.jpg", data / "styles" / "udnie.jpg")
    photo = tmp_path / "photo.png"
    Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").save(photo)
    monkeypatch.setenv("STYLENET_DATA", str(data))
    report = evaluate([model], [photo], size=32, cache=tmp_path / "cache")
    assert Path(report["painting"]) == (data / "styles" / "udnie.jpg").resolve()
    monkeypatch.setenv("STYLENET_DATA", str(tmp_path / "empty"))
    with pytest.raises(StylenetError, match="udnie.jpg.* `make data`, or pass --style-image PATH"):
        evaluate([model], [photo], size=32, cache=tmp_path / "cache")
