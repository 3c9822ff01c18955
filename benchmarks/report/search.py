"""Search: the demo's wall time (``benchmarks/demo_timing.py`` -> ``demo_timing.json``) and
search quality (``benchmarks/search_quality.py`` -> ``search_quality_static.json``,
``search_quality_dynamic.json``, ``search_quality_routing.json``): predictor-guided vs Optuna's
samplers for static sub-nets, front-drawn vs fraction routes, and the dynamic front vs
static+attention (older digits-hard ground and the routing ground)."""

from __future__ import annotations

import statistics

from . import RESULTS, Page, StatusRow, load, md_table, new_figure, stamp, times, verdict

DEMO = "demo_timing.json"
STATIC = "search_quality_static.json"
DYNAMIC = "search_quality_dynamic.json"
ROUTING = "search_quality_routing.json"
COMMITTED = {
    STATIC: "committed in 56f5cef",
    DYNAMIC: "committed in fe0a7ef",
    ROUTING: "committed in 3b9c419",
}
COMMANDS = {
    DEMO: "python benchmarks/demo_timing.py",
    STATIC: "python benchmarks/search_quality.py --parts static --seeds 0,1,2,3,4",
    DYNAMIC: "python benchmarks/search_quality.py --parts dynamic --dyn-seeds 0,1,2 --trials 30",
    ROUTING: "python benchmarks/search_quality.py --parts dynamic --no-fraction --dyn-seeds "
    "0,1,2 --trials 16 --static-trials 12 --population 5 --gate-epochs 2,6",
}
DEMO_LIMIT_S = 7 * 60  # target: README install + `search --hw jetson` on 2 cores
AHEAD_PT = 1.0  # target: dynamic >= 1 pt ahead of static+attention at every budget, every seed
FRONT_OVER_FRACTION = 1.05  # target (b): front-drawn routes' HV >= 1.05x fraction routes'
SAMPLERS = {"random": "random", "tpe": "TPE", "nsga2": "NSGA-II", "predictor": "predictor-guided"}


def _mmss(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec} s"


def _host_note(demo: dict) -> str:
    return (
        f"{demo.get('cpu_model', 'CPU not recorded')}, matmul probe "
        f"{demo.get('host_gflops_before', 'n/a')} / {demo.get('host_gflops_after', 'n/a')} "
        "GFLOP/s before / after"
        + (f"; load during up to {demo['load_during_max']}" if "load_during_max" in demo else "")
        + ("; see the page's note" if demo.get("note") else "")
    )


def _hv_cell(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.4f} [{min(xs):.4f}, {max(xs):.4f}]"


def _demo() -> dict | None:
    return load(DEMO) if (RESULTS / DEMO).exists() else None


def _demo_target(demo: dict | None) -> tuple[list[str], str]:
    """The demo row of the target table and the status verdict word."""
    goal = f"newcomer: README install + `search --hw jetson`, 2 cores: < {DEMO_LIMIT_S // 60} min"
    if demo is None:
        return [goal, "not measured (no `demo_timing.json`)", "not measured"], "not measured"
    search = demo["demo_s"]
    if "install_s" in demo:
        total = demo["install_s"] + search
        ok = total < DEMO_LIMIT_S
        return [goal, f"{_mmss(total)} (install {_mmss(demo['install_s'])} + search "
                f"{_mmss(search)}; {_host_note(demo)})", verdict(ok)], verdict(ok)  # fmt: skip
    if search >= DEMO_LIMIT_S:
        return [goal, f"search alone {_mmss(search)} ({_host_note(demo)})", verdict(False)], \
            verdict(False)  # fmt: skip
    return [goal, f"search {_mmss(search)} ({_host_note(demo)}); install not timed in this "
            "file", "not measured"], "not measured"  # fmt: skip


