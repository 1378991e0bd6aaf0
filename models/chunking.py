"""Chunk sizes for inference passes, chosen from this machine's cache sizes.

A pass evaluates R = K networks x B examples rows; each layer's chunk of tc time steps is
an [R, tc, H] float tensor written by the matmul, read by the LIF kernel, and (spikes)
written again for the next matmul. The chunk is sized so that these stay in the
last-level cache, while each matmul keeps enough rows (tc * B per network) to run near
its peak.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

FALLBACK = {2: 1 << 20, 3: 8 << 20}  # bytes, when the OS does not say
MIN_CHUNK, MAX_CHUNK = 1, 50
TARGET_CHUNK = 4  # time steps per chunk a pass is sized for: measured best on a 33 MB L3 (see README)
MAX_BATCH = 1024
MIN_BATCH = 100  # examples per pass below which the matmuls lose more than the cache gains (measured)
FLOAT = 4  # bytes per element
# Stacked networks per pass at most, in sweeps and slices alike: bounds the parameter copies
# and temporaries a pass holds, whatever the cache would allow.
MAX_NETWORKS_PER_PASS = 100


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * mult


@functools.lru_cache(maxsize=1)
def cache_sizes() -> dict[int, int]:
    """Total bytes of data cache per level (L2 summed over cores, L3 over instances)."""
    root = Path("/sys/devices/system/cpu")
    found: dict[int, dict[str, int]] = {}
    try:
        for cpu in sorted(root.glob("cpu[0-9]*")):
            for idx in (cpu / "cache").glob("index*"):
                if (idx / "type").read_text().strip() == "Instruction":
                    continue
                level = int((idx / "level").read_text())
                shared = (idx / "shared_cpu_list").read_text().strip()
                found.setdefault(level, {})[shared] = _size((idx / "size").read_text())
    except (OSError, ValueError):
        found = {}
    sizes = {level: sum(per.values()) for level, per in found.items()}
    return {level: sizes.get(level, size) for level, size in FALLBACK.items()} | sizes


def chunk_budget() -> int:
    """Bytes one layer's chunk tensor may take: $ROBUST_CHUNK_BYTES, else a quarter of the last-level cache."""
    if os.environ.get("ROBUST_CHUNK_BYTES"):
        return int(os.environ["ROBUST_CHUNK_BYTES"])
    sizes = cache_sizes()
    return sizes[max(sizes)] // 4


def time_chunk(rows: int, width: int) -> int:
    """Time steps per chunk for `rows` (K x B) rows of `width` neurons."""
    tc = chunk_budget() // max(1, rows * width * FLOAT)
    return max(MIN_CHUNK, min(MAX_CHUNK, tc))


def batch_size(k: int, width: int) -> int:
    """Examples per pass for K networks: a chunk of TARGET_CHUNK steps then fills the budget."""
    return max(1, min(MAX_BATCH, chunk_budget() // (k * TARGET_CHUNK * width * FLOAT)))


def networks_per_pass(width: int, group: int = 1) -> int:
    """Networks to stack in one pass so that each still gets MIN_BATCH examples within the
    budget (at most MAX_NETWORKS_PER_PASS), as a number of whole groups of `group` networks
    (the K0 networks of one draw, the M networks of one slice point); at least one group."""
    fits = chunk_budget() // (TARGET_CHUNK * MIN_BATCH * width * FLOAT)
    return max(1, min(MAX_NETWORKS_PER_PASS, fits) // group)
