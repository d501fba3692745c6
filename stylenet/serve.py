"""A local web page to stylize photos: `stylenet serve [--models DIR ...] [--host 127.0.0.1] [--port 7860]`.

The page (stylenet/web/index.html, one file) talks to this small FastAPI app, and the app calls the same Python
API as the CLI: `load_model` and `StyleModel.stylize`, so a picture from the page is the picture
`stylenet stylize` makes with the same settings.

Safe by default:
- it listens on 127.0.0.1 unless --host says otherwise (and then warns);
- models come only from the shipped names and the files found in the --models folders; the browser picks one by
  an id the server made, so nothing the browser sends is ever opened as a path;
- uploads over --max-upload-mb are refused before they are read, images over --max-pixels before they are
  decoded (decompression bombs), and anything Pillow cannot read is a message on the page;
- one stylization runs at a time and at most --queue requests wait for it ("busy" beyond that), so a burst of
  requests cannot run the machine out of memory;
- uploads live in memory for the one request and are gone with its response: nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from stylenet.errors import StylenetError, brief
from stylenet.images import IMAGE_ERRORS, open_image
from stylenet.inference import StyleModel, load_model
from stylenet.zoo import names, path_of

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "web" / "index.html"
HOST, PORT = "127.0.0.1", 7860
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_UPLOAD_MB = 25  # one request's body: a photo (and an AdaIN painting)
MAX_PIXELS = 40_000_000  # decoded pixels of an upload: a 40-megapixel camera photo
MAX_RESULT_PIXELS = 16_000_000  # the stylized image (the size control scales it down to fit)
QUEUE = 8  # requests that may wait while one runs
LOADED = 4  # models kept in memory
MODEL_SUFFIXES = (".safetensors", ".onnx", ".pt", ".pth", ".ckpt")  # what load_model reads
SIZES = (0, 256, 512, 1024, 2048)  # long side of the result; 0: the photo's own
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg")}


class RequestError(Exception):
    """A request the page sent that cannot be served: shown on the page as it is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Settings:
    folders: list[Path] = field(default_factory=list)
    device: str = "auto"
    precision: str = "auto"  # bf16 where the hardware computes it natively
    max_upload_mb: float = MAX_UPLOAD_MB
    max_pixels: int = MAX_PIXELS
    queue: int = QUEUE


@dataclass
class Entry:
    """A model the page may use: a shipped name or a file in a configured folder."""

    id: str
    label: str
    path: Path
    shipped: bool


class Catalog:
    """The models the page lists, by id; rescanned on each listing, so new training outputs show up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entries: dict[str, Entry] = {}
        self.loaded: OrderedDict[tuple[str, float], StyleModel] = OrderedDict()
        self.scan()

    def scan(self) -> list[Entry]:
        entries = [Entry(name, name, path_of(name), True) for name in names()]
        for index, folder in enumerate(self.settings.folders):
            for path in model_files(folder):
                relative = path.relative_to(folder).as_posix()
                entries.append(Entry(f"{index}:{relative}", f"{folder.name}/{relative}", path, False))
        self.entries = {entry.id: entry for entry in entries}
        return entries

    def entry(self, model_id: str) -> Entry:
        entry = self.entries.get(model_id)
        if entry is None or not entry.path.is_file():
            raise RequestError(f"no model {model_id!r} here (reload the page for the current list)", 404)
        return entry

    def model(self, model_id: str) -> StyleModel:
        """The loaded model (the last few stay loaded; a file changed on disk is loaded again)."""
        entry = self.entry(model_id)
        key = (model_id, entry.path.stat().st_mtime)
        if key not in self.loaded:
            try:
                self.loaded[key] = load_model(entry.path, self.settings.device, self.settings.precision)
            except StylenetError as error:
                raise RequestError(f"{entry.label}: {error}") from None
            while len(self.loaded) > LOADED:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(key)
        return self.loaded[key]

    def describe(self, model_id: str) -> dict[str, Any]:
        """What the page needs to show the model's controls: its kind, styles and painting."""
        entry = self.entry(model_id)
        model = self.model(model_id)
        metadata = model.metadata
        style = (metadata.get("style") or {}).get("name")
        judged = (metadata.get("eval") or {}).get("placement_label")
        return {
            "id": entry.id, "label": entry.label, "kind": model.model_kind.name, "painting_name": style,
            "styles": model.styles, "needs_style_image": model.model_kind.style_input == "style_image",
            "painting": painting(model) is not None, "eval": judged, "recipe": metadata.get("recipe"),
        }


