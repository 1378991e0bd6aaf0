"""One schema per command: every sweep option round-trips through its flag and its
sweep.toml key to the same resolved configuration, and every out-of-bounds number is refused
by both, because both read the same field."""

import pytest
from click.testing import CliRunner

from robustness.cli.main import cli
from basics.schema import fields
from robustness.sweep.config import SweepConfig, sweep_fields


def _value(f):
    """A valid value other than the default: (as typed on the command line, as TOML)."""
    o = f.opt
    special = {"seeds": ("3", "3"), "noise": ("0.1,0.2", '"0.1,0.2"'), "bits": ("2:4", '"2:4"'),
               "profile": ("digital-8bit", '"digital-8bit"'), "modes": ("point,chips", '"point,chips"'),
               "layers": ("blocks.0", '"blocks.0"'), "perturbation": ("mismatch:0.1", '["mismatch:0.1"]'),
               "address": ("auto", '"auto"'), "device": ("cuda", '"cuda"')}
    if f.name in special:
        return special[f.name]
    if o.kind in ("flag", "switch"):
        return (None, "false" if f.default else "true")
    if o.choices:
        c = next(c for c in reversed(o.choices) if c != f.default)
        return c, f'"{c}"'
    if o.number == "int":
        v = int(o.low or 0) + 3
        return str(v), str(v)
    if o.number == "float":
        return "1.5", "1.5"
    return "somewhere", '"somewhere"'


def _flag_args(f, typed):
    if f.opt.kind == "flag":
        return [f.flag]
    if f.opt.kind == "switch":
        return [f.flag if not f.default else "--no-" + f.flag[2:]]
    return [f.flag, typed]


OPTIONS = [f for f in sweep_fields() if f.name != "models"]


# The levels every sweep needs, given the same way as the option under test (an explicit
# flag would win over the file): (flags, TOML lines); the plan options bring their own.
CONTEXT = {"noise": ([], ""), "perturbation": ([], ""), "profile": ([], ""),
           "bits": (["-p", "quantize"], 'perturbation = ["quantize"]\n')}


@pytest.mark.parametrize("f", OPTIONS, ids=[f.name for f in OPTIONS])
def test_every_option_means_the_same_as_a_flag_and_in_the_file(f, tiny_checkpoints, tmp_path):
    base = ["sweep", "--model", str(tiny_checkpoints["adam"]), "--print-config"]
    extra, extra_toml = CONTEXT.get(f.name, (["--noise", "0.1"], 'noise = "0.1"\n'))
    typed, toml = _value(f)
    by_flag = CliRunner().invoke(cli, [*base, *extra, *_flag_args(f, typed)])
    cfg = tmp_path / "s.toml"
    cfg.write_text(f"{extra_toml}{f.name} = {toml}\n")
    by_file = CliRunner().invoke(cli, [*base, "--config", str(cfg)])
    assert by_flag.exit_code == 0, by_flag.output
    assert by_file.exit_code == 0, by_file.output
    assert by_flag.output == by_file.output
    default = CliRunner().invoke(cli, [*base, "--noise", "0.1"])
    assert by_flag.output != default.output, f"{f.flag} {typed} changed nothing"


BOUNDED = [(f, v) for f in sweep_fields() if f.opt.number for v in
           ([f.opt.low if f.opt.low_open else f.opt.low - 1] if f.opt.low is not None else []) +
           ([f.opt.high + 1] if f.opt.high is not None else [])]


@pytest.mark.parametrize("f,v", BOUNDED, ids=[f"{f.name}={v:g}" for f, v in BOUNDED])
def test_every_out_of_bounds_number_is_refused_by_flag_and_file_alike(f, v, tiny_checkpoints, tmp_path):
    base = ["sweep", "--model", str(tiny_checkpoints["adam"]), "--noise", "0.1", "--print-config"]
    shown = str(int(v)) if f.opt.number == "int" else repr(float(v))
    by_flag = CliRunner().invoke(cli, [*base, f.flag, shown])
    cfg = tmp_path / "s.toml"
    cfg.write_text(f"{f.name} = {shown}\n")
    by_file = CliRunner().invoke(cli, [*base, "--config", str(cfg)])
    for r in (by_flag, by_file):
        assert r.exit_code == 2 and "must be" in r.output and "Traceback" not in r.output, r.output
    assert f.flag in by_flag.output and f"{f.name} must be" in by_file.output


def test_the_run_hash_and_the_printed_config_cover_every_field():
    """Every field of SweepConfig is in what is hashed and printed (to_dict), so no option can
    change numbers without changing the run."""
    cfg = SweepConfig(models=("m.pt",))
    assert set(cfg.to_dict()) == {f.name for f in fields(SweepConfig)} | {"plans"}


def test_every_option_of_the_schema_commands_comes_from_their_schema():
    """Train, eval, sweep, slice, report and check take no option outside their schema but
    the output switches (--json, --quiet), the sweep's --config / --print-config and the old
    positional STORE."""
    from reports.options import CheckOptions, ReportOptions
    from robustness.eval_config import eval_fields
    from robustness.slicing.config import SliceConfig
    from robustness.sweep.config import SweepRuntime
    from robustness.train_options import train_fields

    runtime = {f.name for f in fields(SweepRuntime)}
    schemas = {"train": {f.name for f in train_fields()} | runtime, "eval": {f.name for f in eval_fields()} | runtime,
               "sweep": {f.name for f in sweep_fields()}, "slice": {f.name for f in fields(SliceConfig)} | runtime,
               "report": {f.name for f in fields(ReportOptions)} | runtime,
               "check": {f.name for f in fields(CheckOptions)} | runtime}
    switches = {"as_json", "quiet", "config", "print_config", "help", "store_arg"}
    for name, names in schemas.items():
        params = {p.name for p in cli.commands[name].params}
        assert params - switches <= names, f"{name}: options outside the schema: {params - switches - names}"


def test_closed_choices_are_the_enums_the_library_checks_against():
    """Schemas the command line loads without torch spell some choices out; they must be
    exactly the library's Enums."""
    from models.train import OptimizerName
    from perturbations.base import Scale
    from robustness.train_options import TrainRequest

    by_name = {f.name: f for f in sweep_fields()}
    assert by_name["scale"].opt.choices == tuple(m.value for m in Scale)
    train = {f.name: f for f in fields(TrainRequest)}
    assert train["optimizer"].opt.choices == tuple(m.value for m in OptimizerName)
