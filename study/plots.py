"""The report's plots, one pair of PNG files per task: the dev metric and the dev CMI against λ, and each arm's
paired differences against its baseline. Needs matplotlib (pip install -e ".[plot]"): pyplot() says so."""
import importlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from common.optional import optional
from study.arms import TaskRuns, median
from study.paired import DELTA, compared, paired
from study.stats import paired_test
from study.sweeps import num


def pyplot() -> ModuleType:
    """matplotlib.pyplot, drawing into files (the Agg backend), or MissingPackage saying how to install it (report.py
    asks before it reads anything)."""
    optional("matplotlib", "--plots: drawing the plots needs matplotlib, which is not installed: "
                           "pip install -e '.[plot]', or pass --no-plots").use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def plot_paired(t: TaskRuns, path: Path, delta: float = DELTA) -> bool:
    """The paired differences per arm: each seed a dot, and beside them the mean with its 95% t interval (the one
    the verdicts read), against 0 and +δ. False, drawing nothing, when no arm has a baseline to be paired with."""
    pairs = [(arm, base) for arm, base in compared(t) if arm is not base]
    if not pairs:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 + 1.3 * len(pairs)), 4.5))
    for i, (arm, base) in enumerate(pairs):
        d = [100 * x for x in paired(arm, base, t.metric)]
        ax.scatter([i - 0.12] * len(d), d, color="tab:blue", alpha=0.5, s=16)
        if len(d) > 1:
            test = paired_test(d)
            ax.errorbar([i + 0.12], [test.mean], yerr=[[test.mean - test.low], [test.high - test.mean]], fmt="o",
                        color="black", capsize=4)
    ax.axhline(0, color="gray", linestyle="--")
    ax.axhline(delta, color="tab:green", linestyle=":", label=f"δ = +{num(delta)}")
    ax.set_xticks(range(len(pairs)), [textwrap.fill(arm.label, 20) for arm, _ in pairs], fontsize=9)
    ax.set_ylabel(f"Δ dev {t.metric} (points)")
    ax.legend(loc="lower right", fontsize=8)
    baselines = " / ".join(sorted({base.label for _, base in pairs}))
    ax.set_title(f"{t.name}: each arm minus {baselines} of the same seed\n(dots: seeds; beside them: the mean and its "
                 "95% t interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_lambdas(t: TaskRuns, path: Path) -> None:
    """Dev metric and dev CMI against lambda (min and max: the median and each seed), ce as a line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label, scale in [(axes[0], t.metric, f"dev {t.metric} (%)", 100), (axes[1], "eval_cmi", "dev CMI", 1)]:
        for mode, color in (("min", "tab:blue"), ("max", "tab:red")):
            lams = list(t.lams[mode])
            if not lams:
                continue
            ax.plot(lams, [scale * median(t.lams[mode][lam], key) for lam in lams], "o-", color=color,
                    label=f"{mode} (median)")
            for lam in lams:
                values = [scale * r[key] for r in t.lams[mode][lam].values()]
                ax.scatter([lam] * len(values), values, color=color, alpha=0.3, s=12)
        if t.ce:
            ax.axhline(scale * median(t.ce, key), color="black", linestyle="--", label="ce (median)")
        ax.set_xscale("log")
        lams = sorted({lam for mode in ("min", "max") for lam in t.lams[mode]})
        ax.set_xticks(lams, [num(lam) for lam in lams])
        ax.minorticks_off()
        ax.set_xlabel("λ")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(t.name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(tasks: list[TaskRuns], folder: Path, delta: float = DELTA) -> Iterator[Path]:
    """Draw every task's plots into `folder` (made if missing), yielding each file once it is written: the λ plot
    of a task with λ runs, and the paired plot of a task with pairs (students too). An OSError (a folder that
    cannot be written) comes from the iteration, after the files written before it."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        if any(t.lams.values()):
            plot_lambdas(t, folder / f"{t.name}.png")
            yield folder / f"{t.name}.png"
        if plot_paired(t, folder / f"{t.name}-paired.png", delta):
            yield folder / f"{t.name}-paired.png"
