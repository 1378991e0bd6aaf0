"""NIR graphs (the Neuromorphic Intermediate Representation) to and from our network.

Export writes the deployed network (BatchNorm folded) as a chain
`Input -> Affine -> LIF -> ... -> Affine -> Output`:
  * each hidden block is `Affine(W' = diag(s) W, b = shift)` then `LIF(tau = dt / (1 - alpha),
    r = 1, v_leak = 0, v_threshold, v_reset = 0)`, with `metadata["reset"] = "subtract"`
    (NIR's LIF resets to v_reset; ours drops by the threshold, and a tool that ignores the
    metadata runs reset-to-zero);
  * the readout is `Affine(W_r diag(s_r), W_r shift_r + b_r)` applied at every step: the
    logits are its output averaged over time (our spike-rate readout), which the graph's
    metadata states.
Numbers go out as float64 so that `1 - dt / tau` gives back float32 alpha exactly.

Models with `neuron = cuba_lif` export as `Affine -> CubaLIF` (the BatchNorm scale folded
into the Affine, its shift as v_leak) and `neuron = if` as `Affine -> IF`. Recurrent LIF
(`rlif`) layers add a self-loop `LIF -> Linear(V) -> LIF` (NIR allows cycles; a node sums
its inputs, and the loop's spikes arrive one step later), as snnTorch exports its
recurrent leaky neurons; import reads such loops back (every layer or none, no
self-connections, reset by subtraction). Adaptive neurons have no NIR node and are refused.

Import reads such chains, from here or from other tools (Norse's `to_nir`, snnTorch,
Rockpool): `Affine`/`Linear`, an optional `Scale`, then one neuron node per hidden layer
(all LIF, all CubaLIF or all IF), and a final `Affine`/`Linear` read out as the time
average. A `Threshold` node (`z = H(I - theta)`, no state) is a LIF with alpha = 0 and
may sit among LIF layers. The neuron ODEs are stepped as Norse's own NIR importer steps them:
  * LIF `tau dv/dt = (v_leak - v) + r I`: alpha = 1 - dt / tau and drive
    `(1 - alpha)(r (W x + b) + v_leak)`: `r` and `v_leak` become the BatchNorm scale and
    shift (statistics 0 and 1 - eps, an exact identity);
  * CubaLIF adds the synapse `tau_syn di/dt = -i + w_in S` before it: beta = 1 - dt /
    tau_syn, `i = beta i + (1 - beta) w_in (W x + b)` (w_in folded into W and b), and the
    membrane is driven by `r i + v_leak` of the same step (Norse's importer also decays the
    current toward v_leak, which NIR's equations do not: equal for v_leak = 0);
  * IF `dv/dt = r I` adds `r (W x + b)` each step (alpha = 1), the charge-per-step
    reading of Norse, snnTorch and Sinabs.
Any other node is refused by name.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from basics.errors import BadInput
from models.layers import affine_bn, bn_affine
from models.model_config import ADAPTIVE, RECURRENT, ModelConfig
from models.network import SpikingNet

DEFAULT_DT = 1e-3  # NIR's and Norse's convention when a graph does not say
# NIR node -> ModelConfig.neuron; a Threshold node is a memoryless LIF (alpha = 0)
NEURONS = {"LIF": "lif", "Threshold": "lif", "CubaLIF": "cuba_lif", "IF": "if"}


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def to_nir(cfg: ModelConfig, t: Mapping[str, torch.Tensor], dt: float) -> "Any":
    """The network of K = 1 tensors `t` (deployed: leaks as a chip stores them) as an NIR graph."""
    if cfg.neuron in ADAPTIVE:
        raise BadInput(f"{cfg.neuron} neurons have no NIR node (NIR has no adaptation current): "
                       "only lif networks export")
    import nir

    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([cfg.input_dim]))}
    edges, prev = [], "input"
    for i in range(len(cfg.hidden)):
        p = f"blocks.{i}"
        nodes[f"fc{i}"], nodes[f"lif{i}"] = _export_layer(cfg, t, p, dt)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        if cfg.neuron in RECURRENT:  # V s[t-1] joins the LIF node's input: a self-loop through a Linear
            v = t[f"{p}.recurrent.linear.weight"][0].double().fill_diagonal_(0.0)
            nodes[f"rec{i}"] = nir.Linear(weight=_np(v))
            edges += [(f"lif{i}", f"rec{i}"), (f"rec{i}", f"lif{i}")]
        prev = f"lif{i}"
    scale, shift = bn_affine(t, "readout.bn", cfg.bn_eps)
    w = t["readout.linear.weight"][0].double()
    nodes["readout"] = nir.Affine(weight=_np(w * scale[0].double().unsqueeze(0)),
                                  bias=_np(w @ shift[0].double() + t["readout.linear.bias"][0].double()))
    nodes["output"] = nir.Output(output_type=np.array([cfg.num_classes]))
    edges += [(prev, "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={
        "dt": dt, "readout": "logits = time average of the output node", "exporter": "robust"})


def _export_layer(cfg: ModelConfig, t: Mapping[str, torch.Tensor], p: str, dt: float) -> tuple[Any, Any]:
    """The Affine and neuron node of hidden block `p` (BatchNorm folded)."""
    import nir

    scale, shift = (x[0].double() for x in bn_affine(t, f"{p}.bn", cfg.bn_eps))
    w = scale.unsqueeze(1) * t[f"{p}.linear.weight"][0].double()
    bias = scale * t[f"{p}.linear.bias"][0].double() if f"{p}.linear.bias" in t else torch.zeros_like(scale)
    h, v_th, meta = len(scale), _np(t[f"{p}.v_th"][0]), {"reset": cfg.reset}
    if cfg.neuron == "cuba_lif":  # the shift stays a membrane offset: it does not pass the synapse
        neuron = nir.CubaLIF(tau_syn=_np(dt / (1.0 - t[f"{p}.beta"][0].double())),
                             tau_mem=_np(dt / (1.0 - t[f"{p}.alpha"][0].double())), r=np.ones(h),
                             v_leak=_np(shift), v_threshold=v_th, v_reset=np.zeros(h), w_in=np.ones(h), metadata=meta)
        return nir.Affine(weight=_np(w), bias=_np(bias)), neuron
    if cfg.neuron == "if":
        neuron = nir.IF(r=np.ones(h), v_threshold=v_th, v_reset=np.zeros(h), metadata=meta)
    else:
        neuron = nir.LIF(tau=_np(dt / (1.0 - t[f"{p}.alpha"][0].double())), r=np.ones(h), v_leak=np.zeros(h),
                         v_threshold=v_th, v_reset=np.zeros(h), metadata=meta)
    return nir.Affine(weight=_np(w), bias=_np(bias + shift)), neuron


def self_loops(graph: Any) -> dict[str, str]:
    """Neuron node -> the Linear/Affine node that feeds its spikes back to it (N -> R -> N,
    R on no other edge): a layer's recurrent synapses, as snnTorch's recurrent leaky
    neurons export them."""
    out: dict[str, str] = {}
    for r, node in graph.nodes.items():
        if type(node).__name__ not in ("Linear", "Affine"):
            continue
        ins, outs = [a for a, b in graph.edges if b == r], [b for a, b in graph.edges if a == r]
        if len(ins) == 1 and outs == ins and type(graph.nodes.get(ins[0])).__name__ in NEURONS:
            out[ins[0]] = r
    return out


def _chain(graph: Any, loops: dict[str, str]) -> list[tuple[str, Any]]:
    """The graph's nodes in order from its input, refusing anything but a simple chain (a
    neuron's self-loop through a Linear, `loops` from `self_loops`, is part of that neuron)."""
    looped = {(n, r) for n, r in loops.items()} | {(r, n) for n, r in loops.items()}
    nxt: dict[str, str] = {}
    for a, b in graph.edges:
        missing = next((n for n in (a, b) if n not in graph.nodes), None)
        if missing is not None:
            raise BadInput(f"NIR edge {a!r} -> {b!r} names a node the graph does not have ({missing!r})")
        if (a, b) in looped:
            continue
        if a in nxt:
            raise BadInput(f"NIR node {a!r} feeds two nodes: only feedforward chains are supported")
        nxt[a] = b
    starts = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if len(starts) != 1:
        raise BadInput(f"the NIR graph has {len(starts)} Input nodes; expected one")
    order, cur = [], starts[0]
    while cur in nxt:
        cur = nxt[cur]
        if any(cur == n for n, _ in order):
            raise BadInput(f"NIR node {cur!r} closes a loop; only a neuron's self-loop through one Linear (recurrent synapses) is supported")
        order.append((cur, graph.nodes[cur]))
    if not order or type(order[-1][1]).__name__ != "Output":
        raise BadInput("the NIR graph does not end in an Output node")
    return order[:-1]


