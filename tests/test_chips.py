"""Chip targets through the commands: profiles listed with their sources, networks that do not
fit refused with the reason, eval and sweep on integer dynamics composed with perturbations,
efficiency stored, reported and gated, numbers independent of how the work is cut."""

import json

import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.deploy import deploy_tensors
from models.fixed_point import Arithmetic, to_chip
from perturbations.base import Context
from perturbations.spec import apply, parse_spec
from robustness.cli.main import cli
from robustness.store.database import Store
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_perturbations_lists_chip_profiles_with_sources():
    r = run("perturbations", "--json")
    assert r.exit_code == 0
    chips = {c["name"]: c for c in json.loads(r.output)["chips"]}
    assert set(chips) == {"xylo-audio", "loihi2", "dynap-se2"}
    assert chips["xylo-audio"]["arithmetic"]["leak"] == "shift" and chips["xylo-audio"]["limits"]["inputs"] == 16
    assert chips["loihi2"]["energy_pj"]["synaptic_op"]["pj"] == 23.6
    assert all(c["sources"] and c["assumptions"] for c in chips.values())
    text = run("perturbations").output
    assert "source: Rockpool 3.1" in text and "Davies et al. 2018" in text and "Richter et al. 2024" in text


def test_a_network_that_does_not_fit_is_refused_with_the_reason(tiny_checkpoints):
    r = run("eval", "--model", tiny_checkpoints["adam"], "--chip", "xylo-audio", "--limit", "10")
    assert r.exit_code == 2
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1
    assert "40 input channels, the chip has 16" in r.output and "fit=arithmetic" in r.output
    # 40 inputs and 32 hidden neurons per layer: within DYNAP-SE2's 64 synapses per neuron
    assert run("eval", "--model", tiny_checkpoints["adam"], "--chip", "dynap-se2", "--limit", "10").exit_code == 0


def test_eval_on_a_chip_reports_deployment_and_efficiency(tiny_checkpoints):
    r = run("eval", "--model", tiny_checkpoints["adam"], "--chip", "loihi2", "--chip", "xylo-audio(fit=arithmetic)",
            "--limit", "40", "--json")
    assert r.exit_code == 0, r.output
    models = {m["target"]: m for m in json.loads(r.output)["models"]}
    assert set(models) == {"float", "loihi2", "xylo-audio(fit=arithmetic)"}
    loihi = models["loihi2"]
    assert [d["layer"] for d in loihi["deployment"]] == ["blocks.0", "blocks.1", "readout"]
    assert all(d["scale"] > 0 for d in loihi["deployment"])
    assert loihi["deployment"][0]["weight_shift"] >= 6  # Loihi's activation alignment at least
    e = loihi["modes"][0]["efficiency"]
    # energy = (MACs + ACs) x 23.6 pJ + T x neurons x 52 pJ, per inference
    updates = e["neuron_updates"]
    assert e["energy_nj"] == pytest.approx(((e["effective_macs"] + e["effective_acs"]) * 23.6 + updates * 52) / 1000)
    assert 0 < e["effective_acs"] < e["synops_dense"] and 0 < e["activation_sparsity"] < 1
    assert models["float"]["modes"][0]["efficiency"]["energy_nj"] is None  # no chip, no energy
    assert e["footprint_bytes"] < models["float"]["modes"][0]["efficiency"]["footprint_bytes"] / 3  # 8-bit codes
    assert "does not fit" in models["xylo-audio(fit=arithmetic)"]["notes"][0]
    table = run("eval", "--model", tiny_checkpoints["adam"], "--chip", "loihi2", "--limit", "40").output
    assert "@loihi2" in table and "one state unit" in table


