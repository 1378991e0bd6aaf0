"""The paper's feedforward SNN, with a forward pass over K stacked parameter sets.

Architecture (Bittar & Garner 2022 as used by the paper): hidden blocks
`Linear (no bias) -> BatchNorm (pooled over batch and time) -> LIF -> Dropout`, then a
spike-rate readout `mean over T -> BatchNorm -> Dropout -> Linear`.

Every Linear runs over all T steps in one matmul; only the elementwise membrane
recurrence loops over time. All tensors (parameters, BN running statistics, neuron
thresholds) live in one flat name -> tensor mapping; `forward_stacked` takes that mapping
with a leading K axis on every entry and evaluates K networks (K perturbed chips, K
posterior samples) in one batched pass.
"""

from __future__ import annotations

import ctypes
import math
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from models.hardware import add_read_noise, force_spikes, read_noise_keys
from models.inference import chunked_inference
from models.layers import bn_affine, drive_gain, flatten_input, leak, row_invariant, synaptic_filter
from models.lif import lif_scan
from models import bn_native, crossbar_read, integer_forward, native, recurrent, spike_current
from models.model_config import ADAPTIVE, RECURRENT, ForwardOptions, ModelConfig
from models.native import Kernel


def bn_prefixes(cfg: ModelConfig) -> list[str]:
    """Names of the BatchNorm layers, in forward order."""
    return [f"blocks.{i}.bn" for i in range(len(cfg.hidden))] + ["readout.bn"]


def _batchnorm(x: Tensor, t: Mapping[str, Tensor], prefix: str, cfg: ModelConfig,
               opt: ForwardOptions) -> Tensor:
    """BatchNorm of x [K, N, H] over N, per K (N = batch * time for hidden layers)."""
    scale, shift = _batchnorm_affine(x, t, prefix, cfg, opt)
    return x * scale + shift


def _batchnorm_affine(x: Tensor, t: Mapping[str, Tensor], prefix: str, cfg: ModelConfig,
                      opt: ForwardOptions) -> tuple[Tensor, Tensor]:
    """The BatchNorm of x [K, N, H] as `x * scale + shift`: (scale, shift), each [K, 1, H]."""
    w, b = t[f"{prefix}.weight"], t[f"{prefix}.bias"]
    if opt.record_stats is not None:
        with torch.no_grad():
            s = opt.record_stats.setdefault(prefix, [0.0, 0.0, 0])
            s[0] = s[0] + x.sum(1)
            s[1] = s[1] + x.square().sum(1)
            s[2] += x.shape[1]
    if opt.bn_batch_stats:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
        _update_running(t, prefix, cfg, opt, mean.squeeze(1), var.squeeze(1), x.shape[1])
        scale = w.unsqueeze(1) * torch.rsqrt(var + cfg.bn_eps)
        shift = b.unsqueeze(1) - mean * scale
    else:
        scale, shift = bn_affine(t, prefix, cfg.bn_eps)
        scale, shift = scale.unsqueeze(1), shift.unsqueeze(1)
    return scale, shift


def _update_running(t: Mapping[str, Tensor], prefix: str, cfg: ModelConfig, opt: ForwardOptions, mean: Tensor,
                    var: Tensor, n: int) -> None:
    """Running statistics from a batch's mean and biased variance [K, H] over n rows (training)."""
    if not opt.update_running:
        return
    with torch.no_grad():
        m = cfg.bn_momentum if opt.bn_momentum is None else opt.bn_momentum
        rm, rv = t[f"{prefix}.running_mean"], t[f"{prefix}.running_var"]
        rm.mul_(1 - m).add_(m * mean)
        rv.mul_(1 - m).add_(m * var * n / max(n - 1, 1))


def _dropout(x: Tensor, p: float, gen: torch.Generator | None) -> Tensor:
    if gen is None or p == 0.0:
        return x
    keep = (torch.rand(x.shape, generator=gen, device=gen.device) >= p).to(x.device)
    return x * keep.to(x.dtype) / (1.0 - p)


