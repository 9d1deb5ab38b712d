"""The model bundle: safetensors weights plus checked JSON metadata; the one way models are stored."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from pneumo.bundle import (META_FILE, WEIGHTS_FILE, BundleError, BundleMeta, read_meta, resolve_model, save_bundle,
                           write_meta)
from pneumo.config import PreprocessConfig
from pneumo.inference.loading import load_bundle
from pneumo.models import create_model


def _meta(**kwargs) -> BundleMeta:
    base = dict(arch="simple_cnn", classes=2, class_names=["NORMAL", "PNEUMONIA"],
                preprocess=PreprocessConfig(image_size=32, resize_mode="letterbox"), threshold=0.42, dropout=0.5)
    base.update(kwargs)
    return BundleMeta(**base)


def _trained_a_little(arch: str = "simple_cnn", classes: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, classes=classes)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 32, 32))  # moves BatchNorm running statistics away from their defaults
    return model.eval()


@pytest.mark.parametrize("arch, classes", [("simple_cnn", 2), ("mobilenet_v3_small", 3)])
def test_roundtrip_gives_identical_outputs(tmp_path: Path, arch: str, classes: int) -> None:
    model = _trained_a_little(arch, classes)
    meta = _meta(arch=arch, classes=classes, class_names=["NORMAL", "BACTERIAL", "VIRAL"][:classes] if classes == 3
                 else ["NORMAL", "PNEUMONIA"], dropout=0.3)
    directory = save_bundle(tmp_path / "b", model, meta)
    loaded, loaded_meta, where = load_bundle(directory)
    assert where == directory and not loaded.training
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded_meta.to_dict() == meta.to_dict()
    assert loaded_meta.preprocess == PreprocessConfig(image_size=32, resize_mode="letterbox")
    assert loaded_meta.created and loaded_meta.version.startswith(f"{arch}-32px-")


def test_bundle_files_are_safetensors_and_json(tmp_path: Path) -> None:
    directory = save_bundle(tmp_path / "b", _trained_a_little(), _meta(), {"notes.txt": _write(tmp_path / "n", "x")})
    assert sorted(p.name for p in directory.iterdir()) == sorted([WEIGHTS_FILE, META_FILE, "notes.txt"])
    document = json.loads((directory / META_FILE).read_text())
    assert document["format"] == "pneumo-bundle" and len(document["files"][WEIGHTS_FILE]) == 64
    assert document["meta"]["threshold"] == 0.42
    from safetensors import safe_open

    with safe_open(str(directory / WEIGHTS_FILE), "pt") as handle:
        assert handle.metadata() == {"arch": "simple_cnn"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_save_over_an_existing_bundle_replaces_it(tmp_path: Path) -> None:
    first = save_bundle(tmp_path / "b", _trained_a_little(), _meta(description="one"))
    torch.manual_seed(5)
    other = create_model("simple_cnn").eval()
    save_bundle(first, other, _meta(description="two"))
    loaded, meta, _ = load_bundle(first)
    assert meta.description == "two"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), other(x), rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_tampered_weights(tiny_bundle: Path) -> None:
    weights = tiny_bundle / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(tiny_bundle)


def test_truncated_weights(tiny_bundle: Path) -> None:
    weights = tiny_bundle / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BundleError, match=str(weights)):
        load_bundle(tiny_bundle)


def test_missing_weights(tiny_bundle: Path) -> None:
    (tiny_bundle / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match=f"missing {WEIGHTS_FILE}"):
        load_bundle(tiny_bundle)


def test_missing_metadata(tiny_bundle: Path) -> None:
    (tiny_bundle / META_FILE).unlink()
    with pytest.raises(BundleError, match="neither a model bundle"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="something-else"), "not a pneumo bundle"),
    (lambda d: d.update(format_version=99), "newer than this pneumo reads"),
    (lambda d: d.pop("files"), "no checksum recorded"),
    (lambda d: d["meta"].update(classes=3, class_names=["a", "b", "c"]), "weights do not fit"),
    (lambda d: d["meta"].update(arch="resnet18"), "weights do not fit architecture 'resnet18'"),
    (lambda d: d["meta"].update(arch="alexnet"), "unknown arch 'alexnet'"),
    (lambda d: d["meta"].pop("arch"), "invalid metadata"),
    (lambda d: d["meta"]["preprocess"].update(resize_mode="crop"), "invalid metadata"),
])
def test_edited_metadata_is_refused(tiny_bundle: Path, edit, message: str) -> None:
    path = tiny_bundle / META_FILE
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(BundleError, match=message):
        load_bundle(tiny_bundle)


def test_unparseable_metadata(tiny_bundle: Path) -> None:
    (tiny_bundle / META_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="unreadable bundle metadata"):
        read_meta(tiny_bundle)


def test_loading_never_unpickles(tiny_bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("unpickled",))

    (tiny_bundle / WEIGHTS_FILE).write_bytes(pickle.dumps(Payload()))
    write_meta(tiny_bundle, _meta())  # a valid checksum over the pickle: only the format can stop it now
    with pytest.raises(BundleError, match="unreadable weights"):
        load_bundle(tiny_bundle)
    assert not marker.exists()


def test_write_meta_rewrites_only_metadata(tiny_bundle: Path) -> None:
    before = (tiny_bundle / WEIGHTS_FILE).read_bytes()
    _, meta = read_meta(tiny_bundle)
    meta.threshold = 0.3
    meta.temperature = 1.7
    meta.calibration = {"method": "temperature", "split": "val"}
    write_meta(tiny_bundle, meta)
    _, again = read_meta(tiny_bundle)
    assert (again.threshold, again.temperature, again.calibration["split"]) == (0.3, 1.7, "val")
    assert (tiny_bundle / WEIGHTS_FILE).read_bytes() == before
    load_bundle(tiny_bundle)  # the checksum still matches
    assert [p.name for p in tiny_bundle.iterdir() if p.name.endswith(".tmp")] == []


def test_resolve_model(tiny_bundle: Path, tmp_path: Path) -> None:
    assert resolve_model(tiny_bundle) == tiny_bundle
    run = tmp_path / "run"
    save_bundle(run / "best", _trained_a_little(), _meta())
    assert resolve_model(run) == run / "best"
    assert resolve_model(str(run)) == run / "best"
    _, meta, where = load_bundle(run)
    assert where == run / "best" and meta.threshold == 0.42
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="neither a model bundle"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(BundleError, match="not found: give a bundle directory, a run directory, or one of"):
        resolve_model("no-such-model")


def test_meta_refuses_unknown_keys_and_drops_only_retired_ones(tiny_bundle: Path, monkeypatch) -> None:
    raw = _meta().to_dict()
    raw["future_field"] = {"x": 1}
    with pytest.raises(ValueError, match=r"unknown metadata keys \['future_field'\]"):
        BundleMeta.from_dict(raw)
    path = tiny_bundle / META_FILE
    document = json.loads(path.read_text())
    document["meta"]["future_field"] = 1
    path.write_text(json.dumps(document))
    with pytest.raises(BundleError, match=f"{path}: invalid metadata .*future_field"):
        read_meta(tiny_bundle)
    # A key an older pneumo wrote and this one retired is read and dropped, by name.
    monkeypatch.setattr("pneumo.bundle.RETIRED_META_KEYS", frozenset({"future_field"}))
    assert BundleMeta.from_dict(raw).to_dict() == _meta().to_dict()
    assert read_meta(tiny_bundle)[1].to_dict() == BundleMeta.from_dict(document["meta"]).to_dict()
