"""`robust report`: self-contained HTML, Markdown, JSON and figures from the store alone."""

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from robustness.cli.main import cli
from robustness.slicing.run import SliceConfig, run_slice
from robustness.store.database import Store
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep

SECTIONS = ("verdict", "clean", "degradation", "calibration", "landscape", "hardware-cost", "efficiency", "controls",
            "seeds", "provenance")


def run(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


@pytest.fixture(scope="module")
def store(tiny_checkpoints, tmp_path_factory):
    db = tmp_path_factory.mktemp("rep") / "r.db"
    models = (str(tiny_checkpoints["adam"]), str(tiny_checkpoints["ivon"]))
    plans = (PerturbationPlan("gaussian", (0.05, 0.1, 0.2)), PerturbationPlan("quantize", (3, 6)))
    run_sweep(SweepConfig(models, plans, seeds=2, mc_samples=2, limit=60), str(db), progress=False)
    run_slice(SliceConfig(models=models, points=7, directions=2, batches=1, batch_size=32, mc_samples=2),
              str(db), progress=False)
    return db


class _Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.ids, self.urls = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "section":
            self.ids.append(a.get("id"))
        for k in ("href", "src"):
            if a.get(k) and not a[k].startswith("data:"):
                self.urls.append(a[k])


def test_report_is_self_contained_and_complete(store, tmp_path):
    out = tmp_path / "report"
    r = run("report", "--store", store, "--out", out)
    assert r.exit_code == 0, r.output
    html = (out / "index.html").read_text()
    p = _Html()
    p.feed(html)
    assert p.ids == list(SECTIONS)
    assert p.imgs and all(src.startswith("data:image/png;base64,") for src in p.imgs)
    assert p.urls == [] and "http://" not in html and "https://" not in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema_version"] == 1 and summary["verdict"]
    assert {d["perturbation"] for d in summary["degradation"]} == {"gaussian", "quantize"}
    assert summary["landscape"][0]["pairs"], "models sliced on shared directions are compared"
    figs = {f.stem for f in (out / "figures").glob("*.png")}
    assert figs == {f.stem for f in (out / "figures").glob("*.svg")} and len(figs) == len(p.imgs)
    for svg in (out / "figures").glob("*.svg"):  # log-axis ticks in plain text, not raw mathtext ($10^{-3}$)
        assert "^{" not in svg.read_text(), svg.name
    md = (out / "report.md").read_text()
    assert "## 4. Loss landscape" in md and "![" in md
    for line in summary["verdict"]:
        assert line in r.output  # the CLI prints the same verdict


def test_missing_sections_say_so(tiny_checkpoints, tmp_path):
    db = tmp_path / "sweep-only.db"
    run_sweep(SweepConfig((str(tiny_checkpoints["adam"]),), (PerturbationPlan("gaussian", (0.1,)),), seeds=2,
                          limit=40), str(db), progress=False)
    r = run("report", "--store", db, "--out", tmp_path / "rep", "--format", "html,json")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "No slices in this store" in html and "no controls comparison" in html
    assert not (tmp_path / "rep" / "report.md").exists()


def test_bare_report_reads_the_default_store(tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROBUST_STORE", raising=False)
    assert run("sweep", "--model", tiny_checkpoints["adam"], "--noise", "0.05,0.1", "--seeds", 2, "--limit", 40,
               "-q").exit_code == 0
    r = run("report")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "report" / "index.html").exists()


@pytest.mark.slow
def test_report_never_loads_models(store, tmp_path):
    code = ("import sys; from reports.records import load_records; from reports.report import write_report; "
            f"write_report(load_records({str(store)!r}), {str(tmp_path / 'r')!r}); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('models', 'torch', 'perturbations')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_report_input(store, tmp_path):
    empty = tmp_path / "empty.db"
    Store.open(empty, create=True).close()
    for args, msg in (([empty], "holds no runs"), ([store, "--models", "nope.pt"], "'nope.pt' is not in"),
                      ([store, "--perturbations", "pcm"], "'pcm' is not in"),
                      ([tmp_path / "missing.db"], "no results store here"),
                      ([store, "--format", "pdf"], "--format")):
        r = run("report", "--store", *args, "--out", tmp_path / "never")
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "never" / "index.html").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless chromium not installed")
def test_report_renders_in_chromium(store, tmp_path):
    out = tmp_path / "report"
    assert run("report", "--store", store, "--out", out).exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,3000", f"--screenshot={shot}", (out / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a rendered page with figures, not a blank one


@pytest.mark.slow
def test_fast_demo_writes_the_report_and_reuses_its_work(tmp_path):
    out = tmp_path / "demo"
    r = run("demo", "--fast", "--out-dir", out, "-q")
    assert r.exit_code == 0, r.output
    assert (out / "report" / "index.html").exists() and (out / "results.db").exists()
    assert "verdict:" in r.output and "report: " in r.output
    again = run("demo", "--fast", "--out-dir", out, "-q")
    assert again.exit_code == 0, again.output
    assert again.output.count("reusing") == 2 and "sweep: 0 new cell(s)" in again.output
    assert "slice: 0 new curve(s)" in again.output