def _run_blocks(cfg: ModelConfig, t: Mapping[str, Tensor], h: Tensor, steps: int, bsz: int,
                opt: ForwardOptions, start: int, stop: int) -> tuple[Tensor, list[Tensor]]:
    rates = []
    binary = opt.smooth_spikes == 0 and opt.dropout_generator is None  # spikes are 0 or 1 between layers
    drop_scale = 1.0 / (1.0 - cfg.dropout) if opt.dropout_generator is not None and cfg.dropout > 0 else 1.0
    for i in range(start, stop):
        p = f"blocks.{i}"
        w = t[f"{p}.linear.weight"]
        grad = torch.is_grad_enabled() and (h.requires_grad or w.requires_grad)
        cur = None
        if crossbar_read.present(t, p):  # read out through crossbar arrays
            spikes = i > 0 and binary
            cur = crossbar_read.read(h, crossbar_read.prepare(t, p, spikes), spikes, opt.record_xbar)
        elif i > 0 and binary and not grad:
            cur = spike_current.current(h, spike_current.exact_weights(w), opt.kernel)  # as inference does
        elif i > 0 and opt.smooth_spikes == 0:  # training: spikes, scaled by dropout
            cur = spike_current.train_current(h, w, drop_scale, opt.kernel)
        if cur is None:
            cur = torch.matmul(h, w.transpose(-1, -2))  # [K, T*B, H]
        if f"{p}.read_noise" in t:
            noisy = add_read_noise(cur.view(cur.shape[0], steps, bsz, -1), t[f"{p}.read_noise"], read_noise_keys(t, p),
                                   opt.example_offset, 0)
            cur = noisy.view(cur.shape)
        if f"{p}.linear.bias" in t:
            cur = cur + t[f"{p}.linear.bias"].unsqueeze(1)
        if f"{p}.beta" in t:
            syn, _ = synaptic_filter(cur.view(cur.shape[0], steps, bsz, -1), t[f"{p}.beta"].unsqueeze(1))
            cur = syn.view(cur.shape)
        alpha = leak(cfg, t, p, opt)
        lib = _bn_training_lib(cfg, t, p, opt, cur, alpha)
        if lib is not None:  # BatchNorm and scan in the kernel, one autograd node
            z, mean, var = bn_native.scan(lib, cur.view(cur.shape[0], steps, bsz, -1), t[f"{p}.bn.weight"].unsqueeze(1),
                                          t[f"{p}.bn.bias"].unsqueeze(1), drive_gain(cfg, alpha), alpha,
                                          t[f"{p}.v_th"].unsqueeze(1), cfg.bn_eps, cfg.surrogate_width)
            _update_running(t, f"{p}.bn", cfg, opt, mean, var, cur.shape[1])
            z = force_spikes(z, t.get(f"{p}.dead"), t.get(f"{p}.saturated"))
        elif recurrent.is_stateful(cfg):  # forced spikes act inside: they feed back through V and w
            affine = _batchnorm_affine(cur, t, f"{p}.bn", cfg, opt)  # fused into the scan where the kernel runs
            z = recurrent.scan(cur.view(cur.shape[0], steps, bsz, -1), affine, alpha, t[f"{p}.v_th"].unsqueeze(1),
                               cfg.surrogate_width, recurrent.recurrent_weight(t, p), recurrent.adaptation(t, p, opt),
                               t, p, opt)
        else:
            cur = _batchnorm(cur, t, f"{p}.bn", cfg, opt)
            drive = (cur * drive_gain(cfg, alpha)).view(cur.shape[0], steps, bsz, -1)
            z = lif_scan(drive, alpha, t[f"{p}.v_th"].unsqueeze(1), cfg.surrogate_width, smooth=opt.smooth_spikes,
                         reset=cfg.reset, kernel=opt.kernel)
            z = force_spikes(z, t.get(f"{p}.dead"), t.get(f"{p}.saturated"))
        rates.append(z.mean(dim=(1, 2, 3)))
        opt.count(p, z, (1, 2))
        z = _dropout(z, cfg.dropout, opt.dropout_generator)
        h = z.view(z.shape[0], steps * bsz, -1)
    return h, rates


def _bn_training_lib(cfg: ModelConfig, t: Mapping[str, Tensor], p: str, opt: ForwardOptions, cur: Tensor,
                     alpha: Tensor) -> ctypes.CDLL | None:
    """The kernel that runs a LIF layer's training-mode BatchNorm and scan (models/bn_native.py)
    inside `Kernel.training`, for the plain case: batch statistics, nothing recorded, reset
    by subtraction, real spikes. None: eager PyTorch runs them."""
    lib = (opt.kernel or native.KERNEL).training_lib
    takes = (lib is not None and torch.is_grad_enabled() and opt.bn_batch_stats and opt.record_stats is None
             and not recurrent.is_stateful(cfg) and cfg.reset == "subtract" and opt.smooth_spikes == 0
             and bn_native.applies(lib, cur, t[f"{p}.bn.weight"], t[f"{p}.bn.bias"], alpha, t[f"{p}.v_th"]))
    return lib if takes else None


