"""Writing a built report: every file into a temporary folder first, then moved into place."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from reports.document import Section, to_html, to_markdown


def write_files(out: Path, tmp: Path, formats: tuple[str, ...], summary: dict, lines: list[str],
                 sections: list[Section], pngs: dict[str, bytes], svgs: dict[str, str]) -> None:
    """Every report file into `tmp`, then moved into `out` (a reader never sees half a report)."""
    try:
        (tmp / "figures").mkdir()
        for name in pngs:
            (tmp / "figures" / f"{name}.png").write_bytes(pngs[name])
            (tmp / "figures" / f"{name}.svg").write_text(svgs[name])
        title = "robust report"
        if "html" in formats:
            (tmp / "index.html").write_text(to_html(title, lines, sections, pngs))
        if "md" in formats:
            (tmp / "report.md").write_text(to_markdown(title, lines, sections))
        if "json" in formats:
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=_jsonable))
        (out / "figures").mkdir(exist_ok=True)
        for f in sorted(tmp.rglob("*")):
            if f.is_file():
                os.replace(f, out / f.relative_to(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, bytes):
        return None  # per-example blobs stay in the store
    raise TypeError(type(o).__name__)

