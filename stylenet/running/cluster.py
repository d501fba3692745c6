"""`stylenet stylize ... --engine ray`: the local engine's jobs as a Ray Data pipeline, on this machine or a cluster.

    jobs (jobs.plan, or a listing through pyarrow for URIs) -> the ones whose output is missing
      -> ray.data.from_items(tasks) -> map_batches(Stylizer, a pool of long-lived actors) -> results to the driver

A task is a few images (--batch-size) or one video. Each actor loads the model once (the driver ships the
model file and paintings with the actor's arguments, so nodes need only stylenet installed, not the files) and
runs jobs.run_job on each file: the same code, options and atomic writes as the local engine, so the outputs are
the same bytes. Ray retries the tasks of an actor or node that dies; a retried file is written again under the
same name (atomically), so every output appears once and none is torn. A rerun skips finished outputs.

Inputs and outputs are local paths (shared by every node on a cluster: NFS, a mounted bucket) or URIs of any
filesystem pyarrow opens (file://, s3://, gs://, hdfs://): workers copy a URI's file in, stylize it locally and
copy the result out (an object store shows an upload only once it is complete).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from collections import defaultdict
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from tqdm import tqdm

from stylenet.running.backends import ModelSpec
from stylenet.running.jobs import Job, Outcome, Summary, check_target, output_suffix, pending, plan, run_job
from stylenet.core.errors import StylenetError, brief
from stylenet.core.images import image_extensions
from stylenet.running.options import IMAGES_PER_TASK, StylizeOptions
from stylenet.running.video import VIDEO_EXTENSIONS, is_video

log = logging.getLogger(__name__)

INSTALL = "pip install 'stylenet[ray]'"


@dataclass
class RaySettings:
    address: str | None = None  # None: start a Ray on this machine; "auto", "HOST:6379" or "ray://HOST:10001": join one
    workers: int | None = None  # None: one per GPU (with gpus_per_worker), else one per CPU
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None  # None: workers share the CPUs, else 1 each (torch threads follow)
    images_per_task: int = IMAGES_PER_TASK  # a video is a task of its own


def require_ray() -> None:
    missing = [name for name in ("ray", "pyarrow", "pandas") if importlib.util.find_spec(name) is None]
    if missing:
        raise StylenetError(f"--engine ray needs {', '.join(missing)}: {INSTALL} (or drop --engine ray)")


def is_uri(text: str | Path) -> bool:
    return "://" in str(text)


# --- planning: which files go where ---------------------------------------------------------------------------

def plan_jobs(inputs: list[str], output: str | None, extension: str | None) -> list[Job]:
    """The local engine's plan for paths; for URIs the same mirrored layout, listed through pyarrow."""
    if not any(is_uri(text) for text in [*inputs, output or ""]):
        return plan(inputs, Path(output) if output else None, extension)
    if output is None:
        raise StylenetError("with URI inputs give the output folder: -o URI (or a path)")
    root = output.rstrip("/")
    jobs = []
    for text in inputs:
        base, files = list_files(text)
        folder = f"{root}/{PurePosixPath(base).name}" if len(inputs) > 1 and files != [base] else root
        for path in files:
            relative = PurePosixPath(path).relative_to(base) if path != base else PurePosixPath(path).name
            target = str(PurePosixPath(relative).with_suffix(output_suffix(Path(path), extension)))
            jobs.append(Job(uri_of(text, path), f"{folder}/{target}"))  # type: ignore[arg-type]
    if not jobs:
        raise StylenetError(f"no images found in {' '.join(inputs)}")
    for job in jobs:
        check_target(Path(job.source), Path(job.target))
    return jobs


def filesystem_of(text: str) -> tuple[Any, str]:
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(text if is_uri(text) else os.path.abspath(text))
    except Exception as error:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError ...
        raise StylenetError(f"{text}: pyarrow cannot open this filesystem ({brief(error)})") from None


def list_files(text: str) -> tuple[str, list[str]]:
    """(the folder outputs are relative to, the image and video files) of one URI or path."""
    from pyarrow import fs

    filesystem, path = filesystem_of(text)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return path, [path]
    if info.type != fs.FileType.Directory:
        raise StylenetError(f"input not found: {text} (give image or video files or folders)")
    extensions = image_extensions() | VIDEO_EXTENSIONS
    found = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    files = sorted(item.path for item in found if item.type == fs.FileType.File
                   and PurePosixPath(item.path).suffix.lower() in extensions)
    return path, files


