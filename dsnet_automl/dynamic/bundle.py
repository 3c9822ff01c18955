"""A :class:`~dsnet_automl.dynamic.DynamicNet` as files: the bundle directory that
``train-gate --out DIR`` and a search's trials write (``dynamic.yaml`` + weights), and its
checked load. :meth:`DynamicNet.save` / :meth:`DynamicNet.load` call these."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .._faults import failpoint
from .._io import atomic_path, atomic_write_text
from .._staging import drop_stale_temps, staging_error
from ..config import RouteSpace, SliceSpace
from ..errors import CheckpointError
from .gate import Gate

__all__ = ["FORMAT", "load_bundle", "save_bundle"]

FORMAT = "dsnet_automl.dynamic"


def _file_digest(path: str | Path) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a file (what ``dynamic.yaml`` records per weights file)."""
    with open(path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": Path(path).stat().st_size, "sha256": sha}


def _check_files(d: Path, files: dict[str, Any]) -> None:
    """Each weights file ``dynamic.yaml`` lists is there with its recorded size and sha256
    (bundles written before the list existed have none to check)."""
    for name, want in files.items():
        f = d / name
        got = _file_digest(f) if f.is_file() else None
        if got != want:
            what = "is missing" if got is None else "does not match dynamic.yaml"
            raise CheckpointError(
                f"bundle {str(d)!r} is incomplete: {name} {what} (a save was interrupted, or the "
                "file was replaced); re-run the command that wrote it (train-gate --out "
                f"{d} --resume, or the search), or copy the whole bundle again"
            )


def save_bundle(
    dyn: Any,
    out_dir: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    data: str | None = None,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write a self-contained bundle: ``dynamic.yaml``, ``supernet.pt``, ``gate.pt``.

    Each file is written atomically, ``dynamic.yaml`` last; it records the size and sha256
    of each weights file, so a save killed midway (new weights next to the old
    ``dynamic.yaml``) never loads: :func:`load_bundle` says the bundle is incomplete. Other files
    in ``out_dir`` (train-gate's checkpoint, an ``export/``) are left alone.

    ``calibration``: knob curves measured on val (:func:`dsnet_automl.headroom.knob_curves`)
    that ``--budget-ms`` picks a knob from."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [("supernet.pt", dyn.supernet), ("gate.pt", dyn.gate)]
    if dyn.route_heads is not None:
        parts.append(("route_heads.pt", dyn.route_heads))
    files, start = {}, time.time()
    for name, module in parts:
        with atomic_path(out / name) as tmp:
            torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, tmp)
            files[name] = _file_digest(tmp)
        failpoint(f"bundle:{name}")  # this weights file new, dynamic.yaml still the old one
    meta = {
        "format": FORMAT,
        "version": 1,
        "supernet": dyn.supernet.name,
        "num_classes": dyn.supernet.num_classes,
        "space": dyn.supernet.space.to_dict(),
        "gate_stage": dyn.gate_stage,
        "gate": dict(dyn.gate.init_kwargs),
        "route_heads": None
        if dyn.route_heads is None
        else [dict(g.init_kwargs) for g in dyn.route_heads],
        "routes": dyn.route_space.to_dict(),
        "data": data,
        "metrics": metrics,
        "train_config": train_config,
        "policy": {"name": dyn.policy, "knob": dyn.knob, "chain": list(dyn.chain)},
        "calibration": calibration,
        "files": files,
    }
    atomic_write_text(out / "dynamic.yaml", yaml.safe_dump(meta, sort_keys=False))
    for name in [*files, "dynamic.yaml"]:
        drop_stale_temps(out / name, before=start)
    return out


def load_bundle(
    cls: type, path: str | Path, *, mode: str = "sliced", map_location: str = "cpu"
) -> Any:
    """Load a bundle written by :func:`save_bundle` (``train-gate --out DIR``) as a ``cls``
    (:class:`~dsnet_automl.dynamic.DynamicNet`, which passes itself: this module sits below
    it), in eval mode."""
    from ..factory import create_supernet

    d = Path(path)
    staged = staging_error(d, "dynamic-net bundle")
    if staged:
        raise CheckpointError(staged)
    meta_path = d / "dynamic.yaml"
    if not meta_path.is_file():
        raise CheckpointError(
            f"{str(d)!r} is not a dynamic-net directory (no dynamic.yaml); it must come "
            "from 'dsnet-automl train-gate --out DIR'"
        )
    meta = yaml.safe_load(meta_path.read_text())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(meta_path)!r} is not a dsnet_automl dynamic-net file")
    space = SliceSpace.from_dict(meta["space"], source=str(meta_path))
    net = create_supernet(space.supernet, space=space, num_classes=int(meta["num_classes"]))
    gate = Gate(**meta["gate"])
    heads = meta.get("route_heads")
    heads = None if heads is None else nn.ModuleList(Gate(**kw) for kw in heads)
    _check_files(d, meta.get("files") or {})
    try:
        net.load_state_dict(torch.load(d / "supernet.pt", map_location, weights_only=True))
        gate.load_state_dict(torch.load(d / "gate.pt", map_location, weights_only=True))
        if heads is not None:
            heads.load_state_dict(torch.load(d / "route_heads.pt", map_location, weights_only=True))
    except (OSError, RuntimeError, EOFError) as e:
        raise CheckpointError(
            f"{str(d)!r}: weights missing or corrupt ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120]})"
        ) from None
    routes = RouteSpace.from_dict(meta["routes"], source=str(meta_path))
    dyn = cls(net.eval(), gate, routes, gate_stage=meta["gate_stage"], mode=mode, route_heads=heads)
    pol = meta.get("policy") or {}
    dyn.set_policy(pol.get("name", "gate"), pol.get("knob", 0.0), pol.get("chain"))
    dyn.metadata = meta
    return dyn.eval()
