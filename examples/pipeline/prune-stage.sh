#!/usr/bin/env bash
# One pipeline stage: run a recipe, show its summary, and fail the job when the gate fails.
# The GitHub Actions and GitLab CI examples beside this file call it; so does onnxprune's own
# test suite (tests/test_recipe.py), which proves these steps work.
#
#   examples/pipeline/prune-stage.sh RECIPE [OUT]
#
# Exit codes (onnxprune run's): 0 every gate passed, 3 a gate failed (all outputs written,
# the reason on stderr), 2 a bad recipe, model or data, 1 a bug.
set -euo pipefail
recipe=${1:?usage: prune-stage.sh RECIPE [OUT]}
out=${2:-}
args=(run "$recipe")
if [ -n "$out" ]; then
    args+=(--out "$out")
fi
status=0
onnxprune "${args[@]}" || status=$?
if [ "$status" -eq 3 ]; then
    echo "prune stage: the pruned model did not pass its gate; not shipping it" >&2
fi
exit "$status"
