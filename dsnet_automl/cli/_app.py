"""The typer app and shared CLI helpers (consoles, error handling)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import DsnetError

__all__ = [
    "BAD_IMAGES_CHOICES",
    "BAD_IMAGES_HELP",
    "EVAL_SPLITS",
    "app",
    "bad_images_option",
    "batch_sizes_option",
    "choice_option",
    "console",
    "err_console",
    "fmt_count",
    "handle_errors",
    "reflow_help",
    "reports_bad_images",
    "storage_problem",
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
    """Turn a :class:`DsnetError` into one red line on stderr and exit code 1; so too a stray
    full disk, read-only place or full/read-only database (:func:`storage_problem`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..progress import use_reporter
        from ._progress import RichReporter

        bars = RichReporter(console)
        try:
            with use_reporter(bars):
                return fn(*args, **kwargs)
        except DsnetError as e:
            bars.stop()
            _fail(str(e))
        except Exception as e:
            bars.stop()
            msg = storage_problem(e)
            if msg is None:
                raise
            _fail(msg)

    return wrapper  # type: ignore[return-value]


def _fail(msg: str) -> None:
    # escaped: messages quote things like "[nni]" that rich would eat as markup
    err_console.print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1) from None


def storage_problem(e: BaseException) -> str | None:
    """One line for an error that is (or was caused by) a full disk or quota, a place that
    cannot be written (``OSError`` ENOSPC, EDQUOT, EROFS, EACCES, EPERM), or a database that is
    full, read-only or cannot be opened; ``None`` for anything else."""
    from .._io import disk_error

    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        mapped = disk_error(cur)
        if mapped is not None:
            return str(mapped)
        if type(cur).__module__.startswith("sqlalchemy"):
            from .._db import database_problem

            msg = database_problem(cur)
            if msg is not None:
                return msg
        cur = cur.__cause__ or cur.__context__
    return None


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
    from ..dynamic.export import FORMATS, check_formats
    from ..quantize import PRECISIONS

    choice_option(precision, flags[1], PRECISIONS)
    default = ",".join(FORMATS) if precision == "fp32" else "onnx"
    fmts = tuple(f.strip() for f in (formats or default).split(",") if f.strip())
    return check_formats(fmts, precision, flags), precision


# -- unreadable images of image folders (train-supernet, train-gate, run, eval-*, search) -------
BAD_IMAGES_HELP = (
    "Image folders, an image that does not decode: skip (a warning names it, the next readable "
    "image of its split takes its place, a training run lists it in OUT/bad_images.txt) or "
    "error (every image is decoded once first; the first bad one stops the command before "
    "anything is trained)."
)
BAD_IMAGES_CHOICES = ("skip", "error")


def bad_images_option(value: str, flag: str = "--bad-images") -> str:
    """``skip`` or ``error``; anything else is one clear error naming the flag."""
    return choice_option(value, flag, BAD_IMAGES_CHOICES)


class _WarningLine(logging.Handler):
    """The package's log warnings (``dsnet_automl.*``: skipped images, their per-epoch
    summary) as one yellow line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not end a command
            return
        line = f"[yellow]warning:[/yellow] {escape(msg)}"
        err_console.print(line, highlight=False, soft_wrap=True)


def _show_package_warnings() -> None:
    logger = logging.getLogger("dsnet_automl")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine(logging.WARNING))


_show_package_warnings()


def reports_bad_images(fn: F) -> F:
    """Print one line at the end of a command that skipped unreadable images (e.g. "2 image
    files skipped (unreadable): ..."); commands that evaluate image folders use it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..data import bad_images_summary, reset_skipped_images, skipped_images

        reset_skipped_images()
        result = fn(*args, **kwargs)
        note = bad_images_summary(skipped_images())
        if note:
            console.print(f"[yellow]{escape(note)}[/yellow]", highlight=False, soft_wrap=True)
        return result

    return wrapper  # type: ignore[return-value]
