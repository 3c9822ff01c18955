"""Dynamic speed: routed dynamic nets vs the full largest net, on the tiny demo net over 3 seeds
(``benchmarks/dynamic_speedup.py`` -> ``dynamic_speedup_cpu.json``, with the thread-count
determinism check ``dynamic_speedup_cpu_determinism.json``) and at full size, 224x224, with
forced route mixes (``benchmarks/dynamic_speedup_full.py`` -> ``dynamic_speedup_full_cpu.json``;
the cells re-runs replaced are kept in earlier versions of that file:
``dynamic_speedup_full_cpu_first.json`` and ``dynamic_speedup_full_cpu_replaced.json``)."""

from __future__ import annotations

import statistics

from . import Page, StatusRow, load, md_table, new_figure, pct, stamp, verdict

TINY, DET, FULL = (
    "dynamic_speedup_cpu.json",
    "dynamic_speedup_cpu_determinism.json",
    "dynamic_speedup_full_cpu.json",
)
MIX = "macs/2.5"
MODES = ["sliced", "extracted", "torchscript", "ort"]
SPEEDUP, EFF, GATE = 2.0, 0.95, 0.02  # design targets (2.5x-MACs mix; gate share at b1)
# earlier versions of the full-size file, each unchanged but for a `replaced_by` field: as first
# committed (runs 0-2) and as committed with run 4; together they hold every replaced cell
FIRST, REPLACED = "dynamic_speedup_full_cpu_first.json", "dynamic_speedup_full_cpu_replaced.json"
OLDER = (FIRST, REPLACED)
# facts from git (the render never calls git): the commit that added each run to the file
RUN_COMMIT = {0: "b7db048", 1: "b7db048", 2: "b7db048", 3: "9e85bae", 4: "e6d7ff1", 5: "58b7285"}
VERSION_COMMIT = {FIRST: "b7db048", REPLACED: "e6d7ff1"}


# ---------------------------------------------------------------- full size, 224x224


def full_cells(full: dict) -> list[tuple[str, dict]]:
    """(net, cell) in the page's order: net, batch, backend, then the file's mix order."""
    out = []
    for name, net in full["nets"].items():
        for c in net["cells"]:
            out.append((name, c))
    order = list(full["nets"])
    return sorted(out, key=lambda nc: (order.index(nc[0]), nc[1]["batch"],
                                       MODES.index(nc[1]["mode"])))  # fmt: skip


def run_of(net: dict, cell: dict) -> int:
    """The run (index into ``runs``) a cell was measured in: a merged re-run, else the net's."""
    merged = {c: m["run"] for m in net.get("merged_runs") or [] for c in m["cells"]}
    return merged.get(f"{cell['mode']} b{cell['batch']}", net["run"])


def replaced_runs(full: dict) -> dict[str, list[int]]:
    """net -> runs that measured it but none of whose cells the file keeps."""
    out = {}
    for name, net in full["nets"].items():
        used = {run_of(net, c) for c in net["cells"]}
        gone = [i for i, r in enumerate(full["runs"]) if name in r["nets"] and i not in used]
        if gone:
            out[name] = gone
    return out


def mix_cells(full: dict) -> list[tuple[str, dict]]:
    return [(n, c) for n, c in full_cells(full) if c["mix"] == MIX]


def _key(n: str, c: dict) -> tuple[str, str, int, str]:
    return (n, c["mode"], c["batch"], c["mix"])


def replaced_cells(full: dict, older: dict[str, dict]) -> list[dict]:
    """Every cell an earlier version held that the file no longer keeps, once per run (the
    first version holding it names the file), in the page's order; each with the kept cell."""
    kept = {_key(n, c): (c, run_of(full["nets"][n], c)) for n, c in full_cells(full)}
    out: dict[tuple, dict] = {}
    for name in OLDER:
        old = older[name]
        for n, c in full_cells(old):
            key, run = _key(n, c), run_of(old["nets"][n], c)
            if c != kept[key][0] and (key, run) not in out:
                out[(key, run)] = {"net": n, "cell": c, "run": run, "file": name,
                                   "kept": kept[key][0], "kept_run": kept[key][1]}  # fmt: skip
    order = list(full["nets"])
    return sorted(
        out.values(),
        key=lambda r: (
            order.index(r["net"]),
            r["cell"]["batch"],
            MODES.index(r["cell"]["mode"]),
            r["run"],
        ),
    )