def test_bitflip_flips_the_chip_codes_themselves(tiny_checkpoints):
    ck = load_checkpoint(str(tiny_checkpoints["adam"]))
    cfg = ck.net.cfg
    t = to_chip(cfg, deploy_tensors(cfg, ck.net.stacked(1), fold_bn=True), Arithmetic(weight_bits=6))
    ctx = Context(("blocks.0", "blocks.1", "readout"), ("blocks.0", "blocks.1"))
    out = apply(parse_spec("bitflip"), 0.05, t, seed=0, draws=[0], ctx=ctx)
    for name in ("blocks.0.linear.weight", "readout.linear.weight"):
        assert torch.equal(out[name], out[name].round())  # still whole codes: flips of the chip's own bits
        a, b = t[name].long(), out[name].long()
        assert int(b.min()) >= -32 and int(b.max()) <= 31  # 6-bit two's complement
        flips = (a & 63) ^ (b & 63)
        assert 0.15 < (flips != 0).double().mean() < 0.4  # 1 - 0.95^6 = 26% of the codes
        single = (flips != 0) & ((flips & (flips - 1)) == 0)
        step = (b - a)[single].abs()
        assert step.numel() and torch.equal(step & (step - 1), torch.zeros_like(step))  # one bit: a power of two
    r = run("sweep", "--model", tiny_checkpoints["adam"], "--chip", "loihi2", "--perturbation", "bitflip(bits=4)",
            "--noise", "0.01", "--limit", "10", "--seeds", "1", "--store", "unused.db")
    assert r.exit_code == 2 and "the chip stores 8-bit weights" in r.output


@pytest.mark.parametrize("spec,why", [("adversarial(target=quantized)", "codes are whole already"),
                                      ("read-noise", "analog array")])
def test_sweep_refuses_what_a_chip_cannot_honour(tiny_checkpoints, tmp_path, spec, why):
    db = tmp_path / "s.db"
    r = run("sweep", "--model", tiny_checkpoints["adam"], "--chip", "loihi2", "--perturbation", spec, "--noise",
            "0.1", "--limit", "10", "--store", db)
    assert r.exit_code == 2 and why in r.output and not db.exists()


def test_chip_sweep_composes_stores_efficiency_reports_and_gates(tiny_checkpoints, tmp_path):
    db, adam = tmp_path / "c.db", str(tiny_checkpoints["adam"])
    chip = "fixed-point(weight_bits=6,state_bits=12)"
    r = run("sweep", "--model", adam, "--chip", chip, "--perturbation", "quantize:5+mismatch:?", "--noise",
            "0,0.2", "--seeds", "2", "--modes", "point,chips", "--mc-samples", "2", "--limit", "30", "--store", db, "-q")
    assert r.exit_code == 0, r.output
    with Store.open(db) as s:
        rows = s.cells()
        (meta,) = json.loads(s.runs()[0]["models"]) if isinstance(s.runs()[0]["models"], str) else s.runs()[0]["models"]
    assert {c.model for c in rows} == {f"{adam}@{chip}"} and meta["chip"] == chip
    assert meta["chip_arithmetic"]["state_bits"] == 12
    assert [d["layer"] for d in meta["deployment"]] == ["blocks.0", "blocks.1", "readout"]  # each layer's scale
    assert all(c.efficiency and c.efficiency["effective_acs"] > 0 for c in rows)
    moved = [c for c in rows if c.level == 0.2]
    assert len({c.accuracy for c in moved} | {c.efficiency["effective_acs"] for c in moved}) > 1  # chips differ
    out = tmp_path / "rep"
    assert run("report", "--store", db, "--out", out, "-q").exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["efficiency"]["curves"] and "estimate" in summary["efficiency"]["basis"]
    assert "5b. Efficiency" in (out / "report.md").read_text()
    policy = tmp_path / "p.toml"
    synops = moved[0].efficiency["effective_synops"]
    policy.write_text(f'[[rule]]\nkind = "max_synops"\nmodel = "{adam}@{chip}"\nmode = "point"\n'
                      f'perturbation = "quantize:5+mismatch"\nlevel = 0.2\nthreshold = {synops * 10}\n'
                      f'[[rule]]\nkind = "max_energy"\nmodel = "{adam}@{chip}"\nmode = "point"\n'
                      f'perturbation = "quantize:5+mismatch"\nlevel = 0.2\nthreshold = 1e9\n')
    r = run("check", "--store", db, "--policy", policy)
    assert r.exit_code == 1  # the generic fixed-point target has no energy costs: that rule fails, and says why
    assert "PASS  max_synops" in r.output and "no energy estimate" in r.output


