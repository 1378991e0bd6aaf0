"""A newcomer's tour: each number or sentence the report and the CLI print says what was measured."""

import collections
import json
import re

from click.testing import CliRunner

from robustness.cli.main import cli
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
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "deterministic: one network per level, so no interval over chips" in md
    assert "one network per level (deterministic): a proxy for the energy" in md  # the spike-rate caption too
    for svg in [*(tmp_path / "rep" / "figures").glob("*degradation.svg"),  # bit widths are whole: no 4.5 bits
                *(tmp_path / "rep" / "figures").glob("*spikes.svg")]:
        ticks = _x_tick_labels(svg.read_text())
        assert ticks and all(float(t) == int(float(t)) for t in ticks), (svg.name, ticks)


def _x_tick_labels(svg: str) -> list[str]:
    """The numeric x-axis tick labels of a matplotlib SVG: text inside its xtick groups."""
    out, in_x = [], False
    for m in re.finditer(r'<g id="([^"]*)"|>([^<]*)</text>', svg):
        if m.group(1) is not None:  # a tick's own parts (line2d_, text_) keep the tick's axis
            if not re.match(r"(line2d|text)_", m.group(1)):
                in_x = bool(re.fullmatch(r"xtick_\d+", m.group(1)))
        elif in_x and re.fullmatch(r"[-\u2212]?[0-9.]+", m.group(2).strip()):
            out.append(m.group(2).strip().replace("\u2212", "-"))
    return out
