"""Best-of selection, as Tables I and II make it: what choosing the best λ or (α, T) by its median gains with no
effect at all (in the paper's unpaired design and in this study's paired one), and how the λ chosen on some seeds
fares against ce on the seeds the choice did not see."""
import statistics

from study.arms import TaskRuns
from study.formatting import pct, pm, seed_list
from study.stats import DRAWS, paired_selection_gain, selection_gain
from study.sweeps import TEACHERS, num

CHOOSING_SEEDS = 3  # the held-out check chooses λ on as many seeds as the paper has, and tests it on the rest


def common_seeds(t: TaskRuns) -> list[int]:
    """The seeds that ce and every min λ share."""
    return sorted(set(t.ce).intersection(*t.lams["min"].values()))


def selection_line(t: TaskRuns) -> list[str]:
    """What Table I's best-of selection gains with no effect at all in the paper's unpaired design: independent
    medians with the seeds' spread."""
    k, counts = len(t.lams["min"]), sorted(len(seeds) for seeds in t.lams["min"].values())
    if k < 2:
        return [f"- {t.name}: none: {k} λ, so no choice is made (the Δ is that of the one λ's median)."] if k else []
    if len(t.ce) < 2:
        return [f"- {t.name}: not estimated yet: the seeds' spread needs at least 2 ce seeds ({len(t.ce)} finished)."]
    sd = statistics.stdev(r[t.metric] for r in t.ce.values())
    n = counts[0]  # with unequal seed counts the fewest, which gains the most
    fewest = "" if counts[0] == counts[-1] else f" (the fewest of any λ, which have {counts[0]}–{counts[-1]})"
    gain = selection_gain(k, n, sd)
    return [f"- {t.name}, the paper's unpaired design: choosing the best of {k} λ by the median of {n} seeds{fewest} "
            f"gains {100 * gain:+.1f} points over one median with no effect at all (ce seeds' sd {100 * sd:.1f}, "
            f"normal model, {DRAWS:,} draws)."]


def paired_selection_line(t: TaskRuns) -> list[str]:
    """What the same selection gains with no effect in this study's paired design, resampled from its own values
    (the arms share each seed's effect), under two counterfactuals: no λ has any effect; only the λ Table I picks
    has none, the others keep their observed effects (a λ that clearly hurts then rarely wins the selection)."""
    k, seeds = len(t.lams["min"]), common_seeds(t)
    if k < 2:
        return []
    if len(seeds) < 2:
        return [f"- {t.name}, this study's paired design: not estimated: ce and every λ share {len(seeds)} seed(s)."]
    lams = list(t.lams["min"])
    values = [[t.lams["min"][lam][s][t.metric] for s in seeds] for lam in lams]
    ce = [t.ce[s][t.metric] for s in seeds]
    every, chosen = paired_selection_gain(ce, values), paired_selection_gain(ce, values, null=[lams.index(t.best_lam)])
    return [f"- {t.name}, this study's paired design, resampled from its own values on the {len(seeds)} seeds ce and "
            f"every λ share (seeds drawn with replacement, the same draw for every arm, {DRAWS:,} draws; an arm assumed "
            "to have no effect is shifted so that its median alone gains 0 over ce's): if no λ had any effect, "
            f"{100 * every:+.1f} points; if λ {num(t.best_lam)} (Table I's pick) had none and the other λ their "
            f"observed effects, {100 * chosen:+.1f}."]


def held_out_lines(t: TaskRuns) -> list[str]:
    """λ chosen on the first seeds by the median of each λ (Table I's rule) and by the mean paired difference
    against ce, each then compared with ce on the seeds the choice did not see."""
    lams, seeds = t.lams["min"], common_seeds(t)
    if len(lams) < 2:
        return []
    if len(seeds) <= CHOOSING_SEEDS:
        return [f"- {t.name}: no held-out check: ce and every λ share {len(seeds)} seeds, {CHOOSING_SEEDS} to choose "
                "on and at least one to test on are needed."]
    choose = seeds[:CHOOSING_SEEDS]
    rules = {"the median of each λ": (lambda lam: statistics.median(lams[lam][s][t.metric] for s in choose), pct),
             "the mean paired difference against ce": (lambda lam: statistics.fmean(
                 lams[lam][s][t.metric] - t.ce[s][t.metric] for s in choose), lambda x: f"{100 * x:+.1f}")}
    lines = []
    for rule, (score, text) in rules.items():
        best = max(lams, key=score)
        rest = [s for s in sorted(lams[best]) if s in t.ce and s not in choose]
        d = [lams[best][s][t.metric] - t.ce[s][t.metric] for s in rest]
        scores = ", ".join(f"λ {num(lam)} {text(score(lam))}" for lam in lams)
        lines.append(f"- {t.name}, by {rule} on seeds {seed_list(choose)} ({scores}): λ {num(best)}; against ce on "
                     f"seeds {seed_list(rest)}: " + ", ".join(f"{100 * x:+.1f}" for x in d) + f" (mean {pm(d)}).")
    return lines


def student_selection_line(t: TaskRuns) -> list[str]:
    """What Table II's Δ gains with no effect: the best of the max teacher's (α, T) against the best of the ce
    teacher's, each a median of the students' seeds; the spread is that of the ce teacher's students."""
    k = {kind: len(t.students[kind]) for kind in TEACHERS}
    if not all(k.values()):
        missing = " and ".join(kind for kind in TEACHERS if not k[kind])
        return [f"- {t.name}: no Δ: this sweep holds no student of a {missing} teacher."]
    if max(k.values()) == 1:
        return [f"- {t.name}: one (α, T) per teacher, no selection: the Δ is a plain difference of medians."]
    per_setting = [statistics.stdev(r[t.metric] for r in seeds.values())
                   for seeds in t.students["ce"].values() if len(seeds) > 1]
    if not per_setting:
        return [f"- {t.name}: not estimated yet: the seeds' spread needs at least 2 seeds of a ce teacher's student."]
    sd = statistics.fmean(per_setting)
    n = len({s for seeds in t.students["max"].values() for s in seeds})
    gain = selection_gain(k["max"], n, sd, k_baseline=k["ce"])
    return [f"- {t.name}: the best of {k['max']} (α, T) against the best of {k['ce']}, medians of {n} seeds: "
            f"{100 * gain:+.1f} points with no effect at all (sd {100 * sd:.1f}, the mean over (α, T) of the ce "
            f"teacher's students' sd; normal model, {DRAWS:,} draws)."]