def replaced_overheads(full: dict, older: dict[str, dict]) -> list[dict]:
    """Gate/grouping overheads an earlier version held that the file no longer keeps (each
    measured in its net's own run), once per run."""
    out: dict[tuple, dict] = {}
    for name in OLDER:
        for n, net in older[name]["nets"].items():
            for mode, o in net["overhead"].items():
                if o != full["nets"][n]["overhead"][mode] and (n, mode, net["run"]) not in out:
                    out[(n, mode, net["run"])] = {
                        "net": n, "mode": mode, "run": net["run"], "o": o, "file": name,
                        "kept": full["nets"][n]["overhead"][mode],
                        "kept_run": full["nets"][n]["run"]}  # fmt: skip
    return [out[k] for k in sorted(out, key=lambda k: (list(full["nets"]).index(k[0]),
                                                       MODES.index(k[1]), k[2]))]  # fmt: skip


def design_checks(full: dict, cells: list | None = None) -> dict[str, list[tuple[str, dict]]]:
    """The design target's cells (default: the file's mix cells), each check -> those that
    meet it."""
    cells = mix_cells(full) if cells is None else cells
    return {
        "b1": [(n, c) for n, c in cells if c["batch"] == 1 and c["speedup"] >= SPEEDUP],
        "b32": [(n, c) for n, c in cells if c["batch"] == 32 and c["speedup"] >= SPEEDUP],
        "eff": [(n, c) for n, c in cells if c["efficiency"] >= EFF],
    }


def gate_shares(full: dict) -> list[tuple[str, str, dict]]:
    return [
        (n, mode, o)
        for n, net in full["nets"].items()
        for mode, o in sorted(net["overhead"].items(), key=lambda kv: MODES.index(kv[0]))
    ]


def _rng(xs: list[float], fmt: str = "{:.2f}x") -> str:
    return f"{fmt.format(min(xs))}-{fmt.format(max(xs))}"


def _effs(cells: list[dict]) -> str:
    return _rng([c["efficiency"] for c in cells], "{:.2f}")


def _count(ok: list, mine: list, fmt: str, vals: list[float]) -> str:
    if not mine:
        return "none replaced"
    return f"{len(ok)} of {len(mine)} cells; {_rng(vals, fmt)}"


def target_table(full: dict, older: dict[str, dict]) -> str:
    """The design targets on the file's cells, and the same count on the replaced cells of
    earlier runs (kept apart, never merged into the verdict's count)."""
    cells, ok = mix_cells(full), design_checks(full)
    gone = [(r["net"], r["cell"]) for r in replaced_cells(full, older) if r["cell"]["mix"] == MIX]
    gok = design_checks(full, gone)
    rows = []
    for key, b in (("b1", 1), ("b32", 32)):
        mine = [c for _, c in cells if c["batch"] == b]
        old = [c for _, c in gone if c["batch"] == b]
        rows.append([
            f"routed dynamic vs full largest net, 224, forced 2.5x-MACs mix, batch {b}: "
            f"speed-up >= {SPEEDUP:.0f}x",
            _count(ok[key], mine, "{:.2f}x", [c["speedup"] for c in mine]),
            verdict(len(ok[key]) == len(mine)),
            _count(gok[key], old, "{:.2f}x", [c["speedup"] for c in old]),
        ])  # fmt: skip
    rows.append([
        f"the same cells, batch 1 and 32: efficiency (measured / ideal) >= {EFF}",
        _count(ok["eff"], cells, "{:.2f}", [c["efficiency"] for _, c in cells]),
        verdict(len(ok["eff"]) == len(cells)),
        _count(gok["eff"], gone, "{:.2f}", [c["efficiency"] for _, c in gone]),
    ])  # fmt: skip
    g = [o["gate_share_b1"] for _, _, o in gate_shares(full)]
    og = [r["o"]["gate_share_b1"] for r in replaced_overheads(full, older)]
    rows.append([
        f"gate overhead <= {pct(100 * GATE, 0)} of the largest net at batch 1",
        f"at most {pct(100 * max(g), 2)} ({len(g)} net/backend pairs)",
        verdict(max(g) <= GATE),
        f"at most {pct(100 * max(og), 2)} ({len(og)} pairs)" if og else "none replaced",
    ])  # fmt: skip
    runs = sorted({r["run"] for r in replaced_cells(full, older)})
    head = ["Target", "measured: the file's cells", "verdict",
            f"replaced cells of earlier runs ({', '.join(map(str, runs))}), not in the "
            "verdict"]  # fmt: skip
    return md_table(head, rows)


def _mark(ok: bool) -> str:
    return "" if ok else " ✗"


