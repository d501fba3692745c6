"""A soak of hostile inputs (issue 28): 500 generated files, images and videos (truncated, zero-length, misnamed,
headers claiming huge sizes, corrupt mid-file, and valid ones among them), run as folders through the real
`stylenet stylize` and a sample through the web page's upload. Every one is a one-line error or a warning with
the partial output kept; never a traceback, a torn file under an output name or a temp file left behind.

The files are made by a seeded generator, so every run throws the same 500; `python -m tests.test_soak DIR` writes
them to DIR to look at.
"""

from __future__ import annotations

import io
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stylenet.running.serve import Settings, create_app
from tests.conftest import PYTHON, run_env
from tests.test_video import make_clip

pytestmark = pytest.mark.slow  # about 25 s on a 2-core CPU: seven real commands, 45 uploads

STYLENET = str(Path(PYTHON).parent / "stylenet")
SEED = 28  # the number: the same 500 files every run
SIZE = 32  # --size: the outputs' long side
IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
CLIP_FRAMES = 16
OK, FAIL, EITHER = "written", "failed", "either"  # what a case must come to; EITHER: written whole, or failed


@dataclass
class Case:
    name: str  # relative path in the soak folder
    data: bytes
    family: str
    expect: str  # OK, FAIL or EITHER


def image_bytes(rng: random.Random, image_format: str, size: tuple[int, int] | None = None) -> bytes:
    """A small valid image of random pixels (and random size, 8-40 px a side) in one format."""
    width, height = size or (rng.randint(8, 40), rng.randint(8, 40))
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, good_crc: bool = True) -> bytes:
    """A PNG whose IHDR claims width x height over a few bytes of pixel data (CRC right, so Pillow believes it)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if not good_crc:
        header = header[:-4] + b"\0\0\0\0"
    pixels = png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + header + pixels + png_chunk(b"IEND", b"")


def jpeg_claiming(rng: random.Random, width: int, height: int) -> bytes:
    """A real JPEG with its SOF0 header's size replaced."""
    data = bytearray(image_bytes(rng, "JPEG", (16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(rng: random.Random, width: int, height: int) -> bytes:
    data = bytearray(image_bytes(rng, "GIF", (8, 8)))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def bmp_claiming(rng: random.Random, width: int, height: int) -> bytes:
    data = bytearray(image_bytes(rng, "BMP", (8, 8)))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def tiff_claiming(rng: random.Random, width: int, height: int) -> bytes:
    """A real TIFF with its ImageWidth and ImageLength tags rewritten (as LONGs)."""
    data = bytearray(image_bytes(rng, "TIFF", (8, 8)))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for index in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * index
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in (256, 257):
            struct.pack_into("<HHII", data, entry, tag, 4, 1, width if tag == 256 else height)
    return bytes(data)


def webp_claiming(rng: random.Random, side: int) -> bytes:
    """A lossy WebP whose VP8 frame header claims side x side (14 bits each: 16383 at most)."""
    data = bytearray(image_bytes(rng, "WEBP", (16, 16)))
    start = data.index(b"\x9d\x01\x2a")  # the VP8 key frame's start code; width and height follow
    struct.pack_into("<HH", data, start + 3, side, side)
    return bytes(data)


BROKEN_EXIF = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00"  # five entries promised, part of one there


def truncated(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randint(1, len(data) - 1)]


def corrupted(rng: random.Random, data: bytes) -> bytes:
    """The same length, with a run of random bytes written over somewhere in the middle 20-80%."""
    data = bytearray(data)
    start = rng.randint(len(data) // 5, len(data) * 4 // 5)
    length = rng.randint(1, max(1, len(data) // 10))
    data[start:start + length] = rng.randbytes(len(data[start:start + length]))
    return bytes(data)


def spliced(rng: random.Random, data: bytes) -> bytes:
    """Garbage bytes inserted (not written over) somewhere in the middle 20-80%: the rest shifted along."""
    where = rng.randint(len(data) // 5, len(data) * 4 // 5)
    return data[:where] + rng.randbytes(rng.randint(16, 2048)) + data[where:]


def text(rng: random.Random) -> bytes:
    lines = ["not an image\n", "# notes\n", "<html>\n", '{"a": 1}\n']
    return "".join(rng.choice(lines) for _ in range(rng.randint(1, 40))).encode()


def image_cases(rng: random.Random, clip: bytes) -> list[Case]:
    """420 image files: each family spread over the six formats."""
    cases: list[Case] = []

    def add(family: str, stem: str, extension: str, data: bytes, expect: str) -> None:
        cases.append(Case(f"images/{family}/{stem}-{len(cases):03d}.{extension}", data, family, expect))

    for image_format, extension in IMAGE_FORMATS.items():
        for _ in range(10):
            add("valid", "ok", extension, image_bytes(rng, image_format), OK)
        for _ in range(20):
            add("truncated", "cut", extension, truncated(rng, image_bytes(rng, image_format)), EITHER)
        for _ in range(20):
            add("corrupt", "flipped", extension, corrupted(rng, image_bytes(rng, image_format)), EITHER)
        for _ in range(2):
            add("empty", "zero", extension, b"", FAIL)
    formats = list(IMAGE_FORMATS.items())
    for _ in range(6):  # an EXIF block cut short: the picture is whole, Pillow warns about the metadata
        buffer = io.BytesIO()
        Image.open(io.BytesIO(image_bytes(rng, "JPEG"))).save(buffer, "JPEG", exif=BROKEN_EXIF)
        add("bad-exif", "exif", "jpg", buffer.getvalue(), OK)
    for _ in range(24):  # a valid image under another format's extension: Pillow reads the content
        (real, _), (_, named) = rng.sample(formats, 2)
        add("misnamed", f"{real.lower()}-as", named, image_bytes(rng, real), OK)
    for index in range(18):
        add("misnamed", "text-as", formats[index % 6][1], text(rng), FAIL)
    for index in range(12):  # a video under an image's name
        add("misnamed", "video-as", formats[index % 6][1], clip, FAIL)
    for stem, extension, data, expect in huge_headers(rng):
        add("huge", stem, extension, data, expect)
    return cases


def huge_headers(rng: random.Random) -> list[tuple[str, str, bytes, str]]:
    """48 (stem, extension, bytes, expected) of headers claiming sizes over Pillow's limit (or twice it, where it
    refuses by itself), and 4 under it whose few bytes of pixels end long before the picture does."""
    bombs = [
        ("png-100000x100000", "png", lambda: png_claiming(100_000, 100_000)),
        ("png-100000x100000-badcrc", "png", lambda: png_claiming(100_000, 100_000, good_crc=False)),
        ("png-10000x10000", "png", lambda: png_claiming(10_000, 10_000)),
        ("png-1x200000000", "png", lambda: png_claiming(1, 200_000_000)),
        ("jpeg-65000x65000", "jpg", lambda: jpeg_claiming(rng, 65_000, 65_000)),
        ("jpeg-10000x10000", "jpg", lambda: jpeg_claiming(rng, 10_000, 10_000)),
        ("gif-65535x65535", "gif", lambda: gif_claiming(rng, 65_535, 65_535)),
        ("bmp-100000x100000", "bmp", lambda: bmp_claiming(rng, 100_000, 100_000)),
        ("bmp-100000x-100000", "bmp", lambda: bmp_claiming(rng, 100_000, -100_000)),
        ("tiff-100000x100000", "tif", lambda: tiff_claiming(rng, 100_000, 100_000)),
        ("webp-16383x16383", "webp", lambda: webp_claiming(rng, 16_383)),
    ]
    headers = [(stem, extension, make(), FAIL) for stem, extension, make in (bombs * 4)]
    return headers + [("png-6000x6000", "png", png_claiming(6000, 6000), EITHER),
                      ("jpeg-6000x6000", "jpg", jpeg_claiming(rng, 6000, 6000), EITHER),
                      ("bmp-6000x6000", "bmp", bmp_claiming(rng, 6000, 6000), EITHER),
                      ("gif-6000x6000", "gif", gif_claiming(rng, 6000, 6000), EITHER)]


def video_cases(rng: random.Random, clips: dict[str, bytes]) -> list[Case]:
    """80 video files: valid clips of five containers, and what damage does to them."""
    cases: list[Case] = []

    def add(family: str, stem: str, extension: str, data: bytes, expect: str) -> None:
        cases.append(Case(f"videos/{family}/{stem}-{len(cases):03d}.{extension}", data, family, expect))

    kinds = sorted(clips)  # "mp4", "mkv", ...
    for index in range(15):
        kind = kinds[index % len(kinds)]
        add("valid", "ok", kind, clips[kind], OK)
    for index in range(25):  # an MP4 whose index is at the end fails; streamable containers keep their first frames
        kind = kinds[index % len(kinds)]
        data = clips[kind][:len(clips[kind]) * 2 // 3] if index < len(kinds) else truncated(rng, clips[kind])
        add("truncated", "two-thirds" if index < len(kinds) else "cut", kind, data, EITHER)
    for index in range(15):
        kind = kinds[index % len(kinds)]
        add("spliced", "garbage", kind, spliced(rng, clips[kind]), EITHER)
    for kind in kinds:  # damage that lands in a tag: a title that is not UTF-8 (PyAV raised UnicodeDecodeError)
        add("bad-tag", "title", kind, retitled(clips[kind], kind), OK)
    for extension in ("mp4", "mkv", "webm", "mov", "avi"):
        add("empty", "zero", extension, b"", FAIL)
    for index in range(10):  # FFmpeg reads a PNG, JPEG or GIF as a one-frame video: either outcome is fine
        image_format = ["PNG", "JPEG", "GIF"][index % 3]
        data = image_bytes(rng, image_format)
        add("misnamed", f"{image_format.lower()}-as", ["mp4", "mov", "mkv"][index % 3], data, EITHER)
    for index in range(5):
        add("misnamed", "text-as", ["mp4", "mov", "mkv", "webm", "avi"][index], text(rng), FAIL)
    return cases


def base_clips(folder: Path) -> dict[str, bytes]:
    """Tiny valid clips (32x24, 16 frames at 10 frames/s) of each container stylenet reads, some with sound."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = {"mp4": ("aac", "libx264"), "mkv": (None, "libx264"), "webm": ("libopus", "libvpx-vp9"),
             "mov": ("aac", "mpeg4"), "avi": (None, "mpeg4")}
    return {kind: make_clip(folder / f"base.{kind}", (32, 24), CLIP_FRAMES, audio, codec).read_bytes()
            for kind, (audio, codec) in specs.items()}


TITLE = "soak title"


def retitled(clip: bytes, kind: str) -> bytes:
    """The clip with a container title tag whose first bytes are not UTF-8 (written as TITLE, then overwritten)."""
    buffer = io.BytesIO()
    container_format = {"mkv": "matroska"}.get(kind, kind)
    with av.open(io.BytesIO(clip)) as source, av.open(buffer, "w", format=container_format) as out:
        out.metadata["title"] = TITLE
        streams = {stream.index: out.add_stream_from_template(stream) for stream in source.streams}
        for packet in source.demux():
            if packet.size:  # not the demuxer's empty flushing packets
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = buffer.getvalue()
    assert data.count(TITLE.encode()) == 1
    return data.replace(TITLE.encode(), b"\xff\xfe\xd6" + TITLE.encode()[3:])


def generate(folder: Path) -> list[Case]:
    """The 500 hostile files, written under folder/images and folder/videos; the same ones for the same SEED."""
    rng = random.Random(SEED)
    clips = base_clips(folder / "base")
    cases = image_cases(rng, clips["mp4"]) + video_cases(rng, clips)
    for case in cases:
        path = folder / case.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.data)
    shutil.rmtree(folder / "base")
    return cases


# ---- running them ----------------------------------------------------------------------------------------------------

# tqdm's bars, redrawn with \r and moved with ANSI cursor codes on stderr; a log line may follow a bar unbroken
PROGRESS = re.compile(r"(stylize|stylize video): +(\d+%\|[^|]*\| *)?[\d.?]+\w*(/[\d.?]+\w*)? \[[^\]]*\]"
                      r"|\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Run:
    code: int
    stdout: str
    lines: list[str]  # stderr without the progress bars, one entry per line
    stderr: str
    seconds: float


def stylize(*args: str | Path, cwd: Path) -> Run:
    """The real `stylenet stylize` in a subprocess, eager PyTorch (no backend timing) at --size 32."""
    started = time.perf_counter()
    result = subprocess.run([STYLENET, "stylize", *map(str, args), "--size", str(SIZE), "--backend", "eager"],
                            capture_output=True, text=True, env=run_env(), timeout=300, cwd=cwd)
    lines = [line for line in (PROGRESS.sub("", part) for part in re.split(r"[\r\n]", result.stderr)) if line.strip()]
    return Run(result.returncode, result.stdout, lines, result.stderr, time.perf_counter() - started)


def check_quiet(run: Run, *paths: Path) -> tuple[dict[Path, str], dict[Path, str]]:
    """({source: reason} of `failed:` lines, {file: message} of warnings); any other line fails the test: every
    message is one line, and none is a traceback, a Python warning or a library's own output."""
    assert "Traceback" not in run.stderr and "Warning:" not in run.stderr, run.stderr[-3000:]
    failed, warned = {}, {}
    prefixes = tuple(f"{path}/" for path in paths)
    for line in run.lines:
        if line.startswith("failed: "):
            source, _, reason = line[len("failed: "):].partition(": ")
            assert source.startswith(prefixes) and reason and Path(source) not in failed, line
            failed[Path(source)] = reason
        elif line.startswith(prefixes):
            where, _, message = line.partition(": ")
            assert message, line
            warned.setdefault(Path(where), message)
        else:
            assert line.startswith("precision auto: "), f"a line that is none of ours: {line!r}"
    return failed, warned


def image_complete(path: Path) -> None:
    """An output image decodes to its end, in the format its name says, at --size."""
    with Image.open(path) as image:
        image.load()
        assert image.format == Image.registered_extensions()[path.suffix.lower()], path
        assert max(image.size) == SIZE, (path, image.size)


def video_frames(path: Path) -> int:
    """An output video decodes to its end without an error; its frame count."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert frames and all(max(frame.width, frame.height) == SIZE for frame in frames), path
    return len(frames)


def check_outputs(cases: list[Case], source_root: Path, out: Path, failed: dict[Path, str],
                  warned: dict[Path, str], extension: str | None = None) -> dict[str, int]:
    """Each case is failed (and nothing under its output name) or written whole, as its family allows; no other
    file (no temp file) in `out`. Returns how many were written, failed and warned."""
    from stylenet.running.jobs import output_suffix

    expected = set()
    counts = {"written": 0, "failed": 0, "warned": 0}
    for case in cases:
        source = source_root / case.name
        target = (out / case.name).with_suffix(output_suffix(source, extension))
        if source in failed:
            assert case.expect != OK, f"{case.name} ({case.family}) should be written: {failed[source]}"
            assert not target.exists(), f"{target}: written although it failed"
            counts["failed"] += 1
            continue
        assert case.expect != FAIL, f"{case.name} ({case.family}) should have failed, and was written"
        assert target.is_file(), f"{target}: neither written nor reported as failed"
        expected.add(target)
        counts["written"] += 1
        if target.suffix in (".mp4", ".mkv", ".webm", ".mov"):
            frames = video_frames(target)
            if case.family == "valid":
                assert frames == CLIP_FRAMES and target not in warned, target
            elif target in warned:  # "... ends after N of the 16 frames ...", "... decoding stopped after N frames"
                assert f" after {frames} " in warned[target], (target, frames, warned[target])
            elif case.family in ("truncated", "spliced"):  # the header's frame count is rounded: one may go unsaid
                assert frames >= CLIP_FRAMES - 1, f"{target}: {frames} of {CLIP_FRAMES} frames and no warning"
            counts["warned"] += target in warned
        else:
            image_complete(target)
            if case.family == "bad-exif":
                assert warned.get(source, "").startswith("Corrupt EXIF data"), (source, warned.get(source))
                counts["warned"] += 1
    left = {path for path in out.rglob("*") if path.is_file()}
    assert left == expected, f"files under {out} that no input wrote: {sorted(left - expected)[:5]}"
    return counts


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("soak")
    return folder, generate(folder)


def test_the_generator_makes_500_hostile_files_the_same_every_time(soak: tuple[Path, list[Case]]) -> None:
    _, cases = soak
    assert len(cases) == 500 and len({case.name for case in cases}) == 500
    families = {(case.name.split("/")[0], case.family) for case in cases}
    assert len(families) == 13 and sum(case.name.startswith("images/") for case in cases) == 420
    clip = next(case.data for case in cases if "/video-as-" in case.name)
    again = image_cases(random.Random(SEED), clip)  # the same seed, the same files, byte for byte
    assert [(case.name, case.data) for case in again] == [(case.name, case.data) for case in cases[:420]]


def test_all_500_as_two_folders_then_rerun_keeps_every_output(soak: tuple[Path, list[Case]], tiny_model: Path,
                                                               tmp_path: Path) -> None:
    """The 420 images and 80 videos as two folders in one call, images written as WebP (videos keep their
    container): each input fails with one line or is written whole, damaged videos say where they stop, and the
    summary counts both kinds. Then the same call again: what was written is left as it was, byte for byte (no
    --overwrite), and the same inputs fail again with the same one line each."""
    folder, cases = soak
    out = tmp_path / "out"
    args = (folder / "images", folder / "videos", "--model", tiny_model, "-o", out, "--ext", "webp")
    first = stylize(*args, cwd=tmp_path)
    failed, warned = check_quiet(first, folder, out)
    counts = check_outputs(cases, folder, out, failed, warned, "webp")
    videos = {path: message for path, message in warned.items()
              if path.is_relative_to(folder / "videos") or path.is_relative_to(out / "videos")}
    assert all(message.endswith("the output stops at the last good frame") for message in videos.values()), videos
    assert any(path.is_relative_to(out / "videos") for path in videos)  # damage mid-stream: the frames before it kept
    written = {kind: sum(case.name.startswith(f"{kind}/") and folder / case.name not in failed for case in cases)
               for kind in ("images", "videos")}
    assert first.code == 1 and f"{counts['failed']} FAILED" in first.stdout, first.stdout
    assert f"stylized {written['images']} image(s)" in first.stdout and f"; {written['videos']} video(s)" in first.stdout
    written_files = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    second = stylize(*args, cwd=tmp_path)
    again, _ = check_quiet(second, folder, out)
    assert again == failed and second.code == 1
    assert f"{counts['written']} left as they were" in second.stdout, second.stdout
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == written_files
    print(f"both folders: {counts} ({written}) in {first.seconds:.1f} s, again in {second.seconds:.1f} s")


def test_one_hostile_file_alone_is_one_line(soak: tuple[Path, list[Case]], tiny_model: Path, tmp_path: Path) -> None:
    """A single input: an unreadable one is `error: ...` and exit 2 with nothing written; a damaged video keeps
    its good frames with one warning line and exit 0."""
    folder, cases = soak
    for name, start in [("images/empty/zero", "error: input is not a readable image: "),
                        ("images/huge/png-100000x100000-", "error: input is too large to decode safely: "),
                        ("videos/misnamed/text-as", f"error: {folder}/videos/misnamed/text-as-"),
                        ("videos/empty/zero", f"error: {folder}/videos/empty/zero-")]:
        case = next(case for case in cases if case.name.startswith(name))
        target = tmp_path / f"alone-{Path(case.name).stem}{'.mp4' if name.startswith('videos') else '.png'}"
        run = stylize(folder / case.name, "--model", tiny_model, "-o", target, cwd=tmp_path)
        assert "Traceback" not in run.stderr, run.stderr
        assert run.code == 2 and len(run.lines) == 1 and run.lines[0].startswith(start), (case.name, run.lines)
    cut = next(case for case in cases if case.name.startswith("videos/truncated/two-thirds-") and ".mkv" in case.name)
    run = stylize(folder / cut.name, "--model", tiny_model, "-o", tmp_path / "cut.mkv", cwd=tmp_path)
    assert run.code == 0 and "Traceback" not in run.stderr, run.stderr
    said = [line for line in run.lines if not line.startswith("precision auto: ")]
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'cut.mkv'}: the input ends after"), run.lines
    assert 0 < video_frames(tmp_path / "cut.mkv") < CLIP_FRAMES
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cut.mkv"]  # nothing for the four that failed


# ---- the page's upload -----------------------------------------------------------------------------------------------

UPLOADS = 30  # drawn across the families; and one of each header that claims a huge size
IMAGE_CONTENT = ("images/", "videos/misnamed/png-as", "videos/misnamed/jpeg-as", "videos/misnamed/gif-as")


def upload_sample(cases: list[Case]) -> list[Case]:
    """UPLOADS cases drawn round-robin from every (images/videos, family) group, then one case of each huge header."""
    rng = random.Random(SEED + 1)
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        if case.family != "huge":
            groups.setdefault((case.name.split("/")[0], case.family), []).append(case)
    for members in groups.values():
        rng.shuffle(members)
    sample: list[Case] = []
    while len(sample) < UPLOADS:
        for key in sorted(groups):
            if groups[key] and len(sample) < UPLOADS:
                sample.append(groups[key].pop())
    headers = {case.name.rsplit("-", 1)[0]: case for case in cases if case.family == "huge"}  # the stem: the claim
    return sample + list(headers.values())


def test_a_sample_through_the_upload_is_200_or_one_line_4xx(soak: tuple[Path, list[Case]], tiny_model: Path,
                                                            tmp_path: Path) -> None:
    _, cases = soak
    shutil.copy(tiny_model, tmp_path / "tiny.safetensors")
    app = create_app(Settings([tmp_path], device="cpu"))
    statuses: dict[int, int] = {}
    with warnings.catch_warnings(record=True) as caught, TestClient(app, raise_server_exceptions=False) as client:
        warnings.simplefilter("always")
        for case in upload_sample(cases):
            response = client.post("/api/stylize", files={"photo": (Path(case.name).name, case.data)},
                                   data={"model": "0:tiny.safetensors", "size": str(SIZE)})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            an_image = case.name.startswith(IMAGE_CONTENT)
            if response.status_code == 200:
                assert an_image and case.expect != FAIL, f"{case.name}: answered 200"
                with Image.open(io.BytesIO(response.content)) as result:
                    result.load()
                    assert result.format == "PNG" and max(result.size) == SIZE
                continue
            assert 400 <= response.status_code < 500, f"{case.name}: {response.status_code} {response.text[:300]}"
            error = response.json()["error"]
            assert error and "\n" not in error and "Traceback" not in error, (case.name, error)
            assert not (an_image and case.expect == OK), f"{case.name} ({case.family}) refused: {error}"
            if case.family == "huge" and case.expect == FAIL and "badcrc" not in case.name:
                assert response.status_code == 413, (case.name, error)  # refused from the header, nothing decoded
        assert client.post("/api/stylize", files={"photo": ("ok.png", image_bytes(random.Random(0), "PNG"))},
                           data={"model": "0:tiny.safetensors", "size": str(SIZE)}).status_code == 200
    pillow = [f"{warning.category.__name__}: {warning.message}" for warning in caught if "PIL" in warning.filename]
    assert not pillow, pillow  # Python prints these on the server's stderr in two lines, one of them Pillow's code
    print(f"uploads: {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    written = generate(Path(sys.argv[1]))
    families: dict[str, int] = {}
    for case in written:
        key = f"{case.name.split('/')[0]}/{case.family} ({case.expect})"
        families[key] = families.get(key, 0) + 1
    print("\n".join(f"{count:4d} {key}" for key, count in families.items()))
    print(f"{len(written)} files in {sys.argv[1]}")
