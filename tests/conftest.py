"""Shared fixtures: the real data beside the repo, config composition, tiny images."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from stylenet.core.paths import data_root
from stylenet.core.hostmemory import keep_freed_memory

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout the tests run in
CONF_DIR = REPO_ROOT / "conf"
keep_freed_memory()  # as train.py and the CLI do, for the tests that train in this process
# what stylenet computes once and keeps (backend verdicts, ONNX exports, reference curves) goes to a fresh folder
# for this test session, inherited by the commands the tests run: never the user's ~/.cache/stylenet
os.environ["STYLENET_CACHE"] = tempfile.mkdtemp(prefix="stylenet-tests-cache-")
atexit.register(shutil.rmtree, os.environ["STYLENET_CACHE"], True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or $STYLENET_DATA): real paintings and photos; tests never download."""
    root = Path(data_root())
    if not (root / "styles" / "starry_night.jpg").is_file():
        pytest.fail(f"test data not found at {root}: run the tests beside ../shared/data or set STYLENET_DATA")
    return root


def compose_config(*overrides: str, run_dir: Path | str = "/tmp/stylenet-unused") -> DictConfig:
    """The real training config, composed as `python train.py OVERRIDES` would (run_dir set explicitly)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"paths.run_dir={run_dir}", *overrides])


def run_env() -> dict[str, str]:
    """Environment for subprocess runs of the real commands."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


PYTHON = sys.executable
TRAIN_PY = str(REPO_ROOT / "train.py")


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """A folder tree of small valid photos of mixed formats and modes."""
    root = tmp_path / "photos"
    (root / "nested" / "deeper").mkdir(parents=True)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]
    for index, colour in enumerate(colours):
        image = Image.new("RGB", (48 + 8 * index, 40), colour)
        folder = root if index < 2 else root / "nested" if index < 4 else root / "nested" / "deeper"
        image.save(folder / f"photo{index}.{['jpg', 'png', 'webp'][index % 3]}")
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrow TransformerNet with random weights, exported as stylenet's .safetensors."""
    import torch

    from stylenet.models.export import save_safetensors
    from stylenet.models.modelfile import model_metadata
    from stylenet.models.kinds.transformer import TransformerNet

    torch.manual_seed(0)
    network = TransformerNet(channels=4, num_residual_blocks=1)
    metadata = model_metadata(network, style={"name": "tiny"}, steps=0)
    return save_safetensors(network, metadata, tmp_path_factory.mktemp("model") / "tiny.safetensors")


def exif_rotated_jpeg(path: Path, size: tuple[int, int] = (40, 24)) -> Image.Image:
    """Write a JPEG stored sideways with EXIF orientation 6 (rotate 90 cw to view); returns the upright image."""
    upright = Image.new("RGB", size, (255, 0, 0))
    upright.paste((0, 0, 255), (0, 0, size[0] // 2, size[1]))  # left half blue, right half red
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)
    return upright


@pytest.fixture(scope="module")
def browser():
    from stylenet.benchmarks.webbench import find_chromium

    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium on this machine: `make install-browser` (apt-get install chromium) to run the page's tests")
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (make install)")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()
