#!/usr/bin/env bash
# The paired-seed MRPC study (pre-registered in results/PREREGISTRATION.md): real MRPC, all-MiniLM-L6-v2, the CoLA study's
# protocol (lr 5e-5, batch 32, 3 epochs, no warm-up; best epoch by F1). Part A: ce, min-CMI lambda 1 and 10;
# part B: max-CMI lambda 1 teachers (batch centroids), then from the ce and the max teacher of each seed a
# 3-layer DistilBERT student (layers 0,2,4, alpha 0.5, T 2, 5 epochs, the teacher's seed), in the sweep layout
# so that report.py pairs student-max with student-ce of the same seed. Seed-major: an interrupted study still
# holds complete pairs; re-running skips finished runs and resumes half-done ones.
#   bash scripts/mrpc_study.sh [SEEDS [FLAGS...]]   (default: 0 1 2 3 4; FLAGS go to every train.py and distill.py
#                                                   run, e.g. --amp off --compile off for float32 on a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-0 1 2 3 4}; shift || true
extra=("$@")
common=(--epochs 3 --lr 5e-5 --batch-size 32 --warmup-ratio 0 --model ../shared/models/all-MiniLM-L6-v2
        --data-dir ../shared/glue "${extra[@]}")
student() {  # TEACHER_RUN OUT SEED
  if [ -f "$2/results.json" ]; then return; fi
  resume=(); if [ -f "$2/args.json" ]; then resume=(--resume); fi  # started: continue it
  python distill.py --task mrpc --student-layers 0,2,4 --alpha 0.5 --temperature 2 --epochs 5 --lr 5e-5 \
    --batch-size 32 --warmup-ratio 0 --data-dir ../shared/glue --teacher "$1/best" --seed "$3" --out "$2" "${resume[@]}" "${extra[@]}"
}
for seed in $seeds; do
  python sweep.py --out results/mrpc-minilm --tasks mrpc --stage train --modes ce,min --lams 1,10 --seeds "$seed" \
    "${common[@]}"
done
for seed in $seeds; do
  python sweep.py --out results/mrpc-minilm --tasks mrpc --stage train --modes max --lams 1 --seeds "$seed" \
    "${common[@]}"
  for kind in ce max; do
    teacher=results/mrpc-minilm/mrpc/ce/seed$seed; [ "$kind" = max ] && teacher=results/mrpc-minilm/mrpc/max/lam1-seed$seed
    student "$teacher" "results/mrpc-minilm-students/mrpc/student-$kind/alpha0.5-T2-seed$seed" "$seed"
  done
done
