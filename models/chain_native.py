"""All hidden layers of an inference chunk in one call of the compiled kernel (`lif_chain_forward`).

Only the first layer's current is computed outside (the dense feature matmul); the kernel
scans it, and each row's spikes at a step go straight into the event-driven sum of the next
layer (models/spike_current.py) and its scan, without being stored. The arithmetic is that
of the layer-by-layer path, so it gives the same spikes and counts, bit for bit; it only
saves the memory traffic of writing and reading every layer's spikes and currents.

It takes the common case: LIF layers with reset by subtraction, no read noise, no synaptic
filter, no crossbar read-out; dead and saturated neurons included. Everything else runs layer by layer.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from models import native
from models.native import per_network, ptr

NAMES = ("scale", "shift", "alpha", "v_th", "dead", "saturated")


def takes(consts: list[dict]) -> bool:
    """Whether every layer is one the chain kernel runs (see the module docstring)."""
    return all(c["reset"] == "subtract" and c["noise"] is None and c["beta"] is None and c.get("xbar") is None
               and (j == 0 or (c["wt"] is not None and c["wt"].dtype == torch.float32))
               for j, c in enumerate(consts))


class Chain:
    """The kernel's arguments for one pass (K networks, B examples): built once, reused per chunk.

    `consts` are the layers' inference constants (models/inference.py), `v` and `counts` the
    membranes and spike counts [K, B, H] the kernel updates in place.
    """

    def __init__(self, kernel: native.Kernel, lib: ctypes.CDLL, consts: list[dict], v: list[Tensor],
                 counts: list[Tensor]):
        self.kernel, self.lib = kernel, lib
        k, bsz = v[0].shape[:2]
        widths = [x.shape[-1] for x in v]
        self._keep = []  # the contiguous copies the pointers point into
        ptrs = {name: self._array(self._kept([per_network(c[name], k, h) for c, h in zip(consts, widths)]))
                for name in NAMES}
        wts = self._kept([None] + [c["wt"].contiguous() for c in consts[1:]])
        self.args = (len(consts), (ctypes.c_int64 * len(widths))(*widths), self._array(wts),
                     (ctypes.c_int * len(wts))(*[int(w is not None and w.shape[0] == 1) for w in wts]),
                     *(ptrs[n] for n in NAMES), self._array(v), self._array(counts))
        self.k, self.bsz = k, bsz
        assert all(x.is_contiguous() for x in v + counts)

    def _kept(self, tensors: list[Tensor | None]) -> list[Tensor | None]:
        self._keep += tensors
        return tensors

    @staticmethod
    def _array(tensors: list[Tensor | None]) -> ctypes.Array:
        return (ctypes.c_void_p * len(tensors))(*[ptr(t) for t in tensors])

    def run(self, cur0: Tensor) -> None:
        """Scan a chunk from the first layer's current `cur0` [K, tc, B, H0]."""
        cur0 = cur0.contiguous()
        with torch.profiler.record_function("lif_chain_kernel"):
            rc = self.lib.lif_chain_forward(ptr(cur0), *self.args, self.k, cur0.shape[1], self.bsz,
                                            torch.get_num_threads())
        if rc:
            raise RuntimeError("LIF chain kernel failed (out of memory)")


def chain(consts: list[dict], v: list[Tensor], counts: list[Tensor], x: Tensor, steps: int,
          kernel: native.Kernel | None) -> Chain | None:
    """The chain kernel for this pass over `steps` time steps of `x`, or None where the layers run one by one."""
    tensors = [t for c in consts for n in (*NAMES, "wt") if (t := c[n]) is not None]
    if not consts or not takes(consts) or not native.applies(x, *tensors, *v, *counts):
        return None
    kernel = kernel or native.KERNEL
    lib = kernel.library(sum(c.numel() for c in counts) * steps)
    return None if lib is None else Chain(kernel, lib, consts, v, counts)
