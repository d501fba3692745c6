"""A local web page to stylize photos: `stylenet serve [--models DIR ...] [--host 127.0.0.1] [--port 7860]`.

The page (stylenet/web/index.html, one file) talks to this small FastAPI app, and the app calls the same Python
API as the CLI: `load_model` and `StyleModel.stylize`, so a picture from the page is the picture
`stylenet stylize` makes with the same settings.

Safe by default:
- it listens on 127.0.0.1 unless --host says otherwise (and then warns);
- models come only from the shipped names and the files found in the --models folders; the browser picks one by
  an id the server made, so nothing the browser sends is ever opened as a path;
- uploads over --max-upload-mb are refused by their declared length before they are read, or (chunked) as soon
  as they pass it; images over --max-pixels before they are decoded (decompression bombs); anything Pillow cannot
  read is a message on the page;
- one stylization runs at a time and at most --queue requests wait for it ("busy" beyond that); a request takes
  its place before its upload is read, so at most --queue + 1 uploads are in memory at once, however many
  clients send slowly at the same time;
- an upload must arrive in time: 408 after 30 s without a byte, or 5 minutes in all;
- an answer given before the upload has all arrived (busy, too large, malformed, too slow) is followed by
  reading and discarding the rest of it for up to 30 s before the connection closes ("lingering close"), so
  clients that send their whole upload before they read (as simple HTTP clients do) see the answer, not a reset;
- uploads are read and parsed here, in memory (python-multipart's parser, not Starlette's form, which spools
  parts over 1 MB to temp files), and are gone with the response: nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from stylenet.core.errors import StylenetError, brief
from stylenet.models.registry import StyleInput
from stylenet.core.images import IMAGE_ERRORS, open_image
from stylenet.running.inference import StyleModel, load_model
from stylenet.running.strokes import MAX_STROKE_SIZE, MIN_STROKE_SIZE
from stylenet.models.zoo import names, path_of

log = logging.getLogger(__name__)
parser_log = logging.getLogger(f"{__name__}.multipart")  # python-multipart warns what the 400 answer says
parser_log.setLevel(logging.ERROR)

PAGE = Path(__file__).parent.parent / "web" / "index.html"
STYLESHEET = PAGE.with_name("style.css")  # shared with the web export's page
HOST, PORT = "127.0.0.1", 7860
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_UPLOAD_MB = 25  # one request's body: a photo (and an any-style model's painting)
MAX_PIXELS = 40_000_000  # decoded pixels of an upload: a 40-megapixel camera photo
MAX_RESULT_PIXELS = 16_000_000  # the stylized image (the size control scales it down to fit)
QUEUE = 8  # requests that may wait while one runs
STALL_SECONDS = 30.0  # an upload that sends nothing for this long gives its place up (a stalled or hostile client)
UPLOAD_SECONDS = 300.0  # one upload, however it trickles: 25 MB at 0.7 Mbit/s (a slow phone link) fits
# after an answer sent before the upload has all arrived (503, 413, 400, 408), the rest of it is read and thrown
# away for up to this long and this much before the connection closes: nginx's lingering close (its 30 s)
LINGER_SECONDS, LINGER_BYTES = 30.0, 64 * 2**20
MAX_FIELD_BYTES = 64 * 1024  # a form field that is not a file: a model id, a blend of styles
MAX_FILES, MAX_FIELDS = 2, 16  # the page sends a photo (and a painting) and at most nine fields
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
            "styles": model.styles, "needs_style_image": model.model_kind.style_input is StyleInput.IMAGE,
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
    from stylenet.running.inference import painting_for

    if model.model_kind.style_input is StyleInput.IMAGE:
        return None
    with contextlib.suppress(StylenetError):
        return painting_for(model, None, None)
    return None


def decode(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """An uploaded image, upright, RGB or RGBA; over max_pixels is refused from its header, before decoding."""
    if not data:
        raise RequestError(f"the {what} is empty: pick an image file")
    try:
        with warnings.catch_warnings():  # Pillow's, which Python prints in two lines: for a bomb the check below
            warnings.simplefilter("ignore")  # decides; damaged metadata, open_image logs in one line
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Image.DecompressionBombError:  # over twice Pillow's limit, where it reads no further than the header
        raise RequestError(f"the {what} is too large: its header claims over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                           f"megapixels; this server takes up to {max_pixels / 1e6:.0f} (scale it down)", 413) from None
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
    stroke = form.get("stroke_size")  # absent: the model's look at any size
    stroke_size = parse_number(str(stroke), "stroke size", MIN_STROKE_SIZE, MAX_STROKE_SIZE) if stroke else None
    file_format = str(form.get("format", "png")).lower()
    if file_format not in FORMATS:
        raise RequestError(f"format must be one of {', '.join(FORMATS)}, got {file_format!r}")
    image = decode(photo, "photo", settings.max_pixels)
    try:
        # the request's own bound model: the cached one is shared by every request and never changed
        takes_painting = model.model_kind.style_input is StyleInput.IMAGE
        if takes_painting and not painting_data:
            raise RequestError("this any-style model paints with any painting: upload one under Painting")
        style = str(form.get("style") or model.styles[0]) if model.model_kind.style_input is StyleInput.WEIGHTS else None
        painting = [decode(painting_data, "painting", settings.max_pixels).convert("RGB")] if takes_painting else None
        model = model.styled(style, painting)
        result = model.stylize(image, size=result_size(image, size), strength=strength, preserve_colors=preserve,
                               stroke_size=stroke_size)
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


class Admission:
    """The places for /api/stylize: one stylizing and up to --queue waiting. A request takes its place before its
    upload is read and keeps it until its answer, so at most queue + 1 uploads are ever in memory; `bodies` counts
    the uploads being held and `most_bodies` the most at once (the load test reads them)."""

    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.taken = self.bodies = self.most_bodies = 0

    @contextlib.contextmanager
    def place(self) -> Iterator[Callable[[], None]]:
        """A place (busy beyond queue + 1), given back on every path; yields `hold`, called as the upload arrives."""
        if self.taken > self.queue:
            raise RequestError(f"busy: this server takes {self.taken} request(s) at once (one stylized at a time, "
                               f"--queue {self.queue} waiting); try again in a moment", 503)
        self.taken += 1
        held = False

        def hold() -> None:
            nonlocal held
            if not held:
                held, self.bodies = True, self.bodies + 1
                self.most_bodies = max(self.most_bodies, self.bodies)

        try:
            yield hold
        finally:
            self.taken -= 1
            self.bodies -= int(held)


class Form:
    """A multipart/form-data body parsed in memory as it arrives: text fields and files (name -> (filename, data))."""

    def __init__(self, boundary: bytes) -> None:
        self.fields: dict[str, str] = {}
        self.files: dict[str, tuple[str, bytes]] = {}
        self.header = self.value = self.disposition = b""
        self.name, self.filename, self.data = "", None, bytearray()
        self.counts = {"files": 0, "fields": 0}  # parts seen, duplicates included
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self.part_begin, "on_header_field": self.header_field,
            "on_header_value": self.header_value, "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished, "on_part_data": self.part_data, "on_part_end": self.part_end,
        })
        self.parser.logger = parser_log

    def part_begin(self) -> None:
        self.disposition, self.filename, self.data = b"", None, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        if self.header.lower() == b"content-disposition":
            self.disposition = self.value
        self.header = self.value = b""

    def headers_finished(self) -> None:
        options = parse_options_header(self.disposition)[1]
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self.filename = None if filename is None else filename.decode("utf-8", "replace")
        self.counts["fields" if filename is None else "files"] += 1
        if self.counts["files"] > MAX_FILES or self.counts["fields"] > MAX_FIELDS:
            raise RequestError(f"the form has too many parts (the page sends a photo, a painting and at most "
                               f"{MAX_FIELDS} fields): send one photo per request")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self.data += data[start:end]
        if self.filename is None and len(self.data) > MAX_FIELD_BYTES:
            raise RequestError(f"the form field {self.name[:40]!r} is over {MAX_FIELD_BYTES // 1024} KB: send files "
                               "as files")

    def part_end(self) -> None:
        if self.filename is None:
            self.fields[self.name] = self.data.decode("utf-8", "replace")
        else:
            self.files[self.name] = (self.filename, bytes(self.data))
        self.data = bytearray()


def too_large(max_bytes: int) -> RequestError:
    return RequestError(f"the upload is over this server's limit of {max_bytes / 2**20:g} MB (scale the photo down, "
                        "or start the server with a larger --max-upload-mb)", 413)


async def read_form(request: Request, max_bytes: int, hold: Callable[[], None]) -> Form:
    """The request's form, read in memory and counted as it arrives: 413 past max_bytes (chunked bodies have no
    declared length), 408 when the client stops sending, never a file on disk."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise RequestError("no photo in the request: send a multipart/form-data form with the photo as the field "
                           "'photo', as the page does")
    form, received, chunks = Form(options[b"boundary"]), 0, request.stream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + UPLOAD_SECONDS
    try:
        while True:
            left = deadline - loop.time()
            try:
                chunk = await asyncio.wait_for(anext(chunks), max(0.0, min(STALL_SECONDS, left)))
            except StopAsyncIteration:
                break
            hold()
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            form.parser.write(chunk)
        form.parser.finalize()
    except asyncio.TimeoutError:  # builtin TimeoutError from Python 3.11; a class of its own on 3.10
        if loop.time() >= deadline:
            raise RequestError(f"the upload took over {UPLOAD_SECONDS:g} s, this server's limit for one upload: "
                               "send a smaller photo, or from a faster connection", 408) from None
        raise RequestError(f"the upload stalled: nothing arrived for {STALL_SECONDS:g} s; send it again", 408) from None
    except ClientDisconnect:
        raise RequestError("the upload was cut off: the connection closed before its end; send it again") from None
    except MultipartParseError as error:
        raise RequestError(f"the upload is not a well-formed form ({brief(error, 100)}): send it as the page "
                           "does") from None
    return form


