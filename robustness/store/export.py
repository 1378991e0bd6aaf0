"""`robust export`: every stored cell as CSV, JSON or Parquet (per-example blobs stay in the store)."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

from basics.errors import BadInput
from robustness.store.database import Store
from robustness.store.schema import CELL_COLUMNS


def export(store_path: str, fmt: str, out: str | None) -> str:
    """Write every cell's columns (not the per-example blobs, nor the runs' configs) as CSV, JSON or
    Parquet; returns the path."""
    import csv

    from basics.files import atomic_path

    with closing(Store.open(store_path, readonly=True)) as st:
        rows = [{c: getattr(r, c) for c in CELL_COLUMNS} for r in st.cells()]  # per-example blobs stay in the store
    target = Path(out or Path(store_path).with_suffix(f".{fmt}"))
    for r in rows:
        r["spike_rates"] = json.dumps(r["spike_rates"])
        r["versions"] = json.dumps(r["versions"])
        r["efficiency"] = None if r["efficiency"] is None else json.dumps(r["efficiency"])
    with atomic_path(target) as tmp:
        if fmt == "csv":
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(CELL_COLUMNS))
                w.writeheader()
                w.writerows(rows)
        elif fmt == "json":
            with open(tmp, "w") as f:
                json.dump(rows, f, indent=1)
        elif fmt == "parquet":
            try:
                import pandas as pd

                pd.DataFrame(rows, columns=list(CELL_COLUMNS)).to_parquet(tmp)
            except ImportError:
                raise BadInput("parquet export needs pyarrow: pip install 'robust-snn[parquet]'") from None
        else:
            raise BadInput(f"unknown export format {fmt!r} (csv, json, parquet)")
    return str(target)
