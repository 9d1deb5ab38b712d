"""Typed configuration: one dataclass per concern, saved with every run and every model bundle."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_type_hints

from pneumo.atomic import write_text

RESIZE_MODES = ("stretch", "letterbox")
INTENSITY_MODES = ("none", "percentile")
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos")


@dataclass
class PreprocessConfig:
    """Deterministic steps shared by training and inference: they travel with the weights."""

    image_size: int = 224
    resize_mode: Literal["stretch", "letterbox"] = "stretch"
    # Percentile stretch removes scanner-specific brightness/contrast offsets before the network sees them.
    intensity: Literal["none", "percentile"] = "percentile"
    clahe: bool = False
    # Crop each film to its thorax (pneumo.data.thorax: lung fields found by a classical method, plus a
    # margin) before resizing, so that framing (neck, arms, abdomen, borders) differs less between sites.
    thorax_crop: bool = False
    mean: float = 0.5
    std: float = 0.25
    # Stored with the weights like the rest; bundles written before these existed read today's values.
    percentile_low: float = 0.5
    percentile_high: float = 99.5
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    interpolation: Literal["bilinear", "bicubic", "lanczos"] = "bilinear"

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize_mode {self.resize_mode!r}; choose one of {list(RESIZE_MODES)}")
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(f"unknown intensity {self.intensity!r}; choose one of {list(INTENSITY_MODES)}")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if not 0.0 <= self.percentile_low < self.percentile_high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentile_low}, "
                             f"{self.percentile_high}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; choose one of {list(INTERPOLATIONS)}")
        if self.clahe_clip <= 0 or self.clahe_tiles < 1:
            raise ValueError(f"clahe_clip must be positive and clahe_tiles at least 1, got {self.clahe_clip}, "
                             f"{self.clahe_tiles}")


@dataclass
class AugmentConfig:
    """Training-only geometric and photometric augmentation."""

    enabled: bool = True
    rotation_degrees: float = 10.0
    translate: float = 0.08
    zoom: float = 0.15
    shear_degrees: float = 8.0
    brightness: float = 0.2
    contrast: float = 0.2
    # Off by default: the heart sits on the left, a mirrored chest is not a normal chest.
    horizontal_flip: bool = False
    # Random gamma x ** exp(U(-g, g)) per image: mimics other detectors' and sites' tone curves.
    gamma: float = 0.0
    # Height-to-width ratio x exp(U(-a, a)) per image. Films are stretched to a square, so how much of the
    # neck and abdomen was collimated away changes how long the lungs look; in Kermany's originals pneumonia
    # films are wider than tall more often than normal ones, a shortcut this takes away.
    aspect: float = 0.0
    # Share of training images rendered as another hospital would have acquired them
    # (pneumo.data.acquisition.site_variant: exposure, field of view, collimation, markers, scale, noise).
    site_variant: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.site_variant <= 1.0:
            raise ValueError(f"site_variant must be a share in [0, 1], got {self.site_variant}")
        if not 0.0 <= self.aspect < 1.0:
            raise ValueError(f"aspect must be in [0, 1), got {self.aspect}")


@dataclass
class DataConfig:
    root: str = ""
    manifest: str = ""
    classes: int = 2
    val_fraction: float = 0.15
    # "carve": validation is a patient-level split of train (the Kermany val folder holds 16 images);
    # "folder": use the dataset's own val split as given.
    val_source: Literal["carve", "folder"] = "carve"
    split_seed: int = 42
    # "patient": a random patient-level split; "temporal": the earliest (or latest) patients of each
    # numbering sequence, a stand-in for a later cohort (Kermany file numbers run in time; manifests give
    # an ``order`` column).
    split_by: Literal["patient", "temporal"] = "patient"
    temporal_end: Literal["earliest", "latest"] = "earliest"
    # How the random patient split is drawn. "fraction": val_fraction of each class's images; "kfold": the
    # first fold of round(1 / val_fraction) stratified group folds (0.15 gives 14.3%), which is what configs
    # stored before this setting existed used, and keep using (stored_data_dict).
    patient_split: Literal["fraction", "kfold"] = "fraction"
    balance: Literal["none", "class_weights", "sampler"] = "class_weights"
    cache_dir: str = ""
    num_workers: int = 2
    batch_size: int = 32
    # Also validate on the acquisition-shifted block: the validation X-rays rendered with the acquisition
    # style of the other label (pneumo.data.acquisition.confound_swap), which a shortcut fails.
    shifted_val: bool = False

    def __post_init__(self) -> None:
        if self.classes not in (2, 3):
            raise ValueError(f"classes must be 2 or 3, got {self.classes}")
        if not 0.0 < self.val_fraction < 0.9:
            raise ValueError(f"val_fraction must be in (0, 0.9), got {self.val_fraction}")
        if self.balance not in ("none", "class_weights", "sampler"):
            raise ValueError(f"unknown balance {self.balance!r}; choose none, class_weights or sampler")


@dataclass
class ModelConfig:
    arch: str = "mobilenet_v3_small"
    pretrained: bool = False
    pretrained_weights: str = ""  # a local torchvision state dict file; used instead of a download
    init_from: str = ""  # a pneumo bundle (same arch) whose backbone starts this model; its head is not used
    dropout: float = 0.3
    freeze_backbone: bool = False
    finetune_last: int = 0  # 0 trains every block


@dataclass
class TrainConfig:
    epochs: int = 20
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: Literal["ce", "focal"] = "ce"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    # "onecycle": warmup then cosine decay, stepped every batch; "cosine": per epoch; "plateau": on val AUC.
    scheduler: Literal["plateau", "cosine", "onecycle"] = "plateau"
    warmup_fraction: float = 0.3  # onecycle only: share of the steps spent warming up
    # Exponential moving average of the weights (0 turns it off); the average is what is validated and saved.
    ema_decay: float = 0.0
    # Training batches that re-estimate the average's BatchNorm statistics before each validation.
    ema_batchnorm_batches: int = 32
    # AdamW's decay on BatchNorm weights and biases shrinks nothing useful; False leaves them undecayed.
    decay_norm_and_bias: bool = True
    plateau_patience: int = 2
    plateau_factor: float = 0.3
    early_stopping_patience: int = 5
    grad_clip: float = 1.0
    amp: bool = True
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    threads: int = 0  # 0 leaves torch's default
    max_steps_per_epoch: int = 0  # 0 means a full epoch; small values make smoke runs
    progress: bool = True
    # Knowledge distillation: a teacher bundle (an ensemble, say) whose outputs on each augmented batch the
    # student also learns to match; "" trains on the labels alone.
    distill_from: str = ""
    distill_weight: float = 0.5  # the teacher's share of the loss (the labels keep the rest)
    distill_temperature: float = 2.0  # both sides' logits are divided by it before they are compared
    # Jensen-Shannon divergence between each image's prediction and its site variant's (AugMix's consistency
    # term), at this weight beside the label loss on both; 0 turns it off. Each step then runs two views.
    consistency_weight: float = 0.0
    # The validation AUC that picks the best epoch: "val" (the validation block), "shifted" (the
    # acquisition-shifted block, data.shifted_val) or "mean" (the two averaged).
    select_on: Literal["val", "shifted", "mean"] = "val"

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose adam or adamw")
        if self.loss not in ("ce", "focal"):
            raise ValueError(f"unknown loss {self.loss!r}; choose ce or focal")
        if self.scheduler not in ("plateau", "cosine", "onecycle"):
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose plateau, cosine or onecycle")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 < self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in (0, 1), got {self.warmup_fraction}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0.0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")
        if self.consistency_weight < 0.0:
            raise ValueError(f"consistency_weight must be >= 0, got {self.consistency_weight}")
        if self.consistency_weight > 0.0 and self.distill_from:
            raise ValueError("consistency_weight and distill_from cannot be combined; choose one")
        if self.select_on not in ("val", "shifted", "mean"):
            raise ValueError(f"unknown select_on {self.select_on!r}; choose val, shifted or mean")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def check(self) -> None:
        """Settings that depend on each other across sections (each section checks its own on creation)."""
        if self.train.select_on != "val" and not self.data.shifted_val:
            raise ValueError(f"train.select_on {self.train.select_on!r} needs data.shifted_val: true")
        if self.train.consistency_weight > 0.0 and not self.augment.enabled:
            raise ValueError("train.consistency_weight needs augment.enabled: the second view is a site variant")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        return from_dict(cls, raw)

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> "RunConfig":
        """A config saved in a run directory or a bundle, read as the release that wrote it drew its splits."""
        raw = dict(raw)
        raw["data"] = stored_data_dict(raw.get("data") or {})
        return from_dict(cls, raw)

    def save(self, path: Path) -> None:
        # Atomic: a run killed at this moment must not leave an empty config.json.
        write_text(path, json.dumps(self.to_dict(), indent=2))


T = TypeVar("T")


def stored_data_dict(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored DataConfig's keys, with the split rule of the release that wrote it where it names none: a run
    or bundle from before ``patient_split`` drew its patient split by k-fold, and evaluating or resuming it must
    draw the same one."""
    return {"patient_split": "kfold", **raw}


