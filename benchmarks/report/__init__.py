"""The result pages' building blocks: every figure in the README and docs comes from here.

Each topic module in this package (listed in ``TOPICS``) reads committed files under
``benchmarks/results/`` and returns :class:`Page` objects (Markdown tables and matplotlib
figures, the target and verdict computed from the numbers) and :class:`StatusRow` objects (one
plain verdict each, for the README's status table). ``benchmarks/render_results.py`` writes
them; ``tests/test_results_pages.py`` re-renders and fails when a committed page differs.
"""

from __future__ import annotations

import io
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
DOCS = REPO / "docs"
PAGES_DIR = DOCS / "results"
NOT_RECORDED = "not recorded"
# the topic modules, in the order their pages and status rows appear: the product's main
# question (does routing beat static sub-nets with the same attention head?) first
TOPICS = [
    "routing",
    "search",
    "dynamic_speed",
    "slicing",
    "training",
    "stage1",
    "predictor",
    "calibration",
    "remote",
    "deployment",
    "ray",
]
STAMP_FIELDS = ("command", "host", "threads", "load_before", "commit", "date")


def load(name: str) -> Any:
    """The parsed JSON of ``benchmarks/results/<name>``."""
    return json.loads((RESULTS / name).read_text())


@dataclass(frozen=True)
class Stamp:
    """Where and how a results file was measured. Fields the file does not record come from the
    topic module's ``fallback`` (e.g. the command its README section named, the commit that
    committed it), else read "not recorded"; nothing is guessed."""

    file: str
    command: str = NOT_RECORDED
    host: str = NOT_RECORDED
    threads: str = NOT_RECORDED
    load_before: str = NOT_RECORDED
    commit: str = NOT_RECORDED
    date: str = NOT_RECORDED


def stamp(name: str, data: dict | None = None, **fallback: Any) -> Stamp:
    """The stamp of ``benchmarks/results/<name>``: its own fields (top level or under ``meta``)
    first, then ``fallback``. ``data`` skips re-reading a file already loaded."""
    if data is None:
        data = load(name) if name.endswith(".json") else {}
    own = dict(data.get("meta", {})) if isinstance(data, dict) else {}
    if isinstance(data, dict):
        own.update({k: v for k, v in data.items() if k in STAMP_FIELDS or k == "loadavg"})
    if "load_before" not in own and "loadavg" in own:
        own["load_before"] = own["loadavg"]
    cells = {}
    for f in STAMP_FIELDS:
        value = own.get(f, fallback.get(f))
        cells[f] = NOT_RECORDED if value in (None, "") else _plain(value)
    return Stamp(file=name, **cells)


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " / ".join(_plain(v) for v in value)
    if isinstance(value, float):
        return f"{round(value, 2):g}"
    return str(value)


def stamp_table(stamps: Iterable[Stamp]) -> str:
    """The 'measured with' table under each page's title."""
    rows = [
        [f"`{s.file}`", f"`{s.command}`" if s.command != NOT_RECORDED else s.command, s.host,
         s.threads, s.load_before, s.commit, s.date]
        for s in stamps
    ]  # fmt: skip
    return md_table(["file", "command", "host", "threads", "load before", "commit", "date"], rows)


def cell(value: Any) -> str:
    """One Markdown table cell: whitespace folded, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub/MyST pipe table."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    """The verdict word of a target: computed, never typed."""
    return "met" if ok else "missed"


def pct(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}%"


def times(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}x"


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def mean_spread(xs: Sequence[float], digits: int = 1) -> str:
    """'mean ± sd (min-max)' of a few seeds, as the rules of evidence want them reported."""
    m = statistics.fmean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.{digits}f} ± {sd:.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


@dataclass
class Page:
    """One results page, ``docs/results/<slug>.md`` (slug: the topic module's name with ``-``
    for ``_``): a title, the stamps of the files it reads,
    then Markdown sections; ``figures`` (name -> matplotlib Figure) become
    ``docs/results/img/<slug>-<name>.svg``, which a section shows with :meth:`img`."""

    slug: str
    title: str
    summary: str  # one sentence for the results index
    stamps: list[Stamp]
    sections: list[str]
    figures: dict[str, Any] = field(default_factory=dict)

    def img(self, name: str, alt: str) -> str:
        return f"![{alt}](img/{self.slug}-{name}.svg)"

    def markdown(self) -> str:
        head = [
            f"# {self.title}",
            "",
            "<!-- generated by benchmarks/render_results.py from benchmarks/results/: "
            "do not edit; run `python benchmarks/render_results.py` -->",
            "",
            self.summary,
            "",
            "Measured with:",
            "",
            stamp_table(self.stamps),
        ]
        return "\n".join(head + [""] + [s.strip() + "\n" for s in self.sections]).rstrip() + "\n"


@dataclass(frozen=True)
class StatusRow:
    """One row of the README's status table: a question, its plain verdict (yes/no/partly,
    met/missed), the figure it rests on, and the page that shows it."""

    question: str
    verdict: str
    evidence: str
    page: str  # a Page slug


def svg(fig: Any) -> str:
    """A matplotlib figure as SVG text that is byte-identical on every render (fixed id salt,
    no date), so the drift test can compare it."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "dsnet-automl"
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def new_figure(width: float = 6.0, height: float = 3.6):
    """A matplotlib (figure, axes) on the Agg backend with the pages' common style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt.subplots(figsize=(width, height))
