#!/usr/bin/env bash
# Short real runs whose files must not change with a refactor:
#   bash scripts/same_behaviour.sh CHECKOUT OUT    (a checkout of the code to run, e.g. a git worktree at a commit)
# then python scripts/same_files.py OUT_BEFORE OUT_AFTER. Needs ../shared beside CHECKOUT.
set -euo pipefail
out=$(realpath -m "$2"); mkdir -p "$out"; cd "$1"
export OMP_NUM_THREADS=1  # one thread: a CPU run repeats bit for bit
m=$(realpath ../shared/models/all-MiniLM-L6-v2); g=$(realpath ../shared/glue)
c=(--task cola --model $m --data-dir $g --max-train-samples 256 --max-eval-samples 128 --epochs 2 --batch-size 32 --lr 5e-5 --log-every 2)
python train.py "${c[@]}" --mode min --lam 1 --out $out/min-epoch > /dev/null
python train.py "${c[@]}" --mode max --lam 1 --out $out/max-batch > /dev/null
python train.py "${c[@]}" --mode min --lam 1 --centroids online --out $out/min-online > /dev/null
python train.py "${c[@]}" --mode max --lam 1 --centroids frozen --out $out/max-frozen > /dev/null
python train.py "${c[@]}" --mode min --lam 1 --padded --out $out/min-padded > /dev/null
python train.py --task mrpc --model $m --data-dir $g --max-train-samples 128 --max-eval-samples 64 --epochs 1 --mode min --lam 1 --log-every 2 --out $out/mrpc-min > /dev/null
python distill.py --task cola --teacher $out/max-batch/best --student-layers 0,2,4 --data-dir $g --max-train-samples 256 --max-eval-samples 128 --epochs 2 --log-every 2 --out $out/student > /dev/null
python predict.py --model $out/min-epoch/best --task cola --data-dir $g --split dev --out $out/predict > /dev/null
python predict.py --model $out/student/best --task cola --data-dir $g --split dev --padded --out $out/predict-student-padded > /dev/null
echo done
