"""The model bundle: the one way a trained model is stored and loaded.

A bundle is a directory with ``model.safetensors`` (weights) and ``bundle.json`` (architecture,
preprocessing, class names, decision threshold, calibration temperature, data fingerprint, pneumo
version, metrics, and the SHA-256 of the weights). Loading never unpickles. Bundles are written to a
temporary directory and renamed into place, so a reader never sees a half-written one.

``--model`` everywhere accepts a bundle directory, a run directory (its ``best/`` bundle), or the name
of a model shipped inside the package (``default``, ``default-3class``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from pneumo import __version__
from pneumo.atomic import sync_directory, write_text
from pneumo.config import PreprocessConfig, from_dict

WEIGHTS_FILE = "model.safetensors"
META_FILE = "bundle.json"
ONNX_FILE = "model.onnx"  # optional: the same network exported for ONNX Runtime (pneumo.export.onnx)
FORMAT = "pneumo-bundle"
FORMAT_VERSION = 1


# Metadata keys written by earlier pneumo versions that this one reads and drops (none retired yet).
RETIRED_META_KEYS: frozenset[str] = frozenset()


class BundleError(ValueError):
    """A bundle is missing, incomplete, tampered with or of an unknown format."""


@dataclass
class BundleMeta:
    arch: str
    classes: int
    class_names: list[str]
    preprocess: PreprocessConfig
    threshold: float = 0.5
    temperature: float = 1.0
    dropout: float = 0.3
    description: str = ""
    data_fingerprint: str = ""
    pneumo_version: str = __version__
    created: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # An ensemble (arch "ensemble"): one entry per member, {"arch", "dropout", "source", "version"}.
    members: list[dict[str, Any]] = field(default_factory=list)
    # A site bundle (``pneumo adapt``): its parent's checksums, the local data's fingerprint and image digests,
    # the method kept and why, and the cross-validated local figures. Empty for any other bundle.
    adaptation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocess"] = asdict(self.preprocess)
        return data

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "BundleMeta":
        """Metadata from ``bundle.json``'s ``meta``. Keys that older pneumo versions wrote and no longer use
        (:data:`RETIRED_META_KEYS`) are dropped; any other unknown key is an error, not ignored: it holds
        something this pneumo would not honour (a newer bundle, or an edited one)."""
        raw = {k: v for k, v in dict(raw).items() if k not in RETIRED_META_KEYS}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown metadata keys {unknown} (a bundle from a newer pneumo?); this pneumo reads "
                             f"{sorted(known)}")
        raw["preprocess"] = from_dict(PreprocessConfig, raw.get("preprocess", {}))
        return cls(**raw)

    @property
    def version(self) -> str:
        """A short model version: architecture, size and the weights' creation time."""
        return f"{self.arch}-{self.preprocess.image_size}px-{self.created or 'unknown'}"


def shipped_models() -> dict[str, Path]:
    """Bundles that ship inside the package, by name."""
    root = Path(str(resources.files("pneumo"))) / "weights"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / META_FILE).is_file()}


def resolve_model(ref: str | os.PathLike[str]) -> Path:
    """Turn a ``--model`` value into a bundle directory."""
    text = str(ref)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / META_FILE).is_file():
            return path
        if (path / "best" / META_FILE).is_file():
            return path / "best"
        raise BundleError(f"{path} is neither a model bundle (no {META_FILE}) nor a run directory with best/")
    shipped = shipped_models()
    if text in shipped:
        return shipped[text]
    raise BundleError(f"model {text!r} not found: give a bundle directory, a run directory, or one of the "
                      f"shipped models {sorted(shipped)}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_document(directory: Path) -> dict[str, Any]:
    """The raw ``bundle.json`` document of a bundle directory (format, files and their checksums, meta)."""
    meta_path = Path(directory) / META_FILE
    try:
        raw = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path}: unreadable bundle metadata ({exc})") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{meta_path}: bundle metadata is not a JSON object")
    return raw