def block_spikes(cfg: ModelConfig, t: Mapping[str, Tensor], x: Tensor, upto: int,
                 opt: ForwardOptions | None = None) -> Tensor:
    """Spike trains [K, B, T, H] leaving block `upto - 1`: the input `forward_stacked(start=upto)` takes."""
    opt = opt or ForwardOptions()
    h, steps, bsz = flatten_input(x)
    h, _ = _run_blocks(cfg, t, h, steps, bsz, opt, opt.start, upto)
    return h.view(h.shape[0], steps, bsz, -1).transpose(1, 2)


def forward_stacked(cfg: ModelConfig, t: Mapping[str, Tensor], x: Tensor,
                    opt: ForwardOptions | None = None) -> tuple[Tensor, list[Tensor]]:
    """Logits of K networks on one batch.

    Args:
        cfg: the model configuration.
        t: every named tensor of the network (see `SpikingNet.tensors`), each with a
            leading K axis. Optional hardware entries: `blocks.i.linear.bias` [K, H] (a
            constant current, after BN folding), `blocks.i.read_noise` [K] (std of
            per-step current noise relative to the RMS of that step's currents) with
            `blocks.i.read_noise_seed` [K] (int64, one noise key per network),
            `blocks.i.dead` / `blocks.i.saturated` [K, H] (1 = never / always fires).
        x: features [B, T, D] (shared by all K) or [K, B, T, D].
        opt: BatchNorm/dropout treatment; inference defaults.

    Returns:
        logits [K, B, C] and, per hidden layer, the mean spike rate per network [K].
    """
    opt = opt or ForwardOptions()
    if "chip.weight_bits" in t:  # deployed on a digital chip (models/fixed_point.py): integer dynamics
        return integer_forward.forward(cfg, t, x, opt)
    if opt.start == 0:
        opt.count("input", x if x.dim() == 4 else x.unsqueeze(0), (1, 2))
    k = next(iter(t.values())).shape[0]
    inference = not (opt.bn_batch_stats or opt.record_stats is not None or opt.dropout_generator is not None
                     or opt.smooth_spikes > 0 or recurrent.is_stateful(cfg)
                     or (torch.is_grad_enabled() and any(v.requires_grad for v in t.values())))
    if inference:
        rate, rates = chunked_inference(cfg, t, x, opt, k)
    else:
        h, steps, bsz = flatten_input(x)
        h, rates = _run_blocks(cfg, t, h, steps, bsz, opt, opt.start, len(cfg.hidden))
        if h.dim() == 2:  # started at the readout: shared input spikes
            h = h.unsqueeze(0).expand(k, -1, -1)
        rate = h.reshape(h.shape[0], steps, bsz, -1).mean(1)  # spike rate per neuron [K, B, H]
    rate = _batchnorm(rate, t, "readout.bn", cfg, opt)
    opt.count("readout", rate, (1,))  # the readout's inputs: non-zero rates per neuron, over examples
    rate = _dropout(rate, cfg.dropout, opt.dropout_generator)
    bias, weight = t["readout.linear.bias"].unsqueeze(1), t["readout.linear.weight"].transpose(-1, -2)
    if crossbar_read.present(t, "readout"):
        logits = crossbar_read.read(rate, crossbar_read.prepare(t, "readout", False), False, opt.record_xbar) + bias
    else:
        logits = row_invariant(lambda rows: torch.baddbmm(bias, rows, weight), rate)
    return logits, rates


class _Block(nn.Module):
    def __init__(self, d_in: int, d_out: int, cfg: ModelConfig):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=cfg.neuron == "cuba_lif")  # the bias passes the synapse
        self.bn = nn.BatchNorm1d(d_out, momentum=cfg.bn_momentum, eps=cfg.bn_eps)
        # Per-neuron leak, initialised uniformly over its allowed range (as sparch does).
        self.alpha = nn.Parameter(torch.empty(d_out))
        # Threshold is a buffer, not a parameter: fixed in training, perturbed by mismatch.
        self.register_buffer("v_th", torch.full((d_out,), cfg.threshold))
        if cfg.neuron == "cuba_lif":  # synaptic decay per step, fixed (imported models only)
            self.register_buffer("beta", torch.zeros(d_out))
        if cfg.neuron in RECURRENT:  # its own layer of synapses, `blocks.i.recurrent.linear.weight`
            self.recurrent = nn.Module()
            self.recurrent.linear = nn.Linear(d_out, d_out, bias=False)
        if cfg.neuron in ADAPTIVE:  # adaptation decay and couplings per neuron (models/recurrent.py)
            for name in recurrent.ADAPT:
                setattr(self, name, nn.Parameter(torch.empty(d_out)))


