"""Latency predictor vs measured end-to-end latency on this CPU
(``benchmarks/predictor_accuracy.py`` -> ``predictor_accuracy_cpu.json``, the same run before the
malloc fix ``predictor_accuracy_cpu_default_malloc.json``, chain vs isolated block timing
``predictor_accuracy_chain_cpu.json``).

The target is judged as profiled: the predictor as the profiler left it, calibrated on the
validation nets the profiler timed. The benchmark's main figures re-fit the calibration on those
validation nets re-measured in the same rounds as the test nets; they are shown beside, labelled.
"""

from __future__ import annotations

from . import Page, StatusRow, load, md_table, new_figure, pct, stamp, verdict

MAIN = "predictor_accuracy_cpu.json"
MALLOC = "predictor_accuracy_cpu_default_malloc.json"
CHAIN = "predictor_accuracy_chain_cpu.json"
COMMAND = (
    "python benchmarks/predictor_accuracy.py --full --batch-sizes 1 32 --threads 1 "
    "--timing isolated"
)
MAPE_MAX = 5.0  # the design doc's target, per space/batch cell, as profiled
WITHIN_MIN = 0.95
DEFAULT = "learned"  # the predictor's default calibration
AS_PROFILED = "as_profiled:"
# facts from git (the render never calls git)
COMMITS = {
    MAIN: "committed in 3e36e64, last changed in 288e31a",
    MALLOC: "committed in 288e31a",
    CHAIN: "committed in ca92ef2",
}
DEFAULT_SET_IN = "288e31a"  # the commit that made `learned` the default, with this run's file


def _ok(score: dict, mape: float = MAPE_MAX, within: float = WITHIN_MIN) -> bool:
    return score["mape_pct"] <= mape and score["within_10pct"] >= within


def _fmt(score: dict | None) -> str:
    if not score:
        return "n/a"
    return (f"{pct(score['mape_pct'])} / {100 * score['within_10pct']:.0f}% / "
            f"{score['kendall_tau']:.2f}")  # fmt: skip


def _count(data: dict, cal: str, **kw: float) -> int:
    return sum(_ok(r["scores"][cal], **kw) for r in data["results"])


def _counts(data: dict) -> dict:
    t = data["targets"]
    res = data["results"]
    return {
        "n": len(res),
        "profiled": _count(data, AS_PROFILED + DEFAULT),
        "profiled_overhead": _count(data, AS_PROFILED + "overhead"),
        "refit": _count(data, DEFAULT),
        "profiled_file": _count(data, AS_PROFILED + DEFAULT, mape=t["mape_pct"],
                                within=t["within_10pct"]),
        "tau_profiled": sum(r["scores"][AS_PROFILED + DEFAULT]["kendall_tau"] >= t["kendall_tau"]
                            for r in res),
        "tau_refit": sum(r["scores"][DEFAULT]["kendall_tau"] >= t["kendall_tau"] for r in res),
        "ceiling_ok": sum(_ok(r["noise_ceiling"]) for r in res if r["noise_ceiling"]),
    }  # fmt: skip


def _target_table(c: dict) -> str:
    target = (
        "latency predictor vs measured, this CPU (1 thread), b1 and b32, as profiled with the "
        f"default calibration `{DEFAULT}`: MAPE <= {MAPE_MAX:g}% and >= "
        f"{100 * WITHIN_MIN:.0f}% within +-10% in every space/batch cell"
    )
    measured = f"{c['profiled']} of {c['n']} cells"
    return md_table(["Target", "Measured", "Verdict"],
                    [[target, measured, verdict(c["profiled"] == c["n"])]])  # fmt: skip


def _caveats(data: dict, c: dict) -> str:
    t = data["targets"]
    return (
        f"**Read with these figures.** The default calibration `{DEFAULT}` was chosen after "
        f"this run, on its figures (commit {DEFAULT_SET_IN} made it the default and committed "
        f"this file). As profiled, the other calibration, `overhead`, meets the target in "
        f"{c['profiled_overhead']} of {c['n']} cells. The file's own targets (MAPE <= "
        f"{t['mape_pct']:g}%, >= {100 * t['within_10pct']:.0f}% within +-10%, tau >= "
        f"{t['kendall_tau']:g}) are looser than the target above; against them, as profiled: "
        f"{c['profiled_file']} of {c['n']} on MAPE and within, tau in {c['tau_profiled']}. "
        f"After a same-time re-fit (the calibration re-fitted on the validation nets re-measured "
        f"in the test rounds; not how a user's table is calibrated, so not the target's measure): "
        f"{c['refit']} of {c['n']} cells, tau >= {t['kendall_tau']:g} in {c['tau_refit']}. The "
        f"host's own noise ceiling meets the target in {c['ceiling_ok']} of {c['n']} cells."
    )


