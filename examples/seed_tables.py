"""The README's training-seed tables, from a report's summary.json (section 7).

    robust report --store seeds.db --out report
    python examples/seed_tables.py report/summary.json

Prints three Markdown tables: clean metrics per seed set and mode (mean over training seeds
± 95% t over seeds), accuracy per level with its three intervals (seeds; chips and test
examples inside one seed, averaged over the seeds), and the paper's claims with their tests.
"""

from __future__ import annotations

import argparse
import json


def _pm(m: dict, scale: float = 1.0, digits: int = 3) -> str:
    if m.get("half") is None:
        return f"{m['mean'] * scale:.{digits}f}"
    return f"{m['mean'] * scale:.{digits}f} ±{m['half'] * scale:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", help="summary.json written by `robust report`")
    seeds = json.load(open(ap.parse_args().summary))["seeds"]
    print("| seed set / mode | seeds | accuracy | NLL | ECE | Brier |")
    print("|---|---|---|---|---|---|")
    for c in seeds["curves"]:
        if c["perturbation"] == "clean":
            m = c["metrics"]
            print(f"| {c['set']} {c['mode']} | {len(c['seeds'])} | {_pm(m['accuracy'], 100, 1)}% | {_pm(m['nll'])} "
                  f"| {_pm(m['ece'])} | {_pm(m['brier'])} |")
    print()
    print("| seed set / mode | level | accuracy ±seeds | ±chips | ±test |")
    print("|---|---|---|---|---|")
    for c in seeds["curves"]:
        if c["perturbation"] != "clean":
            a = c["accuracy"]
            chips = "-" if c["chip_ci_mean"] is None else f"±{100 * c['chip_ci_mean']:.1f}"
            test = "-" if c["test_ci_mean"] is None else f"±{100 * c['test_ci_mean']:.1f}"
            print(f"| {c['set']} {c['mode']} | {c['perturbation']} {c['level']:g} | {_pm(a, 100, 1)} | {chips} "
                  f"| {test} |")
    print()
    print("| claim | against | compute | difference [95%] | test, p | Holm p | status |")
    print("|---|---|---|---|---|---|---|")
    for h in seeds["hypotheses"]:
        c = h["comparison"]
        if c is None:
            print(f"| {h['claim']} | {h['b']} | {h['compute']} | - | - | - | {h['status']} |")
            continue
        print(f"| {h['claim']} | {h['b']} | {h['compute']} | {c['diff']:+.3g} [{c['lo']:+.3g}, {c['hi']:+.3g}] "
              f"| {c['test']}, {c['p']:.2g} | {h['p_holm']:.2g} | {h['status']} |")


if __name__ == "__main__":
    main()
