"""Inference over chunks of time steps: all layers per chunk, membranes carried over.

Each layer's chunk is one matmul over all its time steps and networks (for spikes in, the
exact sum of the weights of the inputs that fired: models/spike_current.py), then one call of
the compiled LIF kernel (drive, scan and spike count fused; see models/native.py) or the
same arithmetic in eager PyTorch. The last layer's spikes are only counted, never stored.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from models.chunking import time_chunk
from models.hardware import add_read_noise, force_spikes, read_noise_keys
from models.layers import bn_affine, drive_gain, flatten_input, leak, row_invariant, synaptic_filter
from models.lif import scan_chunk
from models.model_config import ForwardOptions, ModelConfig
from models import chain_native, crossbar_read, spike_current


def _layer_constants(cfg: ModelConfig, t: Mapping[str, Tensor], opt: ForwardOptions, i: int) -> dict:
    """Inference constants of block i: BN affine and the membrane's input gain fused into one scale and shift.

    With a synapse (`beta`) the bias is a current that passes the synaptic filter, so it is
    added before it instead of being folded into the shift.
    """
    p = f"blocks.{i}"
    alpha = leak(cfg, t, p, opt)
    gain = drive_gain(cfg, alpha)
    scale, shift = bn_affine(t, f"{p}.bn", cfg.bn_eps)
    beta, bias = t.get(f"{p}.beta"), t.get(f"{p}.linear.bias")
    if bias is not None and beta is None:
        shift, bias = shift + scale * bias, None
    w = t[f"{p}.linear.weight"]
    return {"w": w.transpose(-1, -2), "wt": spike_current.exact_weights(w) if i > 0 else None,
            "scale": scale.unsqueeze(1) * gain,
            "shift": shift.unsqueeze(1) * gain, "alpha": alpha, "v_th": t[f"{p}.v_th"].unsqueeze(1),
            "beta": None if beta is None else beta.unsqueeze(1), "bias": None if bias is None else bias.unsqueeze(1),
            "noise": t.get(f"{p}.read_noise"), "keys": read_noise_keys(t, p),
            "dead": t.get(f"{p}.dead"), "saturated": t.get(f"{p}.saturated"), "reset": cfg.reset,
            "xbar": crossbar_read.prepare(t, p, binary=i > 0) if crossbar_read.present(t, p) else None}


def _scan_chunk(c: dict, cur: Tensor, v: Tensor, count: Tensor, spikes: bool, opt: ForwardOptions) -> Tensor | None:
    """One layer over one chunk [K, tc, B, H]: membranes `v` and spike counts `count` [K, B, H] updated.

    Returns the spikes (None when `spikes` is False and no forced neurons need them).
    Forced (dead/saturated) neurons override the spikes after the scan, so they are counted here.
    """
    forced = c["dead"] is not None or c["saturated"] is not None
    z = scan_chunk(cur, c["alpha"], c["v_th"], v, scale=c["scale"], shift=c["shift"],
                   count=None if forced else count, spikes=spikes or forced, reset=c["reset"], kernel=opt.kernel)
    if forced:
        z = force_spikes(z, c["dead"], c["saturated"])
        count += z.sum(1)
    return z


def chunked_inference(cfg: ModelConfig, t: Mapping[str, Tensor], x: Tensor, opt: ForwardOptions,
                       k: int) -> tuple[Tensor, list[Tensor]]:
    """Inference over chunks of time steps, all layers per chunk, membranes carried over.

    The whole-sequence version allocates [K, T*B, H] temporaries of hundreds of MB per
    layer; page faults then dominate. Chunks sized to the caches (`native.time_chunk`) keep
    each temporary small and reused, while each Linear still runs over many steps in one
    matmul. The last layer's spikes are only counted, never stored.
    """
    bsz, steps = (x.shape[0], x.shape[1]) if x.dim() == 3 else (x.shape[1], x.shape[2])
    layers = list(range(opt.start, len(cfg.hidden)))
    consts = [_layer_constants(cfg, t, opt, i) for i in layers]
    v = [x.new_zeros(k, bsz, cfg.hidden[i]) for i in layers]
    syn: list[Tensor | None] = [None] * len(layers)  # synaptic currents carried over (cuba_lif)
    counts = [x.new_zeros(k, bsz, cfg.hidden[i]) for i in layers]
    chunk = time_chunk(k * bsz, max(cfg.hidden))
    fused = chain_native.chain(consts, v, counts, x, steps, opt.kernel)
    dense = False  # a chunk's spikes were denser than the event-driven sum pays for: run the next layer by layer
    rate_sum = None
    for c0 in range(0, steps, chunk):
        xc = x[:, c0:c0 + chunk] if x.dim() == 3 else x[:, :, c0:c0 + chunk]
        h, tc, _ = flatten_input(xc)
        before = [float(n.sum()) for n in counts[:-1]] if fused is not None else None
        for j, c in enumerate(consts):
            if c["xbar"] is not None:  # read out through crossbar arrays
                cur = crossbar_read.read(h, c["xbar"], binary=c["wt"] is not None, record=opt.record_xbar)
            elif c["wt"] is not None:  # spikes in: the exact, event-driven sum
                cur = spike_current.current(h, c["wt"], opt.kernel)
            else:
                cur = row_invariant(lambda rows: torch.matmul(rows, c["w"]), h)  # [K, tc*B, H]
            cur = cur.view(cur.shape[0], tc, bsz, -1)
            if fused is not None and not dense:
                fused.run(cur)  # this and every later layer of the chunk, in one kernel call
                break
            if c["noise"] is not None:
                cur = add_read_noise(cur, c["noise"], c["keys"], opt.example_offset, c0)
            if c["beta"] is not None:
                if c["bias"] is not None:
                    cur = cur + c["bias"].unsqueeze(1)
                cur, syn[j] = synaptic_filter(cur, c["beta"], syn[j])
            z = _scan_chunk(c, cur, v[j], counts[j], spikes=j < len(consts) - 1, opt=opt)
            h = None if z is None else z.view(z.shape[0], tc * bsz, -1)
        if fused is not None:
            density = [(float(n.sum()) - b) / (tc * n.numel()) for n, b in zip(counts, before)]
            dense = max(density, default=0.0) >= spike_current.crossover(fused.kernel, fused.lib)
        if not layers:  # started at the readout: x holds the last block's spikes
            h = h.unsqueeze(0).expand(k, -1, -1) if h.dim() == 2 else h
            zt = h.reshape(h.shape[0], tc, bsz, -1).sum(1)
            rate_sum = zt if rate_sum is None else rate_sum + zt
    if layers:
        rate_sum = counts[-1]
    if opt.tally is not None:  # each step adds 0 or 1: a neuron's count is the steps it emitted in
        for c, i in zip(counts, layers):
            opt.add(f"blocks.{i}", c.sum(1, dtype=torch.float64))
    # counts are whole numbers: summed in float64 they are exact, whatever the order
    rates = [c.sum(dim=(1, 2), dtype=torch.float64) / (steps * bsz * cfg.hidden[i]) for c, i in zip(counts, layers)]
    return rate_sum / steps, rates
