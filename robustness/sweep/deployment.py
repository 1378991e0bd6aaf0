"""What a sweep deploys: the network a chip holds (BN folded, and on a chip its integer codes),
and how a deployed model is named, hashed and described in the run."""

from __future__ import annotations

import hashlib
from typing import Mapping

from torch import Tensor

from models.checkpoint import Checkpoint
from models.chip_profiles import Chip, Profile, parse_chip, require_fit
from models.deploy import deploy_tensors
from models.fixed_point import to_chip
from models.model_config import ModelConfig
from robustness.sweep.config import SweepConfig


def deployed(net_cfg: ModelConfig, t: Mapping[str, Tensor], cfg: SweepConfig) -> dict[str, Tensor]:
    """The K-stacked tensors perturbations act on: on a chip, what it stores (models/fixed_point.py)."""
    t = deploy_tensors(net_cfg, t, cfg.fold_bn or bool(cfg.chip))
    return to_chip(net_cfg, t, parse_chip(cfg.chip).arithmetic) if cfg.chip else t


def targets(cfg: SweepConfig, cks: list[Checkpoint]) -> tuple[Chip | None, list[list[str]], list[str], list[str]]:
    """The chip (or None), per model what did not fit, its hash and its name in the store: a
    deployed network is another model than its float self (`MODEL@CHIP`, its own hash)."""
    chip = parse_chip(cfg.chip) if cfg.chip else None
    notes = [require_fit(chip, ck.net.cfg, ck.path) if chip else [] for ck in cks]
    hashes = [on_chip_hash(ck.content_hash, chip) for ck in cks]
    names = [ck.path if chip is None else f"{ck.path}@{chip.label}" for ck in cks]
    return chip, notes, hashes, names


def profile_of(cfg: SweepConfig) -> Profile | None:
    """The chip profile a sweep deploys on (its energy costs), if any."""
    return parse_chip(cfg.chip).profile if cfg.chip else None


def on_chip_hash(model_hash: str, chip: Chip | None) -> str:
    """The content hash of a model deployed on `chip` (its own hash in float)."""
    if chip is None:
        return model_hash
    return hashlib.sha256(f"{model_hash}@{chip.label}".encode()).hexdigest()[:len(model_hash)]


def chip_meta(chip: Chip | None, name: str, notes: list[str]) -> dict:
    """A deployed model's entry in the run: its name with the chip, the chip, and what did not fit."""
    if chip is None:
        return {}
    p = chip.profile
    energy = None if p is None or p.synop_pj is None or p.neuron_pj is None else {
        "synaptic_op_pj": p.synop_pj.pj, "neuron_update_pj": p.neuron_pj.pj,
        "source": p.synop_pj.source if p.synop_pj.source == p.neuron_pj.source else
        f"{p.synop_pj.source}; {p.neuron_pj.source}"}
    return {"path": name, "chip": chip.label, "chip_arithmetic": chip.arithmetic.to_dict(), "chip_notes": notes,
            "chip_energy": energy}
