"""Routed dynamic inference on the full-size supernets (224x224): measured vs ideal speed-up.

Nets: ``ds_mobilenet_v1``, ``ds_resnet50``, ``ds_deit_small`` and ``timm:resnet50``
(``slicify("resnet50")``), random init (speed depends on the route mix, not on the weights),
gate at each net's default stage, 4 routes.

**Route spaces.** ``default``: :func:`default_route_space` (prefix at full width; route 3 is the
full largest net). ``slim``: the same with a slimmer prefix, ``prefix_fraction`` = the largest of
0.5 / 0.25 / 0 whose smallest route has >= 3x fewer MACs than the full largest net.

**Mixes** (shares of the routes on the timed images):
``all-largest`` and ``all-smallest`` (default space) and ``macs/2.5`` (slim space: a mix of its
smallest and largest routes whose average MACs are 2.5x below the full largest net; the share is
solved as the integer count out of ``--samples`` images closest to 2.5x, and the realised MACs
ratio is reported).

**How mixes are forced.** ``--samples`` (16) random images are drawn once. For each mix,
:func:`~dsnet_automl.dynamic.forced_mix.force_route_mix` rewrites a copy of the gate's slimming head
so that exactly ``round(p_k * N)`` of those images take route ``k``; the decision stays a per-sample
argmax over the gate's logits computed from the prefix features, so the gate, the argmax, the
grouping and the scatter all run as with a trained gate. Batch 1 runs the N images one call each;
batch B > 1 runs one batch of B images cycling the N (B a multiple of N keeps the mix exact; the
realised shares are recorded either way).

**What is timed** (per backend): the dynamic net per mix; the full largest static net; every
route used by a mix as its own static net (prefix + route k, no gate), each on the same images
(batch 1: the N images one call each). Interleaved: every repeat times every model of every
mode once, one block per mode, modes and models in a fresh random order each repeat.
``speed-up = T_largest / T_dynamic``, ``ideal = T_largest / sum_k p_k T_k`` and
``efficiency = sum_k p_k T_k / T_dynamic = speed-up / ideal``, with each ``T`` the model's
fastest repeat: on a shared machine background load only ever slows a run down (2-3x at batch
32 on the 2-core development machine, loadavg ~3 during locked runs), so the minimum estimates
the unloaded time best. Also in the JSON: the same figures from medians (``*_of_medians``),
per-repeat paired ratios' medians (``*_paired_median``: the models of one repeat share its
background load) and every repeat's times. Backends (``--modes``):
``sliced`` (DynamicNet on the shared weights vs ``net(x, cfg)``), ``extracted`` (DynamicNet on
extracted static parts vs ``net.extract(cfg)``), ``torchscript`` (the extracted parts traced
and frozen; the gate, argmax and grouping stay eager), ``ort`` (ONNX Runtime:
:class:`dsnet_automl.runtime.OrtDynamicNet` on :func:`export_dynamic`'s files vs each static
sub-net exported as one ONNX model, same session options). Overhead: the gate (+ argmax +
route pick) alone at batch 1 as a share of the largest net at batch 1, and the group/scatter
(index_select, split, cat, index_copy without the route compute) at the largest batch.

    python benchmarks/dynamic_speedup_full.py --nets ds_mobilenet_v1 --json F [--append]
    python benchmarks/dynamic_speedup_full.py --quick            # tiny nets, smoke test
    python benchmarks/dynamic_speedup_full.py --table F          # print the table of a JSON
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dsnet_automl import create_supernet, slicify
from dsnet_automl.dynamic.forced_mix import force_route_mix
from dsnet_automl.dynamic.routing import DynamicNet, default_route_space, group_by_route

FULL_NETS = ["ds_mobilenet_v1", "ds_resnet50", "ds_deit_small", "timm:resnet50"]
QUICK_NETS = ["ds_mobilenet_v1_tiny", "ds_resnet50_tiny"]
CNNS = {"ds_mobilenet_v1", "ds_resnet50", "timm:resnet50"}
MODES = ["sliced", "extracted", "torchscript", "ort"]
SLIM_FRACTIONS = (0.5, 0.25, 0.0)
TARGET_MACS_RATIO = 2.5
TARGETS = {
    "efficiency_b32": ">= 0.95 (every net, mode, mix)",
    "efficiency_b1": ">= 0.90 (every net, mode, mix)",
    "speedup_b1_at_macs/2.5": ">= 1.6 (CNNs)",
    "gate_overhead_b1": "<= 3% of the largest net",
}


# ---------------------------------------------------------------------------- set-up
def make_net(name: str) -> nn.Module:
    torch.manual_seed(0)
    net = slicify(name.split(":", 1)[1]) if name.startswith("timm:") else create_supernet(name)
    return net.eval()


def route_spaces(net) -> dict[str, dict]:
    """``default`` (full-width prefix) and ``slim`` (smallest route >= 3x below the largest)."""
    full = float(net.macs(net.space.largest()))
    out = {"default": {"prefix_fraction": 1.0, "routes": default_route_space(net, 4)}}
    best = None
    for f in SLIM_FRACTIONS:
        rs = default_route_space(net, 4, prefix_fraction=f)
        ratio = full / net.macs(rs[0])
        if best is None or ratio > best[2]:
            best = (f, rs, ratio)
        if ratio >= 3.0:
            break
    out["slim"] = {"prefix_fraction": best[0], "routes": best[1]}
    for s in out.values():
        s["route_macs_M"] = [net.macs(c) / 1e6 for c in s["routes"]]
        s["route_macs_ratio"] = [full / net.macs(c) for c in s["routes"]]
    return out


def mixes(spaces: dict, full_macs: float, n: int) -> dict[str, dict]:
    """Route shares per mix (``macs/2.5``: smallest + largest slim route, closest count)."""
    m_s, m_l = (spaces["slim"]["route_macs_M"][k] * 1e6 for k in (0, 3))
    want = full_macs / TARGET_MACS_RATIO
    n0 = min(range(n + 1), key=lambda c: abs((c * m_s + (n - c) * m_l) / n - want))
    return {
        "all-largest": {"space": "default", "proportions": [0, 0, 0, 1]},
        "all-smallest": {"space": "default", "proportions": [1, 0, 0, 0]},
        "macs/2.5": {"space": "slim", "proportions": [n0 / n, 0, 0, (n - n0) / n]},
    }


def routed(dyn: DynamicNet, gate: nn.Module) -> Callable:
    """``dyn``'s forward with another gate (DynamicNet.forward, three lines)."""

    def fn(x):
        h, logits = gate(dyn.features(x))
        return dyn.forward_routes(h, logits.argmax(1))

    return fn


