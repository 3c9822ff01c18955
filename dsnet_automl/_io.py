"""Small I/O helpers: atomic file writes (temp file in the same directory, then ``os.replace``)
and the start log of a (re)started Ray trial."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ._faults import failpoint

__all__ = [
    "DISK_FULL_ERRNOS",
    "NOT_WRITABLE_ERRNOS",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable_dir",
    "disk_error",
    "note_start",
    "ray_node_id",
    "read_starts",
    "read_yaml",
]


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# torch.save's C++ writer reports a failed write() (a full disk, almost always) without errno
_TORCH_WRITE_FAILED = re.compile(r"file write failed|PytorchStreamWriter failed writing")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path`` atomically.

    On error the temp file is removed and ``path`` is left as it was. The file gets the mode
    a plain ``open()`` would give it (0666 minus the umask), not ``mkstemp``'s 0600: exports,
    plots and tables are read by other users (a web server, a teammate, a device's service
    account).

    Raises:
        DiskFullError: the disk or quota filled up while writing (one line: the file, the
            bytes it needs and the free space).
        NotWritableError: the directory cannot be written (permission denied, read-only).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        mapped = disk_error(e, path, atomic=True)
        if mapped is None:
            raise
        raise mapped from e
    os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).exists():  # the writer may have replaced the temp file; mode it as open()
            os.chmod(tmp, 0o666 & ~_umask())
        failpoint(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException as e:
        written = _size(Path(tmp))
        Path(tmp).unlink(missing_ok=True)
        mapped = (
            disk_error(e, path, written=written, atomic=True) if isinstance(e, Exception) else None
        )
        if mapped is not None:
            raise mapped from e
        raise


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest parent that does."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount_point(path: Path) -> Path:
    path = _existing_ancestor(path.absolute())
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _mb(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def disk_error(
    e: BaseException, path: str | Path | None = None, *, written: int = 0, atomic: bool = False
) -> OSError | None:
    """``e`` (an ``OSError``, or the errno-less ``RuntimeError`` of a failed ``torch.save``)
    as one-line :class:`~.errors.DiskFullError` / :class:`~.errors.NotWritableError` about
    ``path`` (else ``e.filename``); ``None`` for any other error. ``written``: bytes the
    failed write got out (the need is at least that, and at least the old file's size).
    ``atomic``: the write went through :func:`atomic_path`, so the message can say that the
    previous file is unchanged (a plain write may have left it truncated)."""
    from .errors import DiskFullError, DsnetError, NotWritableError

    if isinstance(e, DsnetError):
        return None
    code = getattr(e, "errno", None) if isinstance(e, OSError) else None
    torch_full = isinstance(e, RuntimeError) and _TORCH_WRITE_FAILED.search(str(e)) is not None
    if code not in DISK_FULL_ERRNOS | NOT_WRITABLE_ERRNOS and not torch_full:
        return None
    name = path if path is not None else getattr(e, "filename", None)
    target = Path(name) if name else None
    if code in NOT_WRITABLE_ERRNOS:
        where = Path(getattr(e, "filename", None) or target or ".")
        if where.name.startswith(".") and where.name.endswith(".tmp"):  # our temp file
            where = where.parent
        why = "read-only file system" if code == errno.EROFS else "permission denied"
        kept = atomic and target is not None and target.is_file()
        # a stray EACCES may come from a read: only a write we made or EROFS says "write"
        verb = "write to" if atomic or code == errno.EROFS else "access"
        return NotWritableError(
            f"cannot {verb} {where}: {why}; choose another location or fix its permissions"
            + ("; the previous file is unchanged" if kept else ""),
            code,
            str(where),
        )
    what = "disk quota exceeded" if code == errno.EDQUOT else "no space left on device"
    need = max(written, _size(target) if target is not None else 0)
    mount = _mount_point(target.parent if target is not None else Path.cwd())
    try:
        free = f"{_mb(shutil.disk_usage(mount).free)} free on {mount}"
    except OSError:
        free = ""
    sizes = ", ".join(x for x in (f"needs ~{_mb(need)}" if need else "", free) if x)
    kept = ""
    if atomic and target is not None:
        kept = "; the previous file is unchanged" if target.is_file() else "; nothing was written"
    return DiskFullError(
        f"{what}" + (f" writing {target}" if target is not None else "")
        + (f" ({sizes})" if sizes else "") + f": free space and re-run{kept}",
        code if code is not None else errno.ENOSPC,
        str(target) if target is not None else None,
    )  # fmt: skip


def check_writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Check, before any work, that files can be made in the directory ``path`` (or, when it
    does not exist yet, that its nearest existing parent lets it be created); nothing is
    created. Else one line naming it and what to do.

    Raises:
        NotWritableError: permission denied / read-only file system / not a directory.
    """
    from .errors import NotWritableError

    path = Path(path)
    existing = _existing_ancestor(path)
    if not existing.is_dir():
        raise NotWritableError(
            f"cannot write to {path}: {existing} is not a directory; choose another {flag}",
            errno.ENOTDIR,
            str(existing),
        )
    try:
        if existing == path:
            with tempfile.TemporaryFile(dir=path):
                pass
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(existing))
    except OSError as e:
        if e.errno not in NOT_WRITABLE_ERRNOS:
            raise
        why = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        raise NotWritableError(
            f"cannot write to {path}: {why}; choose another {flag} or fix its permissions",
            e.errno,
            str(path),
        ) from None
    return path


def _umask() -> int:
    """The process umask: from /proc on Linux (reading it with ``os.umask`` means setting it,
    which other threads creating files at that moment would see), else set and set back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: str | Path, mode: str, write: Callable[[IO], None]) -> Path:
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic_write(path, "w", lambda f: f.write(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic_write(path, "wb", lambda f: f.write(data))


def ray_node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray); never imports Ray itself."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def note_start(trial_dir: str | Path, *extra: object) -> None:
    """Append ``PID TIME [extra...] node=ID`` to ``trial_dir/starts.log``: one line per
    (re)start of a Ray trial, so operators (and tests) see retries, the node each attempt ran
    on (``node=`` only inside Ray) and can find the trial's process."""
    Path(trial_dir).mkdir(parents=True, exist_ok=True)
    node = ray_node_id()
    words = [str(os.getpid()), f"{time.time():.3f}", *map(str, extra)]
    with open(Path(trial_dir) / "starts.log", "a") as f:
        f.write(" ".join(words + ([f"node={node}"] if node else [])) + "\n")


def read_starts(trial_dir: str | Path) -> list[dict[str, str]]:
    """The attempts ``starts.log`` records: ``{"pid", "time", "node"?, "extra"}`` per line."""
    path = Path(trial_dir) / "starts.log"
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        words = line.split()
        node = [w[5:] for w in words if w.startswith("node=")]
        rest = [w for w in words[2:] if not w.startswith("node=")]
        out.append({"pid": words[0], "time": words[1], "extra": " ".join(rest)}
                   | ({"node": node[0]} if node else {}))  # fmt: skip
    return out


def read_yaml(path: str | Path, error: type[Exception], what: str = "") -> Any:
    """Parse a YAML file; a missing file or a syntax error is one line (file, line, problem)
    raised as ``error`` (a :class:`~dsnet_automl.errors.DsnetError` subclass), no traceback."""
    import yaml

    path = Path(path)
    label = f"{what} {str(path)!r}" if what else repr(str(path))
    try:
        text = path.read_text()
    except OSError as e:
        raise error(f"{label}: cannot read ({e.strerror or e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{label}:{where} not valid YAML ({problem})") from None