def from_dict(cls: type[T], raw: dict[str, Any] | None) -> T:
    """Build a (nested) dataclass from a plain dict, refusing keys it does not know."""
    raw = dict(raw or {})
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; accepted: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value)
        else:
            kwargs[name] = _coerce(hint, value, f"{cls.__name__}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    choices = get_args(hint)
    if choices and getattr(hint, "__origin__", None) is Literal:
        if value not in choices:
            raise ValueError(f"{where}={value!r} is not one of {list(choices)}")
        return value
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{where}={value!r} is not a boolean")
        return bool(value)
    if hint in (int, float, str):
        try:
            return hint(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}={value!r} is not a valid {hint.__name__}") from exc
    return value


def apply_settings(raw: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    """``raw`` with each ``section.name=value`` of ``settings`` set (the value read as YAML, so ``true``, ``0.5``
    and ``[1, 2]`` keep their types); :func:`from_dict` then refuses what it does not know."""
    import yaml

    out = {section: dict(values) if isinstance(values, dict) else values for section, values in raw.items()}
    for setting in settings:
        key, sep, value = setting.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name or "." in name:
            raise ValueError(f"--set {setting!r}: expected SECTION.NAME=VALUE, e.g. preprocess.clahe=true")
        if section not in {f.name for f in fields(RunConfig)}:
            raise ValueError(f"--set {setting!r}: no config section {section!r}; sections: "
                             f"{sorted(f.name for f in fields(RunConfig))}")
        out.setdefault(section, {})[name] = yaml.safe_load(value) if value.strip() else ""
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON run configuration into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return json.loads(text)
    import yaml

    loaded = yaml.safe_load(text) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded
