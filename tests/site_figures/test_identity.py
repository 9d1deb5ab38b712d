"""A model's identity: the bundle's name and bundle.json checksum, and a site bundle's parent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pneumo.bundle import META_FILE, file_sha256, read_meta
from pneumo.site.identity import identify


def test_identity_of_a_bundle_a_run_and_a_site_bundle(tiny_bundle: Path, tmp_path: Path):
    directory, meta = read_meta(tiny_bundle)
    plain = identify(directory, meta)
    assert plain.label == f"{directory.name}@{file_sha256(directory / META_FILE)[:12]}" and plain.parent is None
    run = tmp_path / "run-7" / "best"
    run.mkdir(parents=True)
    (run / META_FILE).write_bytes((directory / META_FILE).read_bytes())
    assert identify(run, meta).label.startswith("run-7/best@")
    # A site bundle names its parent by the last part of the recorded path (never the adapting machine's path).
    site = dataclasses.replace(meta, adaptation={"parent": {"bundle": "/srv/models/weights/default",
                                                            "bundle_json_sha256": "ab" * 32}})
    identity = identify(directory, site)
    assert identity.parent == "default@" + "ab" * 6
    assert identity.describe().endswith(f"adapted from default@{'ab' * 6}") and "/srv" not in str(identity)
    assert identify(None, meta).label == meta.version  # a bare ONNX file: its version only
