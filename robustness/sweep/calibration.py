"""What a crossbar's ADC ranges are calibrated on: training examples through the programmed chip.

A chip's ADC ranges are set once after programming, from the currents its own arrays give
on data it is not scored on; `adc_range=calibrated` (perturbations/crossbar.py) asks the
sweep for exactly that. The callback lives in the unit that evaluates (and in the sweep's
planning), never in a job: a job travels to Ray workers and carries only tensors.
"""

from __future__ import annotations

import dataclasses

import torch

from models.model_config import ForwardOptions, ModelConfig
from models.network import forward_stacked
from perturbations.base import Context
from perturbations.crossbar import CALIBRATION_EXAMPLES, calibrated, is_crossbar
from perturbations.spec import Spec
from robustness.data import Dataset

CALIBRATION_BATCH = 8  # examples per pass: the recorded currents of K networks stay small


def calibrates(spec: Spec) -> bool:
    """Whether a component of `spec` is a crossbar whose ADC range is calibrated."""
    return any(is_crossbar(c.name) and calibrated(dict(c.options)) for c in spec.components)


def calibration_inputs(data: Dataset, evaluated: str) -> torch.Tensor:
    """Features of the examples ADC ranges are calibrated on: the training split (else another
    split than the one scored, else that one), spread evenly through it."""
    name = next((s for s in ("train", "validation") if s in data.splits and s != evaluated), evaluated)
    split = data.split(name)
    idx = torch.linspace(0, len(split.y) - 1, min(CALIBRATION_EXAMPLES, len(split.y))).round().long()
    return split.x[idx]


def calibrating(ctx: Context, cfg: ModelConfig, x: torch.Tensor | None, device: torch.device | str) -> Context:
    """`ctx` with the callback that measures each crossbar layer's |column currents| on `x`."""
    if x is None:
        return ctx

    def currents(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seen: dict[str, list[torch.Tensor]] = {}
        tensors = {n: v.to(device) for n, v in t.items()}
        with torch.no_grad():
            for i in range(0, len(x), CALIBRATION_BATCH):
                opt = ForwardOptions(clamp_alpha=False, example_offset=i, record_xbar=seen)
                forward_stacked(cfg, tensors, x[i:i + CALIBRATION_BATCH].to(device), opt)
        return {layer: torch.cat(parts, 1) for layer, parts in seen.items()}

    return dataclasses.replace(ctx, calibrate=currents)
