"""Tables I and II of arXiv 2502.11258 from a sweep folder (written by sweep.py), as Markdown on stdout.

    python report.py sweeps/glue > report.md
    python report.py sweeps/glue --plots figures   # with matplotlib: dev metric and dev CMI against lambda

Every number is a run's best epoch (by the task's dev metric) from its results.json; a setting's value is
the median over its seeds. Table I: plain fine-tuning (ce) against min-CMI fine-tuning at its best lambda,
the lambda with the highest median dev metric. Table II: the DistilBERT students of the ce teacher and of
the max-CMI teacher, each at its best (alpha, T). Behind each choice, the table of every setting with each
seed's value, and which teachers were selected and why. Metrics print as percentages, like the paper.
"""
import argparse
import json
import statistics
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmi.runfiles import TrainingError
from cmi.selection import select_teacher
from data.tasks import primary_metric
from harness.markdown import table
from harness.sweeps import (TEACHERS, TRAIN_MODES, Run, best_ce_run, finished, num, own_tasks_of, parse_folder,
                            results_of, task_order)

try:  # optional: pip install -e ".[plot]"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

TRAIN_SETTINGS = ("model", "epochs", "batch_size", "lr", "max_train_samples", "cmi_scale", "cmi_feature", "tau")
STUDENT_SETTINGS = ("epochs", "batch_size", "lr", "max_train_samples", "student_layers", "student")


# -----------------------------------------------------------------------------
# reading a sweep


def load_runs(sweep: Path) -> dict[Run, dict]:
    """The finished runs of a sweep folder: Run -> its results.json (folders not named by sweep.py are ignored)."""
    runs, own = {}, own_tasks_of(sweep)
    for path in sorted(sweep.glob("**/results.json")):
        run = parse_folder(path.parent.relative_to(sweep).as_posix(), own)
        if run is not None and finished(path.parent):  # a damaged results.json: listed as unfinished
            runs[run] = results_of(path.parent)
    return runs


def unfinished(sweep: Path) -> list[str]:
    """The run folders that were started but have no readable results.json yet."""
    folders = (p.parent.relative_to(sweep).as_posix() for p in sweep.glob("**/args.json"))
    own = own_tasks_of(sweep)
    return sorted(f for f in folders if parse_folder(f, own) and not finished(sweep / f))


def seeds_by_setting(runs: dict[Run, dict], setting) -> dict:
    """{setting(run): {seed: results}}, settings in the grid's order."""
    table = {}
    for run in sorted(runs, key=Run.sort_key):
        table.setdefault(setting(run), {})[run.seed] = runs[run]
    return table


def median(seeds: dict[int, dict], key: str) -> float:
    return statistics.median(results[key] for results in seeds.values())


def best_setting(table: dict, metric: str):
    """The setting with the highest median dev metric (ties: the first in sorted order); None if empty."""
    return max(table, key=lambda s: median(table[s], metric), default=None)


