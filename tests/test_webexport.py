"""`stylenet export MODEL --format web`: the folder it writes, its errors, and the page itself stylizing in a real
headless Chromium from a plain static file server (marked `browser`: skipped, with the reason, without Chromium)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from stylenet.models.export import save_safetensors
from stylenet.models.formats import OnnxNetwork
from stylenet.running.inference import load_model
from stylenet.models.kinds.multistyle import ConditionalInstanceNorm2d, MultiStyleTransformerNet
from stylenet.models.modelfile import model_metadata
from stylenet.benchmarks import webbench
from stylenet.running.webexport import RUNTIME_FILES, runtime_dir
from tests.conftest import run_env
from tests.test_stylize_cli import run

SCREENSHOT = os.environ.get("STYLENET_WEB_SCREENSHOT")  # a path: keep the page's screenshot (README's picture)


@pytest.fixture
def fake_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in runtime files: what the folder's layout tests need without npm (the browser tests use the real one)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    for build in RUNTIME_FILES.values():
        for name in build:
            (dist / name).write_text(f"// {name}\n")
    monkeypatch.setenv("STYLENET_ORT_WEB", str(dist))
    return dist


@pytest.mark.slow  # two ONNX exports with their checks (16 s): `make test` runs it, test-fast stays under 3 minutes
def test_web_export_writes_a_page_its_verified_model_and_the_runtime(tiny_model: Path, tmp_path: Path, fake_runtime: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    assert run("export", tiny_model, "--format", "web", "-o", site) == 0
    assert "python3 -m http.server 8000 -d" in capsys.readouterr().out
    names = {path.relative_to(site).as_posix() for path in site.rglob("*") if path.is_file()}
    assert {"index.html", "app.js", "worker.js", "style.css", "model.json", "model.onnx"} <= names
    assert {f"ort/{name}" for build in RUNTIME_FILES.values() for name in build} <= names
    described = json.loads((site / "model.json").read_text())
    assert described["kind"] == "transformer" and described["inputs"] == ["image"] and described["weights"] == "fp16"
    # the folder's model is the module's, fp16 weights or not: run it as the browser's ONNX Runtime would
    images = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    expected = load_model(tiny_model, "cpu", "fp32").loaded(images)
    assert (OnnxNetwork(site / "model.onnx")(images) - expected).abs().max() < 2 / 255
    weights = [tensor for tensor in onnx.load(str(site / "model.onnx")).graph.initializer if np.prod(tensor.dims) >= 16]
    assert weights and all(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in weights)  # half the download

    # again without --overwrite: one line, the folder untouched; --no-webgpu leaves the 29 MB build out
    (site / "keep").write_text("mine")
    assert run("export", tiny_model, "--format", "web", "-o", site) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and (site / "keep").read_text() == "mine"
    assert run("export", tiny_model, "--format", "web", "-o", site, "--overwrite", "--no-webgpu", "--weights", "fp32") == 0
    assert not (site / "keep").exists() and not (site / "ort" / RUNTIME_FILES["webgpu"][0]).exists()
    assert json.loads((site / "model.json").read_text())["weights"] == "fp32"


def test_web_export_errors_say_what_to_do(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # no npm and nothing cached: one line naming both ways out, and no folder
    monkeypatch.delenv("STYLENET_ORT_WEB", raising=False)
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert run("export", tiny_model, "--format", "web", "-o", tmp_path / "site") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "npm is not installed" in error and "STYLENET_ORT_WEB" in error
    assert not (tmp_path / "site").exists()
    # a model the browser's runtime cannot run (no ONNX export): said before anything is fetched
    assert run("export", "wct", "--format", "web", "-o", tmp_path / "site") == 2
    assert "cannot run in the browser" in capsys.readouterr().err and not (tmp_path / "site").exists()
    monkeypatch.setenv("STYLENET_ORT_WEB", str(tmp_path))  # a folder without the files
    assert run("export", tiny_model, "--format", "web", "-o", tmp_path / "site") == 2
    assert "lacks ort.wasm.min.mjs" in capsys.readouterr().err
    assert run("export", tiny_model, "--format", "onnx", "--no-webgpu", "-o", tmp_path / "m.onnx") == 2
    assert "use them with --format web" in capsys.readouterr().err


# --- the page in Chromium -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A plain static file server over a folder, no Python process behind it: Node's (static_server.mjs beside
    this file), or Python's http.server where there is no Node. (its URL, the folder)"""
    root = tmp_path_factory.mktemp("sites")
    node = shutil.which("node")

    def node_server(folder: Path, port: int) -> list[str]:
        return [str(node), str(Path(__file__).with_name("static_server.mjs")), str(folder), str(port)]

    with webbench.static_server(root, node_server if node else webbench.python_server) as url:
        yield url, root


