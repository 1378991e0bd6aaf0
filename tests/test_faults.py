"""The fault round: nothing lost, nothing invented, no traceback (one `Error:` line, exit 2)."""

import hashlib
import os
import shutil

import pytest
from click.testing import CliRunner

from robustness.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(r, match: str = "") -> None:
    assert r.exit_code == 2, f"exit {r.exit_code}: {r.output[-800:]}"
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output[-800:]
    assert match in errors[0], errors[0]


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def files(tiny_checkpoints, tmp_path_factory):
    """A store, a policy, a NIR graph and a checkpoint, each a command's input."""
    d = tmp_path_factory.mktemp("faults")
    model = d / "adam.pt"
    shutil.copy(tiny_checkpoints["adam"], model)
    store = d / "s.db"
    r = run("sweep", "--model", model, "--noise", "0.1", "--seeds", "2", "--limit", "20", "--modes", "point",
            "--out", store, "-q")
    assert r.exit_code == 0, r.output
    policy = d / "p.toml"
    assert run("check", store, "--policy", policy, "--init").exit_code == 0
    graph = d / "m.nir"
    assert run("export-nir", model, "--out", graph).exit_code == 0
    json_store = d / "results.json"  # a store whose name is the default export of --format json
    shutil.copy(store, json_store)
    os.link(store, d / "hard.db")
    return {"dir": d, "model": model, "store": store, "policy": policy, "graph": graph, "json_store": json_store}


OVERWRITES = {
    "export onto its store": ("store", lambda f: ["export", f["store"], "--out", f["store"]]),
    "export's default name is its store": ("json_store", lambda f: ["export", f["json_store"], "--format", "json"]),
    "export onto a hard link of its store": ("store", lambda f: ["export", f["store"], "--out", f["dir"] / "hard.db"]),
    "junit onto the store": ("store", lambda f: ["check", f["store"], "--policy", f["policy"], "--junit", f["store"]]),
    "markdown onto the policy": ("policy", lambda f: ["check", f["store"], "--policy", f["policy"], "--markdown",
                                                      f["policy"]]),
    "sweep store onto its checkpoint": ("model", lambda f: ["sweep", "--model", f["model"], "--noise", "0.1",
                                                            "--seeds", "1", "--limit", "8", "--out", f["model"], "-q"]),
    "slice store onto its checkpoint": ("model", lambda f: ["slice", "--model", f["model"], "--points", "3",
                                                            "--directions", "1", "--out", f["model"], "-q"]),
    "NIR export onto its checkpoint": ("model", lambda f: ["export-nir", f["model"], "--out", f["model"]]),
    "NIR import onto its graph": ("graph", lambda f: ["import", f["graph"], "--out", f["graph"]]),
    "report file onto its store": ("store", lambda f: ["report", f["dir"] / "summary.json", "--out", f["dir"]]),
}


@pytest.mark.parametrize("case", sorted(OVERWRITES))
def test_no_command_writes_over_its_own_input(files, case):
    key, args = OVERWRITES[case]
    if case.startswith("report"):  # a store named like a report file, in the report's folder
        shutil.copy(files["store"], files["dir"] / "summary.json")
        files = {**files, "store": files["dir"] / "summary.json"}
    before = digest(files[key])
    r = run(*args(files))
    one_error_line(r, "this command reads")
    assert digest(files[key]) == before
