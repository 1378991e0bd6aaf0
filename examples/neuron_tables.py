"""The README's tables for the four neuron types: clean metrics, accuracy under noise, and
which type holds up best, from a store that swept them all.

    python examples/neuron_tables.py --store neurons.db

Reads the store's run with the most models (or `--run ID`), one model per (neuron type,
optimizer), whole-network curves only (not `--per-layer` ones). Prints:
  1. clean accuracy / NLL / ECE per type, optimizer and mode, with each mode's compute;
  2. per perturbation level the mean accuracy over chips (95% t-interval over chips);
  3. per level and mode family, the leading type against each other type: the accuracy
     difference on the same test examples (paired bootstrap over examples, speakers as
     clusters) and Welch's t-test over the two types' chips (different architectures draw
     different chips, so chips are not paired); a difference is called only when both
     p-values are below 0.05.
"""

from __future__ import annotations

import argparse
import warnings
from collections import defaultdict

import numpy as np
from scipy import stats as sps

from basics.stats import paired_difference
from reports.records import load_records
from reports.summary import seed_averaged, summarize

ORDER = ("lif", "adlif", "rlif", "radlif")
FAMILIES = (("adam", "point"), ("adam", "chips"), ("ivon", "mean"), ("ivon", "chips"), ("ivon", "bma"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--run", type=int, default=None, help="run id (default: the run with the most models)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # scipy on chips with identical accuracies
    rec = load_records(a.store)
    run = max(rec.runs, key=lambda r: len(r.models)) if a.run is None else next(r for r in rec.runs if r.id == a.run)
    run.rows = [r for r in run.rows if not r.layer]
    meta = {m["path"]: m for m in run.models}
    kind = {p: (m.get("neuron") or "lif", m["optimizer"]) for p, m in meta.items()}
    curves = summarize(run.rows, run.curves_meta, run.skipped, run.groups)

    print("| neuron | optimizer | mode | compute | accuracy | NLL | ECE |")
    print("|---|---|---|---|---|---|---|")
    seen = set()
    for c in sorted(curves, key=lambda c: (ORDER.index(kind[c.model][0]), kind[c.model][1], c.mode)):
        key = (c.model, c.mode)
        if key in seen or c.mode == "chips":  # clean chips are the single network itself
            continue
        seen.add(key)
        n, o = kind[c.model]
        print(f"| {n} | {o} | {c.mode} | {c.compute} | {100 * c.clean['accuracy']:.1f}% | {c.clean['nll']:.3f} | "
              f"{c.clean['ece']:.3f} |")

    levels = sorted({(c.perturbation, s.level) for c in curves for s in c.levels})
    print("\n| neuron | optimizer | mode (compute) | " + " | ".join(f"{p} {lv:g}" for p, lv in levels) + " |")
    print("|---|---|---|" + "---|" * len(levels))
    by = {(c.model, c.mode, c.perturbation): c for c in curves}
    for c in sorted({(c.model, c.mode) for c in curves}, key=lambda k: (ORDER.index(kind[k[0]][0]), kind[k[0]][1], k[1])):
        cells = []
        for p, lv in levels:
            s = next((x for x in by[(*c, p)].levels if x.level == lv), None) if (*c, p) in by else None
            if s is None:  # e.g. no chips of a perturbation that draws nothing
                cells.append("-")
                continue
            acc, hw = s.metrics["accuracy"]
            cells.append(f"{100 * acc:.1f} ± {100 * (hw or 0):.1f}")
        n, o = kind[c[0]]
        compute = next(x.compute for x in curves if (x.model, x.mode) == c)
        print(f"| {n} | {o} | {c[1]} ({compute}) | " + " | ".join(cells) + " |")

    print("\n| level | family | leader | vs | difference (points) [95% CI] | p examples / p chips | called |")
    print("|---|---|---|---|---|---|---|")
    groups = next(iter(run.groups.values()), None)
    for p, lv in levels:
        for opt, mode in FAMILIES:
            cells = defaultdict(list)
            for r in run.rows:
                if r.perturbation == p and r.level == lv and r.mode == mode and kind[r.model][1] == opt:
                    cells[kind[r.model][0]].append(r)
            if len(cells) < 2:
                continue
            mean = {n: float(np.mean([r.accuracy for r in rs])) for n, rs in cells.items()}
            leader = max(mean, key=mean.get)
            for other in sorted(set(cells) - {leader}, key=ORDER.index):
                d = paired_difference(seed_averaged(cells[leader], "accuracy"), seed_averaged(cells[other], "accuracy"),
                                      groups=groups)
                a_, b_ = [r.accuracy for r in cells[leader]], [r.accuracy for r in cells[other]]
                p_chips = float(sps.ttest_ind(a_, b_, equal_var=False).pvalue) if len(a_) > 1 and len(b_) > 1 \
                    and np.std(a_) + np.std(b_) > 0 else None
                called = d.p_examples < 0.05 and (p_chips is None or p_chips < 0.05)
                chips = "-" if p_chips is None else f"{p_chips:.2g}"
                print(f"| {p} {lv:g} | {opt} {mode} | {leader} | {other} | {100 * d.diff:+.1f} [{100 * d.lo:+.1f}, "
                      f"{100 * d.hi:+.1f}] | {d.p_examples:.2g} / {chips} | {'yes' if called else 'no'} |")


if __name__ == "__main__":
    main()