def _eff(e: float, bound: float, unit: str = "") -> str:
    """Two decimals, three where two would round a miss up to the bound; ✗ below it."""
    txt = f"{e:.2f}" if (round(e, 2) >= bound) == (e >= bound) else f"{e:.3f}"
    return txt + unit + _mark(e >= bound)


def _own_bound(batch: int) -> float:
    """The file's own efficiency target for the all-largest / all-smallest mixes."""
    return 0.90 if batch == 1 else 0.95


def full_table(full: dict) -> str:
    by: dict[tuple[str, str, int], dict[str, dict]] = {}
    for n, c in full_cells(full):
        by.setdefault((n, c["mode"], c["batch"]), {})[c["mix"]] = c
    rows = []
    for (n, mode, b), mx in by.items():
        net, al, sm, m = full["nets"][n], mx["all-largest"], mx["all-smallest"], mx[MIX]
        r = run_of(net, m)
        rows.append([
            n, mode, b, f"{al['img_s_largest']:.1f}",
            f"{al['speedup']:.2f}x ({_eff(al['efficiency'], _own_bound(b))})",
            f"{sm['speedup']:.2f}x / {sm['ideal']:.2f}x ({_eff(sm['efficiency'], _own_bound(b))})",
            f"{m['macs_ratio']:.2f}x",
            f"{_eff(m['speedup'], SPEEDUP, 'x')} / {m['ideal']:.2f}x "
            f"({_eff(m['efficiency'], EFF)}; {m['efficiency_paired_median']:.2f})",
            f"{r} ({full['runs'][r]['loadavg_before'][0]:.2f})",
        ])  # fmt: skip
    head = ["net", "backend", "batch", "img/s largest", "all-largest: speed-up (eff.)",
            "all-smallest: speed-up / ideal (eff.)", "mix: MACs reduction",
            "mix: speed-up / ideal (eff.; paired median)", "run (1-min load before)"]  # fmt: skip
    return md_table(head, rows)


def runs_table(full: dict) -> str:
    rows = [[i, r["started"], ", ".join(r["nets"]), ", ".join(r["modes"]),
             "/".join(map(str, r["batch_sizes"])), "/".join(map(str, r["repeats"])),
             " / ".join(f"{x:.2f}" for x in r["loadavg_before"]), r.get("note", "")]
            for i, r in enumerate(full["runs"])]  # fmt: skip
    head = ["run", "started", "nets", "backends", "batch", "repeats", "load before (1/5/15 min)",
            "note"]  # fmt: skip
    return md_table(head, rows)


def replaced_note(full: dict, older: dict[str, dict]) -> str:
    gone, cells = replaced_runs(full), replaced_cells(full, older)
    parts = []
    for n, runs in gone.items():
        kept = sorted({run_of(full["nets"][n], c) for c in full["nets"][n]["cells"]})
        parts.append(
            f"`{n}`: run(s) {', '.join(map(str, runs))} measured it, run(s) "
            f"{', '.join(map(str, kept))} replaced every cell"
        )
    partial: dict[tuple[str, int, int], set[str]] = {}
    for r in cells:
        if r["net"] not in gone:
            k = (r["net"], r["run"], r["kept_run"])
            partial.setdefault(k, set()).add(f"{r['cell']['mode']} b{r['cell']['batch']}")
    parts += [
        f"`{n}`: run {new} replaced run {old}'s {', '.join(sorted(what))} cells"
        for (n, old, new), what in sorted(partial.items())
    ]
    files = "; ".join(
        f"`{f}`: the file as committed in {VERSION_COMMIT[f]} (runs "
        f"{', '.join(map(str, range(len(older[f]['runs']))))})"
        for f in OLDER
    )
    return (
        "**Replaced runs and cells.** " + "; ".join(parts) + ". The replaced figures, met or "
        f"missed, are kept in earlier versions of `{FULL}`, each unchanged but for its "
        f"`replaced_by` field: {files}. The next table shows each replaced cell beside the "
        "cell that replaced it; the target counts above give them apart. At batch 32 with a "
        "few repeats of 1-4 s forwards on 2 shared cores, which cells miss moves between runs."
    )


def _load1(data: dict, run: int) -> str:
    return f"{run} ({data['runs'][run]['loadavg_before'][0]:.2f}; {RUN_COMMIT[run]})"


def _mix_col(c: dict) -> str:
    """An all-largest / all-smallest cell's efficiency, or the mix cell's speed-up (eff.)."""
    if c["mix"] != MIX:
        return _eff(c["efficiency"], _own_bound(c["batch"]))
    return f"{_eff(c['speedup'], SPEEDUP, 'x')} ({_eff(c['efficiency'], EFF)})"