def _trace(m: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    return torch.jit.freeze(torch.jit.trace(m.eval(), x, check_trace=False))


class _GateOut(nn.Module):
    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, h):
        return self.gate(h)


# ---------------------------------------------------------------------------- backends
class Backend:
    """One mode: static models by config key, dynamic nets by mix, input conversion."""

    def __init__(self, mode: str, device: str, amp: bool) -> None:
        self.mode, self.device, self.amp = mode, device, amp
        self.static: dict[str, Callable] = {}
        self.dynamic: dict[str, Callable] = {}
        self.gate_fn: Callable | None = None  # batch-1 gate + argmax + route pick
        self.group_fn: Callable | None = None  # group/scatter only, largest batch

    def convert(self, x: torch.Tensor):
        if self.mode == "ort":
            return np.ascontiguousarray(x.numpy(), dtype=np.float32)
        return x.to(self.device)

    def call(self, fn: Callable, x):
        if self.mode != "ort" and self.amp:
            with torch.autocast("cuda", dtype=torch.float16):
                return fn(x)
        return fn(x)


def torch_backend(mode, net, spaces, gates, statics, x_probe, device, amp) -> Backend:
    be = Backend(mode, device, amp)
    xp = x_probe.to(device)
    for g in gates.values():
        g.to(device)
    dyns = {}
    for name, s in spaces.items():
        d = (
            DynamicNet(
                net,
                gates[_first_mix(gates, s)],
                s["routes"],
                mode="sliced" if mode == "sliced" else "extracted",
            )
            .to(device)
            .eval()
        )
        if mode == "torchscript":
            h = d.static_prefix(xp)
            d.static_prefix = _trace(d.static_prefix, xp)
            h_att, _ = d.gate(h)
            for k in range(len(d.static_routes)):
                d.static_routes[k] = _trace(d.static_routes[k], h_att)
        dyns[name] = d
    for key, cfg in statics.items():
        if mode == "sliced":
            be.static[key] = lambda x, cfg=cfg: net(x, cfg)
        else:
            m = net.extract(cfg).to(device).eval()
            be.static[key] = _trace(m, xp) if mode == "torchscript" else m
    for mix, g in gates.items():
        be.dynamic[mix] = routed(dyns[g.space_name], g)
    d0, g0 = dyns["default"], gates["all-largest"]

    def gate_fn(h1):
        _, logits = g0(h1)
        return int(logits.argmax(1)[0])

    be.gate_input = lambda x1: d0.features(x1)
    be.gate_fn = gate_fn

    def group_fn(args):
        h, routes, stub = args
        order, counts = group_by_route(routes, d0.num_routes)
        outs = [stub[: len(hk)] + 0 for hk in h.index_select(0, order).split(counts) if len(hk)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return torch.empty_like(out).index_copy_(0, order, out)

    be.group_fn = group_fn
    return be


def _first_mix(gates, space) -> str:
    return next(m for m, g in gates.items() if g.space_name == space["name"])


def ort_backend(net, spaces, gates, statics, x_probe, workdir: Path, device, threads) -> Backend:
    import onnxruntime as ort

    from dsnet_automl.dynamic.export import export_dynamic, export_onnx
    from dsnet_automl.runtime import OrtDynamicNet, session_options

    if device == "cuda" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels torch brought
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda"
        else ["CPUExecutionProvider"]
    )
    be = Backend("ort", device, False)
    be.runtime = "dsnet_automl.runtime.OrtDynamicNet"
    so = session_options(threads)
    for name, s in spaces.items():
        d = DynamicNet(net, gates[_first_mix(gates, s)], s["routes"], mode="sliced").eval()
        sdir = workdir / name
        export_dynamic(d, sdir, formats=("onnx",), check=False)
        h = d.features(x_probe[:2])
        for mix, g in gates.items():
            if g.space_name != name:
                continue
            mdir = workdir / f"{name}_{mix.replace('/', '_')}"
            mdir.mkdir()
            for f in sdir.iterdir():
                if f.name != "gate.onnx":
                    (mdir / f.name).symlink_to(f.resolve())
            export_onnx(_GateOut(g), h, mdir / "gate.onnx", ["features", "logits"])
            r = OrtDynamicNet(mdir, providers=providers, threads=threads)
            be.dynamic[mix] = r.run
            be.providers = r.providers
            if mix == "all-largest":
                be.gate_input = r.features

                def gate_fn(h1, r=r):
                    _, logits = r.route_logits(h1)
                    return int(logits.argmax(1)[0])

                be.gate_fn = gate_fn
    for key, cfg in statics.items():
        path = workdir / f"static_{key}.onnx"
        export_onnx(net.extract(cfg), x_probe[:2], path, ["out"])
        s = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        iname = s.get_inputs()[0].name
        be.static[key] = lambda x, s=s, iname=iname: s.run(None, {iname: x})[0]

    def group_fn(args):
        h, routes, stub = args
        order = np.argsort(routes, kind="stable")
        counts = np.bincount(routes, minlength=4)
        groups = np.split(h[order], np.cumsum(counts)[:-1])
        outs = [stub[: len(g)] + 0 for g in groups if len(g)]
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        res = np.empty_like(out)
        res[order] = out
        return res

    be.group_fn = group_fn
    return be


