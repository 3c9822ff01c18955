"""The CLI reference page, generated from the Typer app at every docs build (docs/conf.py).

Typer renders the Markdown (``typer.cli.get_docs_for_click``, what ``typer ... utils docs``
prints), so the page always says what ``dsnet-automl COMMAND --help`` says. Help texts escape
a literal ``[`` as ``\\[`` for rich; the page shows the text as written, so the escapes are
removed first, once, for every command and option.
"""

from __future__ import annotations

from pathlib import Path

import click
import typer
from typer.cli import get_docs_for_click

from dsnet_automl.cli import app

INTRO = (
    "Generated from the Typer app (`dsnet_automl.cli.app`) at every docs build; "
    "`dsnet-automl COMMAND --help` prints the same text."
)


def _unescape(cmd: click.Command) -> None:
    for obj in [cmd, *cmd.params]:
        for attr in ("help", "short_help"):
            text = getattr(obj, attr, None)
            if isinstance(text, str):
                setattr(obj, attr, text.replace("\\[", "["))
    for sub in getattr(cmd, "commands", {}).values():
        _unescape(sub)


def reference() -> str:
    """The Markdown of the CLI reference page."""
    command = typer.main.get_command(app)
    _unescape(command)
    ctx = typer.Context(command, info_name="dsnet-automl")
    body = get_docs_for_click(obj=command, ctx=ctx, name="dsnet-automl", title="CLI reference")
    head, rest = body.split("\n", 1)
    return f"{head}\n\n{INTRO}\n{rest}"


def write_reference(path: Path) -> None:
    """Write the page when its text changed (an unchanged file keeps Sphinx's cache valid)."""
    text = reference()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
