"""CSV rows (``pneumo predict --format csv``, the Ray engine's CSV): a file name a spreadsheet would run as a
formula stays text (issue 28)."""

from __future__ import annotations

import csv
import io

import pytest

from pneumo.commands.predict import print_csv
from pneumo.inference.rows import csv_cell


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://evil.example\",\"x\").png", "+1+1.png", "-2+3.png",
                                  "@SUM(A1).png", "\tcmd.png", "\r=1.png"])
def test_formula_starts_are_neutralised(text):
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value, cell", [("scans/a.png", "scans/a.png"), ("a=b.png", "a=b.png"), (None, ""),
                                         (True, "true"), (0.25, 0.25), (-0.5, -0.5)])
def test_ordinary_values_are_unchanged(value, cell):
    assert csv_cell(value) == cell


def test_predict_csv_output_keeps_a_hostile_name_as_text(capsys):
    row = {"path": "=cmd|'/c calc'!A1.png", "label": None, "probability": None, "threshold": 0.5,
           "unknown_reason": None, "error": "-not an image", "model_version": "m", "out_of_distribution": None,
           "ood_reason": None, "timing_ms": {"total": 1.0}}
    print_csv([row])
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert parsed[0]["path"] == "'=cmd|'/c calc'!A1.png"
    assert parsed[0]["error"] == "'-not an image"
