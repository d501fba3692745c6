"""The fast path by default: --precision auto picks bf16 where the hardware computes it natively, --backend auto
picks ONNX Runtime where it was measured faster; both say what they chose and stay near the fp32 eager result."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylenet.core.device import native_bf16
from tests.test_stylize_cli import run


def levels(a: Path, b: Path) -> float:
    """Mean difference of two images in 8-bit levels."""
    with Image.open(a) as first, Image.open(b) as second:
        return float(np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16)).mean())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("STYLENET_CACHE", str(folder))
    return folder


@pytest.fixture
def photo(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "fruits.png"
    with Image.open(data_dir / "content_test" / "fruits.jpg") as image:
        image.convert("RGB").resize((96, 72)).save(path)
    return path


def test_precision_auto_says_what_it_chose_and_stays_near_fp32(
    tiny_model: Path, photo: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    auto, fp32 = tmp_path / "auto.png", tmp_path / "fp32.png"
    assert run("stylize", photo, "--model", tiny_model, "-o", auto, "--backend", "eager") == 0
    chosen = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    assert f"precision auto: {chosen} (" in capsys.readouterr().err
    assert run("stylize", photo, "--model", tiny_model, "-o", fp32, "--backend", "eager", "--precision", "fp32") == 0
    assert "precision auto" not in capsys.readouterr().err  # asked for, so nothing to explain
    assert levels(auto, fp32) < 2


@pytest.mark.slow  # exports to ONNX: make test runs it, test-fast stays under 3 min
def test_backend_onnx_gives_the_eager_picture(
    tiny_model: Path, photo: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    onnx, eager = tmp_path / "onnx.png", tmp_path / "eager.png"
    assert run("stylize", photo, "--model", tiny_model, "-o", onnx, "--backend", "onnx") == 0
    assert "backend: ONNX Runtime (fp32) for whole images" in capsys.readouterr().err
    assert list((cache / "onnx").glob("*.onnx"))  # exported once, reused by the next run
    assert run("stylize", photo, "--model", tiny_model, "-o", eager, "--backend", "eager", "--precision", "fp32") == 0
    assert levels(onnx, eager) < 0.5
    # an explicit bf16 cannot run on ONNX Runtime: said, not ignored
    assert run("stylize", photo, "--model", tiny_model, "-o", onnx, "--overwrite", "--backend", "onnx",
               "--precision", "bf16") == 2
    assert "--backend onnx runs in fp32; drop --precision bf16" in capsys.readouterr().err


@pytest.mark.slow
def test_backend_auto_measures_once_and_follows_the_verdict(
    tiny_model: Path, photo: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.png"
    assert run("stylize", photo, "--model", tiny_model, "-o", out) == 0
    assert "backend auto: timing eager PyTorch" in capsys.readouterr().err
    verdicts = json.loads((cache / "backends.json").read_text())
    (key, found), = verdicts.items()
    assert "transformer" in key and found["backend"] in ("eager", "onnx") and found["eager_s"] > 0 and found["onnx_s"] > 0
    assert run("stylize", photo, "--model", tiny_model, "-o", out, "--overwrite") == 0
    assert "timing" not in capsys.readouterr().err  # kept: no second measurement
    for backend, says_onnx in (("onnx", True), ("eager", False)):
        (cache / "backends.json").write_text(json.dumps({key: {**found, "backend": backend}}))
        assert run("stylize", photo, "--model", tiny_model, "-o", out, "--overwrite") == 0
        assert ("ONNX Runtime (fp32) for whole images, measured faster here" in capsys.readouterr().err) == says_onnx


def test_backend_onnx_without_onnxruntime_is_one_line_and_auto_falls_back(
    tiny_model: Path, photo: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    out = tmp_path / "out.png"
    assert run("stylize", photo, "--model", tiny_model, "-o", out, "--backend", "onnx") == 2
    assert "--backend onnx needs onnxruntime: pip install 'stylenet[onnx]'" in capsys.readouterr().err
    assert not out.exists()
    assert run("stylize", photo, "--model", tiny_model, "-o", out) == 0  # auto: eager, silently
    assert "backend" not in capsys.readouterr().err and out.is_file()


@pytest.mark.slow  # compiles with TorchInductor (about 35 s on 2 cores): make test runs it
def test_backend_compile_gives_the_eager_pictures_its_short_last_batch_included(
    tiny_model: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """A video's frames go in batches (5, 5 and a short last 2 here), compiled once for their size: every frame,
    the last batch's included, is the one eager gives."""
    from stylenet.running.video import frames_of
    from tests.test_video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", size=(64, 48), frames=12, audio=None)
    # --crf 0: lossless, so a few pixels a level apart stay so (lossy, x264 spread them over the next frames)
    common = ("--model", tiny_model, "--precision", "fp32", "--temporal", "0", "--batch-size", "5", "--crf", "0")
    compiled, eager = tmp_path / "compiled.mp4", tmp_path / "eager.mp4"
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    with caplog.at_level(logging.INFO):
        assert run("stylize", clip, "-o", compiled, "--backend", "compile", *common) == 0
    # one graph: the channels-last frames and the padded (contiguous) last batch compiled twice until issue 40
    assert counters["stats"]["unique_graphs"] - graphs == 1
    # the wait is explained, once for the size: the short batch is padded to the batch it was compiled for
    assert caplog.text.count("backend compile: compiling the network for 64x48 images") == 1, caplog.text
    assert "No CUDA runtime" not in capsys.readouterr().err + caplog.text  # torch's warning on CPU-only machines
    assert run("stylize", clip, "-o", eager, "--backend", "eager", *common) == 0
    pairs = list(zip(frames_of(compiled), frames_of(eager), strict=True))
    assert len(pairs) == 12
    differences = [float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) for a, b in pairs]
    assert max(differences) < 0.1, differences


