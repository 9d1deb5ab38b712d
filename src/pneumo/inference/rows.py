"""Predictions as flat table rows: the columns ``pneumo predict --format csv`` prints, which the batch engine
(``--engine ray``) writes to CSV or Parquet too. One definition, so both outputs always have the same columns.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Iterable

from pneumo.inference.results import Prediction

# Columns that are not fields of Prediction: per-class probabilities, the Grad-CAM file, the total time.
_FLOAT_EXTRAS = ("total_ms",)


def table_columns(subtypes: Iterable[str] = (), *, cam: bool = False) -> list[str]:
    """Column names in order; ``subtypes``: the class names of a multi-class model (one ``p_<name>`` each),
    ``cam``: rows carry the path of a Grad-CAM overlay."""
    columns = ["path", "label", "probability", "threshold", "unknown_reason", "error", "model_version",
               "out_of_distribution", "ood_reason"]
    return columns + [f"p_{s.lower()}" for s in sorted(subtypes)] + (["cam"] if cam else []) + ["total_ms"]


def table_subtypes(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The class names that the subtype probabilities of ``rows`` (``Prediction.to_dict()``) mention."""
    return sorted({k for r in rows for k in (r.get("subtype_probabilities") or {})})


def table_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """One ``Prediction.to_dict()`` flattened to ``columns`` (None where a row has no value)."""
    values = {**row, "total_ms": row["timing_ms"].get("total")}
    for name, value in (row.get("subtype_probabilities") or {}).items():
        values[f"p_{name.lower()}"] = value
    return {c: values.get(c) for c in columns}


# A spreadsheet reads a cell starting with one of these as a formula (or, for tab and CR, hides the start).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: empty for missing, booleans as ``true``/``false``, and text that a spreadsheet
    would run as a formula (a file named ``=HYPERLINK(...).png``) prefixed with ``'`` so it stays text.
    Numbers are left as they are: a negative probability cannot occur, and a number is no formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def column_types(columns: list[str]) -> dict[str, type]:
    """The Python type of each column's non-missing values (str, float or bool), from the annotations of
    :class:`Prediction`, so a typed output (Parquet) has a fixed schema before the first row is scored."""
    hints = typing.get_type_hints(Prediction)
    out: dict[str, type] = {}
    for column in columns:
        if column in hints:
            out[column] = _scalar(hints[column], column)
        elif column.startswith("p_") or column in _FLOAT_EXTRAS:
            out[column] = float
        else:
            out[column] = str
    return out


def _scalar(hint: Any, column: str) -> type:
    """``float | None`` -> float; refuses a column whose annotation is not one scalar type."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    scalars = [a for a in args if a is not type(None)]
    if len(scalars) != 1 or scalars[0] not in (str, float, int, bool):
        raise TypeError(f"Prediction.{column} is annotated {hint!r}; a table column needs one of str, float, int "
                        "or bool (optionally | None)")
    return float if scalars[0] is int else scalars[0]
