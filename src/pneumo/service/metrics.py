"""What ``GET /metrics`` shows Prometheus: counters of this server's predictions and reviews since it started,
and a histogram of the time a prediction takes. One registry per app (no process-wide state), so two apps in one
process (the tests) count apart.

Counters restart at zero with the server, as Prometheus expects (``rate()`` handles resets); the figures over the
whole history are the site report's. No identifier, name or note goes into a label: only fixed words and the
model's ``name@hash``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pneumo.service.reviews import binary_truth
from pneumo.site.identity import ModelIdentity

# From a fast ONNX answer without heatmap to a slow Grad-CAM on a busy CPU.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, model: ModelIdentity) -> None:
        self.registry = CollectorRegistry()
        self.model = model.label
        info = Gauge("pneumo_model_info", "the model this server runs (always 1)", ["model", "version", "parent"],
                     registry=self.registry)
        info.labels(model.label, model.version, model.parent or "").set(1)
        self.predictions = Counter("pneumo_predictions", "answers given, by label (UNKNOWN: the gate refused)",
                                   ["label", "source", "model"], registry=self.registry)
        self.warnings = Counter("pneumo_ood_warnings", "answers given with an out-of-distribution warning",
                                ["source", "model"], registry=self.registry)
        self.reviews = Counter("pneumo_reviews", "reviews recorded, by the reviewer's label",
                               ["label", "source"], registry=self.registry)
        self.disagreements = Counter("pneumo_review_disagreements", "reviews whose conclusion (pneumonia or not) "
                                     "differs from pneumo's NORMAL/PNEUMONIA", ["model"], registry=self.registry)
        self.latency = Histogram("pneumo_prediction_seconds", "time to answer POST /api/v1/predict (upload, "
                                 "queue, analysis)", buckets=LATENCY_BUCKETS, registry=self.registry)

    def prediction(self, result: dict[str, Any], source: str, seconds: float | None = None) -> None:
        self.predictions.labels(str(result.get("label")), source, self.model).inc()
        if result.get("out_of_distribution"):
            self.warnings.labels(source, self.model).inc()
        if seconds is not None:
            self.latency.observe(seconds)

    def review(self, label: str, source: str, answered: str | None, model: str | None) -> None:
        """Count a review of an analysis that pneumo answered ``answered`` with model ``model``."""
        self.reviews.labels(label, source).inc()
        truth = binary_truth(label)
        if truth is not None and answered in ("NORMAL", "PNEUMONIA") and truth != (answered == "PNEUMONIA"):
            self.disagreements.labels(model or "unknown").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
