"""Efficiency as NeuroBench defines it (neurobench 2.3, `neurobench/metrics`), per network, with an
energy estimate from a chip profile's per-operation costs.

Per inference (one example of T steps), counted from the forward pass's tally (which neurons
emitted in which steps, which input features were non-zero) and the weights the chip holds:

  * activation_sparsity: the share of zero neuron outputs over all hidden layers, steps and
    examples (`ActivationSparsity`);
  * synaptic operations (`SynapticOperations`): `dense`, every weight of every layer at every
    call; `effective_macs`, the non-zero weights met by non-zero non-spike inputs (the input
    features, graded codes on a chip; the float readout's BatchNorm-ed rates); `effective_acs`, the same for
    spike inputs: each emitted spike times the non-zero weights of its fan-out (feedforward and
    recurrent; NeuroBench binarises inputs, so several events of one neuron in one step count once);
    the bias is no synaptic operation; `effective_synops` is their sum;
  * footprint: bytes of parameters and buffers (`Footprint`: float32 in float; on a chip, the
    codes at their width and three per-neuron constants at the state width: our rule);
  * connection_sparsity: zero weights over all weight matrices (`ConnectionSparsity`);
  * energy_nj, an estimate, never a measurement: (effective MACs + ACs) x the chip's energy per
    synaptic operation + T x neurons x its energy per neuron update (None where the profile
    publishes no costs).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from models.chip_profiles import Profile
from models.fixed_point import arithmetic_of, smax
from models.model_config import RECURRENT, ModelConfig


def _codes(t: Mapping[str, Tensor], name: str) -> Tensor:
    w = t[name].detach().double().cpu()  # counted on the CPU, wherever the network ran
    a = arithmetic_of(t)
    return w if a is None or a.analog else torch.round(w).clamp(-smax(a.weight_bits) - 1, smax(a.weight_bits))


def efficiency(cfg: ModelConfig, t: Mapping[str, Tensor], tally: Mapping[str, Tensor], n: int, steps: int,
               profile: Profile | None = None) -> list[dict]:
    """NeuroBench's efficiency metrics of each of the K stacked networks, per inference."""
    on_chip = arithmetic_of(t) is not None
    tally = {n: v.detach().cpu() for n, v in tally.items()}
    dims = [cfg.input_dim, *cfg.hidden]
    k = t["readout.linear.weight"].shape[0]
    macs = torch.zeros(k, dtype=torch.float64)
    acs = torch.zeros(k, dtype=torch.float64)
    dense, zeros, weights = 0.0, torch.zeros(k, dtype=torch.float64), 0
    for i, h in enumerate(cfg.hidden):
        p = f"blocks.{i}"
        w = _codes(t, f"{p}.linear.weight")  # [K, H, D]
        fan_out = (w != 0).sum(1, dtype=torch.float64)  # [K, D]: non-zero weights each input meets
        src = tally["input"] if i == 0 else tally[f"blocks.{i - 1}"]
        ops = (src.expand(k, -1) * fan_out).sum(1)
        if i == 0:
            macs += ops
        else:
            acs += ops
        dense += steps * dims[i] * h
        zeros += (w == 0).flatten(1).sum(1, dtype=torch.float64)
        weights += dims[i] * h
        if cfg.neuron in RECURRENT:
            v = _codes(t, f"{p}.recurrent.linear.weight") * (1.0 - torch.eye(h, dtype=torch.float64))
            acs += (tally[p] * (v != 0).sum(1, dtype=torch.float64)).sum(1)
            dense += steps * h * h
            zeros += (v == 0).flatten(1).sum(1, dtype=torch.float64)
            weights += h * h
    wr = _codes(t, "readout.linear.weight")  # [K, C, H]
    nnz_r = (wr != 0).sum(1, dtype=torch.float64)
    if on_chip:  # the readout accumulates spikes at every step
        acs += (tally[f"blocks.{len(cfg.hidden) - 1}"] * nnz_r).sum(1)
        dense += steps * wr.shape[1] * wr.shape[2]
    else:  # once per inference, on the BatchNorm-ed spike rates that are not zero
        macs += (tally["readout"] * nnz_r).sum(1)
        dense += wr.shape[1] * wr.shape[2]
    zeros += (wr == 0).flatten(1).sum(1, dtype=torch.float64)
    weights += wr.shape[1] * wr.shape[2]
    active = sum(tally[f"blocks.{i}"].sum(1) for i in range(len(cfg.hidden)))
    sparsity = 1.0 - active / (n * steps * sum(cfg.hidden))
    footprint = _footprint(cfg, t, weights)
    updates = steps * sum(cfg.hidden)
    out = []
    for j in range(k):
        row = {"activation_sparsity": float(sparsity[j]), "synops_dense": float(dense),
               "effective_macs": float(macs[j]) / n, "effective_acs": float(acs[j]) / n,
               "effective_synops": float(macs[j] + acs[j]) / n,
               "footprint_bytes": footprint, "connection_sparsity": float(zeros[j]) / weights,
               "neuron_updates": float(updates), "energy_nj": None}
        if profile is not None and profile.synop_pj is not None and profile.neuron_pj is not None:
            row["energy_nj"] = ((row["effective_macs"] + row["effective_acs"]) * profile.synop_pj.pj
                                + updates * profile.neuron_pj.pj) / 1000.0
        out.append(row)
    return out


def _footprint(cfg: ModelConfig, t: Mapping[str, Tensor], weights: int) -> float:
    a = arithmetic_of(t)
    if a is None:  # every parameter and buffer of the float network as float32, and as NeuroBench counts
        names = [n for n in t if not n.startswith(("sigma:", "chip.")) and "read_noise" not in n
                 and not n.endswith(("dead", "saturated"))]  # them, each BatchNorm's int64 batch counter
        return float(sum(t[n][0].numel() * 4 for n in names) + 8 * (len(cfg.hidden) + 1))
    state = a.state_bits if a.state_bits else 32  # analog: the constants held as 32-bit biases (assumption)
    return weights * a.weight_bits / 8 + 3 * sum(cfg.hidden) * state / 8


def mean_efficiency(rows: list[dict]) -> dict:
    """The average over the networks of one prediction (M samples or members average their costs)."""
    keys = rows[0].keys()
    return {k: None if rows[0][k] is None else sum(r[k] for r in rows) / len(rows) for k in keys}


ENERGY_BASIS = ("estimate, not a measurement: (effective MACs + effective ACs) x energy per synaptic operation + "
                "T x neurons x energy per neuron update, from the chip profile's cited per-operation costs")
