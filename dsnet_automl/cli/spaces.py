"""``dsnet-automl spaces``: list, show and export slice grids."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._io import atomic_write_text
from ..factory import create_supernet, list_supernets, load_space
from ._app import app, console, fmt_count, handle_errors

spaces_app = typer.Typer(
    help="List, show and export slice grids (built-in supernets or search_spaces/*.yaml).",
    no_args_is_help=True,
)
app.add_typer(spaces_app, name="spaces")


@spaces_app.command("list")
@handle_errors
def list_cmd(
    dir: Annotated[Path, typer.Option(help="Also list YAML grids found in this directory.")] = Path(
        "search_spaces"
    ),
) -> None:
    """List built-in supernets and the slice-space YAML files in DIR."""
    table = Table(title="slice spaces")
    for col in ("name", "supernet", "dims", "grid size", "input"):
        table.add_column(col)
    rows = [(n, load_space(n)) for n in list_supernets()]
    if dir.is_dir():
        rows += [(str(p), load_space(p)) for p in sorted(dir.glob("*.y*ml"))]
    for label, sp in rows:
        table.add_row(
            label, sp.supernet, str(len(sp.dims)), f"{sp.size:,}", "x".join(map(str, sp.input_size))
        )
    console.print(table)


@spaces_app.command("show")
@handle_errors
def show_cmd(
    name: Annotated[str, typer.Argument(help="Supernet name or slice-space YAML path.")],
) -> None:
    """Show every dimension's values and the MACs/params of the smallest and largest sub-net."""
    space = load_space(name)
    print_space(create_supernet(space.supernet, space=space))


def print_space(net) -> None:
    """Rich tables of a supernet's grid and the MACs/params of its smallest and largest sub-net."""
    space = net.space
    table = Table(
        title=f"{space.supernet}  ({space.size:,} sub-nets, input {list(space.input_size)})"
    )
    table.add_column("dimension")
    table.add_column("values")
    for dim, choices in space.dims:
        table.add_row(dim, ", ".join(str(c) for c in choices))
    console.print(table)
    cost = Table(title="cost per sample")
    for col in ("sub-net", "MACs", "params"):
        cost.add_column(col)
    for label, cfg in (("smallest", space.smallest()), ("largest", space.largest())):
        cost.add_row(label, fmt_count(net.macs(cfg)), fmt_count(net.params(cfg)))
    console.print(cost)


class ExportFormat(StrEnum):
    yaml = "yaml"
    nni = "nni"


@spaces_app.command("export")
@handle_errors
def export_cmd(
    name: Annotated[str, typer.Argument(help="Supernet name or slice-space YAML path.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")
    ] = None,
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="yaml: editable grid (e.g. to narrow it for a search); nni: NNI search-space "
            'JSON ({"dim": {"_type": "choice", "_value": [...]}}), NNI not needed.',
        ),
    ] = ExportFormat.yaml,
) -> None:
    """Write a slice grid as editable YAML or as an NNI search space (JSON)."""
    space = load_space(name)
    if format is ExportFormat.nni:
        from ..integrations.nni import to_nni_search_space

        spec = to_nni_search_space(space)
        rows = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items()]
        text = "{\n" + ",\n".join(rows) + "\n}\n"  # one dimension a line
    else:
        text = space.to_yaml(header=f"slice grid of {space.supernet}")
    if out is None:
        sys.stdout.write(text)  # plain text, pipe-able (no rich markup or wrapping)
        return
    atomic_write_text(out, text)
    console.print(f"wrote {out}")
