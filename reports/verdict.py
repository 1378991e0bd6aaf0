"""The report's opening lines, computed from its numbers (never written by hand).

Per perturbation, at its middle level: which model/mode keeps the most accuracy, and how
it compares with the best other model and with the best control at the same compute;
differences are called only when the paired test says so, otherwise "inside the noise".
Then the slices' angularity comparisons and what each IVON posterior is.
"""

from __future__ import annotations

import math


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _net(compute: int) -> str:
    return f"{compute} network{'s' if compute != 1 else ''}"


def _pick(versus: list[dict], top: dict) -> list[dict]:
    """Who the leader is compared with (versus is in accuracy order): the runner-up, and when
    the leader averages networks, the best single network (any model or mode) and the best
    rival at the same compute."""
    picks = versus[:1]
    if top["compute"] > 1:
        single = next((v for v in versus if v["compute"] == 1), None)
        same = next((v for v in versus if v["compute"] == top["compute"]), None)
        for v in (single, same):
            if v is not None and v not in picks:
                picks.append(v)
    return picks


def _controls(summary: dict, labels: dict[str, str], pert: str, level: float) -> list[str]:
    """IVON BMA against its compute-matched controls (chips, ensemble) at this level, with the
    tests that decided each call (the controls table of section 6)."""
    out = []
    for c in summary.get("controls", []):
        if c["perturbation"] != pert or c["level"] != level or c["b"]["compute"] != c["a"]["compute"]:
            continue
        acc = c["accuracy"]
        chips = "no chip test" if acc["p_chips"] is None else f"chips p = {acc['p_chips']:.2g}"
        call = "significant" if acc["significant"] else "inside the noise"
        out.append(f"{labels.get(c['a']['model'], c['a']['model'])} bma vs {labels.get(c['b']['model'], c['b']['model'])}"
                   f" {c['b']['mode']} at the same compute ({_net(c['a']['compute'])}): {100 * acc['diff']:+.1f} "
                   f"points, {call} (examples p = {acc['p_examples']:.2g}, {chips})")
    return out


def _degradation(summary: dict, labels: dict[str, str]) -> list[str]:
    out = []
    for d in summary.get("degradation", []):
        top = d.get("leader")
        if not top:
            continue
        for o in top.get("overflowed", []):
            out.append(f"{d['perturbation']} {d['level']:g}: {labels.get(o['model'], o['model'])} {o['mode']}: "
                       f"{o['note']}.")
        if "model" not in top:
            continue
        name = f"{labels.get(top['model'], top['model'])} {top['mode']}"
        n = len(top["versus"])
        if top.get("separable"):
            head = (f"{d['perturbation']} {d['level']:g}: {name} ({_net(top['compute'])}) keeps "
                    f"{100 * top['accuracy']:.1f}% accuracy, ahead of all {n} others (paired tests, Holm-adjusted "
                    f"over the {n})")
        else:
            head = (f"{d['perturbation']} {d['level']:g}: no separable leader; the highest, {name} "
                    f"({_net(top['compute'])}), keeps {100 * top['accuracy']:.1f}% accuracy")
        comps = []
        for v in _pick(top["versus"], top):
            other = f"{labels.get(v['model'], v['model'])} {v['mode']} ({_net(v['compute'])})"
            p = v.get("p_holm", max(v["p_examples"], v["p_chips"] or 0.0))  # significance needs both tests
            if v["significant"]:
                comps.append(f"{100 * v['diff']:+.1f} points vs {other} (Holm {_p(p)})")
            else:
                comps.append(f"{100 * v['diff']:+.1f} vs {other}, inside the noise (Holm {_p(p)})")
        comps += _auc_lines(d, labels)
        comps += [c for c in _controls(summary, labels, d["perturbation"], d["level"]) if c not in comps]
        out.append(head + ("; " + "; ".join(comps) if comps else "") + ".")
    return out


