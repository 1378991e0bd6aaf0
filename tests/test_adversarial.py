"""Worst-case perturbations: the analytic optimum on a linear control, the budget, never
below the random draw of the same budget, determinism, and the sweep end to end."""

import sqlite3

import pytest

import torch
import torch.nn.functional as F
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.deploy import deploy_tensors
from models.model_config import ForwardOptions
from models.network import forward_stacked
from perturbations.base import Context
from perturbations.spec import apply, parse_spec
from robustness.cli.main import cli
from robustness.data import DatasetSpec, load_dataset

W = "blocks.0.linear.weight"


def test_linear_control_reaches_the_analytic_worst_case():
    # loss = sum(c * w'), w' = w (1 + delta), |delta| <= eps: the optimum is delta = eps * sign(c * w)
    g = torch.Generator().manual_seed(0)
    w, c = torch.randn(3, 5, 4, generator=g), torch.randn(5, 4, generator=g)
    ctx = Context(("blocks.0",), ("blocks.0",), objective=lambda t: (t[W] * c).sum())
    out = apply(parse_spec("adversarial"), 0.2, {W: w}, seed=1, draws=[0, 1, 2], ctx=ctx)
    best = w * (1 + 0.2 * torch.sign(c * w))
    torch.testing.assert_close(out[W], best)
    assert float((out[W] * c).sum()) == float((best * c).sum())


def _setup(tiny_checkpoints):
    ck = load_checkpoint(tiny_checkpoints["adam"])
    base = {n: v.detach() for n, v in deploy_tensors(ck.net.cfg, ck.net.stacked(4)).items()}
    test = load_dataset(DatasetSpec()).split("test")
    x, y = test.x[:32], test.y[:32]

    def losses(t):  # NLL per network on the batch
        logits, _ = forward_stacked(ck.net.cfg, t, x, ForwardOptions(clamp_alpha=False))
        return F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1), reduction="none").mean(1)

    hidden = ("blocks.0", "blocks.1")
    return base, losses, Context(hidden + ("readout",), hidden, objective=losses)


def test_budget_holds_the_loss_beats_the_random_draw_and_seeds_repeat(tiny_checkpoints):
    base, losses, ctx = _setup(tiny_checkpoints)
    eps, draws = 0.1, [0, 1, 2, 3]
    found = apply(parse_spec("adversarial(steps=5)"), eps, base, seed=3, draws=draws, ctx=ctx)
    start = apply(parse_spec("adversarial(steps=0)"), eps, base, seed=3, draws=draws, ctx=ctx)
    for name in ("blocks.0.linear.weight", "blocks.1.linear.weight", "readout.linear.weight"):
        rel = found[name] / base[name] - 1
        assert float(rel.abs().max()) <= eps * (1 + 1e-5)
    with torch.no_grad():
        attacked, random = losses(found), losses(start)
    assert bool((attacked >= random).all()) and float(attacked.mean()) > float(random.mean())
    again = apply(parse_spec("adversarial(steps=5)"), eps, base, seed=3, draws=draws, ctx=ctx)
    assert all(torch.equal(found[n], again[n]) for n in found)
    # a restart's chip does not depend on the other restarts of the pass
    alone = apply(parse_spec("adversarial(steps=5)"), eps, {n: v[:1] for n, v in base.items()}, seed=3,
                  draws=[2], ctx=ctx)
    torch.testing.assert_close(alone[W][0], found[W][2], rtol=1e-5, atol=1e-6)


