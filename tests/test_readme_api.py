"""The README's Python API example runs as written (on the test fixtures' checkpoints, with
fewer draws), so it cannot rot."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_api_example_runs(tiny_checkpoints, tmp_path, capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for name, path in (("ivon.pt", tiny_checkpoints["ivon"]), ("adam.pt", tiny_checkpoints["adam"]),
                       ("results.db", tmp_path / "results.db")):
        assert f'"{name}"' in code
        code = code.replace(f'"{name}"', repr(str(path)))
    assert "seeds=10)" in code and "mc_samples=10" in code
    code = code.replace("seeds=10)", "seeds=2)").replace("mc_samples=10", "mc_samples=2")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "accuracy" in out and "gaussian" in out and "quantize" in out
    assert tuple(scope["logits"].shape) == (16, 64, 20)
    assert (tmp_path / "results.db").exists()
