"""Sweep engine speed: L levels x S seeds of gaussian weight noise on N test utterances.

Compares, in the same run, on the same weights and data:
  * the batched engine (the code `robust sweep` runs: all S draws of a level perturbed by
    the registered perturbation and evaluated in one time-chunked pass), and
  * a per-draw loop: perturb one draw at a time and evaluate it with a plain
    per-time-step Norse forward at batch 128.
The two halves of a ratio must see the same machine load, so they run interleaved: first
`--rounds` rounds of A B (engine, loop) on a shortened workload (`--short-levels` levels),
each round printed, the ratio of their medians with its [min, max] over rounds; then one
full run of each, back to back. sgemm throughput is measured before, between the halves and
after, and the engine's matmul throughput is given as a share of it. Also prints the engine's
dense-equivalent throughput, the spike densities the event-driven sums see, peak memory, and
a profile of where the engine's time goes.

    python -m benchmarks.bench_sweep [--levels 10] [--seeds 10] [--n 2000] [--rounds 3]
        [--short-levels 2] [--kernel auto|native|eager]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")

from benchmarks.bench_forward import PerStepNorse  # noqa: E402
from benchmarks.machine import (benchmark_net, matmul_flops, peak_rss_mb, sgemm_gflops,  # noqa: E402
                                spike_densities, throughput)
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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved A B rounds on the shortened workload")
    ap.add_argument("--short-levels", type=int, default=2, help="levels in each interleaved round")
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
    base = {n: v.detach() for n, v in deploy_tensors(ck.net.cfg, ck.net.stacked(1)).items()}

    def engine(lvs: list[float]) -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        accs = []
        for lv in lvs:
            rows = evaluate_draws(job, lv, seeds)
            accs.append(sum(r["accuracy"] for r in rows) / len(rows))
        return time.perf_counter() - t0, accs

    def loop(lvs: list[float]) -> tuple[float, dict]:
        """Same perturbation function for one draw at a time, per-time-step Norse forward, batch 128."""
        draws = [(lv, s) for lv in lvs for s in seeds]
        timed = draws if args.baseline_draws is None else draws[: args.baseline_draws]
        net, acc = ck.net, {}
        t0 = time.perf_counter()
        with torch.no_grad():
            for lv, s in timed:
                t = apply(spec, lv, base, seed=cfg.seed, draws=[s], ctx=ctx)
                clean = {n: p.detach().clone() for n, p in net.named_parameters()}
                for n, p in net.named_parameters():
                    p.copy_(t[n][0])
                step_loop = PerStepNorse(net)
                correct = 0
                for i in range(0, len(x), 128):
                    correct += (step_loop(x[i:i + 128]).argmax(-1) == y[i:i + 128]).sum().item()
                for n, p in net.named_parameters():
                    p.copy_(clean[n])
                acc[(lv, s)] = correct / len(x)
        return (time.perf_counter() - t0) * len(draws) / len(timed), acc

    short = levels[: args.short_levels]
    ta, tb = [], []
    print(f"interleaved rounds on {len(short)} levels x {args.seeds} seeds (engine A, loop B):")
    for r in range(args.rounds):
        a, b = engine(short)[0], loop(short)[0]
        ta.append(a)
        tb.append(b)
        print(f"  round {r + 1}: engine {a:6.1f} s  loop {b:6.1f} s  ratio {b / a:.2f}x")
    ratios = [b / a for a, b in zip(ta, tb)]
    print(f"  ratio of medians {statistics.median(tb) / statistics.median(ta):.2f}x "
          f"[{min(ratios):.2f}, {max(ratios):.2f}] over rounds")

    paces = [peak]
    t_engine, acc_engine = engine(levels)
    paces.append(sgemm_gflops())
    print(f"sgemm {paces[-1]:.0f} GFLOP/s between the full engine and loop runs")
    t_loop, acc_loop = loop(levels)
    paces.append(sgemm_gflops())
    note = "" if args.baseline_draws is None else f" (timed on {args.baseline_draws} draws, scaled)"
    print(f"sgemm {paces[-1]:.0f} GFLOP/s at the end")

    peak = statistics.median(paces)
    draws = len(levels) * len(seeds)
    flops = matmul_flops([ck.net.cfg.input_dim, *ck.net.cfg.hidden], x.shape[1], len(x) * draws)
    print(f"full run, per-draw loop (per-step Norse, batch 128): {t_loop:7.1f} s{note}")
    path = "compiled kernel" if native.KERNEL.library() is not None and args.kernel != "eager" else "eager"
    print(f"full run, batched engine ({path}):{' ' * (27 - len(path))}{t_engine:7.1f} s   "
          f"ratio {t_loop / t_engine:.2f}x")
    print(f"engine {throughput(flops, t_engine, peak)} (the median of before, between and after); "
          f"{len(x) * draws / t_engine:.0f} utterance-draws/s, {t_engine / (len(x) * draws) * 1e3:.3f} ms per "
          f"utterance-draw")
    drawn = apply(spec, levels[len(levels) // 2], base, seed=cfg.seed, draws=seeds, ctx=ctx)
    dens = spike_densities(ck.net.cfg, drawn, x[:256])
    print("spike densities per hidden layer (level {:.2f}, first 256 clips): {}".format(
        levels[len(levels) // 2], ", ".join(f"{d:.3f}" for d in dens)))
    first = next(iter(acc_loop))
    print(f"check: accuracy of the first draw, loop vs engine mean over seeds: "
          f"diff {abs(acc_loop[first] - acc_engine[0]):.3f}")

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
