"""`stylenet bench web`: seconds per photo of an exported web page (`stylenet export --format web`) in headless
Chromium, beside ONNX Runtime in Python running the same model.onnx on the same machine.

The page is served by Python's plain http.server on loopback, as any static host would serve it: no cross-origin
isolation headers, so ONNX Runtime Web's WebAssembly runs one thread. Python's rows give 1 thread (the same
work) and torch's thread count (what `stylenet stylize` of an .onnx file uses). Each browser figure is the
median of the page's own timing of the model (session.run), and page_s the click-to-picture time (decoding,
the model, the PNG), over --repeats runs after --warmup.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from stylenet.core.errors import StylenetError, import_optional
from stylenet.models.registry import StyleInput


def find_chromium() -> str | None:
    """Debian's chromium (what `make install-browser` installs), or a Chromium/Chrome on the PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium() -> str:
    found = find_chromium()
    if found is None:
        raise StylenetError("bench web needs a Chromium: apt-get install chromium (make install-browser)")
    return found


def python_server(root: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(root)]


@contextlib.contextmanager
def static_server(root: Path, command: Callable[[Path, int], list[str]] = python_server) -> Iterator[str]:
    """A static file server over root on a free loopback port (Python's http.server, or command(root, port)); yields
    its URL once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(command(root, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def page_seconds(page: Any, photo: Path, warmup: int, repeats: int) -> tuple[float, float]:
    """(median model seconds, median click-to-picture seconds) of the page stylizing this photo."""
    model, total = [], []
    page.set_input_files("#photos", str(photo))  # the first run: it starts on the drop
    for index in range(warmup + repeats):
        if index:
            page.click("#stylize")
        started = time.perf_counter()
        page.wait_for_selector(".card[data-state=done], .card[data-state=failed]", timeout=600_000)
        if page.get_attribute(".card", "data-state") != "done":
            raise StylenetError(f"the page failed: {page.inner_text('#error')}")
        if index >= warmup:
            model.append(float(page.get_attribute(".card", "data-ms")) / 1000)
            total.append(time.perf_counter() - started)
    return statistics.median(model), statistics.median(total)


def bench_web(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    from stylenet.benchmarks.bench import bench_painting, machine, median_seconds, parse_size, pattern_image
    from stylenet.core.images import to_pil
    from stylenet.running.inference import load_model
    from stylenet.running.webexport import ORT_WEB_VERSION, export_web

    playwright = import_optional("playwright.sync_api", "bench web", "pip install playwright (make install)")
    executable = chromium()
    cpu = torch.device("cpu")
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder, playwright.sync_playwright() as driver:
        root = Path(folder)
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        for name in args.model.split(","):
            model = load_model(name, "cpu", "fp32")
            site = root / "site"
            shutil.rmtree(site, ignore_errors=True)
            export_web(model, model.loaded, dict(model.metadata), site, source=name, webgpu=False)
            painting = None
            if model.model_kind.style_input is StyleInput.IMAGE:
                painting = root / "painting.png"
                bench_painting().save(painting)
            sessions = {threads: onnx_network(site / "model.onnx", threads) for threads in dict.fromkeys([1, default_threads])}
            with static_server(root) as url:
                page = browser.new_page()
                page.goto(f"{url}/site/?backend=wasm")
                page.wait_for_function("!document.querySelector('#stylize').disabled || document.querySelector('#error').textContent")
                if page.inner_text("#error"):
                    raise StylenetError(f"the page did not start: {page.inner_text('#error')}")
                page.select_option("#size", "0")
                if painting is not None:
                    page.set_input_files("#style-image", str(painting))
                for size in args.sizes.split(","):
                    height, width = parse_size(size)
                    image = pattern_image(height, width, cpu)
                    photo = root / f"photo-{width}x{height}.png"
                    to_pil(image[0]).save(photo)
                    seconds, page_s = page_seconds(page, photo, args.warmup, args.repeats)
                    common = {"bench": "web", "model": name, "size": f"{width}x{height}"}
                    yield {**machine(cpu, args), **common, "runtime": f"onnxruntime-web {ORT_WEB_VERSION} wasm",
                           "browser": f"Chromium {browser.version}", "threads": int(page.get_attribute("body", "data-threads")),
                           "s_per_image": round(seconds, 3), "page_s": round(page_s, 3)}
                    inputs = [image] + ([torch.rand(1, 3, 512, 512)] if painting is not None else [])
                    for threads, onnx in sessions.items():
                        python_s = median_seconds(lambda: onnx(*inputs), cpu, args.warmup, args.repeats)
                        yield {**machine(cpu, args), **common, "runtime": f"onnxruntime {onnx_version()} (Python)",
                               "browser": "-", "threads": threads, "s_per_image": round(python_s, 3), "page_s": "-"}
                page.close()
        browser.close()


def onnx_network(path: Path, threads: int) -> Any:  # stylenet.models.formats.OnnxNetwork
    """The file in ONNX Runtime as `stylenet stylize` runs it, on this many threads (it takes torch's count)."""
    from stylenet.models.formats import OnnxNetwork

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return OnnxNetwork(path)
    finally:
        torch.set_num_threads(before)


def onnx_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
