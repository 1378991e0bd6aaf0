"""Levels harsher than one where every draw sat at chance: not run, stored as skipped, reported."""

import json
import math
import sqlite3

import pytest
from click.testing import CliRunner

from robustness.cli.main import cli
from robustness.sweep import chance
from robustness.sweep.chance import CurveGate, at_chance, severity_order

HARSH = ["--noise", "0.02,2,4,8", "--seeds", "2", "--quiet"]  # 2x max|w| and beyond: at chance


def test_collapse_needs_evidence_not_absence_of_it(monkeypatch):
    monkeypatch.setattr(chance, "MARGIN", 0.05)
    # chance 0.1, clean 0.9: collapsed below 0.14 (5% of the way), judged by the 99% upper bound
    assert at_chance(0.10, 1000, 0.1, 0.9)  # upper bound 0.124
    assert not at_chance(0.13, 1000, 0.1, 0.9)  # upper bound 0.157
    assert not at_chance(0.10, 60, 0.1, 0.9)  # 60 examples cannot show it (upper bound 0.22)
    assert not at_chance(float("nan"), 1000, 0.1, 0.9)
    assert severity_order([4, 8, 2], bits=True) == [8, 4, 2] and severity_order([0.2, 0.1], bits=False) == [0.1, 0.2]


def test_gate_commits_in_severity_order_whatever_order_results_arrive(monkeypatch):
    monkeypatch.setattr(chance, "MARGIN", 0.05)
    g = CurveGate([0.1, 0.2, 0.3, 0.4], chance=0.1, clean=0.9, n=1000)
    g.put(0.3, [0.5])
    assert g.commit() == []  # waits for the milder levels
    g.put(0.1, [0.9, 0.8])
    assert g.commit() == [(0.1, "rows")]
    g.put(0.2, [0.09, 0.1])  # every draw at chance
    assert g.commit() == [(0.2, "rows"), (0.3, "skip"), (0.4, "skip")]
    assert "0.2" in g.reason()
    one_above = CurveGate([0.1, 0.2], chance=0.1, clean=0.9, n=1000)
    one_above.put(0.1, [0.1, 0.3])  # one draw clearly above chance: keep going
    assert one_above.commit() == [(0.1, "rows")] and not one_above.dead()
    off = CurveGate([0.1, 0.2], chance=0.1, clean=0.9, n=1000, enabled=False)
    off.put(0.1, [0.1])
    off.put(0.2, [0.1])
    assert off.commit() == [(0.1, "rows"), (0.2, "rows")]


def _sweep(ck, db, *extra):
    r = CliRunner().invoke(cli, ["sweep", "--model", str(ck), *HARSH, "--store", str(db), *extra])
    assert r.exit_code == 0, r.output
    return r.output


def _levels(db, table):
    with sqlite3.connect(db) as c:
        return sorted({row[0] for row in c.execute(f"SELECT level FROM {table} WHERE perturbation != 'clean'")})


