"""The documentation stays true to the repository: every Markdown file that code, tests or docs name exists (and
so does every section they cite in it), the README's headline numbers are those of the committed reports, the
README stays one short page, and every option the docs name is one that a script's --help lists."""
import importlib
import io
import re
import runpy
import sys
from contextlib import redirect_stdout
from pathlib import Path
from unittest.mock import patch

import pytest

from conftest import ROOT

README = ROOT / "README.md"
COMMANDS = ("train", "distill", "predict", "sweep", "report", "bench")  # each has --help
FOLDERS = ("cmi", "common", "data", "docs", "harness", "models", "results", "scripts", "tests")
MD_PATH = re.compile(r"(?<![\w./*-])([\w./*-]*\w\.md)\b")  # a path ending in .md (a * is a glob)
CITED_SECTION = re.compile(r"([\w./-]+\.md),\s+\"([^\"]+)\"")  # docs/design.md, "Section"
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")
FOREIGN_FLAGS = {  # options of the other programs the docs show: torchrun, SLURM's sbatch
    "--nproc_per_node", "--nnodes", "--node_rank", "--rdzv_backend", "--rdzv_endpoint", "--array", "--wrap",
    "--dependency",
}


def naming_files() -> list[Path]:
    """The code, tests, scripts and docs of the repository (not the runs' JSON files), but for this file, whose
    examples name missing files on purpose."""
    files = [*ROOT.glob("*.py"), *ROOT.glob("*.md")]
    for folder in FOLDERS:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".sh")]
    return sorted(p for p in files if p.resolve() != Path(__file__).resolve())


def named_md_paths(path: Path) -> list[str]:
    """The .md paths a file names, leaving out URLs and the output of a shell redirect (`> report.md`)."""
    text = re.sub(r"https?://\S+", "", path.read_text())
    return [m.group(1) for m in MD_PATH.finditer(text) if not text[: m.start()].rstrip().endswith(">")]


def resolve(name: str, naming: Path) -> list[Path]:
    """The files `name` means: relative to the naming file's folder or to the repository root."""
    for base in (naming.parent, ROOT):
        found = sorted(base.glob(name)) if "*" in name else [base / name] if (base / name).is_file() else []
        if found:
            return found
    return []


def headings(path: Path) -> set[str]:
    """The section titles of a Markdown file (lines starting with #, outside code blocks)."""
    titles, code = set(), False
    for line in path.read_text().splitlines():
        code ^= line.startswith("```")
        if not code and line.startswith("#"):
            titles.add(line.lstrip("#").strip())
    return titles


def test_every_named_md_file_and_cited_section_exists():
    missing, seen = [], 0
    for path in naming_files():
        here = path.relative_to(ROOT)
        for name in named_md_paths(path):
            seen += 1
            if not resolve(name, path):
                missing.append(f"{here} names {name}, which does not exist")
        for m in CITED_SECTION.finditer(path.read_text()):
            section = re.sub(r"\s*\n\s*(#\s*)?", " ", m.group(2)).strip()  # a citation may wrap a line
            target = resolve(m.group(1), path)
            if target and section not in headings(target[0]):
                missing.append(f"{here} cites section {section!r} of {m.group(1)}, which has no such section")
    assert seen > 20  # the search does find the references (README, docs, code comments)
    assert not missing, "\n".join(missing)