def test_chip_cells_do_not_depend_on_networks_per_pass(tiny_checkpoints, tmp_path):
    cfg = SweepConfig((str(tiny_checkpoints["adam"]),), (PerturbationPlan("mismatch", (0.2,)),), seeds=3, limit=30,
                      chip="loihi2", modes=("point",))
    a = run_sweep(cfg, str(tmp_path / "a.db"), progress=False).rows
    import models.chunking as chunking

    old = chunking.MAX_NETWORKS_PER_PASS
    chunking.MAX_NETWORKS_PER_PASS = 1
    try:
        b = run_sweep(cfg, str(tmp_path / "b.db"), progress=False).rows
    finally:
        chunking.MAX_NETWORKS_PER_PASS = old
    assert [(r.accuracy, r.nll, r.efficiency) for r in a] == [(r.accuracy, r.nll, r.efficiency) for r in b]


def test_slice_on_a_chip_scores_every_point_deployed(tiny_checkpoints, tmp_path):
    db, adam = tmp_path / "s.db", str(tiny_checkpoints["adam"])
    args = ["slice", "--model", adam, "--points", "5", "--directions", "1", "--batches", "1", "--batch-size", "16",
            "--store", db, "-q"]
    assert run(*args).exit_code == 0
    r = run(*args, "--chip", "fixed-point(weight_bits=4,state_bits=10)")
    assert r.exit_code == 0, r.output
    with Store.open(db) as s:
        float_curve, chip_curve = (s.curves(sl["id"])[0] for sl in s.slices())
    assert chip_curve["model"] == f"{adam}@fixed-point(weight_bits=4,state_bits=10)"
    assert float_curve["loss"].tolist() != chip_curve["loss"].tolist()  # 4-bit weights, 10-bit states: another loss
    r = run(*args, "--chip", "loihi2", "--sigmoid-control", "0.1")
    assert r.exit_code == 2 and "sigmoid control" in r.output


def test_a_chip_sweeps_clean_cell_is_what_eval_reports(tiny_checkpoints, tmp_path):
    adam = str(tiny_checkpoints["adam"])
    cfg = SweepConfig((adam,), (PerturbationPlan("bitflip", (0.001,)),), seeds=1, limit=30, chip="loihi2",
                      modes=("point",))
    clean = next(r for r in run_sweep(cfg, str(tmp_path / "a.db"), progress=False).rows if r.perturbation == "clean")
    r = run("eval", "--model", adam, "--chip", "loihi2", "--limit", "30", "--json")
    (ev,) = [m for m in json.loads(r.output)["models"] if m["target"] == "loihi2"]
    mode = ev["modes"][0]
    assert clean.model == f"{adam}@loihi2" and clean.model_hash == ev["model_hash"]
    assert clean.accuracy == mode["metrics"]["accuracy"]["value"]
    assert clean.nll == pytest.approx(mode["metrics"]["nll"]["value"], rel=1e-12)
    assert clean.efficiency == pytest.approx(mode["efficiency"])


def test_a_worst_case_chip_is_searched_through_the_float_surrogate(tiny_checkpoints, tmp_path):
    """The ascent runs on the float network the codes stand for (straight through the
    rounding); the chip it finds is scored in integers, beside the random start of the same budget."""
    cfg = SweepConfig((str(tiny_checkpoints["adam"]),),
                      (PerturbationPlan("adversarial(target=thresholds,steps=3,examples=16)", (0.3,)),
                       PerturbationPlan("adversarial(target=thresholds,steps=0)", (0.3,))),
                      seeds=3, limit=40, chip="loihi2", modes=("point",))
    rows = run_sweep(cfg, str(tmp_path / "w.db"), progress=False).rows
    by = {}
    for r in rows:
        by.setdefault(r.perturbation, []).append(r.accuracy)
    assert set(by) == {"clean", "adversarial(target=thresholds,steps=3,examples=16)", "adversarial(target=thresholds,steps=0)"}
    worst = sum(by["adversarial(target=thresholds,steps=3,examples=16)"]) / 3
    random = sum(by["adversarial(target=thresholds,steps=0)"]) / 3
    assert worst < random <= by["clean"][0] + 0.05
