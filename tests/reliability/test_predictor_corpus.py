"""Every hostile input through ``Predictor``: an error entry naming the input, or a correct result."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pneumo.inference.loading import load_bundle
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError
from pneumo.data.preprocess import normalize_uint8, preprocess_array

from pneumo_testsupport.corpus import Case, regular_cases
from .outcomes import call_with_timeout, release_fifos

LABELS = {"NORMAL", "PNEUMONIA", "UNKNOWN"}


@pytest.fixture(scope="module")
def predictor(session_bundle: Path):
    from pneumo.inference.predictor import Predictor

    return Predictor.load(str(session_bundle))


@pytest.fixture(scope="module")
def reference(session_bundle: Path):
    """P(pneumonia) computed the long way (bundle model, bundle preprocessing, temperature), to check that
    the predictor's answers are right and not merely present."""
    model, meta, _ = load_bundle(session_bundle)

    def probability(path: Path) -> float:
        pixels = preprocess_array(decode_image(path), meta.preprocess)
        x = torch.from_numpy(normalize_uint8(pixels, meta.preprocess))[None, None]
        with torch.no_grad():
            logit = float(model(x).reshape(-1)[0])
        return 1.0 / (1.0 + math.exp(-logit / meta.temperature))

    return probability


def decode_outcome(path: Path) -> str | None:
    try:
        decode_image(path)
    except ImageDecodeError as exc:
        return exc.reason
    return None


def prediction_problem(case: Case, prediction, reference) -> str | None:
    """What is wrong with ``prediction`` for ``case``, judged against the decoder and the reference."""
    refused = decode_outcome(case.path) if not case.special else "special file"
    d = prediction.to_dict()
    if set(d) != {"path", "label", "probability", "threshold", "subtype_probabilities", "unknown_reason", "error",
                  "error_kind", "timing_ms", "model_version", "out_of_distribution", "ood_reason"}:
        return f"unexpected fields {sorted(d)}"
    if refused is not None:
        if not prediction.error or str(case.path) not in prediction.error:
            return f"undecodable input without an error naming it: {d}"
        if prediction.label is not None or prediction.probability is not None or "Traceback" in prediction.error:
            return f"error entry carries a result or a traceback: {d}"
        return None
    if prediction.error is not None:
        return f"decodable input reported as an error: {prediction.error}"
    if prediction.label not in LABELS:
        return f"label {prediction.label!r}"
    if prediction.label == "UNKNOWN":
        if not prediction.unknown_reason or prediction.probability is not None:
            return f"UNKNOWN without a reason, or with a probability: {d}"
        return None
    p = prediction.probability
    if not (isinstance(p, float) and 0.0 <= p <= 1.0):
        return f"probability {p!r}"
    if abs(p - reference(case.path)) > 1e-4:
        return f"probability {p:.6f} differs from the reference {reference(case.path):.6f}"
    if prediction.label != ("PNEUMONIA" if p >= prediction.threshold else "NORMAL"):
        return f"label {prediction.label} disagrees with probability {p} at threshold {prediction.threshold}"
    return None


def test_predict_on_every_path(corpus: list[Case], predictor, reference) -> None:
    problems = {}
    scored = unknown = errors = 0
    for case in corpus:
        started = time.perf_counter()
        finished, prediction = call_with_timeout(lambda: predictor.predict(str(case.path)), 20.0,
                                                 lambda: release_fifos(corpus))
        if not finished:
            problems[case.name] = "predict hung"
            continue
        if isinstance(prediction, BaseException):
            problems[case.name] = f"predict raised {type(prediction).__name__}: {prediction}"
            continue
        problem = prediction_problem(case, prediction, reference)
        if problem is None and time.perf_counter() - started > 5:
            problem = f"took {time.perf_counter() - started:.1f}s"
        if problem:
            problems[case.name] = problem
        errors += prediction.error is not None
        unknown += prediction.label == "UNKNOWN"
        scored += prediction.label in ("NORMAL", "PNEUMONIA")
    assert not problems, "\n".join(f"{name}: {why}" for name, why in problems.items())
    assert scored >= 20 and errors >= 60, (scored, unknown, errors)


def test_predict_on_bytes_matches_paths(corpus: list[Case], predictor) -> None:
    """The service passes bytes: same label and probability as the path, errors for the same inputs."""
    for case in regular_cases(corpus):
        by_path = predictor.predict(str(case.path))
        by_bytes = predictor.predict(case.path.read_bytes())
        assert (by_path.error is None) == (by_bytes.error is None), (case.name, by_path.error, by_bytes.error)
        assert by_path.label == by_bytes.label and by_path.probability == by_bytes.probability, case.name
        assert by_bytes.path is None


def test_predict_many_never_raises_and_keeps_order(corpus: list[Case], predictor) -> None:
    paths = [str(c.path) for c in regular_cases(corpus)]
    many = predictor.predict_many(paths, batch_size=7)
    assert [p.path for p in many] == paths
    for path, batched in zip(paths, many):
        single = predictor.predict(path)
        assert (batched.error is None, batched.label) == (single.error is None, single.label), path
        if batched.probability is not None:
            assert abs(batched.probability - single.probability) < 1e-5, path


def test_explain_gives_an_image_or_a_decode_error(corpus: list[Case], predictor) -> None:
    size = predictor.meta.preprocess.image_size
    explained = 0
    for case in regular_cases(corpus):
        try:
            explanation = predictor.explain(str(case.path))
        except ImageDecodeError as exc:
            assert decode_outcome(case.path) is not None, f"{case.name}: explain refused a decodable input ({exc})"
            continue
        assert decode_outcome(case.path) is None, f"{case.name}: explain accepted an undecodable input"
        heatmap = explanation.heatmap
        assert heatmap.shape == (size, size) and np.isfinite(heatmap).all(), case.name
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0, case.name
        assert Image.open(io.BytesIO(explanation.overlay_png)).format == "PNG", case.name
        explained += 1
    assert explained >= 30
