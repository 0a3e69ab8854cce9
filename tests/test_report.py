"""report.py's paired comparison: every arm against the ce run of the same seed, its tests, and what best-of
selection gains with no effect at all; pooled seeds; partial sweep folders. The statistics alone: test_stats.py."""
import json
import math
import statistics
import subprocess
import sys

import pytest

import report
from conftest import ROOT
from study import arms, reading
from study.reading import read_sweep
from study.stats import paired_selection_gain


def fake_run(sweep, folder, mcc_by_epoch, feature="pooled", teacher=None, metric="mcc", provenance=None, **more_args):
    """A finished run folder: results.json (the best epoch, and `provenance` if given) and metrics.jsonl (every
    epoch); a student names the best/ folder of its teacher; metric: the task's dev metric; more_args: more of its
    recorded arguments."""
    path = sweep / folder
    path.mkdir(parents=True)
    lines = [{"epoch": e, metric: m, "train_cmi": 0.01 * e, "eval_cmi": 0.02 * e}
             for e, m in enumerate(mcc_by_epoch, 1)]
    best = max(lines, key=lambda line: line[metric])
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = {"model": "m", "epochs": len(lines), "cmi_feature": feature, "teacher": teacher, **more_args}
    results = {"args": args, "best_epoch": best["epoch"], **best}
    (path / "results.json").write_text(json.dumps(results | ({"provenance": provenance} if provenance else {})))


CE = {0: [0.20, 0.30], 1: [0.25, 0.22], 2: [0.10, 0.28]}  # seed -> dev MCC by epoch
MIN = {0: [0.21, 0.33], 1: [0.26, 0.20], 2: [0.30, 0.24], 3: [0.5, 0.5]}  # seed 3 has no ce partner


