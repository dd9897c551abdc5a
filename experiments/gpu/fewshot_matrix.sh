#!/usr/bin/env bash
# The few-shot evidence (Fig. 4b/4c) in one time-boxed, resumable run; see docs/gpu.md.
#
#   experiments/gpu/fewshot_matrix.sh [PRESET] [DEADLINE_S] [OPTIONS of mamlconv readings fewshot]
#
# PRESET: paper (default) | tiny (the CPU smoke run of the tests). DEADLINE_S: seconds of
# training before the run stops itself (default 510, inside a 9-minute command).
# Environment: PYTHON (default python3), MAMLCONV_DATA (data root; default .gpu/data),
# MAMLCONV_CACHE (default .gpu/cache), MATRIX_OUT (state folder; default .gpu/out/matrix),
# OUT (if set, a tarball of the state folder is left there), MAMLCONV_COMMIT (the commit of a
# tree copied without .git, recorded in every result file).
set -euo pipefail
PRESET=${1:-paper}
DEADLINE=${2:-510}
shift $(($# < 2 ? $# : 2))
# shellcheck source=experiments/gpu/env.sh
source "$(dirname "$0")/env.sh"
MATRIX_OUT=${MATRIX_OUT:-$ROOT/.gpu/out/matrix}

pack() {
    if [ -n "${OUT:-}" ] && [ -d "$MATRIX_OUT" ]; then
        tar czf "$OUT/fewshot_matrix.tgz" -C "$MATRIX_OUT" .
    fi
}
trap pack EXIT

"$PYTHON" -m mamlconv readings fewshot --preset "$PRESET" --out "$MATRIX_OUT" \
    --deadline "$DEADLINE" "$@"
