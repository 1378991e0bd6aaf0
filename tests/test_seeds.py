"""Training seeds as a level of replication: seed sets, their statistics and the claims."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from basics.replicates import compare, seed_sets
from models.checkpoint import load_checkpoint
from robustness.cli.main import cli

TINY = ["--epochs", "1", "--hidden", "16,16", "--limit-train", "200", "-q"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    for opt in ("adam", "ivon"):
        r = run("train", "--optimizer", opt, "--seeds", "0:2", "--out", d / f"{opt}.pt", *TINY)
        assert r.exit_code == 0, r.output
    r = run("train", "--ensemble", 2, "--seeds", "0,2,4", "--out", d / "ens.pt", *TINY)
    assert r.exit_code == 0, r.output
    return d


@pytest.mark.slow
def test_train_seeds_writes_each_seed_exactly_and_resumes(sets, tmp_path):
    d = sets
    assert sorted(p.name for p in d.glob("adam-seed*.pt")) == ["adam-seed0.pt", "adam-seed1.pt", "adam-seed2.pt"]
    manifest = json.loads((d / "adam.seeds.json").read_text())
    assert manifest["seeds"] == [0, 1, 2] and [m["path"] for m in manifest["members"]] == \
        ["adam-seed0.pt", "adam-seed1.pt", "adam-seed2.pt"]
    assert run("train", "--seed", 1, "--out", tmp_path / "one.pt", *TINY).exit_code == 0
    assert load_checkpoint(tmp_path / "one.pt").content_hash == load_checkpoint(d / "adam-seed1.pt").content_hash
    r = run("train", "--seeds", "0:3", "--out", d / "adam.pt", *TINY)  # only seed 3 is new
    assert r.exit_code == 0, r.output
    assert r.output.count("kept ") == 3 and "adam-seed3.pt" in r.output
    assert json.loads((d / "adam.seeds.json").read_text())["seeds"] == [0, 1, 2, 3]
    r = run("train", "--seeds", "0:1", "--out", d / "adam.pt", "--epochs", "2", "--hidden", "16,16",
            "--limit-train", "200", "-q")  # seed 0 exists, trained for 1 epoch: never overwritten
    assert r.exit_code == 2 and "already holds a model trained otherwise (epochs = 1, not 2)" in r.output
    assert len(r.output.strip().splitlines()) == 1
    (d / "adam-seed3.pt").unlink()
    run("train", "--seeds", "0:2", "--out", d / "adam.pt", *TINY)  # the manifest back to 3 seeds


def test_ensemble_replicates_never_share_a_member(tmp_path):
    r = run("train", "--ensemble", 3, "--seeds", "0:2", "--out", tmp_path / "ens.pt", *TINY)
    assert r.exit_code == 2 and "would share ensemble members" in r.output and "0,3,6" in r.output
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_eval_takes_a_set_as_one_method_with_seed_intervals(sets):
    d = sets
    r = run("eval", "--model", d / "adam.seeds.json", "--model", str(d / "ivon-seed*.pt"), "--limit", 60,
            "--mc-samples", 2, "-q")
    assert r.exit_code == 0, r.output
    assert "adam point (3 seeds: 0, 1, 2): accuracy" in r.output and "ivon bma (3 seeds: 0, 1, 2)" in r.output
    out = json.loads(run("eval", "--model", d / "adam.seeds.json", "--limit", 60, "-q", "--json").output)
    (s,) = out["seed_sets"]
    accs = [m["modes"][0]["metrics"]["accuracy"]["value"] for m in out["models"]]
    mean, half = s["modes"][0]["metrics"]["accuracy"]["mean"], s["modes"][0]["metrics"]["accuracy"]["seeds_ci95"]
    assert s["seeds"] == [0, 1, 2] and mean == pytest.approx(np.mean(accs))
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * np.std(accs, ddof=1) / np.sqrt(3))
    r = run("eval", "--model", str(d / "nothing-seed*.pt"))
    assert r.exit_code == 2 and "the pattern matches no file" in r.output


@pytest.mark.slow
def test_sweep_and_report_test_the_claims_over_seeds(sets, tmp_path):
    d = sets
    db = tmp_path / "s.db"
    r = run("sweep", "--model", d / "adam.seeds.json", "--model", d / "ivon.seeds.json", "--model",
            d / "ens.seeds.json", "--noise", "0.05,0.2",
            "--seeds", 2, "--limit", 40, "--mc-samples", 2, "--store", db, "-q")
    assert r.exit_code == 0, r.output
    r = run("report", "--store", db, "--out", tmp_path / "rep", "-q")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    seeds = summary["seeds"]
    assert [(s["name"], s["seeds"]) for s in seeds["sets"]] == [("adam", [0, 1, 2]), ("ivon", [0, 1, 2]),
                                                                ("ens", [0, 2, 4])]
    claims = {(h["metric"], h["b"]): h for h in seeds["hypotheses"]}
    assert set(claims) == {(m, f"adam {mode}") for m in ("nll", "brier", "normalised AUC") for mode in ("point",)} | \
        {("normalised AUC", "adam chips")} | {(m, "ens ensemble") for m in ("nll", "brier", "normalised AUC")}
    nll = claims[("nll", "adam point")]
    assert nll["comparison"]["test"] == "paired t over 3 seeds"  # same seed, same initial network
    assert nll["compute"] == "2 vs 1 networks per prediction"
    assert claims[("normalised AUC", "adam chips")]["compute"] == "equal compute (2 networks)"
    # an ensemble starts as two networks: never paired with single networks by seed index
    assert claims[("nll", "ens ensemble")]["comparison"]["test"] == "Welch t, 3 vs 3 seeds"
    assert nll["status"] in ("held", "inside the noise", "not held (the opposite is significant)")
    assert summary["verdict"][0] == "Training seeds: adam 3 seeds, ivon 3 seeds, ens 3 seeds."
    assert any(line.startswith("Claim: IVON BMA has lower clean NLL than Adam") for line in summary["verdict"])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## 7. Training seeds" in md and "± seeds" in md
    # the README's tables come from this script: every claim the report tested is a row of it
    script = Path(__file__).resolve().parents[1] / "examples" / "seed_tables.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "rep" / "summary.json")], capture_output=True,
                         text=True, check=True).stdout
    assert out.count("| IVON BMA") == len(seeds["hypotheses"]) and "| ens ensemble | 3 |" in out


def test_single_runs_say_the_verdict_ignores_training_variance(tiny_checkpoints, tmp_path):
    db = tmp_path / "one.db"
    assert run("sweep", "--model", tiny_checkpoints["adam"], "--noise", "0.1", "--seeds", 2, "--limit", 30,
               "--store", db, "-q").exit_code == 0
    r = run("report", "--store", db, "--out", tmp_path / "rep", "-q")
    verdict = json.loads((tmp_path / "rep" / "summary.json").read_text())["verdict"]
    assert r.exit_code == 0 and verdict[0].startswith("Training seeds: every model is one training run")


def test_paired_and_unpaired_comparisons_match_scipy():
    a, b = {0: 0.90, 1: 0.85, 2: 0.88, 3: 0.91}, {0: 0.86, 1: 0.84, 2: 0.83, 3: 0.90}
    p = compare(a, b, paired=True)
    assert p.p == pytest.approx(stats.ttest_rel(list(a.values()), list(b.values())).pvalue)
    assert p.diff == pytest.approx(np.mean([a[k] - b[k] for k in a])) and p.test == "paired t over 4 seeds"
    u = compare(a, {5: 0.80, 6: 0.82, 7: 0.79}, paired=True)  # no common seed: unpaired
    assert u.p == pytest.approx(stats.ttest_ind(list(a.values()), [0.80, 0.82, 0.79], equal_var=False).pvalue)
    assert u.test == "Welch t, 4 vs 3 seeds" and u.lo < u.diff < u.hi
    assert compare({0: 0.9}, {0: 0.8}, paired=True) is None


def test_sets_are_grouped_by_training_configuration_not_by_name():
    def meta(path, seed, epochs=8, opt="adam"):
        return {"path": path, "optimizer": opt, "hidden": [256, 256], "dataset": "tts-digits",
                "train_config": {"seed": seed, "epochs": epochs, "kernel": "native" if seed else "eager"}}
    ms = [meta("a.pt", 0), meta("b.pt", 1), meta("c.pt", 2, epochs=30), meta("d.pt", 5)]
    got = seed_sets(ms, {m["path"]: m["path"] for m in ms})
    assert [(s.seeds, sorted(s.members.values())) for s in got] == [([0, 1, 5], ["a.pt", "b.pt", "d.pt"]),
                                                                   ([2], ["c.pt"])]


@pytest.mark.slow
def test_check_baseline_against_a_seed_set_judges_by_the_seeds_spread(sets, tmp_path):
    """A new model of the same method passes while it lies within the baseline seeds' spread
    (plus the tolerance), even when it is below their mean; outside it, it fails."""
    d = sets
    base, new = tmp_path / "base.db", tmp_path / "new.db"
    common = ["--noise", "0.1", "--seeds", 2, "--limit", 40, "--modes", "point", "-q"]
    assert run("sweep", "--model", d / "adam.seeds.json", *common, "--store", base).exit_code == 0
    assert run("train", "--seed", 7, "--out", tmp_path / "adam-seed7.pt", *TINY).exit_code == 0
    assert run("sweep", "--model", tmp_path / "adam-seed7.pt", *common, "--store", new).exit_code == 0
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nkind = "baseline"\nmetric = "accuracy"\ntolerance = 1.0\n')
    r = run("check", "--store", new, "--policy", policy, "--baseline", base)
    assert r.exit_code == 0 and "baseline seeds" in r.output and "(3 seeds)" in r.output, r.output
    policy.write_text('[[rule]]\nkind = "baseline"\nmetric = "accuracy"\ntolerance = -1.0\n')  # nothing passes
    r = run("check", "--store", new, "--policy", policy, "--baseline", base)
    assert r.exit_code == 1 and "baseline seeds" in r.output, r.output
