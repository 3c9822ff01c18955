"""Deployment formats: the torch.export ONNX exporter vs the legacy one, and int8 / fp16 exports
in the torch-free ONNX Runtime runtime (``benchmarks/onnx_exporters.py`` ->
``onnx_exporters_cpu.json``, ``onnx_exporters_cpu_run2.json``; ``benchmarks/int8_deploy.py``
-> ``int8_deploy_accuracy.json``, ``int8_deploy_speed_cpu.json``)."""

from __future__ import annotations

import statistics
from pathlib import PurePosixPath

from . import Page, StatusRow, load, md_table, new_figure, stamp, verdict

EXPORTERS = ("onnx_exporters_cpu.json", "onnx_exporters_cpu_run2.json")
ACCURACY = "int8_deploy_accuracy.json"
SPEED = "int8_deploy_speed_cpu.json"
MAX_CHANGE_PT = 1.0  # target: int8 top-1 within 1 point of fp32


def _family_medians(data: dict) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in data["rows"]:
        by.setdefault(r["family"], []).append(r["ratio_new_over_legacy"])
    return {f: statistics.median(v) for f, v in by.items()}


def _exporter_section(runs: list[dict]) -> tuple[str, list[str]]:
    meds = [_family_medians(d) for d in runs]
    families = list(dict.fromkeys(r["family"] for r in runs[0]["rows"]))
    rows = [[f] + [f"{m[f]:.2f}" for m in meds] for f in families]
    table = md_table(["family", "run 1: median new / legacy", "run 2: median new / legacy"], rows)
    both = [f for f in families if all(m[f] > 1 for m in meds)]
    cells = [
        f"{min(r['ratio_new_over_legacy'] for r in d['rows']):.2f}-"
        f"{max(r['ratio_new_over_legacy'] for r in d['rows']):.2f} in run {i + 1}"
        for i, d in enumerate(runs)
    ]
    new_s = [r["export_s_new"] for d in runs for r in d["rows"]]
    old_s = [r["export_s_legacy"] for d in runs for r in d["rows"]]
    shapes = sorted({(r["subnet"], r["batch"]) for r in runs[0]["rows"]})
    intro = (
        "ONNX Runtime CPU latency of the file from the `torch.export`-based exporter (what exports "
        "and latency tables use now) over the legacy TorchScript-based exporter's file, the two "
        "files timed interleaved; sub-nets and batches: "
        + ", ".join(f"{s} at batch {b}" for s, b in shapes)
        + f", {runs[0]['threads']} threads. Run 1 and run 2 differ only in rounds and repeats "
        "(see the commands above). Median ratio per family over its "
        f"{len(runs[0]['rows']) // len(families)} cells (< 1: the new file is faster):"
    )
    notes = (
        "Single cells range "
        + " and ".join(cells)
        + f", on a shared {runs[0]['cpus']}-core host. Families whose median is above 1 in both "
        "runs: "
        + (", ".join(f"`{f}`" for f in both) if both else "none")
        + ". The new exporter is slower to *export*: "
        f"{min(new_s):.1f}-{max(new_s):.1f} s per sub-net against "
        f"{min(old_s):.2f}-{max(old_s):.2f} s for the legacy one (both runs)."
    )
    return "## The torch.export ONNX exporter\n\n" + intro + "\n\n" + table + "\n\n" + notes, both


def _accuracy_rows(data: dict) -> list[list[str]]:
    rows = []
    for r in data["accuracy"]:
        name = PurePosixPath(r["bundle"]).name
        if r.get("model"):
            name += f" ({r['model']})"
        rows.append([
            name, r["data"], r["test_images"],
            " / ".join(str(n) for n in r["fp32"]["route_hist"]),
            f"{r['fp32']['top1']:.4f}",
            f"{r['fp16']['top1_change_pt']:+.2f} pt",
            f"{r['int8']['top1_change_pt']:+.2f} pt",
            f"{r['int8']['route_agreement_pct']:.2f}%",
            f"{r['int8']['prediction_agreement_pct']:.2f}%",
        ])  # fmt: skip
    return rows


