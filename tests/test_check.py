"""`robust check`: the CI gate (policy rules, baseline, JUnit, Markdown, --init, exit codes)."""

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint, save_checkpoint
from models.model_config import ModelConfig
from models.network import SpikingNet
from robustness.cli.main import cli
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def store(tiny_checkpoints, tmp_path_factory):
    db = tmp_path_factory.mktemp("chk") / "r.db"
    run_sweep(SweepConfig((str(tiny_checkpoints["adam"]),), (PerturbationPlan("gaussian", (0.05, 0.1, 0.2)),),
                          seeds=3, limit=80), str(db), progress=False)
    return db


def rule(**kw) -> str:
    return "[[rule]]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in kw.items())


def test_init_policy_passes_and_writes_junit_and_markdown(store, tmp_path):
    pol = tmp_path / "robust.toml"
    assert run("check", "--store", store, "--init", "--policy", pol).exit_code == 0
    assert run("check", "--store", store, "--init", "--policy", pol).exit_code == 2  # never overwrites
    r = run("check", "--store", store, "--policy", pol, "--junit", tmp_path / "j.xml", "--markdown", tmp_path / "s.md")
    assert r.exit_code == 0, r.output
    n_rules = pol.read_text().count("\n[[rule]]") + pol.read_text().startswith("[[rule]]")
    assert r.output.count("PASS") == n_rules >= 3
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) == n_rules and suite.get("failures") == "0"
    assert "all" in (tmp_path / "s.md").read_text()


def test_failing_rule_exits_1_with_the_observed_value(store, tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text(rule(kind="min_accuracy", model="adam.pt", perturbation="gaussian", level=0.1, threshold=1.01)
                   + rule(kind="max_drop", model="adam.pt", perturbation="gaussian", level=0.05, threshold=1.0))
    r = run("check", "--store", store, "--policy", pol, "--junit", tmp_path / "j.xml")
    assert r.exit_code == 1
    assert "FAIL  min_accuracy adam.pt gaussian 0.1: accuracy 0." in r.output and "(needs >= 1.01)" in r.output
    assert "PASS  max_drop" in r.output
    failure = ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/failure")
    assert "accuracy" in failure.get("message")


def test_unusable_policies_exit_2(store, tmp_path):
    cases = [
        (rule(kind="max_speed", model="adam.pt"), "unknown kind"),
        (rule(kind="baseline", metric="f1"), "unknown metric"),
        (rule(kind="min_accuracy", model="adam.pt", perturbation="pcm", level=0.1, threshold=0.5), "'pcm' is not"),
        (rule(kind="min_accuracy", model="adam.pt", perturbation="gaussian", level=0.07, threshold=0.5),
         "level 0.07"),
        (rule(kind="min_accuracy", model="ivon.pt", perturbation="gaussian", level=0.1, threshold=0.5), "'ivon.pt'"),
        (rule(kind="min_auc", model="adam.pt", perturbation="gaussian"), "missing threshold"),
        ("not toml [[", "not valid TOML"),
        ("", "no [[rule]]"),
    ]
    for text, msg in cases:
        pol = tmp_path / "bad.toml"
        pol.write_text(text)
        r = run("check", "--store", store, "--policy", pol)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, (text, r.output)


def test_baseline_regression_and_architecture(store, tiny_checkpoints, tmp_path):
    pol = tmp_path / "b.toml"
    pol.write_text(rule(kind="baseline", metric="accuracy", tolerance=0.0))
    assert run("check", "--store", store, "--policy", pol, "--baseline", store).exit_code == 0
    # A rule with nothing to judge fails, it never passes.
    pol2 = tmp_path / "b2.toml"
    pol2.write_text(rule(kind="baseline", model="adam.pt", perturbation="gaussian", mode="bma"))
    r = run("check", "--store", store, "--policy", pol2, "--baseline", store)
    assert r.exit_code == 1 and "no curve in common" in r.output
    assert run("check", "--store", store, "--policy", pol).exit_code == 2  # baseline rule without --baseline
    # The same file name, another architecture: not comparable.
    other = tmp_path / "other" / "adam.pt"
    other.parent.mkdir()
    ck = load_checkpoint(tiny_checkpoints["adam"])
    save_checkpoint(other, SpikingNet(ModelConfig(hidden=(16, 16)), torch.Generator().manual_seed(0)),
                    train_config=ck.train_config, dataset=ck.dataset, features=ck.features, classes=ck.classes,
                    history=[], package_version="test")
    bdb = tmp_path / "base.db"
    run_sweep(SweepConfig((str(other),), (PerturbationPlan("gaussian", (0.1,)),), seeds=2, limit=40), str(bdb),
              progress=False)
    r = run("check", "--store", store, "--policy", pol, "--baseline", bdb)
    assert r.exit_code == 2 and "another architecture" in r.output


@pytest.mark.slow
def test_example_ci_workflow_gates(tmp_path):
    env = {**os.environ, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}", "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(["bash", str(ROOT / "examples/ci/run.sh"), str(tmp_path / "work")], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed, 0 failed" in r.stdout
    assert ET.parse(tmp_path / "work" / "junit.xml").getroot().find("testsuite").get("tests") == "3"
