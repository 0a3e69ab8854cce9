#!/usr/bin/env bash
# The paired-seed CoLA study (docs/results.md, "Does CMI help?"): real CoLA, all-MiniLM-L6-v2, lr 5e-5, batch 32,
# 3 epochs, no warm-up, seeds 0-4. Seed-major, so that an interrupted study still holds complete pairs.
# Run it from a git worktree at a fixed commit; re-running skips finished runs and resumes half-done ones.
#   bash scripts/cola_study.sh [SEEDS]      (default: 0 1 2 3 4)
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--tasks cola --stage train --epochs 3 --lr 5e-5 --batch-size 32 --warmup-ratio 0
        --model ../shared/models/all-MiniLM-L6-v2 --data-dir ../shared/glue)
for seed in ${1:-0 1 2 3 4}; do
  # part A: ce, and min-CMI at lambda 1, 10, 100 (pooled h_s, tau 1, epoch centroids)
  python sweep.py --out results/cola-minilm --modes ce,min --lams 1,10,100 --seeds "$seed" "${common[@]}"
  # part A: min-CMI lambda 1 on the raw last-layer [CLS] state (the paper's literal h_s)
  python sweep.py --out results/cola-minilm-cls --modes min --lams 1 --seeds "$seed" --cmi-feature cls "${common[@]}"
done
for seed in ${1:-0 1 2 3 4}; do
  # part B: max-CMI teachers at lambda 1, 10 (batch centroids)
  python sweep.py --out results/cola-minilm --modes max --lams 1,10 --seeds "$seed" "${common[@]}"
done
