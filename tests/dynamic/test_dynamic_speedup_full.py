"""Smoke test of benchmarks/dynamic_speedup_full.py (--quick on one tiny net, two torch modes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import dynamic_speedup_full as bench  # noqa: E402


def test_quick_run_writes_cells_with_sane_efficiency(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "r.json"
    try:
        bench.main(
            [
                "--quick",
                "--nets",
                "ds_mobilenet_v1_tiny",
                "--modes",
                "sliced,extracted",
                "--batch-sizes",
                "1,8",
                "--samples",
                "8",
                "--threads",
                "1",
                "--json",
                str(out),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    r = json.loads(out.read_text())
    net = r["nets"]["ds_mobilenet_v1_tiny"]
    assert {"cells", "overhead", "spaces", "mixes", "parity_max_abs_diff"} <= set(net)
    cells = net["cells"]
    assert len(cells) == 2 * 2 * 3  # modes x batches x mixes
    for c in cells:
        # timings of tiny nets on a shared machine are noise: check the arithmetic, not speed
        assert 0 < c["efficiency"] < 10 and c["speedup"] > 0 and c["ideal"] > 0, c
        assert abs(c["efficiency"] - c["speedup"] / c["ideal"]) < 1e-9
        if c["mix"] == "all-largest":
            assert c["ideal"] == 1.0 and c["macs_ratio"] == 1.0
        assert sum(c["route_counts"]) == (c["batch"] if c["batch"] > 1 else 8)
    mix = net["mixes"]["macs/2.5"]["proportions"]
    assert abs(sum(mix) - 1) < 1e-9
    # the mixes really route as forced: all-largest only takes route 3, all-smallest route 0
    by = {(c["mode"], c["batch"], c["mix"]): c for c in cells}
    assert by[("sliced", 8, "all-largest")]["route_counts"] == [0, 0, 0, 8]
    assert by[("sliced", 8, "all-smallest")]["route_counts"] == [8, 0, 0, 0]
    assert max(net["parity_max_abs_diff"]["relative_to_max_logit"].values()) < 1e-4
    assert set(net["overhead"]) == {"sliced", "extracted"}
