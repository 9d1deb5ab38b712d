"""Typed settings of ``pneumo adapt``: what to adapt, on which local labels, and how hard to try."""

from __future__ import annotations

from dataclasses import dataclass, field

# Fine-tuning is kept only when its cross-validated AUC beats recalibration alone by this much: its epoch count
# was chosen on the same folds, so its figure is a little optimistic.
DEFAULT_MIN_AUC_GAIN = 0.005
# A site bundle's threshold rule unless stated otherwise: the highest threshold with cross-validated sensitivity
# >= 0.90, issue 24's operating point for a site (sensitivity >= 0.90 with specificity >= 0.60). The parent's own
# rule (0.95 for `default`) was chosen on its training hospital; at a new site it can leave most normals flagged.
DEFAULT_SITE_SENSITIVITY = 0.90


@dataclass
class FinetuneConfig:
    """Fine-tuning that a few hundred X-rays allow: the parent's head kept, its top blocks only, a low constant
    learning rate (so the model after epoch e of a longer run is the model an e-epoch run gives, and the epochs
    can be chosen by cross-validation), and the parent's own training images replayed against forgetting."""

    enabled: bool = True
    finetune_last: int = 1  # top backbone blocks trained; 1 leaves the gate's feature layers as the parent had them
    lr: float = 5e-4  # a quarter of the shipped recipe's peak
    weight_decay: float = 1e-4
    max_epochs: int = 6  # candidate epoch counts 1..max_epochs, chosen by the folds' pooled AUC
    batch_size: int = 16
    replay_data: str = ""  # the parent's training data root (Kermany layout); "" only with replay_share 0
    replay_share: float = 0.25  # share of every batch drawn from the parent's training images
    min_auc_gain: float = DEFAULT_MIN_AUC_GAIN
    workers: int = 0  # data loader processes

    def __post_init__(self) -> None:
        if self.finetune_last < 0:
            raise ValueError(f"finetune_last must be >= 0, got {self.finetune_last}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1, got {self.max_epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (BatchNorm), got {self.batch_size}")
        if not 0.0 <= self.replay_share < 1.0:
            raise ValueError(f"replay_share must be in [0, 1), got {self.replay_share}")
        if self.enabled and self.replay_share > 0 and not self.replay_data:
            raise ValueError("fine-tuning replays the parent's training images against forgetting: give their root "
                             "(--replay-data ROOT), or --replay-share 0 to fine-tune without them, or --no-finetune")


@dataclass
class AdaptConfig:
    model: str  # the parent bundle (directory, run directory or shipped name)
    manifest: str  # local labels: path,label,patient_id
    out: str  # the site bundle's directory (must not exist yet)
    target_sensitivity: float | None = DEFAULT_SITE_SENSITIVITY  # None: the parent's own threshold rule
    folds: int = 5  # patient-grouped folds for cross-fitting and cross-validation
    min_per_class: int = 20  # fewer local labels of a class than this: refuse
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch threads; 0 leaves torch's default
    cache_dir: str = ""  # decoded images (default ~/.cache/pneumo)
    n_boot: int = 1000  # bootstrap resamples (of patients) for the intervals
    export_onnx: bool = True  # add model.onnx, so the site bundle runs on ONNX Runtime like the shipped ones
    progress: bool = False
    keep_parent_gate: bool = False  # True: copy the parent's gate unchanged instead of widening it to the site
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if self.min_per_class < self.folds:
            raise ValueError(f"min_per_class ({self.min_per_class}) must be at least the number of folds "
                             f"({self.folds}): every fold needs both classes")
        if self.target_sensitivity is not None and not 0.0 < self.target_sensitivity <= 1.0:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {self.target_sensitivity}")
        if not self.model or not self.manifest or not self.out:
            raise ValueError("model, manifest and out are required")