def _main_table(data: dict) -> str:
    rows = []
    for r in data["results"]:
        s = r["scores"]
        rows.append([
            r["space"], r["batch_size"], r["settings"]["configs"],
            _fmt(s[AS_PROFILED + DEFAULT]), verdict(_ok(s[AS_PROFILED + DEFAULT])),
            _fmt(s[AS_PROFILED + "overhead"]),
            _fmt(s[DEFAULT]), _fmt(s["overhead"]), _fmt(r["noise_ceiling"]),
            f"{r['profile_seconds']:.0f}",
        ])  # fmt: skip
    header = [
        "space", "batch", "test nets", f"as profiled: {DEFAULT} (default)", "target",
        "as profiled: overhead", f"after re-fit: {DEFAULT}", "after re-fit: overhead",
        "noise ceiling", "profiling s",
    ]  # fmt: skip
    return md_table(header, rows)


def _malloc_table(data: dict) -> str:
    rows = [
        [r["space"], r["batch_size"], _fmt(r["scores"][AS_PROFILED + DEFAULT]),
         verdict(_ok(r["scores"][AS_PROFILED + DEFAULT])), _fmt(r["scores"][DEFAULT]),
         _fmt(r["noise_ceiling"])]
        for r in data["results"]
    ]  # fmt: skip
    header = ["space", "batch", f"as profiled: {DEFAULT}", "target", f"after re-fit: {DEFAULT}",
              "noise ceiling"]  # fmt: skip
    return md_table(header, rows)


def _chain_table(data: dict) -> str:
    rows = []
    for r in data["results"]:
        s = r["scores"]
        rows.append([
            r["space"], r["timing"], _fmt(s[AS_PROFILED + DEFAULT]),
            _fmt(s[AS_PROFILED + "overhead"]), _fmt(s[DEFAULT]), _fmt(s["overhead"]),
            _fmt(r["noise_ceiling"]), f"{r['profile_seconds']:.0f}",
        ])  # fmt: skip
    header = [
        "space", "block timing", f"as profiled: {DEFAULT}", "as profiled: overhead",
        f"after re-fit: {DEFAULT}", "after re-fit: overhead", "noise ceiling", "profiling s",
    ]  # fmt: skip
    return md_table(header, rows)


def _chain_text(data: dict) -> str:
    res = data["results"]
    ceil = [r["noise_ceiling"]["mape_pct"] for r in res if r["noise_ceiling"]]
    secs = {(r["space"], r["timing"]): r["profile_seconds"] for r in res}
    slower = ", ".join(
        f"{space} {secs[(space, 'chain')] / secs[(space, 'isolated')]:.1f}x"
        for space in sorted({k[0] for k in secs})
        if (space, "chain") in secs and (space, "isolated") in secs
    )
    return (
        "Blocks timed in a chain (`dsnet-automl profile --timing chain`, "
        '`Profiler(timing="chain")`): every block is timed inside whole passes of a few '
        "sub-nets that together make every block of the grid, so it sees its real neighbour's "
        "output and cache state. Side by side on the same held-out end-to-end measurements, "
        f"batch {res[0]['batch_size']}, {res[0]['threads']} thread. This run's noise ceiling "
        f"({pct(min(ceil))}-{pct(max(ceil))} MAPE) is above the {MAPE_MAX:g}% target, so it "
        f"cannot check the target. Chain timing took longer to profile: {slower}. Isolated "
        "timing stays the default, chain timing an option."
    )


def _malloc_text(main: dict, before: dict) -> str:
    a, b = _counts(main), _counts(before)
    return (
        "The same command before the malloc fix (`dsnet_automl/_malloc.py`: the CPU profiler now "
        "keeps freed memory mapped, `keep_freed_memory()`, so blocks and whole nets are timed in "
        "a process that does not page freed activations back in). As profiled it meets the "
        f"target in {b['profiled']} of {b['n']} cells, the run above in {a['profiled']} of "
        f"{a['n']}; after a same-time re-fit, {b['refit']} and {a['refit']}. These are two runs "
        "on a host whose speed drifts between runs; the page does not separate the fix from "
        "that drift. Deploy with `dsnet_automl.keep_freed_memory()` (or "
        "`MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824`) to run the way "
        "the tables were measured; `DSNET_KEEP_FREED_MEMORY=0` turns it off."
    )


