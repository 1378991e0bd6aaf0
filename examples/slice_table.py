"""The README's smoothness table: is the IVON BMA loss smoother than Adam's, at equal compute?

    python examples/slice_table.py --ensemble ens.pt --ivon ivon.pt --out slices.db

Slices the Adam ensemble (point = member 0; ensemble = all members, the compute-matched
control for BMA) and IVON (mean and BMA) along the same 16 filter-normalised directions,
41 points on [-1, 1], on 4 x 128 training clips, BN statistics stored for every curve.
Prints the table (mean ±95% t-interval over directions) and every paired comparison of
the table's Holm family that is called (Wilcoxon signed-rank over directions).
"""

from __future__ import annotations

import argparse
import time

from reports.slices import summarize_slices
from robustness.slicing.run import SliceConfig, run_slice

NAMES = {"point": "Adam point", "ensemble": "Adam ensemble", "mean": "IVON mean", "bma": "IVON BMA"}
COLUMNS = ("roughness", "curvature", "lipschitz", "kinks", "angularity")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ensemble", required=True)
    ap.add_argument("--ivon", required=True)
    ap.add_argument("--out", default="slices.db")
    ap.add_argument("--directions", type=int, default=16)
    ap.add_argument("--points", type=int, default=41)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    cfg = SliceConfig(models=(a.ensemble, a.ivon), direction="filter", directions=a.directions, points=a.points,
                      batches=a.batches, batch_size=a.batch_size, modes=("point", "ensemble", "mean", "bma"))
    t0 = time.perf_counter()
    res = run_slice(cfg, a.out, progress=not a.quiet)
    wall = time.perf_counter() - t0
    s = summarize_slices(res.curves)
    print("| model / mode | compute | loss at 0 | " + " | ".join(COLUMNS) + " |")
    print("|---" * (3 + len(COLUMNS)) + "|")
    for g in s["groups"]:
        cells = [f"{g['metrics'][c]['mean']:.3g} ±{g['metrics'][c]['ci95']:.2g}" for c in COLUMNS]
        print(f"| {NAMES[g['mode']]} | {g['compute']} | {g['loss_at_0']:.3f} | " + " | ".join(cells) + " |")
    print(f"\n{s['multiplicity']}:")
    for p in s["pairs"]:
        lower = NAMES[p["a"]["mode"]] if p["median_diff"] < 0 else NAMES[p["b"]["mode"]]
        call = f"{lower} lower" if p["significant"] else "no difference shown"
        print(f"  {p['metric']}: {NAMES[p['a']['mode']]} {p['mean_a']:.3g} vs {NAMES[p['b']['mode']]} "
              f"{p['mean_b']:.3g}, A lower in {p['a_lower_in']}/{p['n']}, p = {p['p']:.2g}, Holm {p['p_holm']:.2g}: "
              f"{call}")
    print(f"\n({res.new_curves} new curves; {wall:.0f} s wall)")


if __name__ == "__main__":
    main()