def _demo_section(demo: dict | None) -> str:
    head = "## The demo on 2 cores"
    if demo is None:
        return f"{head}\n\nNo `demo_timing.json` is committed: the demo is not timed."
    rows = [
        ["command", f"`{demo.get('demo_command', 'dsnet-automl search --hw jetson')}`"],
        ["what was timed", demo.get("timed", "not recorded")],
        ["demo wall time", f"{_mmss(demo['demo_s'])} ({demo['demo_s']:g} s)"],
        ["install", _mmss(demo["install_s"]) if "install_s" in demo else
         "not timed in this file"],
        ["CPU", demo.get("cpu_model", "not recorded")],
        ["cores / torch threads", f"{demo.get('cpus', 'not recorded')} / "
         f"{demo.get('threads', 'not recorded')}"],
        ["host probe: float32 matmul GFLOP/s before / after",
         f"{demo.get('host_gflops_before', 'n/a')} / {demo.get('host_gflops_after', 'n/a')}"],
        ["1-min load before / during (median, max)",
         f"{demo.get('load_before', 'not recorded')} / {demo.get('load_during_median', 'n/a')}, "
         f"{demo.get('load_during_max', 'n/a')}"],
        ["torch", demo.get("torch", "not recorded")],
    ]  # fmt: skip
    if demo.get("note"):
        rows.append(["note", demo["note"]])
    text = (
        "The README's first command in a fresh clone: the install, then `dsnet-automl search "
        "--hw jetson` from an empty runs directory (Stage I, the accuracy table, the trials, the "
        "baselines and the export all run, nothing is resumed). A load of 2 on these 2 cores is "
        "the demo itself; above it, something else shared the machine. This "
        "host's speed varies between sessions, so the file keeps a matmul probe taken just "
        "before and after the run: compare demo times only next to it."
    )
    out = [head, text, md_table(["", "measured"], rows)]
    if demo.get("last_lines"):
        out += ["The run's last lines:", "```text\n" + "\n".join(demo["last_lines"]) + "\n```"]
    return "\n\n".join(out)


def _static_ratios(data: dict) -> list[float]:
    return data["static"]["target_predictor25_vs_random100"]["per_seed_ratio"]


def _static_section(data: dict) -> str:
    st = data["static"]
    hv, budgets = st["hypervolume"], st["budgets"]
    rows = [[SAMPLERS.get(s, s)] + [_hv_cell(hv[s][str(b)]) for b in budgets] for s in hv]
    table = md_table(["search"] + [f"HV @ {b} evaluations, mean [min, max]" for b in budgets],
                     rows)  # fmt: skip
    lo, hi = str(min(budgets)), str(max(budgets))
    pred, rnd = hv["predictor"][lo], hv["random"][hi]
    seed_rows = [
        [s, f"{p:.4f}", f"{r:.4f}", times(q), verdict(q >= 1)]
        for s, p, r, q in zip(st["seeds"], pred, rnd, _static_ratios(data), strict=True)
    ]
    seed_table = md_table(["seed", f"predictor-guided @ {lo}", f"random @ {hi}", "ratio",
                           "target"], seed_rows)  # fmt: skip
    best = max((v, s, b) for s in hv for b in budgets for v in hv[s][str(b)])
    spread = (max(pred) - min(pred)) / (max(rnd) - min(rnd))
    ref = st["reference_point"]
    intro = (
        "Each evaluation is one measured sub-net (val and test top-1 from the accuracy table). "
        f"Optuna's random, TPE and NSGA-II samplers run {hi} trials; their first {lo} and "
        f"{budgets[1]} trials are the smaller budgets (sequential samplers). Predictor-guided = "
        "`dsnet_automl.accuracy.guided`: the smallest, the largest and random sub-nets for the "
        "first share of the budget, then batches of predicted-front points of largest predicted "
        "HV gain, the predictor refitted after each batch. Reference point "
        f"({ref['test_top1']:.3f} test top-1, {ref['latency_ms']:.3f} ms)."
    )
    notes = (
        f"Predictor-guided's spread over seeds at {lo} is {spread:.2f}x random's at {hi} "
        f"(max - min). TPE and NSGA-II do not beat random at these budgets. The initial random "
        "share of the predictor-guided search was picked from two values tried on these same "
        f"seeds: read the {lo}-evaluation figure with that in mind. There is no exhaustive "
        f"reference in the file: it records {st['distinct_configs_measured']:,} distinct "
        "sub-nets measured over all searches (not the whole grid), and no search's HV over them; "
        f"the highest HV any search reached is {best[0]:.4f} ({SAMPLERS[best[1]]} @ {best[2]})."
    )
    return "\n\n".join(["## Static search: predictor-guided vs Optuna", intro, table,
                        "{static_img}", "Per seed:", seed_table, notes])  # fmt: skip


