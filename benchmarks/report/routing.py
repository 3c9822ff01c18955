"""Routing headroom: does the dynamic net (gate routing) beat the best static sub-net with the same
trained attention head (static+attention) at equal latency? Gates, confidence cascades and a
per-image oracle on the same routes, per seed (``benchmarks/routing_headroom.py`` ->
``routing_headroom.json``)."""

from __future__ import annotations

import statistics

from . import Page, StatusRow, load, md_table, new_figure, stamp, times, verdict

FILE = "routing_headroom.json"
COMMITTED = "committed in cce4e6c"
COMMAND = "python benchmarks/routing_headroom.py"
AHEAD_PT = 1.0  # target: >= 1 pt ahead of static+attention at every budget, every seed
MIN_SPREAD = 2.5  # target: the routes' cost spread on the device at the evaluated batch
# The per-route-head confidence cascade is a routing mode of the product: the search builds it
# from the menu's ends and exports it (`export/cascade`); `dsnet-automl run` and `bench` take
# `--policy cascade` (dsnet_automl/policies.py, dsnet_automl/search/cascade.py).
CASCADE_OFFERED = True
CASCADE_BEST = "cascade_ends_route_heads"
GLOSSARY = (
    "Policies: `gate_<target>_e<epochs>` is a trained gate (SGS target `ends`: only the "
    "cheapest and the dearest route are targets, as in the reference; `cheapest`: each image's "
    "cheapest correct route), `_lam<x>` a gate trained with that cost weight lambda instead of "
    "the default. `cascade_ends` runs the cheapest route and escalates images whose confidence "
    "is below the knob to the dearest; `cascade_all` escalates through all routes; both use "
    "the default gate's attention head. `*_route_heads`: the same cascade with each route's "
    "own static+attention head (the K static+attention nets run on the shared prefix). "
    "Oracle: each image on its cheapest correct route (an upper bound no router reaches)."
)


def _main_gate(data: dict) -> str:
    """The default gate's policy name (SGS target cheapest, the run's epochs)."""
    return f"gate_cheapest_e{data['settings']['epochs']}"


def _policies(data: dict) -> list[str]:
    cell = data["per_seed"][0]["at_budget"][0]
    return [k for k in cell if k.startswith(("gate_", "cascade_"))]


def _margins(data: dict, policy: str) -> list[list[float]]:
    """Per seed, per budget: policy test top-1 minus static+attention's, in points."""
    return [
        [100 * (c[policy]["accuracy"] - c["static_attention_test"]) for c in s["at_budget"]]
        for s in data["per_seed"]
    ]


def _hv(data: dict, key: str) -> list[float]:
    return [s["hypervolume"][key] for s in data["per_seed"]]


def _meets(data: dict, policy: str) -> bool:
    ahead = all(m >= AHEAD_PT for seed in _margins(data, policy) for m in seed)
    apart = min(_hv(data, policy)) > max(_hv(data, "static_attention"))
    return ahead and apart


def _spreads(data: dict) -> list[float]:
    return [max(s["routes"]["latency_ms"]) / min(s["routes"]["latency_ms"])
            for s in data["per_seed"]]  # fmt: skip


def _pm(xs: list[float]) -> str:
    return ", ".join(f"{x:+.1f}" for x in xs)


def _rng(xs: list[float], digits: int = 1, unit: str = "") -> str:
    """'lo-hi' (or 'lo to hi' when a bound is negative) of a few seeds' values."""
    lo, hi = (f"{x:.{digits}f}" for x in (min(xs), max(xs)))
    if lo == hi:
        return f"{lo}{unit}"
    return f"{lo}{' to ' if min(xs) < 0 else '-'}{hi}{unit}"


def _ms(xs: list[float], signed: bool = True) -> str:
    """'mean ± sd (min to max)' of a few seeds' values."""
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    f = "+.1f" if signed else ".1f"
    return f"{statistics.fmean(xs):{f}} ± {sd:.1f} ({min(xs):{f}} to {max(xs):{f}})"


def _hv_cell(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.4f} [{min(xs):.4f}, {max(xs):.4f}]"


