"""Every option of every command, fed missing, wrong-typed and out-of-range values: exit 2
and one `Error:` line, never a traceback, never a silent wrong meaning.

The commands and options are enumerated from the click group, so a new command or option
cannot escape: an option with neither a rule below nor an entry in NO_BAD_VALUE fails
`test_every_option_is_covered`."""

import click
import pytest
from click.testing import CliRunner

from robustness.cli.common import Number
from robustness.cli.main import cli

# Known-bad values of free-text options (keyed by command path and option name, or option name).
TEXT_BAD = {
    "--dataset": ["bogus"], "--train-perturbation": ["bogus:1"], "--hidden": ["abc", "0", ","],
    "--device": ["meta", "bogus"], "--perturbation": ["bogus"], "--noise": ["abc", "1:", "nan"],
    "--bits": ["abc", "0"], "--profile": ["bogus"], "--seeds": ["0", "-1", "2.5", "abc"],
    "--modes": ["bogus", ","], "--layers": [",", "bogus"], "--address": ["somewhere:1"], "--out": [""],
    "--direction": ["bogus"], "--span": ["abc", "1:-1"], "--models": ["bogus.pt"], "--perturbations": ["bogus"],
    "--format": ["bogus"], "--speaker-pattern": ["take-("],
    "--chip": ["bogus", "loihi2(", "loihi2(state_bits=2)", "loihi2(nope=1)", "loihi2(fit=maybe)",
               "loihi2(weight_bits=abc)", "xylo-audio"],  # the last: 40 input channels, Xylo has 16
}
PATH_BAD = {"--model": ["/nonexistent/m.pt"], "--sigma-from": ["/nonexistent/m.pt"],
            "--config": ["/nonexistent/s.toml"], "--between": ["/nonexistent/a.pt /nonexistent/b.pt"],
            "--baseline": ["/nonexistent/b.db"], "--policy": ["/nonexistent/p.toml"], "--junit": ["/proc/x/j.xml"],
            "--markdown": ["/proc/x/m.md"], "--out": ["/proc/x/o"], "--out-dir": ["/proc/x/d"],
            "--data-dir": ["/nonexistent/folder"], "--store": ["/proc/x/s.db"]}
# Options every value of which is acceptable (reason given).
NO_BAD_VALUE = {
    ("data", "info", "--data-dir"): "the built-in corpus has no folder; checked for folder datasets",
    ("data", "prepare", "--data-dir"): "the built-in corpus has no folder; checked for folder datasets",
}


