"""The README's random-vs-worst-case table: Adam point and IVON BMA under worst-case chips.

    python examples/worst_case_table.py --adam adam.pt --ivon ivon.pt --out worst.db

Sweeps `adversarial` mismatch (relative box 1/2/5%, log-std budget 1/2%) and thresholds
(box 5/10%) with 3 restarts per budget (each searched on 32 validation clips) and, added
by the sweep, the random baseline of every budget (the search's own random start: under
BMA one chip shared by the M posterior samples, as in the search). Prints one Markdown
row per target and budget: random and worst-case accuracy, ± the 95% interval over the
3 chips.
"""

from __future__ import annotations

import argparse
import time

from reports.summary import attack_gaps, summarize
from robustness.sweep.config import random_baselines
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep

BUDGETS = (("adversarial(target=mismatch)", (0.01, 0.02, 0.05), "mismatch, {:.0%} box"),
           ("adversarial(target=mismatch,budget=logstd)", (0.01, 0.02), "mismatch, log-std {:.0%}"),
           ("adversarial(target=thresholds)", (0.05, 0.1), "thresholds, {:.0%} box"))


def _pm(value: float, half_width: float | None) -> str:
    """A mean with its interval over chips; one chip has no interval."""
    return f"{value:.3f}" if half_width is None else f"{value:.3f} ±{half_width:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam", required=True)
    ap.add_argument("--ivon", required=True)
    ap.add_argument("--out", default="worst.db")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    plans = [PerturbationPlan(spec, levels) for spec, levels, _ in BUDGETS]
    cfg = SweepConfig((a.adam, a.ivon), tuple(plans + random_baselines(plans)), seeds=a.seeds, mc_samples=10,
                      modes=("point", "bma"), limit=a.limit)
    t0 = time.perf_counter()
    res = run_sweep(cfg, a.out, progress=not a.quiet)
    wall = time.perf_counter() - t0
    gaps = {(g["model"], g["attack"], g["level"]): g for g in attack_gaps(summarize(res.rows, res.curves,
                                                                                    speakers=res.groups))}
    print("| target, budget | Adam: random | Adam: worst | IVON BMA: random | IVON BMA: worst |")
    print("|---|---|---|---|---|")
    for spec, levels, label in BUDGETS:
        for lv in levels:
            cells = []
            for model in (a.adam, a.ivon):
                g = gaps[(model, spec, lv)]
                cells += [_pm(g["random"], g["random_ci"]), _pm(g["worst"], g["worst_ci"])]
            print(f"| {label.format(lv)} | " + " | ".join(cells) + " |")
    print(f"\n({res.new_cells} new cells; {wall:.0f} s wall)")


if __name__ == "__main__":
    main()
