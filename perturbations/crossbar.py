"""Analog in-memory crossbar arrays: how a synaptic matrix is stored and read out.

Each synaptic matrix W [out, in] (feedforward and recurrent; the readout too) is held in
arrays of `rows` x `cols` cells: inputs drive the rows, each column's current is the
dot product. A matrix larger than one array is cut into tiles; every tile's column
currents pass their own ADC and the partial sums are added digitally.

Mapping (conductances in units of g_max, g_min..1):
  pair    w = (G+ - G-) gain, the target on one device of an adjacent column pair, g_min on
          the other; G+ and G- each get their own programming error. cols/2 outputs per array.
  offset  w = (G - G_ref) gain with G = g_min + (w / max|w| + 1)(1 - g_min)/2 and one
          reference column of G_ref = (1 + g_min)/2 per array (its own programming error),
          subtracted in the analog domain before the ADC. cols - 1 outputs per array.
Programming error: each device G += prog * eps (eps ~ N(0, 1)), clipped to [0, 1]: a
write-verify residual of fixed size relative to g_max (the ReRAM profile's assumption;
for PCM's conductance-dependent model compose with `pcm` before the crossbar).

ADC: per column of each tile, on the differential current; b bits, codes
-(2^(b-1) - 1)..2^(b-1) - 1 on a step 2 FS / (2^b - 2) (aihwkit's `out_res` convention),
values beyond +-FS saturate. The full scale FS is one per tile:
  fixed       FS = adc_fs cells at g_max under a unit input (e.g. 16: the current of 16
              fully-on cells driven by one spike each);
  calibrated  FS = the adc_pct percentile of that tile's |column currents| on training
              examples, measured on the programmed chip itself with the ADCs bypassed
              (every chip calibrates its own ranges once, as after programming a real one).

IR drop (wire resistance `wire` ohms per cell-to-cell segment, on rows and columns): the
first-order model in models/crossbar_read.py, where the read-out happens.

The three registered names share every option and differ in what the level sets: ADC
bits (`crossbar-adc`), wire resistance (`crossbar-wire`), array size (`crossbar-size`:
square arrays of level x level cells). With no ADC and no wire resistance the read-out
is exact and only the programmed weights are written; with no programming error either,
nothing changes at all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from perturbations.base import Context, PerturbationError, Tensors, copy, draw, register

OPTIONS = {
    "rows": ("256", "array rows (inputs per tile)"),
    "cols": ("256", "array columns (pair: 2 per output; offset: 1 per output + 1 reference)"),
    "mapping": ("pair", "pair (differential G+ - G-) | offset (G - reference column)"),
    "g_max": ("25", "largest device conductance, microsiemens"),
    "g_min": ("0", "smallest device conductance, microsiemens (the off state)"),
    "prog": ("0", "programming error std of each device, relative to g_max"),
    "adc": ("0", "ADC bits per column (0: no ADC, the column current is read exactly)"),
    "adc_range": ("calibrated", "calibrated (percentile on training data, per chip and tile) | fixed"),
    "adc_fs": ("16", "fixed range: full scale in cells at g_max under a unit input"),
    "adc_pct": ("99.9", "calibrated range: percentile of |column current| mapped to full scale"),
    "wire": ("0", "wire resistance per cell segment, ohms (rows and columns)"),
    "segments": ("8", "lumped segments per column for IR drop (= rows: every cell its own node)"),
}
CALIBRATION_EXAMPLES = 32  # training examples the ADC ranges are calibrated on
ROW_DROP_VALID = 0.4  # the largest first-order row-wire loss of a cell the model is trusted with


@dataclass(frozen=True)
class Array:
    """One crossbar configuration, from a component's options and level."""

    rows: int
    cols: int
    offset: bool
    g_min: float  # relative to g_max
    g_max_us: float
    prog: float
    adc: int
    calibrated: bool
    adc_fs: float
    adc_pct: float
    wire: float  # ohms
    segments: int

    @property
    def outputs(self) -> int:
        return per_array(self.cols, self.offset)

    @property
    def reads_exactly(self) -> bool:
        return self.adc == 0 and self.wire == 0


