#!/usr/bin/env bash
# Everything CI runs. Order: sync gates, then one pytest session holding the notebooks (nbdev's
# runner), the plain tests (CLI, end-to-end), the tutorials in smoke mode (papermill) and the
# offline docs smoke test. Per-item times print at the end (--durations).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

state() { { git status --porcelain --untracked-files=all; git diff; } | sha256sum; }
before=$(state)
$BIN/nbdev-export
if [ "$(state)" != "$before" ]; then
  git status --short; echo "FAIL: nbdev-export changed the tree: notebooks and package are out of sync (run nbdev-export and commit)"; exit 1
fi
$BIN/nbdev-clean
if [ "$(state)" != "$before" ]; then
  git status --short; echo "FAIL: nbdev-clean changed the tree: notebooks are not clean (run nbdev-clean and commit)"; exit 1
fi
echo "sync gates passed: nbdev-export and nbdev-clean leave the tree unchanged"

# Lint: lines <= 120 characters, one statement per line, no unused or undefined names (config in pyproject.toml);
# markdown prose lines <= 120 characters too (ruff reads code cells only).
$BIN/ruff check --quiet . || { echo "FAIL: ruff check (fix the findings above)"; exit 1; }
$BIN/ruff format --quiet --check nbs tutorial tools tests bench || { echo "FAIL: ruff format --check (run ruff format)"; exit 1; }
$BIN/python tools/markdown_lines.py || { echo "FAIL: markdown prose lines over 120 characters (python tools/markdown_lines.py --fix)"; exit 1; }
echo "lint passed: ruff check, ruff format --check and markdown line lengths"

# 2 cores: two pytest workers, one BLAS/torch thread each.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} MPLBACKEND=Agg
exec $BIN/python -m pytest tests -n ${FJ_TEST_WORKERS:-2} --durations=0 --timeout=1500 -p no:cacheprovider "$@"