def read_meta(ref: str | os.PathLike[str]) -> tuple[Path, BundleMeta]:
    """Resolve and read a bundle's metadata, checking its format and the integrity of its weights."""
    directory = resolve_model(ref)
    meta_path = directory / META_FILE
    raw = read_document(directory)
    if raw.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: not a pneumo bundle (format {raw.get('format')!r})")
    if int(raw.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(f"{meta_path}: bundle format {raw.get('format_version')} is newer than this pneumo "
                          f"reads ({FORMAT_VERSION}); upgrade pneumo")
    check_named_files(directory, raw)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{directory}: missing {WEIGHTS_FILE}")
    expected = (raw.get("files") or {}).get(WEIGHTS_FILE)
    if not expected:  # save_bundle always records it; its absence means the metadata was edited
        raise BundleError(f"{meta_path}: no checksum recorded for {WEIGHTS_FILE}; cannot verify the weights")
    if file_sha256(weights) != expected:
        raise BundleError(f"{weights}: checksum mismatch; the weights were modified or truncated")
    try:
        meta = BundleMeta.from_dict(raw["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path}: invalid metadata ({exc})") from exc
    return directory, meta


def check_named_files(directory: Path, document: dict[str, Any]) -> None:
    """Every file ``bundle.json`` names (its checksummed ``files`` and the gate's ``meta.gate.file``) must
    resolve inside the bundle directory, symbolic links followed: an edited bundle must not make pneumo read
    ``../../etc/...`` or a file elsewhere on the machine."""
    root = Path(directory).resolve()
    gate = (document.get("meta") or {}).get("gate") or {}
    named = [*(document.get("files") or {}), *([gate["file"]] if isinstance(gate, dict) and gate.get("file") else [])]
    for name in named:
        text = str(name)
        if not text or Path(text).is_absolute() or not (root / text).resolve().is_relative_to(root):
            raise BundleError(f"{Path(directory) / META_FILE}: it names the file {text[:200]!r}, which lies outside "
                              f"the bundle directory {directory}; a bundle's files must be inside it")


def load_state(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(directory / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise BundleError(f"{directory / WEIGHTS_FILE}: unreadable weights ({exc})") from exc


def write_meta(directory: Path, meta: BundleMeta) -> None:
    """Rewrite only the metadata (after calibration, say), atomically, keeping the weights' checksum and
    the recorded checksums of the other files (``model.onnx``)."""
    kept = {name: sha for name, sha in (read_document(directory).get("files") or {}).items()
            if name != WEIGHTS_FILE and (Path(directory) / name).is_file()}
    _write_json(directory / META_FILE, _meta_document(directory, meta, kept))


def _meta_document(directory: Path, meta: BundleMeta, other_files: dict[str, str] | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "files": {WEIGHTS_FILE: file_sha256(directory / WEIGHTS_FILE), **(other_files or {})},
            "meta": meta.to_dict()}


def _write_json(path: Path, document: dict[str, Any]) -> None:
    write_text(path, json.dumps(document, indent=2))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so that replacing
    a bundle never leaves a moment with no bundle at all. Returns False where unsupported; the caller
    then falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def save_bundle(directory: str | os.PathLike[str], model, meta: BundleMeta,
                extra_files: dict[str, str | os.PathLike[str]] | None = None) -> Path:
    """Write a complete bundle into ``directory`` atomically (build beside it, then rename)."""
    from safetensors.torch import save_file

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not meta.created:
        meta.created = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    staging = _staging_dir(target)
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"arch": meta.arch})
        for name, source in (extra_files or {}).items():
            if Path(source).is_file():
                shutil.copyfile(source, staging / name)
        _write_json(staging / META_FILE, _meta_document(staging, meta))
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def add_checked_files(ref: str | os.PathLike[str], files: dict[str, str | os.PathLike[str]]) -> Path:
    """Add files (``model.onnx``, say) to an existing bundle, each with its SHA-256 in ``bundle.json``'s
    ``files``, atomically: the bundle is copied beside itself, completed there and swapped into place, so a
    reader sees the old bundle or the new one, never a file without its checksum."""
    directory, _ = read_meta(ref)
    staging = _staging_dir(directory)
    try:
        shutil.copytree(directory, staging, dirs_exist_ok=True)
        document = read_document(staging)
        recorded = dict(document.get("files") or {})
        for name, source in files.items():
            if name in (WEIGHTS_FILE, META_FILE) or Path(name).name != name:
                raise BundleError(f"{name!r} cannot be added to a bundle: a plain file name other than "
                                  f"{WEIGHTS_FILE} and {META_FILE} is expected")
            shutil.copyfile(source, staging / name)
            os.chmod(staging / name, 0o644)
            recorded[name] = file_sha256(staging / name)
        document["files"] = recorded
        _write_json(staging / META_FILE, document)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _staging_dir(target: Path) -> Path:
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    staging.chmod(0o755)  # mkdtemp's owner-only mode would survive the rename
    return staging


def _swap_into_place(staging: Path, target: Path) -> None:
    """Put the complete bundle ``staging`` at ``target``, in one atomic exchange where the system allows, and
    durably: its files are synced before the rename, the folder holding it after."""
    sync_directory(staging, contents=True)
    if target.exists() and _exchange(staging, target):
        sync_directory(target.parent)
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the previous bundle
        return
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    sync_directory(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
