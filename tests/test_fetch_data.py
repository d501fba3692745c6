import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from PIL import Image

from tests.conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "scripts" / "fetch_data.py")


def make_style_conf(folder: Path, painting: Path, sha256: str | None) -> Path:
    conf = folder / "conf"
    conf.mkdir()
    pinned = sha256 if sha256 else "null"
    (conf / "tiny.yaml").write_text(f"name: tiny\nimage: x\nurl: {painting.as_uri()}\nsha256: {pinned}\nsize: 64\n")
    return conf


def run_fetch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_paintings_download_with_sha256_check(tmp_path: Path) -> None:
    painting = tmp_path / "source.jpg"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(painting)
    digest = hashlib.sha256(painting.read_bytes()).hexdigest()
    conf = make_style_conf(tmp_path, painting, digest)
    result = run_fetch("--dest", str(tmp_path / "data"), "--conf", str(conf))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "styles" / "tiny.jpg").read_bytes() == painting.read_bytes()


def test_wrong_sha256_saves_nothing_and_fails(tmp_path: Path) -> None:
    painting = tmp_path / "source.jpg"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(painting)
    conf = make_style_conf(tmp_path, painting, "0" * 64)
    result = run_fetch("--dest", str(tmp_path / "data"), "--conf", str(conf))
    assert result.returncode == 2
    assert "sha256 is" in result.stderr and "expected 000" in result.stderr and "Traceback" not in result.stderr
    assert list((tmp_path / "data" / "styles").iterdir()) == []


def test_unpinned_painting_prints_its_hash(tmp_path: Path) -> None:
    painting = tmp_path / "source.jpg"
    Image.new("RGB", (16, 16), (9, 9, 9)).save(painting)
    result = run_fetch("--dest", str(tmp_path / "data"), "--conf", str(make_style_conf(tmp_path, painting, None)))
    assert result.returncode == 0 and hashlib.sha256(painting.read_bytes()).hexdigest() in result.stdout


def test_coco_zip_is_unpacked_into_train2014(tmp_path: Path) -> None:
    archive = tmp_path / "train2014.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for index in range(2):
            path = tmp_path / f"COCO_train2014_{index}.jpg"
            Image.new("RGB", (8, 8)).save(path)
            zipped.write(path, f"train2014/{path.name}")
    conf = tmp_path / "empty_conf"
    conf.mkdir()
    dest = tmp_path / "data"
    result = run_fetch("--dest", str(dest), "--conf", str(conf), "--coco", "--coco-url", archive.as_uri())
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (dest / "coco" / "train2014").iterdir()) == [
        "COCO_train2014_0.jpg", "COCO_train2014_1.jpg"]
    assert not (dest / "coco" / "train2014.zip").exists()
