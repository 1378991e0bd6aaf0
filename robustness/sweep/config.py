"""What a sweep is: its options (the schema its flags and sweep.toml share), its
perturbation plans, and the checks that need the perturbation registry.

`robustness.sweep.resolve` builds a `SweepConfig` from flags and a TOML file. This module
loads no torch at import (the command line builds its options from it at start-up); the
checks import the registry when they run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from basics.attack_labels import SEARCH_OPTIONS, searches
from basics.errors import BadInput, require_utf8
from robustness.eval_config import BNMode
from basics.schema import DATA_DIR_HELP, MAX_MC_SAMPLES, SEED_MAX, Field, check_bounds, fields, help_order, option

if TYPE_CHECKING:
    from perturbations.spec import Spec

MIN_AUTO_SEEDS = 5  # --seeds auto never judges an interval from fewer draws
# The most draws one sweep can hold per level: each seed and sample is a network evaluated per level.
MAX_SEEDS = 100_000


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
    """Everything that determines the numbers of a sweep (hashed to identify its run), each
    option with its flag, bounds and help: the schema the command line and sweep.toml share.

    `plans` is resolved from `PlanOptions` (perturbations and their levels). `seeds` None =
    auto: draw in rounds of `auto_batch` until the 95% interval of accuracy is narrower than
    `ci_width` points, at least `MIN_AUTO_SEEDS`, at most `max_seeds`.
    """

    models: tuple[str, ...] = option((), "Checkpoint (.pt), a seed set (OUT.seeds.json) or a glob ('adam-seed*.pt'); "
                                         "repeatable.", flag="--model", kind="multiple", path=True,
                                     file_keys=("model",), show_default=False)
    plans: tuple[PerturbationPlan, ...] = ()
    seeds: int | None = option(10, "Draws per level, or 'auto' (see --ci-width).", file_types=(int, str))
    ci_width: float = option(0.5, "With --seeds auto: draw until the 95% interval of accuracy is narrower than this "
                                  "(points).", number="float", low=0.0, low_open=True, high=100.0,
                             unit="accuracy points")
    max_seeds: int = option(100, "Cap for --seeds auto.", number="int", low=1, high=MAX_SEEDS)
    auto_batch: int = option(5, "With --seeds auto: draws per round.", number="int", low=1, high=1000, hidden=True)
    mc_samples: int = option(10, "M: posterior samples for BMA, perturbed copies for chips.", number="int", low=1,
                             high=MAX_MC_SAMPLES, unit="networks per prediction")
    bn: str = option("recalibrate", "BN statistics of posterior samples.", choices=tuple(m.value for m in BNMode))
    modes: tuple[str, ...] = option((), "Modes to evaluate, e.g. point,chips [every mode of each model: point|mean, "
                                        "chips, bma, ensemble].", kind="names", example="point,chips")
    layers: tuple[str, ...] = option((), "Restrict to layers, e.g. blocks.0,readout.", kind="names",
                                     example="blocks.0,readout")
    per_layer: bool = option(False, "Sweep each layer separately (layer sensitivity).", kind="flag")
    scale: str = option("max", "Noise scale: per-layer max|w|, std(w), absolute, or each weight's IVON posterior "
                               "sigma.", choices=("max", "std", "abs", "sigma"))
    sigma_from: str | None = option(None, "With --scale sigma: the IVON checkpoint whose sigma scales noise for "
                                          "non-IVON models.", path=True)
    fold_bn: bool = option(False, "Fold BatchNorm into weights and bias currents before perturbing.", kind="flag")
    chip: str = option("", "Deploy on a chip first (BN folded, integer codes and dynamics; perturbations hit what it "
                           "stores): a profile (xylo-audio, loihi2, dynap-se2) or fixed-point, e.g. "
                           "'loihi2(state_bits=12)'.", show_default=False, after="fold_bn")
    include_bias: bool = option(False, "Perturb biases too (they exist after --fold-bn).", kind="flag")
    include_bn: bool = option(False, "Perturb BatchNorm scale and shift too (unfolded BN).", kind="flag")
    limit: int | None = option(None, "Evaluate on a class-stratified, seeded subset of N examples (for CI).",
                               number="int", low=1, unit="examples")
    split: str = option("test", choices=("test", "validation"))
    seed: int = option(0, "Base seed of every draw.", number="int", low=0, high=SEED_MAX)
    data_dir: str | None = option(None, DATA_DIR_HELP, path=True)
    skip_at_chance: bool = option(True, "Skip the levels harsher than one where every draw was at chance (stored "
                                        "as skipped).", kind="switch", after="per_layer")

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


def validate(cfg: SweepConfig) -> list["Spec"]:
    """Check everything that can be checked before touching the store; returns parsed specs."""
    from perturbations.base import PerturbationError, Scale
    from perturbations.spec import parse_spec
    from robustness.evaluate import BNMode, Mode

    if not cfg.models:
        raise BadInput("no --model given")
    for m in (*cfg.models, *([cfg.sigma_from] if cfg.sigma_from else [])):
        require_utf8(m)
    if not cfg.plans:
        raise BadInput("no perturbation levels given (use --noise, --bits or --profile)")
    if cfg.seeds is not None and not 1 <= cfg.seeds <= MAX_SEEDS:
        raise BadInput(f"--seeds must be from 1 to {MAX_SEEDS:,} or 'auto', got {cfg.seeds!r}")
    if cfg.sigma_from is not None and cfg.scale != Scale.SIGMA.value:
        raise BadInput("--sigma-from is only read with --scale sigma")
    check_bounds(fields(SweepConfig), vars(cfg))  # what the flags and the file were held to, for API callers too
    if cfg.max_seeds < MIN_AUTO_SEEDS:
        raise BadInput(f"--max-seeds must be at least {MIN_AUTO_SEEDS}")
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
        _validate_crossbar(plan.spec, spec)
        specs.append(spec)
    if scale is Scale.SIGMA and cfg.fold_bn:
        raise BadInput("--scale sigma needs the unfolded weights the posterior describes (drop --fold-bn)")
    if cfg.chip:
        _validate_chip(cfg, specs)
    return specs


def _validate_crossbar(text: str, spec: "Spec") -> None:
    """One crossbar per spec (its options describe the whole array), and no worst-case search
    through it: its ADCs round, so a gradient says nothing about where the read-out fails."""
    from perturbations.crossbar import is_crossbar

    names = [c.name for c in spec.components]
    if sum(map(is_crossbar, names)) > 1:
        raise BadInput(f"{text}: one crossbar component per spec (its options set every array parameter)")
    if any(map(is_crossbar, names)) and "adversarial" in names:
        raise BadInput(f"{text}: adversarial cannot search through a crossbar read-out (its ADCs have no gradient)")


def _validate_chip(cfg: SweepConfig, specs: list["Spec"]) -> None:
    """What a chip target cannot honour: analog read noise, noise scaled by float posterior
    widths, BatchNorm that the codes no longer hold, a search over rounding of codes that are
    already whole (a worst case searches through the float network the codes stand for:
    models/fixed_point.py `surrogate`)."""
    from perturbations.crossbar import is_crossbar
    from models.chip_profiles import parse_chip

    parse_chip(cfg.chip)
    if cfg.scale == "sigma":
        raise BadInput("--chip: --scale sigma describes float weights, not a chip's integer codes")
    if cfg.include_bn:
        raise BadInput("--chip folds BatchNorm into the integer codes: --include-bn has nothing to perturb")
    for spec in specs:
        for c in spec.components:
            if c.name == "adversarial" and dict(c.options).get("target") == "quantized":
                raise BadInput("--chip: adversarial(target=quantized) picks roundings of float weights; a chip's codes "
                               "are whole already (use target=weights, thresholds, time_constants or mismatch)")
            if c.name == "read-noise" or is_crossbar(c.name):
                raise BadInput(f"--chip: {c.name} is an analog array's effect; the fixed-point target does not "
                               "model it")


@dataclass(frozen=True)
class PlanOptions:
    """How a sweep's perturbations and levels are given on the command line or at the top of
    sweep.toml (`[[perturbation]]` tables are the other way); resolved into `plans`."""

    perturbation: tuple[str, ...] = option((), "Spec, e.g. gaussian, quantize:4+mismatch (sweeps the last "
                                               "component, or the one marked :?); repeatable [gaussian].",
                                           short="-p", kind="multiple", show_default=False)
    noise: str | None = option(None, "Levels: START:STOP (10 points), START:STOP:NUM[log], or a,b,c.",
                               file_types=(str, int, float, list))
    bits: str | None = option(None, "Bit widths for quantize, e.g. 2:8.", file_types=(str, int, list))
    profile: str | None = option(None, "Named hardware profile (see `robust perturbations`).")


@dataclass(frozen=True)
class SweepRuntime:
    """Where and how a sweep runs: never part of its numbers, so not of the run hash."""

    device: str = option("cpu", "Torch device: cpu, cuda, cuda:1, ..., mps.")
    threads: int | None = option(None, "CPU threads for the batched passes [torch default].", number="int", low=1,
                                 high=1024)
    workers: int | None = option(None, "Old name of --threads.", number="int", low=1, high=1024, hidden=True)
    compile: bool | None = option(None, "Force the compiled LIF kernel (C, built once per machine) on or off "
                                        "[auto: on when built or when the work pays for a build; $ROBUST_KERNEL].",
                                  kind="switch")
    executor: str = option("local", "Run units in this process, or as Ray tasks (pip install 'robust-snn[ray]').",
                           choices=("local", "ray"))
    address: str | None = option(None, "With --executor ray: the cluster to join (auto = the running one, or "
                                       "HOST:PORT) [a local Ray instance; $RAY_ADDRESS].")
    store: str | None = option(None, "Results store [robust-results.db, or $ROBUST_STORE].", path=True)
    out: str | None = option(None, "Old name of --store.", hidden=True)


def sweep_fields() -> list[Field]:
    """Every option of `robust sweep` in the order its help lists them."""
    cfg = help_order(fields(SweepConfig))
    return cfg[:1] + fields(PlanOptions) + cfg[1:] + fields(SweepRuntime)


def _attack(spec_text: str) -> tuple[str, bool, str] | None:
    """(what is attacked: the options but the search's, is the random baseline, that
    baseline's spec) of a lone `adversarial` spec; None for anything else."""
    from perturbations.base import PerturbationError
    from perturbations.spec import parse_spec

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
