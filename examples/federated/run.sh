#!/usr/bin/env bash
# The federated retraining experiment of docs/results.md ("Federated retraining"): for each
# label skew, the ways of training the access and edge tiers (pooled, fedavg, serving; at the
# stronger skew also serving with one tier weighted, to tell the two apart) run the same loop
# on the running network, round by round, and plot.py sets them side by side.
#
#   make build federated-env && examples/federated/run.sh [OUT_DIR]   (about 70 minutes)
#
# OUT_DIR defaults to docs/results/federated; working files go to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/results/federated}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rounds=${ROUNDS:-8}
python=.venv-fed/bin/python

for alpha in 0.5 0.1; do
  variants=(pooled fedavg serving)
  if [ "$alpha" = 0.1 ]; then variants+=(serving-access serving-edge); fi
  runs=()
  for variant in "${variants[@]}"; do
    mode=${variant%%-*}
    tiers=access,edge
    if [ "$variant" != "$mode" ]; then tiers=${variant#*-}; fi
    run="$out/alpha-$alpha/$variant"
    $python examples/federated/federate.py --mode "$mode" --serving-tiers "$tiers" \
      --rounds "$rounds" --alpha "$alpha" --work "$work/$alpha-$variant" --out "$run"
    runs+=("$run")
  done
  $python examples/federated/plot.py --out "$out/alpha-$alpha" \
    --title "5 access nodes, Dirichlet label skew alpha=$alpha, forward budget 30% to the edge, 5% to the cloud" \
    "${runs[@]}"
done
