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

Import reads such chains, from here or from other tools (Norse's `to_nir`, snnTorch,
Rockpool): `Affine`/`Linear`, an optional `Scale`, then `LIF` per hidden layer, and a final
`Affine`/`Linear` read out as the time average. The Euler step of NIR's LIF
`tau dv/dt = (v_leak - v) + r I` is ours with `alpha = 1 - dt / tau` and drive
`(1 - alpha)(r (W x + b) + v_leak)`: `r` and `v_leak` become the BatchNorm scale and
shift (statistics 0 and 1 - eps, an exact identity). Any other node is refused by name.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from models.layers import bn_affine
from models.network import ModelConfig, SpikingNet
from robustness.errors import BadInput

DEFAULT_DT = 1e-3  # NIR's and Norse's convention when a graph does not say


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def to_nir(cfg: ModelConfig, t: Mapping[str, torch.Tensor], dt: float) -> "Any":
    """The network of K = 1 tensors `t` (deployed: leaks as a chip stores them) as an NIR graph."""
    import nir

    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([cfg.input_dim]))}
    edges, prev = [], "input"
    for i in range(len(cfg.hidden)):
        p = f"blocks.{i}"
        scale, shift = bn_affine(t, f"{p}.bn", cfg.bn_eps)
        w = scale[0].double().unsqueeze(1) * t[f"{p}.linear.weight"][0].double()
        bias = shift[0].double() + (scale[0].double() * t[f"{p}.linear.bias"][0].double()
                                    if f"{p}.linear.bias" in t else 0.0)
        alpha = t[f"{p}.alpha"][0].double()
        h = len(alpha)
        nodes[f"fc{i}"] = nir.Affine(weight=_np(w), bias=_np(bias))
        nodes[f"lif{i}"] = nir.LIF(tau=_np(dt / (1.0 - alpha)), r=np.ones(h), v_leak=np.zeros(h),
                                   v_threshold=_np(t[f"{p}.v_th"][0]), v_reset=np.zeros(h),
                                   metadata={"reset": cfg.reset})
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    scale, shift = bn_affine(t, "readout.bn", cfg.bn_eps)
    w = t["readout.linear.weight"][0].double()
    nodes["readout"] = nir.Affine(weight=_np(w * scale[0].double().unsqueeze(0)),
                                  bias=_np(w @ shift[0].double() + t["readout.linear.bias"][0].double()))
    nodes["output"] = nir.Output(output_type=np.array([cfg.num_classes]))
    edges += [(prev, "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={
        "dt": dt, "readout": "logits = time average of the output node", "exporter": "robust"})


def _chain(graph: Any) -> list[tuple[str, Any]]:
    """The graph's nodes in order from its input, refusing anything but a simple chain."""
    nxt: dict[str, str] = {}
    for a, b in graph.edges:
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
            raise BadInput(f"NIR node {cur!r} closes a loop: recurrent graphs are not supported")
        order.append((cur, graph.nodes[cur]))
    if not order or type(order[-1][1]).__name__ != "Output":
        raise BadInput("the NIR graph does not end in an Output node")
    return order[:-1]


def _affine(name: str, node: Any) -> tuple[np.ndarray, np.ndarray]:
    w = _np(node.weight)
    if w.ndim != 2:
        raise BadInput(f"NIR node {name!r}: weight of shape {w.shape}, expected a matrix")
    b = _np(node.bias) if type(node).__name__ == "Affine" else np.zeros(w.shape[0])
    return w, b


def from_nir(graph: Any, dt: float | None = None) -> tuple[ModelConfig, dict[str, torch.Tensor], float]:
    """A config and state dict of our network for an NIR graph; also the dt used."""
    meta = getattr(graph, "metadata", None) or {}
    dt = float(dt if dt is not None else meta.get("dt", DEFAULT_DT))
    if not (dt > 0 and math.isfinite(dt)):
        raise BadInput(f"--dt {dt}: must be a positive number of seconds")
    layers, readout, pending, pending_scale = [], None, None, None
    for name, node in _chain(graph):
        kind = type(node).__name__
        if kind in ("Affine", "Linear"):
            if pending is not None:
                raise BadInput(f"NIR node {name!r}: two Affine/Linear nodes in a row")
            pending, pending_scale = (name, *_affine(name, node)), None
        elif kind == "Scale" and pending is not None:
            pending_scale = _np(node.scale)
        elif kind == "LIF" and pending is not None:
            layers.append((pending, pending_scale, name, node))
            pending = None
        else:
            raise BadInput(f"NIR node {name!r} ({kind}) is not supported here: a chain of Affine/Linear, "
                           "optional Scale, and LIF nodes ending in an Affine/Linear readout")
    if pending is None or not layers:
        raise BadInput("the NIR graph needs at least one LIF layer and a final Affine/Linear readout")
    readout = pending
    return _state(layers, readout, dt)


