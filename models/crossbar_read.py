"""The read-out of a synaptic matrix held in crossbar arrays (perturbations/crossbar.py).

Per tile (one array) and per input vector x (one example at one time step):

1. Each row i is driven at x_i (a spike drives its row at the read voltage, 1 in input
   units; the first layer's features and the readout's rates drive analog voltages through
   an ideal DAC, an assumption). A row at 0 is not selected: in a 1T1R array its access
   transistors are off and its cells carry no current.
2. IR drop, first order in the wire resistance r (ohms per cell-to-cell segment, on rows and
   on columns). Row drivers sit at column 0, the column's sense amplifier (virtual ground)
   below the last row. Every cell's voltage is its row voltage minus the drop along its
   row wire and minus its column wire's rise, both computed from the ideal cell currents:
     row:    a_ij = r x_i sum_m G_im min(d_j, d_m)          (d: segments from the driver)
     column: b_ij = r sum_m on_m x_m G_mj min(p_i, p_m)      (p: segments to the amplifier)
   and the column current is I_j = sum_i on_i G_ij (x_i - a_ij - b_ij). The row term is
   linear in x (folded into the conductances once per pass); the column term,
   r sum_q T_on(q) T_x(q) over the column's segments q with T the current through q, grows
   with the number of rows conducting at that step: the activity dependence. For speed
   the column is lumped into `segments` nodes (each node at the mean position of its
   rows, wire between nodes the sum of theirs), as aihwkit lumps its time-resolved IR-drop
   model (`ir_drop_segments`, 8 by default; src/aihwkit/simulator/tiles/analog_mvm_irdrop_t.py);
   segments = rows is the exact first-order model. aihwkit's own first-order model
   (`applyIrDrop`, src/rpucuda/rpu_forward_backward_pass.cpp) is this column term for
   currents spread evenly along the column: a drop proportional to the total column current
   with the position profile 1 - (1 - j/n)^2. The first order holds while r G_max N^2 is well
   below 1; the exact circuit solution (tests/test_crossbar.py) is the oracle.
3. The differential current (G+ column minus G- column, or column minus the tile's
   reference column) passes the tile's ADC, if any; tiles' digital outputs add up.

The read runs in float32. Sums of spikes are exact (conductances rounded once to a grid on
which any sum of them is exact, `_on_grid`), analog products are row-invariant
(`layers.row_invariant`), so a read never depends on how many examples, steps or networks
share the call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from models import spike_current
from models.layers import row_invariant
from perturbations.crossbar import per_array, physical, row_drop, tile_bounds, tile_counts


def present(t: Mapping[str, Tensor], layer: str) -> bool:
    """Whether `layer`'s synapses are read out through crossbar arrays."""
    return f"{layer}.xbar.pos" in t


def _geometry(t: Mapping[str, Tensor], layer: str) -> dict[str, float]:
    return {k: float(t[f"{layer}.xbar.{k}"][0]) for k in ("rows", "cols", "offset", "adc", "wire", "segments")}


def _row_attenuated(g: Tensor, r: float) -> Tensor:
    """G (1 - r sum_m G_im min(d_j, d_m)): each cell less its row wire's first-order drop."""
    return g if r == 0 else g * (1.0 - row_drop(g, r))


def _segments(n: int, s: int) -> list[tuple[int, int, float]]:
    """Contiguous row groups (start, stop, gap to the next node) from the far end; a node sits
    at the mean distance of its rows from the amplifier (row i at n - i segments)."""
    bounds = [round(n * j / s) for j in range(s + 1)]
    groups = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    dist = [n - (a + b - 1) / 2 for a, b in groups]
    return [(a, b, d - (dist[j + 1] if j + 1 < len(dist) else 0.0)) for j, ((a, b), d) in enumerate(zip(groups, dist))]


@dataclass
class Arrays:
    """A layer's arrays ready to read: per tile its rows, outputs and lumped segments, each
    segment's (row-attenuated) conductances [K, rows, physical columns] and its gap to the next node."""

    layer: str
    offset: bool
    bits: int
    wire: float
    tiles: list[tuple[int, int, int, int, list[tuple[int, int, float, Tensor]]]]
    row_tiles: int
    fs: Tensor | None
    gain: Tensor


def _on_grid(g: Tensor) -> Tensor:
    """Conductances [K, rows, columns] rounded, per column, to a grid on which any sum of its
    rows is exact in float32: steps of 2^(e - 24 + ceil(log2 rows)) where 2^e bounds the column
    (2^-15 of g_max for 256 rows, far below any programming error). Spike currents then depend
    on nothing but the conductances and the spikes, not on how the product is blocked."""
    top = g.abs().amax(1, keepdim=True).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    _, e = torch.frexp(top)
    step = torch.ldexp(torch.ones_like(top), e - 24 + math.ceil(math.log2(max(g.shape[1], 1))))
    return torch.round(g / step) * step