# -----------------------------------------------------------------------------
# Markdown


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def diff(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{100 * (a - b):+.1f}"


def cmi(x: float) -> str:
    return f"{x:.3g}"


def seed_values(seeds: dict[int, dict], key: str) -> str:
    return ", ".join(f"{seed}: {pct(results[key])}" for seed, results in sorted(seeds.items()))


def settings_line(results: list[dict], keys: tuple[str, ...]) -> str:
    """The run arguments `keys`, one value each; several values are flagged (a sweep run with other options)."""
    parts = []
    for key in keys:
        values = sorted({json.dumps(r["args"].get(key)) for r in results})
        if values != ["null"]:
            mixed = " (MIXED: runs with other options)" if len(values) > 1 else ""
            parts.append(f"{key} {' / '.join(values)}{mixed}")
    return ", ".join(parts)


class Task:
    """A task's runs grouped by setting, and the choices Tables I and II make from them."""

    def __init__(self, name: str, runs: dict[Run, dict], sweep: Path, own_files: bool = False):
        self.name, self.metric, self.sweep = name, primary_metric(name, own_files), sweep
        mine = {r: v for r, v in runs.items() if r.task == name}
        self.runs = {mode: {r: v for r, v in mine.items() if r.mode == mode} for mode in TRAIN_MODES}
        self.ce = seeds_by_setting(self.runs["ce"], lambda r: None).get(None, {})
        self.lams = {mode: seeds_by_setting(self.runs[mode], lambda r: r.lam) for mode in ("min", "max")}
        self.best_lam = best_setting(self.lams["min"], self.metric)
        self.students = {kind: seeds_by_setting({r: v for r, v in mine.items() if r.teacher == kind},
                                                lambda r: (r.alpha, r.temperature)) for kind in TEACHERS}
        self.best_student = {kind: best_setting(t, self.metric) for kind, t in self.students.items()}
        # the teachers as sweep.py chooses them, and those the students were distilled from (their --teacher)
        self.chosen = {kind: None for kind in TEACHERS}
        self.selection, self.selection_error = None, None
        if self.runs["ce"]:
            self.chosen["ce"] = best_ce_run(sweep / name / "ce", self.metric)
        if self.runs["max"]:
            try:
                self.selection = select_teacher(sweep / name / "max", name, self.metric, need_model=False)
                self.chosen["max"] = self.selection.chosen.run
            except TrainingError as e:
                self.selection_error = str(e)
        self.used = {kind: sorted({Path(v["args"]["teacher"]).parent for r, v in mine.items()
                                   if r.teacher == kind and v["args"].get("teacher")}) for kind in TEACHERS}

    def teacher_value(self, kind: str) -> float | None:
        """The dev metric of the teacher of `kind`: of the teachers its students used (the median when each seed
        had its own, as in a paired study), else of the one chosen now."""
        runs = [run for run in self.used[kind] or [self.chosen[kind]] if run is not None and finished(run)]
        return statistics.median(results_of(run)[self.metric] for run in runs) if runs else None

    def ce_median(self) -> float | None:
        return median(self.ce, self.metric) if self.ce else None

    def min_median(self) -> float | None:
        return median(self.lams["min"][self.best_lam], self.metric) if self.best_lam is not None else None

    def student_median(self, kind: str) -> float | None:
        best = self.best_student[kind]
        return median(self.students[kind][best], self.metric) if best is not None else None


def table_one(tasks: list[Task]) -> list[str]:
    rows = [(t.name, t.metric, pct(t.ce_median()), pct(t.min_median()),
                "–" if t.best_lam is None else num(t.best_lam), diff(t.min_median(), t.ce_median())) for t in tasks]
    return table(["task", "metric", "CE", "min-CMI", "best λ", "Δ (min − CE)"], rows)


def table_two(tasks: list[Task]) -> list[str]:
    def best(t, kind):
        setting = t.best_student[kind]
        return "–" if setting is None else f"{num(setting[0])}, {num(setting[1])}"
    rows = [(t.name, t.metric, pct(t.teacher_value("ce")), pct(t.student_median("ce")), best(t, "ce"),
                pct(t.teacher_value("max")), pct(t.student_median("max")), best(t, "max"),
                diff(t.student_median("max"), t.student_median("ce"))) for t in tasks]
    return table(["task", "metric", "CE teacher", "its student", "α, T", "max-CMI teacher", "its student", "α, T",
                  "Δ (students)"], rows)


def lambda_table(t: Task) -> list[str]:
    rows = []
    if t.ce:
        rows.append(("ce", "–", pct(median(t.ce, t.metric)), seed_values(t.ce, t.metric),
                        cmi(median(t.ce, "eval_cmi"))))
    for mode in ("min", "max"):
        for lam, seeds in t.lams[mode].items():
            mark = " ← best" if mode == "min" and lam == t.best_lam else ""
            rows.append((mode, num(lam), pct(median(seeds, t.metric)) + mark, seed_values(seeds, t.metric),
                            cmi(median(seeds, "eval_cmi"))))
    header = ["run", "λ", "median", "seeds", "dev CMI (median)"]
    return [f"### {t.name}: dev {t.metric} (%) by λ", ""] + table(header, rows)


def teacher_section(t: Task) -> list[str]:
    def rel(path: Path) -> str:
        return f"`{path.relative_to(t.sweep) if path.is_relative_to(t.sweep) else path}`"

    lines = [f"### {t.name}: teachers", ""]
    if t.chosen["ce"]:
        value = results_of(t.chosen["ce"])[t.metric]
        lines.append(f"- CE teacher: {rel(t.chosen['ce'])}, dev {t.metric} {pct(value)}: the highest of "
                     f"{len(t.runs['ce'])} ce runs.")
    if t.selection_error:
        lines.append(f"- max-CMI teacher: none, {t.selection_error}")
    if t.selection:
        c = t.selection.chosen
        lines.append(f"- max-CMI teacher: {rel(c.run)}, dev {t.metric} / dev CMI = {c.metric:.4g} / {c.eval_cmi:.4g} = "
                     f"{c.ratio:.4g}: the highest ratio of {len(t.selection.candidates)} max runs (the paper's rule).")
        lines += [f"- note: {note}" for note in t.selection.notes]
    for kind in TEACHERS:
        if t.used[kind]:
            changed = t.used[kind] != [t.chosen[kind]]
            differs = ("" if not changed else " (teachers from outside this sweep folder)" if t.chosen[kind] is None
                       else " (not the teacher chosen now: the sweep folder changed since)")
            lines.append(f"- the students of the {kind} teacher were distilled from "
                         + ", ".join(map(rel, t.used[kind])) + differs + ".")
    lines.append("")
    if t.selection:
        rows = [(rel(c.run), pct(c.metric), cmi(c.eval_cmi), f"{c.ratio:.4g}" + (" ← selected" if i == 0 else ""))
                for i, c in enumerate(t.selection.candidates)]
        lines += table(["max run", f"dev {t.metric} (%)", "dev CMI", "ratio"], rows)
    return lines


def student_table(t: Task) -> list[str]:
    rows = []
    for kind in ("ce", "max"):
        for (alpha, temperature), seeds in t.students[kind].items():
            mark = " ← best" if (alpha, temperature) == t.best_student[kind] else ""
            rows.append((kind, num(alpha), num(temperature), pct(median(seeds, t.metric)) + mark,
                            seed_values(seeds, t.metric)))
    return [f"### {t.name}: students, dev {t.metric} (%) by teacher, α and T", ""] + \
        table(["teacher", "α", "T", "median", "seeds"], rows)


def load_tasks(sweep: Path, runs: dict[Run, dict]) -> list[Task]:
    own = own_tasks_of(sweep)
    return [Task(name, runs, sweep, name in own) for name in sorted({r.task for r in runs}, key=task_order)]


def report(sweep: Path, extra: list[tuple[str, Path, dict]] = ()) -> str:
    """The Markdown report of a sweep folder; `extra`: (label, folder, its runs) of --with folders."""
    runs = load_runs(sweep)
    tasks = load_tasks(sweep, runs)
    train_results = [v for r, v in runs.items() if not r.is_student]
    student_results = [v for r, v in runs.items() if r.is_student]
    shown = sweep.relative_to(Path.cwd()) if sweep.is_relative_to(Path.cwd()) else sweep
    lines = [f"# Sweep {shown}", "",
             f"{len(train_results)} fine-tuning runs and {len(student_results)} students finished; values are dev "
             "metrics in %, the median over seeds of each run's best epoch.", ""]
    if train_results:
        lines += [f"Fine-tuning: {settings_line(train_results, TRAIN_SETTINGS)}.", ""]
    if student_results:
        lines += [f"Students: {settings_line(student_results, STUDENT_SETTINGS)}.", ""]
    started = unfinished(sweep)
    if started:
        lines += [f"Not finished ({len(started)}): " + ", ".join(f"`{f}`" for f in started), ""]
    lines += ["## Paired differences against CE", "",
              "Every arm against the ce run of the same seed (same data, initialisation and batch order), the "
              "comparison that can show an effect; the paper-format tables below pick the best setting per task "
              "and carry the gain of that selection too.", ""]
    for t in tasks:
        lines += paired_section(t, extra)
    if train_results:
        lines += ["## Table I: CE vs. min-CMI fine-tuning (best-of selection)", "",
                  "The paper's format: per task, the λ with the highest median over seeds against the ce median. "
                  "This is a best-of selection: with no effect at all it still gains, by about this much:", ""]
        lines += [line for t in tasks for line in selection_line(t)] + [""]
        lines += table_one(tasks)
    lines += ["## Table II: DistilBERT students of a CE and of a max-CMI teacher (best-of selection)", "",
              "The paper's format: per task and teacher, the (α, T) with the highest median over seeds. Both columns "
              "are best-of selections, so with no effect at all the Δ gains by about this much:", ""]
    lines += [line for t in tasks for line in student_selection_line(t)] + [""]
    lines += table_two(tasks)
    lines += ["## Per task", ""]
    for t in tasks:
        lines += (lambda_table(t) if any(t.runs.values()) else []) + teacher_section(t)
        if any(t.students.values()):
            lines += student_table(t)
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# paired differences: each arm against the ce run of the same seed


@dataclass
class Arm:
    """The runs of one setting (mode, lambda; from SWEEP or from a --with folder), by seed, with their epochs."""
    label: str
    seeds: dict[int, dict]  # seed -> results.json
    epochs: dict[int, list[dict]]  # seed -> the metrics.jsonl lines


def differing_settings(sweep: Path, other: Path) -> str:
    """The run arguments (TRAIN_SETTINGS) in which the runs of `other` differ from those of `sweep`, as a label:
    "cmi_feature cls"."""
    def settings(folder):
        return {k: json.dumps(v["args"].get(k)) for v in load_runs(folder).values() for k in TRAIN_SETTINGS}
    mine, theirs = settings(sweep), settings(other)
    differ = [f"{k} {json.loads(v)}" for k, v in theirs.items() if mine.get(k) != v]
    return ", ".join(differ) or other.name


def epochs_of(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def arms_of(task: str, sweep: Path, runs: dict[Run, dict], suffix: str = "") -> dict[tuple, Arm]:
    """The arms of a task in one sweep folder: fine-tuning (mode, lam, suffix) and students (student-KIND,
    (alpha, T), suffix) -> Arm."""
    arms = {}
    for run in sorted((r for r in runs if r.task == task), key=Run.sort_key):
        if run.is_student:
            key = (run.group, (run.alpha, run.temperature), suffix)
            label = f"student of {run.teacher}, α {num(run.alpha)}, T {num(run.temperature)}"
        else:
            key = (run.mode, run.lam, suffix)
            label = run.mode + ("" if run.lam is None else f" λ={num(run.lam)}")
        arm = arms.setdefault(key, Arm(label + (f" ({suffix})" if suffix else ""), {}, {}))
        arm.seeds[run.seed] = runs[run]
        arm.epochs[run.seed] = epochs_of(sweep / run.folder)
    return arms


def all_arms(t: Task, extra: list[tuple[str, Path, dict]]) -> dict[tuple, Arm]:
    """The task's arms in the sweep folder and in every --with folder."""
    arms = arms_of(t.name, t.sweep, load_runs(t.sweep))
    for suffix, folder, runs in extra:
        arms |= arms_of(t.name, folder, runs, suffix)
    return arms


def baseline_of(key: tuple) -> tuple:
    """The arm an arm is compared with: ce for fine-tuning, the student of the ce teacher (same α, T) for students."""
    return ("student-ce", key[1], "") if key[0].startswith("student") else ("ce", None, "")


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """The mean and its standard error (sd / sqrt(n)); no standard error from one value."""
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
    return statistics.fmean(values), se


def pm(values: list[float], scale: float = 100) -> str:
    mean, se = mean_se(values)
    return f"{scale * mean:+.1f}" + ("" if se is None else f" ± {scale * se:.1f}")


def paired(arm: Arm, ce: Arm, key) -> list[float]:
    """arm − ce of the same seed, over the seeds both have; key(results, epochs) -> value."""
    return [key(arm.seeds[s], arm.epochs[s]) - key(ce.seeds[s], ce.epochs[s]) for s in sorted(arm.seeds) if s in ce.seeds]


def selection_gain(k: int, n: int, sd: float, draws: int = 20000, k_baseline: int = 1) -> float:
    """The expected gain of the best of k medians of n seeds over the best of k_baseline medians (Table I: one
    median) when no arm has any effect (every value drawn from one normal distribution of standard deviation
    sd): what the paper-format best-of selection 'gains' by selection alone. Monte Carlo with a fixed seed, so
    reports repeat exactly."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.normal(0.0, sd, size=(draws, k + k_baseline, n)), axis=-1)
    return float((medians[:, k_baseline:].max(axis=1) - medians[:, :k_baseline].max(axis=1)).mean())


def paired_section(t: Task, extra: list[tuple[str, Path, dict]]) -> list[str]:
    """Every fine-tuning arm against ce, every student against the student of the ce teacher, paired by seed: the
    best-epoch and the last-epoch dev metric (mean ± standard error of the differences over seeds), and the
    arm's train and dev CMI after its last epoch."""
    arms = all_arms(t, extra)

    def best(results, epochs):  # the run's best epoch, as results.json records it
        return results[t.metric]

    def last(results, epochs):  # its last epoch: no selection over epochs at all
        return epochs[-1][t.metric]

    lines = []
    for kind, against in (("fine-tuning", "ce"), ("students", "the student of the ce teacher")):
        rows = []
        for key, arm in arms.items():
            base = arms.get(baseline_of(key))
            if base is None or key[0].startswith("student") != (kind == "students"):
                continue
            d_best, d_last = paired(arm, base, best), paired(arm, base, last)
            rows.append((arm.label, len(arm.seeds), pm([r[t.metric] for r in arm.seeds.values()]).lstrip("+"),
                         "(baseline)" if arm is base else pm(d_best) if d_best else "–",
                         "(baseline)" if arm is base else pm(d_last) if d_last else "–",
                         cmi(statistics.fmean(e[-1]["train_cmi"] for e in arm.epochs.values())),
                         cmi(statistics.fmean(e[-1]["eval_cmi"] for e in arm.epochs.values()))))
        if not rows:
            continue
        header = ["arm", "seeds", f"dev {t.metric}, best epoch (mean ± se)", "Δ best epoch", "Δ last epoch",
                  "train CMI (last epoch)", "dev CMI (last epoch)"]
        note = (f"Δ: the arm's dev {t.metric} minus that of {against} with the same seed, in points, mean ± "
                "standard error over the seeds both have. A difference within about two standard errors of 0 is no "
                "evidence of an effect.")
        lines += [f"### {t.name}, {kind}: paired differences against {against}", "", note, ""]
        lines += table(header, rows)
    return lines


def selection_line(t: Task) -> list[str]:
    """What Table I's best-of selection gains with no effect at all, for this task's grid and seed spread."""
    k, n = len(t.lams["min"]), len({s for seeds in t.lams["min"].values() for s in seeds})
    if k < 2:
        return []
    if len(t.ce) < 2:
        return [f"- {t.name}: not estimated yet: the seeds' spread needs at least 2 ce seeds ({len(t.ce)} finished)."]
    sd = statistics.stdev(r[t.metric] for r in t.ce.values())
    gain = selection_gain(k, n, sd)
    return [f"- {t.name}: choosing the best of {k} λ by the median of {n} seeds gains {100 * gain:+.1f} points over "
            f"one median with no effect at all (ce seeds' sd {100 * sd:.1f}, normal model, 20,000 draws)."]


def student_selection_line(t: Task) -> list[str]:
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
            "teacher's students' sd; normal model, 20,000 draws)."]


# -----------------------------------------------------------------------------
# plots


def plot_paired(t: Task, extra: list[tuple[str, Path, dict]], path: Path) -> bool:
    """The paired differences per arm: each seed a dot, the mean with its standard error as a bar. False, drawing
    nothing, when no arm has a baseline to be paired with."""
    every = all_arms(t, extra)
    arms = {key: arm for key, arm in every.items() if baseline_of(key) in every and baseline_of(key) != key}
    if not arms:
        return False
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 + 1.3 * len(arms)), 4.5))
    for i, (key, arm) in enumerate(arms.items()):
        d = [100 * x for x in paired(arm, every[baseline_of(key)], lambda results, epochs: results[t.metric])]
        if not d:
            continue
        ax.scatter([i] * len(d), d, color="tab:blue", alpha=0.5, s=16)
        mean, se = mean_se(d)
        ax.errorbar([i + 0.15], [mean], yerr=[se or 0], fmt="o", color="black", capsize=4)
    ax.axhline(0, color="gray", linestyle="--")
    ax.set_xticks(range(len(arms)), [textwrap.fill(arm.label, 20) for arm in arms.values()], fontsize=9)
    ax.set_ylabel(f"Δ dev {t.metric} (points)")
    baselines = " / ".join(sorted({every[baseline_of(key)].label for key in arms}))
    ax.set_title(f"{t.name}: each arm minus {baselines} of the same seed\n(dots: seeds; bars: mean ± se)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot(t: Task, path: Path) -> None:
    """Dev metric and dev CMI against lambda (min and max: the median and each seed), ce as a line."""
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="the sweep folder (sweep.py --out)")
    parser.add_argument("--plots", help="folder for the PNG plots, one per task (default: SWEEP/plots; "
                                        "needs matplotlib)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    parser.add_argument("--with", dest="more", action="append", default=[], metavar="DIR",
                        help="another sweep folder whose runs are more arms, paired with SWEEP's ce runs (an arm "
                             "that differs by a flag, e.g. --cmi-feature cls); repeatable")
    args = parser.parse_args(argv)
    sweep = Path(args.sweep).resolve()
    for folder in [args.sweep, *args.more]:
        if not Path(folder).is_dir():
            parser.exit(2, f"error: {folder} is not a folder\n")
    extra = [(differing_settings(sweep, Path(f).resolve()), Path(f).resolve(), load_runs(Path(f).resolve()))
             for f in args.more]
    print(report(sweep, extra))
    if args.no_plots:
        return
    if plt is None:
        print("matplotlib is not installed: no plots (pip install -e '.[plot]')", file=sys.stderr)
        return
    folder = Path(args.plots) if args.plots else sweep / "plots"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for t in load_tasks(sweep, load_runs(sweep)):
            if any(t.lams.values()):
                plot(t, folder / f"{t.name}.png")
                print(f"wrote {folder / f'{t.name}.png'}", file=sys.stderr)
            if plot_paired(t, extra, folder / f"{t.name}-paired.png"):  # students too
                print(f"wrote {folder / f'{t.name}-paired.png'}", file=sys.stderr)
    except OSError as e:  # a read-only sweep folder: the report is printed, the plots cannot be
        parser.exit(2, f"error: {folder}: cannot write the plots ({e.strerror or e}); pass --plots DIR or --no-plots\n")


if __name__ == "__main__":
    main()
