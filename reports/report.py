"""`robust report`: HTML, Markdown, JSON and figures from a results store alone.

Sections: clean performance, degradation, calibration, landscape, hardware cost,
controls and posterior, provenance; a verdict computed from the numbers heads it.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from basics.stats import holm, paired_t_p
from reports import figures
from reports.calibration import pooled, reliability
from reports.controls import controls_section
from reports.document import Figure, Heading, Section, Table
from reports.formatting import fmt_ci, num, pct, slug
from reports.efficiency_section import efficiency_section
from reports.landscape import landscape_section
from reports.provenance import provenance_section
from reports.records import Records, Run
from reports.report_files import write_files
from reports.options import FORMATS
from reports.seeds_section import seeds_section
from reports.summary import (CurveSummary, accuracy_points, attack_gaps, format_drop, normalised_auc, overflow_note,
                             paired, shown_levels, skipped_note, summarize)
from basics.errors import BadInput
from reports.verdict import verdict
from robustness.store.curve_meta import CurveMeta

SCHEMA_VERSION = 1
REPORT_FILES = ("index.html", "report.md", "summary.json")  # what a report writes besides figures/
CLEAN_METRICS = (("accuracy", "Acc (%)"), ("nll", "NLL"), ("ece", "ECE"), ("entropy", "Entropy"),
                 ("mutual_information", "MI"), ("brier", "Brier"))


class _Builder:
    def __init__(self, rec: Records, drawer: figures.Drawer):
        self.rec = rec
        self.drawer = drawer
        self.labels = rec.labels()
        keys = [(self.labels[r.model], r.mode) for run in rec.runs for r in run.rows]
        keys += [(self.labels.get(c["model"], c["model"]), c["mode"]) for s in rec.slices for c in s.curves]
        self.colours = figures.palette(keys)
        self._curves: dict[int, tuple[dict, dict]] = {}
        self.json: dict = {"schema_version": SCHEMA_VERSION, "store": rec.path,
                           "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def figure(self, name: str, caption: str, draw: Callable, *args) -> Figure:
        """A figure in the report, drawn by `draw(*args)` (in a worker process where there is one)."""
        self.drawer.submit(name, draw, *args)
        return Figure(name, caption)

    def key(self, row: dict) -> tuple[str, str]:
        return self.labels[row.model], row.mode

    # --- (1) clean --------------------------------------------------------------------------

    def clean(self) -> Section:
        sec = Section("clean", "1. Clean performance")
        latest: dict[tuple, dict] = {}
        for run in self.rec.runs:
            for r in run.rows:
                if r.perturbation == "clean":
                    latest[(r.model, r.mode)] = r
        if not latest:
            sec.blocks.append("No sweep in this store: no clean evaluation to show.")
            return sec
        rows, js = [], []
        for (model, mode), r in latest.items():
            rows.append([self.labels[model], mode, str(r.samples or 1), str(r.n),
                         *[pct(r.accuracy) if m == "accuracy" else num(r.metric(m), ".4f") for m, _ in CLEAN_METRICS]])
            js.append({"model": model, "mode": mode, "compute": r.samples, "n": r.n,
                       **{m: r.metric(m) for m, _ in CLEAN_METRICS}})
        sec.blocks.append(Table(["model", "mode", "compute", "N", *[h for _, h in CLEAN_METRICS]], rows,
                                "Test split; compute = networks evaluated per prediction. MI: mutual information "
                                "(epistemic part of the entropy, averaging modes only)."))
        self.json["clean"] = js
        return sec

    # --- (2) degradation, (3) calibration, (5) hardware cost --------------------------------------

    def run_curves(self, run: Run) -> dict[str, list[CurveSummary]]:
        """Whole-network curves of a run by perturbation (per-layer ones: `layer_curves`)."""
        return self._summaries(run)[0]

    def layer_curves(self, run: Run) -> dict[str, list[CurveSummary]]:
        """Per-layer (`--per-layer`, `--layers`) curves of a run by perturbation."""
        return self._summaries(run)[1]

    def _summaries(self, run: Run) -> tuple[dict, dict]:
        if run.id in self._curves:  # summaries bootstrap over examples: compute them once
            return self._curves[run.id]
        whole: dict[str, list[CurveSummary]] = defaultdict(list)
        layered: dict[str, list[CurveSummary]] = defaultdict(list)
        for cs in summarize(run.rows, run.curves_meta, run.skipped, run.groups):
            (layered if cs.layer else whole)[cs.perturbation].append(cs)
        self._curves[run.id] = (whole, layered)
        return whole, layered

    def seed_aucs(self, run: Run, cs: CurveSummary) -> dict[int, float]:
        """Normalised AUC of each chip (seed) alone: draw s is the same chip at every level."""
        meta = run.curves_meta.get(cs.perturbation, CurveMeta())
        per: dict[int, list] = defaultdict(list)
        for r in run.rows:
            if (r.model, r.mode, r.perturbation, r.layer) == (cs.model, cs.mode, cs.perturbation, ""):
                per[r.seed].append((r.level, r.accuracy))
        n_levels = len(cs.levels)
        out = {}
        for s, pts in per.items():
            if len(pts) == n_levels:
                a = normalised_auc(accuracy_points(pts, cs.clean["accuracy"], meta), cs.clean["accuracy"],
                                   meta.axis)
                if a is not None:
                    out[s] = a
        return out

    def best_auc(self, run: Run, curves: list[CurveSummary]) -> tuple[CurveSummary | None, float | None]:
        """The curve with the highest normalised AUC, when it beats every rival in a paired
        t-test over their common chips' AUCs, Holm-adjusted over those comparisons (the leader
        is the observed maximum, so one test against the runner-up would not control the
        error of the selection); else None. Returns it and the largest adjusted p (None when
        no comparison could be made)."""
        ranked = sorted([c for c in curves if c.auc is not None], key=lambda c: -c.auc)
        if len(ranked) < 2:
            return None, None
        top = self.seed_aucs(run, ranked[0])
        ps, ahead = [], True
        for rival in ranked[1:]:
            other = self.seed_aucs(run, rival)
            common = sorted(set(top) & set(other))
            if len(common) < 2:
                return None, None
            d = np.array([top[s] - other[s] for s in common])
            ps.append(paired_t_p(d))
            ahead = ahead and d.mean() > 0
        worst = max(holm(ps))
        return (ranked[0] if worst < 0.05 and ahead else None), worst

    def degradation(self) -> tuple[Section, Section, Section]:
        deg = Section("degradation", "2. Degradation under hardware perturbations")
        cal = Section("calibration", "3. Calibration")
        cost = Section("hardware-cost", "5. Hardware cost: spike rates")
        js_deg, js_cal, js_cost = [], [], []
        cal_done: dict[int, bool] = {}
        for run in self.rec.runs:
            for pert, curves in self.run_curves(run).items():
                meta = run.curves_meta.get(pert, CurveMeta())
                unit = meta.unit
                log_x = meta.axis == "log"
                stem = f"run{run.id}-{slug(pert)}"
                deg.blocks.append(Heading(f"{pert} (run {run.id})"))
                if meta.effects:
                    deg.blocks.append(f"Effects on: {meta.effects}.")
                chips = curves[0].levels[0].n
                spread = ("deterministic: one network per level, so no interval over chips and no chips control"
                          if meta.deterministic else
                          f"mean over {chips} chips with its 95% t-interval over chips" if chips > 1 else
                          "one chip: no interval over chips")
                deg.blocks.append(self.figure(
                    f"{stem}-degradation",
                    f"{pert} (run {run.id}): accuracy, NLL, ECE and Brier against level ({unit}); {spread}; "
                    f"dotted: clean.",
                    figures.degradation, curves, self.labels, self.colours, unit, log_x, meta.bits))
                best, p = self.best_auc(run, curves)
                shown = shown_levels(curves[0])
                mid = shown[0]
                rows = []
                for cs in curves:
                    auc = num(cs.auc)
                    if best is cs:
                        auc = f"**{auc}**"
                    d = {s.level: s for s in cs.levels}
                    rows.append([self.labels[cs.model], cs.mode, str(cs.compute), auc, pct(cs.mean_accuracy),
                                 *[format_drop(cs.drop_levels.get(k), cs.drop_below.get(k, False))
                                   for k in ("1pt", "5pt", "10pt")],
                                 *[num(d[lv].metrics["ece"][0] - cs.clean["ece"], "+.3f") if lv in d else "-"
                                   for lv in shown],
                                 *[num(d[lv].metrics["nll"][0] - cs.clean["nll"], "+.3f") if lv in d else "-"
                                   for lv in shown]])
                axis_note = (f"norm. AUC: area under accuracy against level on a {meta.axis} axis, "
                             f"relative to the curve's own clean accuracy; mean acc.: the same area in absolute "
                             f"accuracy (accuracy averaged over the level range)")
                sig = (f"bold: best normalised AUC, ahead of every other curve in paired t-tests over common chips, "
                       f"Holm-adjusted (largest p = {p:.2g})" if best is not None else
                       "no AUC is marked: no separable leader (the highest normalised AUC is not ahead of every "
                       "other curve in paired t-tests over chips, Holm-adjusted"
                       + (f"; largest p = {p:.2g})" if p is not None else "; too few common chips to test)"))
                deg.blocks.append(Table(["model", "mode", "compute", "norm. AUC", "mean acc.", "1-pt drop at",
                                         "5-pt drop at",
                                         "10-pt drop at", *[f"dECE (chip mean) @{lv:g}" for lv in shown],
                                         *[f"dNLL @{lv:g}" for lv in shown]], rows,
                                        f"{pert}: {axis_note}; dECE: the mean over chips of each chip's ECE, minus "
                                        f"the clean ECE (section 3's pooled ECE bins all chips' predictions "
                                        f"together instead); {sig}."))
                deg.blocks += [f"{self.labels[cs.model]} {cs.mode}: {skipped_note(cs)}." for cs in curves if cs.skipped]
                js_deg.append({"run": run.id, "perturbation": pert, "unit": unit, "axis": meta.axis,
                               "best_auc": None if best is None else {"model": best.model, "mode": best.mode},
                               "best_auc_p": p, "level": mid, "leader": self.leader(run, curves, pert, mid),
                               "curves": [c.to_dict() for c in curves]})
                # Diagrams for the run's first perturbation (one figure keeps the report fast);
                # the ECE table covers every perturbation.
                cal.blocks += self.calibration(run, pert, curves, stem, js_cal, diagrams=not cal_done.get(run.id))
                cal_done[run.id] = True
                cost.blocks += self.spikes(run, pert, curves, stem, unit, log_x, js_cost)
        js_gaps = self.attack_table(deg)
        js_layers = self.layer_sensitivity(deg)
        for sec in (deg, cal, cost):
            if not sec.blocks:
                sec.blocks.append("Only per-layer sweeps in this store: see section 2's layer sensitivity."
                                  if js_layers else "No sweep in this store: nothing to show here.")
        self.json["layer_sensitivity"] = js_layers
        self.json.update(degradation=js_deg, calibration=js_cal, hardware_cost=js_cost, attack_gaps=js_gaps)
        return deg, cal, cost

    def layer_sensitivity(self, deg: Section) -> list[dict]:
        """Per-layer sweeps: accuracy against level with one layer perturbed at a time, a
        figure and a table per run and perturbation."""
        js = []
        for run in self.rec.runs:
            for pert, curves in self.layer_curves(run).items():
                meta = run.curves_meta.get(pert, CurveMeta())
                unit = meta.unit
                deg.blocks.append(f"Layer sensitivity, {pert} (run {run.id}): one layer perturbed at a time.")
                deg.blocks.append(self.figure(
                    f"run{run.id}-{slug(pert)}-layers",
                    f"{pert} (run {run.id}): accuracy against level ({unit}) with only the named layer perturbed; "
                    f"one panel per model/mode, one line style per layer; dotted: clean.",
                    figures.per_layer, curves, self.labels, self.colours, unit, meta.axis == "log",
                    meta.bits))
                rows = [[self.labels[cs.model], cs.mode, cs.layer, str(cs.compute), num(cs.auc), pct(cs.mean_accuracy),
                         *[format_drop(cs.drop_levels.get(k), cs.drop_below.get(k, False))
                           for k in ("1pt", "5pt", "10pt")]] for cs in curves]
                deg.blocks.append(Table(["model", "mode", "layer", "compute", "norm. AUC", "mean acc.", "1-pt drop at",
                                         "5-pt drop at", "10-pt drop at"], rows,
                                        f"{pert}, one layer at a time (a lower AUC or an earlier drop: the more "
                                        f"sensitive layer)."))
                js.append({"run": run.id, "perturbation": pert, "unit": unit, "curves": [c.to_dict() for c in curves]})
        return js

    def attack_table(self, deg: Section) -> list[dict]:
        """Worst case against the random draw of the same budget, every run: one table."""
        gaps = [g for run in self.rec.runs
                for g in attack_gaps([c for cs in self.run_curves(run).values() for c in cs])]
        if gaps:
            rows = [[self.labels[g["model"]], g["mode"], g["target"], f"{g['level']:g}",
                     fmt_ci(g["random"], g["random_ci"], ".3f", ".3f"),
                     fmt_ci(g["worst"], g["worst_ci"], ".3f", ".3f"),
                     num(g["gap"], "+.4f")] for g in gaps]
            deg.blocks.append(Table(["model", "mode", "target", "budget", "random accuracy", "worst-case accuracy",
                                     "gap"], rows, "Worst case (gradient ascent within the budget, restarts as chips) "
                                     "against the random draw of the same budget (the search's start, steps=0); ± "
                                     "is the 95% interval over chips."))
        return gaps

    def leader(self, run: Run, curves: list[CurveSummary], pert: str, level: float) -> dict | None:
        """The most accurate model/mode at `level`, paired against every other one there."""
        acc = {id(c): next((s.metrics["accuracy"][0] for s in c.levels if s.level == level), None) for c in curves}
        # a curve whose networks overflowed at this level has no accuracy there: it is named, never ranked
        ranked = sorted([c for c in curves if acc[id(c)] is not None and math.isfinite(acc[id(c)])],
                        key=lambda c: -acc[id(c)])
        overflowed = [{"model": c.model, "mode": c.mode, "note": overflow_note(s)} for c in curves
                      for s in c.levels if s.level == level and s.nonfinite]
        if not ranked:
            return {"overflowed": overflowed} if overflowed else None
        top = ranked[0]
        comps, tests = [], []
        for other in ranked[1:]:
            try:
                d = paired(run.rows, (top.model, top.mode), (other.model, other.mode), pert, level,
                           groups=top.test_groups)
            except KeyError:
                continue
            tests.append(d)
            comps.append({"model": other.model, "mode": other.mode, "compute": other.compute,
                          "accuracy": acc[id(other)], "diff": d.diff, "lo": d.lo, "hi": d.hi,
                          "p_examples": d.p_examples, "p_chips": d.p_chips})
        # The leader is the observed best: its comparisons are one family, Holm-adjusted.
        # A comparison's p is the larger of its two tests (a call needs both).
        for c, d, adjusted in zip(comps, tests, holm([max(d.p_examples, d.p_chips or 0.0) for d in tests])):
            c.update(p_holm=adjusted, significant=d.significant and adjusted < 0.05)
        return {"model": top.model, "mode": top.mode, "compute": top.compute, "accuracy": acc[id(top)],
                "versus": comps, "separable": bool(comps) and all(c["significant"] for c in comps),
                "overflowed": overflowed}

    def calibration(self, run: Run, pert: str, curves: list[CurveSummary], stem: str, js: list,
                    diagrams: bool = True) -> list:
        shown = shown_levels(curves[0])
        conditions = ["clean", *[f"{pert} {lv:g}" for lv in shown]]
        selectors = [lambda r: r.perturbation == "clean",
                     *[(lambda r, lv=lv: r.perturbation == pert and r.level == lv) for lv in shown]]
        series, table = [], []
        for cs in curves:
            panels = {}
            for title, sel in zip(conditions, selectors):
                rows = [r for r in run.rows if r.model == cs.model and r.mode == cs.mode and not r.layer
                        and sel(r)]
                data = pooled(rows)
                if data is None:
                    continue
                d = reliability(*data)
                panels[title] = d
                table.append([self.labels[cs.model], cs.mode, title, num(d["ece"]), num(d["adaptive_ece"]),
                              str(d["n"])])
                js.append({"run": run.id, "model": cs.model, "mode": cs.mode, "condition": title, **d})
            if panels:
                key = (self.labels[cs.model], cs.mode)
                series.append((f"{key[0]} {key[1]} (x{cs.compute})", self.colours[key], panels))
        if not series:
            return [f"No per-example confidences stored for {pert} (run {run.id}; stores written before "
                    f"schema 3): no reliability diagram."]
        fig = [self.figure(f"{stem}-reliability",
                           f"Reliability diagrams, {pert} (run {run.id}): accuracy against mean confidence per "
                           f"bin (15 equal-width bins), predictions pooled over chips; below, the share of "
                           f"predictions in each bin.", figures.reliability, conditions, series)] \
            if diagrams else []
        return fig + [Table(["model", "mode", "condition", "pooled ECE", "pooled adaptive ECE", "predictions"], table,
                      "Pooled: every chip's predictions binned together (what the reliability diagram shows; "
                      "section 2's dECE averages each chip's own ECE instead). ECE: 15 equal-width bins; adaptive "
                      "ECE: 15 equal-mass bins.")]

    def spikes(self, run: Run, pert: str, curves: list[CurveSummary], stem: str, unit: str, log_x: bool,
               js: list) -> list:
        series = []
        for cs in curves:
            by_level: dict[float, list] = defaultdict(list)
            for r in run.rows:
                if (r.model, r.mode, r.perturbation, r.layer) == (cs.model, cs.mode, pert, "") \
                        and r.spike_rates:
                    by_level[r.level].append(r.spike_rates)
            if not by_level:
                continue
            levels = sorted(by_level)
            rates = np.array([np.mean(by_level[lv], axis=0) for lv in levels])
            series.append(((self.labels[cs.model], cs.mode), levels, rates))
            js.append({"run": run.id, "model": cs.model, "mode": cs.mode, "perturbation": pert, "levels": levels,
                       "spike_rates": rates.tolist()})
        if not series:
            return []
        over = "one network per level (deterministic)" if curves[0].deterministic else "averaged over chips"
        return [self.figure(f"{stem}-spikes",
                            f"Mean spike rate per hidden layer under {pert} (run {run.id}), {over}: "
                            f"a proxy for the energy a chip spends (averaging modes: mean over their networks).",
                            figures.spike_rates, series, self.colours, unit, log_x,
                            not curves[0].increasing_severity)]

    # --- (4) landscape ------------------------------------------------------------------------

    # --- (6) controls and posterior -------------------------------------------------------------


def build(rec: Records) -> tuple[dict, list[str], list[Section], dict[str, bytes], dict[str, str]]:
    """(summary JSON, verdict lines, sections, PNGs, SVGs) of a report."""
    with figures.Drawer() as drawer:
        b = _Builder(rec, drawer)
        clean = b.clean()
        deg, cal, cost = b.degradation()
        land = landscape_section(b)
        eff = efficiency_section(b)
        ctrl = controls_section(b)
        seeds = seeds_section(b)
        prov = provenance_section(b)
        lines = verdict(b.json, b.labels)
        b.json["verdict"] = lines
        drawn = drawer.results()
    return (b.json, lines, [clean, deg, cal, land, cost, eff, ctrl, seeds, prov], {n: png for n, (png, _) in drawn.items()},
            {n: svg for n, (_, svg) in drawn.items()})


def write_report(rec: Records, out_dir: str | os.PathLike, formats: tuple[str, ...] = FORMATS) -> dict:
    """Write the report files into `out_dir` (built in a temporary folder, then moved in,
    so an interrupted report leaves no half-written file). Returns the summary JSON."""
    summary, lines, sections, pngs, svgs = build(rec)
    out = Path(out_dir)
    made = [p for p in (out, *out.parents) if not p.exists()]  # the folders this report creates
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
        write_files(out, tmp, formats, summary, lines, sections, pngs, svgs)
    except OSError as e:
        for p in made:  # leave no empty folder behind (only those made here, innermost first)
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise BadInput(f"{out}: the report could not be written ({e.strerror or e}); nothing was left behind") \
            from None
    return summary
