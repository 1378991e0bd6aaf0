"""Perturbation specs: `name[(key=value,...)][:level]` joined by `+`, and named profiles.

`quantize:4+mismatch:0.05` applies 4-bit quantisation, then 5% mismatch. In a sweep the
component marked `:?` takes the swept level; without a mark, the last component does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Mapping

import torch

from perturbations.base import Context, PerturbationError, Tensors, get, unknown
import perturbations.crossbar  # noqa: F401  (registers)
import perturbations.faults  # noqa: F401
import perturbations.mismatch  # noqa: F401
import perturbations.noise  # noqa: F401
import perturbations.pcm  # noqa: F401
import perturbations.quantize  # noqa: F401

_COMPONENT = re.compile(r"^\s*([a-z][a-z0-9-]*)\s*(?:\(([^)]*)\))?\s*(?::\s*([^:()+\s]+))?\s*$")


@dataclass(frozen=True)
class Component:
    name: str
    level: float | None  # None: the swept level
    options: tuple[tuple[str, str], ...] = ()

    def label(self, swept: bool) -> str:
        opts = f"({','.join(f'{k}={v}' for k, v in self.options)})" if self.options else ""
        lvl = "" if swept else f":{self.level:g}"
        return f"{self.name}{opts}{lvl}"


@dataclass(frozen=True)
class Spec:
    """A composition of perturbations and which component the sweep level drives."""

    components: tuple[Component, ...]
    swept: int

    @property
    def label(self) -> str:
        """Canonical text, swept component without level: `quantize:4+mismatch`."""
        return "+".join(c.label(i == self.swept) for i, c in enumerate(self.components))

    @property
    def swept_name(self) -> str:
        return self.components[self.swept].name

    @property
    def swept_options(self) -> dict[str, str]:
        return dict(self.components[self.swept].options)

    def versions(self) -> dict[str, int]:
        return {c.name: get(c.name).version for c in self.components}

    def fixed_level(self) -> float | None:
        """The level written in the spec for the swept component (None if `?` or absent)."""
        return self.components[self.swept].level

    def check(self, levels: list[float]) -> None:
        for i, c in enumerate(self.components):
            p = get(c.name)
            bad = {k for k, _ in c.options} - set(p.options)
            if bad:
                raise PerturbationError(f"{c.name}: unknown option(s) {', '.join(sorted(bad))}"
                                        f" (has: {', '.join(p.options) or 'none'})")
            if i != self.swept:
                if c.level is None:
                    raise PerturbationError(f"{c.name}: only one component can be swept; give it a level")
                p.check_level(c.level)
            for lv in ([c.level] if i != self.swept else list(levels) + [c.level]):
                if lv is not None and p.check is not None:
                    p.check(dict(c.options), lv)
        for lv in levels:
            get(self.swept_name).check_level(lv)


def parse_spec(text: str) -> Spec:
    """Parse `name[(k=v,...)][:level|:?]+...`; raises PerturbationError on malformed text."""
    parts = [p for p in re.split(r"\+(?![^(]*\))", text.strip())]
    if not text.strip() or any(not p.strip() for p in parts):
        raise PerturbationError(f"malformed perturbation spec {text!r} (expected e.g. quantize:4+mismatch:0.05)")
    comps, swept = [], None
    for i, part in enumerate(parts):
        m = _COMPONENT.match(part)
        if not m:
            raise PerturbationError(f"malformed perturbation component {part.strip()!r} in {text!r}")
        name, opts, lvl = m.groups()
        get(name)
        options = []
        for kv in filter(None, (o.strip() for o in (opts or "").split(","))):
            if "=" not in kv:
                raise PerturbationError(f"option {kv!r} in {part.strip()!r} is not key=value")
            k, v = (s.strip() for s in kv.split("=", 1))
            options.append((k, v))
        level = None
        if lvl == "?":
            if swept is not None:
                raise PerturbationError(f"only one component may be marked ':?' in {text!r}")
            swept = i
        elif lvl is not None:
            try:
                level = float(lvl)
            except ValueError:
                raise PerturbationError(f"level {lvl!r} of {name} is not a number") from None
        comps.append(Component(name, level, tuple(options)))
    return Spec(tuple(comps), len(comps) - 1 if swept is None else swept)


def component_generators(seed: int, draws: list[int], component: int, device: torch.device | str = "cpu"
                         ) -> list[torch.Generator]:
    """One generator per draw, fixed by (seed, draw, component): the same chip at every level."""
    gens = []
    for d in draws:
        h = hashlib.sha256(f"{seed}/{d}/{component}".encode()).digest()
        gens.append(torch.Generator(device=device).manual_seed(int.from_bytes(h[:8], "little") & (2**63 - 1)))
    return gens


def apply(spec: Spec, level: float, t: Tensors, *, seed: int, draws: list[int], ctx: Context) -> Tensors:
    """K perturbed copies (K = len(draws)) of K-stacked tensors at the swept `level`."""
    for i, comp in enumerate(spec.components):
        p = get(comp.name)
        lvl = level if i == spec.swept else comp.level
        p.check_level(lvl)
        if lvl == 0 and p.identity_at_zero(dict(comp.options)):
            continue  # exactly the identity
        gens = component_generators(seed, draws, i)
        t = p.fn(t, float(lvl), gens, replace(ctx, options=dict(comp.options)))
    return t


@dataclass(frozen=True)
class Profile:
    """A named hardware profile: a composition, its default sweep levels, and what it models."""

    name: str
    spec: str
    levels: tuple[float, ...]
    description: str
    source: str
    axis: str = "linear"  # `log` when the levels are log-spaced (summaries integrate on that axis)


PROFILES: Mapping[str, Profile] = {p.name: p for p in (
    Profile("digital-8bit", "quantize(granularity=channel):8+mismatch(targets=vth+tau):?",
            (0.0, 0.01, 0.02, 0.05),
            "8-bit digital neuromorphic core: per-output-channel 8-bit synapses, small (1-5%) spread of "
            "neuron thresholds and leaks from supply/temperature variation; sweeps the spread",
            "8-bit weights as Rockpool's quantisers default to; Loihi-class per-core weight scaling"),
    Profile("mixed-signal-4bit", "quantize:4+read-noise:0.05+mismatch:?", (0.0, 0.1, 0.2, 0.3),
            "4-bit mixed-signal chip with analog neurons: 4-bit weights, 5% cycle-to-cycle current noise and "
            "~20% fixed-pattern mismatch of thresholds, leaks and synaptic gains; sweeps the mismatch",
            "Rockpool mismatch model p(1 + sigma xi); ~20% mismatch as reported for DYNAP-SE-class analog chips"),
    Profile("pcm-crossbar", "pcm(compensation=global):?", (0.0, 60.0, 3600.0, 86400.0, 2592000.0),
            "analog in-memory computing on a PCM crossbar with global drift compensation; sweeps the time "
            "since programming from 0 (just programmed) to 30 days",
            "Nandakumar et al. 2019 PCM statistical model, as in aihwkit's PCMLikeNoiseModel presets", "log"),
    Profile("pcm-array", "pcm(compensation=global):3600+crossbar-adc(rows=256,cols=256,g_max=25,wire=0.35):?",
            (8.0, 7.0, 6.0, 5.0, 4.0, 3.0),
            "PCM crossbar one hour after programming, read out: 256 x 256 arrays of differential pairs (25 uS "
            "devices), 0.35 ohm per cell segment of wire, per-column ADCs with ranges calibrated per array; sweeps the ADC bits",
            "PCM statistics and g_max = 25 uS: Nandakumar et al. 2019 as in aihwkit's PCMLikeNoiseModel; 256 x 256 "
            "arrays: IBM HERMES (Le Gallo et al. 2023, Nature Electronics); 0.35 ohm wire: aihwkit "
            "IOParameters.ir_drop_g_ratio; 8 bits down to 3: the range studied, an assumption"),
    Profile("reram-array", "crossbar-adc(rows=256,cols=256,g_min=1,g_max=40,prog=0.025,wire=1):?",
            (8.0, 7.0, 6.0, 5.0, 4.0, 3.0),
            "ReRAM (1T1R) crossbar: 256 x 256 arrays of differential pairs between 1 and 40 uS, write-verify residual "
            "of 2.5% of g_max per device, 1 ohm per cell segment, per-column ADCs with ranges calibrated per array; sweeps "
            "the ADC bits",
            "256 x 256 1T1R arrays with differential weights: NeuRRAM (Wan et al. 2022, Nature 608); the conductance "
            "window, the 1 uS write-verify tolerance and 1 ohm of wire are assumptions of typical HfOx ReRAM"),
)}


def centering(spec_text: str) -> list[str]:
    """For each log-normal component of a spec, which centring it uses (median or mean)."""
    out = []
    for c in parse_spec(spec_text).components:
        if "center" in get(c.name).options:
            center = dict(c.options).get("center", "median")
            out.append(f"{c.name}: " + ("mean-preserving log-normal" if center == "mean" else
                                        "median-preserving log-normal (the mean grows by exp(s^2/2))"))
    return out


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown("profile", name, PROFILES)
    return PROFILES[name]
