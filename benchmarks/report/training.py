"""Training speed: one Stage I and one Stage II step, old and new execution path, interleaved
(``benchmarks/training_speed.py`` -> ``training_speed_cpu.json``)."""

from __future__ import annotations

from . import Page, StatusRow, load, md_table, stamp, times

FILE = "training_speed_cpu.json"


def _table(data: dict) -> tuple[str, dict[str, float]]:
    by: dict[tuple[str, str], dict[str, float]] = {}
    for r in data["rows"]:
        by.setdefault((r["space"], r["stage"]), {})[r["arm"]] = r["step_s"]
    rows, best = [], {}
    for space in dict.fromkeys(r["space"] for r in data["rows"]):
        s1, s2 = by[(space, "stage1")], by[(space, "stage2")]
        up1 = s1["nchw"] / s1["channels_last"]
        up2 = s2["dense-sliced"] / s2["chosen-fused"]
        best[space] = up2
        rows.append([
            space,
            f"{1e3 * s1['nchw']:.0f} / {1e3 * s1['channels_last']:.0f}", times(up1),
            " / ".join(f"{1e3 * s2[a]:.0f}" for a in
                       ("dense-sliced", "chosen-fused-nchw", "chosen-fused")),
            times(up2),
        ])  # fmt: skip
    header = [
        "supernet", "Stage I NCHW / channels_last ms", "speed-up",
        "Stage II dense-sliced / chosen-fused-nchw / chosen-fused ms", "speed-up",
    ]  # fmt: skip
    return md_table(header, rows), best


def pages() -> list[Page]:
    data = load(FILE)
    table, _ = _table(data)
    intro = (
        f"One training step of each stage, old and new execution path timed interleaved in one "
        f"run ({data['threads']} threads, batch {data['batch']}, median of {data['rounds']} "
        f"rounds). Stage I: a sandwich step ({data['routes']} sub-nets) in NCHW vs "
        "channels_last. Stage II: a gate step with "
        f"{data['routes']} routes, `dense-sliced` (every route on the sliced weights with "
        "autograd, mixed densely) vs `chosen-fused` (routes folded, `DynamicNet.fused()`, only "
        "each sample's chosen route with autograd; the default); `chosen-fused-nchw` isolates "
        "the layout."
    )
    notes = (
        "Channels_last is on by default only where a supernet sets `prefers_channels_last` "
        "(DS-MobileNetV1: depthwise convs). The ResNet's bottleneck BNs are not folded, so its "
        "Stage II gain is the chosen-route backward alone."
    )
    return [
        Page("training", "Training speed", "Stage I and Stage II step time, old vs new path.",
             [stamp(FILE, data, command="python benchmarks/training_speed.py")],
             [intro, table, notes])
    ]  # fmt: skip


def status() -> list[StatusRow]:
    _, best = _table(load(FILE))
    lo, hi = min(best.values()), max(best.values())
    return [
        StatusRow(
            "Is gate training (Stage II) faster on the fused chosen-route path?",
            "yes",
            f"{times(lo)}-{times(hi)} per gate step over the dense-sliced path (3 tiny supernets)",
            "training",
        )
    ]
