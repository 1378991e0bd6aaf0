"""The scripts that produce the README's tables still run and print their tables.

Each runs on tiny checkpoints with few chips and a small test subset: what is checked is
that the script works against today's API and prints every row the README shows, not the
figures themselves (those need the 30-epoch models).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    """A 2-member Adam ensemble and a hardware-aware Adam model, as tiny as the others."""
    from robustness.train_options import TrainRequest
    from robustness.training import train_to_checkpoint

    d = tmp_path_factory.mktemp("controls")
    common = dict(optimizer="adam", epochs=2, hidden=(32, 32), limit_train=400, seed=1)
    train_to_checkpoint(TrainRequest(ensemble=2, **common), d / "ens.pt", progress=False)
    train_to_checkpoint(TrainRequest(train_perturbation="gaussian:0.05", **common), d / "hwa.pt", progress=False)
    return {"ensemble": d / "ens.pt", "hwa": d / "hwa.pt"}


@pytest.mark.slow
def test_trained_models_table(tiny_checkpoints, tmp_path):
    out = script("trained_models_table.py", "--adam", tiny_checkpoints["adam"], "--ivon", tiny_checkpoints["ivon"],
                 "--seeds", 2, "--limit", 40, "--out", tmp_path / "t.db", "--quiet", cwd=tmp_path)
    for row in ("| Adam |", "| IVON, posterior mean |", "| IVON, BMA (10 samples) |", "| gaussian 0.05 / 0.1 / 0.2",
                "| mismatch 0.1 / 0.2 / 0.3 |", "| quantize 3 / 4 bits |", "| level of a 5-point drop"):
        assert row in out, out
    assert "nan" not in out.lower()


@pytest.mark.slow
def test_compare_controls(tiny_checkpoints, controls, tmp_path):
    out = script("compare_controls.py", "--ensemble", controls["ensemble"], "--hwa", controls["hwa"],
                 "--ivon", tiny_checkpoints["ivon"], "--seeds", 2, "--limit", 40, "--out", tmp_path / "c.db",
                 cwd=tmp_path)
    for name in ("Adam point", "hardware-aware Adam", "IVON mean chips", "IVON BMA", "Adam ensemble"):
        assert f"| {name} |" in out, out
    assert out.count("| Adam ensemble | gaussian |") == 2  # both levels of the paired table


@pytest.mark.slow
def test_worst_case_table(tiny_checkpoints, tmp_path):
    out = script("worst_case_table.py", "--adam", tiny_checkpoints["adam"], "--ivon", tiny_checkpoints["ivon"],
                 "--seeds", 1, "--limit", 40, "--out", tmp_path / "w.db", "--quiet", cwd=tmp_path)
    for row in ("| mismatch, 1% box |", "| mismatch, 5% box |", "| mismatch, log-std 2% |", "| thresholds, 10% box |"):
        assert row in out, out


@pytest.mark.slow
def test_slice_table(tiny_checkpoints, controls, tmp_path):
    out = script("slice_table.py", "--ensemble", controls["ensemble"], "--ivon", tiny_checkpoints["ivon"],
                 "--directions", 2, "--points", 5, "--batches", 1, "--batch-size", 16, "--out", tmp_path / "s.db",
                 "--quiet", cwd=tmp_path)
    for name in ("Adam point", "Adam ensemble", "IVON mean", "IVON BMA"):
        assert f"| {name} |" in out, out
    assert "Holm" in out or "too few" in out, out


@pytest.mark.slow
def test_neuron_tables(tiny_checkpoints, tmp_path):
    from robustness.train_options import TrainRequest
    from robustness.training import train_to_checkpoint
    from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep

    ad = tmp_path / "adlif.pt"
    train_to_checkpoint(TrainRequest(optimizer="adam", neuron="adlif", epochs=2, hidden=(32, 32), limit_train=400,
                                     seed=1), ad, progress=False)
    store = tmp_path / "n.db"
    run_sweep(SweepConfig((str(tiny_checkpoints["adam"]), str(ad)), (PerturbationPlan("gaussian", (0.1,)),), seeds=3,
                          limit=40), str(store), progress=False)
    out = script("neuron_tables.py", "--store", store, cwd=tmp_path)
    assert "| lif | adam | point | 1 |" in out and "| adlif | adam | point | 1 |" in out
    assert "| lif | adam | chips (10) |" in out and "gaussian 0.1" in out
    assert "| gaussian 0.1 | adam point |" in out and "| gaussian 0.1 | adam chips |" in out


def test_ir_drop_cost(tiny_checkpoints, tmp_path):
    out = script("ir_drop_cost.py", tiny_checkpoints["adam"], "--wire", "1,4", "--examples", 2, "--exact-reads", 1,
                 cwd=tmp_path)
    assert "blocks.0              analog" in out and "blocks.1              spikes" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("blocks.1 ") and "spikes" not in line]
    assert len(rows) == 2  # one exact read per wire resistance
    lost, per_cell = (float(r[3].rstrip("%")) for r in rows), (float(r[5].rstrip("%")) for r in rows)
    assert all(e < max(1.0, 0.5 * l) for l, e in zip(lost, per_cell))  # the first order is far closer than ideal
