"""`stylenet export MODEL --format web`: a static folder that stylizes photos in the browser with ONNX Runtime Web.

The folder: index.html, app.js, worker.js (stylenet/web/export/), style.css (stylenet/web/, serve's page's too),
model.onnx (verified against the module like every export), model.json (what the page shows and feeds the
model), the painting's thumbnail where this machine has it, and ONNX Runtime Web's files in ort/. Nothing in it
calls a server: any static host serves it, and photos never leave the browser.

ONNX Runtime Web comes from npm, not from the wheel (its WebAssembly files are 15 MB, 44 MB with WebGPU): the
first web export runs `npm pack onnxruntime-web@ORT_WEB_VERSION`, checks the tarball against the pinned sha512
and keeps the files it needs in stylenet's cache (stylenet.core.files.cache_root). $STYLENET_ORT_WEB names a folder
that already holds them (the package's dist/) for machines without npm.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from stylenet.core.errors import StylenetError, __version__, brief
from stylenet.models.registry import StyleInput
from stylenet.core.files import cache_root
from stylenet.models.kinds import kind_of
from stylenet.running.strokes import BACK_PROJECTIONS, working_size

ORT_WEB_VERSION = "1.31.1"  # onnxruntime-web on npm; its integrity below is npm's, checked on every fetch
ORT_WEB_INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
# the page loads one of two builds: WASM everywhere (15 MB), WebGPU where the browser has it (29 MB, fetched only
# by a browser that uses it; --no-webgpu leaves it out of the folder)
RUNTIME_FILES = {
    "wasm": ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
    "webgpu": ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"),
}
PAGE_FILES = ("export/index.html", "export/app.js", "export/worker.js", "style.css")  # in stylenet/web/ (style.css: serve's too)
# the page's result sizes (long side); photos above MAX_SIDE are scaled down to it: a 2048-px photo runs within
# the browser's WebAssembly memory (4 GB), larger ones are `stylenet stylize`'s, which tiles
SIZES = (512, 1024, 2048)
MAX_SIDE = 2048
FP16_TOLERANCE = 2 / 255  # fp16 weights are kept when the model's output moves by less than this, else fp32
THUMBNAIL_SIDE = 480


def runtime_files(webgpu: bool) -> list[str]:
    """The ONNX Runtime Web files a folder ships: the WASM build, and the WebGPU one unless --no-webgpu."""
    return [name for build in (("wasm", "webgpu") if webgpu else ("wasm",)) for name in RUNTIME_FILES[build]]


def runtime_dir(webgpu: bool = True) -> Path:
    """A folder holding ONNX Runtime Web's files: $STYLENET_ORT_WEB, else the cache, filled by npm if empty."""
    needed = runtime_files(webgpu)
    given = os.environ.get("STYLENET_ORT_WEB")
    if given:
        missing = [name for name in needed if not (Path(given) / name).is_file()]
        if missing:
            raise StylenetError(f"$STYLENET_ORT_WEB={given} lacks {missing[0]}: point it at onnxruntime-web@{ORT_WEB_VERSION}'s "
                                "dist/ folder, or unset it to fetch the files with npm")
        return Path(given)
    cached = runtime_cache()
    if all((cached / name).is_file() for name in needed):
        return cached
    return fetch_runtime(cached)


def runtime_cache() -> Path:
    """Where a fetched ONNX Runtime Web is kept: stylenet's cache (stylenet.core.files.cache_root)."""
    return cache_root() / "onnxruntime-web" / ORT_WEB_VERSION


