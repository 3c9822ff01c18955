"""Ray start-up shared by every Ray entry point (Stage I Tune runs, the search's Ray runner).

A local Ray instance by default (no dashboard, logs kept in the workers); ``address`` joins an
existing cluster: ``auto`` (the cluster this machine belongs to, e.g. inside ``ray job
submit``), ``ray://host:10001`` (Ray Client) or ``host:6379``. Ray is imported here and in the
``ray_*`` adapter modules only, so ``import dsnet_automl`` never pays for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DsnetError

__all__ = ["check_fits", "node_cpus", "ray_session", "storage_uri"]


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Start (and at exit stop) Ray unless it is already running in this process.

    Args:
        address: existing cluster to join; None starts a local instance.
        num_cpus: CPUs the local instance advertises (default: this machine's cores).

    Raises:
        DsnetError: the cluster at ``address`` cannot be reached (one line naming it).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                # "local": a new instance even if a cluster runs on this machine
                address="local",
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DsnetError(
            f"cannot start/join Ray at --ray-address {address!r}: {first}; start a cluster "
            "with 'ray start --head' or leave --ray-address out for a local run"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def storage_uri(path: str | Path) -> str:
    """Ray storage for results/checkpoints: URIs (``s3://``, ``gs://``, ``file://``) as given,
    local paths made absolute (Ray needs absolute paths; on a cluster use a shared mount)."""
    text = str(path)
    if "://" in text:
        return text
    return str(Path(text).expanduser().resolve())


def node_cpus() -> list[float]:
    """CPUs of every alive node of the connected cluster (Ray's public ``ray.nodes()``)."""
    import ray

    return [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]


def check_fits(cpus: float, what: str) -> None:
    """Raise one line when no node has ``cpus`` CPUs: such a trial would wait forever (a trial's
    CPUs must come from one node; the cluster's total does not help)."""
    sizes = node_cpus()
    if sizes and cpus > max(sizes):
        raise DsnetError(
            f"{what} asks for {cpus:g} CPUs but the largest node has {max(sizes):g} (nodes: "
            f"{', '.join(f'{c:g}' for c in sorted(sizes, reverse=True))}); ask for at most "
            f"{max(sizes):g}"
        )
