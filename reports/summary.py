"""Robustness summaries computed from stored cells alone (no torch, no models).

Per (model, mode, perturbation, layer): per level the mean of each metric with its 95%
interval over chips (t-interval over seeds; none with one draw) and, for accuracy and
NLL, the 95% interval over test examples (percentile bootstrap of the seed-averaged
per-example scores); the normalised area under the accuracy-vs-level curve, integrated
on the axis the levels were given on (linear, or log for log-spaced levels); the level at
which accuracy drops by 1, 5 and 10 points (interpolated on that axis; None = not
reached); dECE / dNLL per level against the clean model; the compute of the mode.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from basics.modes import Mode
from robustness.store.cell import Cell
from robustness.store.curve_meta import CurveMeta
from basics.attack_labels import attack_label
from basics.stats import SpeakerGroups, bootstrap_halfwidth, interval_unit, paired_difference, t_interval

DROPS = (0.01, 0.05, 0.10)
METRICS = ("accuracy", "nll", "ece", "brier", "disagreement", "mutual_information")
MODE_ORDER = {m.value: i for i, m in enumerate((Mode.POINT, Mode.MEAN, Mode.CHIPS, Mode.ENSEMBLE, Mode.BMA))}


def example_scores(row: Cell, metric: str) -> np.ndarray | None:
    """Per-example correctness or NLL of a stored cell (None for cells stored without them)."""
    if metric == "accuracy" and row.example_correct is not None:
        return np.unpackbits(np.frombuffer(row.example_correct, np.uint8))[:row.n].astype(np.float64)
    if metric == "nll" and row.example_nll is not None:
        return np.frombuffer(row.example_nll, np.float32).astype(np.float64)
    return None


def seed_averaged(rows: list[Cell], metric: str) -> np.ndarray | None:
    """Per-example score averaged over the cells (chips) of one level [N]."""
    per = [example_scores(r, metric) for r in rows]
    if any(p is None for p in per) or not per:
        return None
    return np.mean(per, axis=0)


@dataclass
class LevelStats:
    level: float
    n: int
    metrics: dict[str, tuple[float, float | None]]  # name -> (mean, chip-interval half-width or None)
    test_ci: dict[str, float] = field(default_factory=dict)  # name -> test-set interval half-width
    zero_spread: bool = False  # several draws, identical accuracy: the chip interval says nothing
    nonfinite: int = 0  # chips whose network overflowed (NaN outputs): the level has no number, is never ranked
    efficiency: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # as metrics, per inference


@dataclass
class CurveSummary:
    model: str
    optimizer: str
    mode: str
    perturbation: str
    layer: str
    clean: dict[str, float]
    compute: int = 1
    axis: str = "linear"
    levels: list[LevelStats] = field(default_factory=list)
    auc: float | None = None
    drop_levels: dict[str, float | None] = field(default_factory=dict)
    drop_below: dict[str, bool] = field(default_factory=dict)  # reached already at the first level: "< level"
    increasing_severity: bool = True
    skipped: list[tuple[float, str]] = field(default_factory=list)  # (level, reason): not run, never numbers
    test_groups: SpeakerGroups | None = None  # the test examples' speakers: what the ±test interval resamples
    deterministic: bool = False  # the perturbation draws nothing: one network per level, no chip interval
    clean_efficiency: dict[str, float | None] = field(default_factory=dict)  # NeuroBench's metrics, clean

    @property
    def mean_accuracy(self) -> float | None:
        """The absolute area: accuracy averaged over the level range on its axis (the
        normalised AUC times clean accuracy), which ranks models by what they keep, not by
        what they keep of their own clean accuracy."""
        return None if self.auc is None else self.auc * self.clean["accuracy"]

    def to_dict(self) -> dict:
        return {
            "model": self.model, "optimizer": self.optimizer, "mode": self.mode, "compute": self.compute,
            "perturbation": self.perturbation, "layer": self.layer, "clean": self.clean, "axis": self.axis,
            "auc": self.auc, "mean_accuracy": self.mean_accuracy, "drop_levels": self.drop_levels,
            "drop_below_first_level": self.drop_below,
            "test_interval": interval_unit(self.test_groups), "deterministic": self.deterministic,
            "skipped": [{"level": lv, "reason": why} for lv, why in self.skipped],
            "clean_efficiency": self.clean_efficiency,
            "levels": [{"level": s.level, "n": s.n,
                        **{f"{k}_mean": v[0] for k, v in s.metrics.items()},
                        **{f"{k}_ci": v[1] for k, v in s.metrics.items()},
                        **{f"{k}_test_ci": v for k, v in s.test_ci.items()},
                        "zero_spread": s.zero_spread, "nonfinite_chips": s.nonfinite,
                        "efficiency": {k: {"mean": v[0], "ci": v[1]} for k, v in s.efficiency.items()},
                        "d_ece": s.metrics["ece"][0] - self.clean["ece"],
                        "d_nll": s.metrics["nll"][0] - self.clean["nll"]} for s in self.levels],
        }


def _x(level: float, axis: str) -> float:
    return math.log(level) if axis == "log" else level


def drop_level(points: list[tuple[float, float]], clean: float, drop: float, axis: str = "linear",
               monotone: bool = True) -> tuple[float | None, bool]:
    """Where accuracy first falls to clean - drop, over the measured (level, accuracy) points
    in severity order: (level, below_first).

    Reached between two measured levels: interpolated on `axis` where harm is declared
    monotone in the level, else the first level that reaches it (no curve shape is assumed
    between levels). Reached already at the first measured level: (that level, True), read
    "below the first level", since nothing was measured between the clean network and it.
    Not reached: (None, False).
    """
    target = clean - drop
    for i, (level, acc) in enumerate(points):
        if acc <= target:
            if i == 0:
                return level, True
            l0, a0 = points[i - 1]
            if not monotone or a0 == acc or (axis == "log" and l0 <= 0):
                return level, False
            x = _x(l0, axis) + (a0 - target) / (a0 - acc) * (_x(level, axis) - _x(l0, axis))
            return (math.exp(x) if axis == "log" else x), False
    return None, False


def format_drop(level: float | None, below: bool) -> str:
    """A drop level as text: `< 0.05` below the first measured level, `not reached`, or the level."""
    if level is None:
        return "not reached"
    return f"< {level:.3g}" if below else f"{level:.3g}"  # interpolated between levels: 3 digits are plenty


def normalised_auc(pts: list[tuple[float, float]], clean: float, axis: str) -> float | None:
    """Area under accuracy vs level on `axis`, over the level range, relative to clean accuracy."""
    if axis == "log":
        pts = [p for p in pts if p[0] > 0]  # log(0) has no place on a log axis
    if clean <= 0 or not pts:
        return None
    if len(pts) == 1:
        return pts[0][1] / clean
    xs = sorted((_x(lv, axis), a) for lv, a in pts)
    span = xs[-1][0] - xs[0][0]
    if span <= 0:
        return None
    return sum((x1 - x0) * (a0 + a1) / 2 for (x0, a0), (x1, a1) in zip(xs, xs[1:])) / (span * clean)


def accuracy_points(level_acc: list[tuple[float, float]], clean_acc: float,
                    meta: CurveMeta) -> list[tuple[float, float]]:
    """(level, accuracy) in severity order (bit widths: most bits first), with the clean
    network at level 0 in front where level 0 is the clean network on a linear axis."""
    inc = not meta.bits
    pts = sorted(level_acc, reverse=not inc)
    if inc and pts and pts[0][0] > 0 and meta.clean_at_zero and meta.axis == "linear":
        pts = [(0.0, clean_acc)] + pts
    return pts


def _level_stats(level: float, rows: list[Cell], groups: SpeakerGroups | None = None) -> LevelStats:
    ms = {m: t_interval([r.metric(m) for r in rows]) for m in METRICS if all(r.metric(m) is not None for r in rows)}
    test = {}
    for m in ("accuracy", "nll"):
        per = seed_averaged(rows, m)
        if per is not None:
            test[m] = bootstrap_halfwidth(per, groups=groups)
    accs = [r.accuracy for r in rows]
    bad = sum(1 for a in accs if a is None or not math.isfinite(a))
    eff = {}
    if rows and all(r.efficiency for r in rows):  # measured for every draw (stores before v4: never)
        eff = {k: t_interval([r.efficiency[k] for r in rows]) for k in rows[0].efficiency
               if all(r.efficiency.get(k) is not None for r in rows)}
    return LevelStats(level, len(rows), ms, test, len(rows) > 1 and not bad and min(accs) == max(accs), bad, eff)


def summarize(rows: list[Cell], curves: Mapping[str, CurveMeta] | None = None,
              skipped: list[dict] | None = None,
              speakers: Mapping[str, SpeakerGroups | None] | None = None) -> list[CurveSummary]:
    """Curves per (model, mode, perturbation, layer).

    `speakers` maps a model to its test examples' speakers: its test-set intervals then
    resample whole speakers (models it does not name: independent examples).

    `curves` maps a perturbation label to what the run stored about its levels; labels it
    does not name are read as `CurveMeta()` (linear, not bits, clean at 0, monotone).
    `skipped` lists the levels the run did not evaluate (store `skipped`): a curve with
    any has no AUC (the harsh end of its range was never measured).
    """
    curves = curves or {}
    skips: dict[tuple, list[tuple[float, str]]] = defaultdict(list)
    for sk in skipped or []:
        skips[(sk["model"], sk["mode"], sk["perturbation"], sk["layer"])].append((sk["level"], sk["reason"]))
    clean = {(r.model, r.mode): r for r in rows if r.perturbation == "clean"}
    groups: dict[tuple, list[Cell]] = defaultdict(list)
    for r in rows:
        if r.perturbation != "clean":
            groups[(r.model, r.mode, r.perturbation, r.layer)].append(r)
    out = []
    for (model, mode, pert, layer), rs in groups.items():
        c = clean.get((model, mode))
        if c is None:
            continue
        meta = curves.get(pert, CurveMeta())
        axis = meta.axis
        cs = CurveSummary(model, rs[0].optimizer or "", mode, pert, layer,
                          {k: c.metric(k) for k in ("accuracy", "nll", "ece", "brier") if c.metric(k) is not None},
                          int(c.samples or 1), axis, test_groups=(speakers or {}).get(model),
                          clean_efficiency=dict(c.efficiency or {}))
        by_level: dict[float, list[Cell]] = defaultdict(list)
        for r in rs:
            by_level[r.level].append(r)
        cs.levels = [_level_stats(level, by_level[level], cs.test_groups) for level in sorted(by_level)]
        cs.increasing_severity = not meta.bits
        cs.deterministic = meta.deterministic
        pts = accuracy_points([(s.level, s.metrics["accuracy"][0]) for s in cs.levels], cs.clean["accuracy"], meta)
        overflow = next((i for i, (_, a) in enumerate(pts) if not math.isfinite(a)), None)
        if overflow is not None:  # what lies past an overflowing level is unknown: no drop beyond it, no area
            pts = pts[:overflow]
        measured = sorted(((s.level, s.metrics["accuracy"][0]) for s in cs.levels), reverse=meta.bits)
        stop = next((i for i, (_, a) in enumerate(measured) if not math.isfinite(a)), len(measured))
        for d in DROPS:  # past an overflowing level nothing is known
            key = f"{int(d * 100)}pt"
            cs.drop_levels[key], cs.drop_below[key] = drop_level(measured[:stop], cs.clean["accuracy"], d, axis,
                                                                 meta.monotone)
        cs.skipped = sorted(skips.get((model, mode, pert, layer), []), reverse=not cs.increasing_severity)
        cs.auc = None if cs.skipped or overflow is not None else normalised_auc(pts, cs.clean["accuracy"], axis)
        out.append(cs)
    order = {m: i for i, m in enumerate(dict.fromkeys(r.model for r in rows))}
    out.sort(key=lambda c: (order[c.model], MODE_ORDER.get(c.mode, 9), c.perturbation, c.layer))
    return out


def paired(rows: list[Cell], a: tuple[str, str], b: tuple[str, str], perturbation: str, level: float,
           metric: str = "accuracy", layer: str = "", groups: SpeakerGroups | None = None):
    """Paired difference A - B of two (model, mode) curves at one level, on the same examples
    and, where both have them, the same chip seeds (see `basics.stats.paired_difference`);
    with `groups` (the examples' speakers) the example test resamples whole speakers."""
    def cells(key: tuple[str, str]) -> dict[int, dict]:
        return {r.seed: r for r in rows if (r.model, r.mode) == key and r.perturbation == perturbation
                and r.level == level and r.layer == layer}

    ca, cb = cells(a), cells(b)
    if not ca or not cb:
        raise KeyError(f"no cells for {a if not ca else b} at {perturbation} {level:g}")
    ea, eb = seed_averaged(list(ca.values()), metric), seed_averaged(list(cb.values()), metric)
    if ea is None or eb is None:
        raise KeyError("cells stored without per-example results (schema 1)")
    common = sorted(set(ca) & set(cb))
    chips = (np.array([ca[s].metric(metric) for s in common]), np.array([cb[s].metric(metric) for s in common])) \
        if len(common) >= 2 else (None, None)
    return paired_difference(ea, eb, *chips, groups=groups)


def _pm(v: float | None, fmt: str = ".4f") -> str:
    return "-" if v is None else f"{v:{fmt}}"


def attack_gaps(curves: list[CurveSummary]) -> list[dict]:
    """Worst case against the random draw of the same budget, per model/mode/layer, target and level.

    Pairs each `adversarial` curve with its `steps=0` baseline (the sweep adds it); the
    gap is random minus worst-case accuracy (points lost to the worst chips beyond chance draws).
    """
    base = {}
    for cs in curves:
        a = attack_label(cs.perturbation)
        if a is not None and a[1]:
            base[(cs.model, cs.mode, cs.layer, a[2])] = cs
    out = []
    for cs in curves:
        a = attack_label(cs.perturbation)
        b = base.get((cs.model, cs.mode, cs.layer, a[2])) if a is not None and not a[1] else None
        if b is None:
            continue
        rnd = {s.level: s.metrics["accuracy"] for s in b.levels}
        for s in cs.levels:
            if s.level in rnd:
                out.append({"model": cs.model, "mode": cs.mode, "layer": cs.layer, "target": a[0],
                            "attack": cs.perturbation, "level": s.level, "random": rnd[s.level][0],
                            "random_ci": rnd[s.level][1], "worst": s.metrics["accuracy"][0],
                            "worst_ci": s.metrics["accuracy"][1], "gap": rnd[s.level][0] - s.metrics["accuracy"][0]})
    return out


def format_attack_gaps(gaps: list[dict]) -> str:
    """Random vs worst-case accuracy per budget, as text lines."""
    if not gaps:
        return ""
    lines = ["Worst case vs random within the same budget (accuracy; gap = random - worst):"]
    for g in gaps:
        lines.append(f"  {g['model']} [{g['mode']}] {g['target']}{' layer=' + g['layer'] if g['layer'] else ''} "
                     f"budget {g['level']:g}: random {g['random']:.4f} ±{_pm(g['random_ci'])}  worst "
                     f"{g['worst']:.4f} ±{_pm(g['worst_ci'])}  gap {g['gap']:+.4f}")
    return "\n".join(lines)


def overflow_note(s: LevelStats) -> str:
    """Why a level has no number: its networks overflowed."""
    return f"{s.nonfinite} of {s.n} chips gave non-finite outputs (the network overflowed): no number, not ranked"


def skipped_note(cs: CurveSummary) -> str:
    """One line: which levels were not run, and why."""
    levels = ", ".join(f"{lv:g}" for lv, _ in cs.skipped)
    return f"not run: level{'s' if len(cs.skipped) > 1 else ''} {levels} ({cs.skipped[0][1]}); no AUC for this curve"


def format_summary(curves: list[CurveSummary]) -> str:
    """A compact text table: mean, chip interval and test-set interval per level, then the summaries."""
    lines = []
    for cs in curves:
        title = f"{cs.model} [{cs.mode}, {cs.compute} network{'s' if cs.compute > 1 else ''}/prediction] " \
                f"{cs.perturbation}" + (f" layer={cs.layer}" if cs.layer else "") + \
                (" (deterministic: one network per level, no interval over chips)" if cs.deterministic else "")
        lines.append(title)
        lines.append(f"  clean: accuracy {cs.clean['accuracy']:.4f}  nll {cs.clean['nll']:.4f}  ece {cs.clean['ece']:.4f}")
        lines.append(f"  {'level':>10}  {'n':>3}  {'accuracy':>8} {'±chips':>7} {'±test':>7}  {'nll':>8} {'±test':>7}  "
                     f"{'ece':>7}  {'dECE':>8}  {'dNLL':>8}")
        for s in cs.levels:
            a, ci = s.metrics["accuracy"]
            note = "  (all draws identical)" if s.zero_spread else ""
            if s.nonfinite:
                note = f"  ({overflow_note(s)})"
            lines.append(f"  {s.level:>10.4g}  {s.n:>3}  {a:>8.4f} {_pm(ci):>7} {_pm(s.test_ci.get('accuracy')):>7}  "
                         f"{s.metrics['nll'][0]:>8.4f} {_pm(s.test_ci.get('nll'), '.3f'):>7}  "
                         f"{s.metrics['ece'][0]:>7.4f}  {s.metrics['ece'][0] - cs.clean['ece']:>+8.4f}  "
                         f"{s.metrics['nll'][0] - cs.clean['nll']:>+8.4f}{note}")
        drops = ", ".join(f"{k}: {format_drop(v, cs.drop_below.get(k, False))}" for k, v in cs.drop_levels.items())
        if cs.skipped:
            lines.append(f"  {skipped_note(cs)}")
        lines.append(f"  normalised AUC ({cs.axis} level axis) {_pm(cs.auc)}; accuracy drop at level {drops}")
        lines.append("")
    gaps = format_attack_gaps(attack_gaps(curves))
    if gaps:
        lines += [gaps, ""]
    if curves:
        units = sorted({interval_unit(cs.test_groups) for cs in curves})
        lines.append("±chips: 95% t-interval over hardware draws (given this test set); ±test: 95% bootstrap "
                     f"interval of the chip-averaged value over {' / '.join(units)}.")
    return "\n".join(lines).rstrip()


def shown_levels(cs: CurveSummary) -> list[float]:
    """The levels a table or diagram shows: a middle one and the most severe (bit widths:
    fewest bits is most severe), distinct; with two levels, both; with one, that one."""
    lv = [s.level for s in cs.levels]
    order = lv if cs.increasing_severity else lv[::-1]
    return list(dict.fromkeys([order[(len(order) - 1) // 2], order[-1]]))
