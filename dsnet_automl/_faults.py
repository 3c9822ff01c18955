"""Fault-injection points: how the fault tests kill a run at the worst moment, for real.

``DSNET_FAILPOINT=PATTERN[@N]`` makes the process SIGKILL itself the ``N``-th time (default the
first) it reaches a point whose name matches the glob ``PATTERN``. With the variable unset a
point costs one ``os.environ`` lookup. Points in the package:

- ``write:<file name>``: :func:`dsnet_automl._io.atomic_path` after the temp file is written and
  before it replaces the target (a checkpoint, bundle file, export part, table or plot);
- ``swap:<dir name>``: :func:`dsnet_automl._staging.staged_dir` once the whole new output
  (an export) is in ``<dir>.partial-PID``, before anything is swapped;
- ``swap-aside:<dir name>``: the same, between renaming the earlier ``<dir>`` to
  ``<dir>.old-PID`` and renaming the staged one in (``<dir>`` absent for a moment);
- ``bundle:<file name>``: :meth:`dsnet_automl.dynamic.DynamicNet.save` after a new weights file
  (``supernet.pt``, ``gate.pt``, ``route_heads.pt``), before the new ``dynamic.yaml``;
- ``study-export:trial``: :func:`dsnet_automl.search.export_study` after each trial's bundle and
  export, before the index;
- ``acctable:insert``: the accuracy table (:mod:`dsnet_automl.accuracy.table`) with a
  measured row inserted but not committed;
- any other name passed to :func:`failpoint` (``grep -rn "failpoint(" dsnet_automl``).
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
