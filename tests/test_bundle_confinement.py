"""Every file bundle.json names must lie inside the bundle directory (issue 28): an edited gate or checksum
entry pointing elsewhere is refused with a BundleError naming bundle.json, before anything is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumo.bundle import META_FILE, BundleError, read_meta, shipped_models


def _edit(bundle: Path, change) -> None:
    path = bundle / META_FILE
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors", ""])
def test_gate_file_outside_the_bundle_is_refused(tiny_bundle: Path, name: str) -> None:
    _edit(tiny_bundle, lambda d: d["meta"].__setitem__("gate", {"file": name, "sha256": "0" * 64}))
    if not name:  # an empty name means "no gate file": nothing to confine
        read_meta(tiny_bundle)
        return
    with pytest.raises(BundleError, match=r"bundle\.json: it names the file .* outside the bundle directory"):
        read_meta(tiny_bundle)


def test_checksummed_file_outside_the_bundle_is_refused(tiny_bundle: Path) -> None:
    _edit(tiny_bundle, lambda d: d["files"].__setitem__("../../etc/passwd", "0" * 64))
    with pytest.raises(BundleError, match="outside the bundle directory"):
        read_meta(tiny_bundle)


def test_symbolic_link_out_of_the_bundle_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"not a gate")
    (tiny_bundle / "gate.safetensors").symlink_to(outside)
    _edit(tiny_bundle, lambda d: d["meta"].__setitem__("gate", {"file": "gate.safetensors", "sha256": "0" * 64}))
    with pytest.raises(BundleError, match="outside the bundle directory"):
        read_meta(tiny_bundle)


def test_shipped_bundles_name_only_their_own_files() -> None:
    for directory in shipped_models().values():
        read_meta(directory)
