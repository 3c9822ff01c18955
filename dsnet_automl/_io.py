"""Small I/O helpers: atomic file writes (temp file in the same directory, then ``os.replace``)
and the start log of a (re)started Ray trial."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ._faults import failpoint

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "note_start",
    "ray_node_id",
    "read_starts",
    "read_yaml",
]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path`` atomically.

    On error the temp file is removed and ``path`` is left as it was. The file gets the mode
    a plain ``open()`` would give it (0666 minus the umask), not ``mkstemp``'s 0600: exports,
    plots and tables are read by other users (a web server, a teammate, a device's service
    account).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).exists():  # the writer may have replaced the temp file; mode it as open()
            os.chmod(tmp, 0o666 & ~_umask())
        failpoint(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
