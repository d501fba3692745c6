"""Faults tried for real: kills, signals, NaN losses, full disks, broken and hostile files (see RELIABILITY.md)."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from stylenet import StylenetError
from stylenet.cli import main
from stylenet.core.images import load_image, set_max_image_pixels
from stylenet.models.losses import PerceptualLoss
from stylenet.training.trainer import train
from tests.conftest import PYTHON, TRAIN_PY, compose_config, run_env
from tests.test_stylize_cli import run as main_exit
from tests.test_train import TINY, scalars

# In-process runs: the real config and loss network, a 2-block net on 32-px crops of a small photo folder.
SMALL = [
    "trainer=cpu", "data.image_size=32", "data.batch_size=2", "data.num_workers=0", "style.size=64",
    "model.channels=4", "model.num_residual_blocks=1", "samples.count=1", "samples.size=32",
    "checkpoint.every_n_steps=2", "trainer.max_steps=8", "trainer.log_every_n_steps=1",
]


def small_config(tmp_path: Path, photos: Path, *overrides: str):
    return compose_config(*SMALL, f"data.root={photos}", *overrides, run_dir=tmp_path / "run")


def checkpoint_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height: what a decompression bomb looks like to a decoder."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, TRAIN_PY, *TINY, "data.num_workers=2", f"hydra.run.dir={run_dir}", *overrides],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=run_env(), start_new_session=True,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_continues_at_the_saved_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = start_training(run_dir, "trainer.max_steps=400", "checkpoint.every_n_steps=10")
    wait_for(run_dir / "checkpoints" / "step-000020.ckpt", process)
    os.killpg(process.pid, signal.SIGKILL)  # no handler runs: the harshest stop
    process.wait()
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)  # readable: never half-written
    # the kill may land between step-000020.ckpt and last.ckpt being written: either is a whole checkpoint
    assert saved["global_step"] in (10, 20) and saved["optimizer_states"][0]["state"]  # with Adam's moments
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # the loader's position in its epoch
    resumed = subprocess.run(
        [PYTHON, TRAIN_PY, *TINY, "data.num_workers=2", f"hydra.run.dir={run_dir}", f"ckpt_path={last}",
         f"trainer.max_steps={saved['global_step'] + 10}"],
        capture_output=True, text=True, env=run_env(), timeout=480,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr  # Lightning's mid-epoch warning: our loader is stateful
    assert checkpoint_step(last) == saved["global_step"] + 10
    assert max(scalars(run_dir, "train/total_loss")) == saved["global_step"] + 9  # the curve goes on


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signals_save_a_checkpoint_and_say_how_to_resume(tmp_path: Path, signum: int) -> None:
    run_dir = tmp_path / "run"
    process = start_training(run_dir, "trainer.max_steps=400")
    wait_for(run_dir / "checkpoints" / "step-000010.ckpt", process)
    os.killpg(process.pid, signum)  # the whole process group, as a terminal or a scheduler does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    assert f"stopped by {signal.Signals(signum).name} at step" in stderr and "Traceback" not in stderr
    resume_line = stderr.strip().splitlines()[-1]
    assert resume_line.strip().startswith("python train.py") and f"ckpt_path={run_dir}/checkpoints/last.ckpt" in resume_line
    step = int(stderr.split("at step ")[1].split(";")[0])
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == step >= 10
    assert not (run_dir / "model.safetensors").exists()  # an unfinished run exports nothing


def poison(monkeypatch: pytest.MonkeyPatch, at_calls: set[int]) -> None:
    """Make the style term NaN on these calls of the loss (0-based)."""
    original, calls = PerceptualLoss.forward, [0]

    def forward(self: PerceptualLoss, *args: torch.Tensor, **kwargs: object) -> dict[str, torch.Tensor]:
        terms = original(self, *args, **kwargs)
        if calls[0] in at_calls:
            terms = {**terms, "style": terms["style"] * float("nan"), "total": terms["total"] * float("nan")}
        calls[0] += 1
        return terms

    monkeypatch.setattr(PerceptualLoss, "forward", forward)


@pytest.mark.slow
def test_nan_loss_stops_with_the_term_and_step_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, photo_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison(monkeypatch, {5})
    with pytest.raises(StylenetError, match=r"loss became non-finite at step 5 \(style=nan, total=nan\)"):
        train(small_config(tmp_path, photo_folder))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["state_dict"].values())
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
def test_nan_loss_can_skip_the_batch_instead(tmp_path: Path, photo_folder: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    poison(monkeypatch, {2, 5})
    model = train(small_config(tmp_path, photo_folder, "on_nonfinite_loss=skip"))
    network = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert model.is_file() and all(torch.isfinite(tensor).all() for tensor in network.values())
    losses = scalars(tmp_path / "run", "train/total_loss")
    assert len(losses) == 8 and all(np.isfinite(list(losses.values())))  # 10 batches: 8 steps, 2 skipped


@pytest.mark.slow
def test_disk_full_while_checkpointing_fails_loudly_and_keeps_the_previous(
        tmp_path: Path, photo_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original, calls = pl.Trainer.save_checkpoint, []

    def save_checkpoint(trainer: pl.Trainer, filepath: str | Path, *args: object, **kwargs: object) -> None:
        calls.append(filepath)
        if len(calls) == 4:  # step-000004.ckpt is fine; then last.ckpt at step 4 runs out of space
            Path(filepath).write_bytes(b"PK\x03\x04 a torn write")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(trainer, filepath, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", save_checkpoint)
    with pytest.raises(StylenetError, match=r"could not write checkpoint .*last.ckpt at step 4 \(No space left on device\); "
                                            r"the previous checkpoint is intact"):
        train(small_config(tmp_path, photo_folder))
    assert checkpoint_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 2
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_dataset_full_of_broken_files_trains_and_reports_them(tmp_path: Path, photo_folder: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    good = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(good).save(tmp_path / "whole.jpg", quality=90)
    (photo_folder / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:600])
    (photo_folder / "zero.png").write_bytes(b"")
    (photo_folder / "notes.jpg").write_text("not an image at all")
    (photo_folder / "bomb.png").write_bytes(png_claiming(30000, 30000))
    locked = photo_folder / "nested" / "locked.png"
    Image.fromarray(good).save(locked)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the OS answer as it would for anyone else
        real_open = Image.open
        monkeypatch.setattr(Image, "open", lambda fp, *a, **k: (_ for _ in ()).throw(PermissionError(
            errno.EACCES, os.strerror(errno.EACCES), str(fp))) if Path(fp) == locked else real_open(fp, *a, **k))
    train(small_config(tmp_path, photo_folder, "trainer.max_steps=12"))
    listed = {Path(line.split("\t")[0]).name: line.split("\t")[1]
              for line in (tmp_path / "run" / "skipped_images.txt").read_text().splitlines()}
    assert set(listed) == {"truncated.jpg", "zero.png", "notes.jpg", "bomb.png", "locked.png"}
    assert "DecompressionBomb" in listed["bomb.png"] and "Permission denied" in listed["locked.png"]
    assert checkpoint_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 12


def test_a_malicious_resume_checkpoint_is_refused_before_training(tmp_path: Path, data_dir: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    torch.save({"state_dict": {}, "loops": Exploit()}, tmp_path / "last.ckpt")
    from stylenet.training.trainer import check_config

    with pytest.raises(StylenetError, match="refusing to load .*last.ckpt: it holds Python objects"):
        check_config(compose_config(f"ckpt_path={tmp_path / 'last.ckpt'}"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.ckpt")
    with pytest.raises(StylenetError, match="not a training checkpoint"):
        check_config(compose_config(f"ckpt_path={tmp_path / 'plain.ckpt'}"))
    assert not marker.exists()


def test_decompression_bombs_are_refused_unless_the_limit_is_raised(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_claiming(30000, 30000))  # over twice the limit: Pillow's own error
    (tmp_path / "big.png").write_bytes(png_claiming(10000, 10000))  # over the limit: Pillow only warns
    for name in ("bomb.png", "big.png"):
        with pytest.raises(StylenetError, match="too large to decode safely.*--max-image-pixels"):
            load_image(tmp_path / name)
    try:
        set_max_image_pixels(2 * 10**8)
        with pytest.raises(StylenetError, match="is not a readable image"):  # past the guard, the data is missing
            load_image(tmp_path / "big.png")
    finally:
        set_max_image_pixels(None)


def test_disk_full_while_writing_an_output_keeps_the_previous_file(tiny_model: Path, photo_folder: Path,
                                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert main_exit("stylize", photo_folder, "--model", tiny_model, "-o", out) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}

    def full_disk(image: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full_disk)
    assert main_exit("stylize", photo_folder, "--model", tiny_model, "-o", out, "--overwrite") == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before  # no temp files either


def test_debug_flag_shows_the_traceback(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(StylenetError, match="input not found"):
        main(["--debug", "stylize", str(tmp_path / "nope.jpg"), "--model", str(tiny_model)])
    assert main_exit("stylize", tmp_path / "nope.jpg", "--model", tiny_model) == 2

