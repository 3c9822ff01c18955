"""``dsnet-automl`` command line (typer + rich).

Commands are thin: they parse arguments and call library functions. Each command group lives in
its own module here and is registered in :func:`_register`. Every command is wrapped in
:func:`._app.handle_errors`: a :class:`~dsnet_automl.errors.DsnetError` is printed as one red
line and exits 1 with no traceback.
"""

from __future__ import annotations

from ._app import app, console, err_console, reflow_help

__all__ = ["app", "console", "err_console", "main"]


def _register() -> None:
    from . import gate, headroom, profile, run, search, slicify, spaces, tables, train  # noqa: F401

    reflow_help(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (each command's errors are one line: ``_app.handle_errors``)."""
    app(args=argv, prog_name="dsnet-automl", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main()
