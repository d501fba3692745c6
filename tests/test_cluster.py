"""`stylenet stylize --engine ray` on one machine: a Ray cluster for the whole test session (a head with 2 CPUs,
joined by --address as a user joins theirs), a second node added and removed mid-run, and a Ray started by the
command itself (slow)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from stylenet.running.backends import ModelSpec
from stylenet.running.options import StylizeOptions
from stylenet.running.cluster import RaySettings, stylize_on_ray
from tests.conftest import PYTHON, exif_rotated_jpeg, run_env
from tests.test_stylize_cli import run
from tests.test_video import make_clip

ray = pytest.importorskip("ray", reason="the Ray engine's tests need stylenet[ray] (in stylenet[dev])")
from ray.cluster_utils import Cluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """One Ray for every test here: a head node with 2 CPUs, this test process connected to it as a driver."""
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def inputs(photo_folder: Path, tmp_path: Path) -> Path:
    """Photos of three formats in a tree, a sideways phone photo (EXIF), a transparent PNG and a short clip."""
    exif_rotated_jpeg(photo_folder / "phone.jpg")
    Image.new("RGBA", (40, 30), (200, 100, 50, 128)).save(photo_folder / "nested" / "glass.png")
    make_clip(photo_folder / "nested" / "clip.mp4", frames=6)
    return photo_folder


# Outputs compared byte for byte between the engines need the same arithmetic on both sides: fp32 eager gives the
# same pixels on a worker's 1 thread and the driver's 2; bf16, or a backend chosen by timing per thread count
# (--backend auto), may not, and a video's encoder turns one level of difference into ten.
SAME_ARITHMETIC = ("--precision", "fp32", "--backend", "eager")


def files(root: Path) -> dict[Path, bytes]:
    return {path.relative_to(root): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_the_ray_engine_writes_the_local_engines_files_and_a_rerun_does_nothing(
    cluster: Cluster, tiny_model: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert run("stylize", inputs, "--model", tiny_model, "-o", local, *SAME_ARITHMETIC) == 0
    assert run("stylize", inputs, "--model", tiny_model, "-o", distributed, "--engine", "ray",
               "--address", cluster.address, "--batch-size", "2", *SAME_ARITHMETIC) == 0
    assert "stylized 8 image(s)" in capsys.readouterr().out
    written = files(distributed)
    assert written == files(local) and len(written) == 9  # same names, formats, alpha, EXIF, the clip; bytes equal
    with Image.open(distributed / "nested" / "glass.png") as glass, Image.open(distributed / "phone.jpg") as phone:
        assert glass.mode == "RGBA" and phone.size == (40, 24)  # upright
    stamps = {path: path.stat().st_mtime_ns for path in distributed.rglob("*")}
    assert run("stylize", inputs, "--model", tiny_model, "-o", distributed, "--engine", "ray",
               "--address", cluster.address) == 0
    printed = capsys.readouterr().out
    assert "stylized 0 image(s)" in printed and "9 left as they were" in printed
    assert {path: path.stat().st_mtime_ns for path in distributed.rglob("*")} == stamps


@pytest.mark.slow
def test_a_rerun_after_an_interrupted_run_does_only_the_rest(
    cluster: Cluster, tiny_model: Path, photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    command = ["stylize", photo_folder, "--model", tiny_model, "-o", out, "--engine", "ray", "--address", cluster.address]
    assert run(*command) == 0
    done = out / "photo0.jpg"
    kept = {path: path.read_bytes() for path in out.rglob("*.*")}
    (out / "nested" / "photo2.webp").unlink()  # what an interrupted run had not reached
    (out / "nested" / ".photo2.webp.1a2b3c.tmp").write_bytes(b"half a file")  # and the one a killed worker was writing
    done.write_bytes(b"finished before the interruption")
    capsys.readouterr()
    assert run(*command) == 0
    printed = capsys.readouterr().out
    assert "stylized 1 image(s)" in printed and "5 left as they were" in printed
    assert (out / "nested" / "photo2.webp").read_bytes() == kept[out / "nested" / "photo2.webp"]
    assert done.read_bytes() == b"finished before the interruption"  # finished outputs are not redone
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_unreadable_inputs_are_listed_at_the_end_and_the_rest_written(
    cluster: Cluster, tiny_model: Path, photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", out, "--engine", "ray",
               "--address", cluster.address) == 1
    captured = capsys.readouterr()
    assert "stylized 6 image(s)" in captured.out and "1 FAILED" in captured.out
    assert captured.err.count("failed:") == 1 and "broken.jpg" in captured.err
    assert len(list(out.rglob("*.*"))) == 6


@pytest.mark.slow
def test_uris_of_a_pyarrow_filesystem_are_read_and_written(
    cluster: Cluster, tiny_model: Path, photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", local, *SAME_ARITHMETIC) == 0
    command = ["stylize", f"file://{photo_folder}", "--model", tiny_model, "-o", f"file://{distributed}",
               "--engine", "ray", "--address", cluster.address, *SAME_ARITHMETIC]
    assert run(*command) == 0
    assert files(distributed) == files(local)
    capsys.readouterr()
    assert run(*command) == 0  # the outputs are found by one listing of the output folder: nothing redone
    assert "stylized 0 image(s)" in capsys.readouterr().out and files(distributed) == files(local)


@pytest.mark.slow
def test_a_node_that_dies_mid_run_loses_no_output_and_writes_none_twice(
    cluster: Cluster, data_dir: Path, tmp_path: Path,
) -> None:
    """A second node joins, takes a worker, and is removed (its processes killed) once some outputs exist."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, path in enumerate(sorted((data_dir / "content").glob("*.jpg"))[:40]):
        with Image.open(path) as image:
            image.convert("RGB").resize((192, 144)).save(photos / f"{index:02d}.png")
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    out = tmp_path / "out"
    settings = RaySettings(address=cluster.address, workers=3, images_per_task=1)
    # a ready-made model: each photo takes long enough that the node is removed mid-run
    spec = ModelSpec("starry_night", device="cpu", precision="fp32", backend="eager")
    summary = []
    run_thread = threading.Thread(target=lambda: summary.append(
        stylize_on_ray(spec, [str(photos)], str(out), None, StylizeOptions(), settings)))
    run_thread.start()
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.png"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    done_at_removal = len(list(out.glob("*.png")))
    cluster.remove_node(node, allow_graceful=False)
    run_thread.join(timeout=300)
    assert not run_thread.is_alive(), "the run did not end after the node was removed"
    assert 5 <= done_at_removal < 40, f"{done_at_removal} outputs when the node was removed: not mid-run"
    assert len(summary[0].written) == 40 and not summary[0].failed
    assert sorted(path.name for path in out.iterdir()) == sorted(path.name for path in photos.iterdir())
    for path in out.iterdir():
        with Image.open(path) as image:
            image.load()  # complete: a torn file fails to decode


