import json
import os
from pathlib import Path

import pytest
import torch

from stylenet import StylenetError, __version__
from stylenet.models.export import save_safetensors, verify
from stylenet.models.modelfile import load_safetensors, model_metadata
from stylenet.running.inference import load_model
from stylenet.models.kinds.transformer import TransformerNet


@pytest.fixture
def network() -> TransformerNet:
    torch.manual_seed(0)
    return TransformerNet(channels=4, num_residual_blocks=1)


def test_safetensors_round_trip_matches_module_and_keeps_metadata(network: TransformerNet, tmp_path: Path) -> None:
    metadata = model_metadata(network, style={"name": "starry_night", "sha256": "ab"}, steps=7)
    path = save_safetensors(network, metadata, tmp_path / "model.safetensors")
    loaded, read_back = load_safetensors(path)
    assert read_back == json.loads(json.dumps(metadata))
    assert read_back["arguments"] == {"channels": 4, "num_residual_blocks": 1, "output": "sigmoid"}
    assert read_back["stylenet_version"] == __version__
    images = torch.rand(1, 3, 40, 44)
    with torch.no_grad():
        assert torch.allclose(loaded(images), network.eval()(images), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's private 0600


def test_verify_catches_a_different_network(network: TransformerNet) -> None:
    other = TransformerNet(channels=4, num_residual_blocks=1)
    with pytest.raises(StylenetError, match="differs from the module"):
        verify(network, other)


def test_truncated_or_foreign_files_fail_clearly(network: TransformerNet, tmp_path: Path) -> None:
    path = save_safetensors(network, model_metadata(network), tmp_path / "model.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:200])
    with pytest.raises(StylenetError, match="is not a stylenet safetensors model"):
        load_model(tmp_path / "cut.safetensors")
    (tmp_path / "text.bin").write_text("hello")
    with pytest.raises(StylenetError, match="is not a model stylenet knows"):
        load_model(tmp_path / "text.bin")
    with pytest.raises(StylenetError, match="model not found"):
        load_model(tmp_path / "missing.safetensors")


def test_pickled_checkpoint_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    torch.save({"hyper_parameters": Exploit(), "state_dict": {}}, tmp_path / "evil.ckpt")
    with pytest.raises(StylenetError, match="refusing to load .*evil.ckpt: it holds Python objects"):
        load_model(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_safetensors_whose_header_length_starts_like_a_pickle_is_still_safetensors(network: TransformerNet, tmp_path: Path) -> None:
    """A header of 128 + 256k bytes starts the file with 0x80, a pickle's first byte (an AdaIN run hit this)."""
    path = tmp_path / "model.safetensors"
    padding = ""
    for _ in range(300):
        save_safetensors(network, model_metadata(network, padding=padding), path)
        if path.read_bytes()[0] == 0x80:
            break
        padding += "x"
    assert path.read_bytes()[0] == 0x80
    assert load_model(path).file_format == "safetensors"


@pytest.mark.parametrize("file_format", ["safetensors", "torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_format_names_the_file_and_a_stale_kind_from_older_exports_is_dropped(tmp_path: Path, file_format: str) -> None:
    """metadata["format"] is the file a model was read from; "kind" means the architecture's registry entry only.
    Exports from before the two were told apart stored their source's format under "kind": it must not leak."""
    from stylenet.models.export import export_model

    network = TransformerNet(channels=4, num_residual_blocks=1)
    stale = {**model_metadata(network, style={"name": "x"}), "kind": "safetensors"}  # what such an export wrote
    path = tmp_path / f"old.{ {'safetensors': 'safetensors', 'torchscript': 'pt', 'onnx': 'onnx'}[file_format] }"
    export_model(network, stale, path, file_format)
    model = load_model(path, "cpu")
    assert model.metadata["format"] == model.file_format == file_format and "kind" not in model.metadata
    assert model.metadata["architecture"] == "transformer"
