"""train(cfg): build every object from the composed config with plain constructor calls, fit, export."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger

from stylenet.core.errors import StylenetError
from stylenet.training.callbacks import GracefulStop, PeriodicCheckpoint, PeriodicEval, SampleGrid, StepProgressBar
from stylenet.training.config import user_overrides, validate
from stylenet.training.data import ContentDataModule
from stylenet.models.export import save_safetensors
from stylenet.models.modelfile import weights_digest
from stylenet.core.hostmemory import keep_freed_memory
from stylenet.core.images import find_images, set_max_image_pixels
from stylenet.training.systems import StyleSystem, system_for
from stylenet.core.device import machine_name, native_bf16

log = logging.getLogger(__name__)

# The loss network is frozen and stays in eval mode on purpose; Lightning warns about any module in eval mode.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)
warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated")  # torchdata 0.11 on newer torch
warnings.filterwarnings("ignore", message=r"`training_step` returned `None`")  # on_nonfinite_loss=skip, on purpose


class _NoAdvertising(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NoAdvertising())


def sample_paths(cfg: DictConfig, datamodule: ContentDataModule) -> list[Path]:
    """The fixed photos shown in the TensorBoard grid: samples.root if it exists, else the first training photos."""
    root = Path(cfg.samples.root) if cfg.samples.root else None
    paths = find_images(root) if root is not None and root.is_dir() else datamodule.scan()
    return paths[: cfg.samples.count]


def check_config(cfg: DictConfig) -> type[StyleSystem]:
    """Every check before any work: the keys all kinds read, then the kind's own; returns its training system."""
    kind = cfg.model.get("kind")
    system = system_for(kind)  # an unknown kind: one line naming the valid ones
    validate(cfg)
    system.check(cfg, user_overrides())
    return system