def _finite(name: str, field: str, x: np.ndarray) -> np.ndarray:
    """A graph's numbers become a checkpoint every command refuses if one is NaN or inf."""
    if not np.all(np.isfinite(x)):
        raise BadInput(f"NIR node {name!r}: {field} holds NaN or inf values")
    return x


def _affine(name: str, node: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        w = _np(node.weight)
        b = _np(node.bias) if type(node).__name__ == "Affine" else np.zeros(w.shape[0] if w.ndim else 0)
    except (TypeError, ValueError):
        raise BadInput(f"NIR node {name!r}: weight or bias is not an array of numbers") from None
    if w.ndim != 2:
        raise BadInput(f"NIR node {name!r}: weight of shape {w.shape}, expected a matrix")
    if 0 in w.shape:
        raise BadInput(f"NIR node {name!r}: weight of shape {w.shape} has a zero-width side")
    if b.shape != (w.shape[0],):
        raise BadInput(f"NIR node {name!r}: bias of shape {b.shape} for {w.shape[0]} outputs")
    return _finite(name, "weight", w), _finite(name, "bias", b)


def graph_dt(meta: Mapping) -> float:
    """The time step a graph's metadata states (seconds), else NIR's and Norse's default."""
    value = meta.get("dt", DEFAULT_DT)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"the NIR graph's metadata dt = {value!r} is not a number") from None
    if arr.size != 1:
        raise BadInput(f"the NIR graph's metadata dt holds {arr.size} values; expected one number of seconds")
    return float(arr.reshape(()))