def _auc_lines(d: dict, labels: dict[str, str]) -> list[str]:
    """The area-under-the-curve leader, normalised (to each curve's own clean accuracy) and absolute."""
    curves = [c for c in d.get("curves", []) if c.get("auc") is not None]
    if len(curves) < 2:
        return []
    def name(c: dict) -> str:
        return f"{labels.get(c['model'], c['model'])} {c['mode']}"
    absolute = max(curves, key=lambda c: c["mean_accuracy"])
    out = []
    if d.get("best_auc"):
        b = next(c for c in curves if (c["model"], c["mode"]) == (d["best_auc"]["model"], d["best_auc"]["mode"]))
        out.append(f"best normalised area under the accuracy curve (relative to its own clean accuracy): {name(b)}, "
                   f"ahead of every other curve over chips (Holm {_p(d['best_auc_p'])})")
    elif d.get("best_auc_p") is not None:
        out.append(f"no curve's normalised area under the accuracy curve is ahead of every other's over chips "
                   f"(Holm, largest {_p(d['best_auc_p'])})")
    out.append(f"highest mean accuracy over the level range: {name(absolute)} "
               f"({100 * absolute['mean_accuracy']:.1f}%, not tested)")
    return out


def _landscape(summary: dict, labels: dict[str, str]) -> list[str]:
    out = []
    for s in summary.get("landscape", []):
        for p in s["pairs"]:
            if p["metric"] != "angularity":
                continue
            a = f"{labels.get(p['a']['model'], p['a']['model'])} {p['a']['mode']}"
            b = f"{labels.get(p['b']['model'], p['b']['model'])} {p['b']['mode']}"
            test = f"Wilcoxon {_p(p['p'])}, Holm-adjusted over the slice table's {p['family']} tests {_p(p['p_holm'])}"
            if p["significant"]:
                lo, hi = (a, b) if p["median_diff"] < 0 else (b, a)
                ma, mb = (p["mean_a"], p["mean_b"]) if p["median_diff"] < 0 else (p["mean_b"], p["mean_a"])
                ratio = f"{mb / ma:.1f}x " if ma > 0 and math.isfinite(mb / ma) else ""
                out.append(f"Slice {s['slice']}: {lo}'s loss is {ratio}less angular than {hi}'s along the same "
                           f"{p['n']} directions ({test}).")
            else:
                out.append(f"Slice {s['slice']}: no difference in angularity shown between {a} and {b} "
                           f"({p['n']} directions, {test}).")
        if s.get("multiplicity") and "none can be called" in s["multiplicity"]:
            out.append(f"Slice {s['slice']}: {s['multiplicity']}.")
    return out


def _seeds(summary: dict) -> list[str]:
    """The seed level first: the paper's claims over training seeds, or that the calls below
    ignore training variance."""
    sd = summary.get("seeds")
    if not sd:
        return []
    sets = [s for s in sd["sets"] if len(s["seeds"]) > 1]
    if not sets:
        return ["Training seeds: every model is one training run, so the calls below cover chips and test examples "
                "but ignore training variance."]
    counts = ", ".join(f"{s['name']} {len(s['seeds'])} seeds" for s in sets)
    few = [s["name"] for s in sets if len(s["seeds"]) < sd["min_seeds"]]
    lines = [f"Training seeds: {counts}" + (f"; {', '.join(few)} below {sd['min_seeds']}, so no claim is tested "
                                            "at the seed level for them" if few else "") + "."]
    tested = [h for h in sd["hypotheses"] if h["comparison"] is not None]
    for h in sd["hypotheses"]:
        c = h["comparison"]
        if c is None:
            lines.append(f"Claim: {h['claim']} ({h['a']} vs {h['b']}): not tested (fewer than 2 seeds on a side).")
            continue
        lines.append(f"Claim: {h['claim']} ({h['metric']}, {h['a']} vs {h['b']}, {h['compute']}): {h['status']}; "
                     f"difference {c['diff']:+.3g} [{c['lo']:+.3g}, {c['hi']:+.3g}], {c['test']}, p = {c['p']:.2g}, "
                     f"Holm over {len(tested)} tests p = {h['p_holm']:.2g}.")
    return lines


def verdict(summary: dict, labels: dict[str, str]) -> list[str]:
    """Plain-language lines, each backed by a number in `summary`."""
    lines = _seeds(summary) + _degradation(summary, labels) + _landscape(summary, labels)
    computes = {c["mode"]: c["compute"] for c in summary.get("clean", []) if c["compute"]}
    costly = [f"{m} costs {k}x the compute of one network" for m, k in computes.items() if k and k > 1]
    if costly:
        lines.append("Compute: " + "; ".join(costly) + ".")
    for p in summary.get("posterior", []):
        lines.append(f"Posterior of {labels.get(p['model'], p['model'])}: {p['verdict']} ({p['text']}).")
    return lines or ["The store holds no results a verdict can be drawn from."]
