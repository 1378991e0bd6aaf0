"""The perturbation contract and its registry.

A perturbation is a pure function

    fn(t, level, gens, ctx) -> t'

`t` maps tensor names to K-stacked tensors (K chips or K posterior-sample x chip pairs),
`gens` holds one `torch.Generator` per k (so K stacked draws equal K separate draws, and
the same seed gives the same chip at every level: common random numbers), `ctx` says
which tensors are in scope. It returns a new mapping and never modifies its input.

Tensor names follow the network (`blocks.i.linear.weight`, `blocks.i.v_th`,
`blocks.i.alpha`, `readout.linear.weight`, ...); layers are `blocks.0`, `blocks.1`, ...,
`readout`. Extra runtime entries (`blocks.i.read_noise`, `blocks.i.dead`,
`blocks.i.saturated`) are read by the forward pass.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

from basics.errors import BadInput

Tensors = dict[str, Tensor]


class PerturbationError(BadInput):
    """A malformed spec, unknown name or option, or a level out of range."""


class Scale(str, Enum):
    MAX = "max"  # s_l = max |w_l| (the analog convention)
    STD = "std"  # s_l = std(w_l)
    ABS = "abs"  # s_l = 1: the level is an absolute weight std
    SIGMA = "sigma"  # each weight's own IVON posterior std (tensors `sigma:<name>` supplied by the sweep)


@dataclass(frozen=True)
class Context:
    """What a perturbation may touch.

    Attributes:
        layers: layer prefixes in scope (`blocks.0`, ..., `readout`).
        hidden: hidden layer prefixes of the network (those with neurons).
        scale: how weight noise levels are scaled per layer.
        include_bias: also perturb biases (after BN folding) with the weights.
        include_bn: also perturb BatchNorm scale and shift (gamma, beta) with the weights.
        options: per-perturbation options from the spec (`name(key=value):level`).
        objective: for worst-case perturbations: maps K stacked networks to one loss per
            prediction ([K / group]: the NLL of each prediction's averaged networks on the
            search batch), set by the sweep; None elsewhere.
        group: consecutive networks that form one prediction (M samples of one chip).
        calibrate: for crossbar ADC ranges: maps K stacked networks (crossbar read-out, ADCs
            bypassed) to each crossbar layer's |column currents| on training examples
            ([K, R, row tiles, out]), set by the sweep; None elsewhere.
    """

    layers: tuple[str, ...]
    hidden: tuple[str, ...]
    scale: Scale = Scale.MAX
    include_bias: bool = False
    include_bn: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    objective: Callable[[Mapping[str, Tensor]], Tensor] | None = field(default=None, compare=False, repr=False)
    group: int = 1
    calibrate: Callable[[Mapping[str, Tensor]], dict[str, Tensor]] | None = field(default=None, compare=False,
                                                                                 repr=False)

    def weights(self, t: Mapping[str, Tensor]) -> list[str]:
        names = [f"{l}.linear.weight" for l in self.layers if f"{l}.linear.weight" in t]
        if self.include_bias:
            names += [f"{l}.linear.bias" for l in self.layers if f"{l}.linear.bias" in t]
        if self.include_bn:
            names += [f"{l}.bn.{p}" for l in self.layers for p in ("weight", "bias") if f"{l}.bn.{p}" in t]
        return names

    def neurons(self) -> list[str]:
        return [l for l in self.layers if l in self.hidden]

    def opt(self, key: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        v = str(self.options.get(key, default))
        if choices is not None and v not in choices:
            raise PerturbationError(f"option {key}={v!r} not one of {', '.join(choices)}")
        return v

    def num(self, key: str, default: float) -> float:
        v = self.options.get(key, default)
        try:
            return float(v)
        except (TypeError, ValueError):
            raise PerturbationError(f"option {key}={v!r} is not a number") from None


PerturbFn = Callable[[Tensors, float, list[torch.Generator], Context], Tensors]


@dataclass(frozen=True)
class Perturbation:
    """A registered hardware model.

    Attributes:
        name: registry name.
        fn: the pure function.
        meaning: one line of physics: what on a chip this models.
        level: what the level means, with units.
        options: option name -> (default, description).
        integer_level: levels must be integers (bits).
        min_level, max_level: the valid level range (inclusive); 1e6 unless the level has a
            natural bound (a fraction, bits): a noise a million times the weights' scale is
            already far past chance, and larger ones overflow float32.
        version: bump when the numbers a spec gives change (stored with every result).
        zero_is_identity: level 0 leaves the network untouched (not for bits or PCM time); a
            function of the options where that depends on them (`identity_at_zero`).
        level_is_bits: the level is a bit width: set by `--bits`, and more is milder.
        monotone: harm grows with severity along the whole level range, so a level at chance
            implies every harsher one is too (sweeps skip those) and accuracy may be
            interpolated between levels. False where the axis changes regime (1-bit
            quantisation binarises; a bit error rate above 0.5 inverts codes).
        check: optional validation of (options, level) beyond names and range; raises
            PerturbationError for a combination the model cannot honour.
    """

    name: str
    fn: PerturbFn
    meaning: str
    level: str
    options: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    integer_level: bool = False
    min_level: float = 0.0
    max_level: float = 1e6
    version: int = 1
    zero_is_identity: bool | Callable[[Mapping[str, str]], bool] = True
    level_is_bits: bool = False
    check: Callable[[Mapping[str, str], float], None] | None = None
    monotone: bool = True

    def identity_at_zero(self, options: Mapping[str, str] | None = None) -> bool:
        """Whether level 0 with these options is exactly the clean network."""
        z = self.zero_is_identity
        return bool(z(dict(options or {}))) if callable(z) else z

    def check_level(self, level: float) -> None:
        if not (self.min_level <= level <= self.max_level):  # NaN fails too
            hi = f"..{self.max_level:g}"
            raise PerturbationError(f"{self.name}: level {level:g} out of range {self.min_level:g}{hi} ({self.level})")
        if self.integer_level and level != int(level):
            raise PerturbationError(f"{self.name}: level must be an integer ({self.level}), got {level:g}")


PERTURBATIONS: dict[str, Perturbation] = {}


def register(name: str, *, meaning: str, level: str, options: Mapping[str, tuple[str, str]] | None = None,
             integer_level: bool = False, min_level: float = 0.0, max_level: float = 1e6,
             version: int = 1, zero_is_identity: bool | Callable[[Mapping[str, str]], bool] = True,
             level_is_bits: bool = False,
             check: Callable[[Mapping[str, str], float], None] | None = None,
             monotone: bool = True) -> Callable[[PerturbFn], PerturbFn]:
    """Decorator: register a perturbation function under `name` with its metadata."""
    def deco(fn: PerturbFn) -> PerturbFn:
        if name in PERTURBATIONS:
            raise ValueError(f"perturbation {name!r} registered twice")
        PERTURBATIONS[name] = Perturbation(name, fn, meaning, level, dict(options or {}), integer_level,
                                           min_level, max_level, version, zero_is_identity, level_is_bits, check,
                                           monotone)
        return fn
    return deco


def unknown(kind: str, name: str, known: Iterable[str]) -> PerturbationError:
    """The error for an unknown name, with the closest known one when there is one."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return PerturbationError(f"unknown {kind} {name!r}{hint} (see `robust perturbations`)")


