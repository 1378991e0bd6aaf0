"""The report's training-seed section and the paper's claims tested at the seed level.

Claims, when the store holds an IVON seed set and an Adam one (without hardware-aware
training): IVON BMA has lower clean NLL and Brier than Adam; IVON BMA degrades less under
each swept perturbation (higher normalised AUC) than Adam; IVON BMA's loss slices are less
angular than Adam's. Adam is each rival present: the single network, its compute-matched
chips (perturbations only) and a deep ensemble's averaged members; every claim says the
compute of both sides. Each is a test over training seeds (see `basics.replicates`),
Holm-adjusted over all of them.
"""

from __future__ import annotations

import numpy as np

from basics.modes import Mode
from basics.replicates import MIN_SEEDS, Hypothesis, SeedSet, adjust, compare, pairable, seed_sets, seed_stat
from reports.document import Section, SectionInput, Table
from reports.slices import curve_metrics
from reports.summary import shown_levels

POINT, CHIPS, ENSEMBLE, BMA = (m.value for m in (Mode.POINT, Mode.CHIPS, Mode.ENSEMBLE, Mode.BMA))
CLEAN = (("accuracy", "Acc (%)", 100.0), ("nll", "NLL", 1.0), ("ece", "ECE", 1.0), ("brier", "Brier", 1.0))


def _pm(stat, scale: float = 1.0, fmt: str = ".3f") -> str:
    if stat.n == 0:
        return "-"
    s = f"{stat.mean * scale:{fmt}}"
    return s if stat.half is None else f"{s} ±{stat.half * scale:{fmt}}"


def _adam(s: SeedSet, meta: dict, ensemble: bool) -> bool:
    """An Adam set without hardware-aware training: single networks, or deep ensembles."""
    tc = meta.get(s.members[s.seeds[0]], {}).get("train_config") or {}
    return (s.optimizer == "adam" and ((tc.get("ensemble") or 1) > 1) == ensemble
            and not tc.get("train_perturbation"))


def seeds_section(b: SectionInput) -> Section:
    sec = Section("seeds", "7. Training seeds")
    meta = b.rec.model_meta()
    sets = seed_sets(meta.values(), b.labels)
    multi = [s for s in sets if len(s.members) > 1]
    js: dict = {"sets": [{"name": s.name, "optimizer": s.optimizer, "seeds": s.seeds,
                          "models": [s.members[k] for k in s.seeds]} for s in sets],
                "min_seeds": MIN_SEEDS, "curves": [], "hypotheses": []}
    b.json["seeds"] = js
    if not multi:
        sec.blocks.append("Every model here is a single training run: the intervals cover chips and test examples, "
                          "not the training run, so no call in this report covers training variance (`robust train "
                          f"--seeds 0:4` trains a seed set; the seed level is used from {MIN_SEEDS} seeds).")
        return sec
    of_model = {p: (s, seed) for s in multi for seed, p in s.members.items()}
    per: dict[tuple, dict] = {}  # (run, set, mode, perturbation) -> {seed: CurveSummary}
    for run in b.rec.runs:
        for pert, curves in b.run_curves(run).items():
            for cs in curves:
                if cs.model in of_model:
                    s, seed = of_model[cs.model]
                    per.setdefault((run.id, s.name, cs.mode, pert), {})[seed] = cs
    clean_rows, clean_seen = [], set()
    for (run_id, name, mode, pert), by_seed in per.items():
        if (name, mode) in clean_seen or mode == CHIPS:  # clean chips are the point network itself
            continue
        clean_seen.add((name, mode))
        stats_ = {m: seed_stat({k: cs.clean.get(m) for k, cs in by_seed.items()}) for m, _, _ in CLEAN}
        clean_rows.append([name, mode, str(len(by_seed)), *[_pm(stats_[m], sc, ".1f" if m == "accuracy" else ".3f")
                                                            for m, _, sc in CLEAN]])
        js["curves"].append({"set": name, "mode": mode, "perturbation": "clean", "seeds": sorted(by_seed),
                             "metrics": {m: vars(st) for m, st in stats_.items()}})
    sec.blocks.append(Table(["seed set", "mode", "seeds", *[h for _, h, _ in CLEAN]], clean_rows,
                            "Clean test metrics: mean over training seeds ± 95% t-interval over the seeds' values."))
    level_rows = []
    for (run_id, name, mode, pert), by_seed in per.items():
        first = next(iter(by_seed.values()))
        for lv in shown_levels(first):
            at = {k: next((x for x in cs.levels if x.level == lv), None) for k, cs in by_seed.items()}
            at = {k: x for k, x in at.items() if x is not None}
            acc = seed_stat({k: x.metrics["accuracy"][0] for k, x in at.items()})
            chips = [x.metrics["accuracy"][1] for x in at.values() if x.metrics["accuracy"][1] is not None]
            tests = [x.test_ci.get("accuracy") for x in at.values() if x.test_ci.get("accuracy") is not None]
            level_rows.append([name, mode, f"{pert} {lv:g}", str(acc.n), _pm(acc, 100, ".1f"),
                               f"±{100 * np.mean(chips):.1f}" if chips else "-",
                               f"±{100 * np.mean(tests):.1f}" if tests else "-"])
            js["curves"].append({"run": run_id, "set": name, "mode": mode, "perturbation": pert, "level": lv,
                                 "accuracy": vars(acc), "chip_ci_mean": float(np.mean(chips)) if chips else None,
                                 "test_ci_mean": float(np.mean(tests)) if tests else None})
    if level_rows:
        sec.blocks.append(Table(["seed set", "mode", "level", "seeds", "Acc (%) ± seeds", "± chips", "± test"],
                                level_rows, "Accuracy under perturbation with its three intervals: over training "
                                            "seeds (95% t over the seeds' chip means), and, averaged over the seeds, "
                                            "over chips inside one seed and over test examples inside one seed."))
    hyps = adjust(_hypotheses(b, multi, meta, per))
    js["hypotheses"] = [h.to_dict() for h in hyps]
    if hyps:
        m = sum(h.cmp is not None for h in hyps)
        sec.blocks.append(Table(["claim", "metric", "IVON", "against", "compute", "difference [95%]", "test", "p",
                                 "Holm p", "status"],
                                [[h.claim, h.metric, h.a, h.b, h.compute,
                                  "-" if h.cmp is None else f"{h.cmp.diff:+.3g} [{h.cmp.lo:+.3g}, {h.cmp.hi:+.3g}]",
                                  "-" if h.cmp is None else h.cmp.test, "-" if h.cmp is None else f"{h.cmp.p:.2g}",
                                  "-" if h.p_holm is None else f"{h.p_holm:.2g}", h.status] for h in hyps],
                                f"The paper's claims over training seeds, Holm-adjusted over the {m} tests; held = "
                                f"significant in the claimed direction, inside the noise = not significant."))
    return sec