def test_paired_differences_are_per_seed_means_and_standard_errors(tmp_path, capsys):
    for seed, values in CE.items():
        fake_run(tmp_path / "s", f"cola/ce/seed{seed}", values)
    for seed, values in MIN.items():
        fake_run(tmp_path / "s", f"cola/min/lam1-seed{seed}", values)
        fake_run(tmp_path / "cls", f"cola/min/lam1-seed{seed}", [v + 0.01 for v in values], feature="cls")
    report.main([str(tmp_path / "s"), "--with", str(tmp_path / "cls"), "--plots", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    best = [max(MIN[s]) - max(CE[s]) for s in CE]  # +0.03, +0.01, +0.02
    last = [MIN[s][-1] - CE[s][-1] for s in CE]    # +0.03, -0.02, -0.04
    row = next(line for line in out.splitlines() if line.startswith("| min λ=1 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    se = statistics.stdev(best) / 3 ** 0.5
    assert cells[1] == "4"  # seeds of the arm; the differences use the 3 seeds ce has too
    assert cells[3] == f"+{100 * statistics.fmean(best):.1f} ± {100 * se:.1f}"
    assert cells[4] == f"{100 * statistics.fmean(last):+.1f} ± {100 * statistics.stdev(last) / 3 ** 0.5:.1f}"
    cls = next(line for line in out.splitlines() if line.startswith("| min λ=1 (cmi_feature cls) |"))
    assert f"+{100 * statistics.fmean(best) + 1:.1f} ± {100 * se:.1f}" in cls  # every value +1 point: same se
    assert "choosing the best of 1 λ" not in out  # one λ: no selection, no line
    assert (tmp_path / "plots" / "cola-paired.png").stat().st_size > 0


def test_students_are_paired_with_the_student_of_the_ce_teacher_of_the_same_seed(tmp_path, capsys):
    # part B of the CoLA study: student-max of max λ 1 in the sweep, of λ 10 in a --with folder
    for seed, values in CE.items():  # each student from the teacher of its own seed, kept in another folder
        for kind, teacher_mcc in (("ce", 0.3 + seed / 100), ("max", 0.2 + seed / 100)):
            fake_run(tmp_path / "teachers", f"cola/{kind}/seed{seed}", [teacher_mcc])
        fake_run(tmp_path / "s", f"cola/student-ce/alpha0.5-T2-seed{seed}", values,
                 teacher=str(tmp_path / f"teachers/cola/ce/seed{seed}/best"))
        fake_run(tmp_path / "s", f"cola/student-max/alpha0.5-T2-seed{seed}", MIN[seed],
                 teacher=str(tmp_path / f"teachers/cola/max/seed{seed}/best"))
        fake_run(tmp_path / "lam10", f"cola/student-max/alpha0.5-T2-seed{seed}", [v - 0.01 for v in MIN[seed]])
    report.main([str(tmp_path / "s"), "--with", str(tmp_path / "lam10"), "--plots", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    # a students-only sweep has no λ to plot, but its paired differences (without matplotlib: test_an_optional_...)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["cola-paired.png"]
    assert "### cola, students: paired differences against the student of the ce teacher" in out
    best = [max(MIN[s]) - max(CE[s]) for s in CE]
    se = 100 * statistics.stdev(best) / 3 ** 0.5
    row = next(line for line in out.splitlines() if line.startswith("| student of max, α 0.5, T 2 |"))
    assert f"+{100 * statistics.fmean(best):.1f} ± {se:.1f}" in row
    row = next(line for line in out.splitlines() if line.startswith("| student of max, α 0.5, T 2 (lam10) |"))
    assert f"+{100 * statistics.fmean(best) - 1:.1f} ± {se:.1f}" in row
    assert "| student of ce, α 0.5, T 2 | 3 |" in out and "(baseline)" in out
    assert "- cola: one (α, T) per teacher, no selection: the Δ is a plain difference of medians." in out
    # Table II: the teachers' column is the median of the seeds' teachers (31 and 21), the students' of theirs
    assert f"| cola | mcc | 31.0 | {100 * statistics.median(max(v) for v in CE.values()):.1f} | 0.5, 2 | 21.0 |" in out
    assert "(teachers from outside this sweep folder)" in out
    fake_run(tmp_path / "s", "cola/student-max/alpha0.9-T2-seed0", [0.3])  # now the max column is a best of 2
    fake_run(tmp_path / "s", "cola/student-max/alpha0.9-T2-seed1", [0.3])
    sd = 100 * statistics.stdev(max(CE[s]) for s in CE)  # the ce teacher's students' spread, one (alpha, T)
    gain = 100 * report.selection_gain(2, 3, sd / 100, k_baseline=1)
    assert f"- cola: the best of 2 (α, T) against the best of 1, medians of 3 seeds: {gain:+.1f} points with no " \
           f"effect at all (sd {sd:.1f}," in report.report(tmp_path / "s")


def test_selection_alone_gains_with_no_effect():
    # docs/design.md, "Honest comparison and selection": best-of-5 medians of 3 seeds against one median gains
    # +0.6 to +0.8 seed standard deviations
    assert 0.6 < report.selection_gain(5, 3, 1.0) < 0.8
    assert abs(report.selection_gain(1, 3, 1.0)) < 0.02  # one arm: no selection, no gain
    assert report.selection_gain(5, 3, 2.0) == pytest.approx(2 * report.selection_gain(5, 3, 1.0))
    # Table II: best of 9 (alpha, T) against best of 9 is symmetric, no gain; against best of 1 the full gain
    assert abs(report.selection_gain(9, 3, 1.0, k_baseline=9)) < 0.02
    assert report.selection_gain(9, 3, 1.0, k_baseline=1) > report.selection_gain(5, 3, 1.0)


def test_report_lists_a_damaged_run_with_the_reason_and_a_plot_folder_it_cannot_write(tmp_path, capsys):
    folder = tmp_path / "rte" / "ce" / "seed0"
    folder.mkdir(parents=True)
    (folder / "args.json").write_text("{}")
    (folder / "results.json").write_text("[")
    read = read_sweep(tmp_path)
    assert read.runs == {} and list(read.unreadable) == ["rte/ce/seed0"] and read.unfinished == []
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path), "--plots", str(tmp_path / "file" / "plots")])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and "rte/ce/seed0" in out  # the report itself is printed
    assert err.startswith("error: ") and "cannot write the plots" in err and len(err.splitlines()) == 1


def report_without(package: str, *argv) -> subprocess.CompletedProcess:
    """report.py in a process where `package` cannot be imported, as on a machine without it."""
    code = (f"import runpy, sys; sys.modules[{package!r}] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, str(ROOT / "report.py"), *map(str, argv)],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("package, flags, message", [
    ("scipy", ["--no-plots"], "report.py: the t-tests and confidence intervals need scipy, which is not installed: "
                              "pip install -e '.[stats]'"),
    ("matplotlib", [], "--plots: drawing the plots needs matplotlib, which is not installed: pip install -e "
                       "'.[plot]', or pass --no-plots"),
])
def test_an_optional_package_that_is_not_installed_is_one_line_naming_the_pip_command(tmp_path, package, flags,
                                                                                      message):
    """Without scipy report.py ended in a traceback; without matplotlib it drew no plots and said so in a note,
    exit code 0. Now each is one line before anything is read or printed."""
    for seed in range(2):
        fake_run(tmp_path / "s", f"cola/ce/seed{seed}", CE[seed])
        fake_run(tmp_path / "s", f"cola/min/lam1-seed{seed}", MIN[seed])
    result = report_without(package, tmp_path / "s", *flags)
    assert result.returncode == 2 and result.stderr.splitlines() == [f"error: {message}"], result.stderr
    assert result.stdout == "" and not (tmp_path / "s" / "plots").exists()


def test_the_report_names_the_teacher_the_papers_rule_picks_from_run_files_alone(tmp_path, capsys):
    # a committed study keeps results.json and metrics.jsonl, no best/: the rule is still applied and reported
    for seed, values in CE.items():
        fake_run(tmp_path, f"cola/ce/seed{seed}", values)
        fake_run(tmp_path, f"cola/max/lam1-seed{seed}", [v + 0.01 for v in values])  # dev CMI 0.02 x best epoch
    for path in tmp_path.glob("cola/max/*/results.json"):
        results = json.loads(path.read_text())
        results["args"] |= {"mode": "max", "task": "cola"}
        path.write_text(json.dumps(results))
    report.main([str(tmp_path), "--no-plots"])
    out = capsys.readouterr().out
    # ratios: seed0 0.31 / 0.04, seed1 0.26 / 0.02 (best epoch 1), seed2 0.29 / 0.04: seed1 is the paper's teacher
    assert "- max-CMI teacher: `cola/max/lam1-seed1`, dev mcc / dev CMI = 0.26 / 0.02 = 13: the highest ratio" in out
    assert "- cola: no Δ: this sweep holds no student of a ce and max teacher." in out  # Table II, teachers only


def t_quantile_two_df(q: float = 0.975) -> float:
    """The q quantile of the t distribution with 2 degrees of freedom: F(t) = 1/2 + t / (2 sqrt(t^2 + 2))."""
    u = 2 * q - 1
    return u * math.sqrt(2 / (1 - u * u))


def test_each_arm_has_a_t_test_at_the_best_and_the_last_epoch_and_a_verdict_from_its_interval(tmp_path, capsys):
    for seed, values in CE.items():
        fake_run(tmp_path, f"cola/ce/seed{seed}", values)
    for seed, values in MIN.items():
        fake_run(tmp_path, f"cola/min/lam1-seed{seed}", values)
    report.main([str(tmp_path), "--no-plots", "--delta", "5"])
    out = capsys.readouterr().out
    cells, intervals = [], []
    for d in ([max(MIN[s]) - max(CE[s]) for s in CE], [MIN[s][-1] - CE[s][-1] for s in CE]):  # best, last epoch
        mean, se = statistics.fmean(d), statistics.stdev(d) / 3 ** 0.5
        t, half = mean / se, t_quantile_two_df() * se
        p = 1 - abs(t) / math.sqrt(t * t + 2)  # two-sided, 2 degrees of freedom
        intervals.append(f"{100 * (mean - half):+.1f} to {100 * (mean + half):+.1f}")
        cells += [f"{100 * mean:+.1f} ± {100 * se:.1f}", intervals[-1], f"{p:.2g}"]
    assert f"| min λ=1 | 3 | {' | '.join(cells)} |" in out  # 4 seeds, 3 of them paired with ce
    assert intervals == ["-0.5 to +4.5", "-10.0 to +8.0"]  # by hand: 2.0 ± 4.303 * 0.577, -1.0 ± 4.303 * 2.08
    assert "An effect of δ = 5 points" in out
    assert f"- min λ=1: best epoch excluded ({intervals[0]}); last epoch not shown ({intervals[1]})." in out
    assert f"- min λ=1: best epoch not shown ({intervals[0]})" in report.report(tmp_path)  # δ 1 point: not ruled out


def test_table_one_shows_both_selection_nulls_and_both_held_out_rules_with_unequal_seed_counts(tmp_path):
    ce = [0.30, 0.20, 0.25, 0.22, 0.28, 0.24, 0.26]  # seeds 0-6
    lam1 = [v + d for v, d in zip(ce, [0.01, 0.01, 0.01, 0.02, 0.03, 0.01, 0.02])]  # seeds 0-6
    lam10 = [0.20, 0.27, 0.265, 0.20, 0.25]  # seeds 0-4: the highest median of seeds 0-2, the lower mean difference
    for values, folder in ((ce, "ce/seed{}"), (lam1, "min/lam1-seed{}"), (lam10, "min/lam10-seed{}")):
        for seed, value in enumerate(values):
            fake_run(tmp_path, "cola/" + folder.format(seed), [value])
    out = report.report(tmp_path)
    gain = report.selection_gain(2, 5, statistics.stdev(ce))
    assert (f"- cola, the paper's unpaired design: choosing the best of 2 λ by the median of 5 seeds (the fewest of "
            f"any λ, which have 5–7) gains {100 * gain:+.1f} points over one median") in out
    gain = paired_selection_gain(ce[:5], [lam1[:5], lam10])  # on the 5 seeds every arm has
    chosen = paired_selection_gain(ce[:5], [lam1[:5], lam10], null=[0])  # Table I picks λ 1: only it has no effect
    assert ("- cola, this study's paired design, resampled from its own values on the 5 seeds ce and every λ share "
            "(seeds drawn with replacement, the same draw for every arm, 20,000 draws; an arm assumed to have no "
            f"effect is shifted so that its median alone gains 0 over ce's): if no λ had any effect, {100 * gain:+.1f} "
            f"points; if λ 1 (Table I's pick) had none and the other λ their observed effects, {100 * chosen:+.1f}."
            ) in out
    # seeds 0-2: medians 26.0 and 26.5, mean differences +1.0 and (-10 + 7 + 1.5) / 3 = -0.5; each rule's λ is then
    # compared with ce on the seeds it has beyond 0-2
    assert ("- cola, by the median of each λ on seeds 0–2 (λ 1 26.0, λ 10 26.5): λ 10; against ce on seeds 3, 4: "
            "-2.0, -3.0 (mean -2.5 ± 0.5).") in out
    assert ("- cola, by the mean paired difference against ce on seeds 0–2 (λ 1 +1.0, λ 10 -0.5): λ 1; against ce "
            "on seeds 3–6: +2.0, +3.0, +1.0, +2.0 (mean +2.0 ± 0.4).") in out


def pm(differences: list[float]) -> str:
    """mean ± se in points, as the report prints them."""
    se = statistics.stdev(differences) / len(differences) ** 0.5
    return f"{100 * statistics.fmean(differences):+.1f} ± {100 * se:.1f}"


def test_pool_adds_another_folders_seeds_to_the_same_arms_and_refuses_another_protocol(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for seed in range(3):
        fake_run(a, f"cola/ce/seed{seed}", CE[seed])
        fake_run(a, f"cola/min/lam1-seed{seed}", MIN[seed])
        fake_run(a, f"cola/min/lam10-seed{seed}", MIN[seed])
    for seed in (3, 4, 5):  # later runs record an option added since (grad_accum) that a's runs do not
        fake_run(b, f"cola/ce/seed{seed}", CE[seed - 3], grad_accum=1)
        fake_run(b, f"cola/min/lam1-seed{seed}", MIN[seed - 3], grad_accum=1)
    report.main([str(b), "--pool", str(a), "--no-plots"])
    out = capsys.readouterr().out
    assert f"Pooled with {a}, as more seeds of the same arms: cola ce (seeds 0–2), cola min λ=1 (seeds 0–2);" in out
    assert "Its other arms are left out: cola min λ=10." in out and "| min λ=10 |" not in out
    assert "only one of the two folders record (not compared; options added to train.py in between): " \
           "grad_accum 1" in out
    d = [max(MIN[s]) - max(CE[s]) for s in CE] * 2  # the same three differences from each folder
    assert f"| min λ=1 | 6 | {pm(d)} |" in out  # the t-test on all 6 pairs
    out = report.report(a, pool=b)  # the other way round: every arm of a, two of them with more seeds
    assert "| min λ=1 | 6 |" in out and "| min λ=10 | 3 |" in out
    assert "by the median of 3 seeds (the fewest of any λ, which have 3–6)" in out

    fake_run(tmp_path / "c", "cola/ce/seed7", CE[0], feature="cls")  # another protocol
    fake_run(tmp_path / "d", "cola/ce/seed2", CE[2])  # a seed a has already
    for other, why in (("c", 'cola ce: the runs differ in cmi_feature "pooled" against "cls"'),
                       ("d", "cola ce: seeds 2 are in both folders")):
        with pytest.raises(SystemExit) as exit_info:
            report.main([str(a), "--pool", str(tmp_path / other), "--no-plots"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith(f"error: --pool {tmp_path / other}: {why}"), err


def test_add_tasks_reports_another_folders_task_beside_and_summarises_the_shared_arms_over_tasks(tmp_path, capsys):
    cola, mrpc = tmp_path / "cola-study", tmp_path / "mrpc-study"
    for seed, values in CE.items():
        fake_run(cola, f"cola/ce/seed{seed}", values)
    for seed, values in MIN.items():
        fake_run(cola, f"cola/min/lam1-seed{seed}", values)
    f1 = {0: (0.80, 0.85), 1: (0.82, 0.85), 2: (0.79, 0.83)}  # seed -> (ce, min λ 1) dev F1, one epoch
    for seed, (ce, lam1) in f1.items():
        fake_run(mrpc, f"mrpc/ce/seed{seed}", [ce], metric="f1")
        fake_run(mrpc, f"mrpc/min/lam1-seed{seed}", [lam1], metric="f1")
        fake_run(mrpc, f"mrpc/min/lam10-seed{seed}", [ce], metric="f1")  # an arm cola does not have
    report.main([str(cola), "--add-tasks", str(mrpc), "--no-plots"])
    out = capsys.readouterr().out
    assert f"With the tasks of {mrpc}: mrpc." in out
    assert "### mrpc, fine-tuning: paired differences against ce" in out and f"| min λ=1 | 3 | {pm([0.05, 0.03, 0.04])} |" in out
    # cola's differences at the best epoch 0.03, 0.01, 0.02 and mrpc's 0.05, 0.03, 0.04: means 2 and 4 points with
    # the same se 1/sqrt(3), so the summary is 3 points with se sqrt(2/3)/2 and Welch-Satterthwaite df
    # (2 se^2)^2 / (2 se^4 / 2) = 4, whose t distribution has F(t) = 1/2 + s (1 + c^2 / 2) / 2 (s, c: the sine and
    # cosine of atan(t / 2)); its 97.5% quantile is 2.776445
    se = math.sqrt(2 / 3) / 2
    angle = math.atan(3 / se / 2)
    p = 1 - math.sin(angle) * (1 + math.cos(angle) ** 2 / 2)
    interval = f"{3 - 2.776445 * se:+.1f} to {3 + 2.776445 * se:+.1f}"
    assert f"| min λ=1 | cola (mcc) +2.0, 3 pairs, mrpc (f1) +4.0, 3 pairs | 6 | +3.0 ± {se:.1f} | {interval} | " \
           f"{p:.2g} |" in out
    assert f"- min λ=1: best epoch shown ({interval}); last epoch" in out
    assert "| min λ=10 | mrpc" not in out  # one task's arm: nothing to summarise over tasks
    # pooled otherwise: both tasks' se are 1/sqrt(3) points, so inverse-variance weighs them equally (mean 3, se
    # 1/sqrt(6)); Cochran's Q = 3 (2 - 3)^2 + 3 (4 - 3)^2 = 6 on 1 degree of freedom, p = erfc(sqrt(3)), I^2 = 5/6
    assert (f"min λ=1: Cochran's Q 6.0 on 1 degrees of freedom, p {math.erfc(math.sqrt(3)):.2g}, I² 0.83: the tasks "
            "disagree beyond their sampling error.") in out
    assert f"| inverse-variance | +3.0 ± {1 / math.sqrt(6):.1f} |" in out and "| weights by pairs | +3.0 ±" in out

    fake_run(tmp_path / "more-cola", "cola/ce/seed7", CE[0])  # a task the report has already
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(cola), "--add-tasks", str(mrpc), "--add-tasks", str(tmp_path / "more-cola"), "--no-plots"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(f"error: --add-tasks {tmp_path / 'more-cola'}: task cola is "
                                                        "in an earlier folder of the report too"), err


def snapshot(folder):
    """Every path below `folder` with its mode, modification time and bytes: what a report must not change."""
    return {p: (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in [folder, *sorted(folder.rglob("*"))]}


def exit_code(argv: list[str]) -> int:
    """report.main's exit status as the shell sees it; a traceback (status 1) fails the test with its exception."""
    try:
        report.main(argv)
    except SystemExit as e:
        return e.code
    return 0


def test_a_run_with_a_damaged_results_json_and_no_args_json_is_listed_and_left_out(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):  # fake_run writes no args.json
        fake_run(sweep, f"cola/ce/seed{seed}", CE[seed])
        fake_run(sweep, f"cola/min/lam1-seed{seed}", MIN[seed])
    (sweep / "cola/ce/seed1/results.json").write_text('{"args": ')  # cut short
    before = snapshot(sweep)
    assert exit_code([str(sweep), "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "Left out, files that cannot be read (1):\n\n- `cola/ce/seed1`: results.json: cannot read it (" in out
    assert "| ce | 1 |" in out and "| min λ=1 | 2 |" in out  # the rest is reported: one pair, no t-test
    assert "- min λ=1: best epoch not estimated (fewer than 2 pairs)" in out
    assert snapshot(sweep) == before


def test_a_run_whose_arguments_name_another_folder_is_listed_and_left_out(tmp_path, capsys):
    """A copied or renamed folder: a max run in ce/ would be the baseline, a seed-0 run in seed3's folder a fourth
    seed. The folder name says which arm and seed a run is reported as; its results.json must agree."""
    sweep = tmp_path / "sweep"
    for seed in (0, 1, 2):
        fake_run(sweep, f"cola/ce/seed{seed}", CE[seed], task="cola", mode="ce", lam=0.1, seed=seed)
        fake_run(sweep, f"cola/min/lam1-seed{seed}", MIN[seed], task="cola", mode="min", lam=1.0, seed=seed)
    fake_run(sweep, "cola/ce/seed3", CE[0], task="cola", mode="max", lam=1.0, seed=3)
    fake_run(sweep, "cola/min/lam1-seed3", MIN[3], task="cola", mode="min", lam=0.5, seed=0)
    fake_run(sweep, "cola/student-max/alpha0.5-T2-seed0", CE[1], task="mrpc", seed=0, alpha=0.5, temperature=4.0)
    assert exit_code([str(sweep), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert ("Left out, files that cannot be read (3):\n\n"
            "- `cola/ce/seed3`: results.json args name another run than its folder: mode max (the folder's: ce)\n"
            "- `cola/min/lam1-seed3`: results.json args name another run than its folder: lam 0.5 (the folder's: "
            "1.0), seed 0 (the folder's: 3)\n"
            "- `cola/student-max/alpha0.5-T2-seed0`: results.json args name another run than its folder: task mrpc "
            "(the folder's: cola), temperature 4.0 (the folder's: 2.0)\n") in out
    assert "| ce | 3 |" in out and "| min λ=1 | 3 |" in out  # the runs that are what their folders say


def test_a_partial_read_only_copy_without_metrics_jsonl_is_listed_and_left_out(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed in CE:
        fake_run(sweep, f"cola/ce/seed{seed}", CE[seed])
        fake_run(sweep, f"cola/min/lam1-seed{seed}", MIN[seed])
    (sweep / "cola/ce/seed0/metrics.jsonl").unlink()
    (sweep / "cola/min/lam1-seed2/metrics.jsonl").write_text("")
    paths = [sweep, *sweep.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        before = snapshot(sweep)
        assert exit_code([str(sweep), "--plots", str(tmp_path / "plots")]) == 0
        out = capsys.readouterr().out
        assert snapshot(sweep) == before
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | 0o200)
    assert ("Left out, files that cannot be read (2):\n\n"
            "- `cola/ce/seed0`: metrics.jsonl: cannot read it (No such file or directory)\n"
            "- `cola/min/lam1-seed2`: metrics.jsonl: expected one JSON object per epoch\n") in out
    assert "| min λ=1 | 2 |" in out  # seeds 0 and 1, of which only seed 1 has a readable ce partner
    assert "| min λ=1 | 1 | – | – | – | – | – | – |" in out


def test_each_folder_and_each_results_json_is_read_once_per_report(tmp_path, monkeypatch, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for seed in range(3):
        fake_run(a, f"cola/ce/seed{seed}", CE[seed])
        fake_run(a, f"cola/min/lam1-seed{seed}", MIN[seed])
        fake_run(b, f"cola/ce/seed{seed + 3}", CE[seed])
        fake_run(c, f"cola/min/lam1-seed{seed}", MIN[seed], feature="cls")
    folders, results = [], []
    monkeypatch.setattr(arms, "read_sweep", lambda folder: folders.append(folder) or read_sweep(folder))
    read_results = reading.results_of
    monkeypatch.setattr(reading, "results_of", lambda folder: results.append(folder) or read_results(folder))
    report.main([str(a), "--pool", str(b), "--with", str(c), "--plots", str(tmp_path / "plots")])
    assert "| min λ=1 (cmi_feature cls) | 3 |" in capsys.readouterr().out
    assert sorted(folders) == [a, b, c]
    assert len(results) == len(set(results)) == 12


def test_runs_paired_must_differ_in_their_arm_only_and_the_report_says_how_they_ran(tmp_path, capsys):
    how = {"commit": "0123456789abcdef", "torch": "2.13.0+cpu", "device": "cpu (x86_64)", "path": "unpadded",
           "threads": 1, "amp": "off", "compile": False, "world_size": 1, "data": {"train": "aa", "validation": "bb"}}
    for seed, values in CE.items():
        fake_run(tmp_path / "s", f"cola/ce/seed{seed}", values, provenance=how, lr=5e-5)
        fake_run(tmp_path / "s", f"cola/min/lam1-seed{seed}", MIN[seed], provenance=how, lr=5e-5, mode="min")
    out = report.report(tmp_path / "s")
    assert "| min λ=1 | 3 | 0123456 | 2.13.0+cpu | cpu | unpadded | 1 | off | False |" in out
    folder = tmp_path / "s" / "cola" / "min" / "lam1-seed1"
    for change, named in (({"lr": 3e-5}, "lr 3e-05 / 5e-05"),
                          ({"provenance": how | {"path": "padded"}}, 'path (results.json) "padded" / "unpadded"'),
                          ({"provenance": how | {"amp": "bfloat16"}}, 'amp (results.json) "bfloat16" / "off"'),
                          ({"provenance": how | {"data": {"train": "cc", "validation": "bb"}}}, "data (results.json)")):
        results = json.loads((folder / "results.json").read_text())
        saved = folder.joinpath("results.json").read_bytes()
        if "lr" in change:
            results["args"] |= change
        else:
            results |= change
        (folder / "results.json").write_text(json.dumps(results))
        with pytest.raises(SystemExit) as exit_info:
            report.main([str(tmp_path / "s"), "--no-plots"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("error: cola min λ=1, seed 1: its run and the ce run it is paired with differ in ") and \
            named in err, err
        (folder / "results.json").write_bytes(saved)
    # the arm itself may differ: its objective's options (here min, with cls features, from a --with folder)
    for seed in CE:
        fake_run(tmp_path / "cls", f"cola/min/lam1-seed{seed}", MIN[seed], feature="cls", provenance=how, lr=5e-5,
                 mode="min", centroids="epoch")
    assert "| min λ=1 (cmi_feature cls) | 3 |" in report.report(tmp_path / "s", [tmp_path / "cls"])


def test_runs_of_uncommitted_code_and_pairs_of_two_code_versions_are_flagged(tmp_path):
    """results.json records the commit and whether the work tree was dirty; the report showed the commit alone, and
    a pair of runs made from two commits as any other pair."""
    clean = {"commit": "0123456789abcdef", "dirty": False, "torch": "2.13.0+cpu", "device": "cpu (x86_64)"}
    for seed, values in CE.items():
        fake_run(tmp_path / "s", f"cola/ce/seed{seed}", values, provenance=clean)
    for seed, values in MIN.items():
        fake_run(tmp_path / "s", f"cola/min/lam1-seed{seed}", values, provenance=clean)
    out = report.report(tmp_path / "s")  # one commit, clean: nothing flagged
    assert "| min λ=1 | 4 | 0123456 | 2.13.0+cpu |" in out
    assert "+dirty" not in out and "Made from uncommitted code" not in out and "two code versions" not in out
    for seed in (1, 2):
        fake_run(tmp_path / "s", f"cola/max/lam1-seed{seed}", MIN[seed], provenance=clean | {"commit": "fedcba9876"})
    results = tmp_path / "s" / "cola" / "min" / "lam1-seed3" / "results.json"
    results.write_text(json.dumps(json.loads(results.read_text()) | {"provenance": clean | {"dirty": True}}))
    out = report.report(tmp_path / "s")
    assert "| min λ=1 | 4 | 0123456 / 0123456+dirty | 2.13.0+cpu |" in out
    assert ("Made from uncommitted code (results.json dirty: true, the commit shown +dirty), so no commit repeats "
            "them: min λ=1 (seed 3).") in out
    assert ("| max λ=1 | 2 |" in out and "- max λ=1 against ce: two code versions, commit fedcba9 against 0123456 "
            "(seeds 1, 2): each difference is the code's as well as the arm's.") in out
    assert "min λ=1 against ce" not in out  # seed 3, the dirty one, has no ce run to be paired with


def test_with_pool_and_add_tasks_refuse_what_would_compare_nothing_in_one_line(tmp_path, capsys):
    """`--with SWEEP` printed SWEEP's runs again as arms paired with themselves (Δ 0, "excluded"); an empty folder or
    one of another task printed the plain report without a word. Each is one line now, and nothing is printed."""
    s, mrpc, late, other_arm = (tmp_path / name for name in ("s", "mrpc", "late", "other-arm"))
    for seed, values in CE.items():
        fake_run(s, f"cola/ce/seed{seed}", values)
        fake_run(s, f"cola/min/lam1-seed{seed}", MIN[seed])
        fake_run(mrpc, f"mrpc/min/lam1-seed{seed}", [0.8], metric="f1")
        fake_run(other_arm, f"cola/max/lam1-seed{seed + 3}", values)
    for seed in (5, 6):  # seeds SWEEP's ce runs do not have: nothing to pair with
        fake_run(late, f"cola/min/lam1-seed{seed}", MIN[seed - 5])
    (tmp_path / "empty").mkdir()
    (tmp_path / "unfinished" / "cola" / "ce" / "seed0").mkdir(parents=True)
    (tmp_path / "unfinished" / "cola" / "ce" / "seed0" / "args.json").write_text("{}")
    before = snapshot(tmp_path)
    cases = [
        (["--with", s], f"--with {s}: the same folder as SWEEP; give each folder once"),
        (["--pool", s], f"--pool {s}: the same folder as SWEEP; give each folder once"),
        (["--add-tasks", s], f"--add-tasks {s}: the same folder as SWEEP; give each folder once"),
        (["--add-tasks", mrpc, "--add-tasks", mrpc], f"--add-tasks {mrpc}: the same folder as --add-tasks {mrpc}; "
                                                     "give each folder once"),
        (["--with", tmp_path / "empty"], f"--with {tmp_path / 'empty'}: no finished run (no TASK/GROUP/SETTING folder "
                                         "with a readable results.json)"),
        (["--add-tasks", tmp_path / "unfinished"], f"--add-tasks {tmp_path / 'unfinished'}: no finished run (no "
                                                   "TASK/GROUP/SETTING folder with a readable results.json)"),
        (["--with", mrpc], f"--with {mrpc}: its runs are of task mrpc, SWEEP's of cola; --with takes runs of SWEEP's "
                           "tasks (a folder of other tasks: --add-tasks)"),
        (["--pool", mrpc], f"--pool {mrpc}: its runs are of task mrpc, SWEEP's of cola; --pool takes runs of SWEEP's "
                           "tasks (a folder of other tasks: --add-tasks)"),
        (["--with", late], f"--with {late}: none of its runs has a run to be paired with in SWEEP (a ce run of its "
                           "task and seed; for a student, SWEEP's student of the ce teacher with its α, T and seed)"),
        (["--pool", other_arm], f"--pool {other_arm}: none of its arms is one of SWEEP's (it has cola max λ=1); it "
                                "pools more seeds of SWEEP's arms"),
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            report.main([str(s), *map(str, flags), "--no-plots"])
        out, err = capsys.readouterr()
        assert exit_info.value.code == 2 and err == f"error: {message}\n" and out == "", (flags, err)
    assert snapshot(tmp_path) == before
    assert exit_code([str(s), "--add-tasks", str(mrpc), "--no-plots"]) == 0  # as the --with of mrpc advises
