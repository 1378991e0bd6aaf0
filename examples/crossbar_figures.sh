#!/bin/sh
# The README's crossbar figures: the paper's network (IVON, with BMA and its equal-compute chips
# control) and a recurrent network (Adam, with the chips control) read out of ReRAM crossbar
# arrays, with 10 chips per level: accuracy and NLL against ADC bits, wire resistance and array
# size; then what IR drop costs at each network's measured spike rates.
#
#   robust train --optimizer ivon --epochs 30 --out ivon.pt
#   robust train --optimizer adam --neuron rlif --hidden 128,128 --epochs 30 --out rlif.pt
#   sh examples/crossbar_figures.sh ivon.pt rlif.pt xbar/     # about an hour on 2 cores
set -e
IVON=$1; RLIF=$2; OUT=${3:-xbar}
R=${ROBUST:-robust}
PY=${PYTHON:-python}
mkdir -p "$OUT"
rm -f "$OUT/xbar.db" "$OUT/sweeps.txt" "$OUT/ir_drop.txt"
ARRAY="g_min=1,g_max=40,prog=0.025"  # the reram-array profile's devices
for m in "$IVON mean,chips,bma" "$RLIF point,chips"; do
  set -- $m
  $R sweep --model "$1" --profile reram-array --bits 8,6,5,4,3 --seeds 10 --modes "$2" --mc-samples 3 \
     --store "$OUT/xbar.db" -q >> "$OUT/sweeps.txt"
done
for m in "$IVON mean" "$RLIF point"; do
  set -- $m
  $R sweep --model "$1" --perturbation "crossbar-wire(rows=256,cols=256,$ARRAY,adc=8)" --noise 0,0.5,1,2 \
     --seeds 10 --modes "$2" --store "$OUT/xbar.db" -q >> "$OUT/sweeps.txt"
  $R sweep --model "$1" --perturbation "crossbar-size($ARRAY,adc=8,wire=1)" --noise 32,64,128,256 \
     --seeds 10 --modes "$2" --store "$OUT/xbar.db" -q >> "$OUT/sweeps.txt"
done
$R report --store "$OUT/xbar.db" --out "$OUT/report" -q
for model in "$IVON" "$RLIF"; do
  $PY examples/ir_drop_cost.py "$model" --wire 0.5,1,2 --examples 32 >> "$OUT/ir_drop.txt"
done