def _accuracy_section(data: dict) -> str:
    header = [
        "bundle", "data", "test images", "routes (fp32, images per route)", "fp32 top-1",
        "fp16 change", "int8 change", "int8: same route", "int8: same prediction",
    ]  # fmt: skip
    intro = (
        "Every Pareto bundle of a demo search (`studies/runs/demo/export/trial_*`) and a "
        "slicified timm model with a gate (`timm`), each exported at fp32, fp16 and int8 "
        "(calibrated on val images) and run in the torch-free runtime on the same test images. "
        "Change: test top-1 of the fp16 / int8 file minus fp32's, in points; same route / same "
        "prediction: the share of test images whose route / predicted class matches fp32's."
    )
    single = [
        PurePosixPath(r["bundle"]).name
        for r in data["accuracy"]
        if sum(1 for n in r["fp32"]["route_hist"] if n) == 1
    ]
    notes = (
        f"{len(single)} of {len(data['accuracy'])} bundles send every test image to one route "
        f"({', '.join(single)}), so those rows test one route only. These are 2-4-route nets "
        "on 32x32 inputs, one seed, one calibration draw."
    )
    return "\n\n".join(["## int8 and fp16 accuracy", intro, md_table(header,
                        _accuracy_rows(data)), notes])  # fmt: skip


def _speed(data: dict) -> tuple[dict, list[str]]:
    """{(net, batch): {part: row}} and the part names in file order."""
    by: dict[tuple[str, int], dict[str, dict]] = {}
    for r in data["speed"]:
        by.setdefault((r["net"], r["batch"]), {})[r["part"]] = r
    parts = list(dict.fromkeys(r["part"] for r in data["speed"]))
    return by, parts


def _whole_routes(cells: dict[str, dict]) -> list[tuple[str, float, float]]:
    """(route, fp32 ms, int8 ms) of the prefix plus each route, summed."""
    pre = cells["prefix"]
    return [
        (p, pre["fp32_ms"] + r["fp32_ms"], pre["int8_ms"] + r["int8_ms"])
        for p, r in cells.items()
        if p != "prefix"
    ]


def _speed_counts(data: dict) -> dict[int, tuple[int, int, int, int]]:
    """Per batch: (parts faster at int8, parts, whole routes faster, whole routes)."""
    by, _ = _speed(data)
    out: dict[int, list[int]] = {}
    for (_, batch), cells in sorted(by.items()):
        c = out.setdefault(batch, [0, 0, 0, 0])
        c[0] += sum(r["int8_ms"] < r["fp32_ms"] for r in cells.values())
        c[1] += len(cells)
        whole = _whole_routes(cells)
        c[2] += sum(i8 < f32 for _, f32, i8 in whole)
        c[3] += len(whole)
    return {b: (c[0], c[1], c[2], c[3]) for b, c in out.items()}


def _speed_section(data: dict) -> str:
    by, parts = _speed(data)
    rows = [[net, b] + [f"{by[(net, b)][p]['ratio_int8_over_fp32']:.2f}" for p in parts]
            for net, b in sorted(by)]  # fmt: skip
    ratio = md_table(["net", "batch"] + [p.replace("_", " ") for p in parts], rows)
    whole_rows = [
        [net, b, p.replace("_", " "), f"{f32:.1f}", f"{i8:.1f}", f"{i8 / f32:.2f}"]
        for net, b in sorted(by)
        for p, f32, i8 in _whole_routes(by[(net, b)])
    ]
    whole = md_table(["net", "batch", "route", "fp32 ms (prefix + route)", "int8 ms",
                      "int8 / fp32"], whole_rows)  # fmt: skip
    intro = (
        f"Full-size nets at 224 with random weights (`benchmarks/int8_deploy.py`), the default "
        f"{len(parts) - 1}-route space; each "
        "part's fp32 and int8 ONNX file timed interleaved (ONNX Runtime CPU, "
        f"{data['threads']} threads, median over rounds of each round's fastest call). int8 / "
        "fp32 latency per part (< 1: int8 faster):"
    )
    whole_intro = (
        "What an image pays is the prefix plus its route. The two parts' medians, summed "
        "(the gate is not included):"
    )
    notes = (
        "The int8 scheme is U8S8 (uint8 activations, per-channel int8 weights). MobileNet's "
        "depthwise convolutions get little from ONNX Runtime's CPU int8 kernels and its "
        "stem-heavy prefix is slower at int8. fp16 is for GPU/ARM targets: x86 CPUs have no fp16 "
        "arithmetic in ONNX Runtime, so no CPU speed is claimed for it. No Jetson or Pi was "
        "measured."
    )
    return "\n\n".join(["## int8 speed", intro, ratio, "{speed_img}", whole_intro, whole, notes])


def _targets(acc: dict, speed: dict) -> tuple[str, bool, dict]:
    worst = max(abs(r["int8"]["top1_change_pt"]) for r in acc["accuracy"])
    ok_acc = worst <= MAX_CHANGE_PT
    counts = _speed_counts(speed)
    rows = [[
        f"int8 vs fp32 test top-1 change <= {MAX_CHANGE_PT:g} pt (every bundle)",
        f"largest change {worst:.2f} pt over {len(acc['accuracy'])} bundles", verdict(ok_acc),
    ]]  # fmt: skip
    for b, (fast, n, wfast, wn) in sorted(counts.items()):
        rows.append([
            f"int8 faster than fp32 at batch {b} (ONNX Runtime CPU, {speed['threads']} threads, "
            "full-size nets at 224)",
            f"{fast} of {n} parts faster; {wfast} of {wn} whole routes (prefix + route)",
            verdict(fast == n),
        ])  # fmt: skip
    return md_table(["Target", "Measured", "Verdict"], rows), ok_acc, counts


