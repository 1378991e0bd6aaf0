#!/bin/sh
# The README's chip figures: the paper's network (Adam and IVON) and a recurrent network on each
# chip profile, across state and weight bits, and each profile's own effects swept with 10 chips.
#
#   robust train --optimizer adam --epochs 30 --out adam.pt
#   robust train --optimizer ivon --epochs 30 --out ivon.pt
#   robust train --optimizer adam --neuron rlif --hidden 128,128 --epochs 30 --out rlif.pt
#   sh examples/chip_figures.sh adam.pt ivon.pt rlif.pt chips/     # about 10 minutes on 2 cores
set -e
ADAM=$1; IVON=$2; RLIF=$3; OUT=${4:-chips}
R=${ROBUST:-robust}
mkdir -p "$OUT"
PROFILES="--chip loihi2 --chip xylo-audio(fit=arithmetic) --chip dynap-se2(fit=arithmetic)"
$R eval --model "$ADAM" --model "$IVON" --model "$RLIF" $PROFILES --json -q > "$OUT/profiles.json"
set --
for n in 6 8 10 12 14 16; do set -- "$@" --chip "fixed-point(leak=multiply,state_bits=$n)"; done
for n in 6 8 10 12 14 16; do set -- "$@" --chip "fixed-point(state_bits=$n)"; done
for m in 2 3 4 5 6 8; do set -- "$@" --chip "fixed-point(leak=multiply,weight_bits=$m,state_bits=24)"; done
$R eval --model "$ADAM" --model "$RLIF" "$@" -q > "$OUT/bits.txt"
rm -f "$OUT/chips.db"
for chip in "xylo-audio(fit=arithmetic)" loihi2; do
  $R sweep --model "$ADAM" --model "$RLIF" --chip "$chip" --perturbation bitflip \
     --noise 0,0.0001,0.0003,0.001,0.003,0.01 --seeds 10 --modes point --store "$OUT/chips.db" -q >> "$OUT/sweeps.txt"
done
$R sweep --model "$ADAM" --model "$RLIF" --chip "dynap-se2(fit=arithmetic)" \
   --perturbation "mismatch(targets=vth+tau+gain)" --noise 0,0.05,0.1,0.15,0.2 --seeds 10 --modes point \
   --store "$OUT/chips.db" -q >> "$OUT/sweeps.txt"
$R report --store "$OUT/chips.db" --out "$OUT/report" -q