def _targets(data: dict) -> str:
    main = _main_gate(data)
    pols = _policies(data)
    met = [p for p in pols if _meets(data, p)]
    m_main = _margins(data, main)
    sa, g = _hv(data, "static_attention"), _hv(data, main)
    best_hv = max(pols, key=lambda p: statistics.fmean(_hv(data, p)))
    c = _hv(data, CASCADE_BEST)
    level = sum(a >= b for a, b in zip(g, c, strict=True))
    n = len(g)
    rows = [
        [
            f"the default gate (`{main}`) vs static+attention: >= {AHEAD_PT:g} pt ahead at "
            f"{len(m_main[0])} budgets on every seed, hypervolume ranges apart",
            "margins per seed (low, high budget): "
            + "; ".join(f"{m[0]:+.1f} / {m[1]:+.1f}" for m in m_main)
            + f" pt; HV {_hv_cell(g)} vs {_hv_cell(sa)}",
            verdict(_meets(data, main)),
        ],
        [
            "any routing policy measured here, same target",
            f"{len(met)} of {len(pols)} policies meet it; best HV: `{best_hv}` "
            f"{_hv_cell(_hv(data, best_hv))}",
            verdict(bool(met)),
        ],
        [
            "the product's routing vs a confidence cascade on the shared prefix: routing at "
            "least level with the cascade, or the cascade offered as a mode",
            f"gate HV >= cascade (`{CASCADE_BEST}`) on {level} of {n} seeds "
            f"({_hv_cell(g)} vs {_hv_cell(c)}); the cascade is offered: `--policy cascade`, "
            "exported by the search as `export/cascade`",
            verdict(level == n or CASCADE_OFFERED),
        ],
        [
            f"routes' cost spread on the target device at the evaluated batch >= {MIN_SPREAD:g}x",
            f"{_rng(_spreads(data), 2, 'x')} (dearest / cheapest of the "
            f"{data['settings']['routes']} routes, every seed)",
            verdict(min(_spreads(data)) >= MIN_SPREAD),
        ],
    ]  # fmt: skip
    return md_table(["Target", "Measured", "Verdict"], rows)


def _oracle(data: dict) -> list[dict]:
    """The per-image oracle over the K routes (with the default gate's head), per seed."""
    main = _main_gate(data).removeprefix("gate_")
    return [s["gates"][main]["oracle_test"] for s in data["per_seed"]]


def _verdict_text(data: dict) -> str:
    main = _main_gate(data)
    name = main.removeprefix("gate_")
    sa = _hv(data, "static_attention")
    c, m_c, m_g = _hv(data, CASCADE_BEST), _margins(data, CASCADE_BEST), _margins(data, main)
    overlap = min(c) <= max(sa) and min(sa) <= max(c)
    gaps = [s["gates"][name]["gap_to_oracle_pt"] for s in data["per_seed"]]
    skill = [s["gates"][name]["skill_pt"] for s in data["per_seed"]]
    orc = _oracle(data)
    wide = [100 * (o["accuracy"] - s["static_attention"][-1]["test"])
            for o, s in zip(orc, data["per_seed"], strict=True)]  # fmt: skip
    lo_f, hi_f = (f"{100 * f:g}%" for f in data["settings"]["budgets"])
    return (
        "**Verdict: no.** No routing policy measured here beats static+attention (the best "
        "static sub-net of the same route menu, with the same trained attention head) at equal "
        f"latency on every seed. The best, the confidence cascade with each route's own head "
        f"(`{CASCADE_BEST}`), has HV {_hv_cell(c)} against static+attention's {_hv_cell(sa)} "
        f"(seed ranges {'overlapping' if overlap else 'apart'}); its margin is "
        f"{_pm([m[1] for m in m_c])} pt at the {hi_f} budget and {_pm([m[0] for m in m_c])} pt "
        f"at the {lo_f} budget (seeds 0, 1, 2). The default gate (`{main}`) is "
        f"{_pm([m[0] for m in m_g])} pt at {lo_f} and {_pm([m[1] for m in m_g])} pt at {hi_f}. "
        f"The headroom is there: a per-image oracle on the same {data['settings']['routes']} "
        f"routes reaches {_rng([100 * o['accuracy'] for o in orc])}% test top-1 at "
        f"{_rng([o['cost'] for o in orc], 2)} ms, {_rng(wide)} pt above the widest route's "
        f"static+attention net; but the default gate is {_rng(gaps)} pt below that oracle, and "
        f"its skill (its top-1 minus a random router sending the same shares to each route) is "
        f"only {_rng(skill)} pt. The gate cannot tell from the prefix features which images need "
        "the wide route; the cascade's confidence signal does better, but not by enough."
    )


