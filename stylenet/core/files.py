"""Atomic file writes (a temp file beside the target, renamed into place only once it is complete), and where
stylenet keeps what it computes once and reuses (cache_root)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path` (with the usual umask permissions), else vanishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private (0600); give it what open() would
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cache_root() -> Path:
    """$STYLENET_CACHE, else $XDG_CACHE_HOME/stylenet, else ~/.cache/stylenet: eval's reference curves, the
    inference backend measured per machine, ONNX exports."""
    if os.environ.get("STYLENET_CACHE"):
        return Path(os.environ["STYLENET_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stylenet"
