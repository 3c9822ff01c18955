"""Sphinx configuration: MyST Markdown pages, the furo theme, the CLI reference generated from
the Typer app at every build (``reference/cli.md``, see ``_cli.py``) and the API reference
from docstrings (autodoc + napoleon).

    pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _cli  # noqa: E402

_cli.write_reference(HERE / "reference" / "cli.md")

project = "dsnet_automl"
author = "dsnet_automl developers"
copyright = "2026, dsnet_automl developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "furo"
html_title = "dsnet_automl"
html_static_path: list[str] = []