def test_sweep_stores_restarts_as_seeds_and_worst_case_is_worse(tiny_checkpoints, tmp_path):
    db = tmp_path / "adv.db"
    r = CliRunner().invoke(cli, ["sweep", "--model", str(tiny_checkpoints["adam"]), "--perturbation",
                                 "adversarial", "--noise", "0.1",
                                 "--seeds", "3", "--modes", "point", "--store", str(db), "-q"])
    assert r.exit_code == 0, r.output
    with sqlite3.connect(db) as c:
        acc = dict(c.execute("SELECT perturbation, avg(accuracy) FROM cells WHERE level = 0.1 GROUP BY perturbation"))
        seeds = c.execute("SELECT count(*) FROM cells WHERE perturbation = 'adversarial'").fetchone()[0]
    assert seeds == 3
    assert acc["adversarial"] < acc["adversarial(steps=0)"] - 0.02
    # the random baseline of the same budget was added by the sweep; summary, report and JSON show the gap
    assert "Worst case vs random within the same budget" in r.output
    r = CliRunner().invoke(cli, ["report", "--store", str(db), "--out", str(tmp_path / "rep"), "-q"])
    assert r.exit_code == 0, r.output
    import json

    gaps = json.loads((tmp_path / "rep" / "summary.json").read_text())["attack_gaps"]
    assert [g["level"] for g in gaps] == [0.1] and gaps[0]["gap"] > 0.02
    assert "worst-case accuracy" in (tmp_path / "rep" / "report.md").read_text()


def test_the_random_baseline_is_added_once():
    from robustness.sweep.config import PerturbationPlan, random_baselines

    plans = [PerturbationPlan("adversarial", (0.1,)), PerturbationPlan("adversarial(target=thresholds,steps=4)", (0.2,)),
             PerturbationPlan("adversarial(steps=3,target=mismatch,budget=logstd)", (0.2,)),
             PerturbationPlan("adversarial(target=mismatch,budget=linf)", (0.2,)),
             PerturbationPlan("adversarial(target=thresholds,examples=128)", (0.2,)),
             PerturbationPlan("gaussian", (0.1,))]
    assert [p.spec for p in random_baselines(plans)] == [
        "adversarial(steps=0)", "adversarial(target=thresholds,steps=0)",
        "adversarial(target=mismatch,budget=logstd,steps=0)", "adversarial(target=mismatch,budget=linf,steps=0)"]
    assert random_baselines(plans + random_baselines(plans)) == []


def test_logstd_budget_on_a_log_linear_control_moves_along_the_gradient():
    # loss = sum(c * log w'), w' = w exp(d), ||d||_2 <= eps sqrt(n): the optimum is d = eps sqrt(n) c / ||c||
    g = torch.Generator().manual_seed(0)
    w, c = torch.rand(2, 6, 5, generator=g) + 0.5, torch.randn(6, 5, generator=g)
    ctx = Context(("blocks.0",), ("blocks.0",), objective=lambda t: (torch.log(t[W]) * c).flatten(1).sum(1))
    out = apply(parse_spec("adversarial(budget=logstd,steps=30,cap=100)"), 0.3, {W: w}, seed=1, draws=[0, 1], ctx=ctx)
    d = torch.log(out[W] / w)
    radius = 0.3 * 30 ** 0.5
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.full((2,), radius), rtol=1e-5)
    best = radius * float(c.norm())
    assert all(float((d[k] * c).sum()) > 0.999 * best for k in range(2))


@pytest.mark.parametrize("spec, eps", [("adversarial(target=thresholds,steps=3)", 0.1),
                                       ("adversarial(target=time_constants,steps=3)", 0.2),
                                       ("adversarial(target=mismatch,budget=logstd,steps=3)", 0.1),
                                       ("adversarial(target=quantized,bits=4,steps=3)", 0.7)])