def fetch_runtime(target: Path) -> Path:
    """npm pack onnxruntime-web@ORT_WEB_VERSION, check its sha512, keep the runtime's files in target."""
    npm = shutil.which("npm")
    if npm is None:
        raise StylenetError(f"the web export needs ONNX Runtime Web's files and npm is not installed: install Node.js "
                            f"(npm), or set STYLENET_ORT_WEB to a copy of onnxruntime-web@{ORT_WEB_VERSION}'s dist/ folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching onnxruntime-web@{ORT_WEB_VERSION} with npm (once; kept in {target})", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as work:
        try:
            done = subprocess.run([npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--silent", "--pack-destination", work],
                                  capture_output=True, text=True, timeout=600, cwd=work)
        except subprocess.TimeoutExpired:
            raise StylenetError("npm pack onnxruntime-web took over 10 minutes: check npm's registry access and retry") from None
        tarballs = list(Path(work).glob("onnxruntime-web-*.tgz"))
        if done.returncode != 0 or not tarballs:
            said = brief(Exception(done.stderr or done.stdout), 200, last=True)
            raise StylenetError(f"npm pack onnxruntime-web@{ORT_WEB_VERSION} failed ({said}): check npm's registry access, "
                                "or set STYLENET_ORT_WEB to the package's dist/ folder")
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarballs[0].read_bytes()).digest()).decode()
        if digest != ORT_WEB_INTEGRITY:
            raise StylenetError(f"onnxruntime-web@{ORT_WEB_VERSION} from npm does not match its pinned checksum; not used")
        unpacked = Path(work) / "files"
        unpacked.mkdir()
        with tarfile.open(tarballs[0]) as archive:
            for build in RUNTIME_FILES.values():
                for name in build:
                    member = archive.extractfile(f"package/dist/{name}")
                    if member is None:
                        raise StylenetError(f"onnxruntime-web@{ORT_WEB_VERSION} has no dist/{name}; not used")
                    (unpacked / name).write_bytes(member.read())
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    return target


def halve_weights(model: Any) -> Any:
    """The ONNX model with its float32 weights stored as float16 and cast back at load: half the download, the
    same float32 arithmetic in every backend (ONNX Runtime folds the casts into constants once)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    kept, casts = [], []
    for initializer in graph.initializer:
        if initializer.data_type != TensorProto.FLOAT or np.prod(initializer.dims) < 16:
            kept.append(initializer)
            continue
        halved = numpy_helper.from_array(numpy_helper.to_array(initializer).astype(np.float16), initializer.name + "__fp16")
        kept.append(halved)
        casts.append(helper.make_node("Cast", [halved.name], [initializer.name], to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def write_model(network: nn.Module, metadata: dict[str, Any], folder: Path, weights: str) -> tuple[str, float]:
    """model.onnx in folder (the verified ONNX export, its weights halved where that moves the output by less
    than FP16_TOLERANCE); returns the weights' precision kept and the largest difference from the module."""
    import onnx

    from stylenet.models.export import export_model, verify
    from stylenet.models.formats import OnnxNetwork

    path = folder / "model.onnx"
    worst = export_model(network, metadata, path, "onnx")
    if weights == "fp32":
        return "fp32", worst
    halved = folder / "model.fp16.onnx"
    onnx.save(halve_weights(onnx.load(str(path))), str(halved))
    try:
        worst_halved = verify(network, OnnxNetwork(halved), FP16_TOLERANCE)
    except StylenetError:
        halved.unlink()  # model.onnx is still the fp32 export
        print(f"fp16 weights move this model's output by over {FP16_TOLERANCE * 255:.0f}/255: keeping fp32 weights")
        return "fp32", worst
    os.replace(halved, path)
    return "fp16", worst_halved


def thumbnail(painting: Path, target: Path) -> str | None:
    """A painting as a JPEG thumbnail beside the page; its file name, or None when it cannot be read."""
    from PIL import Image

    from stylenet.core.images import resize_long_side

    try:
        with Image.open(painting) as image:
            image = image.convert("RGB")
            if max(image.size) > THUMBNAIL_SIDE:
                image = resize_long_side(image, THUMBNAIL_SIDE)
            image.save(target, quality=88)
    except OSError:
        return None
    return target.name


