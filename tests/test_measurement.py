"""Measurement bugs that would bias published numbers, each pinned by a test."""

import math
import sqlite3

import numpy as np
import pytest
import torch

import models.chunking as chunking  # where the pass size lives
from perturbations.base import PERTURBATIONS, Context, PerturbationError
from perturbations.pcm import T0, _pair_conductance
from perturbations.spec import apply, component_generators, parse_spec
from reports.summary import summarize
from robustness.store.cell import Cell
from robustness.store.curve_meta import CurveMeta
from robustness.store.database import Store
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep

LEVEL = {"quantize": 4, "pcm": 3600.0, "bitflip": 0.02, "stuck-at": 0.1, "dead-neuron": 0.2,
         "saturated-neuron": 0.1, "read-noise": 0.5, "crossbar-adc": 4, "crossbar-wire": 1.0, "crossbar-size": 16}
COLUMNS = ("accuracy", "nll", "brier", "ece", "entropy", "expected_entropy", "mutual_information", "disagreement",
           "example_correct", "example_nll")


def _key(r):
    return (r.mode, r.perturbation, r.level, r.seed)


@pytest.mark.slow
def test_a_cell_alone_in_any_batch_and_after_resume_gives_identical_numbers(tiny_checkpoints, tmp_path, monkeypatch):
    plans = tuple(PerturbationPlan(n, (LEVEL.get(n, 0.1),)) for n in sorted(PERTURBATIONS))
    cfg = SweepConfig((str(tiny_checkpoints["adam"]),), plans, seeds=3, limit=70, mc_samples=2)
    full = {_key(r): r for r in run_sweep(cfg, str(tmp_path / "full.db"), progress=False).rows}
    monkeypatch.setattr(chunking, "MAX_NETWORKS_PER_PASS", 1)  # every network in a pass of its own
    alone = {_key(r): r for r in run_sweep(cfg, str(tmp_path / "alone.db"), progress=False).rows}
    # a resume: drop every second cell, then run the same sweep again
    with sqlite3.connect(str(tmp_path / "alone.db")) as c:
        c.execute("DELETE FROM cells WHERE seed = 1 OR (seed = 0 AND mode = 'chips')")
    monkeypatch.setattr(chunking, "MAX_NETWORKS_PER_PASS", 5)
    resumed = {_key(r): r for r in run_sweep(cfg, str(tmp_path / "alone.db"), progress=False).rows}
    assert full.keys() == alone.keys() == resumed.keys()
    assert {k[1] for k in full} == set(PERTURBATIONS) | {"clean"}
    for k in full:
        for other in (alone, resumed):
            for c in COLUMNS:
                a, b = getattr(full[k], c), getattr(other[k], c)
                assert a == b or (isinstance(a, float) and a == pytest.approx(b, abs=1e-9)), (k, c)


def test_pcm_read_noise_present_just_after_programming():
    g_t = torch.full((1, 4000), 12.5)
    gens = component_generators(0, [0], 0)
    g_prog, g = _pair_conductance(g_t, 0.0, gens)
    rel = ((g - g_prog) / g_prog).std().item()
    q = min(0.0088 / 0.5**0.65, 0.2)
    expected = q * math.sqrt(math.log((T0 + 250e-9) / (2 * 250e-9)))  # read at t_inf + t0, as aihwkit
    assert rel == pytest.approx(expected, rel=0.1)