def uri_of(text: str, path: str) -> str:
    """A path that pyarrow listed, as a URI (or path) like the input it came from."""
    if not is_uri(text):
        return path
    return f"{text.split('://', 1)[0]}://{path}"


def finished(output: str | None) -> Callable[[Job], bool]:
    """Whether a job's output exists: a stat each for paths, one listing of the output folder for a URI (a question
    per file would be a request per file to an object store)."""
    if not is_uri(output or ""):
        return lambda job: Path(job.target).exists()
    from pyarrow import fs

    filesystem, root = filesystem_of(output)
    listed = filesystem.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
    found = {uri_of(output, item.path) for item in listed if item.type == fs.FileType.File}
    return lambda job: str(job.target) in found


def tasks_of(jobs: list[Job], images_per_task: int) -> list[dict[str, list[str]]]:
    """Videos first, one per task (the longest work starts first), then the images, images_per_task per task."""
    videos = [[job] for job in jobs if is_video(Path(job.source))]
    images = [job for job in jobs if not is_video(Path(job.source))]
    chunks = videos + [images[i:i + images_per_task] for i in range(0, len(images), images_per_task)]
    return [{"sources": [str(job.source) for job in chunk], "targets": [str(job.target) for job in chunk]}
            for chunk in chunks]


# --- the workers ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShippedModel:
    """A ModelSpec with the bytes of its files, so that a worker on a node without them can load it."""

    spec: ModelSpec
    files: dict[str, bytes]  # the spec's path -> its bytes (model file, paintings)

    @classmethod
    def of(cls, spec: ModelSpec) -> ShippedModel:
        paths = [spec.model] + [path for path, _ in spec.style_images]
        return cls(spec, {path: Path(path).read_bytes() for path in paths if Path(path).is_file()})

    def load(self, folder: Path) -> Any:
        """Write the files into folder (their names kept: the suffix says the format) and load the model."""
        local: dict[str, str] = {}
        for index, (path, data) in enumerate(self.files.items()):
            copy = folder / str(index) / Path(path).name
            copy.parent.mkdir(parents=True)
            copy.write_bytes(data)
            local[path] = str(copy)
        spec = replace(self.spec, model=local.get(self.spec.model, self.spec.model),
                       style_images=tuple((local.get(path, path), weight) for path, weight in self.spec.style_images))
        return spec.load()


class Stylizer:
    """One Ray actor: loads the model once, then stylizes the files of each task it is given."""

    shipped: ShippedModel  # set on the subclass that results() makes for each run
    options: StylizeOptions
    threads: int
    max_pixels: int  # --max-image-pixels as the driver set it: a worker is a process of its own

    def __init__(self) -> None:
        import torch

        from stylenet.core.images import set_max_image_pixels

        set_max_image_pixels(self.max_pixels)
        torch.set_num_threads(self.threads)
        self.folder = tempfile.TemporaryDirectory(prefix="stylenet-worker-")
        self.model = self.shipped.load(Path(self.folder.name))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        """A task's files -> a column per Outcome field, and "source": what the driver adds to its Summary."""
        rows = [{"source": source, **asdict(self.run(source, target))}
                for sources, targets in zip(batch["sources"], batch["targets"]) for source, target in zip(sources, targets)]
        return {name: [row[name] for row in rows] for name in rows[0]}

    def run(self, source: str, target: str) -> Outcome:
        if not (is_uri(source) or is_uri(target)):
            outcome = run_job(self.model, Job(Path(source), Path(target)), self.options, progress=False)
        else:
            outcome = self.run_staged(source, target)
        return replace(outcome, target=target)  # a str: Arrow holds no Path

    def run_staged(self, source: str, target: str) -> Outcome:
        """A file on another filesystem: copy it here, stylize it, copy the result there."""
        with tempfile.TemporaryDirectory(dir=self.folder.name) as folder:
            local_source = Path(folder) / ("in" + PurePosixPath(source).suffix)
            local_target = Path(folder) / ("out" + PurePosixPath(target).suffix)
            try:
                copy_in(source, local_source)
            except OSError as error:
                return Outcome(target, error=f"cannot read {source}: {brief(error)}")
            outcome = run_job(self.model, Job(local_source, local_target), self.options, progress=False)
            if outcome.error is None:
                copy_out(local_target, target)
            return outcome


def copy_in(source: str, local: Path) -> None:
    filesystem, path = filesystem_of(source)
    with filesystem.open_input_stream(path) as stream, open(local, "wb") as out:
        while chunk := stream.read(1 << 20):
            out.write(chunk)


