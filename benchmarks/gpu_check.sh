#!/usr/bin/env bash
# End-to-end check on a CUDA machine: train, eval and sweep with --device cuda, compare
# with the CPU numbers of the same checkpoint, then the forward benchmark on the GPU.
# Usage: bash benchmarks/gpu_check.sh OUTDIR   (expects `robust`'s dependencies importable)
set -euo pipefail
out=${1:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore ROBUST_CACHE="$out/cache"
r() { python3 -m robustness.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
time r train --optimizer adam --epochs 3 --device cuda --out "$out/adam.pt" --quiet
time r train --optimizer ivon --epochs 2 --device cuda --out "$out/ivon.pt" --quiet
r eval --model "$out/adam.pt" --model "$out/ivon.pt" --device cuda --json --quiet > "$out/eval_cuda.json"
r eval --model "$out/adam.pt" --model "$out/ivon.pt" --device cpu --json --quiet > "$out/eval_cpu.json"
python3 - "$out" <<'PY'
import json, sys
a = json.load(open(f"{sys.argv[1]}/eval_cuda.json")); b = json.load(open(f"{sys.argv[1]}/eval_cpu.json"))
for x, y in zip(a, b):
    print(f"{x['model'].split('/')[-1]} {x['mode']}: acc cuda {x['accuracy']:.4f} cpu {y['accuracy']:.4f}  "
          f"nll cuda {x['nll']:.4f} cpu {y['nll']:.4f}")
PY
time r sweep --model "$out/adam.pt" --model "$out/ivon.pt" --noise 0.02:0.2:4 --perturbation gaussian \
  --perturbation "quantize:4+mismatch" --seeds 5 --device cuda --store "$out/sweep.db" --quiet | tail -30
time r sweep --model "$out/ivon.pt" --profile pcm-crossbar --seeds 3 --device cuda --store "$out/sweep.db" --quiet | tail -12
python3 -m benchmarks.bench_forward --device cuda --n 2048 --repeats 5
