"""``pneumo predict``: files, folders and globs; table, JSON and CSV; --cam; exit status."""

from __future__ import annotations

import csv
import io
import json

from PIL import Image

from inference.bundles import xray_png
from pneumo import DISCLAIMER
from pneumo.cli import main
from pneumo.commands.predict import cam_name, expand_paths


def _tree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "scan.png").write_bytes(xray_png(1))
    (tmp_path / "b" / "deep" / "scan.png").write_bytes(xray_png(2, pneumonia=True))
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpeg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    return tmp_path


def test_expand_paths_folders_globs_and_missing(tmp_path):
    root = _tree(tmp_path)
    found = expand_paths([str(root / "b"), str(root / "a" / "*.png"), str(root / "a" / "scan.png"),
                          str(root / "missing.png"), str(root / "zz*.png")])
    assert found == [str(root / "b" / "deep" / "scan.png"), str(root / "a" / "scan.png"),
                     str(root / "missing.png"), str(root / "zz*.png")]


def test_json_output_with_an_unreadable_file(tiny_bundle, tmp_path, capsys):
    root = _tree(tmp_path)
    code = main(["predict", str(root / "a"), str(root / "b"), str(root / "broken.jpeg"),
                 "--model", str(tiny_bundle), "--format", "json", "--batch-size", "2"])
    assert code == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == [str(root / "a" / "scan.png"), str(root / "b" / "deep" / "scan.png"),
                                         str(root / "broken.jpeg")]
    for row in rows:
        assert {"path", "label", "probability", "threshold", "unknown_reason", "error"} <= set(row)
    assert rows[0]["label"] in ("NORMAL", "PNEUMONIA") and rows[0]["error"] is None
    assert rows[0]["unknown_reason"] is None and 0 <= rows[0]["probability"] <= 1
    assert rows[2]["label"] is None and "broken.jpeg" in rows[2]["error"]


def test_table_prints_disclaimer_and_gate_status(tiny_bundle, tmp_path, capsys):
    root = _tree(tmp_path)
    assert main(["predict", str(root / "a" / "scan.png"), "--model", str(tiny_bundle)]) == 0
    captured = capsys.readouterr()
    assert "scan.png" in captured.out and DISCLAIMER in captured.err and "gate" in captured.err
    assert DISCLAIMER not in captured.out


def test_csv_output(tiny_bundle, tmp_path, capsys):
    root = _tree(tmp_path)
    main(["predict", str(root / "a"), "--model", str(tiny_bundle), "--format", "csv", "--tta"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["path"] == str(root / "a" / "scan.png")
    assert 0 <= float(rows[0]["probability"]) <= 1 and rows[0]["error"] == ""


def test_cam_files_do_not_collide(tiny_bundle, tmp_path, capsys):
    root = _tree(tmp_path)
    cams = tmp_path / "cams"
    main(["predict", str(root / "a"), str(root / "b"), "--model", str(tiny_bundle), "--format", "json",
          "--cam", str(cams)])
    rows = json.loads(capsys.readouterr().out)
    written = sorted(cams.iterdir())
    assert len(written) == 2 and sorted(r["cam"] for r in rows) == [str(p) for p in written]
    for path in written:
        assert Image.open(path).mode == "RGB"
    assert cam_name("x/scan.png") != cam_name("y/scan.png")


LIGHT_PATH_SCRIPT = """
import json, sys
from pneumo.cli import main
code = main(["predict", *sys.argv[1:], "--format", "json"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "sklearn", "scipy"))
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_predict_with_a_shipped_bundle_runs_on_onnx_without_torch_or_sklearn(tmp_path):
    """The default path of `pneumo predict` (the shipped bundle holds model.onnx) imports neither torch nor
    scikit-learn: whole-process start-up is ONNX Runtime's, not PyTorch's (bench/bench_startup.py)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pneumo.inference.predictor import Predictor

    root = Path(__file__).resolve().parents[2]
    images = [str(p) for p in sorted((root / "tests" / "assets").glob("*.jpeg"))[:2]]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", LIGHT_PATH_SCRIPT, *images], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    rows, report = json.loads("\n".join(lines[:-1])), json.loads(lines[-1])
    assert report == {"code": 0, "heavy": []}
    assert Predictor.load("default").backend.name == "onnx"
    expected = Predictor.load("default", backend="torch").predict_many(images)
    for row, want in zip(rows, expected):
        assert row["label"] == want.label and abs(row["probability"] - want.probability) < 1e-4