def replaced_table(full: dict, older: dict[str, dict]) -> str:
    """Per net, backend, batch and replaced run: its three mixes beside the kept run's."""
    groups: dict[tuple, dict] = {}
    for r in replaced_cells(full, older):
        c = r["cell"]
        g = groups.setdefault((r["net"], c["mode"], c["batch"], r["run"]), {
            "file": r["file"], "kept_run": r["kept_run"], "old": {}, "new": {}})  # fmt: skip
        g["old"][c["mix"]], g["new"][c["mix"]] = c, r["kept"]
    mixes = ("all-largest", "all-smallest", MIX)
    rows = []
    for (n, mode, b, run), g in groups.items():
        old = [_mix_col(g["old"][m]) if m in g["old"] else "not replaced" for m in mixes]
        new = [_mix_col(g["new"][m]) for m in mixes]
        src = older[g["file"]]
        rows.append([n, mode, b, _load1(src, run), *old, _load1(full, g["kept_run"]), *new,
                     f"`{g['file']}`"])  # fmt: skip
    head = ["net", "backend", "batch", "replaced run (1-min load; commit)", "all-largest eff.",
            "all-smallest eff.", "mix: speed-up (eff.)", "kept run (1-min load; commit)",
            "all-largest eff.", "all-smallest eff.", "mix: speed-up (eff.)",
            "replaced figures in"]  # fmt: skip
    return md_table(head, rows)


def _file_target_counts(cells: list[tuple[str, dict]], g: list[float]) -> list[str]:
    b1 = [c for _, c in cells if c["batch"] == 1]
    b32 = [c for _, c in cells if c["batch"] == 32]
    cnn = [c for n, c in cells if c["batch"] == 1 and c["mix"] == MIX and "deit" not in n]

    def low(xs: list[dict]) -> str:
        return f"; lowest {min(c['efficiency'] for c in xs):.2f}" if xs else ""

    return [
        f"{sum(c['efficiency'] >= 0.90 for c in b1)} of {len(b1)}{low(b1)}",
        f"{sum(c['efficiency'] >= 0.95 for c in b32)} of {len(b32)}{low(b32)}",
        f"{sum(c['speedup'] >= 1.6 for c in cnn)} of {len(cnn)}"
        + (f"; {_rng([c['speedup'] for c in cnn])}" if cnn else ""),
        f"at most {pct(100 * max(g), 2)}" if g else "none replaced",
    ]


def old_targets(full: dict, older: dict[str, dict]) -> str:
    """The targets the file recorded when it was measured, counted from its cells and,
    apart, from the replaced cells of earlier runs."""
    kept = _file_target_counts(
        full_cells(full), [o["gate_share_b1"] for _, _, o in gate_shares(full)]
    )
    gone = _file_target_counts(
        [(r["net"], r["cell"]) for r in replaced_cells(full, older)],
        [r["o"]["gate_share_b1"] for r in replaced_overheads(full, older)],
    )
    keys = ["efficiency_b1", "efficiency_b32", "speedup_b1_at_macs/2.5", "gate_overhead_b1"]
    rows = [[k, full["targets"][k], a, b] for k, a, b in zip(keys, kept, gone, strict=True)]
    return md_table(
        [
            "file's target",
            "as recorded",
            "the file's cells meeting it",
            "replaced cells meeting it",
        ],
        rows,
    )


def overhead_table(full: dict, older: dict[str, dict]) -> str:
    def cols(o: dict) -> list[str]:
        return [f"{o['gate_ms_b1']:.3f}", f"{o['largest_ms_b1']:.1f}",
                pct(100 * o["gate_share_b1"], 2), f"{o['group_scatter_ms_b32']:.2f}",
                pct(100 * o["group_scatter_share_b32"], 2)]  # fmt: skip

    rows = [[n, mode, full["nets"][n]["run"], *cols(o)] for n, mode, o in gate_shares(full)]
    rows += [[f"{r['net']} (replaced)", r["mode"], r["run"], *cols(r["o"])]
             for r in replaced_overheads(full, older)]  # fmt: skip
    head = ["net", "backend", "run", "gate + argmax, b1 (ms)", "largest net, b1 (ms/img)",
            "gate share", "group + scatter, b32 (ms)", "its share"]  # fmt: skip
    return md_table(head, rows)


