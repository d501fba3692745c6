#!/usr/bin/env python
"""Fetch the style paintings (and, on request, COCO train2014) for users whose machine has internet.

    python scripts/fetch_data.py                 # paintings named in conf/style/*.yaml -> ./data/styles/
    python scripts/fetch_data.py --coco          # + COCO train2014 (13 GB) -> ./data/coco/train2014/
    python scripts/fetch_data.py --dest DIR      # somewhere else (then export STYLENET_DATA=DIR)

Every file is downloaded to a temporary name, checked against its sha256 when the config pins one, and only
then renamed into place; files already present with the right hash are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

from omegaconf import OmegaConf
from tqdm import tqdm

from stylenet.core.files import atomic_write

REPO_ROOT = Path(__file__).resolve().parents[1]
COCO_URL = "http://images.cocodataset.org/zips/train2014.zip"


class FetchError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None) -> str:
    """Download url to dest atomically and return its sha256; a mismatch with `sha256` leaves dest untouched."""
    if dest.is_file() and sha256 and sha256_of(dest) == sha256:
        return sha256
    try:
        with atomic_write(dest) as tmp:
            with tmp.open("wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            got = sha256_of(tmp)
            if sha256 and got != sha256:
                raise FetchError(f"{url}: sha256 is {got}, expected {sha256}; the file was not saved")
        return got
    except OSError as error:  # URLError is an OSError
        raise FetchError(f"{url}: download failed ({error}); check the network or the url") from None


def fetch_styles(conf_dir: Path, dest: Path, only: list[str] | None) -> int:
    """Fetch each painting whose style config has a url; returns the number of failures."""
    failures = 0
    for config_path in sorted(conf_dir.glob("*.yaml")):
        style = OmegaConf.load(config_path)
        if (only and style.name not in only) or not style.get("url"):
            continue
        target = dest / "styles" / f"{style.name}{Path(style.url).suffix or '.jpg'}"
        # YAML reads an unquoted all-digit hash as a number: take it back as 64 hex digits
        pinned = None if style.get("sha256") is None else str(style.sha256).zfill(64).lower()
        try:
            if pinned is not None and not re.fullmatch(r"[0-9a-f]{64}", pinned):
                raise FetchError(f"{config_path}: sha256 must be 64 hex digits, got {style.sha256}")
            got = download(style.url, target, pinned)
            note = "" if pinned else f"  (unpinned: sha256 {got})"
            print(f"ok  {target}{note}")
        except FetchError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    return failures


def fetch_coco(dest: Path, url: str = COCO_URL) -> None:
    """Download and unpack COCO train2014 into dest/coco/train2014 (the zip is removed afterwards)."""
    archive = dest / "coco" / "train2014.zip"
    download(url, archive)
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.namelist()
        tmp = dest / "coco" / ".train2014.extracting"
        shutil.rmtree(tmp, ignore_errors=True)
        for member in tqdm(members, desc="unzip", unit="file"):
            zipped.extract(member, tmp)
    inner = tmp / "train2014" if (tmp / "train2014").is_dir() else tmp
    final = dest / "coco" / "train2014"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(inner, final)
    shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink()
    print(f"ok  {final} ({len(members)} entries)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=Path(os.environ.get("STYLENET_DATA") or "data"))
    parser.add_argument("--styles", nargs="*", help="only these style names (default: all in conf/style)")
    parser.add_argument("--coco", action="store_true", help="also fetch COCO train2014 (13 GB)")
    parser.add_argument("--conf", type=Path, default=REPO_ROOT / "conf" / "style", help=argparse.SUPPRESS)
    parser.add_argument("--coco-url", default=COCO_URL, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    failures = fetch_styles(args.conf, args.dest, args.styles)
    if args.coco:
        try:
            fetch_coco(args.dest, args.coco_url)
        except (FetchError, zipfile.BadZipFile) as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    if args.dest.resolve() != Path("data").resolve():
        print(f"point stylenet at it: export STYLENET_DATA={args.dest.resolve()}")
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
