"""Property tests of the three parsers users type into: any input parses to a valid value
or raises the library's one-line input error, never anything else."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from basics.errors import BadInput
from perturbations.spec import parse_spec
from reports.check import load_policy
from basics.ranges import parse_levels

# Text biased towards the grammar's own characters, so that near-misses are common.
GRAMMAR = st.text(alphabet=st.sampled_from(list("0123456789.:,-+e log nanifquantizegaussian()=?_x ")), max_size=30)
ANY_TEXT = st.one_of(GRAMMAR, st.text(max_size=30))


@settings(max_examples=400, deadline=None)
@given(text=ANY_TEXT, integer=st.booleans(), minimum=st.sampled_from([0.0, 1.0, -1.0]))
def test_level_range_parser(text, integer, minimum):
    try:
        levels = parse_levels(text, integer=integer, minimum=minimum)
    except BadInput as e:
        assert "\n" not in str(e) and str(e)
        return
    assert levels == sorted(set(levels)) and levels
    assert all(math.isfinite(v) and v >= minimum for v in levels)
    if integer:
        assert all(float(v).is_integer() for v in levels)


@settings(max_examples=400, deadline=None)
@given(text=ANY_TEXT)
def test_perturbation_spec_parser(text):
    try:
        spec = parse_spec(text)
    except BadInput as e:
        assert "\n" not in str(e).strip() and str(e)
        return
    assert spec.components and spec.label
    assert parse_spec(spec.label).label == spec.label  # the label reads back as the same spec


SCALARS = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(alphabet="abcgxyz_.0123", max_size=8), st.sampled_from(
                        ["min_accuracy", "max_drop", "max_ece_increase", "min_auc", "at_least_as_robust", "baseline",
                         "accuracy", "nll", "gaussian", "adam.pt"]))
KEYS = st.sampled_from(["kind", "model", "mode", "perturbation", "level", "threshold", "tolerance", "metric",
                        "than_model", "than_mode", "name", "bogus"])


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(st.dictionaries(KEYS, SCALARS, max_size=6), max_size=3), raw=st.one_of(st.none(), ANY_TEXT))
def test_check_policy_parser(tmp_path_factory, rules, raw):
    path = tmp_path_factory.mktemp("policy") / "p.toml"
    if raw is not None:
        path.write_text(raw)
    else:
        path.write_text("".join("[[rule]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in r.items())
                                for r in rules))
    try:
        parsed = load_policy(str(path))
    except BadInput as e:
        assert "\n" not in str(e).strip() and str(e)
        return
    assert parsed and all(isinstance(r, dict) and isinstance(r["kind"], str) for r in parsed)
    for r in parsed:
        for k in ("threshold", "level", "tolerance"):
            if k in r:
                assert math.isfinite(r[k]) and not isinstance(r[k], bool)
