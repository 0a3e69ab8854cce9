"""The teacher chosen from a folder of runs (cmi/selection.py): the max-CMI run with the highest ratio of the
dev metric to the dev CMI, ties and unusable runs said plainly."""
import json

import pytest

from cmi.selection import select_teacher
from common.errors import TrainingError


def fake_run(sweep, name, mode="max", task="cola", best=True, **metrics):
    run = sweep / name
    run.mkdir(parents=True)
    if best:
        (run / "best").mkdir()
    if metrics:
        results = {"args": {"mode": mode, "task": task, "lam": 0.1, "seed": 0}, "best_epoch": 3, **metrics}
        (run / "results.json").write_text(json.dumps(results))
    return run


def test_the_teacher_is_the_max_run_with_the_highest_metric_to_cmi_ratio(tmp_path):
    fake_run(tmp_path, "a", mcc=0.40, eval_cmi=0.010)  # ratio 40
    fake_run(tmp_path, "b", mcc=0.50, eval_cmi=0.020)  # 25: the best metric, not the best ratio
    fake_run(tmp_path, "c", mcc=0.30, eval_cmi=0.005)  # 60: chosen
    fake_run(tmp_path, "d", mode="min", mcc=0.90, eval_cmi=0.001)  # not a max-CMI run
    fake_run(tmp_path, "e", task="sst2", accuracy=0.9, eval_cmi=0.001)  # another task
    fake_run(tmp_path, "f")  # unfinished: no results.json
    fake_run(tmp_path, "g", mcc=0.30, eval_cmi=0.0)
    fake_run(tmp_path, "h", eval_cmi=0.001)  # no metric
    fake_run(tmp_path, "i", best=False, mcc=0.9, eval_cmi=0.001)
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "results.json").write_text("{")
    (tmp_path / "not-a-run.txt").write_text("")
    selection = select_teacher(tmp_path, "cola", "mcc")
    assert selection.chosen.run == tmp_path / "c" and selection.chosen.best == tmp_path / "c" / "best"
    assert selection.chosen.ratio == pytest.approx(60)
    assert [c.run.name for c in selection.candidates] == ["c", "a", "b"]
    notes = "\n".join(selection.notes)
    assert len(selection.notes) == 5, notes
    for fragment in ("f: skipped, no results.json", "g: skipped, eval_cmi is 0.0", "h: skipped, results.json lacks 'mcc'",
                     "i: skipped, no best/", "j: skipped, results.json is not valid JSON"):
        assert fragment in notes, notes
    assert "highest of 3 max-CMI runs" in selection.summary() and str(tmp_path / "c" / "best") in selection.summary()
    # the rule alone, from the run files (a committed study keeps no best/): i has the highest ratio, 900
    assert select_teacher(tmp_path, "cola", "mcc", need_model=False).chosen.run == tmp_path / "i"


def test_a_tie_goes_to_the_first_run_by_name_and_says_so(tmp_path):
    fake_run(tmp_path, "seed1", mcc=0.2, eval_cmi=0.01)
    fake_run(tmp_path, "seed0", mcc=0.4, eval_cmi=0.02)
    selection = select_teacher(tmp_path, "cola", "mcc")
    assert selection.chosen.run.name == "seed0"
    assert selection.notes == ["runs seed0, seed1 tie at ratio 20: took seed0, the first by name"]


def test_no_usable_run_is_one_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="not a folder"):
        select_teacher(tmp_path / "missing", "cola", "mcc")
    with pytest.raises(TrainingError, match="no usable max-CMI run of task cola \\(no sub-folder holds one\\)"):
        select_teacher(tmp_path, "cola", "mcc")
    fake_run(tmp_path, "a", mcc=0.3, eval_cmi=-1e-9)
    fake_run(tmp_path, "b", mode="ce", mcc=0.3, eval_cmi=0.01)
    with pytest.raises(TrainingError) as e:
        select_teacher(tmp_path, "cola", "mcc")
    assert "a: skipped, eval_cmi is -1e-09" in str(e.value) and "\n" not in str(e.value)


def test_the_ce_teacher_is_the_ce_run_with_the_highest_metric_whatever_its_cmi(tmp_path):
    fake_run(tmp_path, "seed0", mode="ce", mcc=0.40, eval_cmi=0.010)
    fake_run(tmp_path, "seed1", mode="ce", mcc=0.50, eval_cmi=0.020)  # chosen: the best metric, the worst ratio
    fake_run(tmp_path, "seed2", mode="ce", mcc=0.50, eval_cmi=0.001)  # ties with seed1: the first by name wins
    fake_run(tmp_path, "max", mode="max", mcc=0.90, eval_cmi=0.001)  # not a ce run
    selection = select_teacher(tmp_path, "cola", "mcc", kind="ce")
    assert selection.chosen.run == tmp_path / "seed1"
    assert [c.run.name for c in selection.candidates] == ["seed1", "seed2", "seed0"]
    assert selection.notes == ["runs seed1, seed2 tie at dev metric 0.5: took seed1, the first by name"]
    assert selection.summary() == f"teacher {tmp_path / 'seed1' / 'best'}: dev mcc 0.5, the highest of 3 ce runs"
    with pytest.raises(TrainingError, match="no usable ce run of task sst2"):
        select_teacher(tmp_path, "sst2", "accuracy", kind="ce")
def test_the_ce_teacher_is_the_ce_run_with_the_highest_metric(tmp_path):
    fake_run(tmp_path, "a", mode="ce", mcc=0.40, eval_cmi=0.001)
    fake_run(tmp_path, "b", mode="ce", mcc=0.50, eval_cmi=0.020)  # chosen: the dev CMI plays no part
    fake_run(tmp_path, "c", mcc=0.90, eval_cmi=0.001)  # a max-CMI run: not a candidate
    fake_run(tmp_path, "d", mode="ce", best=False, mcc=0.95)
    selection = select_teacher(tmp_path, "cola", "mcc", kind="ce")
    assert selection.chosen.run == tmp_path / "b" and [c.run.name for c in selection.candidates] == ["b", "a"]
    assert selection.notes == ["d: skipped, no best/ folder"]
    assert "dev mcc 0.5, the highest of 2 ce runs" in selection.summary()


def test_results_already_read_are_not_read_again(tmp_path):
    fake_run(tmp_path, "a", mcc=0.40, eval_cmi=0.010)
    b = fake_run(tmp_path, "b", mcc=0.30, eval_cmi=0.005)
    (b / "results.json").write_text("{")  # damaged on disk since a report read it
    read = {b.resolve(): {"args": {"mode": "max", "task": "cola"}, "mcc": 0.30, "eval_cmi": 0.005}}
    assert select_teacher(tmp_path, "cola", "mcc", read=read).chosen.run == b
