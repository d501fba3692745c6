"""`stylenet serve`: the page's API (through httpx, in-process) and the page itself in a real headless Chromium
(marked `browser`: `pytest -m browser` runs exactly those; without a browser they skip and say why)."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from stylenet.models.export import save_safetensors
from stylenet.running.inference import load_model
from stylenet.models.kinds.adain import AdaINNet
from stylenet.models.kinds.arbitrary import ArbitraryStyleNet
from stylenet.models.kinds.multistyle import MultiStyleTransformerNet
from stylenet.models.loss_network import LossNetwork
from stylenet.models.modelfile import model_metadata
from stylenet.running.serve import Settings, create_app
from tests.conftest import PYTHON, run_env

STYLENET = str(Path(PYTHON).parent / "stylenet")
SCREENSHOT = os.environ.get("STYLENET_SCREENSHOT")  # where the browser test also saves its screenshot (the README's)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> Path:
    return data_dir / "content_test" / "baboon.jpg"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A folder as training leaves it: a single-style model in a run folder, and a multi-style model."""
    folder = tmp_path_factory.mktemp("serve") / "outputs"
    for part in ("run1/eval/step-000500", "run1/checkpoints", "run2/checkpoints"):
        (folder / part).mkdir(parents=True)
    shutil.copy(tiny_model, folder / "run1" / "model.safetensors")
    shutil.copy(tiny_model, folder / "run1" / "eval" / "step-000500" / "model.safetensors")  # eval's snapshot
    (folder / "run1" / "checkpoints" / "last.ckpt").write_bytes(b"the finished run's checkpoint")
    (folder / "run2" / "checkpoints" / "last.ckpt").write_bytes(b"a run still training")  # damaged, as it happens
    torch.manual_seed(0)
    network = MultiStyleTransformerNet(["starry_night", "the_scream"], channels=4, num_residual_blocks=1)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    save_safetensors(network, model_metadata(network, style={"names": ["starry_night", "the_scream"]}),
                     folder / "multi.safetensors")
    adain = AdaINNet(8, "caffe", LossNetwork("vgg19", "random", ["relu4_1"]).conv_state())
    save_safetensors(adain, model_metadata(adain, style={"name": "any"}), folder / "adain.safetensors")
    arbitrary = ArbitraryStyleNet(4, 1, 8, "caffe", LossNetwork("vgg19", "random", ["relu4_1"]).conv_state())
    with torch.no_grad():  # norms that differ from painting to painting
        for name, parameter in arbitrary.transfer.named_parameters():
            if name.endswith(("norm.weight", "norm.bias")):
                parameter[:-1].normal_(0.0, 0.5)
    save_safetensors(arbitrary, model_metadata(arbitrary, style={"name": "any"}), folder / "arbitrary.safetensors")
    return folder


@pytest.fixture(scope="module")
def client(models_dir: Path) -> TestClient:
    return TestClient(create_app(Settings([models_dir], device="cpu", max_upload_mb=2, max_pixels=3_000_000)))


def stylize(client: TestClient, photo: bytes, **fields: str) -> httpx.Response:
    return client.post("/api/stylize", files={"photo": ("photo.jpg", photo)}, data={"model": "starry_night", **fields})


def test_the_page_lists_the_shipped_models_and_the_folders(client: TestClient) -> None:
    assert "<title>stylenet</title>" in client.get("/").text
    style = client.get("/style.css")  # the look it shares with the web export's page
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css") and "#results" in style.text
    listing = client.get("/api/models").json()
    ids = [model["id"] for model in listing["models"] if not model["shipped"]]
    assert ids == ["0:adain.safetensors", "0:arbitrary.safetensors", "0:multi.safetensors", "0:run1/model.safetensors",
                   "0:run2/checkpoints/last.ckpt"]
    assert "starry_night" in [model["id"] for model in listing["models"]]
    assert listing["default"] == "starry_night"
    described = client.get("/api/model", params={"id": "0:multi.safetensors"}).json()
    assert described["kind"] == "multistyle" and described["styles"] == ["starry_night", "the_scream"]
    assert client.get("/api/painting", params={"id": "starry_night"}).headers["content-type"].startswith("image/")


