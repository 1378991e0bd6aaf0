"""Local against Ray: the same sweep on both executors in one run, and Ray's per-task cost.

The sweep is the README's standard one, `robust sweep --model ivon.pt --noise 0.01:0.1`
(10 levels x 10 draws, modes mean, chips and bma with M = 10) unless options shrink it.
Local runs the units in this process with torch's threads on every core; Ray runs one
unit per task on a local instance with --cpus CPUs (one thread per task). Ray's time is
given with and without starting the instance; the stores are compared row by row.

    python -m benchmarks.bench_executors [--model ivon.pt] [--cpus 2] [--limit N] [--seeds 10]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")

from benchmarks.machine import peak_rss_mb  # noqa: E402
from robustness.executors import RayExecutor  # noqa: E402
from basics.ranges import parse_levels  # noqa: E402
from robustness.sweep.config import PerturbationPlan, SweepConfig  # noqa: E402
from robustness.sweep.run import run_sweep  # noqa: E402
from robustness.train_options import TrainRequest  # noqa: E402
from robustness.training import train_to_checkpoint  # noqa: E402

COLUMNS = "model_hash, mode, perturbation, layer, level, seed, accuracy, nll, example_correct, example_nll"


def _rows(db: str) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(f"SELECT {COLUMNS} FROM cells ORDER BY 1, 2, 3, 4, 5, 6").fetchall()


def task_overhead(n: int = 200) -> float:
    """Seconds per trivial task, submitted together and awaited (scheduling + transfer)."""
    import ray

    noop = ray.remote(num_cpus=1)(lambda i: i)
    ray.get([noop.remote(i) for i in range(20)])  # warm the workers
    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(n)])
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="IVON checkpoint [a 3-epoch one is trained first]")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--noise", default="0.01:0.1")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--mc-samples", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None, help="test clips [all 540]")
    args = ap.parse_args()
    import ray

    tmp = tempfile.mkdtemp(prefix="bench-exec-")
    model = args.model
    if model is None:
        model = os.path.join(tmp, "ivon.pt")
        train_to_checkpoint(TrainRequest(optimizer="ivon", epochs=3), model, progress=False)
    cfg = SweepConfig(models=(model,), plans=(PerturbationPlan("gaussian", tuple(parse_levels(args.noise))),),
                      seeds=args.seeds, mc_samples=args.mc_samples, limit=args.limit)
    torch.set_num_threads(args.cpus)
    t0 = time.perf_counter()
    local = run_sweep(cfg, os.path.join(tmp, "local.db"), progress=False)
    t_local = time.perf_counter() - t0

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    remote = run_sweep(cfg, os.path.join(tmp, "ray.db"), progress=False, executor=RayExecutor())
    t_ray = time.perf_counter() - t0
    per_task = task_overhead()
    ray.shutdown()

    units = len(parse_levels(args.noise)) * 3  # levels x modes (mean, chips, bma)
    same = _rows(os.path.join(tmp, "local.db")) == _rows(os.path.join(tmp, "ray.db"))
    print(f"sweep: {local.new_cells} cells ({units} units), {args.limit or 'all'} test clips, M = {args.mc_samples}, "
          f"{args.cpus} CPUs")
    print(f"local (in process, {args.cpus} torch threads): {t_local:7.1f} s")
    print(f"ray   ({args.cpus} one-thread tasks):          {t_ray:7.1f} s   + {t_start:.1f} s to start the instance")
    print(f"ray / local: {t_ray / t_local:.3f} (sweep), {(t_ray + t_start) / t_local:.3f} (with start-up)")
    print(f"ray per-task overhead: {1e3 * per_task:.2f} ms (trivial tasks); rows identical: {same}; "
          f"{remote.new_cells} cells on ray")
    print(f"peak resident memory of this process (the driver, and the local sweep) {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
