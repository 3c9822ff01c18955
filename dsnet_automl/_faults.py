"""Fault-injection points: how the fault tests kill a run at the worst moment, for real.

``DSNET_FAILPOINT=PATTERN[@N]`` makes the process SIGKILL itself the ``N``-th time (default the
first) it reaches a point whose name matches the glob ``PATTERN``. With the variable unset a
point costs one ``os.environ`` lookup. Points in the package:

- ``write:<file name>``: :func:`dsnet_automl._io.atomic_path` after the temp file is written and
  before it replaces the target (a checkpoint, bundle file, export part, table or plot);
- the names passed to :func:`failpoint` elsewhere (``grep -rn "failpoint(" dsnet_automl``).
"""

from __future__ import annotations

import fnmatch
import os
import signal

__all__ = ["ENV", "failpoint"]

ENV = "DSNET_FAILPOINT"
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """SIGKILL this process here when ``DSNET_FAILPOINT`` selects ``name`` (see the module)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    pattern, _, nth = spec.rpartition("@") if "@" in spec else (spec, "", "1")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    _hits[pattern] = _hits.get(pattern, 0) + 1
    if _hits[pattern] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