def test_pcm_global_drift_compensation_follows_the_reference():
    k = 16
    w = torch.randn(1, 64, 48, generator=torch.Generator().manual_seed(0)).expand(k, -1, -1)
    t = {"readout.linear.weight": w}
    ctx = Context(("readout",), ())
    raw = apply(parse_spec("pcm(compensation=none):?"), 86400.0, t, seed=0, draws=list(range(k)), ctx=ctx)
    comp = apply(parse_spec("pcm:?"), 86400.0, t, seed=0, draws=list(range(k)), ctx=ctx)
    a, b = raw["readout.linear.weight"], comp["readout.linear.weight"]
    factor = b.abs().mean((1, 2)) / a.abs().mean((1, 2))  # every weight of a layer gets the same factor
    # the drifted chip is rescaled to the mean |w| it had just after programming (programming noise only)
    prog = apply(parse_spec("pcm(compensation=none):?"), 0.0, t, seed=0, draws=list(range(k)), ctx=ctx)
    ref = prog["readout.linear.weight"].abs().mean((1, 2))
    torch.testing.assert_close(b.abs().mean((1, 2)), ref, rtol=0.005, atol=0)
    # chip-to-chip spread of the factor: mean |W| over 3072 devices varies by well under 1%
    assert factor.std().item() / factor.mean().item() < 0.01
    assert 1.2 < factor.mean().item() < 2.0  # a day of drift at nu ~ 0.05-0.1


def test_auc_is_integrated_on_the_log_axis_for_log_spaced_levels():
    levels = [60.0, 3600.0, 86400.0, 2592000.0]
    accs = [0.9, 0.8, 0.7, 0.2]
    rows = [{"model": "m", "mode": "point", "perturbation": "clean", "layer": "", "level": 0.0, "seed": 0,
             "accuracy": 1.0, "nll": 0.1, "ece": 0.0, "brier": 0.0, "samples": 1, "n": 10}]
    rows += [{"model": "m", "mode": "point", "perturbation": "pcm", "layer": "", "level": lv, "seed": 0,
              "accuracy": a, "nll": 1.0, "ece": 0.1, "brier": 0.2, "samples": 1, "n": 10} for lv, a in zip(levels, accs)]
    rows = [Cell(**r) for r in rows]
    x = [math.log(v) for v in levels]
    area = sum((x1 - x0) * (a0 + a1) / 2 for x0, x1, a0, a1 in zip(x, x[1:], accs, accs[1:]))
    log_curve = summarize(rows, {"pcm": CurveMeta(axis="log", clean_at_zero=False)})[0]
    assert log_curve.auc == pytest.approx(area / (x[-1] - x[0]))
    lin_curve = summarize(rows, {"pcm": CurveMeta(axis="linear", clean_at_zero=False)})[0]
    assert lin_curve.auc < 0.5 < log_curve.auc  # linear: the last interval carries ~97% of the weight
    # 0.9 at the first level is already a 5- and 10-point drop: "below 60 s", no interpolation from level 0
    assert log_curve.drop_levels["5pt"] == log_curve.drop_levels["10pt"] == 60.0
    assert log_curve.drop_below["5pt"] and log_curve.drop_below["10pt"]
    assert lin_curve.levels[0].metrics["accuracy"][1] is None  # one draw: no interval, not +-0


def test_summary_reports_the_test_set_interval_beside_the_chip_interval(tiny_checkpoints, tmp_path):
    res = run_sweep(SweepConfig((str(tiny_checkpoints["adam"]),), (PerturbationPlan("gaussian", (0.05,)),),
                                seeds=4, limit=200, modes=("point",)), str(tmp_path / "s.db"), progress=False)
    s = summarize(res.rows, res.curves)[0].levels[0]
    acc = s.metrics["accuracy"][0]
    se = math.sqrt(acc * (1 - acc) / 200)  # binomial standard error of a 200-example test set
    assert s.test_ci["accuracy"] == pytest.approx(1.96 * se, rel=0.3)
    assert s.test_ci["nll"] > 0


def test_seeds_auto_never_judges_from_fewer_than_five_draws(tiny_checkpoints, tmp_path):
    cfg = SweepConfig((str(tiny_checkpoints["adam"]),), (PerturbationPlan("gaussian", (0.0001,)),), seeds=None,
                      ci_width=50, auto_batch=2, limit=40, modes=("point",))
    rows = [r for r in run_sweep(cfg, str(tmp_path / "a.db"), progress=False).rows if r.perturbation != "clean"]
    assert len(rows) == 6  # batches of 2: 2, 4, then 6 >= 5 draws


