"""The README's "From the paper to the code" section names only functions that exist."""
import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_equation_names_an_existing_function():
    section = README.read_text().split("\n## From the paper to the code")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \(\d+\)", line)]
    equations = {re.match(r"\| (\([^|]*\)) ", row).group(1) for row in rows}
    assert {"(5)", "(6)–(7)", "(8)", "(9)", "(11)", "(12)", "(13)", "(14)", "(15)–(16)"} <= equations
    for row in rows:
        names = re.findall(r"`((?:cmi|models|data)\.[\w.]+)`", row)
        assert names, f"no function named in {row}"
        for name in names:
            module, _, attr = name.rpartition(".")
            try:
                obj = importlib.import_module(module)
            except ModuleNotFoundError:  # a method: module.Class.method
                module, _, cls = module.rpartition(".")
                obj = getattr(importlib.import_module(module), cls)
            assert hasattr(obj, attr), f"{name} (README) does not exist"


def test_every_equation_names_existing_tests():
    section = README.read_text().split("\n## From the paper to the code")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \(\d+\)", line)]
    for row in rows:
        tests = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", row.rsplit(" | ", 1)[-1])
        assert tests, f"no test named in the 'tested by' column of {row}"
        for path, name in tests:
            source = (README.parent / path).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} (README) does not exist"
