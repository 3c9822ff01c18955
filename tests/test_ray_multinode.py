"""Two (or three) Ray nodes on one machine with Ray's own tool (``ray.cluster_utils.Cluster``, as
Ray's tests do): where Stage I's and the search's work lands, and what happens when a node dies
mid-trial. Each node has its own CPUs and node id; "shared storage" is a local directory every
node sees, as in Ray's own tests (a multi-node run needs ``storage_path`` on shared storage).

A head with 0 CPUs holds only the driver, GCS and object store: the trials must run on the
worker nodes, so removing the node a trial runs on leaves it exactly one place to continue.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from dsnet_automl._io import read_starts
from dsnet_automl.training import TrainConfig
from dsnet_automl.training.ray_stage1 import (
    METRIC,
    TuneOptions,
    TuneSpace,
    train_data_parallel,
    tune_supernet,
)
from tests._ray_cluster import cluster, node_ids, remove_node_when

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _base(**kw) -> TrainConfig:
    fields = dict(space="ds_mobilenet_v1_tiny", data="digits", epochs=2, batch_size=32,
                  train_limit=256, device="cpu", progress=False)  # fmt: skip
    return TrainConfig(**(fields | kw))


FIXED = TuneSpace(lr=None, weight_decay=None, num_random=[1], ema_decay=None, mvco=None)


def _trial_dirs(storage: Path) -> list[Path]:
    return sorted(p.parent for p in storage.glob("*/*/starts.log"))


def test_stage1_sweep_spreads_over_two_nodes(tmp_path: Path) -> None:
    """Two identical Stage I trials at once on a 2-node cluster (1 CPU each) run one per node
    and give the same metric on either node (deterministic training)."""
    with cluster(0, 1, 1) as c:
        shared = tmp_path / "shared"
        tune_supernet(_base(), tmp_path / "two", space=FIXED,
                      options=TuneOptions(samples=2, asha=False, concurrent=2,
                                          address=c.address, storage_path=str(shared)))  # fmt: skip
        nodes = {read_starts(d)[0]["node"] for d in _trial_dirs(shared)}
        workers = node_ids(c) - {c.head_node.node_id}
    assert nodes == workers and len(nodes) == 2  # one trial per worker node
    two = pd.read_csv(tmp_path / "two" / "trials.csv")
    assert set(two["status"]) == {"ok"} and len(two) == 2
    assert two[METRIC].nunique() == 1  # the same trial gives the same result on either node


@pytest.mark.fault(
    fault="A cluster node is lost under a Stage I trial (slow test)",
    injected="the Ray node running the trial is removed once it saved an epoch",
    sees="Tune retries the trial on the other node",
    kept="the trial continues from that checkpoint; every epoch done once",
)
@pytest.mark.slow  # Ray fault tolerance (as in training/test_ray_stage1.py): ~30 s; -m slow
def test_stage1_trial_survives_its_node(tmp_path: Path) -> None:
    """Remove the node a Stage I trial runs on once it has persisted an epoch: Tune retries it
    on the other node from that checkpoint, and the run ends with every epoch done once."""
    shared = tmp_path / "shared"

    def node_with_checkpoint() -> str | None:
        for d in _trial_dirs(shared):
            starts = read_starts(d)
            if len(starts) == 1 and "node" in starts[0] and any(d.glob("checkpoint_*")):
                return starts[0]["node"]
        return None

    with cluster(0, 1, 1) as c, remove_node_when(c, node_with_checkpoint) as removed:
        tune_supernet(_base(epochs=5), tmp_path / "out", space=FIXED,
                      options=TuneOptions(samples=1, asha=False, max_failures=2,
                                          address=c.address, storage_path=str(shared)))  # fmt: skip
    assert removed, "the trial ended before a checkpoint was seen"
    (trial,) = _trial_dirs(shared)
    starts = read_starts(trial)
    assert [s["node"] for s in starts][0] == removed[0] and len(starts) == 2
    assert starts[1]["node"] != removed[0]  # continued on the surviving node
    table = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(table) == 1 and table["status"].iloc[0] == "ok" and table["epoch"].iloc[0] == 5
    ckpt = torch.load(tmp_path / "out" / "best" / "checkpoint.pt", map_location="cpu",
                      weights_only=False)  # fmt: skip
    assert ckpt["epoch"] == 5


@pytest.mark.fault(
    fault="A cluster node is lost under a search trial (slow test)",
    injected="the Ray node running a trial is removed mid gate training",
    sees="the trial moves to the other node",
    kept="it continues from its gate checkpoint; the study completes",
)
@pytest.mark.slow  # Ray fault tolerance (a node removed under a trial): ~40 s; pytest -m slow
def test_search_trials_spread_and_survive_a_node(make_study, tmp_path: Path) -> None:
    """``search --ray-address``: two trials at once land one per worker node; then a trial whose
    node is removed mid gate training continues on the other node from its gate checkpoint."""
    from dsnet_automl.search import load_study, run_search

    runs = str(tmp_path / "shared" / "runs")  # the study run dirs: on shared storage
    path = make_study("spread", trials=2, static_trials=0, runs_dir=runs)
    with cluster(0, 1, 1) as c:
        cfg = load_study(path)
        res = run_search(cfg, workers=2, ray_address=c.address, progress=False,
                         storage_path=str(tmp_path / "shared" / "spread"))  # fmt: skip
        workers = node_ids(c) - {c.head_node.node_id}
    done = [t for t in res.study.trials if t.state.name == "COMPLETE"]
    nodes = {read_starts(Path(t.user_attrs["bundle"]))[0]["node"] for t in done}
    assert len(done) == 2 and nodes == workers

    path = make_study("lose", trials=1, static_trials=0, max_failures=2, runs_dir=runs,
                                search={"gate_epochs": [8, 8], "hidden": [16]})  # fmt: skip
    cfg = load_study(path)
    trials = cfg.run_dir / "trials"

    def node_with_gate_checkpoint() -> str | None:
        for ckpt in trials.glob("ray_*/gate_train.ckpt"):
            starts = read_starts(ckpt.parent)
            if len(starts) == 1 and "node" in starts[0]:
                return starts[0]["node"]
        return None

    with cluster(0, 1, 1) as c, remove_node_when(c, node_with_gate_checkpoint) as removed:
        res = run_search(cfg, workers=1, ray_address=c.address, progress=False,
                         storage_path=str(tmp_path / "shared" / "lose"))  # fmt: skip
    assert removed, "gate training ended before a checkpoint was seen"
    (t,) = res.study.trials
    assert t.state.name == "COMPLETE" and t.user_attrs["resumed_from_epoch"] >= 1
    bundle = Path(t.user_attrs["bundle"])
    starts = read_starts(bundle)
    assert len(starts) == 2 and starts[0]["node"] == removed[0] != starts[1]["node"]
    history = torch.load(bundle / "gate_train.ckpt", map_location="cpu", weights_only=True)[
        "history"
    ]
    assert [h["epoch"] for h in history] == list(range(1, 9))  # none lost, none run twice
    from dsnet_automl.cli.search import _restarts

    (line,) = _restarts(res.study)  # what `dsnet-automl search` prints about it
    assert line.startswith("trial 0 ran 2 attempts") and removed[0][:12] in line


@pytest.mark.slow  # two Ray clusters and two data-parallel runs: ~60 s on 2 cores; -m slow
def test_stage1_data_parallel_workers_on_two_nodes(tmp_path: Path) -> None:
    """A 2-worker data-parallel Stage I run on two 1-CPU nodes: one rank per node (the run
    reports each rank's node), and the same result as the same run on one 2-CPU node."""
    runs = {}
    for name, layout in (("two", (1, 1)), ("one", (2,))):
        with cluster(0, *layout) as c:
            res = train_data_parallel(
                _base(), tmp_path / name,
                options=TuneOptions(workers_per_trial=2, address=c.address,
                                    storage_path=str(tmp_path / "shared" / name)),
            )  # fmt: skip
            runs[name] = (res, node_ids(c) - {c.head_node.node_id})
    (two, workers2), (one, workers1) = runs["two"], runs["one"]
    assert set(two.metrics["worker_nodes"].split(",")) == workers2 and len(workers2) == 2
    assert set(one.metrics["worker_nodes"].split(",")) == workers1 and len(workers1) == 1
    assert two.metrics[METRIC] == one.metrics[METRIC]  # gloo all-reduce: same math anywhere
    a = torch.load(two.checkpoint, map_location="cpu", weights_only=False)["model"]
    b = torch.load(one.checkpoint, map_location="cpu", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
