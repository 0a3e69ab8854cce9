"""Whether a change of protocol changes a paired study's answer, seed by seed (docs/results.md, "Does CMI help?").

    python scripts/protocol_change.py results/cola-minilm-5ep results/cola-minilm results/cola-minilm-prereg

NEW holds a study under the new protocol (e.g. 5 epochs), the OLD folders the same task's runs of the same seeds
under the old one (3 epochs, or float32 against bf16). For every seed that has the ce run and the arm's run in NEW
and in one of the OLD folders: the dev metric of each, the arm's paired difference against ce under each protocol
(best and last epoch), and the paired t-test of the differences' change (new minus old), which says whether the
new protocol moved the arm's effect; and the same for ce's own value and the arm's, at the best and the last
epoch, which say what the new protocol did to each run.
"""
import argparse
import sys
from statistics import fmean as mean
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data.tasks import primary_metric  # noqa: E402
from study.markdown import table  # noqa: E402
from study.reading import read_sweep  # noqa: E402
from study.stats import paired_test  # noqa: E402
from study.sweeps import num  # noqa: E402


def by_seed(folders: list[Path], task: str, arms: dict[str, float | None]) -> dict:
    """{mode: {seed: RunFiles}} of the finished runs of each arm (mode -> λ, None: any) in the sweep folders, each
    folder read once; a seed in a later folder replaces the same seed of an earlier one."""
    found = {mode: {} for mode in arms}
    for folder in folders:
        for r, files in read_sweep(folder).runs.items():
            if r.task == task and r.mode in arms and arms[r.mode] in (None, r.lam) and not r.is_student:
                found[r.mode][r.seed] = files
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("new", type=Path, help="the sweep folder of the new protocol")
    parser.add_argument("old", type=Path, nargs="+", help="the sweep folder(s) of the old protocol, same seeds")
    parser.add_argument("--task", default="cola")
    parser.add_argument("--mode", default="min", help="the arm compared with ce (default: min)")
    parser.add_argument("--lam", type=float, default=1.0)
    args = parser.parse_args()
    metric = primary_metric(args.task)
    arms = {"ce": None, args.mode: args.lam}
    new, old = by_seed([args.new], args.task, arms), by_seed(args.old, args.task, arms)
    seeds = sorted(set(new["ce"]) & set(new[args.mode]) & set(old["ce"]) & set(old[args.mode]))
    if len(seeds) < 2:
        sys.exit(f"error: {len(seeds)} seed(s) have both runs under both protocols; 2 are needed")
    arm = f"{args.mode} λ {num(args.lam)}"

    def delta(runs, seed, last):
        return runs[args.mode][seed].value(metric, last) - runs["ce"][seed].value(metric, last)

    rows = []
    for seed in seeds:
        rows.append((seed, *(f"{100 * runs[kind][seed].value(metric):.1f}" for runs in (old, new) for kind in runs),
                     *(f"{100 * delta(runs, seed, last):+.1f}" for last in (False, True) for runs in (old, new))))
    print(f"{args.task}, dev {metric} (%) at the best epoch, and {arm} − ce of the same seed, in points:\n")
    print("\n".join(table(["seed", "ce old", f"{arm} old", "ce new", f"{arm} new", "Δ best old", "Δ best new",
                           "Δ last old", "Δ last new"], rows)))
    deltas = {last: [[delta(runs, s, last) for s in seeds] for runs in (old, new)] for last in (False, True)}
    values = {(kind, last): [[runs[kind][s].value(metric, last) for s in seeds] for runs in (old, new)]
              for kind in ("ce", args.mode) for last in (False, True)}
    lines = []
    for what, (before, after) in ((f"{arm} − ce at the best epoch", deltas[False]),
                                  (f"{arm} − ce at the last epoch", deltas[True]),
                                  *((f"{name} at the {'last' if last else 'best'} epoch", values[kind, last])
                                    for kind, name in (("ce", "ce"), (args.mode, f"{arm} itself"))
                                    for last in (False, True))):
        change = paired_test([b - a for a, b in zip(before, after)])
        moved = "moved" if change.low > 0 or change.high < 0 else "no change shown"
        sign = "+" if " − " in what else ""  # a difference of arms is signed, a value is not
        lines.append(f"- {what}: old {100 * mean(before):{sign}.1f}, new {100 * mean(after):{sign}.1f}; new − old "
                     f"{100 * change.mean:+.1f} ± {100 * change.se:.1f}, 95% interval {100 * change.low:+.1f} to "
                     f"{100 * change.high:+.1f}, p {change.p:.2g}: {moved}.")
    print(f"Over the {len(seeds)} seeds {', '.join(map(str, seeds))} (paired t-tests, two-sided):\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
