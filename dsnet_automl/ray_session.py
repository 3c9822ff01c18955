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

__all__ = ["ray_session", "storage_uri"]


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