class _Readout(nn.Module):
    def __init__(self, d_in: int, n_out: int, cfg: ModelConfig):
        super().__init__()
        self.bn = nn.BatchNorm1d(d_in, momentum=cfg.bn_momentum, eps=cfg.bn_eps)
        self.linear = nn.Linear(d_in, n_out)


class SpikingNet(nn.Module):
    """Two (or more) LIF blocks and a spike-rate readout; see the module docstring.

    >>> net = SpikingNet(ModelConfig(hidden=(8, 8), num_classes=3), torch.Generator().manual_seed(0))
    >>> net.eval()(torch.randn(2, 5, 40)).shape
    torch.Size([2, 3])
    """

    def __init__(self, cfg: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        dims = [cfg.input_dim, *cfg.hidden]
        self.blocks = nn.ModuleList(_Block(a, b, cfg) for a, b in zip(dims[:-1], dims[1:]))
        self.readout = _Readout(dims[-1], cfg.num_classes, cfg)
        self.reset_parameters(generator or torch.Generator().manual_seed(0))

    @torch.no_grad()
    def reset_parameters(self, g: torch.Generator) -> None:
        """Kaiming-uniform Linear init and uniform leak init, drawn from `g`; sparch's types
        then draw orthogonal recurrent weights and uniform adaptation constants over their
        ranges (after the paper's draws, so `lif` networks are drawn exactly as before)."""
        rec = {id(blk.recurrent.linear) for blk in self.blocks if hasattr(blk, "recurrent")}
        for m in self.modules():
            if isinstance(m, nn.Linear) and id(m) not in rec:
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 * bound - bound)
        for blk in self.blocks:
            blk.alpha.copy_(self.cfg.alpha_min + torch.rand(blk.alpha.shape, generator=g)
                            * (self.cfg.alpha_max - self.cfg.alpha_min))
        for blk in self.blocks:
            if hasattr(blk, "recurrent"):
                v = recurrent.orthogonal(blk.recurrent.linear.in_features, g)
                blk.recurrent.linear.weight.copy_(v.fill_diagonal_(0.0))  # no neuron synapses onto itself
            for name in recurrent.ADAPT if hasattr(blk, "adapt_beta") else ():
                lo, hi = recurrent.RANGES[name]
                getattr(blk, name).copy_(lo + torch.rand(blk.alpha.shape, generator=g) * (hi - lo))

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor the forward pass reads (parameters and buffers), by name."""
        out = dict(self.named_parameters())
        out.update((k, v) for k, v in self.named_buffers() if not k.endswith("num_batches_tracked"))
        return out

    def stacked(self, k: int = 1) -> dict[str, Tensor]:
        """The tensors with a leading K axis (views: expand, no copy)."""
        return {n: v.unsqueeze(0).expand(k, *v.shape) for n, v in self.tensors().items()}

    def forward(self, x: Tensor, dropout_generator: torch.Generator | None = None,
                update_running: bool = True,
                perturb: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
                kernel: Kernel | None = None) -> Tensor:
        """Logits [B, C] for features [B, T, D]; training mode uses batch BN statistics.

        Running statistics are a cumulative average over the first 1/momentum batches, then
        an EMA with the configured momentum: a plain EMA from the (0, 1) initial values left
        validation at chance for the first epochs of a short run.

        `perturb` (hardware-aware training) maps the K = 1 tensors to perturbed ones that
        keep their gradient path to the clean weights; it also clamps the leaks itself, so
        that a perturbed leak is not clamped back. `kernel`: the LIF path (default: the
        process's `native.KERNEL`).
        """
        momentum = None
        if self.training and update_running:
            counter = self.readout.bn.num_batches_tracked
            momentum = max(self.cfg.bn_momentum, 1.0 / (int(counter) + 1))
            for m in self.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.num_batches_tracked += 1
        opt = ForwardOptions(
            bn_batch_stats=self.training,
            update_running=self.training and update_running,
            bn_momentum=momentum,
            dropout_generator=dropout_generator if self.training else None,
            clamp_alpha=perturb is None,
            kernel=kernel,
        )
        t = self._k1()
        logits, _ = forward_stacked(self.cfg, t if perturb is None else perturb(t), x, opt)
        return logits.squeeze(0)

    def _k1(self) -> dict[str, Tensor]:
        # unsqueeze views share storage, so in-place running-stat updates reach the buffers.
        return {n: v.unsqueeze(0) for n, v in self.tensors().items()}

    def spike_rates(self, x: Tensor) -> list[float]:
        """Mean spike rate per hidden layer on `x` (inference)."""
        with torch.no_grad():
            _, rates = forward_stacked(self.cfg, self._k1(), x)
        return [float(r) for r in rates]