def _routing_hv(data: dict) -> str:
    keys = [("front", "gate trials"), ("gate_knob", "gate + knob"),
            ("cascade", "cascade (gate head)"), ("cascade_route_heads", "cascade (route heads)"),
            ("static_attention", "static+attention"), ("static", "static")]  # fmt: skip
    per = data["dynamic"]["per_seed"]
    rows = [[s["seed"]] + [f"{s[k]['hypervolume']:.4f}" for k, _ in keys] for s in per]
    rows.append(["mean [min, max]"] + [_hv_cell([s[k]["hypervolume"] for s in per])
                                       for k, _ in keys])  # fmt: skip
    return md_table(["seed"] + [f"HV {n}" for _, n in keys], rows)


def _routing_budgets(data: dict) -> tuple[str, list[list[float]]]:
    pols = [("gate", "gate"), ("cascade", "cascade (gate head)"),
            ("cascade_route_heads", "cascade (route heads)")]  # fmt: skip
    rows, margins = [], []
    for s in data["dynamic"]["per_seed"]:
        seed_m = []
        for c in s["at_budgets"]:
            base = c["static_attention"]["test"]
            row = [s["seed"], f"{100 * c['fraction']:g}%", f"{c['budget_ms']:.3f}",
                   f"{100 * base:.1f} @{c['static_attention']['test_cost']:.2f}"]  # fmt: skip
            for k, _ in pols:
                t = c[k]["test"]
                row.append(f"{100 * t:.1f} ({100 * (t - base):+.1f}) @{c[k]['test_cost']:.2f}")
            seed_m.append(100 * (c["gate"]["test"] - base))
            rows.append(row)
        margins.append(seed_m)
    header = ["seed", "budget", "budget ms", "static+attention"] + [n for _, n in pols]
    return md_table(header, rows), margins


def _routing_ok(data: dict) -> tuple[bool, list[list[float]]]:
    _, margins = _routing_budgets(data)
    per = data["dynamic"]["per_seed"]
    g = [s["front"]["hypervolume"] for s in per]
    sa = [s["static_attention"]["hypervolume"] for s in per]
    ahead = all(m >= AHEAD_PT for seed in margins for m in seed)
    return ahead and min(g) > max(sa), margins


def _routing_section(data: dict) -> str:
    table, margins = _routing_budgets(data)
    ok, _ = _routing_ok(data)
    dyn, per = data["dynamic"], data["dynamic"]["per_seed"]
    tau = ", ".join(f"{s['predictor']['kendall_tau']:.2f}" for s in per)
    secs = [s["front"]["seconds"] for s in per]
    intro = (
        f"The whole search on the routing ground (`{dyn['study']}`: `{data['data']}`, "
        f"{data['device']}, gate at {data['gate_stage']}), per seed its own data split and "
        f"Stage I ({data['checkpoint_epochs']} epochs): the demo's study ({dyn['trials']} "
        "NSGA-II trials, front routing), static+attention on the static front. Gate trials = "
        "the trials' front; gate + knob: every trial's trained gate with its budget-knob "
        "settings; cascade (gate head) = every trial's cascade on its routes with its gate's "
        "attention head; cascade (route heads) = the search's cascade of the menu's ends. HV on "
        "test, reference point per seed (test top-1 of the smallest sub-net, latency of the "
        "largest)."
    )
    budget_intro = (
        "At budgets spread over the static+attention front's latency range, each point "
        "selected on val within the budget. Cells: test top-1 % (margin over static+attention, "
        "pt) @ test expected ms."
    )
    gate_m = "; ".join(f"seed {s['seed']} {m[0]:+.1f} / {m[1]:+.1f}"
                       for s, m in zip(per, margins, strict=True))  # fmt: skip
    notes = (
        f"**Verdict: {verdict(ok)}.** The gate's margin over static+attention at the two "
        f"budgets: {gate_m} pt. The controlled comparison with the same routes and epochs is on "
        "the [routing headroom page](routing.md). Predictor (held-out Kendall tau per seed): "
        f"{tau}. Search time per seed: {min(secs):.0f}-{max(secs):.0f} s for the "
        f"{dyn['trials']} trials and baselines ({data['torch_threads']} torch threads); Stage I: "
        f"{data['stage1_seconds']:.0f} s."
    )
    return "\n\n".join(["## The search on the routing ground", intro, _routing_hv(data),
                        budget_intro, table, "{routing_img}", notes])  # fmt: skip


