"""The README's tables for two trained models: clean metrics, then accuracy under noise.

    python examples/trained_models_table.py --adam adam.pt --ivon ivon.pt --out trained.db

Evaluates both checkpoints on the test split (IVON as posterior mean and as a BMA of 10
samples), then sweeps gaussian weight noise 0.05/0.1/0.2 (x max|w|), mismatch 0.1/0.2/0.3
and quantisation to 3/4 bits with 10 chips per level, and prints the two Markdown tables:
clean accuracy / NLL / ECE / Brier / MI, and per level the mean accuracy over chips, with
the level at which each curve has lost 5 points.
"""

from __future__ import annotations

import argparse
import time

from reports.summary import format_drop, summarize
from robustness.evaluate import EvalConfig
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep
from robustness.training import evaluate_checkpoints

PLANS = (("gaussian", (0.05, 0.1, 0.2), "gaussian {} (x max\\|w\\|)"), ("mismatch", (0.1, 0.2, 0.3), "mismatch {}"),
         ("quantize", (3, 4), "quantize {} bits"))
NAMES = {"point": "Adam", "mean": "IVON, posterior mean", "bma": "IVON, BMA (10 samples)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam", required=True)
    ap.add_argument("--ivon", required=True)
    ap.add_argument("--out", default="trained.db")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = evaluate_checkpoints([a.adam, a.ivon], EvalConfig(mc_samples=10, limit=a.limit))
    print("| model | accuracy | NLL | ECE | Brier | MI |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        mi = r.get("mutual_information")
        print(f"| {NAMES[r['mode']]} | {100 * r['accuracy']:.2f}% | {r['nll']:.3f} | {r['ece']:.3f} | "
              f"{r['brier']:.3f} | {'-' if mi is None else f'{mi:.3f}'} |")

    plans = tuple(PerturbationPlan(name, levels) for name, levels, _ in PLANS)
    res = run_sweep(SweepConfig((a.adam, a.ivon), plans, seeds=a.seeds, mc_samples=10,
                                modes=("point", "mean", "bma"), limit=a.limit), a.out, progress=not a.quiet)
    curves = {(c.mode, c.perturbation): c for c in summarize(res.rows, res.curves, speakers=res.groups)}
    modes = ("point", "mean", "bma")
    print("\n| perturbation, level | Adam | IVON mean | IVON BMA |")
    print("|---|---|---|---|")
    for name, levels, label in PLANS:
        cells = []
        for mode in modes:
            acc = {s.level: s.metrics["accuracy"][0] for s in curves[(mode, name)].levels}
            cells.append(" / ".join(f"{100 * acc[lv]:.1f}" for lv in levels) + "%")
        print(f"| {label.format(' / '.join(f'{lv:g}' for lv in levels))} | " + " | ".join(cells) + " |")
    drops = []
    for mode in modes:
        cs = [curves[(mode, name)] for name in ("gaussian", "mismatch")]
        drops.append(" / ".join(format_drop(c.drop_levels.get("5pt"), c.drop_below.get("5pt", False)) for c in cs))
    print("| level of a 5-point drop: gaussian / mismatch | " + " | ".join(drops) + " |")
    print(f"\n({res.new_cells} new cells; {time.perf_counter() - t0:.0f} s wall)")


if __name__ == "__main__":
    main()
