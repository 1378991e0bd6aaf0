"""Sweep engine speed: L levels x S seeds of gaussian weight noise on N test utterances.

Compares, in the same run, on the same weights and data:
  * the batched engine (the code `robust sweep` runs: all S draws of a level perturbed by
    the registered perturbation and evaluated in one time-chunked pass), and
  * a per-draw loop: perturb one draw at a time and evaluate it with a plain
    per-time-step Norse forward at batch 128.
Prints the ratio, the engine's matmul throughput as a fraction of this machine's sgemm
throughput (measured here), and a profile of where the engine's time goes.

    python -m benchmarks.bench_sweep [--levels 10] [--seeds 10] [--n 2000] [--kernel auto|native|eager]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

warnings.filterwarnings("ignore")

from benchmarks.bench_forward import PerStepNorse  # noqa: E402
from benchmarks.machine import benchmark_net, matmul_flops, peak_rss_mb, sgemm_gflops  # noqa: E402
from models import native  # noqa: E402
from models.deploy import deploy_tensors  # noqa: E402
from perturbations.base import Context  # noqa: E402
from perturbations.spec import apply, parse_spec  # noqa: E402
from robustness.data import DatasetSpec, load_dataset  # noqa: E402
from robustness.evaluate import Mode  # noqa: E402
from robustness.sweep.run import SweepConfig, _prepare  # noqa: E402
from robustness.sweep.units import evaluate_draws, LevelJob  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-draws", type=int, default=None,
                    help="time the per-draw loop on this many draws and scale up (default: all)")
    ap.add_argument("--kernel", choices=native.MODES, default="auto",
                    help="LIF path of the engine (auto = what `robust sweep` does by default)")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(DatasetSpec())
    if args.model:
        from models.checkpoint import load_checkpoint

        ck = load_checkpoint(args.model)
    else:
        net = benchmark_net(None, data)

        class _Ck:  # the few checkpoint fields the engine reads
            pass

        ck = _Ck()
        ck.net, ck.posterior, ck.optimizer, ck.path, ck.members = net, None, "adam", "fresh", None
    test = data.splits["test"]
    reps = -(-args.n // len(test))
    x, y = test.x.repeat(reps, 1, 1)[: args.n], test.y.repeat(reps)[: args.n]
    levels = [0.01 * (i + 1) for i in range(args.levels)]
    seeds = list(range(args.seeds))
    spec = parse_spec("gaussian")
    cfg = SweepConfig(("bench",), (), seeds=args.seeds)
    hidden = tuple(f"blocks.{i}" for i in range(len(ck.net.cfg.hidden)))
    ctx = Context(hidden + ("readout",), hidden)
    dev = torch.device("cpu")
    peak = sgemm_gflops()
    print(f"threads {args.threads}; {args.levels} levels x {args.seeds} seeds on {args.n} utterances "
          f"(T={x.shape[1]}, hidden={list(ck.net.cfg.hidden)}); sgemm {peak:.0f} GFLOP/s at the start")

    native.KERNEL.set_mode(args.kernel)
    prep = _prepare(ck, data, Mode.POINT, cfg, x, y, dev, None)
    job = LevelJob(ck.net.cfg, prep, spec, ctx, x, y, 0, dev, cfg.seed)
    t0 = time.perf_counter()
    evaluate_draws(job, levels[0], seeds[:2])  # warm-up
    print(f"warm-up (and kernel build or load) {time.perf_counter() - t0:.1f} s, not counted below")
    acc_engine, t_engine, paces = [], 0.0, [peak]
    for lv in levels:
        t0 = time.perf_counter()
        rows = evaluate_draws(job, lv, seeds)
        t_engine += time.perf_counter() - t0
        acc_engine.append(sum(r["accuracy"] for r in rows) / len(rows))
        paces.append(sgemm_gflops(reps=2))  # the machine's pace between levels (shared hosts drift)

    # Per-draw loop: same perturbation function for one draw, per-time-step Norse forward, batch 128.
    base = {n: v.detach() for n, v in deploy_tensors(ck.net.cfg, ck.net.stacked(1)).items()}
    net = ck.net
    draws = [(lv, s) for lv in levels for s in seeds]
    timed = draws if args.baseline_draws is None else draws[: args.baseline_draws]
    t0 = time.perf_counter()
    acc_loop = {}
    with torch.no_grad():
        for lv, s in timed:
            t = apply(spec, lv, base, seed=cfg.seed, draws=[s], ctx=ctx)
            clean = {n: p.detach().clone() for n, p in net.named_parameters()}
            for n, p in net.named_parameters():
                p.copy_(t[n][0])
            loop = PerStepNorse(net)
            correct = 0
            for i in range(0, len(x), 128):
                correct += (loop(x[i:i + 128]).argmax(-1) == y[i:i + 128]).sum().item()
            for n, p in net.named_parameters():
                p.copy_(clean[n])
            acc_loop[(lv, s)] = correct / len(x)
    t_loop = (time.perf_counter() - t0) * len(draws) / len(timed)
    note = "" if len(timed) == len(draws) else f" (timed on {len(timed)} draws, scaled to {len(draws)})"

    peak = sum(paces) / len(paces)
    flops = matmul_flops([ck.net.cfg.input_dim, *ck.net.cfg.hidden], x.shape[1], len(x) * len(draws))
    print(f"per-draw loop (per-step Norse, batch 128): {t_loop:7.1f} s{note}")
    path = "compiled kernel" if native.KERNEL.library() is not None and args.kernel != "eager" else "eager"
    print(f"batched engine ({path}):{' ' * (27 - len(path))}{t_engine:7.1f} s   "
          f"ratio {t_loop / t_engine:.2f}x")
    print(f"engine matmul throughput {flops / t_engine / 1e9:.0f} GFLOP/s = {flops / t_engine / 1e9 / peak:.0%} "
          f"of sgemm ({peak:.0f} GFLOP/s, mean of {len(paces)} measurements between levels); "
          f"{len(x) * len(draws) / t_engine:.0f} utterance-draws/s")
    agree = [abs(acc_loop[d] - acc_engine[levels.index(d[0])]) for d in timed[:1]]
    print(f"check: accuracy of the first draw, loop vs engine mean over seeds: diff {agree[0]:.3f}")

    # Where the engine's time goes (one level).
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        evaluate_draws(job, levels[-1], seeds)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    print("engine profile (self CPU time, one level):")
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]:
        print(f"  {e.key:40s} {e.self_cpu_time_total / total:6.1%}")
    print(f"peak resident memory {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