def test_v1_store_is_migrated(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(str(db)) as c:
        c.executescript("""CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE runs (id INTEGER PRIMARY KEY, spec_hash TEXT UNIQUE NOT NULL, config TEXT NOT NULL,
                models TEXT NOT NULL, data_hash TEXT, package_version TEXT, command TEXT, started TEXT, finished TEXT);
            CREATE TABLE cells (run_id INTEGER NOT NULL, model TEXT NOT NULL, model_hash TEXT NOT NULL, optimizer TEXT,
                mode TEXT NOT NULL, perturbation TEXT NOT NULL, layer TEXT NOT NULL DEFAULT '', level REAL NOT NULL,
                seed INTEGER NOT NULL, samples INTEGER, n INTEGER, accuracy REAL, nll REAL, brier REAL, ece REAL,
                entropy REAL, expected_entropy REAL, mutual_information REAL, disagreement REAL, spike_rates TEXT,
                versions TEXT, time_s REAL, created TEXT,
                PRIMARY KEY (run_id, model_hash, mode, perturbation, layer, level, seed));
            INSERT INTO meta VALUES ('application', 'robust'), ('schema_version', '1');
            INSERT INTO runs (id, spec_hash, config, models) VALUES (1, 'h', '{}', '[]');
            INSERT INTO cells (run_id, model, model_hash, mode, perturbation, level, seed, accuracy, nll, ece, brier, n)
                VALUES (1, 'm', 'x', 'point', 'clean', 0, 0, 0.5, 1.0, 0.1, 0.6, 10);""")
    with Store.open(db) as s:
        (row,) = s.cells()
        assert row.accuracy == 0.5 and row.example_nll is None and row.efficiency is None  # not measured then
        assert dict(s.conn.execute("SELECT key, value FROM meta").fetchall())["schema_version"] == "4"


@pytest.mark.parametrize("spec,match", [
    ("bitflip(bits=1):?", "bits must be an integer from 2 to 16"),
    ("quantize(rounding=stochastic):?", "rounding and clip do not apply"),
])
def test_options_a_model_cannot_honour_are_refused(spec, match):
    with pytest.raises(PerturbationError, match=match):
        parse_spec(spec).check([1.0 if "quantize" in spec else 0.01])


def test_mean_preserving_log_normal_option():
    t = {"readout.linear.weight": torch.ones(2000, 1, 50)}
    ctx = Context(("readout",), ())
    for name in ("lognormal", "mismatch(targets=gain"):
        spec = name + ("" if name.endswith("lognormal") else ")")
        med = apply(parse_spec(f"{spec}:?"), 0.5, t, seed=0, draws=list(range(2000)), ctx=ctx)
        mean_spec = spec.replace(")", ",center=mean)") if "(" in spec else spec + "(center=mean)"
        mean = apply(parse_spec(f"{mean_spec}:?"), 0.5, t, seed=0, draws=list(range(2000)), ctx=ctx)
        w_med, w_mean = med["readout.linear.weight"], mean["readout.linear.weight"]
        assert w_med.mean().item() == pytest.approx(math.exp(0.125), rel=0.01)  # median-preserving: biased up
        assert w_mean.mean().item() == pytest.approx(1.0, rel=0.01)
        assert np.isclose(w_med.log().median().item(), 0.0, atol=0.01)


def test_progress_off_a_terminal_prints_plain_lines(monkeypatch, capsys):
    """CI logs get a readable line at least every PLAIN_INTERVAL seconds, not a \\r bar."""
    from basics import progress as prog
    monkeypatch.setattr(prog, "PLAIN_INTERVAL", 0.0)
    for _ in prog.progress(range(3), desc="sweep", unit="cell"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("sweep: ") for line in lines)
    assert lines[-1].startswith("sweep: 3/3 cell")
    assert "\r" not in "".join(lines)
    for _ in prog.progress(range(3), desc="quiet", unit="cell", enabled=False):
        pass
    assert capsys.readouterr().err == ""


def test_chips_that_all_agree_are_a_called_difference_not_float_noise():
    # Accuracy differences 0.3 - 0.2 and 0.4 - 0.3 differ only by rounding: the t statistic
    # of such chips is undefined (scipy warns and returns noise), and the call must be exact.
    import warnings

    from basics.stats import paired_difference

    ex = np.array([1.0, 0.0, 1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agree = paired_difference(ex, ex * 0.5, chips_a=[0.3, 0.4], chips_b=[0.2, 0.3])
        same = paired_difference(ex, ex, chips_a=[0.6, 0.7], chips_b=[0.6, 0.7])
        mixed = paired_difference(ex, ex * 0.5, chips_a=[0.6, 0.7, 0.5], chips_b=[0.5, 0.65, 0.45])
    assert agree.p_chips == 0.0 and same.p_chips == 1.0
    assert 0.0 < mixed.p_chips < 1.0


def test_test_set_intervals_resample_whole_speakers_when_they_are_known():
    from basics.stats import SpeakerGroups, bootstrap_halfwidth, paired_difference

    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(6), 50)  # 6 speakers, 50 clips each
    x = (rng.random(300) < np.array([0.95, 0.9, 0.6, 0.85, 0.5, 0.8])[speakers]).astype(float)
    groups = SpeakerGroups.of([f"s{s}" for s in speakers])
    clustered, independent = bootstrap_halfwidth(x, groups=groups), bootstrap_halfwidth(x)
    assert clustered > 2 * independent  # speaker effects: 6 speakers carry less information than 300 clips
    singletons = SpeakerGroups.of([f"c{i}" for i in range(300)])
    assert bootstrap_halfwidth(x, groups=singletons) == pytest.approx(independent, rel=0.01)
    alike = SpeakerGroups.of([f"s{i % 3}" for i in range(300)])  # 3 speakers that happen to agree
    assert bootstrap_halfwidth(x, groups=alike) >= independent  # never narrower than over examples
    y = np.clip(x - (rng.random(300) < 0.08), 0, 1)
    assert paired_difference(x, y, groups=groups).p_examples >= paired_difference(x, y).p_examples
    assert SpeakerGroups.of(["a", ""]) is None  # a speaker unknown
    one = SpeakerGroups.of(["a"] * 300)  # one speaker: nothing to resample but its clips, and the text says so
    assert bootstrap_halfwidth(x, groups=one) == pytest.approx(independent, rel=1e-6)


def test_sweep_output_says_what_the_test_interval_resamples(tiny_checkpoints, tmp_path):
    from click.testing import CliRunner

    from reports.summary import format_summary
    from robustness.cli.main import cli

    db = tmp_path / "g.db"
    r = CliRunner().invoke(cli, ["sweep", "--model", str(tiny_checkpoints["adam"]), "--noise", "0.1", "--seeds", "2",
                                 "--modes", "point", "--store", str(db), "-q"])
    assert r.exit_code == 0, r.output
    assert "over test speakers (cluster bootstrap over 3 speakers" in r.output  # tts-digits: 3 test voices
    with Store.open(db) as s:
        rows = s.cells()
    assert "assumes independent examples" in format_summary(summarize(rows))  # speakers not given


def test_a_bootstrap_p_value_is_never_zero():
    """Every resample favouring one side shows p < 1 / (B + 1), not p = 0: the report prints
    the bound ("p = 0.001"), never "p = 0"."""
    from basics.stats import BOOTSTRAP, paired_difference

    a, b = np.ones(200), np.zeros(200)
    a[::10] = 0.0
    d = paired_difference(a, b)
    assert d.p_examples == pytest.approx(2 / (BOOTSTRAP + 1)) and d.significant
