"""The smoothness table of a slice: per model/mode, each metric over directions, and paired tests.

Pairs are compared direction by direction (the same line for both when directions are
shared) with the Wilcoxon signed-rank test, which assumes nothing about how the
per-direction differences are distributed; with n directions its smallest two-sided
p-value is 2/2^n (0.0078 for 8). A table tests every pair of model/modes on each of
PAIRED_METRICS; a difference is called only when its Holm-adjusted p over all of the
table's tests is below ALPHA, so the chance of any false call in the table stays below
ALPHA. With few directions no test can get there: the summary says so.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats

from basics.stats import holm, t_interval
from reports.smoothness import METRICS_1D, METRICS_2D, metrics_1d, metrics_2d

# Metrics printed in the paired table (all are in --json).
PAIRED_METRICS = ("angularity", "roughness", "kinks", "curvature", "lipschitz")
ALPHA = 0.05


def curve_metrics(curve: dict) -> dict[str, float]:
    """Smoothness of one stored curve's loss (1D or 2D)."""
    x = np.asarray(curve["coords"], float)
    loss = np.asarray(curve["loss"], float)
    return metrics_1d(x, loss) if loss.ndim == 1 else metrics_2d(x, loss)


def _centre(curve: dict) -> tuple[float, float]:
    """Loss and accuracy at the grid point nearest a = 0."""
    i = int(np.argmin(np.abs(np.asarray(curve["coords"]))))
    loss, acc = np.asarray(curve["loss"]), np.asarray(curve["accuracy"])
    idx = (i,) * loss.ndim
    return float(loss[idx]), float(acc[idx])


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (exact for small n); 1 when every difference is 0."""
    d = np.asarray(diffs, float)
    if np.all(d == 0) or len(d) < 2:
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox" if np.all(d != 0) else "zsplit").pvalue)


def summarize_slices(curves: list[dict]) -> dict:
    """Groups (model, mode) with metric means and 95% t-intervals over directions, and
    every pair of groups compared per direction."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in curves:
        groups.setdefault((c["model"], c["mode"]), []).append(c)
    names = METRICS_2D if curves and np.asarray(curves[0]["loss"]).ndim == 2 else METRICS_1D
    out_groups, per = [], {}
    for key, cs in groups.items():
        cs = sorted(cs, key=lambda c: c["direction"])
        ms = [curve_metrics(c) for c in cs]
        per[key] = ({c["direction"]: m for c, m in zip(cs, ms)})
        centre = [_centre(c) for c in cs]
        summary = {}
        for name in names:
            mean, hw = t_interval([m[name] for m in ms])
            summary[name] = {"mean": mean, "ci95": hw}
        eig = [e for c in cs for e in (c.get("eigenvalues") or [])]
        out_groups.append({"model": key[0], "mode": key[1], "compute": cs[0]["compute"], "bn": cs[0]["bn"],
                           "directions": len(cs), "loss_at_0": centre[0][0], "accuracy_at_0": centre[0][1],
                           "metrics": summary, "eigenvalues": eig or None,
                           "per_direction": [{"direction": c["direction"], **m} for c, m in zip(cs, ms)]})
    pairs = []
    for a, b in itertools.combinations(per, 2):
        common = sorted(set(per[a]) & set(per[b]))
        if len(common) < 2:
            continue
        for name in PAIRED_METRICS:
            d = np.array([per[a][i][name] - per[b][i][name] for i in common])
            pairs.append({"a": {"model": a[0], "mode": a[1]}, "b": {"model": b[0], "mode": b[1]}, "metric": name,
                          "n": len(common), "mean_a": float(np.mean([per[a][i][name] for i in common])),
                          "mean_b": float(np.mean([per[b][i][name] for i in common])),
                          "median_diff": float(np.median(d)), "a_lower_in": int((d < 0).sum()),
                          "test": "wilcoxon signed-rank, two-sided", "p": wilcoxon_p(d)})
    for pair, adjusted in zip(pairs, holm([p["p"] for p in pairs])):
        pair.update(p_holm=adjusted, family=len(pairs), significant=adjusted < ALPHA)
    return {"groups": out_groups, "pairs": pairs, "multiplicity": multiplicity_note(pairs)}


def multiplicity_note(pairs: list[dict]) -> str | None:
    """How the table's tests are corrected and, when its directions are too few for any test
    to be called, why (None when the table has no tests)."""
    if not pairs:
        return None
    m, n = len(pairs), min(p["n"] for p in pairs)
    text = (f"differences are called at Holm-adjusted p < {ALPHA:g} over the table's {m} tests "
            f"({len(PAIRED_METRICS)} metrics x {m // len(PAIRED_METRICS)} pairs)")
    smallest = 2.0 / 2 ** n
    if smallest * m >= ALPHA:
        need = next(k for k in range(n, 64) if 2.0 / 2 ** k * m < ALPHA)
        text += (f"; with {n} directions the smallest possible p is {smallest:.2g}, so none can be called: "
                 f"{need} directions or more can")
    return text


def _fmt(v: float, hw: float | None) -> str:
    s = f"{v:.3g}"
    return s if hw is None or not math.isfinite(hw) else f"{s} ±{hw:.2g}"


def format_slices(summary: dict, notes: list[str]) -> str:
    """The smoothness table and the paired comparisons as text."""
    groups = summary["groups"]
    if not groups:
        return "no curves"
    names = list(groups[0]["metrics"])
    lines = ["smoothness of the loss, mean ±95% t-interval over directions",
             "  " + " | ".join(["model / mode", "compute", "dirs", "loss@0", "acc@0", *names])]
    for g in groups:
        cells = [f"{g['model']} / {g['mode']}", str(g["compute"]), str(g["directions"]),
                 f"{g['loss_at_0']:.3f}", f"{100 * g['accuracy_at_0']:.1f}%",
                 *[_fmt(g["metrics"][n]["mean"], g["metrics"][n]["ci95"]) for n in names]]
        lines.append("  " + " | ".join(cells))
        if g["eigenvalues"]:
            lines.append("    hessian eigenvalues: " + ", ".join(f"{e:.4g}" for e in g["eigenvalues"]))
    pairs = summary["pairs"]
    if pairs:
        lines.append("\npaired by direction (Wilcoxon signed-rank, two-sided; lower = smoother/flatter; "
                     f"{summary['multiplicity']}):")
        for p in pairs:
            a, b = f"{p['a']['model']} / {p['a']['mode']}", f"{p['b']['model']} / {p['b']['mode']}"
            if not p["significant"]:
                verdict = "no difference shown"
            else:
                verdict = f"{a if p['median_diff'] < 0 else b} lower"
            lines.append(f"  {p['metric']:<11} {a} {p['mean_a']:.3g} vs {b} {p['mean_b']:.3g}: "
                         f"lower in {p['a_lower_in']}/{p['n']} directions, p = {p['p']:.3g}, "
                         f"Holm {p['p_holm']:.3g} ({verdict})")
    if notes:
        lines += [""] + [f"note: {n}" for n in notes]
    return "\n".join(lines)
