"""The dev set's own sampling error beside a paired study's differences (docs/results.md, "Does CMI help?").

    python scripts/dev_set_error.py results/mrpc-minilm mrpc      # F1 (and accuracy) of MRPC's 408 dev pairs
    python scripts/dev_set_error.py results/sst2-minilm sst2      # accuracy of SST-2's 872 dev sentences

A paired t-test over seeds counts the seed-to-seed variation only: every run is scored on the same dev set, so a
difference "shown" is shown on that dev set, not on the task's distribution. Two figures, from the committed
runs' last epochs (the run files hold the metrics, not the predictions):
- one run's dev metric: its standard error as a sample of the task (accuracy: binomial; F1: a bootstrap over the
  confusion matrix that the run's accuracy and F1 imply for the dev set's label counts);
- a paired difference in accuracy: it is at least sqrt(k) / n, k the examples the two models classify differently,
  at least the net change |Δ|·n; the smallest standard error any pair of runs with that Δ can have.
"""
import argparse
import json
import statistics
from pathlib import Path

import numpy as np

POSITIVES = {"mrpc": (279, 408), "sst2": (444, 872)}  # positive labels in the dev set, dev examples


def last_epoch(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def f1_se(accuracy: float, f1: float, positives: int, n: int, draws: int = 20000) -> float:
    """F1's bootstrap standard error for the confusion matrix that `accuracy` and `f1` imply: with FN = P - TP and
    FP = N - TN, F1 = 2 TP / (2 TP + n (1 - accuracy)), so TP = F1 n (1 - accuracy) / (2 (1 - F1))."""
    tp = f1 * n * (1 - accuracy) / (2 * (1 - f1))
    tn = accuracy * n - tp
    cells = np.array([tp, positives - tp, n - positives - tn, tn]) / n  # TP, FN, FP, TN
    tp_, fn, fp, _ = np.random.default_rng(0).multinomial(n, cells, size=draws).T
    return float(np.std(2 * tp_ / (2 * tp_ + fn + fp)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a study's sweep folder (sweep.py --out)")
    parser.add_argument("task", choices=sorted(POSITIVES))
    args = parser.parse_args()
    positives, n = POSITIVES[args.task]
    ce = {run.name: last_epoch(run) for run in sorted((args.sweep / args.task / "ce").iterdir())}
    lam1 = {run.name.removeprefix("lam1-"): last_epoch(run)
            for run in sorted((args.sweep / args.task / "min").glob("lam1-seed*"))}
    accuracy = statistics.fmean(line["accuracy"] for line in ce.values())
    print(f"{args.task}: ce's last-epoch dev accuracy {100 * accuracy:.1f}, its dev-set standard error "
          f"{100 * (accuracy * (1 - accuracy) / n) ** 0.5:.1f} points (binomial, n {n})")
    if "f1" in next(iter(ce.values())):
        f1 = statistics.fmean(line["f1"] for line in ce.values())
        print(f"{args.task}: ce's last-epoch dev F1 {100 * f1:.1f}, its dev-set standard error "
              f"{100 * f1_se(accuracy, f1, positives, n):.1f} points (bootstrap of the implied confusion matrix)")
    for seed in sorted(ce.keys() & lam1.keys()):
        k = round(abs(lam1[seed]["accuracy"] - ce[seed]["accuracy"]) * n)
        print(f"{seed}: min λ 1 − ce accuracy {k if lam1[seed]['accuracy'] >= ce[seed]['accuracy'] else -k:+d} of "
              f"{n}; the paired difference's dev-set standard error is at least {100 * k ** 0.5 / n:.2f} points")


if __name__ == "__main__":
    main()
