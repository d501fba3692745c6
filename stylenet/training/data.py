"""Content photos for training: a recursive image folder and its LightningDataModule."""

from __future__ import annotations

import logging
import os
import random
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from PIL import Image
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from stylenet.core.errors import StylenetError
from stylenet.core.images import IMAGE_ERRORS, bounded, find_images, open_image, resize_short_side, to_tensor

log = logging.getLogger(__name__)


def find_content_images(root: str | Path) -> list[Path]:
    """find_images() for the training folder: a missing folder is an error naming the config key."""
    root = Path(root)
    if not root.is_dir():
        raise StylenetError(f"data.root: image folder not found: {root} (set data.root=..., or run `make data`)")
    return find_images(root)


def readable_images(files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split files into those whose header Pillow reads and (file, reason) for the rest; cheap: no decoding."""
    good, bad = [], []
    for path in files:
        try:
            with bounded(), Image.open(path) as image:
                if min(image.size) < 1:
                    raise ValueError(f"empty image {image.size}")
            good.append(path)
        except IMAGE_ERRORS as error:
            bad.append((path, f"{type(error).__name__}: {error}"))
    return good, bad


class ImageFolderDataset(Dataset):
    """Square random crops of image_size from photos resized so their short side is image_size, RGB in [0, 1].

    With augment (the paintings of model=adain, few and reused every step), the short side is drawn from
    [image_size, 2 * image_size] and half the crops are mirrored, so each painting gives many different crops.
    A photo that fails to decode is skipped (logged, and appended to skipped_log) and another one is served.
    """

    def __init__(
        self, files: list[Path], image_size: int, skipped_log: Path | None = None, augment: bool = False,
    ) -> None:
        self.files, self.image_size, self.skipped_log, self.augment = files, image_size, skipped_log, augment
        self.broken: set[int] = set()  # per worker process

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        short_side = random.randint(self.image_size, 2 * self.image_size) if self.augment else self.image_size
        image = resize_short_side(open_image(self.files[index], draft_size=short_side), short_side)
        left = random.randint(0, image.size[0] - self.image_size)
        top = random.randint(0, image.size[1] - self.image_size)
        crop = to_tensor(image.crop((left, top, left + self.image_size, top + self.image_size)))  # (3, S, S)
        return crop.flip(-1) if self.augment and random.random() < 0.5 else crop

    def skip(self, index: int, error: BaseException) -> None:
        self.broken.add(index)
        reason = f"{type(error).__name__}: {error}".replace("\n", " ")
        log.warning("skipping unreadable image %s (%s)", self.files[index], reason)
        if self.skipped_log is not None:  # one short O_APPEND write: safe from several worker processes
            with open(self.skipped_log, "a") as listing:
                listing.write(f"{self.files[index]}\t{reason}\n")

    def __getitem__(self, index: int) -> torch.Tensor:
        for _ in range(len(self.files)):
            if index not in self.broken:
                try:
                    return self.load(index)
                except IMAGE_ERRORS as error:
                    self.skip(index, error)
            index = random.randrange(len(self.files))
        raise StylenetError("data.root: no image in the dataset could be decoded")


class PairedDataset(Dataset):
    """(photo, painting) pairs for model=adain: the photos in the loader's order, each with a random painting."""

    def __init__(self, content: ImageFolderDataset, styles: ImageFolderDataset) -> None:
        self.content, self.styles = content, styles

    def __len__(self) -> int:
        return len(self.content)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.content[index], self.styles[random.randrange(len(self.styles))]


class ResumableLoader(StatefulDataLoader):
    """torchdata's StatefulDataLoader (Lightning saves its position in every checkpoint), except that a saved
    position from a different data.num_workers is dropped with a warning: its format depends on the count."""

    def load_state_dict(self, state: dict) -> None:
        workers = len(state.get("_snapshot", {}).get("_worker_snapshots", {})) if "_snapshot" in state else 0
        if workers != self.num_workers:
            log.warning(
                "data.num_workers is %d, the checkpoint's loader had %d: the data order starts a new shuffle",
                self.num_workers, workers,
            )
            return
        super().load_state_dict(state)


def init_worker(worker_id: int) -> None:
    """Loader workers ignore Ctrl-C and SIGTERM: the training process decides when to stop, then ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):  # what Lightning adds when there is no worker_init_fn
        pl_worker_init_function(worker_id)


class ContentDataModule(pl.LightningDataModule):
    """Serves batches (B, 3, image_size, image_size) of content photos from a folder tree; with style_root
    (model=adain), batches (photos, paintings) of two such tensors, the paintings cropped and augmented."""

    def __init__(
        self, root: str, image_size: int = 256, batch_size: int = 4, num_workers: int = 2,
        skipped_log: Path | None = None, style_root: str | None = None, style_exclude: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.root, self.image_size, self.batch_size, self.num_workers = Path(root), image_size, batch_size, num_workers
        self.style_root = Path(style_root) if style_root else None
        self.style_exclude = set(style_exclude or [])  # paintings (file names without extension) held out
        self.style_files: list[Path] | None = None
        self.skipped_log = skipped_log  # where unreadable files are listed (path<TAB>reason), if given
        self.files: list[Path] | None = None
        self.skipped: list[tuple[Path, str]] = []

    def scan(self) -> list[Path]:
        """List and header-check the photos once; fails with a one-line error on a missing or empty folder."""
        if self.files is None:
            self.files, self.skipped = readable_images(find_content_images(self.root))
            if self.skipped:
                log.warning(
                    "skipped %d unreadable file(s) of %d in %s (first: %s); see skipped_images.txt in the run directory",
                    len(self.skipped), len(self.files) + len(self.skipped), self.root, self.skipped[0][0],
                )
            if len(self.files) < self.batch_size:
                raise StylenetError(
                    f"data.root: {self.root} holds {len(self.files)} readable image(s), fewer than "
                    f"data.batch_size={self.batch_size}; point data.root at a folder of photos"
                )
        return self.files

    def scan_styles(self) -> list[Path]:
        """The readable paintings under style_root; an empty or missing folder is a one-line error."""
        if self.style_files is None and self.style_root is not None:
            if not self.style_root.is_dir():
                raise StylenetError(f"style_dataset.root: folder not found: {self.style_root} (set style_dataset.root=...)")
            paintings = [path for path in find_images(self.style_root) if path.stem not in self.style_exclude]
            self.style_files, skipped = readable_images(paintings)
            self.skipped += skipped
            if not self.style_files:
                raise StylenetError(f"style_dataset.root: {self.style_root} holds no readable image; point it at paintings")
        return self.style_files or []

    def write_skipped(self) -> None:
        """List the files the scan skipped (path<TAB>reason) in skipped_log; decoding failures are appended later."""
        if self.skipped and self.skipped_log is not None:
            self.skipped_log.parent.mkdir(parents=True, exist_ok=True)
            self.skipped_log.write_text("".join(f"{file}\t{reason}\n" for file, reason in self.skipped))

    def setup(self, stage: str | None = None) -> None:
        self.dataset = ImageFolderDataset(self.scan(), self.image_size, self.skipped_log)
        if self.style_root is not None:
            styles = ImageFolderDataset(self.scan_styles(), self.image_size, self.skipped_log, augment=True)
            self.dataset = PairedDataset(self.dataset, styles)

    def train_dataloader(self) -> ResumableLoader:
        # Stateful: Lightning stores its position in each checkpoint, so a resumed run continues the same order.
        return ResumableLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,  # instance norm and the Gram targets assume full batches of equal size
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=init_worker,
            pin_memory=torch.cuda.is_available(),
        )