def _dynamic_rows(per: list[dict]) -> list[list]:
    rows = []
    for s in per:
        vsa, vs = s["versus_static_attention"], s["versus_static"]
        f, fr = s["front"]["hypervolume"], s["fraction"]["hypervolume"]
        rows.append([
            s["seed"], f"{f:.4f}", f"{fr:.4f}", times(f / fr),
            f"{s['static_attention']['hypervolume']:.4f}", f"{s['static']['hypervolume']:.4f}",
            f"{vsa['wins']}/{vsa['comparable']} ({vsa['mean_margin_pt']:+.2f} pt)",
            f"{vs['wins']}/{vs['comparable']} ({vs['mean_margin_pt']:+.2f} pt)",
        ])  # fmt: skip
    mean = lambda k: statistics.fmean(s[k]["hypervolume"] for s in per)  # noqa: E731
    rows.append(["mean", f"{mean('front'):.4f}", f"{mean('fraction'):.4f}",
                 times(mean("front") / mean("fraction")), f"{mean('static_attention'):.4f}",
                 f"{mean('static'):.4f}", "", ""])  # fmt: skip
    return rows


def _route_use(per: list[dict]) -> str:
    pts = [(s["seed"], p) for s in per for p in s["front"]["front"]]
    multi = [p for _, p in pts if len(p["test_route_hist"]) > 2]
    mid_zero = sum(not any(p["test_route_hist"][1:-1]) for p in multi)
    single = [f"seed {sd}, trial {p['trial']}" for sd, p in pts
              if sum(1 for n in p["test_route_hist"] if n) == 1]  # fmt: skip
    narrow, wide = [], []
    for s in per:
        for r in s["per_route"].values():
            used = [i for i, x in enumerate(r["share"]) if x > 0]
            if len(used) > 1:
                narrow.append(r["test_top1"][used[0]])
                wide.append(r["test_top1"][used[-1]])
    return (
        f"Why routing adds little here: the middle routes get no test image on {mid_zero} of "
        f"the {len(multi)} dynamic front points with 3-4 routes, and {len(single)} of all "
        f"{len(pts)} front points send every image to "
        f"one route ({'; '.join(single)}), i.e. they *are* static+attention. Where the gate "
        "does route (the three most accurate front points of each seed, `per_route` in the "
        "file), it separates easy from hard inputs as intended: the images sent to the narrow "
        f"route score {100 * min(narrow):.0f}-{100 * max(narrow):.0f}% test top-1, those sent to "
        f"the widest route used {100 * min(wide):.0f}-{100 * max(wide):.0f}%."
    )