def _ground(data: dict) -> str:
    rows = []
    name = _main_gate(data).removeprefix("gate_")
    for s in data["per_seed"]:
        m, pos, lat = s["menu"], s["routes"]["menu_positions"], s["routes"]["latency_ms"]
        rt = [100 * m["test_top1"][p] for p in pos]
        sa = [100 * p["test"] for p in s["static_attention"]]
        o, om = s["gates"][name]["oracle_test"], m["oracle_test"]
        rows.append([
            s["seed"], f"{_rng(lat, 2)} ({times(max(lat) / min(lat))})", f"{s['prefix_ms']:.2f}",
            " / ".join(f"{x:.1f}" for x in rt) + f" ({max(rt) - min(rt):.1f} pt)",
            _rng([100 * x for x in m["test_top1"]]), _rng(sa),
            f"{100 * o['accuracy']:.1f} @ {o['cost']:.2f} ms",
            f"{100 * om['accuracy']:.1f} @ {om['cost']:.2f} ms", f"{s['seconds']:.0f}",
        ])  # fmt: skip
    header = [
        "seed", "route costs ms (spread)", "prefix ms", "routes' test top-1, bare (spread)",
        f"{len(data['per_seed'][0]['menu']['latency_ms'])} menu sub-nets, bare",
        "menu with the head (static+attention)", "oracle, the routes (default gate's head)",
        "oracle, every menu sub-net (bare)", "seconds",
    ]  # fmt: skip
    return md_table(header, rows)


def _budget_table(data: dict) -> str:
    seeds = data["per_seed"]
    cols = [(s, i) for s in seeds for i in range(len(s["at_budget"]))]
    header = ["policy"] + [
        f"s{s['seed']} @{100 * s['at_budget'][i]['fraction']:g}% "
        f"({s['at_budget'][i]['budget_ms']:.2f} ms)" for s, i in cols
    ]  # fmt: skip
    rows = [
        ["static+attention"]
        + [f"{100 * s['at_budget'][i]['static_attention_test']:.1f}" for s, i in cols]
    ]
    for p in _policies(data):
        row = [p]
        for s, i in cols:
            c = s["at_budget"][i]
            a, base = c[p]["accuracy"], c["static_attention_test"]
            row.append(f"{100 * a:.1f} ({100 * (a - base):+.1f}) @{c[p]['cost']:.2f}")
        rows.append(row)
    rows.append(["oracle, the routes"] + [
        f"{100 * s['at_budget'][i]['oracle_test']['accuracy']:.1f} "
        f"@{s['at_budget'][i]['oracle_test']['cost']:.2f}" for s, i in cols])  # fmt: skip
    return md_table(header, rows)


def _margin_summary(data: dict) -> str:
    fr = [f"{100 * f:g}%" for f in data["settings"]["budgets"]]
    rows = []
    for p in _policies(data):
        m = _margins(data, p)
        both = sum(all(x >= AHEAD_PT for x in seed) for seed in m)
        rows.append([p] + [_ms([seed[i] for seed in m]) for i in range(len(fr))]
                    + [f"{both} of {len(m)}", verdict(_meets(data, p))])  # fmt: skip
    header = ["policy"] + [f"margin @{f}, pt" for f in fr] + [
        f">= {AHEAD_PT:g} pt at every budget (seeds)", "target"]  # fmt: skip
    return md_table(header, rows)


def _hv_table(data: dict) -> str:
    keys = sorted(data["per_seed"][0]["hypervolume"],
                  key=lambda k: (-statistics.fmean(_hv(data, k)), k))  # fmt: skip
    rows = [[k] + [f"{v:.4f}" for v in _hv(data, k)] + [_hv_cell(_hv(data, k))] for k in keys]
    header = ["front"] + [f"seed {s['seed']}" for s in data["per_seed"]] + [
        "mean [min, max]"]  # fmt: skip
    return md_table(header, rows)


