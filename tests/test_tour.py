"""A newcomer's tour: each number or sentence the report and the CLI print says what was measured."""

import collections
import json

from click.testing import CliRunner

from robustness.cli import cli
from robustness.data import DatasetSpec, load_dataset


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_limit_takes_a_stratified_seeded_subset_and_says_so(tiny_checkpoints, tmp_path):
    test = load_dataset(DatasetSpec()).split("test")
    assert len(set(test.head(100).y.tolist())) == 12  # the first 100 clips: 12 of 20 classes
    sub = test.stratified(100)
    counts = collections.Counter(sub.y.tolist())
    assert len(counts) == 20 and set(counts.values()) == {5}
    assert sub.y.tolist() == test.stratified(100).y.tolist() and (sub.x == test.stratified(100).x).all()  # seeded
    r = run("sweep", "--model", tiny_checkpoints["adam"], "--noise", "0.1", "--seeds", 1, "--limit", 100,
            "--modes", "point", "--store", tmp_path / "s.db", "-q")
    assert r.exit_code == 0 and "scored on a class-stratified, seeded subset of 100 of the 540 test" in r.output
    r = run("eval", "--model", tiny_checkpoints["adam"], "--limit", 100)
    assert r.exit_code == 0 and "class-stratified, seeded subset of 100" in r.output


def test_a_dt_that_contradicts_the_graph_is_refused_unless_overridden(tiny_checkpoints, tmp_path):
    graph = tmp_path / "m.nir"
    assert run("export-nir", "--model", tiny_checkpoints["adam"], "--out", graph).exit_code == 0  # dt 10 ms in its metadata
    r = run("import", graph, "--out", tmp_path / "a.pt", "--dt", "0.001", "-q")
    assert r.exit_code == 2 and "--dt 0.001 s contradicts the graph's own time step of 0.01 s" in r.output
    assert not (tmp_path / "a.pt").exists()
    r = run("import", graph, "--out", tmp_path / "b.pt", "--dt", "0.001", "--override-dt", "-q")
    assert r.exit_code == 0 and "warning: simulating at dt 0.001 s, not the graph's own 0.01 s" in r.output
    assert run("import", graph, "--out", tmp_path / "c.pt", "--dt", "0.01", "-q").exit_code == 0  # agrees: fine


def test_a_deterministic_perturbation_runs_no_chips_control_and_says_so(tiny_checkpoints, tmp_path):
    db = tmp_path / "q.db"
    r = run("sweep", "--model", tiny_checkpoints["adam"], "--perturbation", "quantize", "--bits", "3,6", "--seeds", 4,
            "--limit", 40, "--store", db, "-q", "--json")
    assert r.exit_code == 0, r.output
    curves = json.loads(r.output)["curves"]
    assert [c["mode"] for c in curves] == ["point"] and curves[0]["deterministic"]
    assert all(lv["n"] == 1 for lv in curves[0]["levels"])  # one network per level, whatever --seeds says
    r = run("report", "--store", db, "--out", tmp_path / "rep", "-q")
    assert r.exit_code == 0
    assert "deterministic: one network per level, so no interval over chips" in (tmp_path / "rep" / "report.md").read_text()


def test_an_unusable_gate_still_writes_junit_saying_why(tiny_checkpoints, tmp_path):
    import xml.etree.ElementTree as ET

    db = tmp_path / "s.db"
    assert run("sweep", "--model", tiny_checkpoints["adam"], "--noise", "0.1", "--seeds", 2, "--limit", 20,
               "--modes", "point", "--store", db, "-q").exit_code == 0
    policy = tmp_path / "bad.toml"
    policy.write_text('[[rule]]\nkind = "min_accuracy"\nthreshold = "high"\n')
    junit = tmp_path / "j.xml"
    r = run("check", "--store", db, "--policy", policy, "--junit", junit)
    assert r.exit_code == 2
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("errors") == "1" and suite.get("skipped") == "0" and float(suite.get("time")) >= 0
    assert "rule 1 (min_accuracy): missing level, model, perturbation" in suite.find("testcase/error").get("message")
    good = tmp_path / "good.toml"
    assert run("check", "--store", db, "--init", "--policy", good).exit_code == 0
    assert run("check", "--store", db, "--policy", good, "--junit", junit).exit_code == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("skipped") == "0" and suite.get("time") is not None


def test_a_starter_policy_never_demands_improvement_and_says_how_each_threshold_was_chosen(tiny_checkpoints, tmp_path):
    import sqlite3
    import tomllib
    from contextlib import closing

    db = tmp_path / "q.db"
    assert run("sweep", "--model", tiny_checkpoints["adam"], "--perturbation", "quantize", "--bits", "3,6",
               "--limit", 60, "--store", db, "-q").exit_code == 0
    with closing(sqlite3.connect(db)) as c, c:  # quantization that happened to help: accuracy above clean
        clean = c.execute("SELECT accuracy FROM cells WHERE perturbation = 'clean' AND mode = 'point'").fetchone()[0]
        c.execute("UPDATE cells SET accuracy = ? WHERE perturbation = 'quantize'", (clean + 0.05,))
    policy = tmp_path / "p.toml"
    assert run("check", "--store", db, "--init", "--policy", policy).exit_code == 0
    text = policy.read_text()
    drops = [r for r in tomllib.loads(text)["rule"] if r["kind"] == "max_drop"]
    assert drops and all(r["threshold"] >= 0.01 for r in drops)  # never a negative allowance
    assert "(counted as 0: accuracy rose)" in text and text.count("# chosen:") == len(tomllib.loads(text)["rule"])
    assert run("check", "--store", db, "--policy", policy).exit_code == 0  # and it passes on the store it came from