class LingeringClose:
    """ASGI middleware: when an answer is complete before the request's upload is (503 busy, 413 too large, 400,
    408), its bytes go out at once, then the rest of the upload is read and thrown away (up to LINGER_SECONDS and
    LINGER_BYTES) before the answer is marked complete. Closing with the upload still arriving would make the
    kernel reset the connection, and a client that reads only after sending would lose the answer."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers", [])) if scope["type"] == "http" else {}
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        if not has_body or headers.get(b"expect", b"").lower() == b"100-continue":  # no body coming: nothing to read
            return await self.app(scope, receive, send)
        arrived = False  # the whole upload (or the client's hang-up) has been received

        async def watched_receive():
            nonlocal arrived
            message = await receive()
            arrived = arrived or message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def lingering_send(message) -> None:
            if message["type"] != "http.response.body" or message.get("more_body", False) or arrived:
                return await send(message)
            await send({**message, "more_body": True})  # the answer, whole: the client can read it now
            await discard_upload(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(scope, watched_receive, lingering_send)


async def discard_upload(receive) -> None:
    """Read the rest of an upload and drop it: until its end, the client's hang-up, or the linger limits."""
    loop, received = asyncio.get_running_loop(), 0
    deadline = loop.time() + LINGER_SECONDS
    while received <= LINGER_BYTES and loop.time() < deadline:
        try:
            message = await asyncio.wait_for(receive(), deadline - loop.time())
        except asyncio.TimeoutError:
            return
        received += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