def from_nir(graph: Any, dt: float | None = None, override_dt: bool = False
             ) -> tuple[ModelConfig, dict[str, torch.Tensor], float]:
    """A config and state dict of our network for an NIR graph; also the dt used.

    The leaks follow from tau and dt (alpha = 1 - dt / tau), so a dt other than the one the
    graph was made for is another network: a `dt` that contradicts the graph's metadata is
    refused unless `override_dt` (the caller then says so)."""
    meta = getattr(graph, "metadata", None) or {}
    if dt is not None and "dt" in meta and not override_dt:
        own = graph_dt(meta)
        if not math.isclose(float(dt), own, rel_tol=1e-9):
            raise BadInput(f"--dt {float(dt):g} s contradicts the graph's own time step of {own:g} s (its metadata): "
                           f"its leaks would change; drop --dt, or add --override-dt to simulate it at {float(dt):g} s")
    if dt is None:
        dt = graph_dt(meta)
    dt = float(dt)
    if not (dt > 0 and math.isfinite(dt)):
        raise BadInput(f"--dt {dt}: must be a positive number of seconds")
    layers, readout, pending, pending_scale = [], None, None, None
    loops = self_loops(graph)
    for name, node in _chain(graph, loops):
        kind = type(node).__name__
        if kind in ("Affine", "Linear"):
            if pending is not None:
                raise BadInput(f"NIR node {name!r}: two Affine/Linear nodes in a row")
            pending, pending_scale = (name, *_affine(name, node)), None
        elif kind == "Scale" and pending is not None:
            pending_scale = _finite(name, "scale", _np(node.scale))
            if pending_scale.shape not in ((), (1,), (pending[1].shape[0],)):
                raise BadInput(f"NIR node {name!r}: scale of shape {pending_scale.shape} for the "
                               f"{pending[1].shape[0]} outputs of {pending[0]!r}")
        elif kind in NEURONS and pending is not None:
            layers.append((pending, pending_scale, name, node, _recurrent(graph, loops.get(name))))
            pending = None
        else:
            raise BadInput(f"NIR node {name!r} ({kind}) is not supported here: a chain of Affine/Linear, "
                           "optional Scale, and LIF, CubaLIF, IF or Threshold nodes ending in an Affine/Linear readout")
    if pending is None or not layers:
        raise BadInput("the NIR graph needs at least one LIF layer and a final Affine/Linear readout")
    readout = pending
    return _state(layers, readout, dt)


