"""The report's calls on stores whose answer is fixed by construction: leaders, ties, families."""

import numpy as np
import pytest

from reports.records import Records, Run
from reports.report import _Builder
from reports.slices import summarize_slices
from reports.verdict import verdict
from robustness.store.cell import Cell

N, SEEDS = 400, 6


def _rows(model: str, p_correct: float, rng: np.random.Generator, shared: np.ndarray) -> list[Cell]:
    """Clean and gaussian 0.1 cells of one model whose per-example correctness has rate `p_correct`."""
    out = []
    for level, seeds in ((0.0, [0]), (0.1, range(SEEDS))):
        for s in seeds:
            correct = (shared[s] < p_correct).astype(np.uint8) if level else np.ones(N, np.uint8)
            nll = np.where(correct, 0.1, 2.0).astype(np.float32)
            out.append(Cell(model=model, optimizer="adam", mode="point", layer="", level=level, seed=s,
                            perturbation="gaussian" if level else "clean", samples=1, n=N,
                            accuracy=float(correct.mean()), nll=float(nll.mean()), ece=0.05, brier=0.2,
                            example_correct=np.packbits(correct).tobytes(), example_nll=nll.tobytes(),
                            spike_rates=[0.1]))
    return out


def _summary(rates: dict[str, float], independent: tuple[str, ...] = ()) -> dict:
    """Models fail on the same examples first (common random numbers) unless named `independent`."""
    rng = np.random.default_rng(0)
    shared = rng.random((SEEDS, N))
    rows = [r for m, p in rates.items() for r in _rows(m, p, rng, rng.random((SEEDS, N)) if m in independent else shared)]
    run = Run(1, {"curves": {"gaussian": {"axis": "linear", "clean_at_zero": True}}},
              [{"path": m} for m in rates], "", "", "", "", "", rows)
    b = _Builder(Records("synthetic.db", [run], []), drawer=None)
    curves = b.run_curves(run)["gaussian"]
    return {"leader": b.leader(run, curves, "gaussian", 0.1), "best_auc": b.best_auc(run, curves)}


def test_a_leader_ahead_of_every_rival_is_separable():
    s = _summary({"a.pt": 0.90, "b.pt": 0.60, "c.pt": 0.50})
    top = s["leader"]
    assert top["model"] == "a.pt" and top["separable"]
    assert all(v["significant"] and v["p_holm"] < 0.05 for v in top["versus"])


def test_a_leader_tied_with_the_runner_up_is_not_separable_though_it_beats_the_third():
    s = _summary({"a.pt": 0.80, "b.pt": 0.795, "c.pt": 0.40}, independent=("b.pt",))
    top = s["leader"]
    assert top["model"] == "a.pt" and not top["separable"]
    calls = {v["model"]: v["significant"] for v in top["versus"]}
    assert calls == {"b.pt": False, "c.pt": True}
    lines = verdict({"degradation": [{"perturbation": "gaussian", "level": 0.1, "leader": top}]}, {})
    assert lines[0].startswith("gaussian 0.1: no separable leader") and "inside the noise (Holm" in lines[0]


def test_holm_adjusts_the_leader_family():
    from basics.stats import holm

    top = _summary({"a.pt": 0.80, "b.pt": 0.77, "c.pt": 0.76, "d.pt": 0.40})["leader"]
    raw = [max(v["p_examples"], v["p_chips"] or 0.0) for v in top["versus"]]
    assert len(raw) == 3 and [v["p_holm"] for v in top["versus"]] == holm(raw)
    assert all(v["p_holm"] >= p for v, p in zip(top["versus"], raw))


def _curves(groups: dict[str, float], directions: int) -> list[dict]:
    """Slice curves whose angularity grows with each group's ripple amplitude."""
    x = np.linspace(-1, 1, 41)
    out = []
    for name, amp in groups.items():
        for d in range(directions):
            rng = np.random.default_rng(d)
            loss = x**2 + amp * (1 + 0.2 * rng.random()) * np.sin(37 * x + d)
            out.append({"model": name, "mode": "point", "direction": d, "coords": x.tolist(), "loss": loss.tolist(),
                        "accuracy": np.ones_like(x).tolist(), "compute": 1, "bn": "mean"})
    return out


def test_slice_table_controls_its_family_and_says_when_directions_are_too_few():
    groups = {"a": 0.0, "b": 0.02, "c": 0.05, "d": 0.08}
    few = summarize_slices(_curves(groups, 8))
    rough = [p for p in few["pairs"] if p["metric"] == "roughness" and p["a"]["model"] == "a" and p["b"]["model"] == "d"]
    assert rough[0]["p"] == pytest.approx(2 / 256) and rough[0]["a_lower_in"] == 8  # raw p at its floor
    assert not any(p["significant"] for p in few["pairs"])  # 30 tests: Holm needs p < 0.05/30 first
    assert "none can be called: 11 directions or more can" in few["multiplicity"]
    many = summarize_slices(_curves(groups, 16))
    rough = next(p for p in many["pairs"] if p["metric"] == "roughness" and (p["a"]["model"], p["b"]["model"]) == ("a", "d"))
    assert rough["significant"] and rough["family"] == 30 and rough["p_holm"] <= 30 * rough["p"]
    assert "none can be called" not in many["multiplicity"]


def test_the_best_single_network_is_any_model_and_bma_meets_its_compute_matched_control():
    def v(model, mode, compute, acc, diff, sig=True):
        return {"model": model, "mode": mode, "compute": compute, "accuracy": acc, "diff": diff, "lo": diff - 0.01,
                "hi": diff + 0.01, "p_examples": 0.01, "p_chips": 0.01, "p_holm": 0.02, "significant": sig}

    top = {"model": "ens.pt", "mode": "ensemble", "compute": 10, "accuracy": 0.93, "separable": True,
           "versus": [v("ivon.pt", "bma", 10, 0.925, 0.005, sig=False), v("ens.pt", "point", 1, 0.919, 0.011),
                      v("ivon.pt", "mean", 1, 0.90, 0.03)]}
    controls = [{"perturbation": "gaussian", "level": 0.1, "a": {"model": "ivon.pt", "mode": "bma", "compute": 10},
                 "b": {"model": "ens.pt", "mode": "chips", "compute": 10},
                 "accuracy": {"diff": -0.024, "p_examples": 0.001, "p_chips": 0.003, "significant": True}}]
    line = verdict({"degradation": [{"perturbation": "gaussian", "level": 0.1, "leader": top}], "controls": controls},
                   {})[0]
    assert "vs ens.pt point (1 network)" in line  # the actual best single network, though the leader's own model
    assert "ivon.pt bma vs ens.pt chips at the same compute (10 networks): -2.4 points, significant" in line
    assert "examples p = 0.001, chips p = 0.003" in line