def per_array(cols: int, offset: bool) -> int:
    """Outputs per array: the columns less the pair's partners or the reference."""
    return cols - 1 if offset else cols // 2


def is_crossbar(name: str) -> bool:
    """Whether a perturbation name is one of the crossbar read-outs."""
    return name in AXES


def calibrated(options: Mapping[str, str]) -> bool:
    """Whether a crossbar component's ADC range is calibrated on training data."""
    return options.get("adc_range", OPTIONS["adc_range"][0]) == "calibrated"


def _int(ctx_opts: Mapping[str, str], key: str, lo: int) -> int:
    v = _num(ctx_opts, key)
    if v != int(v) or v < lo:
        raise PerturbationError(f"crossbar: {key}={ctx_opts.get(key, OPTIONS[key][0])} must be an integer >= {lo}")
    return int(v)


def _num(opts: Mapping[str, str], key: str) -> float:
    v = opts.get(key, OPTIONS[key][0])
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise PerturbationError(f"crossbar: option {key}={v!r} is not a number") from None
    if not math.isfinite(x) or x < 0:
        raise PerturbationError(f"crossbar: option {key}={v!r} must be a finite number >= 0")
    return x


def array_of(options: Mapping[str, str], axis: str, level: float) -> Array:
    """The configuration a component describes; `axis` names what its level sets."""
    opts = dict(options)
    if axis == "adc":
        opts["adc"] = str(int(level))
    elif axis == "wire":
        opts["wire"] = repr(float(level))
    elif axis == "size":
        opts["rows"] = opts["cols"] = str(int(level))
    mapping = opts.get("mapping", "pair")
    if mapping not in ("pair", "offset"):
        raise PerturbationError(f"crossbar: option mapping={mapping!r} not one of pair, offset")
    policy = opts.get("adc_range", OPTIONS["adc_range"][0])
    if policy not in ("calibrated", "fixed"):
        raise PerturbationError(f"crossbar: option adc_range={policy!r} not one of calibrated, fixed")
    g_max, g_min = _num(opts, "g_max"), _num(opts, "g_min")
    if not 0 <= g_min < g_max:
        raise PerturbationError(f"crossbar: need 0 <= g_min < g_max, got g_min={g_min:g}, g_max={g_max:g}")
    rows, cols = _int(opts, "rows", 1), _int(opts, "cols", 2)
    adc = _int(opts, "adc", 0)
    if adc == 1 or adc > 24:
        raise PerturbationError(f"crossbar: adc={adc} bits: use 2-24 (0 for no ADC)")
    pct, fs = _num(opts, "adc_pct"), _num(opts, "adc_fs")
    if not 0 < pct <= 100:
        raise PerturbationError(f"crossbar: adc_pct={pct:g} must be a percentile in (0, 100]")
    if fs <= 0:
        raise PerturbationError("crossbar: adc_fs must be above 0")
    segments = _int(opts, "segments", 1)
    return Array(rows, cols, mapping == "offset", g_min / g_max, g_max, _num(opts, "prog"), adc,
                 policy == "calibrated", fs, pct, _num(opts, "wire"), min(segments, rows))