def _recurrent(graph: Any, r: str | None) -> np.ndarray | None:
    """The weights [H, H] of the self-loop node `r` (None: the neuron has none), without self-connections."""
    if r is None:
        return None
    w, b = _affine(r, graph.nodes[r])
    if w.shape[0] != w.shape[1]:
        raise BadInput(f"NIR node {r!r}: recurrent weight of shape {w.shape}, expected a square matrix")
    if np.any(b != 0):
        raise BadInput(f"NIR node {r!r}: a recurrent Affine with a bias is not supported (use a Linear)")
    if np.any(np.diagonal(w) != 0):
        raise BadInput(f"NIR node {r!r}: recurrent weights with self-connections (a nonzero diagonal) are not "
                       "supported")
    return w


def _affine_bn(prefix: str, scale: np.ndarray, shift: np.ndarray) -> dict[str, torch.Tensor]:
    """A freshly loaded network's BatchNorm computing exactly `x * scale + shift`."""
    f32 = torch.float32
    bn = affine_bn(prefix, torch.tensor(scale, dtype=f32), torch.tensor(shift, dtype=f32), ModelConfig.bn_eps)
    return {**bn, f"{prefix}.num_batches_tracked": torch.tensor(0)}


def _vec(name: str, node: Any, field: str, h: int, default: float | None = None) -> np.ndarray:
    """A neuron parameter for the layer's h neurons (a scalar is shared): finite, and one per neuron."""
    value = getattr(node, field, None)
    if value is None:
        value = default
    try:
        v = _np(value)
    except (TypeError, ValueError):
        raise BadInput(f"NIR node {name!r}: {field} is not an array of numbers") from None
    if v.size not in (1, h):
        raise BadInput(f"NIR node {name!r}: {field} holds {v.size} values for {h} neurons")
    return _finite(name, field, v.reshape(-1) * np.ones(h))


def _reset(name: str, node: Any, h: int) -> str:
    """`subtract` when the node's metadata says so (our export), else NIR's reset to v_reset, which must be 0."""
    meta = getattr(node, "metadata", None) or {}
    reset = meta.get("reset", "zero")
    reset = reset.decode() if isinstance(reset, bytes) else str(reset)
    if reset not in ("subtract", "zero") or (reset == "zero" and np.any(_vec(name, node, "v_reset", h, 0.0) != 0)):
        raise BadInput(f"NIR node {name!r}: reset to v_reset != 0 is not supported (only to 0, or by subtraction)")
    return reset


def _decay(name: str, tau: np.ndarray, dt: float, what: str) -> np.ndarray:
    if np.any(tau <= dt):
        raise BadInput(f"NIR node {name!r}: {what} {tau.min():g} s is not above the time step {dt:g} s (unstable)")
    return (1.0 - dt / tau).astype(np.float32)