@pytest.fixture(scope="module", autouse=True)
def loose_margin():
    """The tiny test model is 10 points above chance: count any draw below clean as collapsed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chance, "MARGIN", 1.0)
        yield


@pytest.fixture(scope="module")
def swept(tiny_checkpoints, tmp_path_factory):
    d = tmp_path_factory.mktemp("skip")
    out = _sweep(tiny_checkpoints["adam"], d / "skip.db")
    return d, out


def test_harsh_levels_are_skipped_and_stored_with_the_reason(swept):
    d, out = swept
    db = d / "skip.db"
    measured, skipped = _levels(db, "cells"), _levels(db, "skipped")
    assert measured[0] == 0.02 and skipped and max(measured) < min(skipped)
    assert sorted(measured + skipped) == [0.02, 2.0, 4.0, 8.0]
    with sqlite3.connect(db) as c:
        reason = c.execute("SELECT reason FROM skipped").fetchone()[0]
        dead = max(measured)
        accs = [a for (a,) in c.execute("SELECT accuracy FROM cells WHERE level = ?", (dead,))]
    assert f"at level {dead:g}" in reason and "chance" in reason
    assert all(a < 0.15 for a in accs)  # the level that stopped the curve is measured, and is poor
    assert "not run: level" in out and "no AUC" in out and "collapsed to chance" in out


def test_no_skip_at_chance_measures_every_level(tiny_checkpoints, tmp_path):
    db = tmp_path / "all.db"
    _sweep(tiny_checkpoints["adam"], db, "--no-skip-at-chance")
    assert _levels(db, "cells") == [0.02, 2.0, 4.0, 8.0]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT name FROM sqlite_master WHERE name = 'skipped'").fetchone() is None


def test_rerun_resumes_and_skips_the_same_levels(swept, tiny_checkpoints):
    d, _ = swept
    db = d / "skip.db"
    before = (_levels(db, "cells"), _levels(db, "skipped"))
    out = _sweep(tiny_checkpoints["adam"], db)
    assert "0 new cell" in out and (_levels(db, "cells"), _levels(db, "skipped")) == before


def test_report_and_check_say_a_skipped_level_was_not_measured(swept, tiny_checkpoints):
    d, _ = swept
    db = d / "skip.db"
    skipped = _levels(db, "skipped")
    policy = d / "robust.toml"
    policy.write_text('[[rule]]\nkind = "min_accuracy"\nmodel = "adam.pt"\nperturbation = "gaussian"\n'
                      f"level = {skipped[-1]}\nthreshold = 0.01\n")
    r = CliRunner().invoke(cli, ["check", "--store", str(db), "--policy", str(policy)])
    assert r.exit_code == 1, r.output
    assert "not measured" in r.output and "--no-skip-at-chance" in r.output
    r = CliRunner().invoke(cli, ["report", "--store", str(db), "--out", str(d / "report"), "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads((d / "report" / "summary.json").read_text())
    curve = summary["degradation"][0]["curves"][0]
    assert curve["auc"] is None and [s["level"] for s in curve["skipped"]] == skipped
    assert all(math.isfinite(lv["accuracy_mean"]) for lv in curve["levels"])
    assert "not run: level" in (d / "report" / "report.md").read_text()


def test_bit_widths_are_not_skipped_past_chance_since_one_bit_can_beat_two(tiny_checkpoints, tmp_path):
    """quantize is not declared monotone (1 bit binarises): a collapsed 2-bit level does not skip 1 bit."""
    db = tmp_path / "q.db"
    r = CliRunner().invoke(cli, ["sweep", "--model", str(tiny_checkpoints["adam"]), "--perturbation", "quantize",
                                 "--bits", "1,2,8", "--seeds", "1", "--quiet", "--store", str(db)])
    assert r.exit_code == 0, r.output
    assert _levels(db, "cells") == [1.0, 2.0, 8.0]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT name FROM sqlite_master WHERE name = 'skipped'").fetchone() is None


def test_drop_levels_are_interpolated_only_along_monotone_axes():
    from reports.summary import drop_level, summarize
    from robustness.store.cell import Cell
    from robustness.store.curve_meta import CurveMeta

    pts = [(8, 0.9), (4, 0.8), (2, 0.1), (1, 0.2)]
    assert drop_level(pts, 0.9, 0.05, monotone=True) == (pytest.approx(6.0), False)
    assert drop_level(pts, 0.9, 0.05, monotone=False) == (4, False)
    rows = [{"model": "m", "mode": "point", "perturbation": "clean", "layer": "", "level": 0.0, "seed": 0,
             "accuracy": 0.9, "nll": 0.1, "ece": 0.0, "brier": 0.0, "samples": 1, "n": 10}]
    rows += [{**rows[0], "perturbation": "quantize", "level": float(b), "accuracy": a} for b, a in pts]
    rows = [Cell(**r) for r in rows]
    meta = {"quantize": CurveMeta(bits=True, axis="linear", clean_at_zero=False, monotone=False)}
    assert summarize(rows, meta)[0].drop_levels["5pt"] == 4.0
