"""``dsnet-automl slicify MODEL``: derive (or check) the slice grid of a timm model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._io import atomic_write_text
from ._app import app, console, handle_errors
from .spaces import print_space


@app.command("slicify")
@handle_errors
def slicify_cmd(
    model: Annotated[str, typer.Argument(help="timm model name, e.g. resnet50 (no weights load).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the slice grid to this YAML file.")
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option("--space", "-s", help="Check an edited grid YAML against the model instead."),
    ] = None,
) -> None:
    """Make a timm model a supernet: show its slice grid and costs, optionally write the grid.

    Recreate the supernet from the written file in Python with
    ``dsnet_automl.slicify(MODEL, space=FILE)``.
    """
    from ..timm_slicing import slicify

    net = slicify(model, space=space)
    sp = net.space
    print_space(net)
    if out is not None:
        header = (
            f"slice grid of {sp.supernet}; edit it, then "
            f"dsnet_automl.slicify({model!r}, space={str(out)!r})"
        )
        atomic_write_text(out, sp.to_yaml(header=header))
        console.print(f"wrote {out}")
