"""Judging one input against its :class:`~corpus.Case`: the shared rules of the reliability suite."""

from __future__ import annotations

import os
import threading
from typing import Callable

import numpy as np

from pneumo.data.errors import ImageDecodeError

from pneumo_testsupport.corpus import Case


def contract_problem(image: object) -> str | None:
    """Why a decoded image breaks the decoder's contract (2-D finite float32 in [0, 1]), or None."""
    if not isinstance(image, np.ndarray):
        return f"returned {type(image).__name__}, not an array"
    if image.ndim != 2 or image.size == 0:
        return f"shape {image.shape} is not a non-empty 2-D image"
    if image.dtype != np.float32:
        return f"dtype {image.dtype}, not float32"
    if not np.isfinite(image).all():
        return "NaN or infinite pixels"
    if image.min() < 0.0 or image.max() > 1.0:
        return f"pixels outside [0, 1]: {image.min()}..{image.max()}"
    return None


def judge_decode(case: Case, decode: Callable[[], np.ndarray]) -> str | None:
    """Run ``decode`` and say what is wrong with the outcome for ``case`` (None when it is right)."""
    try:
        image = decode()
    except ImageDecodeError as exc:
        if case.expect == "ok":
            return f"refused a valid input: {exc}"
        if not exc.reason or "Traceback" in str(exc):
            return f"unclear error: {exc!r}"
        return None
    except BaseException as exc:  # the point of the suite: nothing but ImageDecodeError may escape
        return f"foreign exception {type(exc).__name__}: {exc}"
    problem = contract_problem(image)
    if problem:
        return problem
    if case.expect == "error":
        return f"accepted an input that must be refused (decoded to {image.shape})"
    if case.reference is not None:
        reference = np.asarray(case.reference, dtype=np.float32)
        if image.shape != reference.shape:
            return f"decoded shape {image.shape}, expected {reference.shape}"
        error = float(np.abs(image - reference).mean())
        if error > case.tolerance:
            return f"decoded pixels differ from the reference (mean abs error {error:.4f} > {case.tolerance})"
    return None


def call_with_timeout(fn: Callable[[], object], seconds: float, unblock: Callable[[], None] | None = None):
    """Run ``fn`` in a daemon thread; returns ``(finished, result_or_exception)``. On timeout ``unblock`` is
    called so a thread stuck on a FIFO can finish instead of outliving the test."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # reported to the caller, who judges it
            box["result"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            unblock()
            thread.join(5)
        return False, None
    return True, box.get("result")


def release_fifos(cases: list[Case]) -> None:
    """Open and close each FIFO of the corpus for writing: a reader blocked on it sees end-of-file."""
    for case in cases:
        if case.path.is_fifo():
            try:
                os.close(os.open(case.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader is waiting: nothing to release
                pass
