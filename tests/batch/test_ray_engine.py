"""``pneumo predict --engine ray`` on a local Ray (one 2-CPU instance for the whole module): the same rows as
``pneumo predict --format csv`` on the same files, in CSV and Parquet, error rows for unreadable files."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed (pip install 'pneumo[ray]')", allow_module_level=True)

from pneumo.batch import ray_engine  # noqa: E402  (before ray: it keeps the local instance on loopback)

import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402

from conftest import ASSETS  # noqa: E402
from inference.bundles import add_gate, make_bundle, noise_png, png, xray_png  # noqa: E402
from pneumo.bundle import read_meta, write_meta  # noqa: E402
from pneumo.cli import main  # noqa: E402
from pneumo.gate.mahalanobis import save_gate  # noqa: E402
from pneumo.inference.predictor import Predictor  # noqa: E402
from pneumo.inference.rows import table_columns, table_row  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def gated_bundle(tmp_path_factory) -> Path:
    """A tiny 2-class bundle with a tight two-boundary gate: the model actors answer some inputs with the
    out-of-distribution warning and some without, and the cheap checks refuse others (UNKNOWN)."""
    bundle = make_bundle(tmp_path_factory.mktemp("gated") / "bundle")
    params = add_gate(bundle, [xray_png(i, pneumonia=i % 2 == 0) for i in range(12)], percentile=60.0)
    params.far_threshold = 1e12  # beyond the tight threshold: a warning; the cheap checks still refuse
    params.nonxray_weight, params.nonxray_bias = np.zeros(params.dim), -1.0  # the distance alone decides
    directory, meta = read_meta(bundle)
    meta.gate = save_gate(directory, params)
    write_meta(directory, meta)
    return bundle


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """The sample X-rays, synthetic ones, and files that cannot be read (corrupt, truncated, empty, missing)."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "xrays").mkdir()
    for source in sorted(ASSETS.glob("*.jpeg")):
        (root / "xrays" / source.name).write_bytes(source.read_bytes())
    for i in range(5):
        (root / "xrays" / f"synthetic-{i}.png").write_bytes(xray_png(40 + i, pneumonia=i % 2 == 1))
    (root / "xrays" / "noise.png").write_bytes(noise_png(3))
    (root / "xrays" / "blank.png").write_bytes(png(np.full((64, 64), 128, dtype=np.uint8)))
    (root / "xrays" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "xrays" / "truncated.jpeg").write_bytes(sorted(ASSETS.glob("*.jpeg"))[0].read_bytes()[:400])
    (root / "xrays" / "empty.jpeg").write_bytes(b"")
    return [str(root / "xrays"), str(root / "missing.png")]


def _local_csv(capsys, paths: list[str], *extra: str) -> list[dict[str, str]]:
    code = main(["predict", *paths, "--format", "csv", *extra])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == (1 if any(r["error"] for r in rows) else 0)
    return rows


def _assert_same_rows(ray_rows: list[dict], local_rows: list[dict]) -> None:
    assert [r["path"] for r in ray_rows] == [r["path"] for r in local_rows]
    for ours, theirs in zip(ray_rows, local_rows):
        for column in ("label", "unknown_reason", "error", "model_version", "out_of_distribution", "ood_reason"):
            assert (ours[column] or None) == (theirs[column] or None), (ours["path"], column)
        for column in [c for c in theirs if c == "probability" or c.startswith("p_") or c == "threshold"]:
            a, b = ours[column], theirs[column]
            if b in ("", None):
                assert a in ("", None), (ours["path"], column)
            else:
                assert math.isclose(float(a), float(b), abs_tol=1e-5), (ours["path"], column, a, b)