def _dynamic_section(data: dict) -> str:
    dyn, per = data["dynamic"], data["dynamic"]["per_seed"]
    fvf = dyn["front_vs_fraction"]
    ratio_ok = fvf["mean_ratio"] >= FRONT_OVER_FRACTION and fvf["front"]["min"] > \
        fvf["fraction"]["max"]  # fmt: skip
    header = ["seed", "HV front routing", "HV fraction routing", "front / fraction",
              "HV static+attention", "HV static", "dynamic wins vs static+attention (mean margin)",
              "vs static"]  # fmt: skip
    sa = [s["static_attention"]["hypervolume"] for s in per]
    st = [s["static"]["hypervolume"] for s in per]
    fh = [s["front"]["hypervolume"] for s in per]
    overlap = min(fh) <= max(sa) and min(sa) <= max(fh)
    wins = sum(s["versus_static"]["wins"] for s in per)
    comp = sum(s["versus_static"]["comparable"] for s in per)
    f_s = [s["front"]["seconds"] for s in per]
    fr_s = [s["fraction"]["seconds"] for s in per]
    reused = [s[k]["reused"] for s in per for k in ("front", "fraction")]
    tau = ", ".join(f"{s['predictor']['kendall_tau']:.2f} (RMSE "
                    f"{100 * s['predictor']['rmse']:.1f} pt)" for s in per)  # fmt: skip
    p0 = per[0]["predictor"]
    intro = (
        f"The older ground: one Stage I checkpoint ({data['checkpoint_epochs']} epochs) for "
        "every seed (seed 0's, whose training split holds other seeds' test images; the "
        "routing-ground runs above train one per seed) on "
        f"`{data['data']}`, {data['device']}, {data['torch_threads']} torch thread per process. "
        f"Per seed (the study seed: data split, sampler, gate init), a {dyn['trials']}-trial "
        "NSGA-II study with front routing (plus the static trials and the static+attention "
        f"trainings) and a {dyn['trials']}-trial study with fraction routing. Wins: the dynamic "
        "front points whose test top-1 beats the best baseline front point at equal or lower "
        "latency; margin: the mean difference over the dynamic front points, test top-1 points."
    )
    notes = (
        f"- **Front vs fraction routes: target (>= {FRONT_OVER_FRACTION}x, seed ranges apart) "
        f"{verdict(ratio_ok)}.** Mean ratio {times(fvf['mean_ratio'])}; front routing "
        f"{_hv_cell([s['front']['hypervolume'] for s in per])}, fraction "
        f"{_hv_cell([s['fraction']['hypervolume'] for s in per])}.\n"
        f"- **Dynamic vs static+attention: {'not shown' if overlap else 'shown'}.** HV "
        f"{_hv_cell(fh)} vs {_hv_cell(sa)}, seed ranges {'overlapping' if overlap else 'apart'}. "
        f"Against the *bare* static front dynamic wins at {wins} of {comp} front points, but "
        "most of that is the trained attention head: static+attention's HV alone is "
        f"{times(min(a / b for a, b in zip(sa, st, strict=True)))}-"
        f"{times(max(a / b for a, b in zip(sa, st, strict=True)))} bare static's.\n"
        f"- {_route_use(per)}\n"
        f"- The accuracy predictor ({p0['model']}, {p0['encoding']} encoding, {p0['n_train']} "
        f"training and {p0['n_holdout']} held-out sub-nets), held-out Kendall tau per seed: "
        f"{tau}.\n"
        f"- Time per seed: front routing {min(f_s):.0f}-{max(f_s):.0f} s, fraction "
        f"{min(fr_s):.0f}-{max(fr_s):.0f} s; equal routes + gate parameters were reused instead "
        f"of retrained {min(reused)}-{max(reused)} times per study."
    )
    return "\n\n".join(["## Front-drawn vs fraction routes, dynamic vs static+attention "
                        "(digits-hard)", intro, md_table(header, _dynamic_rows(per)),
                        notes])  # fmt: skip


def _static_figure(data: dict):
    st = data["static"]
    budgets = st["budgets"]
    fig, ax = new_figure(5.6, 3.4)
    for i, (s, name) in enumerate(SAMPLERS.items()):
        hv = [st["hypervolume"][s][str(b)] for b in budgets]
        ax.plot(budgets, [statistics.fmean(v) for v in hv], "-o", color=f"C{i}", label=name)
        ax.fill_between(budgets, [min(v) for v in hv], [max(v) for v in hv], color=f"C{i}",
                        alpha=0.12)  # fmt: skip
    ax.set_xticks(budgets)
    ax.set_xlabel("real evaluations (measured sub-nets)")
    ax.set_ylabel("test hypervolume (mean; band: min-max)")
    ax.set_title(f"Static search, {len(st['seeds'])} seeds")
    ax.legend(fontsize=7)
    return fig


BUDGET_MARKS = [
    ("static_attention", "v", "black", "static+attention"),
    ("gate", "P", "C3", "gate or gate + knob"),
    ("cascade", "s", "C4", "cascade (gate head)"),
    ("cascade_route_heads", "D", "C5", "cascade (route heads)"),
]


def _routing_figure(data: dict):
    per = data["dynamic"]["per_seed"]
    fig, _ = new_figure(9.0, 3.4)
    fig.clf()
    axes = fig.subplots(1, len(per), sharey=True)
    for ax, s in zip(axes, per, strict=True):
        pts = sorted(s["front"]["front"], key=lambda p: p["latency_ms"])
        ax.plot([p["latency_ms"] for p in pts], [100 * p["test"] for p in pts], "-o",
                color="C0", label="gate trials' front")  # fmt: skip
        vs = s["versus_static_attention"]["points"]
        ax.plot([p["latency_ms"] for p in vs], [100 * p["baseline_test_top1"] for p in vs], "x",
                color="black", label="static+attention, best at or below")  # fmt: skip
        for k, mk, color, name in BUDGET_MARKS:
            cs = [c[k] for c in s["at_budgets"]]
            ax.plot([c["test_cost"] for c in cs], [100 * c["test"] for c in cs], mk,
                    color=color, linestyle="none", label=f"{name}, at the budgets")  # fmt: skip
        for c in s["at_budgets"]:
            ax.axvline(c["budget_ms"], color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"seed {s['seed']}", fontsize=9)
    fig.supxlabel(f"expected latency per image, ms ({data['device']})")
    axes[0].set_ylabel("test top-1, %")
    axes[-1].legend(fontsize=6, loc="lower right")
    fig.suptitle("The search on the routing ground (dotted: the two budgets)")
    fig.tight_layout()
    return fig


