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

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perturbations.base import PerturbationError, Scale, get
from perturbations.spec import Spec, get_profile, parse_spec
from reports.summary import SEARCH_OPTIONS, searches
from robustness.choices import SWEEP_CHOICES
from robustness.errors import BadInput, require_utf8
from robustness.tomlfile import load_toml
from robustness.evaluate import BNMode, Mode
from robustness.ranges import level_axis, out_of_bounds, parse_levels

MIN_AUTO_SEEDS = 5  # --seeds auto never judges an interval from fewer draws


@dataclass(frozen=True)
class PerturbationPlan:
    """One perturbation spec, the levels its swept component takes, and the axis they were
    given on (`linear`, or `log` for START:STOP:NUMlog ranges and log-spaced profiles):
    summaries integrate and interpolate on that axis."""

    spec: str
    levels: tuple[float, ...]
    axis: str = "linear"


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines the numbers of a sweep (hashed to identify its run).

    Attributes:
        models: checkpoint paths.
        plans: perturbations with their levels.
        seeds: independent draws per level; None = auto (until the 95% interval of
            accuracy is narrower than `ci_width` points, at least `MIN_AUTO_SEEDS`, at most
            `max_seeds`).
        ci_width, max_seeds, auto_batch: the auto-seed rule (width in accuracy points).
        mc_samples: M: posterior samples for BMA, copies for chips.
        bn: BN statistics for posterior samples (`recalibrate` or `mean`).
        modes: modes to evaluate (empty: every mode each checkpoint has).
        layers: layers in scope (empty: all); `per_layer` sweeps each separately.
        scale: per-layer noise scale `max`, `std`, `abs`, or `sigma` (each weight's posterior std).
        sigma_from: IVON checkpoint whose posterior sigma scales the noise of non-IVON models.
        fold_bn: fold BatchNorm into weights and bias currents before perturbing.
        include_bias: perturb biases along with weights.
        include_bn: perturb BatchNorm scale and shift along with weights.
        limit: evaluate on the first N examples of the split.
        split: `test` or `validation`.
        seed: base seed of all draws.
        data_dir: overrides the checkpoints' data folder.
        skip_at_chance: do not run the levels of a curve harsher than one where every draw
            was at chance (stored as skipped, with the reason; see robustness/chance.py).
    """

    models: tuple[str, ...]
    plans: tuple[PerturbationPlan, ...]
    seeds: int | None = 10
    ci_width: float = 0.5
    max_seeds: int = 100
    auto_batch: int = 5
    mc_samples: int = 10
    bn: str = "recalibrate"
    modes: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    per_layer: bool = False
    scale: str = "max"
    sigma_from: str | None = None
    fold_bn: bool = False
    include_bias: bool = False
    include_bn: bool = False
    limit: int | None = None
    split: str = "test"
    seed: int = 0
    data_dir: str | None = None
    skip_at_chance: bool = True

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["plans"] = [{"spec": p.spec, "levels": list(p.levels), "axis": p.axis} for p in self.plans]
        for k in ("models", "layers", "modes"):
            d[k] = list(getattr(self, k))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        d = dict(d)
        d["plans"] = tuple(PerturbationPlan(p["spec"], tuple(float(x) for x in p["levels"]), p.get("axis", "linear"))
                           for p in d["plans"])
        for k in ("models", "layers", "modes"):
            d[k] = tuple(d.get(k, ()))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def validate(cfg: SweepConfig) -> list[Spec]:
    """Check everything that can be checked before touching the store; returns parsed specs."""
    if not cfg.models:
        raise BadInput("no --model given")
    for m in (*cfg.models, *([cfg.sigma_from] if cfg.sigma_from else [])):
        require_utf8(m)
    if not cfg.plans:
        raise BadInput("no perturbation levels given (use --noise, --bits or --profile)")
    if cfg.seeds is not None and cfg.seeds < 1:
        raise BadInput(f"--seeds must be a positive integer or 'auto', got {cfg.seeds}")
    if cfg.sigma_from is not None and cfg.scale != Scale.SIGMA.value:
        raise BadInput("--sigma-from is only read with --scale sigma")
    if cfg.mc_samples < 1:
        raise BadInput(f"--mc-samples must be at least 1, got {cfg.mc_samples}")
    if cfg.limit is not None and cfg.limit < 1:
        raise BadInput(f"--limit must be positive, got {cfg.limit}")
    if cfg.ci_width <= 0 or cfg.max_seeds < MIN_AUTO_SEEDS:
        raise BadInput(f"--ci-width must be positive and --max-seeds at least {MIN_AUTO_SEEDS}")
    try:
        scale = Scale(cfg.scale)
        BNMode(cfg.bn)
        for m in cfg.modes:
            Mode(m)
    except ValueError as e:
        raise BadInput(str(e)) from None
    specs = []
    for plan in cfg.plans:
        try:
            spec = parse_spec(plan.spec)
            spec.check(list(plan.levels))
        except PerturbationError as e:
            raise BadInput(str(e)) from None
        if not plan.levels:
            raise BadInput(f"{plan.spec}: no levels")
        if scale is Scale.SIGMA and any(c.name != "gaussian" for c in spec.components):
            raise BadInput(f"--scale sigma scales gaussian weight noise only, not {plan.spec}")
        specs.append(spec)
    if scale is Scale.SIGMA and cfg.fold_bn:
        raise BadInput("--scale sigma needs the unfolded weights the posterior describes (drop --fold-bn)")
    return specs


SCALAR_KEYS = {"seeds", "ci_width", "max_seeds", "auto_batch", "mc_samples", "bn", "layers", "per_layer", "scale", "fold_bn",
               "include_bias", "include_bn", "limit", "split", "seed", "data_dir", "noise", "bits", "profile", "perturbation",
               "models", "model", "out", "store", "device", "workers", "threads", "compile", "modes", "sigma_from",
               "executor", "address", "skip_at_chance"}


# What each sweep.toml key may hold (TOML types), checked before anything is converted.
_STR, _INT, _NUM, _BOOL, _LIST = (str,), (int,), (int, float), (bool,), (list,)
TOML_TYPES: dict[str, tuple[type, ...]] = {
    "seeds": _INT + _STR, "ci_width": _NUM, "max_seeds": _INT, "auto_batch": _INT, "mc_samples": _INT, "bn": _STR,
    "layers": _STR + _LIST, "per_layer": _BOOL, "scale": _STR, "fold_bn": _BOOL, "include_bias": _BOOL,
    "include_bn": _BOOL, "limit": _INT, "split": _STR, "seed": _INT, "data_dir": _STR, "noise": _STR + _NUM + _LIST,
    "bits": _STR + _INT + _LIST, "profile": _STR, "perturbation": _STR + _LIST, "models": _STR + _LIST,
    "model": _STR + _LIST, "out": _STR, "store": _STR, "device": _STR, "workers": _INT, "threads": _INT,
    "compile": _BOOL, "modes": _STR + _LIST,
    "sigma_from": _STR, "executor": _STR, "address": _STR, "skip_at_chance": _BOOL}
# Bounds of the numeric options, whether given as flags or in a file: (least value, strictly above it, most).
# The most is what one sweep can hold: each seed and sample is a network evaluated per level.
MAX_SEEDS = 100_000
BOUNDS = {"ci_width": (0.0, True, 100.0), "max_seeds": (1, False, MAX_SEEDS), "auto_batch": (1, False, 1000),
          "mc_samples": (1, False, 10_000), "limit": (1, False, None), "seed": (0, False, 2**63 - 1),
          "workers": (1, False, 1024), "threads": (1, False, 1024)}


def _check_value(key: str, v: Any, where: str) -> None:
    kinds = TOML_TYPES[key]
    ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
    if not ok:
        words = {"str": "string", "int": "integer", "float": "number", "bool": "true/false", "list": "list"}
        names = " or ".join(sorted({words[t.__name__] for t in kinds}))
        raise BadInput(f"{where}: {key} = {v!r} must be {'an' if names[0] in 'aeiou' else 'a'} {names}")
    if isinstance(v, list):
        for x in v:
            if not isinstance(x, (str, int, float, dict)) or isinstance(x, bool):
                raise BadInput(f"{where}: {key} holds {x!r}, not a string or number")


def check_bounds(values: dict[str, Any], where: str = "") -> None:
    """Numbers in range and finite (NaN passes no comparison, so it is refused by name)."""
    for key, (low, strict, high) in BOUNDS.items():
        v = values.get(key)
        if v is None:
            continue
        flag = f"{where}{key}" if where else "--" + key.replace("_", "-")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BadInput(f"{flag} must be a finite number, got {v!r}")
        why = out_of_bounds(v, low, high, low_open=strict)
        if why:
            raise BadInput(f"{flag} {why}, got {v!r}")


def read_toml(path: str) -> dict:
    p = Path(path)
    raw = load_toml(p, "config file")
    out = {}
    for k, v in raw.items():
        key = k.replace("-", "_")
        if key not in SCALAR_KEYS:
            raise BadInput(f"{p}: unknown option {k!r}")
        _check_value(key, v, str(p))
        if key in SWEEP_CHOICES and v not in SWEEP_CHOICES[key]:
            raise BadInput(f"{p}: {key} = {v!r} is not one of {', '.join(SWEEP_CHOICES[key])}")
        out[key] = v
    check_bounds(out, f"{p}: ")
    return out


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


def _names(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(str(x) for x in (v or ()))


def resolve(flags: dict[str, Any], explicit: set[str]) -> tuple[SweepConfig, dict]:
    """Merge TOML (if `flags['config']`) under explicit flags; returns the config and runtime options."""
    merged: dict[str, Any] = {}
    if flags.get("config"):
        merged.update(read_toml(flags["config"]))
        if "model" in merged and "models" not in merged:
            merged["models"] = merged.pop("model")
    for k, v in flags.items():
        if k in explicit or k not in merged:
            merged[k] = v
    if "model" in explicit or not merged.get("models"):
        merged["models"] = merged.get("model") or merged.get("models") or ()
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
            raise BadInput(f"--bits {bits}: no perturbation here is swept over bit widths (quantize is)")
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
    check_bounds(merged)
    for key in ("layers", "modes"):
        given = merged.get(key)
        if given is not None and given != () and not _names(given):
            raise BadInput(f"--{key} {given!r}: names no {key[:-1]} (give e.g. "
                           f"{'blocks.0,readout' if key == 'layers' else 'point,chips'})")
    cfg = SweepConfig(
        models=tuple(str(m) for m in merged["models"]), plans=tuple(plans), seeds=seeds,
        ci_width=float(merged.get("ci_width", 0.5)), max_seeds=int(merged.get("max_seeds", 100)),
        auto_batch=int(merged.get("auto_batch", 5)),
        mc_samples=int(merged.get("mc_samples", 10)), bn=str(merged.get("bn", "recalibrate")),
        modes=_names(merged.get("modes")), sigma_from=merged.get("sigma_from"),
        layers=_names(merged.get("layers")), per_layer=bool(merged.get("per_layer", False)),
        scale=str(merged.get("scale", "max")),
        fold_bn=bool(merged.get("fold_bn", False)), include_bias=bool(merged.get("include_bias", False)),
        include_bn=bool(merged.get("include_bn", False)),
        limit=merged.get("limit"), split=str(merged.get("split", "test")), seed=int(merged.get("seed", 0)),
        data_dir=merged.get("data_dir"), skip_at_chance=bool(merged.get("skip_at_chance", True)))
    runtime = {k: merged.get(k) for k in ("store", "out", "device", "threads", "workers", "compile", "executor",
                                          "address")}
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


def _attack(spec_text: str) -> tuple[str, bool, str] | None:
    """(what is attacked: the options but the search's, is the random baseline, that
    baseline's spec) of a lone `adversarial` spec; None for anything else."""
    try:
        spec = parse_spec(spec_text)
    except PerturbationError:
        return None  # validate() reports it
    if len(spec.components) != 1 or spec.components[0].name != "adversarial":
        return None
    given = dict(spec.components[0].options)
    opts = [(k, str(v)) for k, v in given.items() if k not in SEARCH_OPTIONS]
    key = ",".join(f"{k}={v}" for k, v in sorted(opts if any(k == "target" for k, _ in opts)
                                                 else opts + [("target", "weights")]))
    return key, not searches(given), "adversarial(" + ",".join(f"{k}={v}" for k, v in opts + [("steps", "0")]) + ")"


def random_baselines(plans: list[PerturbationPlan]) -> list[PerturbationPlan]:
    """Each worst-case plan brings its random baseline (same target, budget and levels, no
    ascent: the search's random start), so every summary can show the gap; none if given already."""
    have = {a[0] for a in map(_attack, (p.spec for p in plans)) if a is not None and a[1]}
    out = []
    for p in plans:
        a = _attack(p.spec)
        if a is not None and not a[1] and a[0] not in have:
            out.append(PerturbationPlan(a[2], p.levels, p.axis))
            have.add(a[0])
    return out


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