def ort_over_torch(full: dict) -> list[float]:
    """Batch-1 img/s of the largest static net, ONNX Runtime over torch eager (sliced and
    extracted), per net: each pair comes from one run."""
    out = []
    for _, net in full["nets"].items():
        img = {c["mode"]: c["img_s_largest"] for c in net["cells"]
               if c["batch"] == 1 and c["mix"] == "all-largest"}  # fmt: skip
        out += [img["ort"] / img[m] for m in ("sliced", "extracted") if "ort" in img and m in img]
    return out


def full_figure(full: dict, older: dict[str, dict]):
    fig, ax = new_figure(5.6, 4.0)
    nets = list(full["nets"])
    gone = [r["cell"] for r in replaced_cells(full, older) if r["cell"]["mix"] == MIX]
    ax.plot([c["ideal"] for c in gone], [c["speedup"] for c in gone], "x", ms=5, color="grey",
            label="replaced cells (earlier runs)")  # fmt: skip
    for n, c in mix_cells(full):
        ax.plot(
            c["ideal"],
            c["speedup"],
            "o" if c["batch"] == 1 else "s",
            ms=5,
            color=f"C{nets.index(n)}",
            mfc="none" if c["batch"] == 32 else None,
        )
    for i, n in enumerate(nets):
        ax.plot([], [], "o", color=f"C{i}", label=n)
    ax.plot([], [], "ko", label="batch 1")
    ax.plot([], [], "ks", mfc="none", label="batch 32")
    lo, hi = 1.6, 2.6
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="efficiency 1")
    ax.plot([lo, hi], [EFF * lo, EFF * hi], "k:", lw=0.8, label=f"efficiency {EFF}")
    ax.axhline(SPEEDUP, color="C3", ls="--", lw=1, label=f"target {SPEEDUP:.0f}x")
    ax.set_xlabel("ideal speed-up, T_largest / sum_k p_k T_k (x)")
    ax.set_ylabel("measured speed-up over the full largest net (x)")
    ax.set_title("Forced 2.5x-MACs mix at 224, CPU, 2 threads: every backend")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def full_sections(full: dict, older: dict[str, dict], page: Page) -> list[str]:
    ideal_lt = [c for _, c in mix_cells(full) if c["ideal"] < SPEEDUP]
    nets = full["nets"]
    prefix = ", ".join(f"{n} {v['spaces']['slim']['prefix_fraction']}" for n, v in nets.items())
    return [
        "## Full-size nets at 224: forced route mixes",
        f"{', '.join(f'`{n}`' for n in nets)} at 224x224, random init (speed depends on the "
        "route mix, not the weights), gate at each net's default stage, 4 routes, CPU, 2 torch "
        "threads (ONNX Runtime: 2 intra-op threads). Route mixes are forced on "
        f"{min(v['samples'] for v in nets.values())} random images "
        "(`dsnet_automl.dynamic.forced_mix.force_route_mix`): the gate's head is rewritten so "
        "exactly round(p_k N) images take route k, while routing stays a per-sample argmax. "
        "Batch 1 runs the images one call each; batch 32 runs them twice in one batch. "
        "The all-largest and all-smallest mixes use the default route space (full-width "
        "prefix); the mix uses the smallest and largest routes of a slim-prefix space "
        f"(prefix fraction: {prefix}) in the proportion closest to 2.5x fewer MACs than the "
        "full largest net.",
        "speed-up = T(full largest static net) / T(dynamic); ideal = T_largest / sum_k p_k T_k, "
        "T_k the static sub-net of route k; efficiency = speed-up / ideal; all in the same "
        "backend and batch. Each figure uses each model's fastest repeat, timed interleaved "
        "(load only slows a run); the paired median is the median over repeats of the "
        "per-repeat efficiency. ✗ in the mix column: below the design target (speed-up "
        f"{SPEEDUP:.0f}x, efficiency {EFF}); in the all-largest and all-smallest columns: below "
        "the file's own efficiency target (0.90 at batch 1, 0.95 at batch 32). Backends: "
        "`sliced` (the dynamic net on shared weights vs `net(x, cfg)`), `extracted` "
        "(extracted parts vs `net.extract(cfg)`), `torchscript` "
        "(traced extracted parts), `ort` (the torch-free `OrtDynamicNet` vs each static "
        "sub-net as one ONNX model).",
        page.img("mix", "Measured vs ideal speed-up at the 2.5x-MACs mix, every net, backend "
                 "and batch; grey crosses: the replaced cells of earlier runs"),
        f"{len(ideal_lt)} of {len(mix_cells(full))} mix cells have an ideal below "
        f"{SPEEDUP:.0f}x: there even a perfectly efficient dynamic net misses the speed-up "
        "target, because the realised mix is not 2.5x in time (the static routes do not run in "
        "proportion to their MACs).",
        full_table(full),
        f"In absolute terms ONNX Runtime runs the largest static net "
        f"{_rng(ort_over_torch(full))} as fast as torch eager at batch 1 (same run, per net).",
        replaced_note(full, older),
        "### Replaced cells beside the cells that replaced them",
        "✗ as in the table above; the commit is the one that added the run.",
        replaced_table(full, older),
        "### The runs",
        "Each cell's run is in the last column of the first table; img/s of the largest net "
        "compare across backends only within one run.",
        runs_table(full),
        "### Gate and grouping overhead",
        "Rows marked replaced: the overhead a re-run replaced, kept in the earlier versions.",
        overhead_table(full, older),
        "### The targets the file recorded",
        "The file was measured against older targets (its `targets` field); counted here from "
        "its cells, every mix, and apart from the replaced cells of earlier runs.",
        old_targets(full, older),
    ]  # fmt: skip


