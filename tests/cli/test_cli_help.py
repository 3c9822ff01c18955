"""Every command's --help renders (rich markup in a help string once crashed `search --help`)
and docstring paragraphs are reflowed, not printed with their source line breaks."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.cli._app import _reflow

runner = CliRunner()


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for cmd in group.registered_commands:
        name = cmd.name or cmd.callback.__name__.replace("_", "-")
        out.append((*prefix, name))
    for sub in group.registered_groups:
        out.append((*prefix, sub.name))
        out += _commands(sub.typer_instance, (*prefix, sub.name))
    return out


def test_every_command_help_renders():
    cmds = _commands(app)
    assert len(cmds) >= 15 and ("search",) in cmds and ("tables", "calibrate") in cmds
    for cmd in cmds:
        result = runner.invoke(app, [*cmd, "--help"], terminal_width=100)
        assert result.exit_code == 0, (cmd, result.output, result.exception)
        assert "Usage:" in result.output, cmd


def test_every_command_turns_errors_into_one_line():
    """``main`` has no catch-all: each command's callback is wrapped by ``handle_errors``."""
    from dsnet_automl.cli._app import handle_errors

    def callbacks(group: typer.Typer):
        for cmd in group.registered_commands:
            yield cmd.callback
        for sub in group.registered_groups:
            yield from callbacks(sub.typer_instance)

    wrapped_code = handle_errors(lambda: None).__code__
    cbs = list(callbacks(app))
    assert len(cbs) >= 15
    assert [cb.__name__ for cb in cbs if cb.__code__ is not wrapped_code] == []


def test_search_help_shows_the_backend_precision_literally():
    result = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "backend[/precision]" in result.output


def test_reflow_joins_paragraph_lines_and_keeps_lists():
    doc = "First line.\n\nOne sentence\nwrapped here.\n\n- item one\n- item two"
    assert _reflow(doc) == "First line.\n\nOne sentence wrapped here.\n\n- item one\n- item two"