def test_every_target_keeps_its_budget_and_never_scores_below_its_random_start(tiny_checkpoints, spec, eps):
    base, losses, ctx = _setup(tiny_checkpoints)
    draws = [0, 1, 2, 3]
    found = apply(parse_spec(spec), eps, base, seed=5, draws=draws, ctx=ctx)
    start = apply(parse_spec(spec.replace("steps=3", "steps=0")), eps, base, seed=5, draws=draws, ctx=ctx)
    changed = [n for n in base if not torch.equal(found[n], base[n])]
    if "quantized" in spec:
        assert changed == ["blocks.0.linear.weight", "blocks.1.linear.weight", "readout.linear.weight"]
        for n in changed:
            for chip in (found[n], start[n]):
                allowed_codes(base[n], chip, 4, eps)
    else:
        kinds = {"thresholds": {"v_th"}, "time_constants": {"alpha"}, "mismatch": {"v_th", "alpha", "weight"}}
        target = spec.split("target=")[1].split(",")[0]
        assert {n.rsplit(".", 1)[1] for n in changed} == kinds[target]
        for n in changed:
            old, new = base[n], found[n]
            if n.endswith("alpha"):  # the budget is on the time constant tau = -1 / log(alpha)
                old, new = -1 / torch.log(old), -1 / torch.log(new)
            if "logstd" in spec:
                d = torch.log(new / old)
                assert float(d.flatten(1).norm(dim=1).max()) <= eps * old[0].numel() ** 0.5 * (1 + 1e-4)
                assert float(d.abs().max()) <= 4 * eps * (1 + 1e-4)
            else:
                assert float((new / old - 1).abs().max()) <= eps * (1 + 1e-4)
    with torch.no_grad():
        attacked, random = losses(found), losses(start)
    assert bool((attacked >= random).all()) and float(attacked.mean()) > float(random.mean())


def test_budgets_that_make_no_sense_are_refused():
    from perturbations.base import PerturbationError

    ctx = Context(("blocks.0",), ("blocks.0",))
    w = {W: torch.ones(1, 3, 2)}
    for spec, level, msg in [("adversarial", 1.0, "can flip signs"),
                             ("adversarial(target=quantized,budget=logstd)", 0.5, "use budget=linf"),
                             ("adversarial(target=quantized)", 2.0, "at most 1"),
                             ("adversarial(target=gains)", 0.1, "target must be one of"),
                             ("adversarial(budget=logstd,cap=0)", 0.1, "cap must be above 0"),
                             ("adversarial(target=quantized,bits=x)", 0.1, "is not a number"),
                             ("adversarial(steps=2.5)", 0.1, "whole number"),
                             ("adversarial(examples=0)", 0.1, "examples must be a whole number"),
                             ("adversarial(examples=2.5)", 0.1, "examples must be a whole number")]:
        with pytest.raises(PerturbationError, match=msg):
            parse_spec(spec).check([level])
    parse_spec("adversarial(budget=logstd)").check([1.5])
    out = apply(parse_spec("adversarial(budget=logstd)"), 1.5, w, seed=0, draws=[0], ctx=ctx)
    assert bool((out[W] > 0).all())  # a log-std budget above 1 keeps every sign


def test_the_search_runs_on_held_out_examples_of_every_class():
    from robustness.sweep.units import search_batch

    data = load_dataset(DatasetSpec())
    name, x, y = search_batch(data, "test")
    # the split is sorted by class: its first 32 examples would hold 4 of the 20 classes
    assert name == "validation" and x.shape[0] == 32 and len(set(y.tolist())) == 20
    assert search_batch(data, "validation")[0] == "train"


def test_examples_sets_the_search_batch_of_the_sweep(tiny_checkpoints, tmp_path, monkeypatch):
    import robustness.sweep.run as sweep
    from robustness.sweep.units import search_batch

    data = load_dataset(DatasetSpec())
    n_val = len(data.split("validation").y)
    assert search_batch(data, "test", 64)[1].shape[0] == 64
    assert search_batch(data, "test", n_val + 10)[1].shape[0] == n_val  # all of a smaller split

    asked = []
    monkeypatch.setattr(sweep, "search_batch", lambda d, split, n: asked.append(n) or search_batch(d, split, n))
    db = tmp_path / "adv.db"
    r = CliRunner().invoke(cli, ["sweep", "--model", str(tiny_checkpoints["adam"]), "--perturbation",
                                 "adversarial(examples=8,steps=2)", "--noise", "0.1", "--seeds", "2", "--modes",
                                 "point", "--limit", "40", "--store", str(db), "-q"])
    assert r.exit_code == 0, r.output
    assert asked == [8]
    with sqlite3.connect(db) as c:
        stored = {p for (p,) in c.execute("SELECT DISTINCT perturbation FROM cells WHERE level > 0")}
    # the random baseline searches nothing: one baseline serves every search size
    assert stored == {"adversarial(examples=8,steps=2)", "adversarial(steps=0)"}
    assert "weights (examples=8) budget 0.1: random" in r.output


