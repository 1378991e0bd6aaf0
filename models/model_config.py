"""The network's configuration and the options of one forward pass, apart from the code
that runs them, so that the layers, the chunked inference and the network all read them
without importing each other."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping

import torch

from models.native import Kernel


RESETS = ("subtract", "zero")
# `lif` is the paper's network; adlif, rlif and radlif are sparch's adaptive and recurrent
# types (models/recurrent.py); cuba_lif and if come only from imported NIR graphs.
TRAINABLE_NEURONS = ("lif", "adlif", "rlif", "radlif")
NEURONS = (*TRAINABLE_NEURONS, "cuba_lif", "if")
ADAPTIVE = ("adlif", "radlif")   # an adaptation current w with its own decay and couplings a, b
RECURRENT = ("rlif", "radlif")   # layer-wise recurrent weights V (zero diagonal)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and neuron constants of the network.

    Attributes:
        input_dim: features per frame D (40 log-mel bands).
        num_classes: output classes.
        hidden: width of each hidden LIF layer.
        dropout: dropout probability after each LIF layer and in the readout.
        threshold: LIF firing threshold v_th (dimensionless, input is BN-normalised).
        surrogate_width: boxcar half-width a of the surrogate gradient.
        alpha_min, alpha_max: range of the trainable per-neuron leak alpha per 10 ms step
            (exp(-1/5) .. exp(-1/25): membrane time constants of 50-250 ms).
        bn_momentum: BatchNorm running-statistics momentum.
        bn_eps: BatchNorm epsilon.
        reset: after a spike the membrane drops by the threshold (`subtract`, trained here)
            or is set to 0 (`zero`: Norse's LIFBox and NIR's LIF with v_reset = 0, for
            imported models).
        neuron: `lif` (the paper's), sparch's `adlif` (adaptive), `rlif` (recurrent) and
            `radlif` (both; see models/recurrent.py), or for imported models `cuba_lif` (a
            synaptic current with its own decay `blocks.i.beta` between the Linear, which
            then has a bias, and the BatchNorm) or `if` (no leak: alpha = 1, input added per
            step).
    """

    input_dim: int = 40
    num_classes: int = 20
    hidden: tuple[int, ...] = (256, 256)
    dropout: float = 0.1
    threshold: float = 1.0
    surrogate_width: float = 0.5
    alpha_min: float = math.exp(-1 / 5)
    alpha_max: float = math.exp(-1 / 25)
    bn_momentum: float = 0.05
    bn_eps: float = 1e-5
    reset: str = "subtract"
    neuron: str = "lif"

    def __post_init__(self) -> None:
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {', '.join(RESETS)}, not {self.reset!r}")
        if self.neuron not in NEURONS:
            raise ValueError(f"neuron must be one of {', '.join(NEURONS)}, not {self.neuron!r}")
        if self.neuron in ADAPTIVE + RECURRENT and self.reset != "subtract":
            raise ValueError(f"{self.neuron} neurons reset by subtraction, not {self.reset!r}")
        for name in ("input_dim", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer widths must be positive integers, not {list(self.hidden)}")
        # A NaN or a sign error here passes every shape check and then invents numbers
        # (a NaN leak answers one class for every input), so each setting is checked.
        checks = (("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)"),
                  ("threshold", 0.0 < self.threshold < math.inf, "a positive finite number"),
                  ("surrogate_width", 0.0 < self.surrogate_width < math.inf, "a positive finite number"),
                  ("alpha_min", 0.0 <= self.alpha_min <= 1.0, "in [0, 1]"),
                  ("alpha_max", self.alpha_min <= self.alpha_max <= 1.0, "in [alpha_min, 1]"),
                  ("bn_momentum", 0.0 < self.bn_momentum <= 1.0, "in (0, 1]"),
                  ("bn_eps", 0.0 < self.bn_eps < math.inf, "a positive finite number"))
        for name, ok, what in checks:
            if not ok:  # NaN fails every comparison
                raise ValueError(f"{name} must be {what}, not {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")  # the loader makes it one line
        kw = dict(d)
        if "hidden" in kw:
            kw["hidden"] = tuple(int(h) for h in kw["hidden"])
        return cls(**kw)


def weight_layers(cfg: ModelConfig) -> tuple[str, ...]:
    """Every layer with synaptic weights (`<layer>.linear.weight`), in forward order: the
    hidden blocks, each followed by its recurrent synapses `blocks.i.recurrent` (rlif,
    radlif), then the readout. Perturbations and `--layers` address these names."""
    out: list[str] = []
    for i in range(len(cfg.hidden)):
        out.append(f"blocks.{i}")
        if cfg.neuron in RECURRENT:
            out.append(f"blocks.{i}.recurrent")
    return (*out, "readout")


@dataclass
class ForwardOptions:
    """How one forward pass treats BatchNorm and dropout.

    Attributes:
        bn_batch_stats: normalise with the statistics of this batch (training) instead of
            the running statistics.
        update_running: also move the running statistics (only for K == 1 in training).
        bn_momentum: momentum of that update (None: the config's).
        dropout_generator: when set, apply dropout with masks drawn from it.
        record_stats: when a dict, receives (sum, sum of squares, count) per BN layer, used to
            re-estimate running statistics for each posterior sample.
        clamp_alpha: clamp the leak (and adaptive neurons' beta, a, b) to its trainable
            range (off for perturbed hardware constants, which may leave it).
        example_offset: index of `x[0]` in its split. Read noise (`blocks.i.read_noise`) of
            draw k at example b, step t and neuron h is a function of
            (`blocks.i.read_noise_seed[k]`, example_offset + b, t, h) alone, so a draw's noise
            never depends on how the work is cut (see `models.hardware.add_read_noise`).
        start: index of the first block to run; `x` is then that block's input spike train
            [B, T, H] (reuse of clean activations below a perturbed layer).
        smooth_spikes: when > 0, replace the Heaviside by a sigmoid of the membrane with this
            temperature: the non-spiking control of loss slices.
        kernel: the LIF path, compiled or eager (None: the process's `native.KERNEL`).
        tally: when a dict, receives per hidden layer `blocks.i` the number of (example, step)
            pairs in which each neuron emitted [K, H] and, under `input`, how many (example,
            step) pairs left each input feature non-zero [K or 1, D] and, under `readout`, how
            many examples gave each readout input a non-zero value [K, H] (float64): what synaptic
            operations and activation sparsity are counted from (robustness/efficiency.py).
        record_xbar: when a dict, receives per crossbar layer the |column currents| before its
            ADCs (models/crossbar_read.py): what ADC ranges are calibrated on.
    """

    bn_batch_stats: bool = False
    update_running: bool = False
    bn_momentum: float | None = None
    dropout_generator: torch.Generator | None = None
    record_stats: dict | None = field(default=None)
    clamp_alpha: bool = True
    example_offset: int = 0
    start: int = 0
    smooth_spikes: float = 0.0
    kernel: Kernel | None = None
    tally: dict | None = field(default=None)
    record_xbar: dict | None = field(default=None)

    def count(self, name: str, active: torch.Tensor, dims: tuple[int, ...]) -> None:
        """Add the non-zero entries of `active` over `dims` to the tally under `name` (if one is kept)."""
        if self.tally is not None:
            self.add(name, (active != 0).sum(dims, dtype=torch.float64))

    def add(self, name: str, counts: torch.Tensor) -> None:
        """Add `counts` to the tally under `name` (if one is kept)."""
        if self.tally is not None:
            self.tally[name] = self.tally[name] + counts if name in self.tally else counts