def commands(group=cli, path=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


# Where one option name takes other values in one command: train --seeds is a list of seeds.
COMMAND_BAD = {("train", "--seeds"): ["abc", "3:1", "-1"]}


def bad_values(path, opt) -> list[str]:
    name = opt.opts[0]
    if (*path, name) in COMMAND_BAD:
        return COMMAND_BAD[(*path, name)]
    t = opt.type
    if isinstance(t, click.Choice):
        return ["bogus"]
    if isinstance(t, Number):
        vals = ["abc", "nan", "inf"]
        if t.integer:
            vals.append("2.5")
        if t.low is not None:
            vals.append(f"{t.low - 1:g}")
            if t.low_open:
                vals.append(f"{t.low:g}")
        if t.high is not None:
            vals.append(f"{t.high + 1:g}")
            if t.high_open:
                vals.append(f"{t.high:g}")
        return vals
    if t in (click.INT,):
        return ["abc", "-5"]
    if t in (click.FLOAT,):
        return ["abc", "nan"]
    if isinstance(t, click.Path) or name in PATH_BAD:
        return PATH_BAD.get(name, []) + TEXT_BAD.get(name, [])
    return TEXT_BAD.get(name, [])


@pytest.fixture(scope="module")
def base(tiny_checkpoints, tmp_path_factory):
    """A valid, cheap invocation of each command; a bad option value is appended to it."""
    d = tmp_path_factory.mktemp("cli-inputs")
    adam, ivon = str(tiny_checkpoints["adam"]), str(tiny_checkpoints["ivon"])
    store = str(d / "s.db")
    r = CliRunner().invoke(cli, ["sweep", "--model", adam, "--noise", "0.1", "--seeds", "2", "--limit", "20",
                                 "--modes", "point", "--store", store, "-q"])
    assert r.exit_code == 0, r.output
    policy = str(d / "p.toml")
    assert CliRunner().invoke(cli, ["check", "--store", store, "--policy", policy, "--init"]).exit_code == 0
    graph = str(d / "m.nir")
    assert CliRunner().invoke(cli, ["export-nir", "--model", adam, "--out", graph]).exit_code == 0
    return {
        ("train",): ["train", "--epochs", "1", "--limit-train", "20", "--hidden", "8", "--out", str(d / "t.pt"), "-q"],
        ("eval",): ["eval", "--model", adam, "--limit", "10"],
        ("posterior",): ["posterior", "--model", ivon],
        ("sweep",): ["sweep", "--model", adam, "--noise", "0.1", "--seeds", "1", "--limit", "10", "--modes",
                     "point", "--store", str(d / "new.db"), "-q"],
        ("perturbations",): ["perturbations"],
        ("export",): ["export", "--store", store, "--out", str(d / "e.csv")],
        ("data", "list"): ["data", "list"],
        ("data", "info"): ["data", "info"],
        ("data", "prepare"): ["data", "prepare"],
        ("slice",): ["slice", "--model", adam, "--points", "5", "--directions", "1", "--batches", "1",
                     "--batch-size", "8", "--store", str(d / "sl.db"), "-q"],
        ("report",): ["report", "--store", store, "--out", str(d / "rep"), "-q"],
        ("check",): ["check", "--store", store, "--policy", policy],
        ("demo",): ["demo", "--fast", "--out-dir", str(d / "demo"), "-q"],
        ("import",): ["import", graph, "--out", str(d / "i.pt"), "-q"],
        ("export-nir",): ["export-nir", "--model", ivon, "--out", str(d / "x.nir"), "-q"],
    }


def cases():
    for path, cmd in commands():
        for opt in cmd.params:
            if not isinstance(opt, click.Option) or opt.is_flag or opt.name in ("help",):
                continue
            vals = bad_values(path, opt)
            for v in vals:
                yield pytest.param(path, opt.opts[0], v, opt.nargs, id=f"{' '.join(path)} {opt.opts[0]}={v!r}")
            yield pytest.param(path, opt.opts[0], None, opt.nargs, id=f"{' '.join(path)} {opt.opts[0]} (no value)")


def test_every_option_is_covered():
    missing = []
    for path, cmd in commands():
        for opt in cmd.params:
            if isinstance(opt, click.Option) and not opt.is_flag and not bad_values(path, opt) \
                    and (*path, opt.opts[0]) not in NO_BAD_VALUE:
                missing.append(f"{' '.join(path)} {opt.opts[0]}")
    assert not missing, f"options without a bad-value rule: {missing}"


@pytest.mark.parametrize("path,opt,value,nargs", list(cases()))
def test_bad_value_exits_2_with_one_line(base, path, opt, value, nargs):
    args = list(base[path])
    if value is None:
        args.append(opt)  # the value is missing
    else:
        args += [opt, *value.split(" ")] if nargs > 1 else [opt, value]
    r = CliRunner().invoke(cli, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), f"traceback: {r.exception!r}"
    assert r.exit_code == 2, f"{args}: exit {r.exit_code}\n{r.output[-500:]}"
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output[-500:]


@pytest.mark.parametrize("body,match", [
    ('limit = "abc"', "limit = 'abc' must be an integer"),
    ("layers = 5", "layers = 5 must be a"),
    ("seeds = 2.5", "seeds = 2.5 must be a"),
    ("perturbation = 5", "perturbation = 5 must be a"),
    ("profile = 7", "profile = 7 must be a string"),
    ("ci_width = nan", "ci_width must be a finite number"),
    ("workers = 0", "workers must be >= 1"),
    ("limit = -5", "limit must be >= 1"),
    ("per_layer = 1", "per_layer = 1 must be a true/false"),
    ('split = "train"', "split = 'train' is not one of test, validation"),
    ('bn = "median"', "bn = 'median' is not one of recalibrate, mean"),
    ('scale = "rms"', "scale = 'rms' is not one of max, std, abs, sigma"),
    ('executor = "slurm"', "executor = 'slurm' is not one of local, ray"),
])
def test_config_files_go_through_the_same_validation(base, tmp_path, body, match):
    toml = tmp_path / "s.toml"
    toml.write_text(body + "\n")
    r = CliRunner().invoke(cli, [*base[("sweep",)], "--config", str(toml)])
    assert r.exit_code == 2, r.output
    assert match in r.output and "Traceback" not in r.output, r.output


def test_only_input_errors_exit_2(monkeypatch, base):
    """A bug (any exception that is not the library's input error) is not dressed up as bad input."""
    import robustness.sweep.run as sweep

    def broken(*a, **k):
        raise ValueError("an internal bug")

    monkeypatch.setattr(sweep, "run_sweep", broken)
    r = CliRunner().invoke(cli, base[("sweep",)])
    assert r.exit_code != 2 and isinstance(r.exception, ValueError)


@pytest.mark.parametrize("key,value", [("split", "train"), ("bn", "median"), ("scale", "rms"), ("executor", "slurm")])
def test_a_choice_the_flag_refuses_the_file_refuses_and_every_allowed_one_both_accept(base, tmp_path, key, value):
    from perturbations.base import Scale
    from robustness.sweep.config import sweep_fields

    SWEEP_CHOICES = {f.name: f.opt.choices for f in sweep_fields() if f.opt.choices}
    from robustness.evaluate import BNMode

    assert SWEEP_CHOICES["bn"] == tuple(m.value for m in BNMode) and SWEEP_CHOICES["scale"] == tuple(m.value for m in Scale)
    flag = CliRunner().invoke(cli, [*base[("sweep",)], f"--{key}", value])
    assert flag.exit_code == 2 and value in flag.output
    for allowed in SWEEP_CHOICES[key]:
        toml = tmp_path / f"{allowed}.toml"
        toml.write_text(f'{key} = "{allowed}"\n')
        for args in (["--config", str(toml)], [f"--{key}", allowed]):
            r = CliRunner().invoke(cli, [*base[("sweep",)], *args, "--print-config"])
            assert r.exit_code == 0 and f'{key} = "{allowed}"' in r.output, r.output