def test_a_result_is_what_the_python_api_makes(client: TestClient, photo: Path) -> None:
    response = stylize(client, photo.read_bytes(), strength="0.7", size="200", preserve_color="true")
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="photo_starry_night.png"'
    expected = load_model("starry_night", "cpu").stylize(Image.open(photo), size=200, strength=0.7, preserve_colors=True)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(response.content))), np.asarray(expected))
    jpeg = stylize(client, photo.read_bytes(), size="128", format="jpeg")
    assert jpeg.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(jpeg.content)).size == (128, 128)


def test_a_multistyle_blend_and_a_folder_model(client: TestClient, photo: Path) -> None:
    data = photo.read_bytes()
    one = stylize(client, data, model="0:multi.safetensors", style="starry_night", size="64")
    blend = stylize(client, data, model="0:multi.safetensors", style="starry_night=0.5,the_scream=0.5", size="64")
    assert one.status_code == blend.status_code == 200 and one.content != blend.content
    mine = stylize(client, data, model="0:run1/model.safetensors", size="64")
    assert mine.status_code == 200 and 'filename="photo_tiny.png"' in mine.headers["content-disposition"]


def test_the_page_takes_a_stroke_size(client: TestClient, photo: Path) -> None:
    data = photo.read_bytes()
    default, larger = stylize(client, data, size="512"), stylize(client, data, size="512", stroke_size="4")
    assert default.status_code == larger.status_code == 200 and default.content != larger.content
    expected = load_model("starry_night", "cpu").stylize(Image.open(photo), size=512, stroke_size=4)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(larger.content))), np.asarray(expected))
    refused = stylize(client, data, stroke_size="0")
    assert refused.status_code == 400 and "stroke size must be between 0.25 and 64" in refused.json()["error"]


@pytest.mark.parametrize("model", ["0:adain.safetensors", "0:arbitrary.safetensors"])
def test_an_any_style_model_paints_with_an_uploaded_painting(client: TestClient, photo: Path, data_dir: Path, model: str) -> None:
    assert client.get("/api/model", params={"id": model}).json()["needs_style_image"] is True
    missing = stylize(client, photo.read_bytes(), model=model, size="64")
    assert missing.status_code == 400 and "upload one under Painting" in missing.json()["error"]
    results = []
    for painting in ("starry_night.jpg", "the_scream.jpg"):
        response = client.post("/api/stylize", data={"model": model, "size": "64"}, files={
            "photo": ("photo.jpg", photo.read_bytes()),
            "style_image": (painting, (data_dir / "styles" / painting).read_bytes())})
        assert response.status_code == 200, response.text
        results.append(response.content)
    assert results[0] != results[1]