def prepare(t: Mapping[str, Tensor], layer: str, binary: bool) -> Arrays:
    """`layer`'s arrays for inputs that are spikes (`binary`: exact sums) or analog values."""
    geo = _geometry(t, layer)
    offset, bits, r = geo["offset"] > 0, int(geo["adc"]), geo["wire"]
    rows, per = int(geo["rows"]), per_array(int(geo["cols"]), offset)
    _, n_out, n_in = t[f"{layer}.xbar.pos"].shape
    pos, neg = t[f"{layer}.xbar.pos"], t[f"{layer}.xbar.neg"]
    tiles = []
    for a, b, r0, r1, o0, o1 in tile_bounds(n_in, n_out, rows, per):
        g = _row_attenuated(physical(pos, neg, offset, r0, r1, o0, o1, b), r).float()
        g = _on_grid(g) if binary else g
        segs = [(r0 + s0, r0 + s1, gap, g[:, s0:s1])  # no wire: the column's currents in one product
                for s0, s1, gap in _segments(r1 - r0, int(geo["segments"]) if r > 0 else 1)]
        tiles.append((a, b, o0, o1, segs))
    fs = t.get(f"{layer}.xbar.fs") if bits > 0 else None
    return Arrays(layer, offset, bits, r, tiles, tile_counts(n_in, n_out, rows, per)[0], fs,
                  t[f"{layer}.xbar.gain"].float())


def _tile_current(x: Tensor, on: Tensor | None, segs: list[tuple[int, int, float, Tensor]], r: float) -> Tensor:
    """Column currents [K, R, physical columns] of one tile for inputs x [K or 1, R, in] (float32)."""
    total, t_on, loss = None, None, None
    for a, b, gap, gs in segs:
        if on is None:  # spikes: exact sums, event-driven where the kernel is built (models/spike_current.py)
            y = spike_current.current(x[..., a:b], gs)
        else:
            y = row_invariant(lambda rows: torch.matmul(rows, gs), x[..., a:b])
        total = y if total is None else total.add_(y)
        if r > 0:
            if on is not None:
                yo = row_invariant(lambda rows: torch.matmul(rows, gs), on[..., a:b])
                t_on = yo if t_on is None else t_on.add_(yo)
            t_on_now = total if on is None else t_on
            if loss is None:
                loss = gap * t_on_now * total
            else:
                loss.addcmul_(t_on_now, total, value=gap)
    return total if loss is None else total.sub_(loss, alpha=r)


def _adc(i: Tensor, fs: Tensor, bits: int) -> Tensor:
    """b-bit ADC of currents i [K, R, out] with full scale fs [K]: codes +-(2^(b-1) - 1)."""
    top = 2 ** (bits - 1) - 1
    step = (2 * fs / (2 ** bits - 2)).to(i.dtype).view(-1, 1, 1)
    return torch.round(i / step).clamp_(-top, top).mul_(step)


def read(x: Tensor, arrays: Arrays, binary: bool, record: dict | None = None) -> Tensor:
    """The currents `x W^T` [K, R, out] (float32, weight units) of inputs x [K or 1, R, in] or
    [R, in] through a layer's arrays (`prepare`, with the same `binary`). `record` (ADC
    calibration) receives, under the layer, the |differential currents| before the ADCs,
    [K, R, row tiles, out] per call."""
    xd = (x if x.dim() == 3 else x.unsqueeze(0)).float()
    on = None if binary else (xd != 0).float()
    out, seen = None, [[] for _ in range(arrays.row_tiles)]
    parts: list[list[Tensor]] = [[] for _ in range(arrays.row_tiles)]  # per row tile, its column tiles in order
    for a, b, o0, o1, segs in arrays.tiles:
        cur = _tile_current(xd, on, segs, arrays.wire)
        diff = cur[..., :-1] - cur[..., -1:] if arrays.offset else cur[..., 0::2] - cur[..., 1::2]
        if record is not None:
            seen[a].append(diff.detach().abs())
        if arrays.fs is not None:
            diff = _adc(diff, arrays.fs[:, a, b].to(diff.device), arrays.bits)
        parts[a].append(diff)
    for tile in parts:  # the tiles' digital partial sums, in a fixed order
        out = torch.cat(tile, -1) if out is None else out + torch.cat(tile, -1)
    if record is not None:
        record.setdefault(arrays.layer, []).append(torch.stack([torch.cat(p, -1) for p in seen], 2).cpu())
    return out * arrays.gain.to(out.device).view(-1, 1, 1)