@pytest.fixture(scope="module")
def real_runtime() -> Iterator[None]:
    """The real ONNX Runtime Web, from the user's own cache (the tests' STYLENET_CACHE is a fresh folder): `make
    install-browser` fetches it there ahead, else npm does now, once per machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("STYLENET_CACHE", raising=False)
        found = runtime_dir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STYLENET_ORT_WEB", str(found))
        yield


def export_site(model: str | Path, root: Path, name: str) -> str:
    assert run("export", model, "--format", "web", "-o", root / name, "--no-webgpu") == 0
    return name


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1200, "height": 760})
    page.goto(url + "/?backend=wasm")  # headless Chromium has no WebGPU adapter here; the page would fall back anyway
    page.wait_for_function("!document.querySelector('#stylize').disabled || document.querySelector('#error').textContent",
                           timeout=60_000)
    assert page.inner_text("#error") == "" and "Runs on WebAssembly" in page.inner_text("#runtime")
    return page


def stylize_on_page(page, photo: Path, painting: Path | None = None) -> np.ndarray:
    """Drop a photo on the page (and choose a painting); the result it shows, read back through the browser."""
    if painting is not None:
        page.set_input_files("#style-image", str(painting))
    page.evaluate("document.querySelector('#results').innerHTML = ''")
    page.set_input_files("#photos", str(photo))
    page.wait_for_selector(".card[data-state=done], .card[data-state=failed]", timeout=120_000)
    assert page.get_attribute(".card", "data-state") == "done", page.inner_text("#error")
    encoded = page.evaluate("""async () => {
        const bytes = new Uint8Array(await (await fetch(document.querySelector('.card img.result').src)).arrayBuffer());
        let text = ""; for (const b of bytes) text += String.fromCharCode(b); return btoa(text); }""")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")).astype(int)


def assert_close(browser_result: np.ndarray, python_result: Image.Image, levels: int = 3) -> None:
    expected = np.asarray(python_result.convert("RGB")).astype(int)
    assert browser_result.shape == expected.shape
    assert np.abs(browser_result - expected).max() <= levels  # of 255


@pytest.fixture(scope="module")
def photo(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "fruits.png"
    Image.open(data_dir / "content_test" / "fruits.jpg").convert("RGB").resize((160, 120), Image.Resampling.LANCZOS).save(path)
    return path


@pytest.mark.slow
@pytest.mark.browser
def test_exported_page_stylizes_like_stylenet_stylize(browser, static_server, real_runtime, photo: Path, tmp_path: Path) -> None:
    url, root = static_server
    page = open_page(browser, f"{url}/{export_site('starry_night', root, 'starry')}")
    opened_from_disk = browser.new_page()
    opened_from_disk.goto((root / "starry" / "index.html").as_uri())
    assert "python3 -m http.server 8000" in opened_from_disk.inner_text("#error")  # what to do, not a blank page
    opened_from_disk.close()
    model = load_model("starry_night", "cpu", "fp32")
    page.select_option("#size", "0")  # the photo's own size: no resampling on either side
    assert_close(stylize_on_page(page, photo), model.stylize(Image.open(photo)))
    page.eval_on_selector("#strength", "(el) => { el.value = '0.6'; el.dispatchEvent(new Event('input')); }")
    page.check("#preserve-color")
    assert_close(stylize_on_page(page, photo), model.stylize(Image.open(photo), strength=0.6, preserve_colors=True))
    link = page.query_selector(".card a.download")
    assert link.get_attribute("download") == "fruits_starry_night.png" and link.is_visible()
    page.uncheck("#preserve-color")
    page.eval_on_selector("#strength", "(el) => { el.value = '1'; el.dispatchEvent(new Event('input')); }")
    larger = tmp_path / "larger.png"  # above the model's 256-px working size: the default keeps its look
    Image.open(photo).resize((384, 288), Image.Resampling.LANCZOS).save(larger)
    assert_close(stylize_on_page(page, larger), model.stylize(Image.open(larger)))
    page.select_option("#stroke-size", "2")
    assert_close(stylize_on_page(page, larger), model.stylize(Image.open(larger), stroke_size=2))
    page.wait_for_timeout(300)
    page.screenshot(path=SCREENSHOT or str(tmp_path / "page.png"), full_page=True)
    page.set_input_files("#photos", {"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": photo.read_bytes()[:500]})
    page.wait_for_selector(".card[data-state=failed]", timeout=60_000)
    assert "broken.jpg: the photo could not be decoded" in page.inner_text("#error")
    page.close()

    shutil.copytree(root / "starry", root / "unrunnable")  # a model this browser's runtime cannot load: said on the page
    (root / "unrunnable" / "model.onnx").write_bytes(b"\x08\x07not a graph")
    page = browser.new_page()
    page.goto(f"{url}/unrunnable/?backend=wasm")
    page.wait_for_function("document.querySelector('#error').textContent", timeout=60_000)
    assert "cannot run this model" in page.inner_text("#error") and page.is_disabled("#stylize")
    page.close()


@pytest.mark.slow
@pytest.mark.browser
def test_exported_page_blends_styles_and_takes_any_painting(browser, static_server, real_runtime, photo: Path, tmp_path: Path,
                                                            data_dir: Path) -> None:
    url, root = static_server
    torch.manual_seed(0)
    network = MultiStyleTransformerNet(["calm", "wild"], channels=8, num_residual_blocks=1)
    with torch.no_grad():  # two clearly different styles: the norms' scales and shifts per style
        for module in network.modules():
            if isinstance(module, ConditionalInstanceNorm2d):
                module.weight.normal_(1.0, 0.5)
                module.bias.normal_(0.0, 0.5)
    multi = save_safetensors(network, model_metadata(network), tmp_path / "multi.safetensors")
    page = open_page(browser, f"{url}/{export_site(multi, root, 'multi')}")
    page.select_option("#size", "0")
    assert page.locator("#styles input[data-style]").count() == 2
    page.eval_on_selector("#styles input[data-style=wild]", "(el) => { el.value = '0.5'; el.dispatchEvent(new Event('input')); }")
    model = load_model(multi, "cpu", "fp32")
    model = model.with_style("calm=1,wild=0.5")
    assert_close(stylize_on_page(page, photo), model.stylize(Image.open(photo)))
    page.close()

    painting = tmp_path / "scream.png"  # at the model's painting size already: both sides read it unresampled
    Image.open(data_dir / "styles" / "the_scream.jpg").convert("RGB").resize((410, 512), Image.Resampling.LANCZOS).save(painting)
    page = open_page(browser, f"{url}/{export_site('any', root, 'any')}")
    page.select_option("#size", "0")
    model = load_model("any", "cpu", "fp32")
    model = model.with_paintings([Image.open(painting)])
    assert_close(stylize_on_page(page, photo, painting), model.stylize(Image.open(photo)))
    assert page.get_attribute(".card a.download", "download") == "fruits_any.png"  # named as `stylenet serve` names it
    page.close()


@pytest.mark.slow
@pytest.mark.browser
def test_bench_web_times_the_page_beside_python(browser, real_runtime) -> None:
    # its own process: Playwright's sync API runs one driver per process, and the browser fixture holds this one's
    done = subprocess.run([sys.executable, "-m", "stylenet", "bench", "web", "--sizes", "64x48", "--warmup", "0", "--repeats", "1"],
                          capture_output=True, text=True, timeout=300, env=run_env())
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [row["runtime"].split()[0] for row in rows][:2] == ["onnxruntime-web", "onnxruntime"]
    assert all(row["s_per_image"] > 0 and row["size"] == "64x48" for row in rows)
    assert rows[0]["browser"].startswith("Chromium") and rows[0]["threads"] == 1
