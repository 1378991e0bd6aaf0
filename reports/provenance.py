"""The report's provenance section: what produced every number."""

from __future__ import annotations

from reports.document import Section, Table
from reports.formatting import pct


def provenance_section(b) -> Section:
    """(7) Runs (commands, dates, versions) and models (hashes, training settings)."""
    sec = Section("provenance", "8. Provenance")
    runs = [[f"sweep {r.id}", r.command or "-", r.started or "-", r.finished or "unfinished",
             r.package_version, r.data_hash[:16]] for r in b.rec.runs]
    runs += [[f"slice {s.id}", s.command or "-", s.started or "-", s.finished or "unfinished", s.package_version,
              s.data_hash[:16] or "-"] for s in b.rec.slices]
    sec.blocks.append(Table(["run", "command", "started", "finished", "robust", "data hash"], runs))
    models = []
    for path, m in b.rec.model_meta().items():
        tc = m.get("train_config") or {}
        models.append([b.labels.get(path, path), m.get("hash", "-"), m.get("optimizer", "-"),
                       str(m.get("hidden", "-")), str(m.get("parameters", "-")), str(m.get("members") or 1),
                       f"{tc.get('epochs', '-')} ep, lr {tc.get('lr', '-')}, seed {tc.get('seed', '-')}",
                       pct(m.get("final_val_acc")), str(m.get("dataset", "-"))])
    sec.blocks.append(Table(["model", "hash", "optimizer", "hidden", "parameters", "members", "training",
                             "val acc (%)", "data"], models))
    b.json["provenance"] = {"runs": [{k: v for k, v in vars(r).items() if k != "rows"} | {"cells": len(r.rows)}
                                        for r in b.rec.runs],
                               "slices": [{"id": s.id, "config": s.config, "command": s.command,
                                           "started": s.started, "finished": s.finished, "data_hash": s.data_hash,
                                           "package_version": s.package_version, "curves": len(s.curves)}
                                          for s in b.rec.slices],
                               "models": b.rec.model_meta()}
    return sec