def _gate_table(data: dict) -> str:
    rows = []
    for g in data["per_seed"][0]["gates"]:
        per = [s["gates"][g] for s in data["per_seed"]]
        skill, gap = [x["skill_pt"] for x in per], [x["gap_to_oracle_pt"] for x in per]
        rows.append([
            g, _pm(skill), _ms(skill), " / ".join(f"{x:.1f}" for x in gap),
            _ms(gap, signed=False), " / ".join(f"{x['seconds']:.0f}" for x in per),
        ])  # fmt: skip
    header = [
        "gate",
        "skill pt (per seed)",
        "skill mean ± sd (range)",
        "gap to oracle pt (per seed)",
        "gap mean ± sd (range)",
        "training s (per seed)",
    ]
    return md_table(header, rows)  # fmt: skip


def _choices(data: dict) -> str:
    e = data["settings"]["epochs"]
    ch, en = _hv(data, f"gate_cheapest_e{e}"), _hv(data, f"gate_ends_e{e}")
    wins = sum(a > b for a, b in zip(ch, en, strict=True))
    mid = lambda g: [100 * sum(s["gates"][g]["trained"]["shares"][1:-1])  # noqa: E731
                     for s in data["per_seed"]]  # fmt: skip
    gaps = data["summary"]["gate_epochs"]
    lo, hi = (f"cheapest_e{n}" for n in data["settings"]["gate_epochs"])
    ref = gaps[f"cheapest_e{e}"]["gap_to_oracle_pt"]
    d_lo = [a - b for a, b in zip(gaps[lo]["gap_to_oracle_pt"], ref, strict=True)]
    d_hi = [a - b for a, b in zip(gaps[hi]["gap_to_oracle_pt"], ref, strict=True)]
    kvl = data["summary"]["knob_vs_per_lambda"]
    knob_wins = sum(r["one_gate_knob_hv"] > r["per_lambda_hv"] for r in kvl)
    share = [r["one_gate_seconds"] / r["per_lambda_seconds"] for r in kvl]
    lams = ", ".join(f"{x:g}" for x in data["settings"]["lams"])
    rows = [
        [
            r["seed"],
            f"{r['one_gate_knob_hv']:.4f}",
            f"{r['per_lambda_hv']:.4f} ({r['per_lambda_points']} gates)",
            f"{r['one_gate_seconds']:.0f} / {r['per_lambda_seconds']:.0f}",
        ]
        for r in kvl
    ]
    table = md_table(["seed", "one gate + knob HV", "one gate per lambda HV",
                      "training s: one / per lambda"], rows)  # fmt: skip
    pairs = ", ".join(f"{a:.4f} vs {b:.4f}" for a, b in zip(ch, en, strict=True))
    return "\n\n".join([
        f"- **SGS target**: `cheapest` has the larger HV than the reference's `ends` on {wins} "
        f"of {len(ch)} seeds ({pairs}) and uses the middle routes: "
        f"{_rng(mid(f'cheapest_e{e}'))}% of the test images go to "
        f"them at knob 0, against {_rng(mid(f'ends_e{e}'))}% under `ends`. It is the default.\n"
        f"- **Gate epochs**: against {e} epochs, {lo.split('_e')[1]} epochs change the gap to "
        f"the oracle by {_pm(d_lo)} pt and {hi.split('_e')[1]} epochs by {_pm(d_hi)} pt "
        "(seeds 0, 1, 2). This measurement set the search's default gate-epoch range.\n"
        f"- **One gate + the budget knob vs one gate per lambda** (the default lambda and "
        f"{lams}; the knob traced on the default gate): the knob's front has the larger HV on "
        f"{knob_wins} of {len(kvl)} seeds, for {_rng(share, 2)} of the training time.",
        table,
    ])  # fmt: skip


def _calibration_note(data: dict) -> str:
    off = [
        100 * (c[p]["cost"] / c["budget_ms"] - 1)
        for s in data["per_seed"]
        for c in s["at_budget"]
        for p in _policies(data)
    ]
    return (
        f"A knob calibrated on val lands between {min(off):+.0f}% and {max(off):+.0f}% of the "
        "budget on test, so a routed point may cost a little more than the static+attention "
        "point it is compared with (which is always within the budget)."
    )


