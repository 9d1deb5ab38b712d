"""The model's part of a prediction: preprocessed pixels -> test-time views -> backend -> calibrated
probabilities and the gate's scores, one typed :class:`ImageOutputs` per input."""

from __future__ import annotations

import numpy as np

from pneumo.bundle import BundleMeta
from pneumo.data.preprocess import normalize_uint8
from pneumo.inference import tta
from pneumo.inference.backend import Backend
from pneumo.inference.probability import OutputHead
from pneumo.inference.results import ImageOutputs


class ModelScorer:
    """Runs ``backend`` on uint8 SxS inputs made with ``meta``'s preprocessing; ``views``: test-time views.
    Holds no state between calls, so threads may share it."""

    def __init__(self, meta: BundleMeta, backend: Backend, views: bool = False) -> None:
        self.meta, self.backend, self.views = meta, backend, views
        self.head = OutputHead.of(meta.class_names)

    def outputs(self, pixels: list[np.ndarray], in_lane: bool = False) -> list[ImageOutputs]:
        """One :class:`ImageOutputs` per input, in one model batch (in a single-threaded lane with ``in_lane``)."""
        stacked = [tta.views(p, self.views) for p in pixels]
        count = stacked[0].shape[0]
        batch = normalize_uint8(np.concatenate(stacked), self.meta.preprocess)[:, None]
        outputs = self.backend.run_in_lane(batch) if in_lane else self.backend.run(batch)
        logits = outputs.logits.reshape(len(pixels), count, -1)
        probability, classes = self.head.score(logits, float(self.meta.temperature))
        # The gate judges the image as given: the first view (TTA's other views are shifted copies).
        distance = _first_view(outputs.distance, len(pixels), count)
        nonxray = _first_view(outputs.nonxray, len(pixels), count)
        return [ImageOutputs(logits=logits[i], probability=float(probability[i]),
                             subtypes=None if classes is None else dict(zip(self.meta.class_names,
                                                                            map(float, classes[i]))),
                             distance=None if distance is None else float(distance[i]),
                             nonxray=None if nonxray is None else float(nonxray[i]))
                for i in range(len(pixels))]

    def features(self, pixels: list[np.ndarray]) -> np.ndarray:
        """(N, D) pooled features of the inputs as given (no test-time views): what the gate is fitted on."""
        batch = normalize_uint8(np.stack(pixels), self.meta.preprocess)[:, None]
        return self.backend.run(batch).features


def _first_view(values: np.ndarray | None, n: int, views: int) -> np.ndarray | None:
    return None if values is None else values.reshape(n, views)[:, 0]
