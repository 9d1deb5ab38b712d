"""Optional dependencies, imported on use: ``require("torch", extra="train", needed_for="pneumo train")``.

``pip install pneumo`` predicts, explains and serves on ONNX Runtime. Training, export and gate fitting need
the ``train`` extra (PyTorch), evaluation the ``eval`` extra (scikit-learn, matplotlib; ``train`` includes
it), a bundle preprocessed with CLAHE the ``opencv`` extra, the DICOM node the ``dicom`` extra, Ray
scoring the ``ray`` extra, PostgreSQL history the ``postgres`` extra, single sign-on the ``oidc`` extra. Every path that needs one calls :func:`require` or :func:`require_extra` first, so a missing extra is one
sentence naming what to install (``pneumo`` prints it and exits 2), never a traceback from deep inside an
import. The model is MONAI's ``optional_import``, reduced to the one case pneumo has.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The modules each extra provides that pneumo imports (pyproject.toml's [project.optional-dependencies]).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchvision", "onnx", "sklearn", "cv2"),
    "eval": ("sklearn", "matplotlib"),
    "opencv": ("cv2",),
    "dicom": ("pynetdicom", "highdicom", "dicomweb_client"),
    "ray": ("ray",),
    "postgres": ("psycopg",),
    "oidc": ("joserfc", "httpx"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` saying that ``needed_for`` needs
    ``pip install 'pneumo[extra]'``. Only the absence of ``module`` itself (or a package above it) is
    translated: a module that is installed but fails to import raises its own error."""
    if extra not in EXTRA_MODULES:
        raise ValueError(f"unknown extra {extra!r}; choose one of {sorted(EXTRA_MODULES)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        parts = module.split(".")
        if exc.name not in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise
        raise MissingExtraError(f"{needed_for} needs {module}, which is not installed: "
                                f"pip install 'pneumo[{extra}]'") from exc


def require_extra(extra: str, *, needed_for: str) -> None:
    """:func:`require` every module of ``extra``: for commands that need the whole of it."""
    if extra not in EXTRA_MODULES:
        raise ValueError(f"unknown extra {extra!r}; choose one of {sorted(EXTRA_MODULES)}")
    for module in EXTRA_MODULES[extra]:
        require(module, extra=extra, needed_for=needed_for)