@dataclass
class Shared:
    """What the routes share: the models on offer, one network run at a time (gate), the upload queue."""

    settings: Settings
    catalog: Catalog
    gate: asyncio.Semaphore  # one model load or stylization at a time: the machine's cores and memory are one
    uploads: Admission

    @property
    def max_bytes(self) -> int:
        return int(self.settings.max_upload_mb * 2**20)


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app: the page, the model list and the stylize endpoint (app.state.uploads: its Admission)."""
    shared = Shared(settings, Catalog(settings), asyncio.Semaphore(1), Admission(settings.queue))
    app = FastAPI(title="stylenet", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.uploads = shared.uploads
    app.add_exception_handler(RequestError, request_error)
    app.add_middleware(LingeringClose)
    app.include_router(page_routes(shared))
    app.include_router(stylize_route(shared))
    return app


async def request_error(_: Request, error: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status)


def page_routes(shared: Shared) -> APIRouter:
    """The page, and what it asks before stylizing: the models, one model's description, its painting."""
    router, catalog = APIRouter(), shared.catalog

    @router.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @router.get("/style.css")
    async def stylesheet() -> Response:
        return Response(STYLESHEET.read_bytes(), media_type="text/css")

    @router.get("/api/models")
    async def models() -> dict[str, Any]:
        entries = await run_in_threadpool(catalog.scan)
        listed = [{"id": e.id, "label": e.label, "shipped": e.shipped} for e in entries]
        default = "starry_night" if "starry_night" in catalog.entries else (listed[0]["id"] if listed else None)
        return {"models": listed, "default": default, "sizes": list(SIZES), "max_upload_mb": shared.settings.max_upload_mb}

    @router.get("/api/model")
    async def model(id: str) -> dict[str, Any]:
        async with shared.gate:
            return await run_in_threadpool(catalog.describe, id)

    @router.get("/api/painting")
    async def model_painting(id: str) -> Response:
        async with shared.gate:
            found = painting(await run_in_threadpool(catalog.model, id))
        if found is None:
            raise RequestError("this model's painting is not on this machine", 404)
        return FileResponse(found)

    return router


def stylize_route(shared: Shared) -> APIRouter:
    """POST /api/stylize: a place in the queue before the body is read, the form read in memory, then the network."""
    router = APIRouter()

    @router.post("/api/stylize")
    async def stylize_endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > shared.max_bytes:
            raise too_large(shared.max_bytes)  # before it is read, and before it takes a place
        with shared.uploads.place() as hold:
            form = await read_form(request, shared.max_bytes, hold)
            if "photo" not in form.files:
                raise RequestError("no photo in the request: pick a photo")
            filename, photo_data = form.files["photo"]
            painting_data = form.files.get("style_image", (None, None))[1]
            form.fields.setdefault("filename", filename or "photo")
            async with shared.gate:
                started = time.perf_counter()
                data, media_type, filename = await run_in_threadpool(stylize, shared.catalog, form.fields, photo_data,
                                                                     painting_data)
                seconds = time.perf_counter() - started
        return Response(data, media_type=media_type, headers={
            "Content-Disposition": f'attachment; filename="{filename}"', "X-Stylenet-Seconds": f"{seconds:.2f}",
            "Cache-Control": "no-store",
        })

    return router


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
        from stylenet.core.device import auto_precision_note

        log.info("%s", auto_precision_note(settings.device, inference=True))
    shown = f"[{host}]" if ":" in host else host
    log.info("stylenet page: http://%s:%d (Ctrl-C stops it)", "127.0.0.1" if host in ("0.0.0.0", "::") else shown, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