def test_two_requests_at_once_with_different_paintings_each_get_their_own_picture(
    models_dir: Path, photo: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One cached any-style model serves both: each request binds its painting to a model of its own, so one
    request's painting never reaches the other's picture (both bind, then both stylize)."""
    import threading

    from stylenet.running import serve
    from stylenet.running.tiling import Runner

    catalog = serve.Catalog(Settings([models_dir], device="cpu"))
    form = {"model": "0:adain.safetensors", "size": "64"}
    paintings = [(data_dir / "styles" / name).read_bytes() for name in ("starry_night.jpg", "the_scream.jpg")]
    alone = [serve.stylize(catalog, form, photo.read_bytes(), painting)[0] for painting in paintings]
    assert alone[0] != alone[1]
    both_bound = threading.Barrier(2, timeout=60)
    run = Runner.__call__

    def after_both_bound(self: Runner, *args: object, **kwargs: object) -> torch.Tensor:
        both_bound.wait()
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "__call__", after_both_bound)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda painting: serve.stylize(catalog, form, photo.read_bytes(), painting)[0], paintings))
    assert answers == alone


@pytest.mark.parametrize(("fields", "upload", "status", "message"), [
    ({}, b"not an image", 400, "the photo is not an image this server can read"),
    ({}, b"", 400, "the photo is empty"),
    ({"model": "../../../etc/passwd"}, None, 404, "no model '../../../etc/passwd' here"),
    ({"model": "/work/main/stylenet/pretrained/starry_night.safetensors"}, None, 404, "no model"),
    ({"model": "0:run2/checkpoints/last.ckpt"}, None, 400, "outputs/run2/checkpoints/last.ckpt: "),
    ({"strength": "2"}, None, 400, "strength must be between 0 and 1"),
    ({"size": "big"}, None, 400, "size must be a number, got 'big'"),
    ({"format": "gif"}, None, 400, "format must be one of png, jpeg"),
])
def test_bad_requests_are_a_message_and_the_server_carries_on(client: TestClient, photo: Path, fields: dict,
                                                              upload: bytes | None, status: int, message: str) -> None:
    response = stylize(client, photo.read_bytes() if upload is None else upload, **fields)
    assert response.status_code == status and message in response.json()["error"]
    assert stylize(client, photo.read_bytes(), size="32").status_code == 200


def test_huge_uploads_and_decompression_bombs_are_refused_before_decoding(client: TestClient) -> None:
    too_big = client.post("/api/stylize", files={"photo": ("big.bin", b"\0" * (3 * 2**20))}, data={"model": "starry_night"})
    assert too_big.status_code == 413 and "over this server's limit of 2 MB" in too_big.json()["error"]
    bomb = png(Image.new("1", (4000, 4000)))  # 16 megapixels in a few kilobytes
    assert len(bomb) < 10_000
    refused = stylize(client, bomb)
    assert refused.status_code == 413 and "4000x4000 = 16 megapixels; this server takes up to 3" in refused.json()["error"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(models_dir: Path) -> str:
    """`stylenet serve` as a user starts it, on a free port."""
    port = free_port()
    process = subprocess.Popen([STYLENET, "serve", "--port", str(port), "--models", str(models_dir), "--device", "cpu"],
                               env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/api/models", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


@pytest.mark.slow
def test_concurrent_requests_queue_and_all_finish(server: str, photo: Path) -> None:
    def one(index: int) -> int:
        response = httpx.post(server + "/api/stylize", files={"photo": ("p.jpg", photo.read_bytes())},
                              data={"model": "starry_night", "size": str(96 + index)}, timeout=120)
        return response.status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, range(6))) == [200] * 6


@pytest.mark.slow
def test_a_second_server_on_the_same_port_is_one_line(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    result = subprocess.run([STYLENET, "serve", "--port", port], env=run_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    remote = subprocess.run([STYLENET, "serve", "--models", "/no/such/folder"], env=run_env(), capture_output=True,
                            text=True, timeout=60)
    assert remote.returncode == 2 and "--models /no/such/folder: not a folder" in remote.stderr


def result_pixels(page, card) -> np.ndarray:
    """The result image the page shows, read back through the browser (its blob URL)."""
    encoded = page.evaluate("""async (img) => {
        const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
        let text = ""; for (const b of bytes) text += String.fromCharCode(b); return btoa(text); }""",
        card.query_selector("img.result"))
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_stylizes_a_photo_shows_errors_and_keeps_serving(browser, server: str, photo: Path,
                                                                  tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 720})
    page.goto(server)
    page.wait_for_function("document.querySelector('#model').options.length > 0 && !document.querySelector('#stylize').disabled")
    assert page.input_value("#model") == "starry_night" and page.is_visible("#painting")
    page.eval_on_selector("#strength", "(el) => { el.value = '0.8'; el.dispatchEvent(new Event('input')); }")
    page.select_option("#size", "256")
    page.set_input_files("#photos", str(photo))
    page.wait_for_selector(".card[data-state=done]", timeout=120_000)
    card = page.query_selector(".card")
    expected = load_model("starry_night", "cpu").stylize(Image.open(photo), size=256, strength=0.8)
    assert np.array_equal(result_pixels(page, card), np.asarray(expected))
    link = card.query_selector("a.download")
    assert link.get_attribute("download") == "baboon_starry_night.png" and link.is_visible()
    page.wait_for_timeout(300)  # the result image is drawn
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    if SCREENSHOT:
        jpeg = SCREENSHOT.lower().endswith((".jpg", ".jpeg"))
        page.screenshot(path=SCREENSHOT, **({"quality": 85, "type": "jpeg"} if jpeg else {}))

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:2000])  # a truncated JPEG
    page.set_input_files("#photos", str(broken))
    page.wait_for_selector(".card[data-state=failed]", timeout=60_000)
    assert "broken.jpg: the photo could not be decoded" in page.inner_text("#error") and page.is_visible("#error")

    page.select_option("#model", "0:multi.safetensors")  # the server answers again, with a folder's model
    page.wait_for_selector("#styles input[data-style=the_scream]")
    page.set_input_files("#photos", str(photo))
    page.wait_for_selector(".card[data-state=done]", timeout=120_000)
    assert not page.is_visible("#error")
    page.close()