def _targets(static: dict, routing: dict, dynamic: dict, demo: dict | None) -> str:
    r = _static_ratios(static)
    t = static["static"]["target_predictor25_vs_random100"]
    ok_r, margins = _routing_ok(routing)
    per = routing["dynamic"]["per_seed"]
    fvf = dynamic["dynamic"]["front_vs_fraction"]
    ok_f = fvf["mean_ratio"] >= FRONT_OVER_FRACTION and fvf["front"]["min"] > \
        fvf["fraction"]["max"]  # fmt: skip
    rows = [
        ["static search, predictor-guided vs random, equal real evaluations: @25 >= random @100 "
         "on every seed (and the mean)",
         f"{sum(x >= 1 for x in r)} of {len(r)} seeds (ratios "
         + ", ".join(f"{x:.2f}" for x in r) + f"); mean {times(t['mean_ratio'])}",
         verdict(min(r) >= 1 and t["mean_ratio"] >= 1)],
        _demo_target(demo)[0],
        [f"dynamic (the search's gate trials) vs static+attention on the routing ground: >= "
         f"{AHEAD_PT:g} pt ahead at 2 budgets on every seed, HV ranges apart",
         "margins " + "; ".join(f"{m[0]:+.1f} / {m[1]:+.1f}" for m in margins) + " pt; HV "
         + _hv_cell([s["front"]["hypervolume"] for s in per]) + " vs "
         + _hv_cell([s["static_attention"]["hypervolume"] for s in per]), verdict(ok_r)],
        [f"front-drawn vs fraction routes (digits-hard): >= {FRONT_OVER_FRACTION}x HV, seed "
         "ranges apart", f"{times(fvf['mean_ratio'])} mean; ratios "
         + ", ".join(f"{x:.2f}" for x in fvf["per_seed_ratio"]), verdict(ok_f)],
    ]  # fmt: skip
    return md_table(["Target", "Measured", "Verdict"], rows)


def pages() -> list[Page]:
    static, dynamic, routing = load(STATIC), load(DYNAMIC), load(ROUTING)
    demo = _demo()
    stamps = [stamp(DEMO, demo, command=COMMANDS[DEMO])] if demo is not None else []
    for f, d in ((ROUTING, routing), (STATIC, static), (DYNAMIC, dynamic)):
        stamps.append(stamp(f, d, command=COMMANDS[f], commit=COMMITTED[f],
                            threads=d.get("torch_threads")))  # fmt: skip
    page = Page(
        "search",
        "Search: demo time and search quality",
        "How long the demo search takes on 2 cores, predictor-guided vs random static search, "
        "and what the dynamic search finds against static+attention.",
        stamps,
        [],
        {"static": _static_figure(static), "routing": _routing_figure(routing)},
    )
    page.sections = [
        _targets(static, routing, dynamic, demo),
        "Selection is always on **val**; every hypervolume (HV) is computed on the **test** "
        "top-1 of the val-selected front, with a fixed reference point per part. Latency is "
        "the predicted Jetson table.",
        _demo_section(demo),
        _routing_section(routing).replace(
            "{routing_img}", page.img("routing", "routing-ground search fronts per seed")),
        _static_section(static).replace(
            "{static_img}", page.img("static", "hypervolume vs real evaluations per search")),
        _dynamic_section(dynamic),
    ]  # fmt: skip
    return [page]


def status() -> list[StatusRow]:
    static = load(STATIC)
    r = _static_ratios(static)
    t = static["static"]["target_predictor25_vs_random100"]
    wins = sum(x >= 1 for x in r)
    demo = _demo()
    row, word = _demo_target(demo)
    evidence = "no demo timing is committed" if demo is None else row[1]
    return [
        StatusRow(
            "Does predictor-guided search beat random?",
            "yes" if wins == len(r) else ("partly" if wins else "no"),
            f"@25 evaluations vs random @100: {wins} of {len(r)} seeds, mean HV ratio "
            f"{times(t['mean_ratio'])}",
            "search",
        ),
        StatusRow("How long does the demo take on 2 cores?", word, evidence, "search"),
    ]