def test_cli_csv_rows_equal_local_predict(gated_bundle, inputs, tmp_path, capsys):
    local = _local_csv(capsys, inputs, "--model", str(gated_bundle))
    out = tmp_path / "results.csv"
    code = main(["predict", *inputs, "--model", str(gated_bundle), "--engine", "ray", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1  # unreadable files: error rows, and the same exit status as --engine local
    with out.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert reader.fieldnames == list(local[0].keys())
    _assert_same_rows(rows, local)
    labels = {r["label"] for r in rows}
    errors = [Path(r["path"]).name for r in rows if r["error"]]
    assert sorted(errors) == ["corrupt.png", "empty.jpeg", "missing.png", "truncated.jpeg"]
    assert "UNKNOWN" in labels and labels & {"NORMAL", "PNEUMONIA"}  # every kind of row went through Ray
    assert {r["out_of_distribution"] for r in rows} == {"true", "false", ""}  # warned, not warned, not scored
    unknown = sum(r["label"] == "UNKNOWN" for r in rows)
    assert f"{len(rows)} files, 4 errors, {unknown} UNKNOWN" in captured.err
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file is gone


def test_parquet_three_class_rows_and_types(tmp_path, inputs):
    bundle = make_bundle(tmp_path / "three", classes=3)
    paths = [p for p in ray_engine_paths(inputs)]
    out = tmp_path / "results.parquet"
    summary = ray_engine.predict_to_file(paths, out, ray_engine.ModelSpec(model=str(bundle)),
                                         ray_engine.RayConfig(progress=False, decode_batch=4, model_batch=3))
    table = pq.read_table(out)
    predictor = Predictor.load(bundle)
    columns = table_columns(predictor.subtype_names)
    assert len(predictor.subtype_names) == 3 and table.column_names == columns
    assert {f"p_{name.lower()}" for name in predictor.subtype_names} <= set(columns)
    assert str(table.schema.field("probability").type) == "double" and str(table.schema.field("label").type) == "string"
    local = [table_row(p.to_dict(), columns) for p in predictor.predict_many(paths)]
    _assert_same_rows(table.to_pylist(), local)
    assert summary.files == len(paths) == table.num_rows
    assert summary.errors == sum(r["error"] is not None for r in local) == 4


def test_onnx_export_scores_the_same(tmp_path, inputs, gated_bundle):
    from pneumo.export.onnx import export_onnx

    model = export_onnx(gated_bundle, tmp_path / "model.onnx")
    paths = ray_engine_paths(inputs)
    out = tmp_path / "results.parquet"
    ray_engine.predict_to_file(paths, out, ray_engine.ModelSpec(model=str(model), backend="onnx"),
                               ray_engine.RayConfig(progress=False))
    predictor = Predictor.load(model, backend="onnx")
    columns = table_columns(predictor.subtype_names)
    _assert_same_rows(pq.read_table(out).to_pylist(),
                      [table_row(p.to_dict(), columns) for p in predictor.predict_many(paths)])


def test_model_actor_threads_come_from_its_cpus(tmp_path, gated_bundle, monkeypatch):
    from pneumo.export.onnx import export_onnx

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    model = export_onnx(gated_bundle, tmp_path / "model.onnx")
    scorer = ray_engine._Scorer(ray_engine.ModelSpec(model=str(model), backend="onnx"), 2, table_columns())
    assert scorer.predictor.backend.session.get_session_options().intra_op_num_threads == 2


def test_bad_output_and_flags_are_refused_before_ray_runs(tmp_path, gated_bundle, capsys):
    image = tmp_path / "scan.png"
    image.write_bytes(xray_png(1))
    for extra, message in ((["--out", str(tmp_path / "rows.json")], "unknown output format '.json'"),
                           ([], "give --out"),
                           (["--out", str(tmp_path / "nowhere" / "rows.csv")], "does not exist"),
                           (["--out", str(tmp_path / "r.csv"), "--format", "json"], "--engine local")):
        assert main(["predict", str(image), "--model", str(gated_bundle), "--engine", "ray", *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["predict", str(image), "--model", str(gated_bundle), "--out", str(tmp_path / "r.csv")]) == 2
    assert "apply to --engine ray" in capsys.readouterr().err
    with pytest.raises(ValueError, match="differ from the CPUs an actor reserves"):
        ray_engine.RayConfig(decode_cpus=0.5)
    with pytest.raises(ValueError, match="actor_share"):
        ray_engine.RayConfig(actor_share=0)


def ray_engine_paths(inputs: list[str]) -> list[str]:
    from pneumo.commands.predict import expand_paths

    return expand_paths(inputs)


def test_the_actor_pool_takes_one_actor_per_core_beside_the_decoding_tasks():
    assert ray_engine.max_actors(ray_engine.RayConfig(), 2) == 2
    assert ray_engine.max_actors(ray_engine.RayConfig(), 1) == 1
    assert ray_engine.max_actors(ray_engine.RayConfig(actor_cpus=2), 16) == 8
    assert ray_engine.max_actors(ray_engine.RayConfig(actor_share=1.0), 2) == 1  # whole CPUs: no room for two
    assert ray_engine.max_actors(ray_engine.RayConfig(max_actors=5), 2) == 5


def test_a_local_run_starts_its_own_ray_even_where_a_cluster_address_is_set(gated_bundle, tmp_path, monkeypatch):
    """Without --ray-address pneumo starts a new local instance; a bare ray.init() would try to join the cluster
    that RAY_ADDRESS (or a `ray start` on this machine) names, and fail when it is gone."""
    ray.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # no cluster listens there
    image = sorted(ASSETS.glob("*.jpeg"))[0]
    try:
        summary = ray_engine.predict_to_file([str(image)], tmp_path / "rows.csv",
                                             ray_engine.ModelSpec(model=str(gated_bundle)),
                                             ray_engine.RayConfig(num_cpus=1, progress=False))
        assert summary.files == 1 and summary.errors == 0
        assert not ray.is_initialized()  # started for the call, left after it
    finally:
        monkeypatch.delenv("RAY_ADDRESS")
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")  # for the module
