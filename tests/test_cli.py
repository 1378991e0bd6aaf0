import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustness.cli.main import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_command_has_help_and_is_in_readme():
    text = README.read_text()
    for name, cmd in cli.commands.items():
        r = run(name, "-h")
        assert r.exit_code == 0 and "Usage" in r.output, name
        assert cmd.help, name
        assert f"robust {name}" in text, f"README does not mention `robust {name}`"


def test_train_then_eval_json(tmp_path):
    out = tmp_path / "m.pt"
    r = run("train", "--optimizer", "ivon", "--epochs", 1, "--hidden", "16,16", "--limit-train", 200,
            "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert out.exists() and "IVON posterior" in r.output
    r = run("eval", "--model", out, "--mc-samples", 3, "--limit", 60, "--json", "--quiet")
    assert r.exit_code == 0, r.output
    results = json.loads(r.output)  # the shape of a results file
    assert results["format"] == "robust-eval" and results["limit"] == 60 and "stratified" in results["subset"]
    (model,) = results["models"]
    assert model["path"] == str(out) and len(model["model_hash"]) == 16 and model["data_hash"]
    rows = model["modes"]
    assert [x["mode"] for x in rows] == ["mean", "bma"]
    assert rows[1]["compute"] == 3 and rows[0]["compute"] == 1 and rows[0]["n"] == 60
    assert rows[1]["metrics"]["mutual_information"]["value"] >= 0
    assert rows[0]["metrics"]["accuracy"]["test_ci95"] > 0 and "speakers" in rows[0]["test_interval"]
    r = run("eval", "--model", out, "--mc-samples", 2, "--limit", 60, "--quiet")
    assert r.exit_code == 0 and re.search(r"bma\s+2\s+60\s+0\.\d{4}", r.output)


@pytest.mark.parametrize("args,match", [
    (["eval", "--model", "nope.pt"], "no such checkpoint"),
    (["eval", "--model", "{tmp}"], "is a directory"),
    (["eval", "--model", "{tmp}/corrupt.pt"], "not a readable checkpoint"),
    (["eval", "--model", "{tmp}/v9.pt"], "version 9 is not supported"),
    (["train", "--epochs", "0", "--out", "{tmp}/x.pt"], "'--epochs': '0' must be >= 1"),
    (["train", "--optimizer", "sgd", "--out", "{tmp}/x.pt"], "sgd"),
    (["train", "--dataset", "mnist", "--out", "{tmp}/x.pt"], "unknown dataset 'mnist'"),
    (["train", "--out", "{tmp}"], "is a directory"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, match):
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated")
    torch.save({"format": "robust-snn", "version": 9}, tmp_path / "v9.pt")
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and match in lines[0], r.output
    assert "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_data_commands(tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf

    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))
    for c, f in (("low", 300), ("high", 900)):
        for spk in ("ann", "ben", "cat", "dan"):
            (tmp_path / "af" / c).mkdir(parents=True, exist_ok=True)
            t = np.arange(4000) / 16000
            sf.write(str(tmp_path / "af" / c / f"{spk}_1.wav"), 0.3 * np.sin(2 * np.pi * f * t), 16000)
    r = run("data", "list")
    assert r.exit_code == 0 and all(n in r.output for n in ("tts-digits", "hd", "shd", "sc", "audiofolder", "manifest"))
    r = run("data", "prepare", "--dataset", "audiofolder", "--data-dir", tmp_path / "af", "--quiet")
    assert r.exit_code == 0 and "8 utterances ready" in r.output, r.output
    r = run("data", "info", "--dataset", "audiofolder", "--data-dir", tmp_path / "af", "--json", "--quiet")
    info = json.loads(r.output)
    assert info["classes"] == 2 and info["duration_s"]["mean"] == pytest.approx(0.25)  # numbers, not prose
    r = run("data", "info", "--dataset", "sc", "--data-dir", tmp_path / "missing")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_train_on_a_folder_then_eval_from_elsewhere(tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf

    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for c, f in (("low", 300), ("high", 1200)):
        for spk in ("ann", "ben", "cat", "dan", "eve", "fay"):
            for i in range(3):
                (tmp_path / "proj" / "af" / c).mkdir(parents=True, exist_ok=True)
                t = np.arange(6000) / 16000
                a = 0.3 * np.sin(2 * np.pi * f * (1 + 0.05 * rng.standard_normal()) * t) + 0.01 * rng.standard_normal(6000)
                sf.write(str(tmp_path / "proj" / "af" / c / f"{spk}_{i}.wav"), a, 16000)
    monkeypatch.chdir(tmp_path / "proj")
    r = run("train", "--dataset", "audiofolder", "--data-dir", "af", "--epochs", 3, "--hidden", "16,16",
            "--batch-size", 8, "--out", "m.pt", "--quiet")
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path)
    r = run("eval", "--model", "proj/m.pt", "--json", "--quiet")
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)["models"][0]["modes"][0]
    assert row["n"] == 6 and row["metrics"]["accuracy"]["value"] > 0.6  # one held-out speaker, chance is 0.5