def _neuron(name: str, node: Any, w: np.ndarray, b: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """Our block's constants for one NIR neuron node fed by `W x + b`: weight, bias, BN scale/shift, leaks."""
    kind, h = NEURONS[type(node).__name__], w.shape[0]
    if type(node).__name__ == "Threshold":  # z = H(I - theta) each step: v = 0 v + 1 I
        return {"w": w, "scale": np.ones(h), "shift": b, "alpha": np.zeros(h, np.float32),
                "v_th": _vec(name, node, "threshold", h)}
    r = _vec(name, node, "r", h, 1.0)
    out = {"v_th": _vec(name, node, "v_threshold", h)}
    if kind == "if":  # v += r (W x + b) per step
        return {**out, "w": w, "scale": r, "shift": r * b, "alpha": np.ones(h, np.float32)}
    if kind == "lif":
        return {**out, "w": w, "scale": r, "shift": r * b + _vec(name, node, "v_leak", h, 0.0),
                "alpha": _decay(name, _vec(name, node, "tau", h), dt, "tau")}
    w_in = _vec(name, node, "w_in", h, 1.0)
    return {**out, "w": w * w_in.reshape(-1, 1), "bias": b * w_in, "scale": r, "shift": _vec(name, node, "v_leak", h, 0.0),
            "alpha": _decay(name, _vec(name, node, "tau_mem", h), dt, "tau_mem"),
            "beta": _decay(name, _vec(name, node, "tau_syn", h), dt, "tau_syn")}


def _state(layers: list, readout: tuple, dt: float) -> tuple[ModelConfig, dict[str, torch.Tensor], float]:
    sd: dict[str, torch.Tensor] = {}
    resets, kinds, alphas, width = set(), set(), [], None
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    recurrent = [rec is not None for *_, rec in layers]
    if any(recurrent) and not all(recurrent):
        raise BadInput("the NIR graph has recurrent synapses on some neuron layers only; use them on every layer "
                       "or on none")
    for i, ((fc, w, b), scale, name, node, rec) in enumerate(layers):
        if width is not None and w.shape[1] != width:
            raise BadInput(f"NIR node {fc!r}: takes {w.shape[1]} inputs, the layer before gives {width}")
        width = w.shape[0]
        if scale is not None:
            w, b = w * scale.reshape(-1, 1), b * scale
        if type(node).__name__ != "Threshold":  # memoryless: its reset never matters
            resets.add(_reset(name, node, width))
        kinds.add(NEURONS[type(node).__name__])
        c = _neuron(name, node, w, b, dt)
        alphas.append(c["alpha"])
        p = f"blocks.{i}"
        sd[f"{p}.linear.weight"] = f32(c["w"])
        if "bias" in c:
            sd[f"{p}.linear.bias"] = f32(c["bias"])
            sd[f"{p}.beta"] = torch.tensor(c["beta"])
        sd.update(_affine_bn(f"{p}.bn", c["scale"], c["shift"]))
        sd[f"{p}.alpha"] = torch.tensor(c["alpha"])
        sd[f"{p}.v_th"] = f32(c["v_th"])
        if rec is not None:  # the recurrent current joins the input after the BN, scaled by r as W x is
            if NEURONS[type(node).__name__] != "lif":
                raise BadInput(f"NIR node {name!r}: recurrent synapses are supported on LIF nodes only")
            sd[f"{p}.recurrent.linear.weight"] = f32(c["scale"].reshape(-1, 1) * rec)
    if len(resets) > 1:
        raise BadInput("the NIR graph mixes reset by subtraction and reset to zero across layers")
    if len(kinds) > 1:
        raise BadInput(f"the NIR graph mixes neuron models across layers ({', '.join(sorted(kinds))}); use one "
                       "(LIF and Threshold mix)")
    fc, w, b = readout
    if w.shape[1] != width:
        raise BadInput(f"NIR node {fc!r}: takes {w.shape[1]} inputs, the last neuron layer gives {width}")
    sd["readout.linear.weight"] = f32(w)
    sd["readout.linear.bias"] = f32(b)
    sd.update(_affine_bn("readout.bn", np.ones(width), np.zeros(width)))
    lo, hi = float(min(a.min() for a in alphas)), float(max(a.max() for a in alphas))
    reset, kind = resets.pop() if resets else "zero", kinds.pop()
    if all(recurrent):
        if reset != "subtract":
            raise BadInput("the NIR graph's recurrent LIF layers reset to zero; only reset by subtraction is "
                           "supported for recurrent layers")
        kind = "rlif"
    cfg = ModelConfig(input_dim=int(layers[0][0][1].shape[1]), num_classes=int(w.shape[0]),
                      hidden=tuple(int(x[0][1].shape[0]) for x in layers), dropout=0.0,
                      alpha_min=lo, alpha_max=hi, reset=reset, neuron=kind)
    return cfg, sd, dt


def network(cfg: ModelConfig, sd: Mapping[str, torch.Tensor]) -> SpikingNet:
    """An evaluation-mode network holding `sd`."""
    net = SpikingNet(cfg)
    net.load_state_dict(dict(sd))
    return net.eval()