# ---------------------------------------------------------------- tiny demo net, 3 seeds


def by_lambda(tiny: dict) -> dict[float, list[dict]]:
    out: dict[float, list[dict]] = {}
    for r in sorted(tiny["rows"], key=lambda r: (r["lambda"], r["seed"])):
        out.setdefault(r["lambda"], []).append(r)
    return out


def _field(r: dict, key: str) -> float:
    """A row's figure: top level, in ``timing``, or derived (gate share of the largest net's
    batch-1 time, sliced: gate ms x img/s / 1000)."""
    t = r.get("timing", {})
    if key == "gate_share_of_largest_b1":
        return t["gate_ms"] * t["b1_full_img_s"] / 1000
    return r[key] if key in r else t[key]


def _ms(xs: list[float], scale: float = 1.0, digits: int = 2, sign: bool = False) -> str:
    v = [scale * x for x in xs]
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    lo, hi = f.format(min(v)), f.format(max(v))
    return f"{f.format(statistics.fmean(v))} ± {sd:.{digits}f} [{lo}, {hi}]"


def tiny_tables(tiny: dict) -> tuple[str, str]:
    acc, cost = [], []
    for lam, rows in by_lambda(tiny).items():
        col = {k: [_field(r, k) for r in rows] for k in (
            "full_top1", "dynamic_top1", "acc_drop_pt", "macs_reduction", "largest_route_share",
            "dyn_minus_eq_static_att_pt", "dyn_minus_eq_static_own_att_pt", "b32_speedup_sliced",
            "b32_speedup_extracted", "b1_speedup_sliced", "b1_speedup_extracted",
            "gate_share_of_smallest", "gate_share_of_largest_b1", "peak_mem_ratio")}  # fmt: skip
        acc.append([
            f"{lam:g}", len(rows), _ms(col["full_top1"], 100), _ms(col["dynamic_top1"], 100),
            _ms(col["acc_drop_pt"], sign=True), _ms(col["dyn_minus_eq_static_att_pt"], sign=True),
            _ms(col["dyn_minus_eq_static_own_att_pt"], sign=True),
        ])  # fmt: skip
        cost.append([
            f"{lam:g}", _ms(col["macs_reduction"]), _ms(col["largest_route_share"], 100, 1),
            f"{_ms(col['b32_speedup_sliced'])} / {_ms(col['b32_speedup_extracted'])}",
            f"{_ms(col['b1_speedup_sliced'])} / {_ms(col['b1_speedup_extracted'])}",
            _ms(col["gate_share_of_smallest"], 100), _ms(col["gate_share_of_largest_b1"], 100),
            _ms(col["peak_mem_ratio"]),
        ])  # fmt: skip
    acc_head = ["lambda", "seeds", "top-1 full (%)", "top-1 dynamic (%)", "drop (pt)",
                "dynamic − equal-MACs static, gate's attention head (pt)",
                "dynamic − equal-MACs static, its own trained attention head (pt)"]  # fmt: skip
    cost_head = ["lambda", "MACs reduction (x)", "images on the largest route (%)",
                 "b32 speed-up, sliced / extracted (x)", "b1 speed-up, sliced / extracted (x)",
                 "gate / smallest route, b1 (%)", "gate / largest net, b1, sliced (%)",
                 "peak memory b32, dynamic / full (x)"]  # fmt: skip
    return md_table(acc_head, acc), md_table(cost_head, cost)


