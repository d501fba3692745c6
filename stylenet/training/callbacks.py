"""Callbacks: sample grids and eval for TensorBoard, atomic step/time checkpoints, and a whole-run progress bar."""

from __future__ import annotations

import copy
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, TQDMProgressBar, Timer
from torchvision.utils import make_grid

from stylenet.core.errors import StylenetError
from stylenet.core.images import open_image, resize_short_side, to_tensor

log = logging.getLogger(__name__)


class SampleGrid(Callback):
    """Every N steps, log a grid to TensorBoard: the fixed photos on top, the current network's output below
    (one row per painting for the multi-style and AdaIN modules: their sample_rows())."""

    def __init__(self, image_paths: list[Path], size: int, every_n_steps: int) -> None:
        self.image_paths, self.size, self.every_n_steps = image_paths, size, every_n_steps
        self.images: torch.Tensor | None = None

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        squares = []
        for path in self.image_paths:
            image = resize_short_side(open_image(path), self.size)
            left, top = (image.size[0] - self.size) // 2, (image.size[1] - self.size) // 2
            squares.append(to_tensor(image.crop((left, top, left + self.size, top + self.size))))
        self.images = torch.stack(squares) if squares else None  # (N, 3, S, S)

    def log_grid(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.images is None or not trainer.is_global_zero or trainer.logger is None:
            return
        with torch.no_grad():
            rows = [row.float().cpu() for row in module.sample_rows(self.images.to(module.device))]
        grid = make_grid(torch.cat([self.images, *rows]), nrow=len(self.images), padding=2, pad_value=1.0)
        trainer.logger.experiment.add_image("samples", grid, trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:  # 0: only at the end
            self.log_grid(trainer, module)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.every_n_steps or trainer.global_step % self.every_n_steps != 0:  # else already logged at this step
            self.log_grid(trainer, module)


class PeriodicEval(Callback):
    """Every N steps and at the end, `stylenet eval` of the network so far on fixed photos: its placement on the
    judge's Gatys curve, content and style terms and checkerboard figure go to TensorBoard (eval/*), with
    eval/train_minutes (this process's training time without the evals); the model file, report and grid stay
    in RUN/eval/step-NNNNNN/. The first eval computes the photos' reference curves (cached for later runs)."""

    def __init__(self, folder: Path, photos: list[str], size: int, every_n_steps: int) -> None:
        self.folder, self.photos, self.size, self.every_n_steps = Path(folder), photos, size, every_n_steps
        self.started, self.eval_seconds, self.last_step = time.monotonic(), 0.0, -1

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started, self.eval_seconds = time.monotonic(), 0.0

    def run(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self.last_step:
            return
        from stylenet.models.export import save_safetensors  # the judge's imports, only for runs that evaluate
        from stylenet.evaluation.judge import evaluate, placement_phrase

        began = time.monotonic()
        minutes = (began - self.started - self.eval_seconds) / 60
        folder = self.folder / f"step-{step:06d}"
        network = copy.deepcopy(module.network)  # export moves its network to the CPU in eval mode
        model = save_safetensors(network, module.model_metadata(step), folder / "model.safetensors")
        report = evaluate([model], self.photos, style_image=module.eval_painting(), size=self.size, output=folder, device="cpu")
        figures, median = report["models"][0], report["models"][0]["median"]
        if trainer.logger is not None:
            trainer.logger.log_metrics({
                "eval/placement": median["placement"], "eval/content": median["content"], "eval/style": median["style"],
                "eval/checkerboard": median["checkerboard"], "eval/photos_lost": figures["photo_lost"],
                "eval/train_minutes": minutes,
            }, step=step)
        log.info("eval at step %d (%.1f training minutes): %s; content %.3g, style %.3g, photos lost %d/%d; %s",
                 step, minutes, placement_phrase(median["placement_label"]), median["content"], median["style"],
                 figures["photo_lost"], len(figures["photos"]), folder / "report.md")
        self.eval_seconds += time.monotonic() - began
        self.last_step = step

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.run(trainer, module)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.run(trainer, module)


class PeriodicCheckpoint(Callback):
    """Write checkpoints/last.ckpt every N steps and every M minutes, and keep step-NNNNNN.ckpt every N steps.

    Each file is written beside its target and renamed into place, so a kill mid-save never leaves a torn file.
    """

    def __init__(self, dirpath: Path, every_n_steps: int, every_n_minutes: float) -> None:
        self.dirpath, self.every_n_steps, self.every_n_minutes = Path(dirpath), every_n_steps, every_n_minutes
        self.last_save = time.monotonic()

    def save(self, trainer: pl.Trainer, name: str) -> None:
        path = self.dirpath / name
        if not all(torch.isfinite(p).all() for p in trainer.lightning_module.parameters()):
            log.warning("step %d: weights are not finite; %s not written, the previous one stays", trainer.global_step, name)
            return
        tmp = path.with_name(f".{name}.tmp")
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # every rank must call it; rank 0 writes
            if trainer.is_global_zero:
                os.replace(tmp, path)
        except OSError as error:  # disk full, quota, permissions: the previous checkpoint is untouched
            tmp.unlink(missing_ok=True)
            raise StylenetError(
                f"could not write checkpoint {path} at step {trainer.global_step} ({error.strerror or error}); "
                "the previous checkpoint is intact: free space, then resume from it"
            ) from None
        self.last_save = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        step = trainer.global_step
        by_steps = step % self.every_n_steps == 0
        # rank 0's clock decides, so that all ranks enter save_checkpoint's barrier together
        by_time = trainer.strategy.broadcast(time.monotonic() - self.last_save >= 60 * self.every_n_minutes)
        if by_steps:
            self.save(trainer, f"step-{step:06d}.ckpt")
        if by_steps or by_time:
            self.save(trainer, "last.ckpt")

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.save(trainer, "last.ckpt")


class GracefulStop(Callback):
    """On SIGINT (Ctrl-C) or SIGTERM (what schedulers send): finish the step, then stop the run normally,
    so PeriodicCheckpoint.on_train_end writes last.ckpt. A second Ctrl-C interrupts at once.
    `received` tells the caller which signal stopped the run.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("received %s: stopping after this step and writing a checkpoint", signal.Signals(signum).name)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # after Lightning has set its own SIGTERM handler (which would end the run without a checkpoint)
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            self.previous = {signum: signal.signal(signum, self.handle) for signum in self.SIGNALS}

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        # a scheduler may signal only some ranks: all stop if any got it
        if trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            self.received = self.received or signal.SIGTERM
            trainer.should_stop = True

    def restore(self, *args: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    on_train_end = on_exception = restore


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole run (global step of max_steps, steps/s, ETA, loss terms), not one per epoch."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: object) -> None:
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:  # first epoch of this process, fresh or resumed
            bar.reset(total=trainer.max_steps)
            bar.n = bar.initial = trainer.global_step  # rate and ETA count this process's steps only
            timer = next((c for c in trainer.callbacks if isinstance(c, Timer) and getattr(c, "_duration", None)), None)
            limit = f" (or {timer._duration / 60:.0f} min)" if timer else ""  # trainer.max_time: the ETA may not be reached
            bar.set_description(f"train{limit}")

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        if self._should_update(trainer.global_step, trainer.max_steps):
            self.train_progress_bar.n = trainer.global_step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, module), refresh=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        pass  # the bar spans epochs

    def get_metrics(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, float | int | str]:
        """Short names for the loss terms ('train/style_loss' -> 'style'); no version number."""
        return {
            name.removeprefix("train/").removesuffix("_loss"): value
            for name, value in super().get_metrics(trainer, module).items()
            if name != "v_num"
        }
