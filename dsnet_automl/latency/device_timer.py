"""Time ONNX files on the device this script runs on: the only code of ours a remote device runs.

Standalone on purpose: ``dsnet-automl profile --remote HOST`` copies this one file to the device
over ssh and runs it with the device's ``python3`` (>= 3.8), which needs only ``numpy`` and
``onnxruntime`` (or ``onnxruntime-gpu``, or a Jetson wheel); it imports nothing else of ours and
is removed after the run. The host imports it too (:func:`time_calls` and :func:`summarize` are
the one timing protocol of local and remote profiling), so the two cannot drift apart.

Commands (each prints JSON, one object per line, on stdout)::

    python3 device_timer.py probe                  # what the device is and has
    python3 device_timer.py time MANIFEST.json     # one line per item, as each is measured

A manifest names the engine (``onnxruntime`` with a provider, or ``trtexec``), the protocol
(warmup, repeats, rounds, statistic, threads) and the items (ONNX file, input shape). Each item is
timed ``rounds`` times, round-robin over the items; its line is printed after its last round
(``median_ms`` is the median over rounds of each round's median, or fastest call with
``statistic: min``). Files are deleted as soon as they are timed, so a device's disk holds one
batch at a time.

Keep this file valid Python 3.8 (``tests/latency/test_device_timer.py`` parses it so): no
``match``, no ``X | Y`` types at run time, no ``list[int]`` outside annotations.
"""

# ruff: noqa: UP031, B905  (Python 3.8: no zip(strict=); %-formatting kept for old devices)
from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

MIN_PYTHON = (3, 8)
STATISTICS = ("median", "min")
# where each device's onnxruntime comes from (printed when it is missing)
INSTALL_HINT = (
    "python3 -m pip install numpy onnxruntime (Jetson: the onnxruntime-gpu wheel for your "
    "JetPack, https://elinux.org/Jetson_Zoo#ONNX_Runtime; Raspberry Pi OS 64-bit: "
    "python3 -m pip install onnxruntime in a venv)"
)


def summarize(seconds, statistic="median"):
    """``(median_ms, p10_ms, p90_ms, n)`` of call times in seconds (``statistic="min"``: the
    fastest call in place of the median)."""
    import numpy as np

    if statistic not in STATISTICS:
        raise ValueError("statistic %r is not one of: %s" % (statistic, ", ".join(STATISTICS)))
    ms = np.asarray(seconds, dtype=float) * 1e3
    p10, med, p90 = np.percentile(ms, [10, 50, 90])
    if statistic == "min":
        med = ms.min()
    return float(med), float(p10), float(p90), int(ms.size)


def combine_rounds(rounds):
    """Several ``(median, p10, p90, n)`` of one thing: the median of each statistic, n summed."""
    import numpy as np

    if len(rounds) == 1:
        return tuple(rounds[0])
    cols = list(zip(*rounds))
    return tuple(float(np.median(c)) for c in cols[:3]) + (int(sum(cols[3])),)


def time_calls(fn, warmup=5, repeats=30, sync=None):
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, garbage collection
    paused (a collection inside a timed call is noise, not latency)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    out = [0.0] * repeats
    was = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            out[i] = time.perf_counter() - t0
    finally:
        if was:
            gc.enable()
    return out


# ------------------------------------------------------------------------------------ probe
def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None


def _nvpmodel():
    """The Jetson power mode (``nvpmodel -q``), or None where there is no nvpmodel."""
    exe = shutil.which("nvpmodel")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and "WARN" not in ln]
    return " ".join(lines) or None


def probe():
    """What this device is and whether it can time: python, numpy, onnxruntime and its
    providers, machine identity, power mode, trtexec."""
    u = platform.uname()
    info = {
        "python": platform.python_version(),
        "python_ok": sys.version_info[:2] >= MIN_PYTHON,
        "executable": sys.executable,
        "uname": "%s %s %s %s" % (u.system, u.node, u.release, u.machine),
        "hostname": u.node,
        "machine": u.machine,
        "model": _read("/proc/device-tree/model") or _read("/sys/firmware/devicetree/base/model"),
        "cpus": os.cpu_count(),
        "nvpmodel": _nvpmodel(),
        "trtexec": shutil.which("trtexec")
        or next((p for p in ("/usr/src/tensorrt/bin/trtexec",) if os.access(p, os.X_OK)), None),
        "missing": [],
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        info["missing"].append("numpy")
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["providers"] = list(onnxruntime.get_available_providers())
    except ImportError:
        info["missing"].append("onnxruntime")
    info["install_hint"] = INSTALL_HINT
    return info


# ------------------------------------------------------------------------------------ timing
def _ort_runner(path, shape, provider, threads):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = [provider] + (
        ["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else []
    )
    sess = ort.InferenceSession(path, opts, providers=providers)
    name = sess.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return lambda: sess.run(None, feed)


# trtexec's performance summary (TensorRT 8.x/10.x), e.g.
# "[I] GPU Compute Time: min = 0.40 ms, max = 0.52 ms, mean = 0.41 ms, median = 0.41 ms,
#  percentile(90%) = 0.42 ms, percentile(95%) = 0.43 ms, percentile(99%) = 0.49 ms"
_TRT_LINE = re.compile(r"(?<!Total )GPU Compute Time: (.*)")
_TRT_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+)%\))\s*=?\s*([0-9.eE+-]+) ms")