def training_device(cfg: DictConfig) -> torch.device:
    gpu = str(cfg.trainer.accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda" if gpu else "cpu")


def resolve_precision(cfg: DictConfig) -> str:
    """trainer.precision=auto -> bf16-mixed where the training device computes bf16 natively, else 32-true;
    any other value (Lightning's names) as given."""
    setting = str(cfg.trainer.precision)
    if setting != "auto":
        return setting
    device = training_device(cfg)
    chosen = "bf16-mixed" if native_bf16(device) else "32-true"
    log.info("trainer.precision=auto: %s (%s%s native bf16)", chosen, machine_name(device),
             " has" if chosen == "bf16-mixed" else ": no")
    return chosen


def train(cfg: DictConfig) -> Path:
    """Train a style network as cfg says; returns the path of the exported model.safetensors."""
    system = check_config(cfg)
    set_max_image_pixels(cfg.data.get("max_image_pixels"))
    run_dir = Path(cfg.paths.run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    skipped_log = run_dir / "skipped_images.txt"
    datamodule = ContentDataModule(
        str(cfg.data.root), cfg.data.image_size, cfg.data.batch_size, cfg.data.num_workers, skipped_log,
        style_root=str(cfg.style_dataset.root) if system.uses_style_dataset else None,
        style_exclude=list(cfg.style_dataset.get("exclude") or []),
    )
    datamodule.scan()  # fail on a missing or empty folder before the loss network loads
    style_paintings = [str(path) for path in datamodule.scan_styles()]  # empty unless uses_style_dataset
    datamodule.write_skipped()
    module = system.from_config(cfg, style_paintings)
    module.schedule = (str(cfg.optimizer.schedule), int(cfg.optimizer.warmup_steps))
    precision = resolve_precision(cfg)
    # how this run trains, in the metadata of its checkpoints and model file (eval reports and tables read it)
    module.run_facts = {"training": {"precision": precision, "machine": machine_name(training_device(cfg))}}
    stopper = GracefulStop()
    callbacks = [
        PeriodicCheckpoint(run_dir / "checkpoints", cfg.checkpoint.every_n_steps, cfg.checkpoint.every_n_minutes),
        SampleGrid(sample_paths(cfg, datamodule), cfg.samples.size, cfg.samples.every_n_steps),
        StepProgressBar(refresh_rate=1),
        LearningRateMonitor(logging_interval="step"),  # TensorBoard's lr-Adam: the schedule as it ran
        stopper,
    ]
    evaluator = PeriodicEval(run_dir / "eval", list(cfg.eval.photos), cfg.eval.size, cfg.eval.every_n_steps) \
        if cfg.eval.every_n_steps else None
    callbacks += [evaluator] if evaluator else []
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    trainer = pl.Trainer(
        **{**OmegaConf.to_container(cfg.trainer, resolve=True), "precision": precision},
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,  # PeriodicCheckpoint writes them, atomically
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    started = time.monotonic()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    seconds = time.monotonic() - started - (evaluator.eval_seconds if evaluator else 0.0)  # training alone, this process's
    module.run_facts["training"]["seconds"] = round(seconds, 1)
    report_skipped(skipped_log)
    check_replicas(trainer, module)
    if stopper.received is not None and trainer.global_step < trainer.max_steps:  # a signal at the end: done anyway
        raise Interrupted(stopper.received, trainer.global_step, run_dir)
    model_path = run_dir / "model.safetensors"
    if trainer.is_global_zero:
        export(module, trainer.global_step, model_path)
    return model_path


def check_replicas(trainer: pl.Trainer, module: StyleSystem) -> None:
    """Under DDP, every rank gathers each rank's step and weights digest; rank 0 says whether they agree (they
    must: each step all-reduces the gradients, so every replica takes the same Adam step)."""
    if trainer.world_size < 2 or not torch.distributed.is_initialized():
        return
    mine = (trainer.global_rank, trainer.global_step, weights_digest(module.network.state_dict()))
    ranks: list[tuple[int, int, str] | None] = [None] * trainer.world_size
    torch.distributed.all_gather_object(ranks, mine)
    if not trainer.is_global_zero:
        return
    steps, digests = {rank[1] for rank in ranks}, {rank[2] for rank in ranks}
    if len(steps) == 1 and len(digests) == 1:
        log.info("DDP: %d ranks at step %d hold the same weights (sha256 %s)", len(ranks), steps.pop(), digests.pop()[:16])
    else:
        log.warning("DDP: the ranks disagree after training (rank, step, weights): %s",
                    ", ".join(f"({rank}, {step}, {digest[:16]})" for rank, step, digest in ranks))


class Interrupted(Exception):
    """The run stopped on a signal after writing last.ckpt; the message says how to resume."""

    def __init__(self, signum: int, step: int, run_dir: Path) -> None:
        self.signum = signum
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        resume = " ".join(["python train.py", *task_overrides(), f"hydra.run.dir={run_dir}", f"ckpt_path={checkpoint}"])
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint written to {checkpoint}. "
            f"Resume with:\n  {resume}"
        )


def task_overrides() -> list[str]:
    """The overrides this run was started with (without run dir and ckpt_path), for the resume command."""
    return [item for item in user_overrides() if not item.startswith(("hydra.run.dir=", "ckpt_path="))]


def report_skipped(skipped_log: Path) -> None:
    if skipped_log.is_file():
        count = len(skipped_log.read_text().splitlines())
        log.warning("%d unreadable image(s) were skipped; the list is in %s", count, skipped_log)


def export(module: StyleSystem, steps: int, path: Path) -> None:
    """Write the trained network and the metadata that describes it (as its checkpoints do) to a .safetensors file."""
    save_safetensors(module.network.cpu(), module.model_metadata(steps), path)
    log.info("exported %s (step %d); run directory: %s", path, steps, path.parent)


def train_or_exit(cfg: DictConfig) -> None:
    """The body of the @hydra.main entry points: user errors become one line on stderr and exit code 2;
    a run stopped by a signal says how to resume and exits 128 + the signal number (130 Ctrl-C, 143 SIGTERM)."""
    torch.set_float32_matmul_precision("high")
    keep_freed_memory()
    try:
        train(cfg)
    except StylenetError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:  # Ctrl-C outside the steps (loading, exporting) or a second one: no traceback
        print("interrupted (checkpoints/last.ckpt, if written, resumes the run)", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)


