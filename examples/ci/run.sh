#!/usr/bin/env bash
# The robustness gate as a CI job runs it: train a tiny model, sweep it on a slice of the
# test set, gate with `robust check`. About 1.5 minutes on 2 cores. Usage: run.sh [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-ci-robustness}"
mkdir -p "$work"
cd "$work"
robust train --optimizer adam --epochs 6 --hidden 64,64 --seed 0 --out model.pt --quiet
robust sweep --model model.pt --noise 0.05,0.1 --seeds 3 --limit 200 --store results.db --quiet > sweep.txt
robust check --store results.db --policy "$here/robust.toml" --junit junit.xml --markdown summary.md
