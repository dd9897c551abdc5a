# Source me: the environment of a GPU run over a bare copy of the tree (see docs/gpu.md).
# Sets MAMLCONV_DATA / MAMLCONV_CACHE (default: the ignored .gpu/ folder) and, when mamlconv
# is not installed, a PYTHONPATH folder of links that mirrors the installed package layout
# (pyproject's package-dir), so `python3 -m mamlconv...` and the benchmarks import this tree
# (MAMLCONV_LINK_SITE=1 forces the links even where mamlconv is installed: the tests).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
export MAMLCONV_DATA=${MAMLCONV_DATA:-$ROOT/.gpu/data}
export MAMLCONV_CACHE=${MAMLCONV_CACHE:-$ROOT/.gpu/cache}
export PYTHONUNBUFFERED=1
if [ -n "${MAMLCONV_LINK_SITE:-}" ] || ! "$PYTHON" -c "import mamlconv.experiments" 2>/dev/null; then
    SITE=${TMPDIR:-/tmp}/mamlconv-site-$$
    mkdir -p "$SITE/mamlconv"
    for f in "$ROOT"/src/mamlconv/*; do ln -sfn "$f" "$SITE/mamlconv/$(basename "$f")"; done
    for pkg in theory numerics experiments paper_checks; do
        ln -sfn "$ROOT/$pkg" "$SITE/mamlconv/$pkg"
    done
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
