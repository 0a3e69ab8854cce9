"""Markdown tables, for report.py and bench.py."""


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: list[str], rows: list) -> list[str]:
    """The lines of a table (and a blank line after it); `rows`: one sequence of cells per row."""
    return [row(*header), row(*["---"] * len(header)), *(row(*cells) for cells in rows), ""]