TINY_KEYS = {  # the file's target keys -> (row field, comparison, scale)
    "macs_reduction": ("macs_reduction", ">=", 1),
    "b32_speedup_sliced": ("b32_speedup_sliced", ">=", 1),
    "acc_drop_pt": ("acc_drop_pt", "<=", 1),
    "dyn_minus_eq_static_att_pt": ("dyn_minus_eq_static_att_pt", ">", 1),
    "dyn_minus_eq_static_own_att_pt": ("dyn_minus_eq_static_own_att_pt", ">", 1),
    "gate_share_of_smallest": ("gate_share_of_smallest", "<=", 1),
    "peak_mem_ratio": ("peak_mem_ratio", "<=", 1),
}


def tiny_targets(tiny: dict) -> list[list[str]]:
    """Per file target and lambda: per-seed values, seeds meeting it, mean meets."""
    rows = []
    for key, target in tiny["meta"]["targets"].items():
        field, op, _ = TINY_KEYS[key]
        bound = float(target.split()[-1])
        ok = {">=": lambda v, b=bound: v >= b, "<=": lambda v, b=bound: v <= b,
              ">": lambda v, b=bound: v > b}  # fmt: skip
        for lam, rs in by_lambda(tiny).items():
            vals = [_field(r, field) for r in rs]
            n_ok = sum(ok[op](v) for v in vals)
            rows.append([
                f"`{key}` {target}", f"{lam:g}", ", ".join(f"{v:.3g}" for v in vals),
                f"{n_ok}/{len(vals)}", "yes" if ok[op](statistics.fmean(vals)) else "no",
                verdict(n_ok == len(vals)),
            ])  # fmt: skip
    return rows


def tiny_sections(tiny: dict, det: dict) -> list[str]:
    acc, cost = tiny_tables(tiny)
    meta, rows = tiny["meta"], tiny["rows"]
    load1 = [r["timing"]["loadavg_before"][0] for r in rows]
    full = [100 * r["full_top1"] for r in rows]
    det_rows = [[k.replace("_", " "), f"{v['tensors_differing']} of {v['of']}",
                 f"{v['max_abs_diff']:.3g}"] for k, v in det.items() if isinstance(v, dict)
                and "of" in v]  # fmt: skip
    return [
        "## Tiny demo net, 3 seeds",
        f"`ds_mobilenet_v1_tiny` (Stage I default recipe), {meta['routes']} routes, gate "
        f"trained {meta['gate_epochs']} epochs with class-balanced SGS; each seed (Stage I and "
        f"gate: data split, init, batch order) scored on its own {meta['data']} test split "
        f"({rows[0]['n_test']} images); CPU, {meta['threads']} threads. Full = the largest "
        "config. Mean ± sd over seeds [min, max]. The accuracy figures were re-scored from the "
        "saved runs by the command in the stamp; timings are per seed (they depend on the route "
        f"mix), 1-min load before each {min(load1):.2f}-{max(load1):.2f}.",
        acc,
        cost,
        "No route has the dynamic net's average MACs: the equal-MACs static top-1 is "
        "interpolated linearly in MACs between the two neighbouring routes. 'Its own trained "
        "attention head': the same routes, each with an attention head trained alone (same "
        "recipe, same seed), the fair static baseline.",
        "### Targets the file records",
        md_table(["target", "lambda", "per seed", "seeds meeting", "mean meets", "verdict"],
                 tiny_targets(tiny)),
        f"The full net's own top-1 moves by {max(full) - min(full):.2f} pt between seeds "
        f"({min(full):.2f}-{max(full):.2f}%), more than the 0.5 pt accuracy-drop target: "
        "one seed cannot settle that target.",
        "### Thread count and repeatability",
        f"`{DET}`: weights after training twice at 2 threads, and at 2 vs 1 thread.",
        md_table(["comparison", "tensors differing", "max abs difference"], det_rows),
        "Stage I is bit-repeatable at a fixed thread count and not across thread counts: a "
        "re-run at another count is another sample from the seed spread.",
    ]  # fmt: skip


# ---------------------------------------------------------------- page and status


def _full_stamp(name: str, full: dict, commit: str):
    runs = full["runs"]
    return stamp(
        name, full, command="python benchmarks/dynamic_speedup_full.py",
        threads=" / ".join(sorted({str(r["threads"]) for r in runs})),
        load_before=f"{min(r['loadavg_before'][0] for r in runs):.2f}-"
        f"{max(r['loadavg_before'][0] for r in runs):.2f} (1-min, per run)",
        commit=commit,
        date=f"{min(r['started'] for r in runs)} to {max(r['started'] for r in runs)}",
    )  # fmt: skip


