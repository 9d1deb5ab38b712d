"""``pneumo predict --engine ray``: score any number of files on Ray Data, on one machine or a cluster.

files (paths) -> decode + checks + preprocess in ``map_batches`` tasks (:func:`pneumo.inference.predictor.
prepare_input`, what ``Predictor.predict`` runs before the model) -> the model in a pool of actors, each loading
the Predictor once (:meth:`Predictor.score`, what ``predict_many`` runs after decoding) -> rows with the columns of
``pneumo predict --format csv`` (:mod:`pneumo.inference.rows`) streamed into one Parquet or CSV file.

Every call to Ray lives in this module: its actor-pool API has changed across releases, and the ``pneumo[ray]``
extra pins the version these calls are written for.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

# Ray reads this when it is imported. On Linux a Ray instance advertises the machine's network address and its
# servers listen on every interface, even when it runs on one machine only; Ray's own switch for single-machine
# platforms keeps a local instance on 127.0.0.1, so scoring patient images on a laptop opens no port to the
# network. A process that joins a cluster (--ray-address) needs Ray's default, the variable at 1 (at 0 Ray
# refuses to join, and takes 127.0.0.1 for this node's address): `pneumo predict --ray-address` sets it to 1
# before importing this module. Set it to 1 yourself to get Ray's default everywhere.
from pneumo.batch import LOOPBACK_SWITCH  # noqa: E402  (a constant only: imports no Ray)

os.environ.setdefault(LOOPBACK_SWITCH, "0")

import pyarrow as pa  # noqa: E402  (after the switch above)
import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402
from ray.data import ActorPoolStrategy, DataContext  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pneumo.atomic import replacing  # noqa: E402
from pneumo.config import PreprocessConfig  # noqa: E402
from pneumo.gate.checks import CheckConfig  # noqa: E402
from pneumo.inference.predictor import PreparedInput, Predictor, prepare_input  # noqa: E402
from pneumo.inference.rows import column_types, csv_cell, table_columns, table_row  # noqa: E402

OUTPUT_SUFFIXES = (".parquet", ".csv")
_ARROW_TYPES = {str: pa.string(), float: pa.float64(), bool: pa.bool_()}


@dataclass(frozen=True)
class ModelSpec:
    """What each model actor loads: the arguments of :meth:`Predictor.load`. ``model`` must name the same bundle
    on every node (a shipped name, or a path each node can read)."""

    model: str = "default"
    backend: str = "torch"
    device: str = "cpu"
    tta: bool = False


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide to run. ``address``: a running cluster (``ray start --head`` prints it; ``auto`` finds
    the one on this machine); None starts a local instance with ``num_cpus`` CPUs (default: all of them).
    ``actor_cpus``: model threads per actor (ONNX Runtime intra-op threads, PyTorch's ``set_num_threads``).
    ``actor_share``: the part of those CPUs an actor reserves in Ray's accounting, where CPUs are slots, not
    cores. A model thread keeps its core busy, but the decoding tasks beside it need slots too; reserving half a
    CPU per thread lets one actor per core run beside the decoding tasks (a 2-core machine gets two actors,
    where whole CPUs left it one). ``max_actors``: upper bound of the autoscaling actor pool (None: as
    many as fit beside one decoding task, at most one per ``actor_cpus`` CPUs; Ray's own default, unbounded,
    lets the actors take every CPU and starves the decoding tasks that feed them). ``decode_cpus``: CPUs Ray
    reserves per decoding task; a quarter, because decoding is about a quarter of the work per image and reading
    a file waits on storage. A value other than the actors' keeps Ray from fusing decoding into the model actors
    (it fuses steps whose resources are equal), so decoding scales apart from the models. ``decode_batch`` and
    ``model_batch``: files per decoding task and images per model call. Small decoding tasks cost Ray a task and
    an object per few images (over 5,216 files with one actor: 16/32 gave 0.37 of ``predict_many``, 64/128
    0.55). A model batch no larger than a decoding task keeps both actors fed as each task finishes: on 2,000
    files, 64/32 gave 0.36-0.44 overall and a median of 0.72 after warm-up over 11 rounds on an idle machine
    (0.59-1.02: the estimate is noisy), 64/128 0.36-0.37 and 0.57-0.64 (``bench/bench_ray.py --decode-batch
    --model-batch``)."""

    address: str | None = None
    num_cpus: int | None = None
    actor_cpus: int = 1
    actor_share: float = 0.5
    max_actors: int | None = None
    decode_cpus: float = 0.25
    decode_batch: int = 64
    model_batch: int = 32
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("num_cpus", "max_actors"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or unset), got {value}")
        for name in ("actor_cpus", "decode_batch", "model_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.actor_share <= 1:
            raise ValueError(f"actor_share must be in (0, 1], got {self.actor_share}")
        if not 0 < self.decode_cpus or self.decode_cpus == self.actor_reserved_cpus:
            raise ValueError(f"decode_cpus must be positive and differ from the CPUs an actor reserves "
                             f"({self.actor_reserved_cpus}; equal resources make Ray run decoding inside the model "
                             f"actors), got {self.decode_cpus}")
        if self.address is not None and self.num_cpus is not None:
            raise ValueError("num_cpus sizes a local Ray instance; a cluster given by address has its own CPUs")


    @property
    def actor_reserved_cpus(self) -> float:
        return self.actor_cpus * self.actor_share


@dataclass(frozen=True)
class BatchSummary:
    out: Path
    files: int
    errors: int
    unknown: int
    seconds: float  # from submitting the dataset to the last row written (Ray's start-up not included)
    gate_status: str = ""  # what the chest-X-ray gate checked (Predictor.gate_status)

    @property
    def images_per_s(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.files} files, {self.errors} errors, {self.unknown} UNKNOWN in {self.seconds:.1f} s "
                f"({self.images_per_s:.1f} images/s) -> {self.out}")


