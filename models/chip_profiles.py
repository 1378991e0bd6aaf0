"""Chip profiles: what a deployment target fixes, where each value comes from, and whether a network fits.

A chip spec is `NAME` or `NAME(key=value,...)`: a profile below, or `fixed-point` (the
`Arithmetic` defaults, no size limits), with any `Arithmetic` field overridden
(`loihi2(state_bits=12)`) and `fit=strict|arithmetic`. `strict` (the default) refuses a
network that does not fit the chip, with the reason; `arithmetic` runs the chip's
arithmetic on it anyway (larger than the chip, or with more inputs or classes), and the
deployment label says so.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from basics.errors import BadInput
from models.fixed_point import Arithmetic
from models.model_config import NEURONS, RECURRENT, ModelConfig


@dataclass(frozen=True)
class Cost:
    """A per-operation energy, with where it comes from."""

    pj: float
    source: str


@dataclass(frozen=True)
class Profile:
    """A chip as a deployment target.

    Attributes:
        name, chip: the spec name and the chip it stands for.
        arithmetic: how it computes.
        max_inputs, max_neurons, max_outputs, max_fan_in: size limits (None: none we model).
        neurons: the neuron types it runs.
        effects: a perturbation spec of the chip's own non-ideality (swept with `?`) and its levels.
        synop_pj, neuron_pj: energy of one synaptic event and of one neuron update (None: not published).
        sources: where each fixed value comes from; `assumptions`: what is ours.
    """

    name: str
    chip: str
    arithmetic: Arithmetic
    max_inputs: int | None
    max_neurons: int | None
    max_outputs: int | None
    max_fan_in: int | None
    neurons: tuple[str, ...]
    effects: str
    effect_levels: tuple[float, ...]
    synop_pj: Cost | None
    neuron_pj: Cost | None
    sources: tuple[str, ...]
    assumptions: tuple[str, ...] = field(default=())


_ROCKPOOL = "Rockpool 3.1 rockpool/devices/xylo/syns61201/xylo_mapper.py"
_LAVA = "Lava lava/proc/lif/models.py (AbstractPyLifModelFixed, the bit-accurate Loihi LIF)"
_DAVIES = "Davies et al. 2018, Loihi: a neuromorphic manycore processor with on-chip learning, IEEE Micro 38(1), Table 2"
_RICHTER = ("Richter et al. 2024, DYNAP-SE2: a scalable multi-core dynamic neuromorphic asynchronous spiking "
            "neural network processor, Neuromorph. Comput. Eng. 4 014003")

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("xylo-audio", "SynSense Xylo Audio 2 (SYNS61201)",
            Arithmetic(weight_bits=8, state_bits=16, overflow="saturate", leak="shift", dash_max=15,
                       input_bits=8, synapse_dash=1, synapse_order="add-decay", fire_at_equal=True,
                       readout_bits=16, weight_shift=0, max_weight_shift=7, max_spikes=31),
            max_inputs=16, max_neurons=1000, max_outputs=8, max_fan_in=None,
            neurons=("lif", "rlif", "cuba_lif", "if"), effects="bitflip(bits=8):?",
            effect_levels=(0.0, 1e-4, 3e-4, 1e-3, 3e-3), synop_pj=None, neuron_pj=None,
            sources=(f"{_ROCKPOOL}: up to 16 input channels, 1000 hidden and 8 output neurons, int8 weights, "
                     "int16 thresholds",
                     "xylosim 0.1.3 (SynSense's bit-accurate simulator, as probed in tests/test_xylo.py): synaptic "
                     "current += w s, then I -= I >> dash_syn; V -= V >> dash_mem, at least one unit while "
                     "positive; V += I + bias; floor(V / threshold) events at V >= threshold, at most 31, each "
                     "subtracting the threshold; int16 states saturate",
                     "Rockpool decay_to_bitshift: dash = -log2(1 - alpha)"),
            assumptions=("dash up to 15 (Rockpool stores it as uint8)",
                         "weight shifts 0-7 per matrix (xylosim's weight_shift_inp / _rec / _out)",
                         "input: signed 8-bit graded events per step (Xylo's inputs are event counts from its "
                         "own front end)",
                         "a LIF without synapse is mapped onto Xylo's synaptic current with dash_syn = 1: the "
                         "charge is kept, its arrival spreads over a few steps",
                         "the readout is a 16-bit non-leaking accumulator of coded weights times spikes",
                         "effects: bit errors in the 8-bit weight memory",
                         "energy: no per-operation energy published; synaptic operations only")),
    Profile("loihi2", "Intel Loihi 2 (like)",
            Arithmetic(weight_bits=8, state_bits=24, overflow="wrap", leak="multiply", leak_bits=12,
                       input_bits=8, fire_at_equal=False, readout_bits=24, weight_shift=6, max_weight_shift=13),
            max_inputs=None, max_neurons=None, max_outputs=None, max_fan_in=None,
            neurons=NEURONS, effects="bitflip(bits=8):?", effect_levels=(0.0, 1e-4, 3e-4, 1e-3, 3e-3),
            synop_pj=Cost(23.6, f"{_DAVIES}: synaptic spike op, Loihi 1 at 0.75 V"),
            neuron_pj=Cost(52.0, f"{_DAVIES}: neuron update (inactive), Loihi 1 at 0.75 V"),
            sources=(f"{_LAVA}: 24-bit u and v with wraparound, 12-bit decays v (4096 - d) >> 12 truncated "
                     "toward zero, activation and threshold aligned by 6 bits, spike at v > threshold", _DAVIES),
            assumptions=("weights 8-bit signed (Loihi 2 synapses store up to 8 bits), with a weight exponent "
                         "of 0-7 above the 6-bit alignment per matrix",
                         "reset by subtraction and sparch's adaptive and recurrent neurons run as Loihi 2 "
                         "microcode neurons with the same 12-bit multipliers (Lava's LIF resets to 0)",
                         "no size limits modelled (128 cores per chip; multi-chip beyond)",
                         "energy: Loihi 1's per-operation figures, Loihi 2's are not published",
                         "effects: bit errors in the 8-bit weight memory")),
    Profile("dynap-se2", "SynSense DYNAP-SE2 (mixed-signal, like)",
            Arithmetic(weight_bits=4, state_bits=0, leak="analog", input_bits=8, readout_bits=32),
            max_inputs=None, max_neurons=1024, max_outputs=None, max_fan_in=64,
            neurons=NEURONS, effects="mismatch(targets=vth+tau+gain):?",
            effect_levels=(0.0, 0.05, 0.1, 0.15, 0.2), synop_pj=None, neuron_pj=None,
            sources=(f"{_RICHTER}: 1024 analog neurons in 4 cores, 64 synapses per neuron",
                     "Rockpool 3.1 rockpool/transform/mismatch.py mismatch_generator for DynapSim: p (1 + sigma "
                     "xi), sigma = percent_deviation / sigma_rule = 0.30 / 3 = 10% by default"),
            assumptions=("weights 4-bit signed (DYNAP-SE2 picks one of a few bias-set weights per synapse)",
                         "analog membrane and leak: no state rounding; the neuron's own AdExp dynamics are "
                         "not modelled, the network's LIF runs as trained",
                         "the readout runs on the host",
                         "effects: mismatch of thresholds, leaks and gains, 10% typical",
                         "energy: no per-operation energy published for DYNAP-SE2; synaptic operations only")),
)}

GENERIC = "fixed-point"
_SPEC = re.compile(r"^\s*([a-z][a-z0-9-]*)\s*(?:\(([^)]*)\))?\s*$")


@dataclass(frozen=True)
class Chip:
    """A parsed chip spec: the profile (None for `fixed-point`), the arithmetic, the fit rule."""

    label: str
    profile: Profile | None
    arithmetic: Arithmetic
    fit: str = "strict"


def parse_chip(text: str) -> Chip:
    """`NAME[(key=value,...)]` -> Chip; a one-line BadInput for anything else."""
    m = _SPEC.match(text or "")
    if not m:
        raise BadInput(f"--chip {text!r}: expected NAME or NAME(key=value,...), e.g. loihi2(state_bits=12)")
    name, body = m.group(1), m.group(2)
    if name != GENERIC and name not in PROFILES:
        known = ", ".join([*PROFILES, GENERIC])
        raise BadInput(f"--chip {name!r}: unknown chip (one of {known}; `robust perturbations` lists them)")
    profile = PROFILES.get(name)
    base = profile.arithmetic if profile else Arithmetic()
    changes: dict[str, object] = {}
    fit = "strict"
    for item in filter(str.strip, (body or "").split(",")):
        key, _, value = (s.strip() for s in item.partition("="))
        if key == "fit":
            if value not in ("strict", "arithmetic"):
                raise BadInput(f"--chip {text!r}: fit must be strict or arithmetic, got {value!r}")
            fit = value
            continue
        if key not in Arithmetic.__dataclass_fields__:
            raise BadInput(f"--chip {text!r}: unknown option {key!r} (options: fit, "
                           f"{', '.join(Arithmetic.__dataclass_fields__)})")
        changes[key] = _value(text, key, value, getattr(base, key))
    try:
        arith = dataclasses.replace(base, **changes)
    except ValueError as e:
        raise BadInput(f"--chip {text!r}: {e}") from None
    opts = [f"{k}={v}" for k, v in changes.items()] + ([f"fit={fit}"] if fit != "strict" else [])
    return Chip(name + (f"({','.join(opts)})" if opts else ""), profile, arith, fit)


def _value(text: str, key: str, value: str, like: object) -> object:
    try:
        if isinstance(like, bool):
            if value not in ("true", "false"):
                raise ValueError
            return value == "true"
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
    except ValueError:
        raise BadInput(f"--chip {text!r}: {key}={value!r} is not a {type(like).__name__}") from None
    return value


def misfit(chip: Chip, cfg: ModelConfig) -> str | None:
    """Why a network does not fit the chip (None: it does)."""
    p = chip.profile
    if p is None:
        return None
    fan_in = max([cfg.input_dim, *cfg.hidden[:-1]]) + (max(cfg.hidden) if cfg.neuron in RECURRENT else 0)
    checks = [
        (cfg.neuron in p.neurons, f"{cfg.neuron} neurons (it runs {', '.join(p.neurons)})"),
        (p.max_inputs is None or cfg.input_dim <= p.max_inputs,
         f"{cfg.input_dim} input channels, the chip has {p.max_inputs}"),
        (p.max_neurons is None or sum(cfg.hidden) <= p.max_neurons,
         f"{sum(cfg.hidden)} hidden neurons, the chip has {p.max_neurons}"),
        (p.max_outputs is None or cfg.num_classes <= p.max_outputs,
         f"{cfg.num_classes} classes, the chip has {p.max_outputs} output neurons"),
        (p.max_fan_in is None or fan_in <= p.max_fan_in,
         f"fan-in {fan_in} per neuron, the chip has {p.max_fan_in} synapses per neuron"),
    ]
    for ok, why in checks:
        if not ok:
            return why
    return None


def require_fit(chip: Chip, cfg: ModelConfig, path: str) -> list[str]:
    """Refuse (strict) or note (arithmetic) a network that does not fit; returns the notes.
    A neuron type the chip does not run is refused either way: there is no arithmetic for it."""
    why = misfit(chip, cfg)
    if why is None:
        return []
    unsupported = cfg.neuron not in chip.profile.neurons
    if chip.fit == "strict" or unsupported:
        hint = "" if unsupported else " (fit=arithmetic runs its arithmetic regardless)"
        raise BadInput(f"{path}: does not fit {chip.profile.chip}: {why}{hint}")
    return [f"does not fit {chip.profile.chip} ({why}): its arithmetic only"]
