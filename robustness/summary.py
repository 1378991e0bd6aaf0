"""Robustness summaries computed from stored cells alone (no torch).

Per (model, mode, perturbation, layer): mean and 95% t-interval of each metric per level,
normalised area under the accuracy-vs-level curve, the level at which accuracy drops by
1, 5 and 10 points (linearly interpolated; None = not reached), and dECE / dNLL per level
against the clean model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Collection

from scipy import stats

DROPS = (0.01, 0.05, 0.10)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% t-interval half-width (0 for a single value)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


@dataclass
class LevelStats:
    level: float
    n: int
    metrics: dict[str, tuple[float, float]]  # name -> (mean, ci half-width)


@dataclass
class CurveSummary:
    model: str
    optimizer: str
    mode: str
    perturbation: str
    layer: str
    clean: dict[str, float]
    levels: list[LevelStats] = field(default_factory=list)
    auc: float | None = None
    drop_levels: dict[str, float | None] = field(default_factory=dict)
    increasing_severity: bool = True

    def to_dict(self) -> dict:
        return {
            "model": self.model, "optimizer": self.optimizer, "mode": self.mode,
            "perturbation": self.perturbation, "layer": self.layer, "clean": self.clean,
            "auc": self.auc, "drop_levels": self.drop_levels,
            "levels": [{"level": s.level, "n": s.n,
                        **{f"{k}_mean": v[0] for k, v in s.metrics.items()},
                        **{f"{k}_ci": v[1] for k, v in s.metrics.items()},
                        "d_ece": s.metrics["ece"][0] - self.clean["ece"],
                        "d_nll": s.metrics["nll"][0] - self.clean["nll"]} for s in self.levels],
        }


def swept_name(perturbation: str) -> str:
    """The swept component's name in a stored label (`quantize:4+mismatch` -> `mismatch`)."""
    swept = next((c for c in perturbation.split("+") if ":" not in c.split(")")[-1]), perturbation)
    return swept.split("(")[0]


def drop_level(points: list[tuple[float, float]], clean: float, drop: float) -> float | None:
    """First level (in severity order) where accuracy <= clean - drop, interpolated."""
    target = clean - drop
    prev = None
    for level, acc in points:
        if acc <= target:
            if prev is None or prev[1] == acc:
                return level
            (l0, a0) = prev
            return l0 + (a0 - target) / (a0 - acc) * (level - l0)
        prev = (level, acc)
    return None


def summarize(rows: list[dict], milder_with_level: Collection[str] = ("quantize",),
              metrics: tuple[str, ...] = ("accuracy", "nll", "ece", "brier", "disagreement",
                                          "mutual_information")) -> list[CurveSummary]:
    """Curves per (model, mode, perturbation, layer); `milder_with_level` names the
    perturbations whose level makes them milder (bit widths; see `bit_level_names`)."""
    clean = {(r["model"], r["mode"]): r for r in rows if r["perturbation"] == "clean"}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["perturbation"] != "clean":
            groups[(r["model"], r["mode"], r["perturbation"], r["layer"])].append(r)
    out = []
    for (model, mode, pert, layer), rs in groups.items():
        c = clean.get((model, mode))
        if c is None:
            continue
        cs = CurveSummary(model, rs[0].get("optimizer") or "", mode, pert, layer,
                          {k: c[k] for k in ("accuracy", "nll", "ece", "brier") if c.get(k) is not None})
        by_level: dict[float, list[dict]] = defaultdict(list)
        for r in rs:
            by_level[r["level"]].append(r)
        for level in sorted(by_level):
            lr = by_level[level]
            ms = {m: mean_ci([r[m] for r in lr]) for m in metrics if all(r.get(m) is not None for r in lr)}
            cs.levels.append(LevelStats(level, len(lr), ms))
        inc = swept_name(pert) not in milder_with_level
        cs.increasing_severity = inc
        pts = [(s.level, s.metrics["accuracy"][0]) for s in cs.levels]
        if not inc:
            pts = pts[::-1]
        if inc and pts and pts[0][0] > 0 and not pert.startswith("pcm"):
            pts = [(0.0, cs.clean["accuracy"])] + pts
        cs.drop_levels = {f"{int(d * 100)}pt": drop_level(pts, cs.clean["accuracy"], d) for d in DROPS}
        if len(pts) >= 2 and cs.clean["accuracy"] > 0:
            lo, hi = min(p[0] for p in pts), max(p[0] for p in pts)
            xs = sorted(pts)
            area = sum((x1 - x0) * (a0 + a1) / 2 for (x0, a0), (x1, a1) in zip(xs, xs[1:]))
            cs.auc = area / ((hi - lo) * cs.clean["accuracy"]) if hi > lo else None
        elif len(pts) == 1 and cs.clean["accuracy"] > 0:
            cs.auc = pts[0][1] / cs.clean["accuracy"]
        out.append(cs)
    order = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in rows))}
    mode_rank = {"point": 0, "mean": 1, "bma": 2}
    out.sort(key=lambda c: (order[c.model], mode_rank.get(c.mode, 9), c.perturbation, c.layer))
    return out


def format_summary(curves: list[CurveSummary]) -> str:
    """A compact text table: mean and 95% interval per level, then the summaries."""
    lines = []
    for cs in curves:
        title = f"{cs.model} [{cs.mode}] {cs.perturbation}" + (f" layer={cs.layer}" if cs.layer else "")
        lines.append(title)
        lines.append(f"  clean: accuracy {cs.clean['accuracy']:.4f}  nll {cs.clean['nll']:.4f}  ece {cs.clean['ece']:.4f}")
        lines.append(f"  {'level':>10}  {'n':>3}  {'accuracy (95% CI)':>20}  {'nll':>8}  {'ece':>7}  {'dECE':>8}  {'dNLL':>8}")
        for s in cs.levels:
            a, ci = s.metrics["accuracy"]
            lines.append(f"  {s.level:>10.4g}  {s.n:>3}  {a:>11.4f} ± {ci:<6.4f}  {s.metrics['nll'][0]:>8.4f}  "
                         f"{s.metrics['ece'][0]:>7.4f}  {s.metrics['ece'][0] - cs.clean['ece']:>+8.4f}  "
                         f"{s.metrics['nll'][0] - cs.clean['nll']:>+8.4f}")
        drops = ", ".join(f"{k}: {'not reached' if v is None else f'{v:.4g}'}" for k, v in cs.drop_levels.items())
        auc = "-" if cs.auc is None else f"{cs.auc:.4f}"
        lines.append(f"  normalised AUC {auc}; accuracy drop at level {drops}")
        lines.append("")
    return "\n".join(lines).rstrip()
