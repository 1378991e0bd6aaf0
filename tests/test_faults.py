"""The fault round: nothing lost, nothing invented, no traceback (one `Error:` line, exit 2)."""

import hashlib
import os
import shutil

import pytest
from click.testing import CliRunner

from robustness.cli.main import cli


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
            "--store", store, "-q")
    assert r.exit_code == 0, r.output
    policy = d / "p.toml"
    assert run("check", "--store", store, "--policy", policy, "--init").exit_code == 0
    graph = d / "m.nir"
    assert run("export-nir", "--model", model, "--out", graph).exit_code == 0
    json_store = d / "results.json"  # a store whose name is the default export of --format json
    shutil.copy(store, json_store)
    os.link(store, d / "hard.db")
    return {"dir": d, "model": model, "store": store, "policy": policy, "graph": graph, "json_store": json_store}


OVERWRITES = {
    "export onto its store": ("store", lambda f: ["export", "--store", f["store"], "--out", f["store"]]),
    "export's default name is its store": ("json_store", lambda f: ["export", "--store", f["json_store"], "--format", "json"]),
    "export onto a hard link of its store": ("store", lambda f: ["export", "--store", f["store"], "--out", f["dir"] / "hard.db"]),
    "junit onto the store": ("store", lambda f: ["check", "--store", f["store"], "--policy", f["policy"], "--junit", f["store"]]),
    "markdown onto the policy": ("policy", lambda f: ["check", "--store", f["store"], "--policy", f["policy"], "--markdown",
                                                      f["policy"]]),
    "sweep store onto its checkpoint": ("model", lambda f: ["sweep", "--model", f["model"], "--noise", "0.1",
                                                            "--seeds", "1", "--limit", "8", "--store", f["model"], "-q"]),
    "slice store onto its checkpoint": ("model", lambda f: ["slice", "--model", f["model"], "--points", "3",
                                                            "--directions", "1", "--store", f["model"], "-q"]),
    "NIR export onto its checkpoint": ("model", lambda f: ["export-nir", "--model", f["model"], "--out", f["model"]]),
    "NIR import onto its graph": ("graph", lambda f: ["import", f["graph"], "--out", f["graph"]]),
    "report file onto its store": ("store", lambda f: ["report", "--store", f["dir"] / "summary.json", "--out", f["dir"]]),
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


# --- numbers invented with exit 0 ------------------------------------------------------------

def test_level_ranges_keep_tiny_and_huge_levels_as_asked():
    from basics.ranges import parse_levels

    assert parse_levels("1e-15:1e-9:7log") == [1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9]
    assert parse_levels("1.5e-12:2.6e-12:3") == [1.5e-12, 2.05e-12, 2.6e-12]
    assert parse_levels("1e200:1e300:3log") == [1e200, 1e250, 1e300]
    assert parse_levels("0.01:0.1:4") == [0.01, 0.04, 0.07, 0.1]  # and decimals still come out clean


def _edited_checkpoint(src, dst, edit):
    import torch

    obj = torch.load(src, weights_only=True)
    edit(obj)
    torch.save(obj, dst)
    return dst


@pytest.mark.parametrize("what,edit,match", [
    ("nan alpha_min", lambda o: o["model_config"].update(alpha_min=float("nan")), "alpha_min must be in [0, 1]"),
    ("nan threshold", lambda o: o["model_config"].update(threshold=float("nan")), "threshold must be a positive"),
    ("negative bn_eps", lambda o: o["model_config"].update(bn_eps=-10.0), "bn_eps must be a positive"),
    ("zero-width layer", lambda o: o["model_config"].update(hidden=[32, 0]), "hidden layer widths must be positive"),
    ("negative variance", lambda o: o["state_dict"]["blocks.0.bn.running_var"].fill_(-1.0),
     "blocks.0.bn.running_var holds negative variances"),
    ("weights x 1e38", lambda o: [v.mul_(1e38) for k, v in o["state_dict"].items() if k.endswith("linear.weight")],
     "non-finite outputs on clean inputs"),
])
def test_checkpoints_that_would_invent_numbers_are_refused(tiny_checkpoints, tmp_path, what, edit, match):
    bad = _edited_checkpoint(tiny_checkpoints["adam"], tmp_path / "bad.pt", edit)
    one_error_line(run("eval", "--model", bad, "--limit", "20"), match)
    store = tmp_path / "s.db"
    one_error_line(run("sweep", "--model", bad, "--noise", "0.1", "--seeds", "1", "--limit", "20", "--store", store,
                       "-q"), match)
    assert not store.exists()  # refused before the store opened


def test_an_ivon_ess_below_one_example_is_refused(tiny_checkpoints, tmp_path):
    bad = _edited_checkpoint(tiny_checkpoints["ivon"], tmp_path / "bad.pt", lambda o: o["posterior"].update(ess=1e-300))
    one_error_line(run("eval", "--model", bad, "--limit", "20"), "'ess' 1e-300 is below 1")


@pytest.mark.parametrize("body,match", [
    ("levels = [inf]", "is not finite"),
    ('levels = ["abc"]', "must be a list of numbers"),
    ("levels = [{a = 1}]", "must be a list of numbers"),
    ("levels = []", "holds no level"),
    ("levels = [0.1]\nlevles = 2", "unknown key 'levles'; did you mean 'levels'?"),
])
def test_perturbation_tables_are_checked_like_flags(files, tmp_path, body, match):
    toml = tmp_path / "s.toml"
    toml.write_text(f'[[perturbation]]\nspec = "gaussian"\n{body}\n')
    one_error_line(run("sweep", "--model", files["model"], "--config", toml, "--store", tmp_path / "x.db"), match)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("body,match", [
    ('[[perturbation]]\nspec = 5\nlevels = [0.1]', "spec = 5 must be a spec string"),
    ("seeds = 99999999999", "--seeds must be from 1 to 100,000"),
    ("mc_samples = 99999999999", "mc_samples must be <= 10000"),
    ("workers = 99999999999", "workers must be <= 1024"),
    ("seed = 99999999999999999999", "seed must be <= 9223372036854775807"),
    ("layers = " + "[" * 5000 + "]" * 5000, "nested too deep"),
])
def test_config_values_that_cannot_run_are_refused(files, tmp_path, body, match):
    toml = tmp_path / "s.toml"
    toml.write_text(body + "\n")
    one_error_line(run("sweep", "--model", files["model"], "--noise", "0.1", "--config", toml,
                       "--store", tmp_path / "x.db"), match)
    assert not (tmp_path / "x.db").exists()


def test_a_policy_nested_too_deep_is_one_line(files, tmp_path):
    policy = tmp_path / "deep.toml"
    policy.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    one_error_line(run("check", "--store", files["store"], "--policy", policy), "nested too deep")


# --- values that exhaust memory or never end -------------------------------------------------

@pytest.mark.parametrize("args,match", [
    (["sweep", "--noise", "0:1:99999999999"], "at most 1000 per range"),
    (["sweep", "--perturbation", "quantize", "--bits", "1:99999999999"], "at most 1000 per range"),
    (["sweep", "--perturbation", "read-noise", "--noise", "1e300"], "out of range 0..1e+06"),
    (["sweep", "--perturbation", "adversarial(steps=99999999999)", "--noise", "0.1"], "from 0 to 1000"),
    (["sweep", "--perturbation", "bitflip(bits=nan)", "--noise", "0.1"], "bits must be an integer from 2 to 16"),
    (["sweep", "--perturbation", "quantize(clip=nan)", "--bits", "4"], "clip must be a percentile"),
    (["slice", "--points", "100000", "--dims", "2"], "at most 100,000"),
    (["slice", "--span", "-inf:inf"], "must be finite numbers within +-1000"),
    (["slice", "--span", "-1e300:1e300"], "must be finite numbers within +-1000"),
    (["train", "--seed", str(2**63), "--epochs", "1"], "must be <= 9223372036854775807"),
    (["eval", "--seed", str(2**64)], "must be <= 9223372036854775807"),
    (["slice", "--seed", str(2**63)], "must be <= 9223372036854775807"),
])
def test_counts_are_bounded_by_what_a_machine_can_hold(files, tmp_path, args, match):
    model_flag = [] if args[0] == "train" else ["--model", files["model"]]
    out = ["--out", tmp_path / "o.db"] if args[0] in ("sweep", "slice") else ["--out", tmp_path / "o.pt"] \
        if args[0] == "train" else []
    one_error_line(run(*args, *model_flag, *out), match)


def test_frames_beyond_memory_are_refused():
    one_error_line(run("data", "info", "--frames", "999999999"), "frames must be from 1 to 10000")


# --- a full disk and paths the file system refuses -------------------------------------------

def _limited(args, limit_bytes, cwd):
    """The command in a process whose writes past `limit_bytes` fail (EFBIG), as on a full disk."""
    import resource
    import signal
    import subprocess
    import sys

    def lim():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "robustness.cli", *map(str, args)], preexec_fn=lim, cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["train", "report", "export", "check --init", "export-nir"])
