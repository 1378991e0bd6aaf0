"""`robust slice`: loss along lines in weight space, directions, controls, store, bad input."""

import json
import random
import sqlite3

import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint, save_checkpoint
from models.model_config import ModelConfig
from models.network import SpikingNet
from reports.slices import summarize_slices
from robustness.cli.main import cli
from robustness.data import DatasetSpec, load_dataset
from robustness.evaluate import EvalConfig, Mode, evaluate
from robustness.slicing.directions import lanczos, moved_names, normalise, raw_direction
from robustness.slicing.run import SliceConfig, run_slice
from robustness.store.database import Store
from tests.interrupt import count_rows, kill_at, run_to_end

# The whole validation split (360 clips) in 3 batches: the slice scores exactly what eval scores.
VAL = dict(split="validation", batches=3, batch_size=128)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_centre_of_the_slice_is_the_clean_eval(tiny_checkpoints, tmp_path):
    ivon = str(tiny_checkpoints["ivon"])
    cfg = SliceConfig(models=(ivon,), points=5, directions=1, mc_samples=3, bn="recalibrate", **VAL)
    res = run_slice(cfg, str(tmp_path / "s.db"), progress=False)
    ck, data = load_checkpoint(ivon), load_dataset(DatasetSpec())
    by_mode = {c["mode"]: c for c in res.curves}
    for mode in (Mode.MEAN, Mode.BMA):
        ev = evaluate(ck, data, mode, EvalConfig(mc_samples=3, split="validation"))
        assert by_mode[mode.value]["loss"][2] == pytest.approx(ev.metrics["nll"], rel=1e-6)
        assert by_mode[mode.value]["accuracy"][2] == pytest.approx(ev.metrics["accuracy"], abs=1e-9)
    assert by_mode["bma"]["compute"] == 3 and by_mode["mean"]["compute"] == 1


def test_filter_direction_rows_have_the_weights_norms(tiny_cfg):
    net = SpikingNet(tiny_cfg, torch.Generator().manual_seed(0))
    w = net.tensors()
    names = moved_names(tiny_cfg, include_bn=True)
    d = normalise(raw_direction({n: w[n].shape for n in names}, torch.Generator().manual_seed(1)), w, "filter")
    for n in names:
        if w[n].dim() == 2:
            assert torch.allclose(d[n].norm(dim=1), w[n].norm(dim=1), rtol=1e-5)
        else:
            assert torch.allclose(d[n].abs(), w[n].abs())
    unit = normalise(raw_direction({n: w[n].shape for n in names}, torch.Generator().manual_seed(1)), w, "unit")
    assert float(sum((v ** 2).sum() for v in unit.values())) == pytest.approx(1.0, rel=1e-5)
    assert "blocks.0.alpha" not in names and "blocks.0.bn.running_mean" not in names


def test_lanczos_recovers_the_top_eigenpairs_of_a_quadratic():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64))
    eig = torch.cat([torch.tensor([50.0, 20.0, 9.0]), torch.linspace(-2, 3, 57)]).double()
    a = q @ torch.diag(eig) @ q.T
    vals, vecs = lanczos(lambda v: a @ v, 60, 3, torch.Generator().manual_seed(1))
    assert vals.tolist() == pytest.approx([50.0, 20.0, 9.0], rel=1e-6)
    assert abs(float(vecs[0] @ q[:, 0])) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_hessian_directions_report_eigenvalues(tiny_checkpoints, tmp_path):
    cfg = SliceConfig(models=(str(tiny_checkpoints["adam"]),), direction="hessian", points=5, directions=2,
                      batches=1, batch_size=32)
    curves = run_slice(cfg, str(tmp_path / "h.db"), progress=False).curves
    eig = [c["eigenvalues"][0] for c in curves]
    assert eig[0] >= eig[1] > 0  # top of a trained network's Hessian: positive, descending


def test_same_seed_same_curves_and_directions_are_shared(tiny_checkpoints, tmp_path):
    models = (str(tiny_checkpoints["adam"]), str(tiny_checkpoints["ivon"]))
    cfg = SliceConfig(models=models, points=5, directions=2, batches=1, batch_size=32, mc_samples=2)
    a = run_slice(cfg, str(tmp_path / "a.db"), progress=False)
    b = run_slice(cfg, str(tmp_path / "b.db"), progress=False)
    assert [c["loss"].tolist() for c in a.curves] == [c["loss"].tolist() for c in b.curves]
    assert any("same filter directions" in n for n in a.notes)
    other = run_slice(SliceConfig(models=models, points=5, directions=2, batches=1, batch_size=32, mc_samples=2,
                                  seed=1), str(tmp_path / "a.db"), progress=False)
    assert other.slice_id != a.slice_id
    assert [c["loss"].tolist() for c in other.curves] != [c["loss"].tolist() for c in a.curves]


def test_spiking_loss_is_angular_where_the_sigmoid_control_is_smooth(tiny_checkpoints, tmp_path):
    cfg = SliceConfig(models=(str(tiny_checkpoints["adam"]),), points=21, directions=3, batches=1, batch_size=64,
                      sigmoid=0.3)
    s = summarize_slices(run_slice(cfg, str(tmp_path / "s.db"), progress=False).curves)
    ang = {g["mode"]: g["metrics"]["angularity"]["mean"] for g in s["groups"]}
    assert ang["sigmoid"] < ang["point"] / 3