def _hypotheses(b: SectionInput, sets: list[SeedSet], meta: dict, per: dict) -> list[Hypothesis]:
    """Each claim against every Adam rival the store holds: the single network, its chips
    (compute-matched to BMA) and a deep ensemble's members (its own compute, said)."""
    ivons = [s for s in sets if s.optimizer == "ivon" and len(s.members) >= MIN_SEEDS]
    adams = [s for s in sets if _adam(s, meta, ensemble=False) and len(s.members) >= MIN_SEEDS]
    ensembles = [s for s in sets if _adam(s, meta, ensemble=True) and len(s.members) >= MIN_SEEDS]
    rivals = ([(ad, mode) for ad in adams for mode in (POINT, CHIPS)] + [(en, ENSEMBLE) for en in ensembles])
    out: list[Hypothesis] = []
    for iv in ivons:
        perts = sorted({k[3] for k in per if k[1] == iv.name})
        for ad, mode in rivals:
            pair = pairable(iv, ad)
            compute = _compute(per, (iv.name, BMA), (ad.name, mode))
            against = f"{ad.name} {mode}"
            if mode != CHIPS:  # clean chips are the point network: the point row says it
                for metric, shown in (("nll", "NLL"), ("brier", "Brier score")):
                    a, c = _clean(per, iv.name, BMA, metric), _clean(per, ad.name, mode, metric)
                    if a and c:
                        out.append(Hypothesis(f"IVON BMA has lower clean {shown} than Adam", metric,
                                              f"{iv.name} bma", against, "lower", compare(a, c, pair), compute))
            for pert in perts:
                a, c = _aucs(per, iv.name, BMA, pert), _aucs(per, ad.name, mode, pert)
                if a and c:
                    out.append(Hypothesis(f"IVON BMA degrades less under {pert} than Adam", "normalised AUC",
                                          f"{iv.name} bma", against, "higher", compare(a, c, pair), compute))
            if mode != CHIPS:  # slices have no chips
                a, c = _angularity(b, iv, BMA), _angularity(b, ad, mode)
                if a and c:
                    out.append(Hypothesis("IVON BMA's loss slice is less angular than Adam's", "angularity",
                                          f"{iv.name} bma", against, "lower", compare(a, c, pair), compute))
    return out


def _compute(per: dict, a: tuple[str, str], b: tuple[str, str]) -> str:
    """Networks per prediction of two (set, mode)s, as the claim's compute column says it."""
    def n(key: tuple[str, str]) -> int | None:
        curves = _by_seed(per, *key)
        return next((cs.compute for cs in curves.values()), None)
    na, nb = n(a), n(b)
    if na is None or nb is None:
        return "compute not stored"
    return f"equal compute ({na} networks)" if na == nb else f"{na} vs {nb} networks per prediction"


def _by_seed(per: dict, name: str, mode: str, pert: str | None = None) -> dict:
    """Seed -> curve of one set and mode (under `pert`, or under any perturbation: their clean
    cells are the same)."""
    return next((v for k, v in per.items() if k[1:3] == (name, mode) and pert in (None, k[3])), {})


def _clean(per: dict, name: str, mode: str, metric: str) -> dict[int, float]:
    return {s: cs.clean[metric] for s, cs in _by_seed(per, name, mode).items() if metric in cs.clean}


def _aucs(per: dict, name: str, mode: str, pert: str) -> dict[int, float]:
    return {s: cs.auc for s, cs in _by_seed(per, name, mode, pert).items() if cs.auc is not None}


def _angularity(b: SectionInput, s: SeedSet, mode: str) -> dict[int, float]:
    """Per seed, the mean over directions of its slices' angularity (1D slices only)."""
    out: dict[int, list[float]] = {}
    seed_of = {p: k for k, p in s.members.items()}
    for sl in b.rec.slices:
        for c in sl.curves:
            if c["model"] in seed_of and c["mode"] == mode and np.asarray(c["loss"]).ndim == 1:
                out.setdefault(seed_of[c["model"]], []).append(curve_metrics(c)["angularity"])
    return {k: float(np.mean(v)) for k, v in out.items()}
