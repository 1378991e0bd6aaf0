"""Reliability diagrams and ECE from stored per-example confidence and correctness.

Cells of one (model, mode, perturbation, level) are pooled over chips: every (chip,
example) prediction is one point of the diagram. ECE uses BINS equal-width confidence
bins; adaptive ECE uses BINS equal-mass bins (each holds the same number of predictions),
which is less sensitive to empty bins at high confidence.
"""

from __future__ import annotations

import numpy as np

from reports.summary import example_scores
from robustness.store.cell import Cell

BINS = 15


def pooled(rows: list[Cell]) -> tuple[np.ndarray, np.ndarray] | None:
    """(confidence, correct) of every prediction of these cells; None without per-example data."""
    conf, corr = [], []
    for r in rows:
        c = r.example_confidence
        k = example_scores(r, "accuracy")
        if c is None or k is None:
            return None
        conf.append(np.frombuffer(c, np.float32).astype(np.float64))
        corr.append(k)
    if not conf:
        return None
    return np.concatenate(conf), np.concatenate(corr)


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> dict:
    """Per equal-width bin: mean confidence, accuracy, count; ECE and adaptive ECE."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, conf, bins) / count
        acc = np.bincount(idx, correct, bins) / count
    ece = float(np.nansum(count * np.abs(acc - mean_conf)) / max(len(conf), 1))
    return {"edges": edges.tolist(), "confidence": mean_conf.tolist(), "accuracy": acc.tolist(),
            "count": count.tolist(), "ece": ece, "adaptive_ece": adaptive_ece(conf, correct, bins), "n": len(conf)}


def adaptive_ece(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """ECE over equal-mass bins (sorted by confidence, split into `bins` equal parts)."""
    if len(conf) == 0:
        return float("nan")
    order = np.argsort(conf, kind="stable")
    parts = np.array_split(order, min(bins, len(conf)))
    return float(sum(len(p) * abs(correct[p].mean() - conf[p].mean()) for p in parts) / len(conf))
