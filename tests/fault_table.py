"""The fault table of docs/troubleshooting.md, built from the tests that inject each fault.

Every test that injects a real fault carries ``@pytest.mark.fault(fault=..., injected=...,
sees=..., kept=...)``; this script reads those markers (statically, with ``ast``: no test runs)
and renders one Markdown row per test between the page's ``fault-table`` comments.
``tests/test_fault_table.py`` fails when the page differs from what the tests say.

    python tests/fault_table.py           # print the table
    python tests/fault_table.py --write   # rewrite it in docs/troubleshooting.md
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "troubleshooting.md"
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"
COLUMNS = ("fault", "injected", "sees", "kept")
HEADER = ("Fault", "Where and how the test injects it", "What the user sees", "What is kept")


def _is_fault_marker(node: ast.expr) -> bool:
    f = node.func if isinstance(node, ast.Call) else None
    return (
        isinstance(f, ast.Attribute) and f.attr == "fault" and ast.unparse(f.value).endswith("mark")
    )


def collect(tests: Path = REPO / "tests") -> list[dict[str, str]]:
    """One dict per marked test: the four cells plus ``test`` (``path::name``), in file order."""
    rows = []
    for path in sorted(tests.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for dec in node.decorator_list:
                if not _is_fault_marker(dec):
                    continue
                cells = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
                missing = [c for c in COLUMNS if not cells.get(c)]
                if missing:
                    raise ValueError(f"{path}:{dec.lineno}: fault marker lacks {missing}")
                rel = path.relative_to(REPO).as_posix()
                rows.append({**cells, "test": f"{rel}::{node.name}", "line": node.lineno})
    return sorted(rows, key=lambda r: (r["test"].split("::")[0], r["line"]))


def render(rows: list[dict[str, str]]) -> str:
    """The Markdown table (with its test column) that sits between the README's markers."""

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = [
        "| " + " | ".join((*HEADER, "Test")) + " |",
        "|" + "---|" * (len(HEADER) + 1),
    ]
    for r in rows:
        name = r["test"].split("::")[1]
        cells = [cell(r[c]) for c in COLUMNS]
        cells[0] = cells[0][:1].upper() + cells[0][1:]  # a fault starts a sentence
        lines.append("| " + " | ".join(cells) + f" | `{name}` |")
    return "\n".join(lines)


def page_block(text: str) -> str:
    """The text between the page's fault-table markers (stripped)."""
    if START not in text or END not in text:
        raise ValueError(f"{PAGE.relative_to(REPO)} has no {START} ... {END} block")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str]) -> int:
    table = render(collect())
    if "--write" not in argv:
        print(table)
        return 0
    path = PAGE
    text = path.read_text()
    page_block(text)  # the markers are there
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"wrote {len(collect())} fault rows into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
