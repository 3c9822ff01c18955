"""The documentation site builds with warnings as errors (broken links, references and
docstrings fail it). Needs the ``docs`` extra, which the README's install command installs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.fault_table import REPO


def test_docs_build_with_warnings_as_errors(tmp_path) -> None:
    assert importlib.util.find_spec("sphinx") and importlib.util.find_spec("myst_parser"), (
        'the docs build needs the docs extra: pip install -e ".[docs]"'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(REPO / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-6000:]}"
    assert (tmp_path / "html" / "reference" / "cli.html").exists()
    assert (tmp_path / "html" / "results" / "index.html").exists()