def test_between_two_checkpoints_ends_at_each(tiny_checkpoints, tmp_path):
    adam, ivon = str(tiny_checkpoints["adam"]), str(tiny_checkpoints["ivon"])
    r = run("slice", "--between", adam, ivon, "--points", 9, "--store", tmp_path / "b.db", "--json", "-q",
            "--split", "validation", "--batches", 3)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    (g,) = out["groups"]
    assert g["mode"] == "line" and out["config"]["coords"][0] == -0.5
    with Store.open(tmp_path / "b.db") as st:
        (c,) = st.curves(out["slice"])
    for a, path in ((2, adam), (6, ivon)):  # coords -0.5, -0.25, 0, ..., 1.5: index 2 is A, 6 is B
        ck = load_checkpoint(path)
        ev = evaluate(ck, load_dataset(DatasetSpec()), Mode.MEAN if ck.posterior else Mode.POINT,
                      EvalConfig(split="validation"))
        assert c["loss"][a] == pytest.approx(ev.metrics["nll"], rel=1e-5)


def test_cli_table_and_paired_comparison(tiny_checkpoints, tmp_path):
    r = run("slice", "--model", tiny_checkpoints["adam"], "--model", tiny_checkpoints["ivon"], "--points", 7,
            "--directions", 3, "--batches", 1, "--batch-size", 32, "--mc-samples", 2, "--store", tmp_path / "s.db", "-q")
    assert r.exit_code == 0, r.output
    assert "angularity" in r.output and "Wilcoxon" in r.output and "p = " in r.output
    assert "BN statistics" in r.output


def _curves(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT model_hash, mode, direction, loss, accuracy FROM slice_curves "
                         "ORDER BY model_hash, mode, direction").fetchall()


@pytest.mark.slow
def test_resume_after_kills_at_random_points_equals_uninterrupted(tiny_checkpoints, tmp_path):
    args = ["slice", "--model", str(tiny_checkpoints["adam"]), "--points", "9", "--directions", "12", "--batches", "1",
            "--batch-size", "48", "--quiet"]
    full, killed = tmp_path / "full.db", tmp_path / "killed.db"
    assert run_to_end(args, full).returncode == 0
    targets = sorted(random.Random(7).sample(range(1, 10), 3))
    found = kill_at(args, killed, count_rows("slice_curves"), targets)
    assert 0 < found[0] and found[-1] < 12, f"kills should land mid-slice: {found}"
    r = run_to_end(args, killed)
    assert r.returncode == 0 and "resumed" in r.stdout
    assert _curves(full) == _curves(killed)


def test_bad_input_is_one_line_and_writes_nothing(tiny_checkpoints, tmp_path):
    adam = str(tiny_checkpoints["adam"])
    other = tmp_path / "wide.pt"
    ck = load_checkpoint(adam)
    wide = SpikingNet(ModelConfig(hidden=(16, 16)), torch.Generator().manual_seed(0))
    save_checkpoint(other, wide, train_config=ck.train_config, dataset=ck.dataset, features=ck.features,
                    classes=ck.classes, history=[], package_version="test")
    db = tmp_path / "never.db"
    cases = [
        (["--model", adam, "--span", "1:-1"], "--span start must be below its end"),
        (["--model", adam, "--span", "x"], "--span must be START:STOP"),
        (["--model", adam, "--points", 2], "--points must be at least 3"),
        (["--model", adam, "--directions", 0], "'--directions': '0' must be >= 1"),
        (["--model", adam, "--dims", 3], "--dims must be 1 or 2"),
        (["--model", adam, "--direction", "posterior"], "needs an IVON checkpoint"),
        (["--between", adam, str(other)], "different architectures"),
        (["--model", adam, "--model", str(other)], "different architectures"),
        (["--model", tmp_path / "missing.pt"], "missing.pt"),
    ]
    for extra, msg in cases:
        r = run("slice", *extra, "--store", db, "-q")
        assert r.exit_code == 2, (extra, r.output)
        assert msg in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not db.exists()


def test_v2_store_gains_the_slice_tables(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.executescript("""CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('application', 'robust'), ('schema_version', '2');
            CREATE TABLE runs (id INTEGER PRIMARY KEY, spec_hash TEXT UNIQUE NOT NULL, config TEXT NOT NULL,
                models TEXT NOT NULL, data_hash TEXT, package_version TEXT, command TEXT, started TEXT, finished TEXT);
            CREATE TABLE cells (run_id INTEGER, model TEXT, model_hash TEXT, optimizer TEXT, mode TEXT,
                perturbation TEXT, layer TEXT, level REAL, seed INTEGER, samples INTEGER, n INTEGER, accuracy REAL,
                nll REAL, brier REAL, ece REAL, entropy REAL, expected_entropy REAL, mutual_information REAL,
                disagreement REAL, spike_rates TEXT, versions TEXT, time_s REAL, created TEXT,
                example_correct BLOB, example_nll BLOB);""")
    with Store.open(db) as s:
        tables = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"slices", "slice_curves"} <= tables
        assert dict(s.conn.execute("SELECT key, value FROM meta").fetchall())["schema_version"] == "4"