def _fronts_figure(data: dict):
    main = _main_gate(data)
    shown = [(main, "o", "default gate"), ("cascade_ends", "s", "cascade, gate head"),
             (CASCADE_BEST, "D", "cascade, route heads")]  # fmt: skip
    seeds = data["per_seed"]
    fig, axes = new_figure(9.0, 3.4)
    fig.clf()
    axes = fig.subplots(1, len(seeds), sharey=True)
    for ax, s in zip(axes, seeds, strict=True):
        sa = sorted(s["static_attention"], key=lambda p: p["latency_ms"])
        ax.plot(
            [p["latency_ms"] for p in sa],
            [100 * p["test"] for p in sa],
            "-",
            color="black",
            marker=".",
            label="static+attention, every menu point",
        )
        ax.plot(
            s["menu"]["latency_ms"],
            [100 * x for x in s["menu"]["test_top1"]],
            "x",
            color="grey",
            label="menu sub-nets, bare",
        )
        for i, (p, mk, label) in enumerate(shown):
            pts = [c[p] for c in s["at_budget"]]
            if p.startswith("gate_"):
                pts.append(s["gates"][p.removeprefix("gate_")]["trained"])
            ax.plot(
                [q["cost"] for q in pts],
                [100 * q["accuracy"] for q in pts],
                mk,
                color=f"C{i}",
                linestyle="none",
                label=label,
            )
        o = s["gates"][main.removeprefix("gate_")]["oracle_test"]
        ax.plot(
            [o["cost"]],
            [100 * o["accuracy"]],
            "*",
            color="C3",
            markersize=10,
            label="oracle, the routes",
        )
        for c in s["at_budget"]:
            ax.axvline(c["budget_ms"], color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"seed {s['seed']}", fontsize=9)
    fig.supxlabel("expected latency per image, ms (predicted Jetson table, latency batch 32)")
    axes[0].set_ylabel("test top-1, %")
    axes[-1].legend(fontsize=6, loc="lower right")
    fig.suptitle("Routing policies vs static+attention (dotted: the two budgets)")
    fig.tight_layout()
    return fig


def _margin_figure(data: dict):
    pols = _policies(data)
    fig, ax = new_figure(6.4, 3.8)
    for j, f in enumerate(data["settings"]["budgets"]):
        for i, p in enumerate(pols):
            m = [seed[j] for seed in _margins(data, p)]
            ax.plot(
                m,
                [i + (0.15 if j else -0.15)] * len(m),
                "o^"[j],
                color=f"C{j}",
                linestyle="none",
                label=f"budget {100 * f:g}%" if i == 0 else None,
            )
    ax.axvline(AHEAD_PT, color="C3", linestyle="--", linewidth=1, label="target +1 pt")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(pols)), pols)
    ax.set_xlabel("test top-1 minus static+attention's, points (one marker per seed)")
    ax.set_title("Margin over static+attention at equal budget")
    ax.legend(fontsize=7)
    return fig


