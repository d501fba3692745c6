import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylenet.models.export import save_safetensors
from stylenet.models.modelfile import model_metadata
from stylenet.models.kinds.transformer import TransformerNet

SCRIPT = Path(__file__).parent.parent / "scripts" / "sample_grid.py"


def test_two_models_give_a_row_each_below_the_photos(tmp_path: Path, tiny_model: Path, data_dir: Path) -> None:
    torch.manual_seed(1)
    other = TransformerNet(channels=4, num_residual_blocks=2)
    other_path = save_safetensors(other, model_metadata(other, style={"name": "other"}, steps=0), tmp_path / "b.safetensors")
    grid_path = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tiny_model), str(other_path), "-o", str(grid_path),
         "--photos", str(data_dir / "content_test"), "--names", "baboon", "fruits", "--size", "32"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    grid = np.asarray(Image.open(grid_path).convert("RGB")).astype(int)
    step = 32 + 4  # tile and gap
    assert grid.shape == (3 * step - 4, 3 * step - 4, 3)  # photos + one row per model; a label column + 2 photos
    photo, first, second = (grid[row * step : row * step + 32, step : step + 32] for row in range(3))
    assert np.abs(first - photo).mean() > 5 and np.abs(second - first).mean() > 5  # each row is its model's


def test_a_missing_model_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "g.png")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