def tile_counts(inputs: int, outputs: int, rows: int, per_array: int) -> tuple[int, int]:
    """(row tiles, column tiles) of a matrix with `inputs` rows and `outputs` outputs."""
    return -(-inputs // rows), -(-outputs // per_array)


def tile_bounds(inputs: int, outputs: int, rows: int, per_array: int):
    """(row tile, column tile, first row, end row, first output, end output) of every array."""
    rt, ct = tile_counts(inputs, outputs, rows, per_array)
    for a in range(rt):
        for b in range(ct):
            yield a, b, a * rows, min(inputs, (a + 1) * rows), b * per_array, min(outputs, (b + 1) * per_array)


def physical(pos: Tensor, neg: Tensor, offset: bool, r0: int, r1: int, o0: int, o1: int, tile: int) -> Tensor:
    """One array's conductances [K, rows, physical columns] in float64, drivers at column 0:
    pairs side by side (G+ of output o at 2o, G- at 2o + 1), or the outputs then the reference."""
    p = pos[:, o0:o1, r0:r1].double()
    if offset:
        return torch.cat([p, neg[:, tile, r0:r1].double().unsqueeze(1)], 1).transpose(1, 2)
    return torch.stack([p, neg[:, o0:o1, r0:r1].double()], 2).flatten(1, 2).transpose(1, 2)


def row_drop(g: Tensor, r: float) -> Tensor:
    """Each cell's first-order loss along its row wire, as a fraction of its current: r sum_m
    G_im min(d_j, d_m) (d: segments from the driver; r in units of 1/g_max). Activity does not
    enter: every cell of a driven row conducts."""
    beyond = g.flip(-1).cumsum(-1).flip(-1)  # segment q of row i carries the cells at d >= q
    return r * beyond.cumsum(-1)


def _check_first_order(w: Tensor, layer: str, a: Array, gens: list[torch.Generator]) -> None:
    """Refuse a read-out where the first-order IR-drop model is out of its range: where the
    programmed targets' worst cell would lose more than ROW_DROP_VALID of its current along
    its row wire alone. Against the exact circuit the first order is within 3% of the mean
    current where it predicts a 25% loss and within 9% at 40%, then diverges
    (tests/test_crossbar.py). The column term, which grows with activity, is not bounded here:
    examples/ir_drop_cost.py measures it against the exact circuit at a network's spike rates."""
    pos, neg, _ = _store(w, dataclasses.replace(a, prog=0.0), gens)  # no draw: every chip gets the same verdict
    r = a.wire * a.g_max_us * 1e-6
    worst = max(float(row_drop(physical(pos, neg, a.offset, r0, r1, o0, o1, b), r).max())
                for _, b, r0, r1, o0, o1 in tile_bounds(w.shape[2], w.shape[1], a.rows, a.outputs))
    if worst > ROW_DROP_VALID:
        raise PerturbationError(
            f"crossbar: {a.rows} x {a.cols} arrays with {a.wire:g} ohm of wire: the farthest cell of {layer} would "
            f"lose {worst:.0%} of its current along its row alone, past what the first-order IR-drop model holds "
            f"({ROW_DROP_VALID:.0%}); use less wire resistance, smaller arrays or a smaller g_max")


def _programmed(g: Tensor, prog: float, gens: list[torch.Generator]) -> Tensor:
    if prog == 0:
        return g
    return (g + prog * draw(tuple(g.shape[1:]), gens, g)).clamp(0.0, 1.0)


def _store(w: Tensor, a: Array, gens: list[torch.Generator]) -> tuple[Tensor, Tensor, Tensor]:
    """(G+ or G, G- or the reference columns [K, tiles, in], gain [K]) of a K-stacked weight."""
    k, out, _ = w.shape
    wmax = w.detach().abs().flatten(1).amax(1).clamp_min(torch.finfo(w.dtype).tiny).view(k, 1, 1)
    span = 1.0 - a.g_min
    if a.offset:
        pos = _programmed(a.g_min + (w / wmax + 1.0) * span / 2, a.prog, gens)
        tiles = -(-out // a.outputs)
        ref = torch.full((k, tiles, w.shape[2]), a.g_min + span / 2, dtype=w.dtype, device=w.device)
        return pos, _programmed(ref, a.prog, gens), (2 * wmax / span).view(k)
    mag = w.abs() / wmax * span
    pos = _programmed(a.g_min + mag * (w > 0), a.prog, gens)
    neg = _programmed(a.g_min + mag * (w < 0), a.prog, gens)
    return pos, neg, (wmax / span).view(k)


def _no_self_synapses(pos: Tensor, neg: Tensor, a: Array) -> tuple[Tensor, Tensor]:
    """A recurrent matrix has no diagonal (a neuron does not synapse onto itself): those cells
    are left unprogrammed at G = 0 (pair), or equal to their row's reference cell (offset),
    so that they read as exactly 0 whatever the programming error."""
    eye = torch.eye(pos.shape[-1], dtype=torch.bool, device=pos.device)
    if not a.offset:
        return pos.masked_fill(eye, 0.0), neg.masked_fill(eye, 0.0)
    ref = neg.repeat_interleave(a.outputs, dim=1)[:, :pos.shape[1]]
    return torch.where(eye, ref, pos), neg


def programmed_weight(pos: Tensor, neg: Tensor, gain: Tensor, a: Array) -> Tensor:
    """The weight the stored conductances stand for (read exactly)."""
    if a.offset:
        neg = neg.repeat_interleave(a.outputs, dim=1)[:, :pos.shape[1]]
    return (pos - neg) * gain.view(-1, 1, 1)


def _crossbar(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context, axis: str) -> Tensors:
    a = array_of(ctx.options, axis, level)
    out = copy(t)
    matrices = [n for n in ctx.weights(t) if n.endswith(".linear.weight")]
    for n in matrices:
        layer = n[: -len(".linear.weight")]
        if f"{layer}.xbar.pos" in t:
            raise PerturbationError("crossbar: one crossbar component per spec (its options set the whole array)")
        if a.wire > 0:
            _check_first_order(t[n], layer, a, gens)
        pos, neg, gain = _store(t[n], a, gens)
        if layer.endswith(".recurrent"):
            pos, neg = _no_self_synapses(pos, neg, a)
        if a.prog > 0:  # else the mapping is exact: keep the weight's own bits
            out[n] = programmed_weight(pos, neg, gain, a)
        if a.reads_exactly:
            continue
        k, dev = pos.shape[0], pos.device
        out.update({f"{layer}.xbar.pos": pos, f"{layer}.xbar.neg": neg, f"{layer}.xbar.gain": gain})
        for key, v in (("rows", a.rows), ("cols", a.cols), ("offset", float(a.offset)), ("adc", a.adc),
                       ("wire", a.wire * a.g_max_us * 1e-6), ("segments", a.segments)):
            out[f"{layer}.xbar.{key}"] = torch.full((k,), float(v), dtype=torch.float64, device=dev)
    if a.adc > 0:
        _set_ranges(out, [n[: -len(".linear.weight")] for n in matrices], a, ctx)
    return out


def _set_ranges(t: Tensors, layers: list[str], a: Array, ctx: Context) -> None:
    """ADC full scale per chip and tile, `<layer>.xbar.fs` [K, row tiles, col tiles]."""
    if not a.calibrated:
        for layer in layers:
            k, out, inp = t[f"{layer}.xbar.pos"].shape
            rt, ct = tile_counts(inp, out, a.rows, a.outputs)
            dev = t[f"{layer}.xbar.pos"].device
            t[f"{layer}.xbar.fs"] = torch.full((k, rt, ct), a.adc_fs, dtype=torch.float64, device=dev)
        return
    if ctx.calibrate is None:
        raise PerturbationError("crossbar: adc_range=calibrated needs training data to calibrate on (a sweep "
                                "provides it); use adc_range=fixed here")
    peaks = ctx.calibrate(t)  # ADCs bypassed: no `fs` entries yet
    for layer in layers:
        t[f"{layer}.xbar.fs"] = percentile_ranges(peaks[layer], a.adc_pct, a.outputs)


def percentile_ranges(samples: Tensor, pct: float, outputs: int) -> Tensor:
    """Full scale per chip and tile from |currents| [K, R, row tiles, out]: the pct percentile
    over a tile's columns and rows, never 0 (a silent tile keeps the smallest positive range)."""
    k, r, rt, out = samples.shape
    ct = -(-out // outputs)
    fs = samples.new_zeros(k, rt, ct, dtype=torch.float64)
    for c in range(ct):
        block = samples[..., c * outputs:(c + 1) * outputs].permute(0, 2, 1, 3).reshape(k, rt, -1).double()
        n = block.shape[-1]
        idx = min(n, max(1, math.ceil(pct / 100.0 * n)))
        fs[:, :, c] = block.kthvalue(idx, dim=-1).values
    return fs.clamp_min(torch.finfo(torch.float32).tiny)


AXES = {"crossbar-adc": "adc", "crossbar-wire": "wire", "crossbar-size": "size"}


def describe(name: str, options: Mapping[str, str]) -> str:
    """Which read-out effects a crossbar component has on, and how, with the swept one named."""
    axis = AXES[name]
    a = array_of(options, axis, {"adc": 8, "wire": 0.0, "size": 256}[axis])
    size = "swept (level x level)" if axis == "size" else f"{a.rows} x {a.cols}"
    mapping = "offset + reference column" if a.offset else "differential pair"
    rng = (f"calibrated per chip and tile: {a.adc_pct:g}th percentile of |current| on "
           f"{CALIBRATION_EXAMPLES} training examples" if a.calibrated else f"fixed: {a.adc_fs:g} cells at g_max")
    adc = f"ADC bits swept, range {rng}" if axis == "adc" else \
        (f"{a.adc}-bit ADC, range {rng}" if a.adc else "no ADC (column currents read exactly)")
    wire = "wire resistance swept (ohms per cell segment)" if axis == "wire" else \
        (f"IR drop at {a.wire:g} ohm per cell segment" if a.wire else "no IR drop (wire resistance 0)")
    segs = f", column lumped into {a.segments} segments" if (a.wire or axis == "wire") and axis != "size" else ""
    prog = f"programming error {a.prog:g} g_max per device" if a.prog else "no programming error of its own"
    return (f"crossbar read-out: arrays {size}, {mapping}, g {a.g_min * a.g_max_us:g}-{a.g_max_us:g} uS, {prog}; "
            f"{adc}; {wire}{segs}")


def _identity_at_zero(options: Mapping[str, str]) -> bool:
    return array_of(options, "wire", 0.0).adc == 0 and _num(options, "prog") == 0


def _check(options: Mapping[str, str], level: float, axis: str) -> None:
    array_of(options, axis, level)


_MEANING = ("analog crossbar read-out: weights as conductance pairs (or offset + reference column) with "
            "programming error, tiles of rows x cols with a per-column ADC each, and first-order IR drop "
            "that depends on cell position and on how many rows conduct at that step")


@register("crossbar-adc", meaning=_MEANING + "; sweeps the ADC bits", level="ADC bits per column (2-24)",
          options=OPTIONS, integer_level=True, min_level=2, max_level=24, zero_is_identity=False,
          level_is_bits=True, check=lambda o, lv: _check(o, lv, "adc"))
def crossbar_adc(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    return _crossbar(t, level, gens, ctx, "adc")


@register("crossbar-wire", meaning=_MEANING + "; sweeps the wire resistance",
          level="wire resistance per cell segment, ohms (0: no IR drop)", options=OPTIONS, max_level=100.0,
          zero_is_identity=_identity_at_zero, check=lambda o, lv: _check(o, lv, "wire"))
def crossbar_wire(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    return _crossbar(t, level, gens, ctx, "wire")


@register("crossbar-size", meaning=_MEANING + "; sweeps the array size",
          level="array side, cells (square arrays of level x level)", options=OPTIONS, integer_level=True,
          min_level=2, max_level=4096, zero_is_identity=False, monotone=False,  # bigger: more IR drop, fewer ADCs
          check=lambda o, lv: _check(o, lv, "size"))
def crossbar_size(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    return _crossbar(t, level, gens, ctx, "size")
