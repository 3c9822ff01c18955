"""The typer app and shared CLI helpers (consoles, error handling)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import DsnetError

__all__ = [
    "EVAL_SPLITS",
    "app",
    "batch_sizes_option",
    "choice_option",
    "console",
    "err_console",
    "fmt_count",
    "handle_errors",
    "reflow_help",
]

EVAL_SPLITS = ("val", "test")  # the splits a trained net is evaluated on

app = typer.Typer(
    name="dsnet-automl",
    help="Hardware-aware DS-Net++ dynamic weight slicing: supernets, latency tables, "
    "Optuna/Ray Tune search and Pareto export.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn a :class:`DsnetError` into one red line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DsnetError as e:
            # escaped: messages quote things like "[nni]" that rich would eat as markup
            msg = escape(str(e))
            err_console.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def _reflow(doc: str) -> str:
    """Join the hard-wrapped lines of each docstring paragraph (typer's rich help keeps single
    line breaks after the first paragraph); list and indented paragraphs stay as written."""
    paras = []
    for para in doc.split("\n\n"):
        lines = para.splitlines()
        keep = any(ln.lstrip().startswith(("- ", "* ", "$ ")) or ln.startswith(" ") for ln in lines)
        paras.append(para if keep else " ".join(ln.strip() for ln in lines))
    return "\n\n".join(paras)


def reflow_help(group: typer.Typer) -> None:
    """Give every command of ``group`` (and its sub-groups) its docstring as reflowed help."""
    for cmd in group.registered_commands:
        if cmd.help is None and cmd.callback is not None and cmd.callback.__doc__:
            cmd.help = _reflow(inspect.getdoc(cmd.callback) or "")
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            reflow_help(sub.typer_instance)


def batch_sizes_option(text: str, flag: str = "--batch-sizes") -> list[int]:
    """``"1,32"`` -> ``[1, 32]``; anything else is one clear error."""
    from ..errors import DataError

    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise DataError(f"{flag} {text!r}: give positive integers, e.g. 1,32")
    return sizes


def choice_option(value: str, flag: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``; else one clear error naming the flag."""
    from ..errors import DataError

    if value not in allowed:
        raise DataError(f"{flag} {value!r}; allowed: {', '.join(allowed)}")
    return value


def fmt_count(n: float) -> str:
    """``1234567`` -> ``1.23M`` (MACs, params)."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


# -- deployment export options (export-dynamic, export, search) ---------------------------------
FORMATS_HELP = (
    "Comma-separated: pt2 (torch.export programs), onnx. Default: pt2,onnx at fp32, onnx at "
    "fp16/int8."
)
PRECISION_HELP = (
    "fp32, fp16 (ONNX float16, fp32 in/out) or int8 (ONNX Runtime static quantization: QDQ, "
    "per-channel weights, calibrated on --calib-images val images of the bundle's data)."
)
CALIB_HELP = "int8: val images to calibrate activation ranges on."
DEFAULT_CALIB_IMAGES = 256


def export_options(
    formats: str | None, precision: str, flags: tuple[str, str] = ("--formats", "--precision")
) -> tuple[tuple[str, ...], str]:
    """``(formats, precision)`` of an export, checked; one clear error naming the flag."""
    from ..export import FORMATS, check_formats
    from ..quantize import PRECISIONS

    choice_option(precision, flags[1], PRECISIONS)
    default = ",".join(FORMATS) if precision == "fp32" else "onnx"
    fmts = tuple(f.strip() for f in (formats or default).split(",") if f.strip())
    return check_formats(fmts, precision, flags), precision
