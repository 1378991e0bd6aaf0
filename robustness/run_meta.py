"""What a sweep or slice stores about its models and levels, so reports never load a checkpoint."""

from __future__ import annotations

from models.checkpoint import Checkpoint
from perturbations.base import get as get_perturbation
from perturbations.crossbar import AXES, describe
from perturbations.spec import Spec
from robustness.store.curve_meta import CurveMeta
from robustness.sweep.config import PerturbationPlan


def model_meta(ck: Checkpoint, path: str, mhash: str) -> dict:
    """What a report needs about a model, stored with the run (reports never load checkpoints)."""
    post = None
    if ck.posterior is not None:
        from robustness.posterior_info import posterior_report

        post = posterior_report(ck)
    return {"path": path, "hash": mhash, "optimizer": ck.optimizer, "hidden": list(ck.net.cfg.hidden),
            "neuron": ck.net.cfg.neuron, "parameters": sum(p.numel() for p in ck.net.parameters()), "members": len(ck.members or []) or None,
            "train_config": ck.train_config, "dataset": ck.dataset.get("name"),
            "final_val_acc": ck.history[-1].get("val_acc") if ck.history else None, "posterior": post}


# Short axis labels for reports (the long meaning is `level`).
UNITS = {"gaussian": "noise std (x {scale} of each layer)", "multiplicative": "relative std",
         "lognormal": "log-std", "quantize": "bits", "mismatch": "relative (log) std",
         "read-noise": "std / RMS current", "stuck-at": "fraction stuck", "bitflip": "bit error rate",
         "dead-neuron": "fraction of neurons", "saturated-neuron": "fraction of neurons",
         "pcm": "seconds since programming", "crossbar-adc": "ADC bits", "crossbar-wire": "ohms per cell segment",
         "crossbar-size": "array side, cells"}
SCALE_NAMES = {"max": "max|w|", "std": "std(w)", "abs": "1 (absolute)", "sigma": "posterior sigma"}


def curve_meta(spec: Spec, plan: PerturbationPlan, scale: str = "max") -> CurveMeta:
    """What a summary or report needs about a perturbation's levels, stored with the run:
    bit width or not (severity order), level axis, clean at level 0, whether harm is declared
    monotone in the level, units, and that every metric but accuracy is better when lower."""
    p = get_perturbation(spec.swept_name)
    unit = UNITS.get(spec.swept_name, "level").format(scale=SCALE_NAMES.get(scale, scale))
    if spec.swept_name == "adversarial":  # the budget's unit follows its options
        opts = spec.swept_options
        unit = ("budget, LSBs of the stored codes" if opts.get("target") == "quantized" else
                "budget, log-std of the random model" if opts.get("budget") == "logstd" else
                "budget, relative |delta| per parameter")
    effects = "; ".join(describe(c.name, dict(c.options)) for c in spec.components if c.name in AXES)
    return CurveMeta(bits=p.level_is_bits, axis=plan.axis, clean_at_zero=p.identity_at_zero(spec.swept_options),
                     monotone=p.monotone, level=p.level, unit=unit, effects=effects)
