"""The report's landscape section, from stored slice curves."""

from __future__ import annotations

from collections import defaultdict

from reports import figures
from reports.document import Section, Table
from reports.formatting import fmt_ci, num, slug
from reports.slices import summarize_slices


def landscape_section(b) -> Section:
    """(4) Slices: overlaid curves or planes, the smoothness table and its paired tests."""
    sec = Section("landscape", "4. Loss landscape")
    js = []
    for s in b.rec.slices:
        cfg = s.config
        summary = summarize_slices(s.curves)
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for c in s.curves:
            groups[(b.labels.get(c["model"], c["model"]), c["mode"])].append(c)
        what = "between two checkpoints" if cfg.get("between") else f"{cfg['direction']} directions"
        bn = cfg.get("bn", "mean")
        if cfg.get("chip"):
            what += f", every point deployed on {cfg['chip']} (integer dynamics)"
        sec.blocks.append(f"Slice {s.id}: {cfg['dims']}D, {what}, {cfg['points']} points per axis on "
                          f"{cfg['batches']} x {cfg['batch_size']} {cfg['split']} examples (seed {cfg['seed']}); "
                          f"BMA curves with BN statistics {'re-estimated per sample and point' if bn == 'recalibrate' else 'of the posterior mean (--bn mean; eval and sweep re-estimate them per sample)'}.")
        if cfg["dims"] == 1:
            sec.blocks.append(b.figure(f"slice{s.id}-lines",
                                       f"Slice {s.id}: loss along each direction, one line per model/mode (log "
                                       f"scale).", figures.slice_lines, dict(groups), b.colours,
                                       "a (step along the direction)"))
        else:
            for key, cs in groups.items():
                sec.blocks.append(b.figure(f"slice{s.id}-{slug(key[0])}-{key[1]}-plane",
                                           f"Slice {s.id}: {key[0]} {key[1]}, loss over the first plane.",
                                           figures.plane, cs[0], f"{key[0]} {key[1]}"))
        names = ("roughness", "kinks", "curvature", "angularity", "spectral_high", "lipschitz")
        rows = []
        for g in summary["groups"]:
            rows.append([b.labels.get(g["model"], g["model"]), g["mode"], str(g["compute"]),
                         str(g["directions"]), num(g["loss_at_0"]),
                         *[fmt_ci(g["metrics"][n]["mean"], g["metrics"][n]["ci95"]) for n in names]])
            if g["eigenvalues"]:
                sec.blocks.append(f"Hessian eigenvalues of {b.labels.get(g['model'], g['model'])}: "
                                  + ", ".join(f"{e:.4g}" for e in g["eigenvalues"]))
        sec.blocks.append(Table(["model", "mode", "compute", "directions", "loss at 0", *names], rows,
                                "Mean ±95% t-interval over directions. Angularity: roughness left after a local "
                                "smooth fit, relative to that fit's curvature (0 for a parabola of any width)."))
        pairs = [p for p in summary["pairs"] if p["metric"] in ("angularity", "roughness", "curvature")]
        if pairs:
            sec.blocks.append(Table(["metric", "A", "B", "mean A", "mean B", "A lower in", "p (Wilcoxon)",
                                     "p (Holm)", "verdict"],
                                    [[p["metric"], f"{b.labels.get(p['a']['model'], p['a']['model'])} "
                                      f"{p['a']['mode']}", f"{b.labels.get(p['b']['model'], p['b']['model'])}"
                                      f" {p['b']['mode']}", num(p["mean_a"], ".3g"), num(p["mean_b"], ".3g"),
                                      f"{p['a_lower_in']}/{p['n']}", num(p["p"], ".3g"), num(p["p_holm"], ".3g"),
                                      ("A lower" if p["median_diff"] < 0 else "B lower") if p["significant"]
                                      else "no difference shown"] for p in pairs],
                                    f"Paired by direction, two-sided Wilcoxon signed-rank test; "
                                    f"{summary['multiplicity']}."))
        js.append({"slice": s.id, "config": cfg, **summary})
    if not js:
        sec.blocks.append("No slices in this store (run `robust slice`): no landscape to show.")
    b.json["landscape"] = js
    return sec