def paintings(model: Any, folder: Path, baked: Path | None) -> dict[str, str]:
    """Thumbnails of the paintings a model was trained on (or the one baked in), where this machine has them:
    {style name: file}."""
    from stylenet.running.inference import painting_for

    if baked is not None:
        written = thumbnail(baked, folder / "painting_0.jpg")
        return {baked.stem: written} if written else {}
    if model.model_kind.style_input is StyleInput.IMAGE:
        return {}
    names = model.styles or [(model.metadata.get("style") or {}).get("name") or "painting"]
    found = {}
    for name in names:
        try:
            path = painting_for(model, name if model.styles else None, None)
        except StylenetError:
            continue
        written = thumbnail(path, folder / f"painting_{len(found)}.jpg")
        if written:
            found[name] = written
    return found


def describe(network: nn.Module, metadata: dict[str, Any], weights: str, difference: float, shown: dict[str, str],
             source: str, webgpu: bool) -> dict[str, Any]:
    """model.json: what the page shows (names, paintings, the model's recipe) and how it feeds the model."""
    kind = kind_of(network)
    style = metadata.get("style") or {}
    return {
        "stylenet": __version__, "source": source, "kind": kind.name, "input": kind.style_input.value,
        "inputs": kind.input_names(),
        # what the page's title and downloads say, as `stylenet serve` names them: an any-style model by its name
        # or file (its style.name is "any (--style-image)"), the others by their painting
        "label": Path(source).stem if kind.style_input is StyleInput.IMAGE else style.get("name") or source,
        "styles": list(metadata.get("styles") or []), "paintings": shown, "webgpu": webgpu,
        "style_size": kind.style_size if kind.style_input is StyleInput.IMAGE else None,
        "weights": weights, "onnx_runtime_web": ORT_WEB_VERSION, "sizes": list(SIZES), "max_side": MAX_SIDE,
        "eval": (metadata.get("eval") or {}).get("placement_label"), "verified_difference": difference,
        "working_size": working_size(metadata),  # the default stroke size keeps the look of this size (strokes.py)
        "back_projections": BACK_PROJECTIONS,
    }


def export_web(model: Any, network: nn.Module, metadata: dict[str, Any], output: Path, *, source: str,
               weights: str = "fp16", webgpu: bool = True, overwrite: bool = False, baked: Path | None = None) -> dict[str, Any]:
    """Write the page's folder at output (whole or not at all); returns its model.json."""
    kind = kind_of(network)
    if kind.no_onnx:
        raise StylenetError(f"a {kind.name} model cannot run in the browser: the page runs ONNX models and {kind.no_onnx}; "
                            "export an ONNX-capable model (a per-painting model, multistyle, or the any-style `any`)")
    if output.exists() and not overwrite:
        raise StylenetError(f"{output} exists; pass --overwrite to replace it, or choose another -o")
    if output.exists() and not output.is_dir():
        raise StylenetError(f"-o {output} is a file: the web export writes a folder")
    runtime = runtime_dir(webgpu)  # before the minutes of export: a missing npm is said at once
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        precision, worst = write_model(network, metadata, staging, weights)
        shown = paintings(model, staging, baked)
        description = describe(network, metadata, precision, worst, shown, source, webgpu)
        (staging / "model.json").write_text(json.dumps(description, indent=1, sort_keys=True) + "\n")
        web = resources.files("stylenet") / "web"
        for name in PAGE_FILES:
            (staging / Path(name).name).write_bytes((web / name).read_bytes())
        (staging / "ort").mkdir()
        for name in runtime_files(webgpu):
            shutil.copyfile(runtime / name, staging / "ort" / name)
        (staging / "ort" / "README.txt").write_text(
            f"ONNX Runtime Web {ORT_WEB_VERSION} (npm: onnxruntime-web), Copyright (c) Microsoft Corporation, MIT License.\n")
        for path in [staging, *staging.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # mkdtemp's 0700 would hide the folder from a web server
        if output.exists():
            retired = output.with_name(f".{output.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(output, retired)
            os.replace(staging, output)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return description


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
