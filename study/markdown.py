"""Markdown tables, for report.py, bench.py and scripts/bench_diagnostics.py."""


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: list[str], rows: list) -> list[str]:
    """The lines of a table (and a blank line after it); `rows`: one sequence of cells per row."""
    return [row(*header), row(*["---"] * len(header)), *(row(*cells) for cells in rows), ""]


def captioned(caption: str, header: list[str], rows: list) -> str:
    """A caption, then its table, as one string (a section of bench.py's report)."""
    return caption + "\n\n" + "\n".join(table(header, rows)).rstrip()


def fmt(x, spec=".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def spread(value, quartiles, spec=".2f") -> str:
    """A ratio in bold with its quartiles over rounds: **1.02** (0.97 to 1.06)."""
    if value is None:
        return "n/a"
    return f"**{value:{spec}}** ({quartiles[0]:{spec}} to {quartiles[1]:{spec}})"
