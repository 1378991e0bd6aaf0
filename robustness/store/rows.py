"""Reading the store's rows back, checked field by field.

SQLite keeps whatever a column is given (text in a REAL column, any bytes in a BLOB), so a
store damaged by hand, by another tool or by a disk can be intact as a file and still hold
values no report can use. Each row is decoded here; a value that is not what the schema
means is a one-line `BadInput` naming the table, the row and the field, never a traceback
or a silently wrong number.
"""

from __future__ import annotations

import json
import math
from typing import Any

from basics.errors import BadInput
from robustness.store.cell import Cell
from robustness.store.schema import EXAMPLE_COLUMNS, METRIC_COLUMNS, OPTIONAL_METRICS


def damaged(path: str, table: str, row: Any, field: str, what: str) -> BadInput:
    return BadInput(f"{path}: damaged results store: table {table}, row {row}, field {field}: {what}")


def _json(path: str, table: str, row: Any, field: str, text: Any, kind: type) -> Any:
    if text is None or text == "":
        return kind()
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise damaged(path, table, row, field, "not valid JSON") from None
    if not isinstance(value, kind):
        raise damaged(path, table, row, field, f"JSON {type(value).__name__}, expected a {kind.__name__}")
    return value


def _number(path: str, table: str, row: Any, field: str, v: Any, finite: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise damaged(path, table, row, field, f"{v!r} is not a number")
    if finite and not math.isfinite(v):
        raise damaged(path, table, row, field, f"{v!r} is not finite")
    return v


def cell(path: str, d: dict) -> Cell:
    """A `cells` row (with its `rowid`) decoded: metrics as floats (NULL: NaN, a non-finite
    network's), JSON fields parsed, per-example blobs of the length `n` says."""
    row = d.get("rowid", "?")
    t = "cells"
    _number(path, t, row, "level", d["level"], finite=True)
    if isinstance(d["seed"], bool) or not isinstance(d["seed"], int):
        raise damaged(path, t, row, "seed", f"{d['seed']!r} is not an integer")
    if isinstance(d["n"], bool) or not isinstance(d["n"], int) or d["n"] < 1:
        raise damaged(path, t, row, "n", f"{d['n']!r} examples (expected a whole number, 1 or more)")
    for c in METRIC_COLUMNS:
        if d[c] is None:  # SQLite stores NaN as NULL: a metric of a non-finite network
            d[c] = None if c in OPTIONAL_METRICS else float("nan")
        else:
            _number(path, t, row, c, d[c])
    d["spike_rates"] = _json(path, t, row, "spike_rates", d["spike_rates"], list)
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in d["spike_rates"]):
        raise damaged(path, t, row, "spike_rates", "not a list of numbers")
    d["versions"] = _json(path, t, row, "versions", d["versions"], dict)
    if d.get("efficiency") is not None:
        d["efficiency"] = _json(path, t, row, "efficiency", d["efficiency"], dict)
    sizes = {"example_correct": (d["n"] + 7) // 8, "example_nll": 4 * d["n"], "example_confidence": 4 * d["n"]}
    for c in EXAMPLE_COLUMNS:
        blob = d.get(c)
        if blob is None:
            continue
        if not isinstance(blob, bytes) or len(blob) != sizes[c]:
            size = len(blob) if isinstance(blob, (bytes, str)) else type(blob).__name__
            raise damaged(path, t, row, c, f"{size} bytes where {d['n']} examples take {sizes[c]}")
    return Cell.from_dict(d)


def run(path: str, table: str, r: dict) -> dict:
    """A `runs` or `slices` row with its `config` (a mapping) and `models` (a list of
    mappings, each with a path) parsed."""
    out = dict(r)
    out["config"] = _json(path, table, r["id"], "config", r["config"], dict)
    out["models"] = _json(path, table, r["id"], "models", r["models"], list)
    if not all(isinstance(m, dict) and isinstance(m.get("path"), str) for m in out["models"]):
        raise damaged(path, table, r["id"], "models", "not a list of model records with a path")
    return out


def curve(path: str, d: dict) -> dict:
    """A `slice_curves` row (with its `rowid`): coordinates, shape and the float64 loss and
    accuracy grids of that shape, eigenvalues when stored."""
    import numpy as np

    row, t = d.pop("rowid", "?"), "slice_curves"
    d["coords"] = _json(path, t, row, "coords", d["coords"], list)
    d["shape"] = _json(path, t, row, "shape", d["shape"], list)
    if not d["shape"] or not all(isinstance(k, int) and k > 0 for k in d["shape"]):
        raise damaged(path, t, row, "shape", f"{d['shape']!r} is not a grid shape")
    d["eigenvalues"] = _json(path, t, row, "eigenvalues", d["eigenvalues"], list) or None
    size = math.prod(d["shape"])
    for k in ("loss", "accuracy"):
        if not isinstance(d[k], bytes) or len(d[k]) != 8 * size:
            raise damaged(path, t, row, k, f"not {size} float64 values of the curve's shape {d['shape']}")
        d[k] = np.frombuffer(d[k], dtype=np.float64).reshape(d["shape"])
    return d