def _affine_bn(prefix: str, scale: np.ndarray, shift: np.ndarray) -> dict[str, torch.Tensor]:
    """A BatchNorm that computes exactly `x * scale + shift`: statistics 0 and 1 - eps, so rsqrt(var + eps) = 1."""
    n = len(scale)
    return {f"{prefix}.weight": torch.tensor(scale, dtype=torch.float32),
            f"{prefix}.bias": torch.tensor(shift, dtype=torch.float32),
            f"{prefix}.running_mean": torch.zeros(n), f"{prefix}.running_var": torch.full((n,), 1.0 - ModelConfig.bn_eps),
            f"{prefix}.num_batches_tracked": torch.tensor(0)}


def _state(layers: list, readout: tuple, dt: float) -> tuple[ModelConfig, dict[str, torch.Tensor], float]:
    sd: dict[str, torch.Tensor] = {}
    resets, alphas, width = set(), [], None
    for i, ((fc, w, b), scale, name, lif) in enumerate(layers):
        if width is not None and w.shape[1] != width:
            raise BadInput(f"NIR node {fc!r}: takes {w.shape[1]} inputs, the layer before gives {width}")
        h, width = w.shape[0], w.shape[0]
        if scale is not None:
            w, b = w * scale.reshape(-1, 1), b * scale
        tau, r = _np(lif.tau) * np.ones(h), _np(lif.r) * np.ones(h)
        v_leak, v_th = _np(lif.v_leak) * np.ones(h), _np(lif.v_threshold) * np.ones(h)
        v_reset = _np(lif.v_reset) * np.ones(h) if getattr(lif, "v_reset", None) is not None else np.zeros(h)
        meta = getattr(lif, "metadata", None) or {}
        reset = str(meta.get("reset", "zero"))
        if isinstance(meta.get("reset"), bytes):
            reset = meta["reset"].decode()
        if reset not in ("subtract", "zero") or (reset == "zero" and np.any(v_reset != 0)):
            raise BadInput(f"NIR node {name!r}: reset to v_reset != 0 is not supported (only to 0, or by subtraction)")
        if np.any(tau <= dt):
            raise BadInput(f"NIR node {name!r}: tau {tau.min():g} s is not above the time step {dt:g} s (unstable)")
        resets.add(reset)
        alpha = (1.0 - dt / tau).astype(np.float32)
        alphas.append(alpha)
        p = f"blocks.{i}"
        sd[f"{p}.linear.weight"] = torch.tensor(w, dtype=torch.float32)
        sd.update(_affine_bn(f"{p}.bn", r, r * b + v_leak))
        sd[f"{p}.alpha"] = torch.tensor(alpha)
        sd[f"{p}.v_th"] = torch.tensor(v_th, dtype=torch.float32)
    if len(resets) > 1:
        raise BadInput("the NIR graph mixes reset by subtraction and reset to zero across layers")
    fc, w, b = readout
    if w.shape[1] != width:
        raise BadInput(f"NIR node {fc!r}: takes {w.shape[1]} inputs, the last LIF layer gives {width}")
    sd["readout.linear.weight"] = torch.tensor(w, dtype=torch.float32)
    sd["readout.linear.bias"] = torch.tensor(b, dtype=torch.float32)
    sd.update(_affine_bn("readout.bn", np.ones(width), np.zeros(width)))
    lo, hi = float(min(a.min() for a in alphas)), float(max(a.max() for a in alphas))
    cfg = ModelConfig(input_dim=int(layers[0][0][1].shape[1]), num_classes=int(w.shape[0]),
                      hidden=tuple(int(x[0][1].shape[0]) for x in layers), dropout=0.0,
                      alpha_min=lo, alpha_max=hi, reset=resets.pop())
    return cfg, sd, dt


def network(cfg: ModelConfig, sd: Mapping[str, torch.Tensor]) -> SpikingNet:
    """An evaluation-mode network holding `sd`."""
    net = SpikingNet(cfg)
    net.load_state_dict(dict(sd))
    return net.eval()