def get(name: str) -> Perturbation:
    if name not in PERTURBATIONS:
        raise unknown("perturbation", name, PERTURBATIONS)
    return PERTURBATIONS[name]


# --- helpers shared by the hardware models ----------------------------------------------------

def draw(shape: tuple[int, ...], gens: list[torch.Generator], like: Tensor, kind: str = "normal") -> Tensor:
    """One independent draw per k, stacked: [K, *shape], on `like`'s device and dtype."""
    fn = torch.randn if kind == "normal" else torch.rand
    return torch.stack([fn(shape, generator=g, device=g.device) for g in gens]).to(like.device, like.dtype)


def layer_scale(w: Tensor, scale: Scale, t: Mapping[str, Tensor] | None = None, name: str = "") -> Tensor:
    """Per-draw scale s_l [K, 1, ...] of a K-stacked tensor; for `sigma`, the posterior std of
    every weight (`t["sigma:" + name]`, same shape as `w`)."""
    if scale is Scale.SIGMA:
        if t is None or f"sigma:{name}" not in t:
            raise PerturbationError(f"scale sigma: no posterior sigma for {name} (an IVON model or --sigma-from)")
        return t[f"sigma:{name}"]
    dims = tuple(range(1, w.dim()))
    if scale is Scale.MAX:
        s = w.abs().amax(dim=dims, keepdim=True)
    elif scale is Scale.STD:
        s = w.flatten(1).std(1).view(-1, *([1] * (w.dim() - 1)))
    else:
        s = torch.ones_like(w.abs().amax(dim=dims, keepdim=True))
    return s


def copy(t: Mapping[str, Tensor]) -> Tensors:
    return dict(t)


def log_normal_factor(level: float, eps: Tensor, center: str) -> Tensor:
    """exp(level * eps): median-preserving (`median`, E = exp(level^2 / 2)), or divided by
    exp(level^2 / 2) so that its mean is 1 (`mean`)."""
    f = torch.exp(level * eps)
    return f * math.exp(-level * level / 2) if center == "mean" else f


CENTER_OPTION = ("median", "median (exp(s eps): the mean grows by exp(s^2/2)) | mean (mean-preserving)")