def _speed_figure(data: dict):
    by, parts = _speed(data)
    fig, ax = new_figure(6.4, 3.4)
    keys = sorted(by)
    width = 0.8 / len(keys)
    for i, (net, b) in enumerate(keys):
        xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(parts))]
        ax.bar(xs, [by[(net, b)][p]["ratio_int8_over_fp32"] for p in parts], width,
               label=f"{net}, batch {b}")  # fmt: skip
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(parts)), [p.replace("_", " ") for p in parts])
    ax.set_ylabel("int8 / fp32 latency (< 1: int8 faster)")
    ax.set_title("int8 vs fp32 per part, ONNX Runtime CPU")
    ax.legend(fontsize=7)
    return fig


def _exporter_figure(runs: list[dict]):
    fig, ax = new_figure(5.0, 3.4)
    families = list(dict.fromkeys(r["family"] for r in runs[0]["rows"]))
    for i, d in enumerate(runs):
        ys = {f: [r["ratio_new_over_legacy"] for r in d["rows"] if r["family"] == f]
              for f in families}  # fmt: skip
        for j, f in enumerate(families):
            ax.scatter([j + (0.15 if i else -0.15)] * len(ys[f]), ys[f], s=14,
                       color=f"C{i}", label=f"run {i + 1}" if j == 0 else None)  # fmt: skip
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(families)), families, rotation=25, ha="right")
    ax.set_ylabel("new / legacy latency (< 1: new faster)")
    ax.set_title("torch.export vs legacy ONNX file, every cell")
    ax.legend(fontsize=7)
    return fig


def pages() -> list[Page]:
    runs = [load(f) for f in EXPORTERS]
    acc, speed = load(ACCURACY), load(SPEED)
    targets, _, _ = _targets(acc, speed)
    page = Page(
        "deployment",
        "Deployment formats: exporter, int8 and fp16",
        "The torch.export ONNX exporter vs the legacy one; int8 and fp16 accuracy and int8 speed "
        "in the torch-free ONNX Runtime runtime.",
        [stamp(f, d) for f, d in zip(EXPORTERS, runs, strict=True)]
        + [stamp(ACCURACY, acc), stamp(SPEED, speed)],
        [],
        {"int8-speed": _speed_figure(speed), "exporters": _exporter_figure(runs)},
    )
    exporter, _ = _exporter_section(runs)
    page.sections = [
        targets,
        exporter + "\n\n" + page.img("exporters", "new over legacy exporter latency per cell"),
        _accuracy_section(acc),
        _speed_section(speed).replace(
            "{speed_img}", page.img("int8-speed", "int8 over fp32 latency per part")
        ),
    ]
    return [page]


def status() -> list[StatusRow]:
    acc, speed = load(ACCURACY), load(SPEED)
    _, ok_acc, counts = _targets(acc, speed)
    worst = max(abs(r["int8"]["top1_change_pt"]) for r in acc["accuracy"])
    agree = min(r["int8"]["route_agreement_pct"] for r in acc["accuracy"])
    fast = sum(c[0] for c in counts.values())
    n = sum(c[1] for c in counts.values())
    by, _ = _speed(speed)
    nets = {}
    for (net, _), cells in by.items():
        for r in cells.values():
            lo, hi = nets.get(net, (9.0, 0.0))
            nets[net] = (min(lo, r["ratio_int8_over_fp32"]), max(hi, r["ratio_int8_over_fp32"]))
    spread = "; ".join(f"{net} {lo:.2f}-{hi:.2f}" for net, (lo, hi) in sorted(nets.items()))
    return [
        StatusRow(
            "Does int8 keep accuracy within 1 pt of fp32?",
            "yes" if ok_acc else "no",
            f"largest test top-1 change {worst:.2f} pt over {len(acc['accuracy'])} bundles; "
            f">= {agree:.1f}% of images keep their route",
            "deployment",
        ),
        StatusRow(
            "Is int8 faster than fp32 on CPU (ONNX Runtime)?",
            "yes" if fast == n else ("partly" if fast else "no"),
            f"{fast} of {n} parts faster at batch 1 and 32; int8 / fp32 latency {spread}",
            "deployment",
        ),
    ]