def test_the_bma_random_baseline_is_the_search_start_one_chip_per_prediction(tiny_checkpoints, tmp_path, monkeypatch):
    """Under BMA the M posterior samples of a prediction share one chip, in the search and in
    its steps=0 baseline alike (else the baseline is another chip model and the gap is overstated)."""
    import robustness.sweep.units as sw
    from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep

    seen = []

    def recording(spec, level, t, **kw):
        out = apply(spec, level, t, **kw)
        seen.append((spec.label, out["blocks.0.v_th"] / t["blocks.0.v_th"]))
        return out

    monkeypatch.setattr(sw, "apply", recording)
    m = 3
    from robustness.sweep.config import random_baselines

    plans = [PerturbationPlan("adversarial(target=thresholds,steps=2)", (0.2,))]
    cfg = SweepConfig((str(tiny_checkpoints["ivon"]),), tuple(plans + random_baselines(plans)),
                      seeds=2, limit=40, mc_samples=m, modes=("bma",))
    run_sweep(cfg, str(tmp_path / "b.db"), progress=False)
    assert {label for label, _ in seen} == {"adversarial(target=thresholds,steps=2)",
                                            "adversarial(target=thresholds,steps=0)"}
    starts = {}
    for label, ratio in seen:
        per_chip = ratio.view(-1, m, ratio.shape[-1])  # [seeds, M samples, neurons]
        assert torch.equal(per_chip, per_chip[:, :1].expand_as(per_chip)), label  # one chip per prediction
        assert (per_chip - 1).abs().max() <= 0.2 + 1e-6
        starts[label] = per_chip
    random = starts["adversarial(target=thresholds,steps=0)"]
    assert not torch.equal(random[0], random[1])  # two seeds, two chips


def allowed_codes(w, chip, bits, eps):
    """Every stored weight is an n-bit code: the nearest, or a neighbour within eps LSBs of w."""
    from perturbations.quantize import grid_step

    step, qmax = grid_step(w, bits), 2 ** (bits - 1) - 1
    code, exact = chip / step, w / step
    assert float((code - code.round()).abs().max()) < 1e-4 and float(code.abs().max()) <= qmax + 1e-4
    code = code.round()
    near = (code == exact.clamp(-qmax, qmax).round()) | ((code - exact).abs() < eps + 1e-6)
    assert bool(near.all())
    return code


def test_quantized_worst_case_stores_codes_and_its_budget_bounds_stochastic_rounding(tiny_checkpoints):
    from perturbations.quantize import quantize_tensor

    base, losses, ctx = _setup(tiny_checkpoints)
    w = "blocks.1.linear.weight"
    found = apply(parse_spec("adversarial(target=quantized,bits=4,steps=4)"), 1.0, base, seed=2, draws=[0, 1, 2, 3], ctx=ctx)
    codes = allowed_codes(base[w], found[w], 4, 1.0)
    nearest = quantize_tensor(base[w], 4)
    assert float((found[w] != nearest).float().mean()) > 0.05  # the search used its freedom
    # stochastic rounding, the random model of the same grid, stays inside the 1-LSB budget
    stochastic = apply(parse_spec("quantize(rounding=stochastic):?"), 4, base, seed=0, draws=[0, 1, 2, 3], ctx=ctx)
    allowed_codes(base[w], stochastic[w], 4, 1.0)
    # level 0 is nearest rounding: the quantized chip, not the clean network
    zero = apply(parse_spec("adversarial(target=quantized,bits=4)"), 0.0, base, seed=2, draws=[0, 1, 2, 3], ctx=ctx)
    assert torch.equal(zero[w], nearest) and codes.shape == base[w].shape