@pytest.mark.slow  # a failing TorchInductor build: seconds
@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")  # the test turns the caches off
def test_backend_compile_without_a_cpp_compiler_is_one_line(
    tiny_model: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import torch._inductor.config as inductor

    torch._dynamo.reset()  # build now, not from code this process compiled before
    out = tmp_path / "out.png"
    # force_disable_caches: nor from an earlier test's cache on disk
    with inductor.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++")), "force_disable_caches": True}):
        assert run("stylize", photo, "--model", tiny_model, "-o", out, "--backend", "compile", "--precision", "fp32") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("error: --backend compile could not compile the network here")
    assert error.endswith("use --backend eager") and not out.exists()


@pytest.mark.slow  # compiles with TorchInductor
def test_backend_compile_gives_the_eager_picture_for_multistyle_networks_too() -> None:
    """Compiled for a CPU, the networks take forms TorchInductor vectorizes (norms as sums, the upsampling's
    phases interleaved channel-last); the pictures must stay those of eager, blended styles included (training
    with --compile runs this network as it is)."""
    from stylenet.models.kinds.multistyle import MultiStyleTransformerNet

    torch.manual_seed(0)
    network = MultiStyleTransformerNet(["a", "b"], channels=16, num_residual_blocks=1).eval()
    frames, mix = torch.rand(2, 3, 36, 52), torch.tensor([[0.3, 0.7], [1.0, 0.0]])  # a blend, a pure style
    with torch.no_grad():
        compiled = torch.compile(network, dynamic=False)(frames, mix)
        torch.testing.assert_close(compiled, network(frames, mix), atol=1e-4, rtol=0)


@pytest.mark.slow  # compiles a forward and a backward with TorchInductor
def test_a_compiled_network_trains_with_the_eager_gradients() -> None:
    """`stylenet bench train --compile` compiles the network with its backward, with TorchInductor's CPU layout
    choice off (its channels-last replication_pad2d_backward fails its own check in torch 2.14): it must build
    so, the network's CPU-compiled forms included, and give the gradients eager gives."""
    import torch._inductor.config as inductor

    from stylenet.models.kinds.transformer import TransformerNet

    torch.manual_seed(0)
    network, photos = TransformerNet(channels=8, num_residual_blocks=1), torch.rand(2, 3, 32, 48)
    gradients = []
    with inductor.patch(layout_optimization=False):
        for model in (network, torch.compile(network, dynamic=False)):
            network.zero_grad()
            model(photos).square().mean().backward()
            gradients.append([parameter.grad.clone() for parameter in network.parameters()])
    for compiled, eager in zip(gradients[1], gradients[0]):
        torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-3)


@pytest.mark.slow  # compiles with TorchInductor (seconds: one layer)
def test_a_compiled_norm_layer_keeps_a_faint_pattern_on_a_bright_map() -> None:
    """Under torch.compile on a CPU the norm's variance comes from sums of squares: taken about the raw values,
    a spread of 0.01 on a level of 1000 would cancel away in float32 and the pattern come out wrong. (Eager
    float32 is 0.01 off here itself, so the reference is float64.)"""
    from stylenet.models.kinds.transformer import InstanceNorm2d

    torch.manual_seed(0)
    norm = InstanceNorm2d(16, affine=True).eval()
    torch.nn.init.normal_(norm.weight)
    maps = 1000 + 0.01 * torch.randn(2, 16, 24, 40)
    with torch.no_grad():
        exact = F.instance_norm(maps.double(), weight=norm.weight.double(), bias=norm.bias.double())
        torch.testing.assert_close(torch.compile(norm, dynamic=False)(maps).double(), exact, atol=1e-4, rtol=0)


def test_backend_compile_of_a_torchscript_file_is_one_line(
    tiny_model: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("export", tiny_model, "--format", "torchscript", "-o", tmp_path / "m.pt") == 0
    capsys.readouterr()
    assert run("stylize", photo, "--model", tmp_path / "m.pt", "-o", tmp_path / "out.png", "--backend", "compile") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--backend compile compiles a model's weights" in error
    assert not (tmp_path / "out.png").exists()


def test_precision_auto_stylizes_in_fp16_on_cuda_gpus_and_says_so() -> None:
    """On an H200 eager bf16 inference was slower than fp32 and fp16 faster (BENCHMARKS.md): auto follows that
    for stylizing (no GPU is needed to check the choice), and keeps CPUs on bf16 or fp32."""
    from stylenet.core.device import auto_precision, precision_note

    assert auto_precision(torch.device("cuda"), inference=True) == "fp16"
    cpu = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    assert auto_precision(torch.device("cpu"), inference=True) == cpu == auto_precision(torch.device("cpu"))
    assert precision_note("fp16", torch.device("cpu")).startswith("precision auto: fp16 (")
