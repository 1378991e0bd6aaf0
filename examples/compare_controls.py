"""IVON against its controls at equal compute, with paired tests (the issue-7 comparison).

    python examples/compare_controls.py --ensemble ens.pt --hwa hwa.pt --ivon ivon.pt --out controls.db

Sweeps gaussian 0.05/0.1 and mismatch 0.1/0.2 with 10 chips per level, then prints per
level accuracy and NLL for every model/mode with its compute, and paired differences
(bootstrap over test examples, paired t-test over the common chip draws) of IVON BMA
against each control.
"""

from __future__ import annotations

import argparse

from reports.summary import paired, summarize
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ensemble", required=True, help="Adam ensemble checkpoint (point = member 0)")
    ap.add_argument("--hwa", required=True, help="hardware-aware Adam checkpoint")
    ap.add_argument("--ivon", required=True)
    ap.add_argument("--out", default="controls.db")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    plans = (PerturbationPlan("gaussian", (0.05, 0.1)), PerturbationPlan("mismatch", (0.1, 0.2)))
    res = run_sweep(SweepConfig((a.ensemble, a.hwa, a.ivon), plans, seeds=a.seeds, limit=a.limit), a.out)
    rows = [r for r in res.rows if not (r.model == a.hwa and r.mode == "chips")]
    names = {(a.ensemble, "point"): "Adam point", (a.ensemble, "chips"): "Adam chips",
             (a.ensemble, "ensemble"): "Adam ensemble", (a.hwa, "point"): "hardware-aware Adam",
             (a.ivon, "mean"): "IVON mean", (a.ivon, "chips"): "IVON mean chips", (a.ivon, "bma"): "IVON BMA"}
    curves = summarize(rows, res.curves, speakers=res.groups)
    print("| model / mode | compute | perturbation | level | accuracy ±chips ±test | NLL ±test |")
    print("|---|---|---|---|---|---|")
    for c in curves:
        for s in c.levels:
            acc, ci = s.metrics["accuracy"]
            print(f"| {names[(c.model, c.mode)]} | {c.compute} | {c.perturbation} | {s.level:g} | "
                  f"{100 * acc:.1f} ±{100 * ci:.1f} ±{100 * s.test_ci['accuracy']:.1f} | "
                  f"{s.metrics['nll'][0]:.3f} ±{s.test_ci['nll']:.3f} |")
    bma = (a.ivon, "bma")
    print("\n| IVON BMA minus | perturbation | level | Δaccuracy [95% CI], p_ex, p_chips | ΔNLL [95% CI], p_ex | significant (acc / NLL) |")
    print("|---|---|---|---|---|---|")
    for other in [k for k in names if k != bma]:
        for pert, levels in (("gaussian", (0.05, 0.1)), ("mismatch", (0.1, 0.2))):
            for lv in levels:
                d = paired(rows, bma, other, pert, lv, "accuracy", groups=res.groups[a.ivon])
                n = paired(rows, bma, other, pert, lv, "nll", groups=res.groups[a.ivon])
                pc = "-" if d.p_chips is None else f"{d.p_chips:.3g}"
                print(f"| {names[other]} | {pert} | {lv:g} | {100 * d.diff:+.1f} [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}], "
                      f"{d.p_examples:.3g}, {pc} | {n.diff:+.3f} [{n.lo:+.3f}, {n.hi:+.3f}], {n.p_examples:.3g} | "
                      f"{'yes' if d.significant else 'no'} / {'yes' if n.significant else 'no'} |")


if __name__ == "__main__":
    main()
