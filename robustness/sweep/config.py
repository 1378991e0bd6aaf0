"""What a sweep is: its perturbation plans and options, their bounds and their checks.

`robustness.sweep.resolve` builds a `SweepConfig` from flags and a TOML file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from basics.attack_labels import SEARCH_OPTIONS, searches
from basics.errors import BadInput, require_utf8
from perturbations.base import PerturbationError, Scale
from perturbations.spec import Spec, parse_spec
from robustness.evaluate import BNMode, Mode
from robustness.ranges import out_of_bounds

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
            was at chance (stored as skipped, with the reason; see robustness/sweep/chance.py).
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


def check_value(key: str, v: Any, where: str) -> None:
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
