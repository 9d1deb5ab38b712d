"""One analysis, run in a worker thread: the Predictor (with Grad-CAM), then the history row.

Kept apart from the routes so the blocking work is one plain function: the event loop hands it to
the thread pool and keeps serving other requests meanwhile.
"""

from __future__ import annotations

import base64
from time import perf_counter
from typing import Any

from pneumo.data.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from pneumo.inference.predictor import Prediction
from pneumo.service.audit import AuditEvent
from pneumo.service.errors import ApiError
from pneumo.service.history import HistoryRepository
from pneumo.service.uploads import Upload
from pneumo.site.identity import ModelIdentity

def decode_error_to_api(exc: ImageDecodeError) -> ApiError:
    """Map the decoder's typed errors to HTTP: bombs 413, not an image 415, anything else 400."""
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, f"image refused: {exc.reason}")
    if isinstance(exc, UnsupportedFormatError):
        return ApiError(415, f"unsupported file type: {exc.reason}")
    return ApiError(400, f"the image cannot be decoded: {exc.reason}")


# The Predictor's error kinds as HTTP statuses: bombs 413, not an image 415, a damaged image 400.
_STATUS_OF_KIND = {"too_large": (413, "image refused"), "unsupported": (415, "unsupported file type"),
                   "undecodable": (400, "the image cannot be decoded")}


def _error_for_failed_prediction(prediction: Prediction) -> ApiError:
    status, words = _STATUS_OF_KIND.get(prediction.error_kind or "", (400, "the image cannot be analysed"))
    # The message names the upload's path-less source ("<bytes>: reason"); keep only the reason.
    reason = (prediction.error or "").split(": ", 1)[-1]
    return ApiError(status, f"{words}: {reason}")


def analyse(predictor: Any, history: HistoryRepository, upload: Upload, *, with_heatmap: bool, model: ModelIdentity,
            audit: AuditEvent | None = None) -> dict[str, Any]:
    """Predict (and explain), store the row (with ``audit``, in one transaction, and ``model``'s identity), and
    return the response body. Blocking: run it in a thread."""
    started = perf_counter()
    heatmap_png: bytes | None = None
    if with_heatmap:
        try:
            # The gate refused the image: a heatmap over a non-X-ray would only suggest meaning that is not
            # there, so none is computed.
            explanation = predictor.explain(upload.data, skip_unknown=True)
        except ImageDecodeError as exc:
            raise decode_error_to_api(exc) from exc
        prediction = explanation.prediction
        if prediction.error is None and prediction.label != "UNKNOWN":
            heatmap_png = explanation.overlay_png
    else:
        prediction = predictor.predict(upload.data)
    if prediction.error is not None:
        raise _error_for_failed_prediction(prediction)
    result = prediction.reading()
    result["timing_ms"] = dict(result.get("timing_ms") or {})
    result["timing_ms"]["analysis"] = round((perf_counter() - started) * 1000.0, 3)
    entry = history.add(image_sha256=upload.sha256, file_type=upload.file_type,
                        model_version=prediction.model_version, result=result, heatmap_png=heatmap_png,
                        audit=audit, model_id=model.label, model_parent=model.parent)
    return {"id": entry.id, "created": entry.created, **result, "model": model.to_dict(), "image_sha256": upload.sha256,
            "file_type": upload.file_type,
            "heatmap": base64.b64encode(heatmap_png).decode("ascii") if heatmap_png else None}
