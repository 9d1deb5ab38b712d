"""Which model answered: the bundle's name and a checksum of its ``bundle.json`` (which holds the weights'
SHA-256 and the operating point), and for a site bundle (``pneumo adapt``) the parent it was made from.

``meta.version`` (architecture, size, creation time) says what kind of model it is; the identity says which
exact file, so two site bundles adapted from one parent, or a bundle recalibrated in place, are told apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from pneumo.bundle import META_FILE, BundleMeta, file_sha256

HASH_CHARS = 12  # enough to tell bundles apart on a page; the full SHA-256 stays in bundle.json
RUN_SUBFOLDERS = ("best", "last")  # a run directory's bundles: named after the run


@dataclass(frozen=True)
class ModelIdentity:
    name: str  # the bundle's folder name (a shipped name such as "default", or the run's name)
    sha256: str | None  # of bundle.json; None for a bare ONNX file given without its bundle
    version: str  # meta.version
    parent: str | None = None  # "name@hash" of the parent of a site bundle

    @property
    def label(self) -> str:
        """``name@hash``: what the history, the report and the page group by."""
        return f"{self.name}@{self.sha256[:HASH_CHARS]}" if self.sha256 else self.name

    def describe(self) -> str:
        """One line for people: the label, the version, and the parent when there is one."""
        text = f"{self.label} ({self.version})"
        return f"{text}, adapted from {self.parent}" if self.parent else text

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.label, "name": self.name, "sha256": self.sha256, "version": self.version,
                "parent": self.parent}


def bundle_name(directory: Path) -> str:
    directory = Path(directory)
    if directory.name in RUN_SUBFOLDERS and directory.parent.name:
        return f"{directory.parent.name}/{directory.name}"
    return directory.name


def parent_label(meta: BundleMeta) -> str | None:
    """The parent recorded by ``pneumo adapt`` (meta.adaptation.parent), as ``name@hash``; None otherwise."""
    parent = (meta.adaptation or {}).get("parent") or {}
    if not parent:
        return None
    # The recorded path is where the parent lay on the adapting machine: only its last part is shown.
    name = bundle_name(Path(PurePath(str(parent.get("bundle") or "unknown").replace("\\", "/"))))
    digest = str(parent.get("bundle_json_sha256") or "")
    return f"{name}@{digest[:HASH_CHARS]}" if digest else name


def identify(bundle_dir: Path | None, meta: BundleMeta) -> ModelIdentity:
    """The identity of the bundle in ``bundle_dir`` (None: a bare model file, known by its version only)."""
    if bundle_dir is None:
        return ModelIdentity(meta.version, None, meta.version, parent_label(meta))
    return ModelIdentity(bundle_name(bundle_dir), file_sha256(Path(bundle_dir) / META_FILE), meta.version,
                         parent_label(meta))


def identify_predictor(predictor: Any) -> ModelIdentity:
    """The identity of a loaded Predictor (its ``bundle_dir`` and ``meta``)."""
    return identify(getattr(predictor, "bundle_dir", None), predictor.meta)
