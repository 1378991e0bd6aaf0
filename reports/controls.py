"""Section 6 of the report: IVON BMA against every other model and mode of its sweep
(paired tests at the level the report shows), and what each IVON posterior is."""

from __future__ import annotations

from basics.modes import Mode
from basics.stats import interval_unit
from reports.document import Section, SectionInput, Table
from reports.formatting import num
from reports.summary import paired, shown_levels


def controls_section(b: SectionInput) -> Section:
    sec = Section("controls", "6. Controls and posterior")
    js = []
    for run in b.rec.runs:
        for pert, curves in b.run_curves(run).items():
            bmas = [c for c in curves if c.mode == Mode.BMA]
            mid = shown_levels(curves[0])[0]
            rows = []
            for bma in bmas:
                for other in curves:
                    if other is bma:
                        continue
                    try:
                        acc = paired(run.rows, (bma.model, bma.mode), (other.model, other.mode), pert, mid,
                                     groups=bma.test_groups)
                        nll = paired(run.rows, (bma.model, bma.mode), (other.model, other.mode), pert, mid, "nll",
                                     groups=bma.test_groups)
                    except KeyError:
                        continue
                    rows.append([f"{b.labels[bma.model]} bma (x{bma.compute})",
                                 f"{b.labels[other.model]} {other.mode} (x{other.compute})",
                                 f"{100 * acc.diff:+.1f} [{100 * acc.lo:+.1f}, {100 * acc.hi:+.1f}]",
                                 _tests(acc), "yes" if acc.significant else "no",
                                 f"{nll.diff:+.3f} [{nll.lo:+.3f}, {nll.hi:+.3f}]", _tests(nll),
                                 "yes" if nll.significant else "no"])
                    js.append({"run": run.id, "perturbation": pert, "level": mid,
                               "a": {"model": bma.model, "mode": Mode.BMA.value, "compute": bma.compute},
                               "b": {"model": other.model, "mode": other.mode, "compute": other.compute},
                               "accuracy": vars(acc) | {"significant": acc.significant},
                               "nll": vars(nll) | {"significant": nll.significant}})
            if rows:
                one_chip = any(r[3].endswith("no chip test") for r in rows)
                sec.blocks.append(Table(["IVON BMA", "minus", "Δ accuracy (points) [95%]", "p examples / chips",
                                         "significant", "Δ NLL [95%]", "p examples / chips", "significant"], rows,
                                        f"{pert} {mid:g} (run {run.id}): paired on the same test examples "
                                        f"(bootstrap over {interval_unit(bmas[0].test_groups)}: the interval "
                                        f"and its p) and on the same chips (paired t-test); significant = both "
                                        f"tests give p < 0.05 and the interval excludes 0"
                                        + ("; with fewer than 2 common chips there is no chip test and the "
                                           "call rests on the examples alone" if one_chip else "")
                                        + ". Not corrected for the table's several comparisons. Controls at "
                                          "the same compute: chips, ensemble."))
    if not js:
        sec.blocks.append("No IVON BMA curve beside other models in a sweep: no controls comparison.")
    post_rows, post_js = [], []
    for path, m in b.rec.model_meta().items():
        d = m.get("posterior")
        if not d:
            continue
        s = d["sigma"]
        post_rows.append([b.labels.get(path, path), d["verdict"], num(s["q10"], ".3g"),
                          num(s["median"], ".3g"), num(s["q90"], ".3g"), f"{d['moved']:.0%}",
                          f"{d['at_prior']:.0%}"])
        post_js.append({"model": path, **d})
    if post_rows:
        sec.blocks.append(Table(["IVON model", "posterior", "sigma q10", "median", "q90", "moved >10%",
                                 "at prior width"], post_rows,
                                "initial: still at 1/sqrt(ess (hess_init + wd)) (isotropic noise); uniform: moved "
                                "by one factor; prior: curvature near zero; learnt: a shape per weight."))
        for d in post_js:
            sec.blocks.append(f"{b.labels.get(d['model'], d['model'])}: {d['text']}")
    b.json["controls"] = js
    b.json["posterior"] = post_js
    return sec


def _tests(d) -> str:
    """The p-values behind a paired call: over examples and over chips (or that there was no chip test)."""
    chips = "no chip test" if d.p_chips is None else f"{d.p_chips:.2g}"
    return f"{d.p_examples:.2g} / {chips}"
