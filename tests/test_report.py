"""report.py's paired comparison: every arm against the ce run of the same seed, and what best-of selection gains
with no effect at all."""
import json
import statistics

import pytest

import report


def fake_run(sweep, folder, mcc_by_epoch, feature="pooled", teacher=None):
    """A finished run folder: results.json (the best epoch) and metrics.jsonl (every epoch); a student names the
    best/ folder of its teacher."""
    path = sweep / folder
    path.mkdir(parents=True)
    lines = [{"epoch": e, "mcc": m, "train_cmi": 0.01 * e, "eval_cmi": 0.02 * e}
             for e, m in enumerate(mcc_by_epoch, 1)]
    best = max(lines, key=lambda line: line["mcc"])
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = {"model": "m", "epochs": len(lines), "cmi_feature": feature, "teacher": teacher}
    (path / "results.json").write_text(json.dumps({"args": args, "best_epoch": best["epoch"], **best}))


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
    if report.plt is not None:  # a students-only sweep has no λ to plot, but its paired differences
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


def test_report_lists_a_damaged_run_as_unfinished_and_a_plot_folder_it_cannot_write(tmp_path, capsys):
    folder = tmp_path / "rte" / "ce" / "seed0"
    folder.mkdir(parents=True)
    (folder / "args.json").write_text("{}")
    (folder / "results.json").write_text("[")
    assert report.load_runs(tmp_path) == {} and report.unfinished(tmp_path) == ["rte/ce/seed0"]
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path), "--plots", str(tmp_path / "file" / "plots")])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and "rte/ce/seed0" in out  # the report itself is printed
    assert err.startswith("error: ") and "cannot write the plots" in err and len(err.splitlines()) == 1


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
