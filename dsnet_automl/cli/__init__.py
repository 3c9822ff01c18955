"""``dsnet-automl`` command line (typer + rich).

Commands are thin: they parse arguments and call library functions. Each command group lives in
its own module here and is registered in :func:`_register`. Any :class:`DsnetError` is printed as
one red line and exits 1 with no traceback.
"""

from __future__ import annotations

import sys

from ..errors import DsnetError
from ._app import app, console, err_console, reflow_help

__all__ = ["app", "console", "err_console", "main"]


def _register() -> None:
    from . import gate, headroom, profile, run, search, slicify, spaces, tables, train  # noqa: F401

    reflow_help(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="dsnet-automl", standalone_mode=True)
    except DsnetError as e:  # pragma: no cover - typer normally routes through _app.run
        err_console.print(f"[red]error:[/red] {e}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
