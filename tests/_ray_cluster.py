"""Multi-node Ray on one machine with Ray's own test tool (``ray.cluster_utils.Cluster``), for
the multi-node tests and ``benchmarks/ray_multinode.py``.

Nodes advertise the machine's interface address (forcing ``127.0.0.1`` hangs the driver, see
DESIGN.md); each node gets its own CPUs and node id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests._local import act_once


@contextmanager
def cluster(head_cpus: int, *worker_cpus: int) -> Iterator:
    """A Ray cluster of a head and one node per ``worker_cpus``; shut down on exit."""
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": head_cpus, "include_dashboard": False},
    )
    try:
        for n in worker_cpus:
            c.add_node(num_cpus=n)
        c.wait_for_nodes()
        yield c
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def node_ids(c) -> set[str]:
    return {n.node_id for n in c.list_all_nodes()}


def remove_node_when(c, find: Callable[[], str | None], poll_s: float = 0.1):
    """``with remove_node_when(c, find) as removed:`` a background thread polls ``find()`` for
    a node id and removes that node of ``c`` once; ``removed`` gets its id."""

    def remove(node_id: str) -> bool:
        (node,) = [n for n in c.list_all_nodes() if n.node_id == node_id]
        c.remove_node(node, allow_graceful=False)
        return True

    return act_once(find, remove, poll_s)