def check_output(out: Path) -> str:
    """The output format named by ``out``'s suffix; ValueError for any other."""
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {out}: unknown output format {suffix or '(no suffix)'!r}; name a file ending in "
                         f"one of {list(OUTPUT_SUFFIXES)}")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: folder {out.parent} does not exist")
    return suffix[1:]


def predict_to_file(paths: Sequence[str], out: Path, spec: ModelSpec, cfg: RayConfig = RayConfig()) -> BatchSummary:
    """Score ``paths`` (already expanded: files, one row each) into ``out`` (.parquet or .csv), rows in input
    order. Unreadable files become error rows. Reuses a Ray instance this process already joined; otherwise
    starts or joins one per ``cfg`` and leaves it when done."""
    kind = check_output(out)
    # Load once here: a wrong model fails before Ray starts, and an ONNX export the actors need is made once.
    predictor = Predictor.load(spec.model, backend=spec.backend, device=spec.device, tta=spec.tta)
    columns = table_columns(predictor.subtype_names)
    preprocess, checks, gate_status = predictor.meta.preprocess, predictor.checks, predictor.gate_status
    del predictor
    joined = _connect(cfg)
    try:
        with _data_options():
            dataset = _pipeline(list(paths), spec, preprocess, checks, columns, cfg)
            summary = _write(dataset, out, kind, columns, total=len(paths), progress=cfg.progress)
        return replace(summary, gate_status=gate_status)
    finally:
        if joined:
            ray.shutdown()