def _test_nets(data: dict) -> str:
    by = {r["batch_size"]: r["settings"]["configs"] for r in data["results"]}
    return ", ".join(f"{by[b]} at batch {b}" for b in sorted(by))


def _figure(data: dict):
    fig, ax = new_figure(6.6, 3.8)
    res = data["results"]
    labels = [f"{r['space'].replace('ds_', '')} b{r['batch_size']}" for r in res]
    series = [
        (f"as profiled ({DEFAULT})", [r["scores"][AS_PROFILED + DEFAULT]["mape_pct"] for r in res]),
        (f"after re-fit ({DEFAULT})", [r["scores"][DEFAULT]["mape_pct"] for r in res]),
        ("noise ceiling", [r["noise_ceiling"]["mape_pct"] for r in res]),
    ]
    w = 0.27
    for i, (name, ys) in enumerate(series):
        ax.bar([x + (i - 1) * w for x in range(len(res))], ys, w, label=name)
    ax.axhline(MAPE_MAX, color="black", lw=1, ls="--", label=f"target {MAPE_MAX:g}%")
    ax.set_xticks(range(len(res)), labels, fontsize=7, rotation=35, ha="right")
    ax.set_ylabel("MAPE vs measured (%)")
    ax.set_title("Latency predictor error per space and batch (CPU, 1 thread)")
    ax.legend(fontsize=7)
    return fig


def pages() -> list[Page]:
    main, before, chain = load(MAIN), load(MALLOC), load(CHAIN)
    c = _counts(main)
    nn = main["nn_meter_published"]
    t0 = main["results"][0]
    intro = (
        f"Held-out random sub-nets (never used for fitting; {_test_nets(main)}) "
        f"measured end to end as extracted static models vs the predictor, this 2-core CPU, "
        f"{t0['threads']} thread. Every timing is interleaved rounds, each keeping its fastest "
        'call, then the median over rounds (`Profiler(statistic="min")`). The noise ceiling '
        "is the same estimator on odd rounds predicting even rounds. Cells: MAPE / share within "
        "+-10% / Kendall tau. For scale, nn-Meter reports "
        f"{100 * nn['mobile_cpu']:.0f}% within +-10% on a mobile CPU, "
        f"{100 * nn['mobile_gpu']:.0f}% on a mobile GPU, {100 * nn['intel_vpu']:.0f}% on a VPU."
    )
    stamps = [
        stamp(MAIN, main, command=COMMAND, threads=t0["threads"], commit=COMMITS[MAIN]),
        stamp(MALLOC, before, command=COMMAND, threads=before["results"][0]["threads"],
              commit=COMMITS[MALLOC]),
        stamp(CHAIN, chain, threads=chain["results"][0]["threads"], commit=COMMITS[CHAIN]),
    ]  # fmt: skip
    page = Page(
        "predictor", "Latency predictor accuracy",
        "The latency predictor vs measured end-to-end latency on this CPU, as profiled and "
        "after a same-time re-fit.",
        stamps, [], figures={"mape": _figure(main)},
    )  # fmt: skip
    page.sections = [
        _target_table(c),
        _caveats(main, c),
        "## As profiled, and after a same-time re-fit",
        intro,
        _main_table(main),
        page.img("mape", "Predictor MAPE per space and batch: as profiled, after a same-time "
                 "re-fit, and the noise ceiling, with the 5% target"),
        "## Before the malloc fix",
        _malloc_text(main, before),
        _malloc_table(before),
        "## Blocks timed in a chain",
        _chain_text(chain),
        _chain_table(chain),
        "The chain file's full command line was not recorded; the run compared "
        "`--timing isolated chain` on the same test nets.",
    ]  # fmt: skip
    return [page]


def status() -> list[StatusRow]:
    c = _counts(load(MAIN))
    return [
        StatusRow(
            "Does the latency predictor meet its target on this CPU as profiled?",
            "yes" if c["profiled"] == c["n"] else "no",
            f"{c['profiled']} of {c['n']} space/batch cells meet MAPE <= {MAPE_MAX:g}% and >= "
            f"{100 * WITHIN_MIN:.0f}% within +-10% (b1 and b32, 1 thread, default calibration "
            f"`{DEFAULT}`, chosen after this run); after a same-time re-fit {c['refit']} of "
            f"{c['n']}",
            "predictor",
        )
    ]
