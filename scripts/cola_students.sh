#!/usr/bin/env bash
# Part B of the paired-seed CoLA study (docs/results.md, "Does CMI help?"): from every teacher of every seed (the ce runs
# of part A, max-CMI lambda 1 and 10) a 3-layer DistilBERT student by layer copy (0,2,4), alpha 0.5, T 2,
# 5 epochs, lr 5e-5, batch 32, no warm-up, the teacher's seed. One sweep-layout folder per max lambda, so that
# report.py pairs student-max with student-ce of the same seed:
#   results/cola-minilm-students/cola/student-{ce,max}/alpha0.5-T2-seedS   (max: lambda 1)
#   results/cola-minilm-students-lam10/cola/student-max/alpha0.5-T2-seedS
# A teacher not finished yet (no results.json and best/ yet) is come back to: each pass runs every student whose
# teacher is ready, and the script ends when every student has finished.
#   bash scripts/cola_students.sh [TEACHERS_SWEEP] [SEEDS]   (default: results/cola-minilm, 0 1 2 3 4)
set -euo pipefail
cd "$(dirname "$0")/.."
teachers=${1:-results/cola-minilm}
common=(--task cola --student-layers 0,2,4 --alpha 0.5 --temperature 2 --epochs 5 --lr 5e-5 --batch-size 32
        --warmup-ratio 0 --data-dir ../shared/glue)
student() {  # TEACHER_RUN OUT SEED; sets waiting=1 when the teacher is not ready
  if [ -f "$2/results.json" ]; then return; fi
  if [ ! -f "$1/results.json" ] || [ ! -f "$1/best/config.json" ]; then waiting=1; return; fi
  resume=(); if [ -f "$2/args.json" ]; then resume=(--resume); fi  # started: continue it
  echo "student of $1 -> $2"
  python distill.py "${common[@]}" --teacher "$1/best" --seed "$3" --out "$2" "${resume[@]}"
}
while :; do
  waiting=0
  for seed in ${2:-0 1 2 3 4}; do
    student "$teachers/cola/ce/seed$seed" results/cola-minilm-students/cola/student-ce/alpha0.5-T2-seed$seed "$seed"
    student "$teachers/cola/max/lam1-seed$seed" results/cola-minilm-students/cola/student-max/alpha0.5-T2-seed$seed "$seed"
    student "$teachers/cola/max/lam10-seed$seed" results/cola-minilm-students-lam10/cola/student-max/alpha0.5-T2-seed$seed "$seed"
  done
  if [ "$waiting" = 0 ]; then break; fi
  sleep 60
done
