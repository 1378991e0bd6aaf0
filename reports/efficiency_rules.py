"""`robust check`'s efficiency rules: a cost per inference at one level of a curve, judged on the
mean over chips (the interval printed beside it), as the accuracy rules are."""

from __future__ import annotations

import math

from reports.summary import LevelStats

EFFICIENCY_KINDS = ("max_energy", "max_synops", "min_activation_sparsity")
_WHAT = {"max_energy": "energy per inference (nJ, estimate)", "max_synops": "synaptic operations per inference",
         "min_activation_sparsity": "activation sparsity"}


def efficiency_rule(kind: str, s: LevelStats, threshold: float) -> tuple[bool, str, str]:
    """(passed, what was measured, the requirement) of one efficiency rule at level stats `s`."""
    e = s.efficiency
    if kind == "max_energy":
        value = e.get("energy_nj")
        if value is None:
            return False, ("no energy estimate: the sweep ran in float or on a chip whose profile publishes no "
                           "per-operation energy (use max_synops)"), f"<= {threshold:g}"
    elif kind == "max_synops":
        value = e.get("effective_synops")
        if value is None:
            return False, "no synaptic operations stored (a sweep before efficiency was measured)", f"<= {threshold:g}"
    else:
        value = e.get("activation_sparsity")
        if value is None:
            return False, "no activation sparsity stored (a sweep before efficiency was measured)", f">= {threshold:g}"
    mean, hw = value
    ok = math.isfinite(mean) and (mean >= threshold if kind.startswith("min") else mean <= threshold)
    shown = f"{mean:.6g}" + ("" if hw is None else f" ±{hw:.3g}")
    return ok, f"{_WHAT[kind]} {shown}", (">= " if kind.startswith("min") else "<= ") + f"{threshold:g}"
