"""The compiled LIF kernels (models/kernels/): built once per machine, cached, optional.

`lif.c` fuses a chunk's drive (`cur * scale + shift`), membrane scan and spike count, and
provides the scan's backward for training; `recurrent.c` does the same for the adaptive
and recurrent neuron types (models/recurrent_native.py); `spikes.c` sums the weight rows of
the inputs that fired (models/spike_current.py); `bn.c` serves training's BatchNorm
(models/bn_native.py). It is plain C, compiled with the
system's C compiler on first use (well under a second) into a per-user cache keyed by source, flags
and CPU, so later processes (Ray workers included) only load it. Built with
`-ffp-contract=off`, its float operations round exactly as the eager PyTorch code does:
spikes are bit for bit the same, so which path ran never changes a number at inference.

Which path runs (`Kernel.mode`; the process's `KERNEL` from --compile or
`ROBUST_KERNEL=auto|native|eager`):
  * `native`: the kernel wherever it applies (CPU, float32); a one-line error (BadInput)
    if it cannot be built.
  * `eager`: PyTorch only (the reference).
  * `auto` (default): the kernel when it is already built, or when the work at hand pays
    for building it (`BUILD_WORK` neuron-steps, about a second of eager scanning). When
    the compiler is missing or fails, one log line says so and eager PyTorch runs.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from basics.errors import BadInput
from basics.files import atomic_path

log = logging.getLogger(__name__)

KERNELS = Path(__file__).with_name("kernels")
SOURCES = (KERNELS / "lif.c", KERNELS / "recurrent.c", KERNELS / "spikes.c", KERNELS / "bn.c")
HEADERS = (KERNELS / "rows.h", KERNELS / "spikes.h")
# -fno-trapping-math: without it GCC does not vectorise a loop holding a float comparison (the
# spike); it changes no rounding, and -ffp-contract=off still forbids fused multiply-adds.
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-fPIC", "-shared",
         "-fopenmp"]
MODES = ("auto", "native", "eager")
BUILD_WORK = 2e8  # neuron-steps that take eager ~1 s: worth a cold build (<1 s); below, eager runs

def cache_dir() -> Path:
    """$ROBUST_CACHE_DIR, else $XDG_CACHE_HOME/robust, else ~/.cache/robust."""
    if os.environ.get("ROBUST_CACHE_DIR"):
        return Path(os.environ["ROBUST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "robust"


def find_compiler() -> str | None:
    """$CC, else cc, gcc or clang on the PATH."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _cpu_id() -> str:
    """What -march=native depends on: a kernel built on one CPU model is not loaded on another."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=4)
def _key(cc: str) -> str:
    code = b"".join(p.read_bytes() for p in SOURCES + HEADERS)
    return hashlib.sha256(code + " ".join([cc, *FLAGS]).encode() + _cpu_id().encode()).hexdigest()[:16]


def library_path(cc: str, cache: Path | None = None) -> Path:
    """Where the kernel built by `cc` for this CPU lives (or will), under `cache` (default `cache_dir()`)."""
    return (cache or cache_dir()) / "kernels" / f"lif-{_key(cc)}.so"


def _build(cc: str, target: Path) -> None:
    """Compile to a temporary file beside the target, then rename: concurrent builds are safe."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, ".so.tmp") as tmp:
        proc = subprocess.run([cc, *FLAGS, *map(str, SOURCES), "-o", tmp, "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or [f"{cc} failed"])[0])


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.lif_forward.argtypes = [p] * 9 + [i64] * 4 + [ctypes.c_int]
    lib.lif_forward.restype = ctypes.c_int
    lib.lif_backward.argtypes = [p] * 7 + [ctypes.c_float] + [i64] * 4 + [ctypes.c_int]
    lib.lif_backward.restype = ctypes.c_int
    lib.rec_forward.argtypes = [p] * 16 + [i64] * 4 + [ctypes.c_int]
    lib.rec_forward.restype = ctypes.c_int
    lib.rec_backward.argtypes = [p] * 17 + [ctypes.c_float] + [i64] * 4 + [ctypes.c_int]
    lib.rec_backward.restype = ctypes.c_int
    lib.spike_current.argtypes = [p] * 3 + [i64] * 4 + [ctypes.c_int] * 3
    lib.spike_current.restype = ctypes.c_int
    lib.spike_weight_grad.argtypes = [p] * 3 + [i64] * 4 + [ctypes.c_int] * 2
    lib.spike_weight_grad.restype = ctypes.c_int
    lib.lif_chain_forward.argtypes = [p, i64] + [p] * 11 + [i64] * 3 + [ctypes.c_int]
    lib.lif_chain_forward.restype = ctypes.c_int
    lib.bn_sums.argtypes = [p] * 4 + [i64] * 4 + [ctypes.c_int]
    lib.bn_sums.restype = ctypes.c_int
    lib.bn_input_grad.argtypes = [p] * 7 + [i64] * 3 + [ctypes.c_int]
    lib.bn_input_grad.restype = ctypes.c_int
    return lib


class Kernel:
    """Which LIF path runs (`mode`: auto, native or eager) and, once loaded, the compiled
    library, or why it cannot be had. The process's choice is `KERNEL` (set by --compile and
    $ROBUST_KERNEL, carried to Ray workers); a forward pass takes another through
    `ForwardOptions.kernel` (tests build their own: no compiler, a broken one, a fresh cache).

    `find`: finds the C compiler's command on first use (None: there is none).
    `cache`: where built kernels live (default: `cache_dir()` when first needed).
    """

    def __init__(self, mode: str = "auto", find: Callable[[], str | None] = find_compiler, cache: Path | None = None):
        self.set_mode(mode)
        self._find = find
        self.cache = cache
        self._lib: ctypes.CDLL | None = None
        self._failed: str | None = None  # why the kernel is unavailable, once known
        self.training_lib: ctypes.CDLL | None = None  # the kernel for gradient passes, only inside `training`
        self.built_path: Path | None = None  # where the loaded kernel's build lives
        self.crossover: float | None = None  # spike density where dense beats event-driven (models/spike_current.py)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"kernel mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode

    def _unavailable(self, reason: str) -> None:
        self._failed = reason
        if self.mode == "native":  # forced (--compile): the user asked for it, so say it cannot be had
            raise BadInput(f"--compile: the compiled LIF kernel is unavailable ({reason})")
        log.warning("compiled LIF kernel unavailable (%s); running eager PyTorch (slower)", reason)

    def library(self, work: float = float("inf")) -> ctypes.CDLL | None:
        """The loaded kernel, or None where eager PyTorch should run for `work` neuron-steps."""
        if self.mode == "eager":
            return None
        if self._lib is not None or self._failed is not None:
            return self._lib
        cc = self._find()
        if cc is None:
            self._unavailable("no C compiler found; set CC")
            return None
        try:
            path = library_path(cc, self.cache)
            if not path.exists():
                if self.mode == "auto" and work < BUILD_WORK:
                    return None  # too little work to pay for a build; the next larger call builds
                _build(cc, path)
                log.info("built the LIF kernel into %s", path)
            self._lib = _load(path)
            self.built_path = path
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            self._unavailable(str(e) or type(e).__name__)
            return None
        return self._lib

    @contextmanager
    def for_work(self, work: float) -> Iterator[str]:
        """Inside this block, `auto` is resolved once for a job of `work` neuron-steps.

        A sweep or slice knows its total work, while each kernel call sees only one chunk;
        resolving here lets a long job build the kernel and a short one (a CI smoke sweep)
        stay eager. The resolved mode also travels to Ray workers. Yields "native" or "eager".
        """
        saved = self.mode
        if self.mode == "auto":
            self.mode = "native" if self.library(work) is not None else "eager"
        try:
            yield "eager" if self.mode == "eager" else "native"
        finally:
            self.mode = saved

    @contextmanager
    def training(self, work: float) -> Iterator[str]:
        """Run the training scans of this block in the kernel when `work` neuron-steps pay for it.

        The choice depends on the mode and the work only, never on whether a build is already
        cached: a run's gradients (which round differently in the kernel) then never depend on
        what ran before. Yields the path taken, "native" or "eager".
        """
        use = self.mode == "native" or (self.mode == "auto" and work >= BUILD_WORK)
        self.training_lib = self.library() if use else None
        try:
            yield "native" if self.training_lib is not None else "eager"
        finally:
            self.training_lib = None


_env = os.environ.get("ROBUST_KERNEL", "auto")
KERNEL = Kernel(_env if _env in MODES else "auto")  # this process's choice


def applies(*tensors: torch.Tensor) -> bool:
    """The kernel handles CPU float32 tensors only (CUDA and float64 run eager)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def per_network(c: torch.Tensor | None, k: int, h: int) -> torch.Tensor | None:
    """A per-network constant [K or 1, 1, H] (or [K or 1, H]) as the kernels' contiguous [K, H]."""
    return None if c is None else c.detach().reshape(-1, h).expand(k, h).contiguous()


def ptr(t: torch.Tensor | None) -> int | None:
    """The address a kernel argument takes (None: NULL, the argument is absent)."""
    return None if t is None else t.data_ptr()


def forward(lib: ctypes.CDLL, cur: torch.Tensor, alpha: torch.Tensor, vth: torch.Tensor, v: torch.Tensor,
            scale: torch.Tensor | None = None, shift: torch.Tensor | None = None, spikes: bool = True,
            count: torch.Tensor | None = None, keep_membrane: bool = False
            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Scan a [K, T, B, H] chunk: drive = cur (* scale + shift), membrane `v` [K, B, H] updated in place.

    `alpha`, `vth`, `scale`, `shift` are [K, H]. Returns the spikes [K, T, B, H] (None when
    `spikes` is False: only `count` [K, B, H] is accumulated) and, with `keep_membrane`,
    the pre-reset membranes [K, T, B, H] the backward needs.
    """
    k, steps, b, h = cur.shape
    cur = cur.contiguous()
    consts = [None if c is None else c.expand(k, h).contiguous() for c in (scale, shift, alpha, vth)]
    z = torch.empty_like(cur) if spikes else None
    vpre = torch.empty_like(cur) if keep_membrane else None
    with torch.profiler.record_function("lif_kernel_forward"):
        rc = lib.lif_forward(ptr(cur), *map(ptr, consts), ptr(v), ptr(z), ptr(count), ptr(vpre),
                             k, steps, b, h, torch.get_num_threads())
    if rc:
        raise RuntimeError("LIF kernel failed")
    return z, vpre


def backward(lib: ctypes.CDLL, grad_z: torch.Tensor, vpre: torch.Tensor, alpha: torch.Tensor, vth: torch.Tensor,
             width: float, need_alpha: bool, need_vth: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of the scan from rest: drive [K, T, B, H]; alpha and vth summed over T, per row [K, B, H]."""
    k, steps, b, h = vpre.shape
    grad_z = grad_z.contiguous()
    alpha, vth = alpha.expand(k, h).contiguous(), vth.expand(k, h).contiguous()
    gd = torch.empty_like(vpre)
    ga = vpre.new_zeros(k, b, h) if need_alpha else None
    gt = vpre.new_zeros(k, b, h) if need_vth else None
    with torch.profiler.record_function("lif_kernel_backward"):
        rc = lib.lif_backward(ptr(grad_z), ptr(vpre), ptr(alpha), ptr(vth), ptr(gd), ptr(ga), ptr(gt),
                              float(width), k, steps, b, h, torch.get_num_threads())
    if rc:
        raise RuntimeError("LIF kernel failed (out of memory)")
    return gd, ga, gt
