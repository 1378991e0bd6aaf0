"""Resolving a sweep configuration from flags and an optional TOML file (flags win).

A `sweep.toml` holds any option under its flag name (dashes or underscores), and one
`[[perturbation]]` table per perturbation:

    models = ["adam.pt", "ivon.pt"]
    seeds = 10
    limit = 200

    [[perturbation]]
    spec = "gaussian"
    levels = "0.01:0.1"

    [[perturbation]]
    spec = "quantize"
    levels = "2:8"
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from basics.errors import BadInput
from basics.tomlfile import load_toml
from perturbations.base import PerturbationError, get
from perturbations.spec import get_profile, parse_spec
from basics.ranges import level_axis, parse_levels
from basics.schema import build, check_bounds, fields, read_file
from robustness.seed_sets import expand_models
from robustness.sweep.config import (MAX_SEEDS, PerturbationPlan, SweepConfig, SweepRuntime, random_baselines,
                                     sweep_fields)


def read_toml(path: str) -> dict:
    p = Path(path)
    return read_file(load_toml(p, "config file"), sweep_fields(), str(p))


def levels_for(spec_text: str, noise: str | None, bits: str | None) -> tuple[tuple[float, ...], str]:
    """Levels of a spec's swept component and their axis: --bits for quantize, --noise
    otherwise, else its own level."""
    try:
        spec = parse_spec(spec_text)
    except PerturbationError as e:
        raise BadInput(str(e)) from None
    swept = spec.swept_name
    is_bits = get(swept).level_is_bits
    if is_bits:
        if bits is not None:
            return tuple(parse_levels(bits, integer=True, minimum=1, name="--bits")), "linear"
    elif noise is not None:
        return tuple(parse_levels(noise, minimum=0.0, name="--noise")), level_axis(noise)
    if spec.fixed_level() is not None:
        return (spec.fixed_level(),), "linear"
    flag = "--bits" if is_bits else "--noise"
    raise BadInput(f"{spec_text}: no levels for {swept} (give {flag} or a level in the spec, e.g. {swept}:0.05)")


def resolve(flags: dict[str, Any], explicit: set[str]) -> tuple[SweepConfig, dict]:
    """Merge TOML (if `flags['config']`) under explicit flags; returns the config and runtime options."""
    merged: dict[str, Any] = {}
    if flags.get("config"):
        merged.update(read_toml(flags["config"]))
        if "model" in merged:  # the file may name the key as the flag does
            merged["models"] = merged.get("models") or merged.pop("model")
    for k, v in flags.items():
        if k in explicit or k not in merged:
            merged[k] = v
    merged["models"] = merged.get("models") or ()
    if isinstance(merged["models"], str):
        merged["models"] = [merged["models"]]
    plans = []
    toml_plans = merged.get("perturbation") if isinstance(merged.get("perturbation"), list) and \
        merged["perturbation"] and isinstance(merged["perturbation"][0], dict) else None
    cli_pert = bool({"perturbation", "profile", "noise", "bits"} & explicit)
    file_plans = [_toml_plan(t) for t in toml_plans] if toml_plans is not None else []  # checked even when flags win
    if toml_plans is not None and not cli_pert:
        plans += file_plans
    else:
        specs = merged.get("perturbation") or ()
        if isinstance(specs, str):
            specs = (specs,)
        specs = [s for s in specs if not isinstance(s, dict)]
        noise, bits = merged.get("noise"), merged.get("bits")
        if merged.get("profile"):
            try:
                prof = get_profile(merged["profile"])
            except PerturbationError as e:
                raise BadInput(str(e)) from None
            given, axis = levels_for(prof.spec, noise, bits) if (noise or bits) else (prof.levels, prof.axis)
            plans.append(PerturbationPlan(prof.spec, tuple(given), axis))
        if not specs and not merged.get("profile"):
            specs = ["quantize" if bits and not noise else "gaussian"]
        for s in specs:
            plans.append(PerturbationPlan(s, *levels_for(s, noise, bits)))
        takes_bits = [get(parse_spec(p.spec).swept_name).level_is_bits for p in plans]
        if bits is not None and not any(takes_bits):
            raise BadInput(f"--bits {bits}: no perturbation here is swept over bit widths "
                           "(quantize and crossbar-adc are)")
        if noise is not None and all(takes_bits):
            raise BadInput(f"--noise {noise}: every perturbation here is swept over bit widths (give --bits)")
    plans += random_baselines(plans)
    seeds = merged.get("seeds", 10)
    if isinstance(seeds, str):
        if seeds.strip().lower() == "auto":
            seeds = None
        elif seeds.strip().isdigit():
            seeds = int(seeds)
        else:
            raise BadInput(f"--seeds must be a positive integer or 'auto', got {seeds!r}")
    if seeds is not None and not (isinstance(seeds, int) and 1 <= seeds <= MAX_SEEDS):
        raise BadInput(f"--seeds must be from 1 to {MAX_SEEDS:,} or 'auto', got {seeds!r}")
    check_bounds(sweep_fields(), merged)
    cfg = build(SweepConfig, merged, models=expand_models(str(m) for m in merged["models"]), plans=tuple(plans),
                seeds=seeds)
    runtime = {f.name: merged.get(f.name) for f in fields(SweepRuntime)}
    return cfg, runtime


PLAN_KEYS = ("spec", "levels", "axis")


def _toml_plan(t: Any) -> PerturbationPlan:
    """One `[[perturbation]]` table, checked as the flags are: the same level parser (finite,
    in range, at most MAX_LEVELS), bit widths as integers, unknown keys refused by name."""
    if not isinstance(t, dict):
        raise BadInput(f"[[perturbation]] entries must be tables (spec = ..., levels = ...), got {t!r}")
    unknown_keys = [k for k in t if k not in PLAN_KEYS]
    if unknown_keys:
        close = difflib.get_close_matches(unknown_keys[0], PLAN_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (a table holds {', '.join(PLAN_KEYS)})"
        raise BadInput(f"[[perturbation]]: unknown key {unknown_keys[0]!r}{hint}")
    spec = t.get("spec")
    if not isinstance(spec, str) or not spec.strip():
        raise BadInput(f"[[perturbation]]: spec = {spec!r} must be a spec string, e.g. \"gaussian\"")
    lv = t.get("levels")
    if isinstance(lv, list):
        bad = [x for x in lv if isinstance(x, bool) or not isinstance(x, (int, float))]
        if bad or not lv:
            raise BadInput(f"[[perturbation]] {spec}: levels = {lv!r} must be a list of numbers" if lv else
                           f"[[perturbation]] {spec}: levels = [] holds no level")
        lv = ",".join(repr(float(x)) for x in lv)
    elif lv is not None and (isinstance(lv, bool) or not isinstance(lv, (str, int, float))):
        raise BadInput(f"[[perturbation]] {spec}: levels = {lv!r} must be a range string or a list of numbers")
    try:
        is_bits = get(parse_spec(spec).swept_name).level_is_bits
    except PerturbationError as e:
        raise BadInput(str(e)) from None
    given = None if lv is None else str(lv)
    levels, axis = levels_for(spec, None if is_bits else given, given if is_bits else None)
    axis = t.get("axis", axis)
    if axis not in ("linear", "log"):
        raise BadInput(f"[[perturbation]] {spec}: axis must be linear or log, got {axis!r}")
    return PerturbationPlan(spec, levels, axis)


def to_toml(cfg: SweepConfig, runtime: dict) -> str:
    """The resolved configuration as a sweep.toml that `--config` reads back."""
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    d = cfg.to_dict()
    plans = d.pop("plans")
    d["seeds"] = "auto" if d["seeds"] is None else d["seeds"]
    lines = [f"{k} = {val(v)}" for k, v in d.items() if v is not None and v != []]
    lines += [f"{k} = {val(v)}" for k, v in runtime.items() if v is not None]
    for p in plans:
        lines += ["", "[[perturbation]]", f"spec = {val(p['spec'])}", f"levels = {val(p['levels'])}",
                  f"axis = {val(p['axis'])}"]
    return "\n".join(lines) + "\n"