def _connect(cfg: RayConfig) -> bool:
    """Start or join Ray unless this process already has; True when this call did (and should leave it)."""
    if ray.is_initialized():
        if cfg.address is not None or cfg.num_cpus is not None:
            raise ValueError(f"this process has already joined a Ray instance; address={cfg.address!r} and "
                             f"num_cpus={cfg.num_cpus!r} cannot apply (leave both unset to use it, or call "
                             "ray.shutdown() first)")
        return False
    common: dict[str, Any] = dict(logging_level="WARNING", log_to_driver=True)
    if cfg.address is None:
        # "local": a new instance even when this machine runs a `ray start` cluster, which a bare ray.init()
        # would join (and fail on when that cluster is gone but its address file is not).
        ray.init(address="local", num_cpus=cfg.num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
    else:
        ray.init(address=cfg.address, **common)
    return True


def max_actors(cfg: RayConfig, cluster_cpus: float) -> int:
    """How many model actors the pool may grow to on a cluster with ``cluster_cpus``."""
    if cfg.max_actors is not None:
        return cfg.max_actors
    fit = int((cluster_cpus - cfg.decode_cpus) // cfg.actor_reserved_cpus)
    return max(1, min(fit, int(cluster_cpus // cfg.actor_cpus)))


def _pipeline(paths: list[str], spec: ModelSpec, preprocess: PreprocessConfig, checks: CheckConfig,
              columns: list[str], cfg: RayConfig) -> Any:
    """The lazy Ray dataset: paths -> prepared pixels (tasks) -> table rows (actors)."""
    actors = max_actors(cfg, ray.cluster_resources().get("CPU", 1.0))
    blocks = max(1, -(-len(paths) // cfg.decode_batch))
    items = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    prepared = items.map_batches(_prepare_batch, batch_size=cfg.decode_batch, batch_format="numpy",
                                 num_cpus=cfg.decode_cpus, fn_kwargs={"preprocess": preprocess, "checks": checks})
    return prepared.map_batches(
        _Scorer, batch_size=cfg.model_batch, batch_format="numpy", num_cpus=cfg.actor_reserved_cpus,
        compute=ActorPoolStrategy(min_size=1, max_size=actors),
        fn_constructor_kwargs={"spec": spec, "threads": cfg.actor_cpus, "columns": columns})


def _prepare_batch(batch: dict[str, np.ndarray], *, preprocess: PreprocessConfig,
                   checks: CheckConfig) -> dict[str, np.ndarray]:
    """Decode, check and preprocess a batch of files. The pixels travel as one fixed-size tensor column (zeros
    where a file is unreadable or refused, ``ready`` says which); the rest as JSON text, which keeps None as None
    (a column of Nones would come back from Arrow as NaN floats)."""
    prepared = [prepare_input(str(path), preprocess, checks) for path in batch["path"]]
    size = preprocess.image_size
    pixels = np.zeros((len(prepared), size, size), dtype=np.uint8)
    for i, item in enumerate(prepared):
        if item.pixels is not None:
            pixels[i] = item.pixels
    notes = [json.dumps({"reason": p.reason, "error": p.error, "error_kind": p.error_kind, "timing": p.timing})
             for p in prepared]
    return {"path": batch["path"], "pixels": pixels,
            "ready": np.array([p.pixels is not None for p in prepared], dtype=bool),
            "notes": np.array(notes, dtype=object)}


def _schema(columns: list[str]) -> pa.Schema:
    return pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in column_types(columns).items()])


class _Scorer:
    """A model actor: loads the Predictor once, then scores prepared batches into table rows."""

    def __init__(self, spec: ModelSpec, threads: int, columns: list[str]) -> None:
        if spec.backend == "torch":
            # PyTorch's threads are per process, not per model; the actor's CPUs decide them, not OMP_NUM_THREADS.
            # Imported here: the ONNX path runs where torch is not installed.
            import torch

            torch.set_num_threads(threads)
        self.predictor = Predictor.load(spec.model, backend=spec.backend, device=spec.device, tta=spec.tta,
                                        threads=threads, workers=1)
        self.columns = columns
        self.schema = _schema(columns)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        prepared = []
        for path, pixels, ready, notes in zip(batch["path"], batch["pixels"], batch["ready"], batch["notes"]):
            note = json.loads(notes)
            prepared.append(PreparedInput(str(path), pixels if ready else None, reason=note["reason"],
                                          error=note["error"], error_kind=note.get("error_kind"),
                                          timing=note["timing"]))
        rows = [table_row(p.to_dict(), self.columns) for p in self.predictor.score(prepared)]
        return pa.Table.from_pylist(rows, schema=self.schema)


@contextmanager
def _data_options() -> Iterator[None]:
    """Rows in input order, and Ray's per-operator progress off (ours counts files); Ray Data reads these from
    the current DataContext when a dataset is created, so they are set around building and running it."""
    context = DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


def _write(dataset: Any, out: Path, kind: str, columns: list[str], *, total: int, progress: bool) -> BatchSummary:
    """Stream the rows into ``out`` through a temporary file renamed at the end: a run that dies never leaves a
    partial file under the name asked for."""
    files = errors = unknown = 0
    started = perf_counter()
    bar = tqdm(total=total, unit="img", desc="scoring", file=sys.stderr, disable=not progress)
    try:
        with replacing(out) as partial, _Writer(partial, kind, _schema(columns)) as writer:
            for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                writer.write(table)
                files += table.num_rows
                errors += table.num_rows - table.column("error").null_count
                unknown += sum(label == "UNKNOWN" for label in table.column("label").to_pylist())
                bar.update(table.num_rows)
    finally:
        bar.close()
    return BatchSummary(out, files, errors, unknown, perf_counter() - started)


class _Writer:
    """One output file, Parquet or CSV (CSV cells written as ``pneumo predict --format csv`` prints them)."""

    def __init__(self, path: Path, kind: str, schema: pa.Schema) -> None:
        self.kind, self.schema = kind, schema
        if kind == "parquet":
            self._parquet = pq.ParquetWriter(path, schema)
        else:
            self._file = path.open("w", newline="")
            self._csv = csv.writer(self._file)
            self._csv.writerow(schema.names)

    def write(self, table: pa.Table) -> None:
        if self.kind == "parquet":
            self._parquet.write_table(table.cast(self.schema))
            return
        for row in _rows(table):
            self._csv.writerow([csv_cell(v) for v in row])

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "parquet":
            self._parquet.close()
        else:
            self._file.close()


def _rows(table: pa.Table) -> Iterable[tuple[Any, ...]]:
    return zip(*(column.to_pylist() for column in table.columns))
