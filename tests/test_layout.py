"""The layout of docs/design.md, "Layout", kept true: scripts import packages, never each other; models/, data/
and cmi/ stand alone (common/ is shared by all and imports none of them); running a job (harness/, and benchmark/,
bench.py's machinery) and studying finished runs (study/) are apart, and study/ never imports models/; no function
takes more than 8 parameters."""
import ast

import pytest

from conftest import ROOT

SCRIPTS = {p.stem for p in ROOT.glob("*.py") if p.stem != "setup"}
ALONE = {"models", "data", "cmi"}
RUNNING = {"harness", "benchmark"}  # running a job: train.py's machinery, bench.py's


def imported(path) -> set[str]:
    """The top-level names of the modules a file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources():
    return [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in ("tests", "results", "build")
            and ".venv" not in p.parts]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_no_script_imports_another(script):
    assert not imported(ROOT / f"{script}.py") & (SCRIPTS - {script})


@pytest.mark.parametrize("package", sorted(ALONE | {"common"}))
def test_the_packages_stand_alone(package):
    others = (ALONE | RUNNING | {"study"}) - {package}
    for path in (ROOT / package).glob("*.py"):
        wrong = imported(path) & (others | SCRIPTS)
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


@pytest.mark.parametrize("package, never", [("study", {"models"} | RUNNING), ("harness", {"study", "benchmark"}),
                                             ("benchmark", {"study"})])
def test_running_a_job_and_studying_runs_are_apart(package, never):
    paths = list((ROOT / package).glob("*.py"))
    assert len(paths) > 3
    for path in paths:
        wrong = imported(path) & (never | SCRIPTS)
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_no_function_takes_more_than_eight_parameters():
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs] + [x.arg for x in (a.vararg, a.kwarg) if x]
                n = len([x for x in names if x not in ("self", "cls")])
                if n > 8:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n})")
    assert not long, long


def test_transformers_and_peft_are_test_only_oracles():
    """What a run computes is written here: only the benchmark (bench.py's races) and scripts/ (recipe checks)
    import transformers, and nothing imports peft."""
    for path in sources():
        top = path.relative_to(ROOT).parts[0]
        oracles = {"peft"} if top in ("benchmark", "scripts") else {"transformers", "peft"}
        assert not imported(path) & oracles, path
