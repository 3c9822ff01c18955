"""The standalone timing script a remote device runs: Python 3.8 grammar, no imports of ours,
trtexec's summary parsed from real logs, and the one timing protocol the host shares."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsnet_automl.latency import device_timer
from dsnet_automl.latency.profiler import combine, measure
from dsnet_automl.latency.store import Timing

SCRIPT = Path(device_timer.__file__)


def test_script_is_python38_and_standalone() -> None:
    tree = ast.parse(SCRIPT.read_text(), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the script runs alone on the device"
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "contextlib", "gc", "json", "os", "platform", "re", "shutil",
                        "subprocess", "sys", "time", "numpy", "onnxruntime"}  # fmt: skip


def test_probe_runs_as_a_plain_script() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "probe"], capture_output=True, text=True,
                         check=True, cwd="/")  # fmt: skip
    info = json.loads(out.stdout)
    assert (
        info["python_ok"]
        and info["missing"] == []
        and "CPUExecutionProvider" in (info["providers"])
    )
    bad = subprocess.run([sys.executable, str(SCRIPT), "nonsense"], capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode == 2 and "usage" in bad.stderr


# Real trtexec performance summaries from public issue threads (the numbers are theirs):
# TensorRT 10 format, https://github.com/NVIDIA/TensorRT/issues/4177 (2024-10-03)
TRT10 = """[10/03/2024-10:47:59] [I] === Performance summary ===
[10/03/2024-10:47:59] [I] Throughput: 130.298 qps
[10/03/2024-10:47:59] [I] Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = 7.16092 ms, percentile(90%) = 10.2996 ms, percentile(95%) = 10.8698 ms, percentile(99%) = 12.9675 ms
[10/03/2024-10:47:59] [I] GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, median = 7.14139 ms, percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, percentile(99%) = 12.9485 ms
[10/03/2024-10:47:59] [I] Total GPU Compute Time: 2.96536 s
"""  # noqa: E501
# an older summary with "percentile(99%) 3.87793 ms" (no "="), a Jetson's trtexec,
# https://github.com/beyondli/Yolo_on_Jetson/issues/4 (2023-03-22)
TRT8 = (
    "GPU Compute Time: min = 3.17834 ms, max = 3.88306 ms, mean = 3.63242 ms, "
    "median = 3.71753 ms, percentile(99%) 3.87793 ms"
)


def test_parse_trtexec_real_summaries() -> None:
    r = device_timer.parse_trtexec(TRT10)
    assert r == {"median_ms": 7.14139, "p10_ms": 5.34595, "p90_ms": 10.2881, "mean_ms": 7.58404}
    r = device_timer.parse_trtexec(TRT8)
    assert r["median_ms"] == 3.71753 and r["p90_ms"] == 3.88306  # no 90th: the max
    with pytest.raises(ValueError, match="no 'GPU Compute Time'"):
        device_timer.parse_trtexec("[E] Error[4]: engine build failed")


def test_host_and_device_share_one_protocol() -> None:
    secs = [0.003, 0.001, 0.002, 0.010]
    med, p10, p90, n = device_timer.summarize(secs)
    assert (med, n) == (pytest.approx(2.5), 4)
    assert device_timer.summarize(secs, "min")[0] == pytest.approx(1.0)
    t = measure(lambda: None, warmup=1, repeats=5)
    assert t.repeats == 5 and t.median_ms >= 0
    both = combine([Timing(1.0, 0.5, 2.0, 3), Timing(3.0, 1.5, 4.0, 3), Timing(2.0, 1, 3, 3)])
    assert (both.median_ms, both.p90_ms, both.repeats) == (2.0, 3.0, 9)
    assert device_timer.combine_rounds([(1.0, 0.5, 2.0, 3), (3.0, 1.5, 4.0, 3)])[0] == 2.0
    assert np.isfinite(p10) and p90 > p10