def copy_out(local: Path, target: str) -> None:
    """Write a finished file to a URI: on a local filesystem under a temp name, then renamed (atomic); an object
    store makes an upload visible only when it is complete."""
    from pyarrow import fs

    filesystem, path = filesystem_of(target)
    parent = str(PurePosixPath(path).parent)
    filesystem.create_dir(parent, recursive=True)
    atomic = isinstance(filesystem, fs.LocalFileSystem)
    written = f"{parent}/.{PurePosixPath(path).name}.{uuid.uuid4().hex}.tmp" if atomic else path
    with open(local, "rb") as data, filesystem.open_output_stream(written) as out:
        while chunk := data.read(1 << 20):
            out.write(chunk)
    if atomic:
        filesystem.move(written, path)


# --- the driver -----------------------------------------------------------------------------------------------

@contextmanager
def ray_session(address: str | None) -> Iterator[TextIO]:
    """Join the cluster at address, or start a Ray on this machine (stopped again at the end); yields the terminal.

    Ray's C++ core and raylet write notes straight to file descriptors 1 and 2 (one alarming-looking line per actor
    pool about restarts, one per task retried after Ctrl-C); while Ray runs they go to a log file, and our progress
    bar to the terminal."""
    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)  # its start-up and execution notes are not the user's business
    if address is not None:
        reachable(address)
    started = not ray.is_initialized()  # a program that called ray.init() itself keeps its connection
    log_path = Path(tempfile.gettempdir()) / f"stylenet-ray-{os.getuid()}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(log_path, "ab") as ray_log, os.fdopen(os.dup(saved[2]), "w") as terminal:
            for fd in saved:
                os.dup2(ray_log.fileno(), fd)
            try:
                if started:
                    init(address)
                yield terminal
            finally:
                if started:
                    ray.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                for fd, original in saved.items():
                    os.dup2(original, fd)
    finally:
        for original in saved.values():
            os.close(original)


def reachable(address: str, seconds: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address that nothing answers: one line now, not Ray's minutes of retries."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as error:
        raise StylenetError(f"--address {address}: nothing answers there ({error.strerror or error}); start the cluster's "
                            "head with `ray start --head` and pass the address it prints") from None


def init(address: str | None) -> None:
    import ray

    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"join the Ray cluster at {address}" if address else "start Ray on this machine"
        raise StylenetError(f"--engine ray could not {where}: {brief(error)} (start one with `ray start --head`, then "
                            "pass its address, or leave out --address)") from None


def largest_node_cpus() -> float:
    """The most CPUs one live node of the Ray cluster has (0 when none says): a worker cannot span nodes."""
    import ray

    return max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0)