def parse_trtexec(text):
    """``{"median_ms", "p10_ms" (trtexec's min), "p90_ms", "mean_ms"}`` from trtexec's output;
    raises ValueError when it has no GPU Compute Time summary."""
    found = None
    for line in text.splitlines():
        m = _TRT_LINE.search(line)
        if m:
            found = m.group(1)  # the last summary wins (trtexec prints one per run)
    if found is None:
        raise ValueError("trtexec printed no 'GPU Compute Time' summary")
    stats = {}
    for name, pct, value in _TRT_STAT.findall(found):
        stats["p%s" % pct if pct else name] = float(value)
    if "median" not in stats:
        raise ValueError("trtexec's GPU Compute Time summary has no median: %r" % found)
    return {
        "median_ms": stats["median"],
        "p10_ms": stats.get("min"),
        "p90_ms": stats.get("p90", stats.get("max")),
        "mean_ms": stats.get("mean"),
    }


def _trtexec(exe, path, precision, warmup_ms, iterations):
    cmd = [exe, "--onnx=%s" % path, "--warmUp=%d" % warmup_ms, "--iterations=%d" % iterations,
           "--avgRuns=%d" % iterations, "--duration=0"]  # fmt: skip
    if precision in ("fp16", "int8"):
        cmd.append("--%s" % precision)
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = out.stdout.decode("utf-8", "replace")
    if out.returncode != 0:
        tail = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise RuntimeError("trtexec failed on %s: %s" % (os.path.basename(path), tail[0]))
    return parse_trtexec(text)


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run_manifest(path):
    """Time every item of the manifest at ``path``; one JSON line per item."""
    with open(path) as f:
        man = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    engine, items = man.get("engine", "onnxruntime"), man["items"]
    rounds, statistic = int(man.get("rounds", 1)), man.get("statistic", "median")
    warmup, repeats = int(man.get("warmup", 5)), int(man.get("repeats", 30))
    seen = {}
    for r in range(rounds):
        for it in items:
            f = os.path.join(base, it["file"])
            t0 = time.perf_counter()
            if engine == "trtexec":
                res = _trtexec(man["trtexec"], f, man.get("precision", "fp32"), 200, repeats)
                stats = (res["median_ms"], res["p10_ms"], res["p90_ms"], repeats)
            else:
                run = _ort_runner(f, it["shape"], man["provider"], man.get("threads"))
                stats = summarize(time_calls(run, warmup, repeats), statistic)
                del run
            seen.setdefault(it["key"], []).append(stats)
            if r == rounds - 1:
                med, p10, p90, n = combine_rounds(seen[it["key"]])
                _emit({"key": it["key"], "median_ms": med, "p10_ms": p10, "p90_ms": p90,
                       "repeats": n, "seconds": time.perf_counter() - t0})  # fmt: skip
                with contextlib.suppress(OSError):
                    os.remove(f)


def main(argv):
    if sys.version_info[:2] < MIN_PYTHON:
        sys.stderr.write(
            "python %s is too old: the timing script needs python >= %d.%d\n"
            % (platform.python_version(), MIN_PYTHON[0], MIN_PYTHON[1])
        )
        return 3
    if len(argv) >= 1 and argv[0] == "probe":
        _emit(probe())
        return 0
    if len(argv) == 2 and argv[0] == "time":
        pidfile = os.path.join(os.path.dirname(os.path.abspath(argv[1])), "pid")
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
        try:
            run_manifest(argv[1])
        finally:
            with contextlib.suppress(OSError):
                os.remove(pidfile)
        return 0
    sys.stderr.write("usage: device_timer.py probe | time MANIFEST.json\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