def _older() -> dict[str, dict]:
    return {name: load(name) for name in OLDER}


def pages() -> list[Page]:
    tiny, det, full, older = load(TINY), load(DET), load(FULL), _older()
    load1 = [r["timing"]["loadavg_before"][0] for r in tiny["rows"]]
    page = Page(
        "dynamic-speed", "Dynamic vs full net: speed",
        "Routed dynamic nets vs the full largest net: forced 2.5x-MACs mixes at 224 in four "
        "backends, gate overhead, and the tiny demo net over 3 seeds.",
        [_full_stamp(FULL, full, "committed in b7db048 (last changed in 58b7285)"),
         _full_stamp(FIRST, older[FIRST], f"committed in b7db048 as {FULL}; cells replaced in "
                     "9e85bae, e6d7ff1, 58b7285"),
         _full_stamp(REPLACED, older[REPLACED], f"committed in e6d7ff1 as {FULL}; cells "
                     "replaced in 58b7285"),
         stamp(TINY, tiny, load_before=f"{min(load1):.2f}-{max(load1):.2f} (1-min, per row)",
               commit="committed in 1f793e0 (last changed in 695f3e0)"),
         stamp(DET, det, commit="committed in 1f793e0")],
        [],
        {"mix": full_figure(full, older)},
    )  # fmt: skip
    page.sections = [target_table(full, older), *full_sections(full, older, page),
                     *tiny_sections(tiny, det)]  # fmt: skip
    return [page]


def status() -> list[StatusRow]:
    tiny, full = load(TINY), load(FULL)
    cells, ok = mix_cells(full), design_checks(full)
    gone = [(r["net"], r["cell"]) for r in replaced_cells(full, _older())
            if r["cell"]["mix"] == MIX]  # fmt: skip
    gok = design_checks(full, gone)
    met = len(ok["b1"]) + len(ok["b32"]) == len(cells) and len(ok["eff"]) == len(cells)
    g = [o["gate_share_b1"] for _, _, o in gate_shares(full)]
    tiny_g = [_field(r, "gate_share_of_largest_b1") for r in tiny["rows"]]
    drop = [r["acc_drop_pt"] for r in tiny["rows"]]
    macs = [r["macs_reduction"] for r in tiny["rows"]]
    full_t = [r["full_top1"] for r in tiny["rows"]]
    n_drop = sum(d <= 0.5 for d in drop)
    return [
        StatusRow(
            "Does routing to a 2.5x-cheaper mix run >= 2x faster than the full net at 224, "
            "in every backend at batch 1 and 32?",
            verdict(met),
            f"speed-up >= 2x in {len(ok['b1']) + len(ok['b32'])} of {len(cells)} cells "
            f"({_rng([c['speedup'] for _, c in cells])}), efficiency >= {EFF} in "
            f"{len(ok['eff'])} of {len(cells)} ({_effs([c for _, c in cells])}); "
            "4 nets x 3-4 backends x batch 1 and 32, CPU, 2 threads; the replaced cells of "
            f"earlier runs: >= 2x in {len(gok['b1']) + len(gok['b32'])} of {len(gone)}, "
            f"efficiency >= {EFF} in {len(gok['eff'])} of {len(gone)}",
            "dynamic-speed",
        ),
        StatusRow(
            f"Is the gate's overhead under {pct(100 * GATE, 0)} of the largest net at batch 1?",
            verdict(max(g) <= GATE),
            f"at most {pct(100 * max(g), 2)} at 224 ({len(g)} net/backend pairs); on the tiny "
            f"32x32 demo net {pct(100 * min(tiny_g), 2)}-{pct(100 * max(tiny_g), 2)}",
            "dynamic-speed",
        ),
        StatusRow(
            "Does the tiny demo net cut MACs >= 2x and keep top-1 within 0.5 pt of the full net?",
            "yes" if n_drop == len(drop) and min(macs) >= 2 else "partly",
            f"MACs {min(macs):.2f}-{max(macs):.2f}x on every seed; drop <= 0.5 pt in {n_drop} "
            f"of {len(drop)} seed/lambda runs ({min(drop):+.2f} to {max(drop):+.2f} pt); the "
            f"full net's own top-1 spans {100 * (max(full_t) - min(full_t)):.2f} pt over seeds",
            "dynamic-speed",
        ),
    ]