def pages() -> list[Page]:
    data = load(FILE)
    threads = data["settings"].get("threads")
    page = Page(
        "routing",
        "Routing headroom: does routing beat static+attention?",
        "The project's main question, answered no on this ground: gates and confidence cascades "
        "vs the best static sub-net with the same attention head, per seed, with a per-image "
        "oracle.",
        [stamp(FILE, data, command=COMMAND, commit=COMMITTED, threads=threads)],
        [],
        {"fronts": _fronts_figure(data), "margins": _margin_figure(data)},
    )
    st = data["settings"]
    ground = (
        f"The ground: the study `{data['study']}` (tiny DS-MobileNetV1 on `digits-hard:4:1.6`, "
        "the Jetson Orin Nano profile at latency batch 32, the gate before stage 3, as that study "
        "file set them when this file was committed). Per seed (data split, Stage I and gate "
        f"init all follow it): a menu of {len(data['per_seed'][0]['menu']['latency_ms'])} "
        f"sub-nets on the predicted static front, K = {st['routes']} routes spread over it, "
        f"every Stage II training {st['epochs']} epochs (gates and static+attention alike) "
        "unless the policy's name says otherwise. Knobs are set on **val**, every figure is "
        "**test** top-1. Static+attention at a budget is the best-val menu point within it. "
        "Latency per image of a routed batch is the route-share-weighted route latency at the "
        "latency batch (each group costed as its share of a full batch); the cascade pays the "
        "prefix once and every suffix it ran. Budgets: "
        + ", ".join(f"{100 * f:g}%" for f in st["budgets"])
        + " of the way from the cheapest to the dearest route."
    )
    page.sections = [
        _targets(data),
        _verdict_text(data),
        "## The ground\n\n" + ground + "\n\n" + _ground(data),
        "## Policies at two budgets\n\nCells: test top-1 % (margin over static+attention, pt) "
        "@ test expected ms.\n\n" + _budget_table(data) + "\n\n" + _calibration_note(data)
        + "\n\n" + GLOSSARY,
        "### Mean and spread over the seeds\n\n" + _margin_summary(data) + "\n\n"
        + page.img("margins", "margin over static+attention per policy, seed and budget"),
        "## Fronts\n\nThe file keeps each policy's two budget points (and the gate's point at "
        "knob 0), not its whole knob trace; the hypervolumes below were computed by the "
        "benchmark from the whole trace.\n\n"
        + page.img("fronts", "latency vs test top-1 per policy and seed"),
        "## Hypervolume\n\nHypervolume of each test front (reference: route 0's bare test "
        "top-1, the dearest route's latency), per seed and mean [min, max]:\n\n"
        + _hv_table(data),
        "## The gate vs a per-image oracle\n\nSkill: the gate's test top-1 minus a random router "
        "that sends the same shares to each route. Gap: the oracle front's top-1 at the gate's "
        "cost minus the gate's, both at knob 0.\n\n" + _gate_table(data),
        "## Gate design choices measured here\n\n" + _choices(data),
        "## The cascade as a mode\n\nThe per-route-head cascade is a routing mode of the "
        "product: `dsnet-automl search` builds it from the menu's two ends and exports it as "
        "`export/cascade`, and `dsnet-automl run` / `bench` take `--policy cascade`. The "
        "cascade with the gate's shared head (`cascade_ends`) is behind it: a shared head is a "
        "compromise over the routes.",
    ]  # fmt: skip
    return [page]


def status() -> list[StatusRow]:
    data = load(FILE)
    main = _main_gate(data)
    pols = _policies(data)
    met = [p for p in pols if _meets(data, p)]
    m = [x for seed in _margins(data, main) for x in seed]
    g, c = _hv(data, main), _hv(data, CASCADE_BEST)
    sa = _hv(data, "static_attention")
    wins = sum(b > a for a, b in zip(g, c, strict=True))
    name = main.removeprefix("gate_")
    gaps = [s["gates"][name]["gap_to_oracle_pt"] for s in data["per_seed"]]
    n = len(g)
    return [
        StatusRow(
            "Does routing beat static sub-nets with the same attention head?",
            "yes" if met else "no",
            f"{len(met)} of {len(pols)} routing policies >= {AHEAD_PT:g} pt ahead at both "
            f"budgets on every seed; default gate {min(m):+.1f} to {max(m):+.1f} pt, HV "
            f"{statistics.fmean(g):.3f} vs {statistics.fmean(sa):.3f} ({n} seeds)",
            "routing",
        ),
        StatusRow(
            "Does a confidence cascade beat the gate?",
            "yes" if wins == n else ("partly" if wins else "no"),
            f"per-route-head cascade HV above the gate's on {wins} of {n} seeds "
            f"({statistics.fmean(c):.3f} vs {statistics.fmean(g):.3f}); offered as "
            "`--policy cascade`",
            "routing",
        ),
        StatusRow(
            "Is there headroom for a better router on these routes?",
            "yes",
            f"a per-image oracle is {_rng(gaps)} pt above the trained gate "
            f"({_rng([100 * o['accuracy'] for o in _oracle(data)])}% test top-1)",
            "routing",
        ),
    ]
