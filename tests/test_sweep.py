"""`robust sweep`: numbers, resumption, the store, configs and bad input."""

import json
import random
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from reports.summary import drop_level
from robustness.cli.main import cli
from robustness.data import DatasetSpec, load_dataset
from robustness.evaluate import EvalConfig, Mode, evaluate
from robustness.store.database import Store
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep
from tests.interrupt import count_rows, kill_at, run_to_end

METRICS = ("accuracy", "nll", "brier", "ece", "entropy", "expected_entropy", "mutual_information", "disagreement")


def run(*args, env=None):
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


def cells(db):
    with Store.open(db) as s:
        return s.cells()


def key(r):
    return (r.model_hash, r.mode, r.perturbation, r.layer, r.level, r.seed)


def test_exact_command_uses_defaults_and_level0_reproduces_eval(tiny_checkpoints, tmp_path, monkeypatch):
    ivon = tmp_path / "ivon.pt"
    ivon.write_bytes(Path(tiny_checkpoints["ivon"]).read_bytes())
    monkeypatch.chdir(tmp_path)
    r = run("sweep", "--model", "ivon.pt", "--noise", "0:0.1:2", "--seeds", 2, "--limit", 80, "--mc-samples", 3,
            "--quiet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "robust-results.db").exists() and "[bma, 3 networks/prediction] gaussian" in r.output
    rows = cells(tmp_path / "robust-results.db")
    data = load_dataset(DatasetSpec())
    ck = load_checkpoint(ivon)
    for mode in (Mode.MEAN, Mode.BMA):  # chips at level 0 is the mean itself
        ref = evaluate(ck, data, mode, EvalConfig(mc_samples=3, limit=80)).metrics
        for r0 in [r for r in rows if r.mode == mode.value and (r.perturbation == "clean" or r.level == 0)]:
            for m, v in ref.items():
                assert r0.metric(m) == pytest.approx(v, abs=1e-12), (mode, r0.perturbation, m)
    assert {r.perturbation for r in rows} == {"clean", "gaussian"}
    # level 0 draws nothing, so it is evaluated once, not once per seed; modes mean, chips, bma
    assert len(rows) == 3 * (1 + 1 + 2)
    chips0 = [r for r in rows if r.mode == "chips" and r.level == 0][0]
    mean0 = [r for r in rows if r.mode == "mean" and r.level == 0][0]
    assert chips0.samples == 3 and chips0.accuracy == mean0.accuracy
    assert chips0.nll == pytest.approx(mean0.nll, abs=1e-9)


def test_same_seed_identical_rows_and_stacked_equals_separate(tiny_checkpoints, tmp_path):
    cfg = SweepConfig((str(tiny_checkpoints["adam"]),), (PerturbationPlan("mismatch", (0.1, 0.3)),), seeds=4, limit=60)
    a = run_sweep(cfg, str(tmp_path / "a.db"), progress=False).rows
    b = run_sweep(cfg, str(tmp_path / "b.db"), progress=False).rows
    assert [[r.metric(m) for m in METRICS] for r in a] == [[r.metric(m) for m in METRICS] for r in b]
    import models.chunking as chunking  # where the pass size lives

    old = chunking.MAX_NETWORKS_PER_PASS
    chunking.MAX_NETWORKS_PER_PASS = 1  # every draw in its own pass
    try:
        c = run_sweep(cfg, str(tmp_path / "c.db"), progress=False).rows
    finally:
        chunking.MAX_NETWORKS_PER_PASS = old
    for x, y in zip(a, c):
        assert x.accuracy == y.accuracy and x.nll == pytest.approx(y.nll, abs=1e-5)


def test_accuracy_degrades_at_large_levels(tiny_checkpoints, tmp_path):
    cfg = SweepConfig((str(tiny_checkpoints["adam"]),), (PerturbationPlan("gaussian", (0.3, 1.0)),), seeds=4,
                      limit=200)
    rows = run_sweep(cfg, str(tmp_path / "s.db"), progress=False).rows
    clean = [r.accuracy for r in rows if r.perturbation == "clean"][0]
    acc = {lv: sum(r.accuracy for r in rows if r.level == lv) / 4 for lv in (0.3, 1.0)}
    assert clean > acc[0.3] > acc[1.0]
    dis = [r.disagreement for r in rows if r.level == 1.0]
    assert min(dis) > 0.3


@pytest.mark.slow
def test_resume_after_kills_at_random_points_equals_uninterrupted(tiny_checkpoints, tmp_path):
    args = ["sweep", "--model", str(tiny_checkpoints["adam"]), "--perturbation", "gaussian", "--noise", "0.02:0.2:10",
            "--seeds", "3", "--limit", "120", "--quiet"]
    total = 2 * (1 + 10 * 3)  # modes point and chips: clean + 10 levels x 3 seeds
    full, killed = tmp_path / "full.db", tmp_path / "killed.db"
    assert run_to_end(args, full).returncode == 0
    targets = sorted(random.Random(7).sample(range(2, total - 8), 3))  # three points, fixed by the test's seed
    found = kill_at(args, killed, count_rows("cells"), targets)
    assert 0 < found[0] and found[-1] < total, f"kills should land mid-sweep: {found}"
    r = run_to_end(args, killed)
    assert r.returncode == 0 and "resumed" in r.stdout
    a, b = cells(full), cells(killed)
    assert len(a) == len(b) == total
    assert len({key(r) for r in b}) == len(b)
    for x, y in zip(a, b):
        assert key(x) == key(y) and [x.metric(m) for m in METRICS] == [y.metric(m) for m in METRICS]


def test_different_config_kept_apart_and_export(tiny_checkpoints, tmp_path):
    db = tmp_path / "r.db"
    m = str(tiny_checkpoints["adam"])
    assert run("sweep", "--model", m, "--noise", "0.1", "--seeds", 2, "--limit", 40, "--store", db, "-q").exit_code == 0
    # quantize with nearest rounding draws nothing: one row per level whatever --seeds says
    assert run("sweep", "--model", m, "--bits", "2,4", "--seeds", 5, "--limit", 40, "--store", db, "-q").exit_code == 0
    with Store.open(db) as s:
        runs = s.runs()
        assert len(runs) == 2 and runs[1]["config"]["plans"][0]["spec"] == "quantize"  # parsed on read
        assert {r.run_id for r in s.cells()} == {1, 2}
    r = run("export", "--store", db, "--format", "csv", "--out", tmp_path / "r.csv")
    assert r.exit_code == 0
    lines = (tmp_path / "r.csv").read_text().splitlines()
    # gaussian: two modes (point, chips), each clean + 2 cells; quantize draws nothing, so its chips control
    # (M identical copies) is not run: point clean + 2 cells, chips clean only
    assert lines[0].startswith("run_id,model,model_hash") and len(lines) == 1 + 2 * (1 + 2) + (1 + 2) + 1
    r = run("export", "--store", db, "--format", "json")
    assert r.exit_code == 0 and len(json.loads((tmp_path / "r.json").read_text())) == 10
    r = run("export", "--store", db, "--format", "parquet", "--out", tmp_path / "r.parquet")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert r.exit_code == 2 and "needs pyarrow" in r.output and not (tmp_path / "r.parquet").exists()
    else:
        import pandas as pd

        assert r.exit_code == 0 and len(pd.read_parquet(tmp_path / "r.parquet")) == 12
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_config_file_flags_override_and_print_config(tiny_checkpoints, tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text(f'''models = ["{tiny_checkpoints["adam"]}"]
seeds = 2
limit = 30

[[perturbation]]
spec = "gaussian"
levels = "0.05,0.1"

[[perturbation]]
spec = "quantize"
levels = "3:4"
''')
    r = run("sweep", "--config", toml, "--seeds", 3, "--print-config")
    assert r.exit_code == 0, r.output
    assert "seeds = 3" in r.output and 'spec = "quantize"' in r.output and "levels = [3.0, 4.0]" in r.output
    (tmp_path / "resolved.toml").write_text(r.output)
    r = run("sweep", "--config", tmp_path / "resolved.toml", "--store", tmp_path / "c.db", "-q", "--json")
    assert r.exit_code == 0, r.output
    curves = json.loads(r.output)["curves"]
    assert {c["perturbation"] for c in curves} == {"gaussian", "quantize"}
    assert all(lv["n"] == (1 if c["perturbation"] == "quantize" else 3) for c in curves for lv in c["levels"])


def test_per_layer_reuses_clean_activations_consistently(tiny_checkpoints, tmp_path):
    m = str(tiny_checkpoints["adam"])
    r = run("sweep", "--model", m, "--noise", "0.3", "--seeds", 2, "--limit", 60, "--per-layer", "--modes", "point", "--store",
            tmp_path / "p.db", "-q", "--json")
    assert r.exit_code == 0, r.output
    curves = json.loads(r.output)["curves"]
    assert [c["layer"] for c in curves] == ["blocks.0", "blocks.1", "readout"]
    r = run("sweep", "--model", m, "--noise", "0.3", "--seeds", 2, "--limit", 60, "--layers", "blocks.1", "--modes", "point", "--store",
            tmp_path / "q.db", "-q", "--json")
    direct = json.loads(r.output)["curves"][0]["levels"][0]["accuracy_mean"]
    reused = curves[1]["levels"][0]["accuracy_mean"]
    assert abs(direct - reused) <= 1 / 60 + 1e-9


def test_seeds_auto_stops_when_interval_is_narrow(tiny_checkpoints, tmp_path):
    m = str(tiny_checkpoints["adam"])
    r = run("sweep", "--model", m, "--noise", "0.001,1.5", "--seeds", "auto", "--ci-width", "5", "--max-seeds", 15,
            "--limit", 60, "--store", tmp_path / "a.db", "-q", "--json")
    assert r.exit_code == 0, r.output
    lv = {x["level"]: x for x in json.loads(r.output)["curves"][0]["levels"]}
    assert lv[0.001]["n"] == 5  # tiny noise: the first batch of draws already agrees
    assert lv[1.5]["n"] >= 5 and lv[1.5]["n"] <= 15


def test_drop_level_interpolation():
    pts = [(0.1, 0.88), (0.2, 0.80), (0.3, 0.5)]  # measured levels; clean 0.9
    # a 1-point drop is there already at the first level: below it, never extrapolated toward 0
    assert drop_level(pts, 0.9, 0.01) == (0.1, True)
    level, below = drop_level(pts, 0.9, 0.05)
    assert level == pytest.approx(0.1 + 0.1 * (0.88 - 0.85) / (0.88 - 0.80)) and not below
    assert drop_level(pts[:2], 0.9, 0.20) == (None, False)


@pytest.mark.parametrize("args,match", [
    (["--noise", "0.1:0.01"], "stop 0.01 is below start 0.1"),
    (["--noise", "a:b"], "'a' is not a number"),
    (["--noise", "-0.1,0.1"], "below the minimum"),
    (["--bits", "0:4"], "below the minimum 1"),
    (["--perturbation", "gauss", "--noise", "0.1"], "did you mean 'gaussian'"),
    (["--profile", "loihi", "--noise", "0.1"], "unknown profile 'loihi'"),
    (["--perturbation", "quantize:4+mismatch", "--noise", "0.1", "--layers", "conv1"], "unknown layer 'conv1'"),
    (["--noise", "0.1", "--seeds", "many"], "positive integer or 'auto'"),
])
def test_bad_sweep_input_exit_2_store_untouched(tiny_checkpoints, tmp_path, args, match):
    db = tmp_path / "s.db"
    r = run("sweep", "--model", tiny_checkpoints["adam"], "--store", db, *args)
    assert r.exit_code == 2, r.output
    assert match in r.output and len(r.output.strip().splitlines()) == 1
    assert not db.exists()


def test_bad_store_and_missing_dataset(tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_STORE_TIMEOUT", "1")  # the held lock below is never released in time
    m = tiny_checkpoints["adam"]
    notdb = tmp_path / "notes.db"
    notdb.write_text("hello")
    r = run("sweep", "--model", m, "--noise", "0.1", "--store", notdb)
    assert r.exit_code == 2 and "not a results store" in r.output and notdb.read_text() == "hello"
    locked = tmp_path / "locked.db"
    Store.open(locked, create=True).close()
    holder = sqlite3.connect(str(locked))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = run("sweep", "--model", m, "--noise", "0.1", "--seeds", 1, "--limit", 10, "--store", locked)
        assert r.exit_code == 2 and "locked" in r.output, r.output
    finally:
        holder.rollback()
        holder.close()
    r = run("sweep", "--model", m, "--noise", "0.1", "--data-dir", tmp_path / "nowhere")
    assert r.exit_code == 2 and "not found" in r.output


def test_sweep_reports_which_tensors_it_perturbs(tiny_checkpoints, tmp_path):
    m = tiny_checkpoints["adam"]
    base = ["sweep", "--model", m, "--noise", "0.1", "--seeds", 1, "--limit", 20, "-q", "--json"]
    r = run(*base, "--store", tmp_path / "a.db")
    touched = json.loads(r.output)["perturbed_tensors"][0]["tensors"]
    assert touched == ["blocks.0.linear.weight", "blocks.1.linear.weight", "readout.linear.weight"]
    r = run(*base, "--include-bn", "--layers", "blocks.1", "--store", tmp_path / "b.db")
    touched = json.loads(r.output)["perturbed_tensors"][0]["tensors"]
    assert touched == ["blocks.1.bn.bias", "blocks.1.bn.weight", "blocks.1.linear.weight"]
    r = run(*base, "--fold-bn", "--include-bias", "--perturbation", "mismatch(targets=vth)", "--store", tmp_path / "c.db")
    touched = json.loads(r.output)["perturbed_tensors"][0]["tensors"]
    assert touched == ["blocks.0.v_th", "blocks.1.v_th"]
