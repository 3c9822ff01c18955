"""All-or-nothing output directories (exports): written into a staging directory next to the
target, then swapped in.

:func:`staged_dir` yields ``OUT.partial-<pid>``; when the writer finishes, an existing ``OUT`` is
renamed to ``OUT.old-<pid>``, the staging directory renamed to ``OUT`` and the old one removed.
A process killed at any moment leaves ``OUT`` either as it was (a complete earlier export), or
complete and new, or - killed between the two renames - absent with the earlier one aside as
``OUT.old-<pid>``. The next :func:`staged_dir` for ``OUT`` (or :func:`recover`) removes the
leftovers of dead processes and puts an aside earlier export back when ``OUT`` is absent.
Loaders refuse a path inside a staging directory (:func:`staging_error`). Every directory
written this way holds an empty ``.dsnet-output``: only directories with it are ever taken for
leftovers, so a user's own ``x.old-2023`` is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._faults import failpoint

__all__ = ["MARK", "drop_stale_temps", "recover", "staged_dir", "staging_error"]

_STAGE = re.compile(r"^(?P<target>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)$")
# an empty file in every directory staged_dir writes: only such directories are ever taken for
# staging leftovers (removed, put back), never a user's own "x.old-2023"
MARK = ".dsnet-output"


def _ours(d: Path) -> re.Match[str] | None:
    m = _STAGE.match(d.name)
    return m if m and (d / MARK).is_file() else None


def _staging_match(path: str | Path) -> tuple[Path, re.Match[str]] | None:
    """The first component of ``path`` that is a staging (``X.partial-PID``) or set-aside
    (``X.old-PID``) directory, with its name's parts; else ``None``."""
    p = Path(path).absolute()
    for d in (*reversed(p.parents), p):
        m = _ours(d)
        if m:
            return d, m
    return None


def staging_error(path: str | Path, what: str) -> str | None:
    """One line for a loader given ``path`` inside a staging directory, else ``None``."""
    found = _staging_match(path)
    if found is None:
        return None
    d, m = found
    target = d.with_name(m["target"])
    if m["kind"] == "partial":
        why = "the staging directory of a write that did not finish (the process was killed)"
    else:
        why = "an earlier output set aside while a new one was swapped in"
    return (
        f"{str(path)!r} is not a complete {what}: {d.name!r} is {why}; use {str(target)!r}, "
        "or re-run the command that writes it (leftovers are removed then)"
    )


def drop_stale_temps(path: str | Path, *, before: float) -> None:
    """Remove the temp files of ``path`` (``_io.atomic_path``'s ``.NAME.*.tmp``) that a killed
    writer left: those last written before ``before`` (a live writer's temp file is newer)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < before:
                tmp.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier, failed call in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(target: str | Path) -> None:
    """Clean up after writers of ``target`` that died: remove their staging directories; put an
    earlier ``target`` they set aside back when ``target`` is absent, else remove it."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    leftovers = []
    for p in target.parent.iterdir():
        m = _ours(p)
        if m and m["target"] == target.name and not _alive(int(m["pid"])):
            leftovers.append((m["kind"], p))
    for kind, p in sorted(leftovers, key=lambda kp: kp[0] == "partial"):  # "old" first
        if kind == "old" and not target.exists():
            os.rename(p, target)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def staged_dir(
    target: str | Path, *, marker: str, what: str, error: type[Exception]
) -> Iterator[Path]:
    """Yield an empty staging directory next to ``target``; on success it replaces ``target``
    (see the module). On error it is removed and ``target`` is left as it was.

    Args:
        marker: the file a complete output holds (``runtime.json``, ``index.yaml``): an
            existing non-empty ``target`` without it is not replaced (it is not ours).
        what: the output's name in messages.
        error: the :class:`~dsnet_automl.errors.DsnetError` class raised for such a ``target``.
    """
    target = Path(target)
    recover(target)
    if target.exists() and not target.is_dir():
        raise error(f"{what} {str(target)!r} exists and is not a directory; pass another path")
    if os.path.ismount(target):
        raise error(
            f"{what} {str(target)!r} is a mount point, which cannot be replaced as a whole; pass "
            f"a directory inside it (e.g. {str(target / 'export')!r})"
        )
    done = (target / marker).is_file() or (target / MARK).is_file()
    if target.is_dir() and any(target.iterdir()) and not done:
        raise error(
            f"{str(target)!r} is not empty and holds no {marker}, so it is not an earlier {what}; "
            "it was left untouched: pass a new or empty directory, or move its files away"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    (stage / MARK).write_bytes(b"")
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    try:
        yield stage
        failpoint(f"swap:{target.name}")  # the whole new output staged, nothing swapped yet
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            (target / MARK).touch()  # an export by an older version: recover() may put it back
            os.rename(target, old)
            failpoint(f"swap-aside:{target.name}")  # target absent, the earlier one aside
            os.rename(stage, target)
            _fsync_dir(target.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(stage, target)
            _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if old.exists() and not target.exists():
            os.rename(old, target)
        raise