# ---------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_set(be: Backend, fn: Callable, xs: list) -> float:
    """ms to run ``fn`` on every input of ``xs`` in turn (synchronised after each call)."""
    t0 = time.perf_counter()
    for x in xs:
        be.call(fn, x)
        _sync(be.device)
    return (time.perf_counter() - t0) * 1e3


def median_ms(fn: Callable, arg, repeats: int, device: str) -> float:
    for _ in range(3):
        fn(arg)
    _sync(device)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(arg)
        _sync(device)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


@torch.no_grad()
def bench_net(name: str, args) -> dict:
    t_start = time.time()
    net = make_net(name)
    full_cfg = net.space.largest()
    full_macs = float(net.macs(full_cfg))
    spaces = route_spaces(net)
    for sname, s in spaces.items():
        s["name"] = sname
    torch.manual_seed(1)
    x_set = torch.randn(args.samples, *net.input_size)
    mix_spec = mixes(spaces, full_macs, args.samples)
    # one forced gate per mix (all share the supernet and the static parts of their space)
    base = {k: DynamicNet.build(net, s["routes"]).gate for k, s in spaces.items()}
    gates = {}
    for mix, spec in mix_spec.items():
        s = spaces[spec["space"]]
        d = DynamicNet(net, copy.deepcopy(base[spec["space"]]), s["routes"]).eval()
        routes = force_route_mix(d, x_set, spec["proportions"])
        d.gate.space_name = spec["space"]
        d.gate.routes_on_set = routes
        gates[mix] = d.gate
    # static models: the full largest net + every route a mix uses
    statics = {"largest": full_cfg}
    for spec in mix_spec.values():
        for k, p in enumerate(spec["proportions"]):
            cfg = spaces[spec["space"]]["routes"][k]
            if p > 0 and cfg != full_cfg:
                statics.setdefault(f"{spec['space']}_r{k}", cfg)
    route_key = {}
    for mix, spec in mix_spec.items():
        for k in range(4):
            cfg = spaces[spec["space"]]["routes"][k]
            route_key[(mix, k)] = (
                next(key for key, c in statics.items() if c == cfg)
                if (cfg in statics.values())
                else None
            )
    device = args.device
    backends = {}
    with tempfile.TemporaryDirectory(prefix="dsfull_") as tmp:
        for mode in sorted(args.modes, key=lambda m: m != "ort"):  # ORT exports from the CPU net
            t0 = time.time()
            if mode == "ort":
                backends[mode] = ort_backend(
                    net, spaces, gates, statics, x_set, Path(tmp), device, args.threads
                )
            else:
                if device == "cuda":
                    net.to(device)
                backends[mode] = torch_backend(
                    mode, net, spaces, gates, statics, x_set[:2], device, args.amp
                )
            print(f"# {name} {mode}: built in {time.time() - t0:.1f} s", flush=True)
        # parity: each mode's dynamic output vs the sliced supernet routed by hand (one mix)
        parity = check_parity(net, backends, gates, spaces, mix_spec, x_set, device)
        cells, timings, med_by_batch, raw = [], {}, {}, {}
        for batch in args.batch_sizes:
            xs_t = (
                [x_set[i : i + 1] for i in range(len(x_set))]
                if batch == 1
                else [x_set.repeat((batch + len(x_set) - 1) // len(x_set), 1, 1, 1)[:batch]]
            )
            reps = args.repeats if batch == 1 else args.repeats_large
            xs = {m: [be.convert(x) for x in xs_t] for m, be in backends.items()}
            items = {
                m: {
                    **{f"static:{k}": f for k, f in be.static.items()},
                    **{f"dyn:{k}": f for k, f in be.dynamic.items()},
                }
                for m, be in backends.items()
            }
            samples = {(m, i): [] for m in items for i in items[m]}
            rng = random.Random(batch)
            for r in range(reps + args.warmup):
                # one block per mode, modes and items in a fresh random order each repeat
                for m in rng.sample(list(items), len(items)):
                    its = list(items[m].items())
                    gc.collect()
                    gc.disable()
                    try:
                        for i, fn in rng.sample(its, len(its)):
                            ms = time_set(backends[m], fn, xs[m])
                            if r >= args.warmup:
                                samples[(m, i)].append(ms)
                    finally:
                        gc.enable()
            med = med_by_batch[batch] = {k: statistics.median(v) for k, v in samples.items()}
            timings[batch] = {f"{m}|{i}": v for (m, i), v in med.items()}
            raw[batch] = {f"{m}|{i}": v for (m, i), v in samples.items()}
            n_img = sum(len(x) for x in xs_t)
            for m in items:
                t_l = med[(m, "static:largest")]
                for mix, spec in mix_spec.items():
                    r_set = gates[mix].routes_on_set
                    routes = (
                        r_set
                        if batch == 1
                        else r_set.repeat(len(xs_t[0]) // len(r_set) + 1)[:batch]
                    )
                    counts = torch.bincount(routes, minlength=4).tolist()
                    p = [c / len(routes) for c in counts]
                    rs = spaces[spec["space"]]["routes"]
                    avg_macs = sum(p[k] * net.macs(rs[k]) for k in range(4))
                    keys = {k: f"static:{route_key[(mix, k)]}" for k in range(4) if p[k]}

                    def t_ideal(t, keys=keys, p=p, m=m):  # sum_k p_k T_k
                        return sum(p[k] * t[(m, key)] for k, key in keys.items())

                    t_dyn = med[(m, f"dyn:{mix}")]
                    # paired: the ratios of each repeat (same minute, same contention), median
                    per_rep = [
                        {key: v[j] for key, v in samples.items()}
                        for j in range(len(samples[(m, "static:largest")]))
                    ]
                    sp = [t[(m, "static:largest")] / t[(m, f"dyn:{mix}")] for t in per_rep]
                    idl = [t[(m, "static:largest")] / t_ideal(t) for t in per_rep]
                    eff = [t_ideal(t) / t[(m, f"dyn:{mix}")] for t in per_rep]
                    cell = {
                        "net": name,
                        "mode": m,
                        "batch": batch,
                        "mix": mix,
                        "space": spec["space"],
                        "route_counts": counts,
                        "macs_ratio": full_macs / avg_macs,
                        "ms_per_img_dynamic": t_dyn / n_img,
                        "ms_per_img_largest": t_l / n_img,
                        "img_s_dynamic": n_img / t_dyn * 1e3,
                        "img_s_largest": n_img / t_l * 1e3,
                        "speedup_paired_median": statistics.median(sp),
                        "ideal_paired_median": statistics.median(idl),
                        "efficiency_paired_median": statistics.median(eff),
                        "efficiency_paired_range": [min(eff), max(eff)],
                        "speedup_of_medians": t_l / t_dyn,
                        "ideal_of_medians": t_l / t_ideal(med),
                        "efficiency_of_medians": t_ideal(med) / t_dyn,
                    }
                    cells.append(cell)
        overhead = measure_overhead(backends, x_set, max(args.batch_sizes), args, med_by_batch)
    return {
        "net": name,
        "full_macs_M": full_macs / 1e6,
        "spaces": {
            k: {kk: vv for kk, vv in s.items() if kk not in ("routes", "name")}
            | {"routes": [c.short() for c in s["routes"]]}
            for k, s in spaces.items()
        },
        "mixes": {k: v for k, v in mix_spec.items()},
        "samples": args.samples,
        "parity_max_abs_diff": parity,
        "ort_runtime": getattr(backends.get("ort"), "runtime", None),
        "ort_providers": getattr(backends.get("ort"), "providers", None),
        "timings_ms": timings,
        "timings_ms_per_repeat": raw,
        "cells": cells,
        "overhead": overhead,
        "seconds": time.time() - t_start,
    }


def check_parity(net, backends, gates, spaces, mix_spec, x_set, device) -> dict:
    """Max |logits - reference| of each mode's dynamic net on the mixed set (batch N)."""
    mix = "macs/2.5"
    rs = spaces[mix_spec[mix]["space"]]["routes"]
    routes = gates[mix].routes_on_set
    d = DynamicNet(net.cpu(), copy.deepcopy(gates[mix]).cpu(), rs).eval()
    h, _ = d.gate(d.features(x_set))
    ref = torch.cat([d.run_route(int(k), h[i : i + 1]) for i, k in enumerate(routes)])
    out = {}
    for m, be in backends.items():
        if m != "ort" and device == "cuda":
            net.to(device)
        got = be.call(be.dynamic[mix], be.convert(x_set))
        got = got[0] if isinstance(got, tuple) else got
        got = torch.as_tensor(np.asarray(got.float().cpu()) if torch.is_tensor(got) else got)
        out[m] = float((got - ref).abs().max() / ref.abs().max())
    if device == "cuda":
        net.to(device)
    return {"relative_to_max_logit": out}


def measure_overhead(backends, x_set, big: int, args, med) -> dict:
    out = {}
    for m, be in backends.items():
        x1 = be.convert(x_set[:1])
        h1 = be.gate_input(x1)
        gate_ms = median_ms(
            lambda h, be=be: be.call(be.gate_fn, h), h1, args.overhead_repeats, be.device
        )
        t_l = med[1].get((m, "static:largest")) if 1 in med else None
        largest_b1 = t_l / len(x_set) if t_l else None
        xb = be.convert(x_set.repeat(big // len(x_set) + 1, 1, 1, 1)[:big])
        hb = be.gate_input(xb)
        routes = torch.arange(big) % 4
        stub_shape = (big, 1000)
        if m == "ort":
            args_g = (hb, routes.numpy(), np.zeros(stub_shape, np.float32))
        else:
            args_g = (hb, routes.to(be.device), torch.zeros(stub_shape, device=be.device))
        group_ms = median_ms(be.group_fn, args_g, args.overhead_repeats, be.device)
        row = {"gate_ms_b1": gate_ms, f"group_scatter_ms_b{big}": group_ms}
        if largest_b1:
            row["largest_ms_b1"] = largest_b1
            row["gate_share_b1"] = gate_ms / largest_b1
            row["gate_share_met"] = gate_ms / largest_b1 <= 0.03
        if big > 1:
            t_big = med[big].get((m, "static:largest")) if big in med else None
            row[f"group_scatter_share_b{big}"] = group_ms / t_big if t_big else None
        out[m] = row
    return out


# ---------------------------------------------------------------------------- report
def finalize(result: dict) -> dict:
    """Primary figures of every cell from each model's fastest repeat (see the docstring)."""
    for r in result["nets"].values():
        for c in r["cells"]:
            if "speedup_paired_median" not in c:  # a file written before the min-based figures
                for k in ("speedup", "ideal", "efficiency"):
                    c[f"{k}_paired_median"] = c[k]
            per_batch = r["timings_ms_per_repeat"]  # int keys in memory, str keys in JSON
            raw = per_batch.get(str(c["batch"])) or per_batch[c["batch"]]
            m, n = c["mode"], sum(c["route_counts"])
            t = {k.split("|", 1)[1]: min(v) for k, v in raw.items() if k.startswith(m + "|")}
            t_l, t_dyn = t["static:largest"], t[f"dyn:{c['mix']}"]
            t_ideal = 0.0
            for k, cnt in enumerate(c["route_counts"]):
                if cnt:
                    key = f"static:{c['space']}_r{k}"
                    t_ideal += cnt / n * t.get(key, t_l)  # absent: route k is the largest net
            n_img = c["batch"] if c["batch"] > 1 else n
            c.update(
                speedup=t_l / t_dyn,
                ideal=t_l / t_ideal,
                efficiency=t_ideal / t_dyn,
                img_s_dynamic=n_img / t_dyn * 1e3,
                img_s_largest=n_img / t_l * 1e3,
                ms_per_img_dynamic=t_dyn / n_img,
                ms_per_img_largest=t_l / n_img,
            )
            c["efficiency_met"] = c["efficiency"] >= (0.90 if c["batch"] == 1 else 0.95)
            if c["mix"] == "macs/2.5" and c["batch"] == 1 and c["net"] in CNNS:
                c["speedup_met"] = c["speedup"] >= 1.6
    return result


def table(result: dict) -> str:
    lines = [
        "| net | mode | batch | mix | MACs ratio | img/s dyn / largest | speed-up | ideal |"
        " efficiency | eff. (paired median) | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["nets"].values():
        for c in r["cells"]:
            met = "met" if c["efficiency_met"] else "MISSED"
            if "speedup_met" in c:
                met += ", speed-up " + ("met" if c["speedup_met"] else "MISSED")
            lines.append(
                f"| {c['net']} | {c['mode']} | {c['batch']} | {c['mix']} | "
                f"{c['macs_ratio']:.2f}x | {c['img_s_dynamic']:.1f} / {c['img_s_largest']:.1f} | "
                f"{c['speedup']:.2f}x | {c['ideal']:.2f}x | {c['efficiency']:.3f} | "
                f"{c['efficiency_paired_median']:.3f} | {met} |"
            )
    lines += [
        "",
        "| net | mode | gate ms (b1) | largest ms (b1) | gate share | "
        "group/scatter ms | group/scatter share | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["nets"].values():
        for m, o in r["overhead"].items():
            gk = next(k for k in o if k.startswith("group_scatter_ms"))
            sk = next((k for k in o if k.startswith("group_scatter_share")), None)
            share = o.get("gate_share_b1")
            lines.append(
                f"| {r['net']} | {m} | {o['gate_ms_b1']:.3f} | "
                f"{o.get('largest_ms_b1', float('nan')):.2f} | "
                f"{100 * share if share else float('nan'):.2f}% | {o[gk]:.3f} | "
                f"{100 * o[sk] if sk and o[sk] else float('nan'):.2f}% | "
                f"{'met' if o.get('gate_share_met') else 'MISSED'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(FULL_NETS))
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--modes", default="sliced,extracted,ort")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats at batch 1")
    ap.add_argument("--repeats-large", type=int, default=5, help="timed repeats at batch > 1")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--overhead-repeats", type=int, default=50)
    ap.add_argument("--samples", type=int, default=16, help="images the mix is forced on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--amp", action="store_true", help="fp16 autocast (cuda, torch modes)")
    ap.add_argument("--quick", action="store_true", help="tiny nets, 2 repeats (smoke test)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--append", action="store_true", help="merge into an existing --json")
    ap.add_argument("--table", type=Path, help="only print the table of this JSON")
    args = ap.parse_args(argv)
    if args.table:
        print(table(finalize(json.loads(args.table.read_text()))))
        return {}
    if args.quick:
        if args.nets == ",".join(FULL_NETS):
            args.nets = ",".join(QUICK_NETS)
        args.repeats = args.repeats_large = 2
        args.overhead_repeats = 5
    args.nets = args.nets.split(",")
    args.modes = args.modes.split(",")
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        ap.error(f"unknown modes {bad}; choose from {MODES}")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.amp and args.device != "cuda":
        ap.error("--amp needs --device cuda")
    torch.set_num_threads(args.threads)
    run_meta = {
        "nets": args.nets,
        "modes": args.modes,
        "batch_sizes": args.batch_sizes,
        "repeats": [args.repeats, args.repeats_large],
        "threads": args.threads,
        "device": args.device,
        "amp": args.amp,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "ort" in args.modes:
        import onnxruntime

        run_meta["onnxruntime"] = onnxruntime.__version__
    if args.device == "cuda":
        run_meta["gpu"] = torch.cuda.get_device_name()
    result = {"targets": TARGETS, "runs": [], "nets": {}}
    if args.append and args.json and args.json.is_file():
        result = json.loads(args.json.read_text())
    result["runs"].append(run_meta)
    for name in args.nets:
        r = bench_net(name, args)
        r["run"] = len(result["runs"]) - 1
        result["nets"][name] = r
        print(json.dumps({k: r[k] for k in ("net", "parity_max_abs_diff", "overhead", "seconds")}))
        run_meta["loadavg_after"] = os.getloadavg()
        finalize(result)
        if args.json:  # after every net: a later net running out of time loses only itself
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