def test_the_reference_check_resolves_globs_and_skips_urls_and_redirect_outputs(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("See [x](https://example.org/GONE.md), `results/*/report.md` and docs/design.md.\n"
                   "    python report.py sweeps/glue > sweeps/glue/report.md\nBut not DESIGN.md.\n")
    names = named_md_paths(doc)
    assert names == ["results/*/report.md", "docs/design.md", "DESIGN.md"]
    assert len(resolve("results/*/report.md", doc)) >= 2 and resolve("docs/design.md", doc)
    assert resolve("DESIGN.md", doc) == []


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table of `text`: its header cells and its rows' cells."""
    def cells(line):
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    lines, tables = text.splitlines(), []
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.fullmatch(r"\|( ?-+ ?\|)+", lines[i + 1].strip()):
            rows = []
            for line in lines[i + 2:]:
                if not line.startswith("|"):
                    break
                rows.append(cells(line))
            tables.append((cells(lines[i]), rows))
    return tables


def same(a: str, b: str) -> bool:
    return a.replace("−", "-").split() == b.replace("−", "-").split()


def section(text: str, anchor: str) -> str:
    """The part of a Markdown text under the heading whose GitHub anchor is `anchor` ("Over tasks": over-tasks), up
    to the next heading of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        level = len(line) - len(line.lstrip("#"))
        if level and re.sub(r"[^\w\- ]", "", line[level:].strip().lower()).replace(" ", "-") == anchor:
            end = next((j for j in range(i + 1, len(lines))
                        if lines[j].startswith("#") and len(lines[j]) - len(lines[j].lstrip("#")) <= level), None)
            return "\n".join(lines[i:end])
    raise AssertionError(f"no heading with the anchor #{anchor}")


def test_readme_headline_numbers_are_those_of_the_committed_reports():
    """The rows of the tables between the README's headline markers: each row's first cell is an arm of the report
    its last cell links (of the section its #anchor names, if any), and every other cell equals that report's
    cell under the same column name (the n-th column of a name in the README is the n-th of that name there)."""
    text = README.read_text()
    block = text.split("<!-- headline")[1].split("<!-- /headline -->")[0]
    tables, reports = markdown_tables(block), set()
    assert tables and sum(len(rows) for _, rows in tables) >= 5
    for header, rows in tables:
        assert header[-1] == "report"
        for row in rows:
            [link] = re.findall(r"\]\(([^)]+\.md(?:#[\w-]+)?)\)", row[-1])
            path, _, anchor = link.partition("#")
            report = ROOT / path
            reports.add(report)
            where = section(report.read_text(), anchor) if anchor else report.read_text()
            matches = [(h, r) for h, r in markdown_tables(where)
                       if h[0] == header[0] and set(header[1:-1]) <= set(h)
                       for r in r if same(r[0], row[0])]
            assert matches, f"README headline: no row {row[0]!r} with columns {header[:-1]} in {link}"
            report_header, report_row = matches[0]
            for i, (column, value) in enumerate(zip(header[1:-1], row[1:-1]), 1):
                nth = header[1:i].count(column)  # the same column name before this one in the README's header
                theirs = report_row[[j for j, h in enumerate(report_header) if h == column][nth]]
                assert same(value, theirs), f"README headline {row[0]!r}, {column}: {value} but {link} says {theirs}"
    assert all(re.fullmatch(r"report(-[\w-]+)?\.md", p.name) for p in reports) and len(reports) >= 2


def test_the_headline_check_reads_the_section_an_anchor_names():
    text = "# Top\n| arm | x |\n| --- | --- |\n| a | 1 |\n## Over tasks\n| arm | x |\n| --- | --- |\n| a | 2 |\n" \
           "### Below it\ntext\n## Next\n| arm | x |\n| --- | --- |\n| a | 3 |\n"
    [(_, rows)] = [t for t in markdown_tables(section(text, "over-tasks"))]
    assert rows == [["a", "2"]] and "Below it" in section(text, "over-tasks")
    with pytest.raises(AssertionError):
        section(text, "missing")


def test_readme_is_one_short_page():
    assert len(README.read_text().splitlines()) <= 200


@pytest.fixture(scope="module")
def help_flags() -> set[str]:
    """Every option that the --help of a script (or of scripts/*.py) names."""
    flags = set()
    mains = [importlib.import_module(name).main for name in COMMANDS]
    mains += [lambda path=path: runpy.run_path(str(path), run_name="__main__")
              for path in sorted((ROOT / "scripts").glob("*.py"))]
    for main in mains:
        with pytest.raises(SystemExit) as exit_, redirect_stdout(io.StringIO()) as out, \
                patch.object(sys, "argv", ["script", "--help"]):
            main()
        assert exit_.value.code in (0, None)
        flags |= set(FLAG.findall(out.getvalue()))
    return flags


def test_every_flag_the_docs_name_is_in_some_scripts_help(help_flags):
    assert {"--task", "--mode", "--lam", "--teacher", "--split", "--shard", "--sections"} <= help_flags
    unknown = []
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for flag in sorted(set(FLAG.findall(path.read_text())) - help_flags - FOREIGN_FLAGS):
            unknown.append(f"{path.relative_to(ROOT)}: {flag}")
    assert not unknown, "options named in the docs that no script's --help has:\n" + "\n".join(unknown)
