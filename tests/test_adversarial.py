"""Worst-case perturbations: the analytic optimum on a linear control, the budget, never
below the random draw of the same budget, determinism, and the sweep end to end."""

import sqlite3

import torch
import torch.nn.functional as F
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.deploy import deploy_tensors
from models.network import ForwardOptions, forward_stacked
from perturbations.base import Context
from perturbations.spec import apply, parse_spec
from robustness.cli import cli
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
    return base, losses, Context(hidden + ("readout",), hidden, objective=lambda t: losses(t).sum())


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
                                 "--seeds", "3", "--modes", "point", "--out", str(db), "-q"])
    assert r.exit_code == 0, r.output
    with sqlite3.connect(db) as c:
        acc = dict(c.execute("SELECT perturbation, avg(accuracy) FROM cells WHERE level = 0.1 GROUP BY perturbation"))
        seeds = c.execute("SELECT count(*) FROM cells WHERE perturbation = 'adversarial'").fetchone()[0]
    assert seeds == 3
    assert acc["adversarial"] < acc["adversarial(steps=0)"] - 0.02
    # the random baseline of the same budget was added by the sweep; summary, report and JSON show the gap
    assert "Worst case vs random within the same budget" in r.output
    r = CliRunner().invoke(cli, ["report", str(db), "--out", str(tmp_path / "rep"), "-q"])
    assert r.exit_code == 0, r.output
    import json

    gaps = json.loads((tmp_path / "rep" / "summary.json").read_text())["attack_gaps"]
    assert [g["level"] for g in gaps] == [0.1] and gaps[0]["gap"] > 0.02
    assert "worst-case accuracy" in (tmp_path / "rep" / "report.md").read_text()


def test_the_random_baseline_is_added_once():
    from robustness.sweep_config import PerturbationPlan, random_baselines

    plans = [PerturbationPlan("adversarial", (0.1,)), PerturbationPlan("adversarial(target=thresholds,steps=4)", (0.2,)),
             PerturbationPlan("gaussian", (0.1,))]
    assert [p.spec for p in random_baselines(plans)] == ["adversarial(steps=0)",
                                                         "adversarial(target=thresholds,steps=0)"]
    assert random_baselines(plans + random_baselines(plans)) == []