def model_files(folder: Path) -> list[Path]:
    """The model files under a folder, as training runs leave them: each run's model.safetensors (and any other
    model file), a run still in training by its checkpoints/last.ckpt; the eval/ snapshots and the other
    checkpoints are left out."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in MODEL_SUFFIXES or not path.is_file() or "eval" in path.relative_to(folder).parts:
            continue
        if path.suffix.lower() == ".ckpt":
            run = path.parent.parent
            if path.name != "last.ckpt" or path.parent.name != "checkpoints" or (run / "model.safetensors").is_file():
                continue
        found.append(path)
    return found


def painting(model: StyleModel) -> Path | None:
    """The painting a model was trained on, where this machine has it (as `stylenet eval` finds it)."""
    from stylenet.judge import painting_for

    if model.model_kind.style_input == "style_image":
        return None
    with contextlib.suppress(StylenetError):
        return painting_for(model, None, None)
    return None


def decode(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """An uploaded image, upright, RGB or RGBA; over max_pixels is refused from its header, before decoding."""
    if not data:
        raise RequestError(f"the {what} is empty: pick an image file")
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except UnidentifiedImageError:
        raise RequestError(f"the {what} is not an image this server can read (PNG, JPEG, WebP, TIFF, BMP, GIF, ...)") from None
    except IMAGE_ERRORS as error:
        raise RequestError(f"the {what} is not an image this server can read ({brief(error, 100)})") from None
    if width * height > max_pixels:
        raise RequestError(f"the {what} is {width}x{height} = {width * height / 1e6:.0f} megapixels; this server takes "
                           f"up to {max_pixels / 1e6:.0f} (scale it down, or start it with a larger --max-pixels)", 413)
    try:
        return open_image(io.BytesIO(data), keep_alpha=True)
    except IMAGE_ERRORS as error:
        raise RequestError(f"the {what} could not be decoded: it is damaged or truncated ({brief(error, 100)})") from None


def result_size(image: Image.Image, size: int) -> int | None:
    """The result's long side: the chosen one (0: the photo's), scaled down to MAX_RESULT_PIXELS."""
    width, height = image.size
    long_side = size or max(width, height)
    short_side = long_side * min(width, height) / max(width, height)
    if long_side * short_side > MAX_RESULT_PIXELS:
        long_side = int((MAX_RESULT_PIXELS * max(width, height) / min(width, height)) ** 0.5)
    return None if long_side == max(width, height) else long_side


def parse_number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"{what} must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise RequestError(f"{what} must be between {low:g} and {high:g}, got {value:g}")
    return value


def stylize(catalog: Catalog, form: dict[str, Any], photo: bytes, painting_data: bytes | None) -> tuple[bytes, str, str]:
    """(image bytes, media type, file name) for one request: the same calls as `stylenet stylize`."""
    settings = catalog.settings
    entry = catalog.entry(str(form.get("model", "")))
    model = catalog.model(entry.id)
    strength = parse_number(str(form.get("strength", "1")), "strength", 0, 1)
    size = int(parse_number(str(form.get("size", "0")), "size", 0, 8192))
    preserve = str(form.get("preserve_color", "false")).lower() in ("1", "true", "on", "yes")
    file_format = str(form.get("format", "png")).lower()
    if file_format not in FORMATS:
        raise RequestError(f"format must be one of {', '.join(FORMATS)}, got {file_format!r}")
    image = decode(photo, "photo", settings.max_pixels)
    try:
        if model.model_kind.style_input == "style_weights":
            model.use_style(str(form.get("style") or model.styles[0]))
        elif model.model_kind.style_input == "style_image":
            if not painting_data:
                raise RequestError("this AdaIN model paints with any painting: upload one under Painting")
            model.use_style_images([decode(painting_data, "painting", settings.max_pixels).convert("RGB")])
        result = model.stylize(image, size=result_size(image, size), strength=strength, preserve_colors=preserve)
    except StylenetError as error:
        raise RequestError(str(error)) from None
    pillow_format, media_type = FORMATS[file_format]
    if pillow_format == "JPEG":
        result = result.convert("RGB")
    buffer = io.BytesIO()
    result.save(buffer, pillow_format, **({"quality": 95} if pillow_format == "JPEG" else {}))
    stem = Path(str(form.get("filename") or "photo")).stem or "photo"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{stem}_{model_name(entry, model)}")[:120]
    return buffer.getvalue(), media_type, f"{safe}.{'jpg' if file_format == 'jpeg' else 'png'}"


def model_name(entry: Entry, model: StyleModel) -> str:
    """What a download is named after: the shipped name, else the painting (or the file's name)."""
    if entry.shipped:
        return entry.id
    style = (model.metadata.get("style") or {}).get("name")
    return style if isinstance(style, str) and style else entry.path.stem


class UploadLimit:
    """ASGI middleware: a request body over the limit is answered 413 without being read (by its declared length)
    or as soon as it passes the limit (chunked bodies)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.too_large(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self.too_large(send)

    async def too_large(self, send: Any) -> None:
        body = json.dumps({"error": f"the upload is over this server's limit of {self.max_bytes / 2**20:.0f} MB "
                                    "(scale the photo down, or start the server with a larger --max-upload-mb)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(settings: Settings) -> UploadLimit:  # noqa: C901
    """The FastAPI app: the page, the model list and the stylize endpoint."""
    catalog = Catalog(settings)
    app = FastAPI(title="stylenet", docs_url=None, redoc_url=None, openapi_url=None)
    gate = asyncio.Semaphore(1)
    waiting = 0

    @app.exception_handler(RequestError)
    async def request_error(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        entries = await run_in_threadpool(catalog.scan)
        listed = [{"id": e.id, "label": e.label, "shipped": e.shipped} for e in entries]
        default = "starry_night" if "starry_night" in catalog.entries else (listed[0]["id"] if listed else None)
        return {"models": listed, "default": default, "sizes": list(SIZES), "max_upload_mb": settings.max_upload_mb}

    @app.get("/api/model")
    async def model(id: str) -> dict[str, Any]:  # noqa: A002 - the query parameter's name
        async with gate:
            return await run_in_threadpool(catalog.describe, id)

    @app.get("/api/painting")
    async def model_painting(id: str) -> Response:  # noqa: A002
        async with gate:
            found = painting(await run_in_threadpool(catalog.model, id))
        if found is None:
            raise RequestError("this model's painting is not on this machine", 404)
        return FileResponse(found)

    @app.post("/api/stylize")
    async def stylize_endpoint(request: Request) -> Response:
        nonlocal waiting
        if waiting >= settings.queue + 1:
            raise RequestError(f"busy: {waiting} requests are already waiting; try again in a moment", 503)
        async with request.form(max_files=2, max_fields=16) as form:
            photo = form.get("photo")
            if photo is None or isinstance(photo, str):
                raise RequestError("no photo in the request: pick a photo")
            painting_upload = form.get("style_image")
            photo_data = await photo.read()
            painting_data = await painting_upload.read() if painting_upload is not None and not isinstance(painting_upload, str) else None
            fields = {key: value for key, value in form.items() if isinstance(value, str)}
            fields.setdefault("filename", photo.filename or "photo")
        waiting += 1
        try:
            async with gate:
                started = time.perf_counter()
                data, media_type, filename = await run_in_threadpool(stylize, catalog, fields, photo_data, painting_data)
                seconds = time.perf_counter() - started
        finally:
            waiting -= 1
        return Response(data, media_type=media_type, headers={
            "Content-Disposition": f'attachment; filename="{filename}"', "X-Stylenet-Seconds": f"{seconds:.2f}",
            "Cache-Control": "no-store",
        })

    return UploadLimit(app, int(settings.max_upload_mb * 2**20))


def check_port(host: str, port: int) -> None:
    """A port another program holds is a one-line error before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StylenetError(f"cannot listen on {host}:{port} ({error.strerror}): choose another with --port N") from None


def serve(settings: Settings, host: str = HOST, port: int = PORT) -> None:
    """Run the page until Ctrl-C."""
    for folder in settings.folders:
        if not folder.is_dir():
            raise StylenetError(f"--models {folder}: not a folder (give folders holding model files, e.g. outputs/)")
    import uvicorn

    app = create_app(settings)
    check_port(host, port)
    if host not in LOCAL_HOSTS:
        log.warning("warning: serving on %s: anyone who can reach this machine on port %d can use the page and "
                    "its CPU/GPU (the default, 127.0.0.1, is this machine only)", host, port)
    if settings.precision == "auto":
        from stylenet.tiling import auto_precision_note

        log.info("%s", auto_precision_note(settings.device, inference=True))
    shown = f"[{host}]" if ":" in host else host
    log.info("stylenet page: http://%s:%d (Ctrl-C stops it)", "127.0.0.1" if host in ("0.0.0.0", "::") else shown, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
