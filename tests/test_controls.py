"""Controls that make a verdict about IVON fair: chips, deep ensembles, hardware-aware training."""

import json

import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.model_config import ModelConfig
from models.network import SpikingNet
from robustness.cli.main import cli
from robustness.store.database import Store
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep
from robustness.training import hardware_perturbation

METRICS = ("accuracy", "nll", "brier", "ece", "entropy", "disagreement")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_chips_of_one_copy_is_the_point_model_and_compute_is_reported(tiny_checkpoints, tmp_path):
    m = str(tiny_checkpoints["adam"])
    cfg = SweepConfig((m,), (PerturbationPlan("gaussian", (0.1, 0.3)),), seeds=3, limit=60, mc_samples=1)
    rows = run_sweep(cfg, str(tmp_path / "a.db"), progress=False).rows
    point = {(r.level, r.seed): r for r in rows if r.mode == "point"}
    chips = {(r.level, r.seed): r for r in rows if r.mode == "chips"}
    assert point.keys() == chips.keys() and len(point) == 1 + 2 * 3
    for k in point:  # M = 1: draw k of seed s is the same chip in both modes
        assert [point[k].metric(x) for x in METRICS] == pytest.approx([chips[k].metric(x) for x in METRICS], abs=1e-12)
    r = run("sweep", "--model", m, "--noise", "0.3", "--seeds", 2, "--limit", 60, "--mc-samples", 4,
            "--store", tmp_path / "b.db", "-q", "--json")
    assert r.exit_code == 0, r.output
    curves = {c["mode"]: c for c in json.loads(r.output)["curves"]}
    assert curves["point"]["compute"] == 1 and curves["chips"]["compute"] == 4
    # averaging 4 perturbed chips is a different (and at this level, better-calibrated) predictor
    assert curves["chips"]["levels"][0]["nll_mean"] < curves["point"]["levels"][0]["nll_mean"]


def test_modes_option_and_unknown_mode(tiny_checkpoints, tmp_path):
    m = tiny_checkpoints["adam"]
    r = run("sweep", "--model", m, "--noise", "0.1", "--seeds", 1, "--limit", 20, "--modes", "chips",
            "--mc-samples", 2, "--store", tmp_path / "c.db", "-q", "--json")
    assert r.exit_code == 0 and {c["mode"] for c in json.loads(r.output)["curves"]} == {"chips"}
    r = run("sweep", "--model", m, "--noise", "0.1", "--modes", "bma", "--store", tmp_path / "d.db")
    assert r.exit_code == 2 and "no model here has that mode" in r.output and not (tmp_path / "d.db").exists()


def test_ensemble_members_equal_separately_seeded_models(tmp_path):
    common = ["--epochs", 1, "--hidden", "12,12", "--limit-train", 120, "--quiet"]
    r = run("train", "--ensemble", 2, "--seed", 3, "--out", tmp_path / "ens.pt", *common)
    assert r.exit_code == 0, r.output
    assert "ensemble of 2" in r.output
    assert run("train", "--seed", 4, "--out", tmp_path / "s4.pt", *common).exit_code == 0
    ens, s4 = load_checkpoint(tmp_path / "ens.pt"), load_checkpoint(tmp_path / "s4.pt")
    assert len(ens.members) == 2
    for n, v in s4.net.tensors().items():
        assert torch.equal(ens.members[1][n], v), n
    r = run("eval", "--model", tmp_path / "ens.pt", "--limit", 40, "--json", "--quiet")
    rows = json.loads(r.output)["models"][0]["modes"]
    assert [(x["mode"], x["compute"]) for x in rows] == [("point", 1), ("ensemble", 2)]
    assert rows[1]["metrics"]["mutual_information"]["value"] > 0
    r = run("sweep", "--model", tmp_path / "ens.pt", "--noise", "0.2", "--seeds", 2, "--limit", 30,
            "--mc-samples", 2, "--store", tmp_path / "e.db", "-q", "--json")
    assert {c["mode"] for c in json.loads(r.output)["curves"]} == {"point", "chips", "ensemble"}


def test_hardware_aware_training_gradient_goes_to_clean_weights():
    cfg = ModelConfig(hidden=(6, 5), num_classes=3, input_dim=4)
    net = SpikingNet(cfg, torch.Generator().manual_seed(0))
    t = {n: v.unsqueeze(0) for n, v in net.tensors().items()}
    for spec in ("gaussian:0.2", "quantize:3", "mismatch:0.2"):
        p = hardware_perturbation(spec, cfg)(t, torch.Generator().manual_seed(1))
        w = p["blocks.0.linear.weight"]
        assert not torch.equal(w, t["blocks.0.linear.weight"])  # the loss sees the perturbed weights
        c = torch.randn_like(w)
        net.zero_grad()
        (w * c).sum().backward()
        torch.testing.assert_close(net.blocks[0].linear.weight.grad, c[0])  # straight-through
    # a fresh draw per step: another generator state, another chip
    g = torch.Generator().manual_seed(1)
    f = hardware_perturbation("gaussian:0.2", cfg)
    assert not torch.equal(f(t, g)["readout.linear.weight"], f(t, g)["readout.linear.weight"])


def test_hardware_aware_training_is_recorded_and_changes_the_model(tmp_path):
    common = ["--epochs", 1, "--hidden", "12,12", "--limit-train", 120, "--quiet"]
    assert run("train", "--out", tmp_path / "a.pt", *common).exit_code == 0
    r = run("train", "--train-perturbation", "gaussian:0.1", "--out", tmp_path / "h.pt", *common)
    assert r.exit_code == 0 and "trained under gaussian:0.1" in r.output
    a, h = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "h.pt")
    assert h.train_config["train_perturbation"] == "gaussian:0.1"
    assert not torch.equal(a.net.blocks[0].linear.weight, h.net.blocks[0].linear.weight)


@pytest.mark.parametrize("args,match", [
    (["--train-perturbation", "gaussian"], "give the level to train at"),
    (["--train-perturbation", "gauss:0.1"], "did you mean 'gaussian'"),
    (["--optimizer", "ivon", "--ensemble", "3"], "--ensemble trains Adam members"),
    (["--ensemble", "0"], "'--ensemble': '0' must be >= 1"),
    (["--optimizer", "ivon", "--beta2", "1.5"], "'--beta2': '1.5' must be < 1"),
    (["--optimizer", "ivon", "--ess", "-3"], "'--ess': '-3' must be > 0"),
])
def test_bad_training_options_exit_2(tmp_path, args, match):
    r = run("train", *args, "--epochs", 1, "--out", tmp_path / "x.pt")
    assert r.exit_code == 2 and match in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x.pt").exists()


def test_store_keeps_per_example_results(tiny_checkpoints, tmp_path):
    m = str(tiny_checkpoints["adam"])
    run_sweep(SweepConfig((m,), (PerturbationPlan("gaussian", (0.2,)),), seeds=2, limit=50, modes=("point",)),
              str(tmp_path / "s.db"), progress=False)
    import numpy as np

    from reports.summary import example_scores

    with Store.open(tmp_path / "s.db") as s:
        for r in s.cells():
            acc = example_scores(r, "accuracy")
            nll = example_scores(r, "nll")
            assert len(acc) == len(nll) == 50
            assert acc.mean() == pytest.approx(r.accuracy) and nll.mean() == pytest.approx(r.nll, rel=1e-5)
            assert np.isfinite(nll).all()
