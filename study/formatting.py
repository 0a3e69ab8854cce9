"""How the report writes its numbers: metrics as percentages, differences in points, CMI, seeds, and a paired
test's cells and verdict."""
from study.stats import PairedTest, mean_se, verdict


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def diff(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{100 * (a - b):+.1f}"


def cmi(x: float) -> str:
    return f"{x:.3g}"


def pm(values: list[float], scale: float = 100) -> str:
    mean, se = mean_se(values)
    return f"{scale * mean:+.1f}" + ("" if se is None else f" ± {scale * se:.1f}")


def seed_list(seeds) -> str:
    """Seeds with their runs of three or more as ranges: 0–4, 7, 8, 11–14."""
    runs = []
    for seed in sorted(seeds):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)) for run in runs)


def seed_values(seeds: dict[int, dict], key: str) -> str:
    return ", ".join(f"{seed}: {pct(results[key])}" for seed, results in sorted(seeds.items()))


def interval(test: PairedTest) -> str:
    return f"{100 * test.low:+.1f} to {100 * test.high:+.1f}"


def test_cells(test: PairedTest | None) -> tuple[str, str, str]:
    """mean ± se, the 95% confidence interval and p, in points; "–" without a test (fewer than 2 pairs)."""
    if test is None:
        return "–", "–", "–"
    p = "< 0.001" if test.p < 0.001 else f"{test.p:.2g}"
    return f"{100 * test.mean:+.1f} ± {100 * test.se:.1f}", interval(test), p


def verdict_text(test: PairedTest | None, delta: float) -> str:
    if test is None:
        return "not estimated (fewer than 2 pairs)"
    return f"{verdict(test.low, test.high, delta / 100)} ({interval(test)})"