def test_a_per_layer_sweep_is_reported_as_layer_sensitivity(tiny_checkpoints, tmp_path):
    db = tmp_path / "l.db"
    assert run("sweep", "--model", tiny_checkpoints["adam"], "--noise", "0.1,0.3", "--per-layer", "--seeds", 2,
               "--limit", 40, "--modes", "point", "--store", db, "-q").exit_code == 0
    out = tmp_path / "rep"
    assert run("report", "--store", db, "--out", out, "-q").exit_code == 0
    md = (out / "report.md").read_text()
    assert "No sweep in this store" not in md and "Layer sensitivity, gaussian" in md
    assert "figures/run1-gaussian-layers.png" in md and (out / "figures" / "run1-gaussian-layers.png").exists()
    layers = json.loads((out / "summary.json").read_text())["layer_sensitivity"][0]["curves"]
    assert sorted(c["layer"] for c in layers) == ["blocks.0", "blocks.1", "readout"]


def test_two_levels_show_both_in_the_tables_and_diagrams(tiny_checkpoints, tmp_path):
    db = tmp_path / "two.db"
    assert run("sweep", "--model", tiny_checkpoints["adam"], "--noise", "0.05,0.1", "--seeds", 2, "--limit", 40,
               "--modes", "point", "--store", db, "-q").exit_code == 0
    assert run("report", "--store", db, "--out", tmp_path / "rep", "-q").exit_code == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "dECE (chip mean) @0.05 | dECE (chip mean) @0.1" in md and "@0.1 | dECE (chip mean) @0.1" not in md
    assert "| gaussian 0.05 |" in md and "| gaussian 0.1 |" in md  # both reliability conditions


def test_every_command_takes_the_shared_names_and_old_spellings_still_work_with_a_warning(tiny_checkpoints, tmp_path):
    adam, ivon = tiny_checkpoints["adam"], tiny_checkpoints["ivon"]
    store = tmp_path / "s.db"
    new = [["sweep", "--model", adam, "--noise", "0.1", "--seeds", 1, "--limit", 20, "--modes", "point",
            "--store", store, "--threads", 1, "-q"],
           ["slice", "--model", adam, "--points", 3, "--directions", 1, "--batches", 1, "--batch-size", 8,
            "--store", store, "-q"],
           ["report", "--store", store, "--out", tmp_path / "rep", "-q"],
           ["check", "--store", store, "--init", "--policy", tmp_path / "p.toml", "-q"],
           ["check", "--store", store, "--policy", tmp_path / "p.toml", "-q"],
           ["export", "--store", store, "--out", tmp_path / "e.csv", "-q"],
           ["posterior", "--model", ivon, "-q"],
           ["export-nir", "--model", adam, "--out", tmp_path / "m.nir", "-q"],
           ["eval", "--model", adam, "--limit", 20, "-q"]]
    for args in new:
        r = run(*args)
        assert r.exit_code == 0 and "deprecated" not in r.output, (args[0], r.output[-300:])
    old = [["sweep", "--model", adam, "--noise", "0.2", "--seeds", 1, "--limit", 20, "--modes", "point",
            "--out", store, "--workers", 1, "-q"],
           ["report", store, "--out", tmp_path / "rep2", "-q"],
           ["export", store, "--out", tmp_path / "e2.csv"],
           ["posterior", ivon],
           ["export-nir", adam, "--out", tmp_path / "m2.nir"]]
    for args in old:
        r = run(*args)
        assert r.exit_code == 0 and "is deprecated here; use" in r.output, (args[0], r.output[-300:])
    r = run("report", store, "--store", tmp_path / "other.db", "--out", tmp_path / "rep3")
    assert r.exit_code == 2 and "give one" in r.output


def test_help_texts_say_what_the_commands_do():
    from robustness import demo
    from robustness.cli_report import FAST_EPOCHS

    assert FAST_EPOCHS == demo.FAST.epochs
    assert "95%%" not in run("sweep", "-h").output and "95% interval" in run("sweep", "-h").output
    assert "mps" in run("eval", "-h").output
    assert "sigmoid((v - v_th) / T)" in run("slice", "-h").output.replace("\n", " ").replace("  ", " ")


def test_the_sweep_bar_counts_the_cells_it_runs(tiny_checkpoints, tmp_path, monkeypatch):
    """A deterministic perturbation runs one network per level and no chips: the bar's total
    says so, and it ends full (the demo's bar used to stop at 161 of 185)."""
    import robustness.sweep as sweep
    from robustness.sweep import PerturbationPlan, SweepConfig, run_sweep

    seen = {}

    class Bar:
        def __init__(self, total=None, **_):
            seen["total"], seen["done"] = total, 0

        def update(self, n=1):
            seen["done"] += n

        def close(self):
            pass

    monkeypatch.setattr(sweep, "progress_bar", Bar)
    cfg = SweepConfig((str(tiny_checkpoints["adam"]), str(tiny_checkpoints["ivon"])),
                      (PerturbationPlan("gaussian", (0.05, 0.1)), PerturbationPlan("quantize", (3.0, 6.0), "linear")),
                      seeds=3, mc_samples=2, limit=30, skip_at_chance=False)
    res = run_sweep(cfg, tmp_path / "s.db", progress=True)
    assert seen["done"] == seen["total"] == res.new_cells