def test_a_full_disk_is_one_line_and_leaves_nothing_behind(files, tmp_path, case):
    out = tmp_path / "out"
    out.mkdir()
    target = {"train": out / "m.pt", "report": out / "rep", "export": out / "e.csv", "check --init": out / "p.toml",
              "export-nir": out / "m.nir"}[case]
    args = {"train": ["train", "--epochs", "1", "--limit-train", "40", "--hidden", "8", "--out", target, "-q"],
            "report": ["report", "--store", files["store"], "--out", target, "-q"],
            "export": ["export", "--store", files["store"], "--out", target],
            "check --init": ["check", "--store", files["store"], "--init", "--policy", target],
            "export-nir": ["export-nir", "--model", files["model"], "--out", target]}[case]
    r = _limited(args, 64, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("Error:") and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, \
        r.stderr[-800:]
    assert list(out.iterdir()) == []  # no temporary file, no empty report folder


LONG = "x" * 300


@pytest.mark.parametrize("case", ["eval", "sweep", "train", "report", "export", "export-nir", "check --junit"])
def test_paths_the_file_system_refuses_are_one_line(files, tmp_path, case):
    deep = tmp_path / "/".join(["d" * 200] * 25) / "f"
    args = {"eval": ["eval", "--model", tmp_path / f"{LONG}.pt"],
            "sweep": ["sweep", "--model", files["model"], "--noise", "0.1", "--store", tmp_path / f"{LONG}.db"],
            "train": ["train", "--epochs", "1", "--out", deep],
            "report": ["report", "--store", files["store"], "--out", tmp_path / LONG],
            "export": ["export", "--store", files["store"], "--out", tmp_path / f"{LONG}.csv"],
            "export-nir": ["export-nir", "--model", files["model"], "--out", deep],
            "check --junit": ["check", "--store", files["store"], "--policy", files["policy"], "--junit", tmp_path / LONG]}[case]
    one_error_line(run(*args))


# --- read-only stores ------------------------------------------------------------------------

def _v2_copy(store, dst):
    """The store as an older schema (v2 lacks the example_confidence column)."""
    import sqlite3
    from contextlib import closing

    shutil.copy(store, dst)
    with closing(sqlite3.connect(dst)) as c, c:
        c.execute("ALTER TABLE cells DROP COLUMN example_confidence")
        c.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    return dst


def test_reading_commands_never_write_the_store_and_read_an_old_schema_through_a_copy(files, tmp_path):
    old = _v2_copy(files["store"], tmp_path / "old.db")
    before, mtime = digest(old), os.stat(old).st_mtime_ns
    assert run("report", "--store", old, "--out", tmp_path / "rep", "-q").exit_code == 0
    assert run("check", "--store", old, "--policy", files["policy"]).exit_code in (0, 1)
    assert run("export", "--store", old, "--out", tmp_path / "e.csv").exit_code == 0
    assert digest(old) == before and os.stat(old).st_mtime_ns == mtime  # not migrated in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "old.db", "rep"]  # no -wal / -shm left


def test_a_store_on_a_read_only_mount_is_readable(files, tmp_path):
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    shutil.copy(files["store"], mnt / "s.db")
    if subprocess.run(["mount", "--bind", str(mnt), str(mnt)], capture_output=True).returncode != 0 or \
            subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        pytest.skip("needs mount privileges to make a read-only mount")
    try:
        for args in (["report", "--store", mnt / "s.db", "--out", tmp_path / "rep", "-q"], ["export", "--store", mnt / "s.db", "--out",
                     tmp_path / "e.csv"], ["check", "--store", mnt / "s.db", "--policy", files["policy"]]):
            r = run(*args)
            assert r.exit_code in (0, 1) and "Error" not in r.output, r.output
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# --- names that are data, not markup ------------------------------------------------------

@pytest.mark.parametrize("name", ["cost $5$ model.pt", 'a "quoted" \\ name.pt', "two\nlines.pt", "<img src=x onerror=alert(1)>.pt"])
def test_model_names_are_data_in_reports_and_policies(tiny_checkpoints, tmp_path, name):
    model = tmp_path / name
    shutil.copy(tiny_checkpoints["adam"], model)
    store = tmp_path / "s.db"
    assert run("sweep", "--model", model, "--noise", "0.1", "--seeds", "2", "--limit", "20", "--modes", "point",
               "--store", store, "-q").exit_code == 0
    r = run("report", "--store", store, "--out", tmp_path / "rep", "-q")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "<img" not in md and "&lt;img" in md if "<img" in name else True
    policy = tmp_path / "p.toml"
    assert run("check", "--store", store, "--init", "--policy", policy).exit_code == 0
    r = run("check", "--store", store, "--policy", policy, "--markdown", tmp_path / "gate.md")
    assert r.exit_code == 0, r.output  # the written policy parses and names the model exactly
    assert "<img" not in (tmp_path / "gate.md").read_text()


def test_a_file_name_that_is_not_utf8_is_refused_before_the_store(tiny_checkpoints, tmp_path):
    model = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.pt")
    shutil.copy(tiny_checkpoints["adam"], model)
    store = tmp_path / "s.db"
    one_error_line(run("sweep", "--model", model, "--noise", "0.1", "--store", store, "-q"), "not valid UTF-8")
    assert not store.exists()


def test_check_init_skips_a_curve_whose_levels_overflowed(files, tmp_path):
    import sqlite3
    from contextlib import closing

    store = tmp_path / "nan.db"
    shutil.copy(files["store"], store)
    with closing(sqlite3.connect(store)) as c, c:
        c.execute("UPDATE cells SET accuracy = NULL, nll = NULL WHERE perturbation != 'clean'")
    policy = tmp_path / "p.toml"
    r = run("check", "--store", store, "--init", "--policy", policy)
    assert r.exit_code == 0, r.output
    assert "every level overflowed" in policy.read_text()


def test_outputs_follow_the_umask(files, tmp_path):
    old = os.umask(0o022)
    try:
        outs = {"checkpoint": tmp_path / "m.pt", "nir": tmp_path / "m.nir", "export": tmp_path / "e.csv",
                "junit": tmp_path / "j.xml", "policy": tmp_path / "p.toml"}
        assert run("train", "--epochs", "1", "--limit-train", "40", "--hidden", "8", "--out", outs["checkpoint"],
                   "-q").exit_code == 0
        assert run("export-nir", "--model", files["model"], "--out", outs["nir"]).exit_code == 0
        assert run("export", "--store", files["store"], "--out", outs["export"]).exit_code == 0
        assert run("check", "--store", files["store"], "--init", "--policy", outs["policy"]).exit_code == 0
        assert run("check", "--store", files["store"], "--policy", outs["policy"], "--junit", outs["junit"]).exit_code == 0
    finally:
        os.umask(old)
    assert {k: oct(p.stat().st_mode & 0o777) for k, p in outs.items()} == {k: "0o644" for k in outs}


# --- NIR graphs that cannot be a checkpoint ------------------------------------------------

def _graph(h=4, **edit):
    """A one-layer LIF graph (40 inputs, 20 classes); `edit` replaces a node or the edges or metadata."""
    import nir
    import numpy as np

    nodes = {"input": nir.Input(input_type=np.array([40])),
             "fc": nir.Affine(weight=np.ones((h, 40)) * 0.1, bias=np.zeros(h)),
             "lif": nir.LIF(tau=np.full(h, 0.05), r=np.ones(h), v_leak=np.zeros(h), v_threshold=np.ones(h),
                            v_reset=np.zeros(h)),
             "out": nir.Affine(weight=np.ones((20, h)), bias=np.zeros(20)),
             "output": nir.Output(output_type=np.array([20]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "out"), ("out", "output")]
    nodes.update({k: v for k, v in edit.items() if k in nodes or k == "scale"})
    if "scale" in edit:
        edges = [("input", "fc"), ("fc", "scale"), ("scale", "lif"), ("lif", "out"), ("out", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edit.get("edges", edges), type_check=False)
    if "metadata" in edit:
        g.metadata = edit["metadata"]
    return g


def _nir_cases(case):
    import nir
    import numpy as np

    return {
        "bias length": lambda: (dict(fc=nir.Affine(weight=np.ones((4, 40)), bias=np.zeros(3))), "bias of shape (3,) for 4"),
        "scale length": lambda: (dict(scale=nir.Scale(scale=np.ones(7))), "scale of shape (7,)"),
        "missing node": lambda: (dict(edges=[("input", "fc"), ("fc", "ghost"), ("lif", "out"), ("out", "output")]),
                                 "names a node the graph does not have ('ghost')"),
        "text dt": lambda: (dict(metadata={"dt": "fast"}), "metadata dt = 'fast' is not a number"),
        "array dt": lambda: (dict(metadata={"dt": np.array([0.001, 0.002])}), "metadata dt holds 2 values"),
        "zero-width layer": lambda: (dict(fc=nir.Affine(weight=np.ones((0, 40)), bias=np.zeros(0))), "zero-width side"),
        "nan weight": lambda: (dict(fc=nir.Affine(weight=np.full((4, 40), np.nan), bias=np.zeros(4))),
                               "weight holds NaN"),
        "inf threshold": lambda: (dict(lif=nir.LIF(tau=np.full(4, 0.05), r=np.ones(4), v_leak=np.zeros(4),
                                                   v_threshold=np.full(4, np.inf), v_reset=np.zeros(4))),
                                  "v_threshold holds NaN or inf"),
    }[case]()


@pytest.mark.parametrize("case", ["bias length", "scale length", "missing node", "text dt", "array dt",
                                  "zero-width layer", "nan weight", "inf threshold"])
def test_nir_graphs_that_cannot_be_a_checkpoint_are_refused_at_import(tmp_path, case):
    import nir

    edit, match = _nir_cases(case)
    path = tmp_path / "g.nir"
    nir.write(str(path), _graph(**edit))
    one_error_line(run("import", path, "--out", tmp_path / "m.pt", "-q"), match)
    assert not (tmp_path / "m.pt").exists()


def test_a_retrained_checkpoint_keeps_its_hash_and_the_sweep_resumes(files, tmp_path):
    import torch

    from models.checkpoint import load_checkpoint

    def later(o):
        o["created"] = "2031-01-01T00:00:00+00:00"  # written again, later, by another version
        o["package_version"] = "9.9"

    again = _edited_checkpoint(files["model"], tmp_path / "again.pt", later)
    changed = _edited_checkpoint(files["model"], tmp_path / "changed.pt",
                                 lambda o: o["state_dict"]["readout.linear.bias"].add_(1e-3))
    a, b, c = (load_checkpoint(p).content_hash for p in (files["model"], again, changed))
    assert a == b != c and digest(files["model"]) != digest(again)
    store = tmp_path / "s.db"
    args = ["--noise", "0.1", "--seeds", "2", "--limit", "20", "--modes", "point", "--out", store]
    assert run("sweep", "--model", files["model"], *args).exit_code == 0
    r = run("sweep", "--model", again, *args)
    assert r.exit_code == 0 and "0 new cell(s)" in r.output and "resumed" in r.output
    assert "0 new cell(s)" not in run("sweep", "--model", changed, *args).output
    assert torch.load(again, weights_only=True)["created"].startswith("2031")


# --- audio ------------------------------------------------------------------------------------

def test_audio_of_huge_finite_amplitude_is_named_and_skippable(tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf

    from tests.test_datasets import tone

    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    for c in ("yes", "no"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            sf.write(str(root / c / f"{c}_s{i}_0.wav"), tone(300 if c == "yes" else 700, seed=i), 16000,
                     subtype="FLOAT")
    loud = root / "yes" / "yes_s9_0.wav"
    sf.write(str(loud), np.full(4800, 3.4e38, np.float32), 16000, subtype="FLOAT")
    r = run("data", "info", "--dataset", "audiofolder", "--data-dir", root, "-q")
    one_error_line(r, "yes_s9_0.wav: samples reach 3.4e+38")
    r = run("data", "info", "--dataset", "audiofolder", "--data-dir", root, "--skip-bad", "--json", "-q")
    assert r.exit_code == 0 and '"skipped_files": 1' in r.output, r.output


# --- damaged values in an intact store ----------------------------------------------------

DAMAGE = {
    "spike_rates JSON": ("UPDATE cells SET spike_rates = '[0.1,' WHERE rowid = 2", "table cells, row 2, field "
                         "spike_rates: not valid JSON"),
    "versions JSON": ("UPDATE cells SET versions = '{bad' WHERE rowid = 2", "table cells, row 2, field versions"),
    "runs.config JSON": ("UPDATE runs SET config = 'nope'", "table runs, row 1, field config: not valid JSON"),
    "runs.models JSON": ("UPDATE runs SET models = '[1, 2]'", "table runs, row 1, field models"),
    "text level": ("UPDATE cells SET level = 'abc' WHERE rowid = 2", "table cells, row 2, field level: 'abc' is not"),
    "text accuracy": ("UPDATE cells SET accuracy = 'high' WHERE rowid = 2", "field accuracy: 'high' is not a number"),
    "short blob": ("UPDATE cells SET example_nll = x'0000' WHERE rowid = 2", "field example_nll: 2 bytes where"),
    "huge blob": ("UPDATE cells SET example_correct = zeroblob(2000000) WHERE rowid = 2",
                  "field example_correct: 2000000 bytes where"),
    "n = 0": ("UPDATE cells SET n = 0 WHERE rowid = 2", "field n: 0 examples"),
    "infinite level": ("UPDATE cells SET level = 9e999 WHERE rowid = 2", "field level: inf is not finite"),
    "foreign model": ("UPDATE cells SET model = 'other.pt' WHERE rowid = 2", "field model: 'other.pt' is not among"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
@pytest.mark.parametrize("command", ["report", "check --init", "export"])
def test_damaged_values_are_one_line_naming_table_row_and_field(files, tmp_path, case, command):
    import sqlite3
    from contextlib import closing

    sql, match = DAMAGE[case]
    store = tmp_path / "d.db"
    shutil.copy(files["store"], store)
    with closing(sqlite3.connect(store)) as c, c:
        c.execute(sql)
    if command == "export" and case in ("foreign model", "runs.config JSON", "runs.models JSON"):
        pytest.skip("export writes the cells' columns; it reads no run's config or model list")
    args = {"report": ["report", "--store", store, "--out", tmp_path / "rep", "-q"],
            "check --init": ["check", "--store", store, "--init", "--policy", tmp_path / "p.toml"],
            "export": ["export", "--store", store, "--out", tmp_path / "e.csv"]}[command]
    one_error_line(run(*args), match)
    assert not (tmp_path / "p.toml").exists() and not (tmp_path / "e.csv").exists()


# --- Ray addresses ------------------------------------------------------------------------

@pytest.mark.parametrize("address,match", [
    ("garbage", "give auto, HOST:PORT or ray://HOST:PORT"),
    ("http://x:y", "give auto, HOST:PORT or ray://HOST:PORT"),
    ("10.0.0.5:99999", "give auto, HOST:PORT or ray://HOST:PORT"),
    ("127.0.0.1:1", "nothing answers there within 5 s"),
])
def test_a_ray_address_that_cannot_work_is_one_line(files, tmp_path, address, match):
    r = run("sweep", "--model", files["model"], "--noise", "0.1", "--executor", "ray", "--address", address,
            "--store", tmp_path / "r.db", "-q")
    one_error_line(r, match)  # refused up front, not left to Ray's own minutes-long reconnect loop
    assert not (tmp_path / "r.db").exists()
