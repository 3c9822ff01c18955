"""Write calibrated constants into a device-profile YAML, keeping the rest of the file as it is,
or into the user's override file of a profile (:func:`write_override`, the default of
``tables calibrate``: shipped profiles stay as shipped).

Only the top-level ``calibrated:`` block is replaced (or appended): the file's other lines and
comments stay byte for byte. Pairs already calibrated and not re-fitted are kept. The result is
validated as a :class:`.profiles.DeviceProfile` before it replaces the file (atomically).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .._io import atomic_write_text, read_yaml
from .._validation import validated
from ..errors import LatencyTableError
from .profiles import (
    Calibrated,
    DeviceProfile,
    ProfileOverride,
    RemoteSection,
    override_path,
    read_override,
)

__all__ = ["write_calibrated", "write_override"]

_TOP_KEY = re.compile(r"^[^\s#]")


def _without_block(lines: list[str], key: str) -> list[str]:
    """``lines`` minus the top-level ``key:`` block (its indented, blank and comment lines)."""
    out, inside = [], False
    for line in lines:
        if line.startswith(f"{key}:"):
            inside = True
            continue
        if inside and _TOP_KEY.match(line):
            inside = False
        if not inside:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def write_calibrated(path: str | Path, fitted: dict[str, Calibrated], note: str = "") -> Path:
    """Merge ``fitted`` (``{"<backend>/<precision>": Calibrated}``) into the profile at ``path``.

    Raises:
        LatencyTableError: the result would not be a valid profile (nothing is written).
    """
    path = Path(path)
    old = (read_yaml(path, LatencyTableError, "device profile") or {}).get("calibrated") or {}
    merged = {**old, **{k: v.model_dump(exclude_none=True) for k, v in fitted.items()}}
    body = yaml.safe_dump(
        {"calibrated": dict(sorted(merged.items()))}, sort_keys=False, width=10_000
    )
    head, _, rest = body.partition("\n")
    comment = f"  # {note}\n" if note else ""
    kept = _without_block(path.read_text().splitlines(), "calibrated")
    text = "\n".join(kept) + f"\n{head}\n{comment}{rest}"
    validated(
        DeviceProfile, yaml.safe_load(text), LatencyTableError,
        f"{path}: calibrated profile would be invalid", "; nothing was written",
    )  # fmt: skip
    return atomic_write_text(path, text)


def write_override(
    name: str,
    *,
    calibrated: dict[str, Calibrated] | None = None,
    remote: RemoteSection | None = None,
    note: str = "",
) -> Path:
    """Merge ``calibrated`` pairs (and set ``remote``) in the user's override file of profile
    ``name`` (created when missing); returns its path."""
    old = read_override(name) or ProfileOverride()
    new = ProfileOverride(
        calibrated={**old.calibrated, **(calibrated or {})}, remote=remote or old.remote
    )
    body = new.model_dump(exclude_none=True, exclude_defaults=True)
    head = (
        f"# {name}: your additions to the shipped profile (they win over it); written by "
        f"dsnet-automl{' (' + note + ')' if note else ''}. Delete this file to go back.\n"
    )
    return atomic_write_text(
        override_path(name), head + yaml.safe_dump(body, sort_keys=True, width=10_000)
    )
