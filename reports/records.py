"""Everything a report or a gate reads from a results store, as plain records.

Reports render from these alone: the run's config (levels, units, severity order), the
models' metadata stored at sweep time (training config, posterior diagnostics), cells and
slice curves. No checkpoint is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from basics.errors import BadInput
from basics.stats import SpeakerGroups
from robustness.store.cell import Cell
from robustness.store.curve_meta import CurveMeta
from robustness.store.database import Store
from robustness.store.rows import damaged


@dataclass
class Run:
    id: int
    config: dict
    models: list[dict]
    command: str
    started: str
    finished: str | None
    package_version: str
    data_hash: str
    rows: list[Cell] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # levels not run: a milder one had every draw at chance

    @property
    def curves_meta(self) -> dict[str, CurveMeta]:
        """Perturbation label -> what the run stored about its levels."""
        return {k: CurveMeta.from_dict(v) for k, v in self.config.get("curves", {}).items()}

    @property
    def groups(self) -> dict[str, SpeakerGroups | None]:
        """Model path -> its test examples' speakers (None: unknown, or a run stored before them)."""
        return {m["path"]: SpeakerGroups.from_dict(m.get("test_groups")) for m in self.models}


@dataclass
class SliceRun:
    id: int
    config: dict
    models: list[dict]
    command: str
    started: str
    package_version: str
    curves: list[dict] = field(default_factory=list)
    finished: str | None = None
    data_hash: str = ""


@dataclass
class Records:
    path: str
    runs: list[Run]
    slices: list[SliceRun]

    def model_meta(self) -> dict[str, dict]:
        """Model path -> the metadata stored with its newest run or slice."""
        out: dict[str, dict] = {}
        for r in [*self.runs, *self.slices]:
            for m in r.models:
                out[m["path"]] = m
        return out

    def labels(self) -> dict[str, str]:
        """Short names: the file name, or the whole path where two file names collide."""
        paths = list(dict.fromkeys([m for r in self.runs for m in (x["path"] for x in r.models)]
                                   + [c["model"] for s in self.slices for c in s.curves]))
        base = [os.path.basename(p) for p in paths]
        return {p: (b if base.count(b) == 1 else p) for p, b in zip(paths, base)}


def load_records(path: str, models: tuple[str, ...] = (), perturbations: tuple[str, ...] = ()) -> Records:
    """Read a store; `models` / `perturbations` keep only those (by path or file name)."""
    with Store.open(path, readonly=True) as st:
        runs = []
        for r in st.runs():
            rows = st.cells(r["id"])
            runs.append(Run(r["id"], r["config"], r["models"], r["command"] or "",
                            r["started"], r["finished"], r["package_version"] or "", r["data_hash"] or "", rows,
                            st.skipped(r["id"])))
        slices = []
        for s in st.slices():
            slices.append(SliceRun(s["id"], s["config"], s["models"], s["command"] or "",
                                   s["started"], s["package_version"] or "", st.curves(s["id"]), s["finished"],
                                   s["data_hash"] or ""))
    if not runs and not slices:
        raise BadInput(f"{path}: the store holds no runs (run `robust sweep` or `robust slice` first)")
    for r in runs:
        listed = {m["path"] for m in r.models}
        stray = next((x for x in r.rows if x.model not in listed), None)
        if stray is not None:
            raise damaged(path, "cells", "?" if stray.rowid is None else stray.rowid, "model",
                          f"{stray.model!r} is not among run {r.id}'s models")
    rec = Records(path, runs, slices)
    if models:
        known = {p for r in runs for p in (m["path"] for m in r.models)} | {c["model"] for s in slices for c in s.curves}
        keep = {p for p in known if p in models or os.path.basename(p) in models}
        missing = [m for m in models if not any(m == p or m == os.path.basename(p) for p in known)]
        if missing:
            raise BadInput(f"model {missing[0]!r} is not in {path} (it holds: "
                           f"{', '.join(sorted(os.path.basename(p) for p in known))})")
        for r in runs:
            r.rows = [x for x in r.rows if x.model in keep]
        for s in slices:
            s.curves = [c for c in s.curves if c["model"] in keep]
    if perturbations:
        present = {x.perturbation for r in runs for x in r.rows} - {"clean"}
        missing = [p for p in perturbations if p not in present]
        if missing:
            raise BadInput(f"perturbation {missing[0]!r} is not in {path} (it holds: {', '.join(sorted(present))})")
        for r in runs:
            r.rows = [x for x in r.rows if x.perturbation in perturbations or x.perturbation == "clean"]
    rec.runs = [r for r in runs if r.rows]
    rec.slices = [s for s in slices if s.curves]
    return rec