def test_ray_missing_bad_settings_and_no_cluster_are_one_line_errors(
    tiny_model: Path, photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["stylize", photo_folder, "--model", tiny_model, "-o", tmp_path / "out", "--engine", "ray"]
    assert run(*base, "--workers", "0") == 2
    assert capsys.readouterr().err.strip() == "error: --workers 0: must be at least 1"
    assert run(*base, "--address", "127.0.0.1:1") == 2  # no cluster there: one line at once, not Ray's retries
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--address 127.0.0.1:1: nothing answers there" in err and "ray start --head" in err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert run(*base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'stylenet[ray]'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_readme_command_starts_its_own_ray(tiny_model: Path, photo_folder: Path, tmp_path: Path) -> None:
    """No --address: the command starts a Ray on this machine, stylizes and stops it. (A rerun, which starts no Ray
    whatever the address: test_the_ray_engine_writes_the_local_engines_files_and_a_rerun_does_nothing.)"""
    command = [PYTHON, "-m", "stylenet", "stylize", str(photo_folder), "--model", str(tiny_model),
               "-o", str(tmp_path / "out"), "--engine", "ray", "--workers", "2"]
    result = subprocess.run(command, capture_output=True, text=True, env=run_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stylized 6 image(s)" in result.stdout and "core_worker" not in result.stderr
    assert "backend auto: every worker runs" in result.stderr  # decided once by the driver, said on the terminal
    assert len(list((tmp_path / "out").rglob("*.*"))) == 6


@pytest.mark.slow
def test_worker_settings_take_effect_or_are_one_line_errors(
    cluster: Cluster, tiny_model: Path, photo_folder: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--gpus-per-worker on a CPU-only cluster, --cpus-per-worker beyond any node (Ray would wait for ever) or not
    positive: one line each, nothing written. --cpus-per-worker 2 on the 2-CPU head (one worker on 2 threads) with
    --max-image-pixels 2500: the workers refuse the four photos over the limit, as the local engine does (they
    ignored it: the limit was set in the driver's process only)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # the command sets Pillow's global
    out, ray_args = tmp_path / "out", ("--engine", "ray", "--address", cluster.address)
    for flag, value, message in (("--gpus-per-worker", "1", "this Ray cluster has no GPUs"),
                                 ("--cpus-per-worker", "64", "no node of this Ray cluster has that many CPUs"),
                                 ("--cpus-per-worker", "0", "must be more than 0")):
        assert run("stylize", photo_folder, "--model", tiny_model, "-o", out, *ray_args, flag, value) == 2
        err = capfd.readouterr().err  # the file descriptor's: what the terminal shows, the progress bar included
        said = [line for line in err.splitlines() if line.strip() and not line.startswith("stylize (ray):")]
        assert len(said) == 1 and said[0].startswith(f"error: {flag} {value}:") and message in said[0], said
        assert not out.exists()
    local, distributed = tmp_path / "local", tmp_path / "ray"
    limit = ("--max-image-pixels", "2500")  # photo0 (48x40) and photo1 (56x40) are under it, the other four over
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", local, *limit) == 1
    assert run("stylize", photo_folder, "--model", tiny_model, "-o", distributed, *ray_args, *limit,
               "--cpus-per-worker", "2") == 1
    printed = capfd.readouterr()
    assert printed.err.count("--max-image-pixels N") >= 8  # four failures in each engine's list
    assert len(files(distributed)) == 2 and files(distributed) == files(local)
