"""Figures cannot drift: the result pages, their plots and the README's status table are what
the committed files in benchmarks/results/ give (benchmarks/render_results.py)."""

from __future__ import annotations

import importlib.util
import json

from tests.fault_table import REPO


def _renderer():
    spec = importlib.util.spec_from_file_location(
        "render_results", REPO / "benchmarks" / "render_results.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_pages_match_the_results_files() -> None:
    render = _renderer()
    bad = render.stale(render.outputs())
    assert not bad, f"stale result pages (run python benchmarks/render_results.py): {bad}"


def test_every_results_file_is_shown_on_a_page() -> None:
    """A results file no page reads is a figure nobody can see (or a leftover)."""
    render = _renderer()
    pages, _ = render.collect()
    shown = {s.file.split("/")[0] for p in pages for s in p.stamps}
    files = {p.name for p in (REPO / "benchmarks" / "results").iterdir()}
    assert files - shown == set(), f"results files on no page: {sorted(files - shown)}"


def test_every_status_row_is_a_plain_verdict() -> None:
    _, rows = _renderer().collect()
    assert rows
    for r in rows:
        assert r.verdict.split()[0].lower().strip(",;") in {
            "yes", "no", "partly", "met", "missed", "level", "not"
        }, r  # fmt: skip
    json.dumps([r.__dict__ for r in rows])
