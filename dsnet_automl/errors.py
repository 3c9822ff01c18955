"""One error hierarchy for the package.

Every error a user can cause derives from :class:`DsnetError`; the CLI prints its message as
one red line and exits 1. Errors that are also bad values derive from ``ValueError`` too so that
plain Python callers can catch them the usual way.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DataError",
    "DiskFullError",
    "DsnetError",
    "LatencyTableError",
    "MissingExtraError",
    "NotWritableError",
    "SearchSpaceError",
    "StudyError",
    "TrainingInterrupted",
]


class DsnetError(Exception):
    """Base class of every error raised on purpose by dsnet_automl."""


class SearchSpaceError(DsnetError, ValueError):
    """A slice space, sub-net config or route space is malformed or does not fit a supernet."""


class DataError(DsnetError, ValueError):
    """A dataset spec or data directory is missing or malformed."""


class CheckpointError(DsnetError, ValueError):
    """A checkpoint is corrupt, missing or belongs to another supernet/space."""


class LatencyTableError(DsnetError, ValueError):
    """A latency table, device profile or latency database is missing, malformed or outdated."""


class MissingExtraError(DsnetError, ImportError):
    """An optional integration (e.g. NNI) is used but its extra is not installed."""


class StudyError(DsnetError, ValueError):
    """A study configuration or study database is malformed."""


class TrainingInterrupted(DsnetError):
    """Training stopped on SIGTERM/Ctrl-C after writing a checkpoint; resume with --resume."""


class _OSErrorWithMessage(DsnetError, OSError):
    """A :class:`DsnetError` that is also the ``OSError`` behind it (``errno``, ``filename``),
    so plain ``except OSError`` callers still catch it; ``str()`` is the one-line message."""

    def __init__(self, message: str, errno: int, filename: str | None = None) -> None:
        OSError.__init__(self, errno, message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # pickles (Ray) with the message, errno and file
        return (type(self), (self.message, self.errno, self.filename))


class DiskFullError(_OSErrorWithMessage):
    """A write failed for lack of space (``ENOSPC``) or quota (``EDQUOT``); the file it was to
    replace is unchanged and the partial temp file removed."""


class NotWritableError(_OSErrorWithMessage):
    """A file or directory cannot be written (permission denied, read-only file system)."""