def pool_size(settings: RaySettings, tasks: int) -> tuple[int, float]:
    """(workers, CPUs per worker). GPU workers: --workers, else one per GPU. CPU workers: --cpus-per-worker each,
    else --workers share the cluster's CPUs (at most one node's) or one worker per CPU. Never more than tasks."""
    import ray

    resources = ray.cluster_resources()
    if settings.gpus_per_worker:
        workers = settings.workers or int(resources.get("GPU", 0) // settings.gpus_per_worker)
        if not resources.get("GPU"):
            raise StylenetError(f"--gpus-per-worker {settings.gpus_per_worker:g}: this Ray cluster has no GPUs "
                                "(leave it out to stylize on CPUs)")
        cpus = settings.cpus_per_worker or 1.0
    elif settings.cpus_per_worker:
        cpus = settings.cpus_per_worker
        largest = largest_node_cpus()
        if cpus > largest:  # Ray would wait for such a node for ever
            raise StylenetError(f"--cpus-per-worker {cpus:g}: no node of this Ray cluster has that many CPUs (the "
                                f"largest has {largest:g}); ask for {largest:g} or fewer")
        workers = settings.workers or max(1, int(resources.get("CPU", 1) // cpus))
    elif settings.workers:
        largest = largest_node_cpus() or 1
        workers, cpus = settings.workers, float(max(1, min(largest, resources.get("CPU", 1) // settings.workers)))
    else:
        workers, cpus = max(1, int(resources.get("CPU", 1))), 1.0
    return max(1, min(workers, tasks)), cpus


def settled_backend(shipped: ShippedModel, threads: int) -> ShippedModel:
    """The shipped model with --backend auto decided here, once, for CPU workers of `threads` threads: every worker
    runs the one backend (eager PyTorch or ONNX Runtime), so one run's files all come from the same arithmetic.
    Decided by each worker, the choice was a timing taken under the other workers' load, and could differ."""
    if shipped.spec.backend != "auto":
        return shipped
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="stylenet-driver-") as folder:
            engine = replace(shipped, spec=replace(shipped.spec, device="cpu")).load(Path(folder)).engine
    finally:
        torch.set_num_threads(before)
    if engine not in ("eager", "onnx"):  # a TorchScript or ONNX file runs as it is
        return shipped
    print(f"backend auto: every worker runs {'ONNX Runtime' if engine == 'onnx' else 'eager PyTorch'} "
          f"({threads} thread{'s' if threads > 1 else ''} each; --backend eager|onnx to choose)", file=sys.stderr, flush=True)
    return replace(shipped, spec=replace(shipped.spec, backend=engine))


def results(shipped: ShippedModel, tasks: list[dict], options: StylizeOptions,
            settings: RaySettings, terminal: TextIO) -> Iterator[tuple[str, Outcome]]:
    """Run the tasks on a pool of Stylizer actors; yields each file's (source, outcome) as it finishes. terminal:
    where notes to the user go while Ray holds the process's stderr (ray_session)."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts files
    context.print_on_execution_start = False
    workers, cpus = pool_size(settings, len(tasks))
    # The model travels inside the actor class (pickled by value), not as constructor arguments in the object store:
    # Ray restarts an actor whose node died (its tasks retried) only from arguments that outlive that node.
    from PIL import Image

    threads = max(1, int(cpus))
    if not settings.gpus_per_worker:
        with redirect_stderr(terminal):  # the backend's timing note and the decision, to the user
            shipped = settled_backend(shipped, threads)
    worker = type("Stylizer", (Stylizer,), {"shipped": shipped, "options": options, "threads": threads,
                                            "max_pixels": Image.MAX_IMAGE_PIXELS})
    dataset = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        worker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus, num_gpus=settings.gpus_per_worker or None,
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="pandas"):
        for record in batch.to_dict("records"):
            record["error"] = record["error"] if isinstance(record["error"], str) else None  # pandas: None or NaN
            yield record["source"], Outcome(**{field.name: record[field.name] for field in fields(Outcome)})


def stylize_on_ray(spec: ModelSpec, inputs: list[str], output: str | None, extension: str | None,
                   options: StylizeOptions, settings: RaySettings, overwrite: bool = False) -> Summary:
    """Stylize the inputs as the local engine would (same files, names, options), on Ray."""
    require_ray()
    if settings.images_per_task < 1:
        raise StylenetError(f"--images-per-task {settings.images_per_task}: must be at least 1")
    if settings.workers is not None and settings.workers < 1:
        raise StylenetError(f"--workers {settings.workers}: must be at least 1")
    if settings.cpus_per_worker is not None and settings.cpus_per_worker <= 0:
        raise StylenetError(f"--cpus-per-worker {settings.cpus_per_worker:g}: must be more than 0")
    if settings.gpus_per_worker < 0:
        raise StylenetError(f"--gpus-per-worker {settings.gpus_per_worker:g}: must be 0 (CPU workers) or more")
    started = time.perf_counter()
    jobs = plan_jobs(inputs, output, extension)
    todo, existing = pending(jobs, overwrite, finished(output))
    summary = Summary(existing=[job.target for job in existing])
    if todo:
        # a wrong model, style or painting: one line here, before any worker starts (on the CPU: the driver may have no GPU)
        replace(spec, device="cpu", precision="fp32", backend="eager").load()
        tasks = tasks_of(todo, settings.images_per_task)
        with ray_session(settings.address) as terminal, tqdm(
            total=len(todo), desc="stylize (ray)", unit="file", disable=len(todo) < 2, dynamic_ncols=True, file=terminal,
        ) as bar:
            for source, outcome in results(ShippedModel.of(spec), tasks, options, settings, terminal):
                summary.add(source, outcome)
                summary.first_seconds = summary.first_seconds or time.perf_counter() - started
                bar.update()
        sweep(todo)
    summary.seconds = time.perf_counter() - started
    return summary


def sweep(jobs: list[Job]) -> None:
    """Remove the temp files that workers killed mid-write left beside these outputs (local paths): .NAME.XXXX.tmp,
    as files.atomic_write and copy_out name them. One listing per folder, not one per output."""
    names: dict[Path, set[str]] = defaultdict(set)
    for job in jobs:
        if not is_uri(job.target):
            names[Path(job.target).parent].add(Path(job.target).name)
    for folder, written in names.items():
        for stale in folder.glob(".*.tmp"):
            if stale.name[1:].rsplit(".", 2)[0] in written:
                stale.unlink(missing_ok=True)
