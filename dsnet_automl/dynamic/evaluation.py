"""Evaluate a dynamic net against every static config of its route space.

Accuracy (overall and per difficulty half where the dataset has one), route histogram,
average MACs, and measured latency / throughput at the requested batch sizes, side by side
with each route run statically for all inputs. Also the gate's own cost and a PNG plot of
accuracy vs MACs (static routes as a curve, the dynamic net as a point).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from .._io import atomic_path
from ..latency.profiler import measure
from .routing import DynamicNet

__all__ = ["DynamicReport", "evaluate_dynamic_vs_static", "plot_accuracy_vs_macs", "time_ms"]


def time_ms(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of ``fn()`` (the latency profiler's timer)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else None
    return measure(fn, warmup=warmup, repeats=repeats, sync=sync).median_ms


class DynamicReport(dict):
    """``{"dynamic": {...}, "static": DataFrame rows, "gate_ms": ...}`` with a table printer."""

    def table(self) -> pd.DataFrame:
        rows = [{"model": "dynamic", **self["dynamic"]}] + [
            {"model": f"static route {r['route']}", **r} for r in self["static"]
        ]
        return pd.DataFrame(rows).drop(columns=["route"], errors="ignore")


@torch.inference_mode()
def _predict_all(dyn: DynamicNet, x: Tensor, batch: int = 256) -> tuple[Tensor, Tensor, Tensor]:
    """Dynamic predictions, routes and every static route's predictions. -> (N,), (N,), (K, N)."""
    preds, routes, statics = [], [], []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        h, logits = dyn.gated(dyn.features(xb))
        r = logits.argmax(1)
        preds.append(dyn.forward_routes(h, r).argmax(1))
        routes.append(r)
        statics.append(torch.stack([dyn.run_route(k, h).argmax(1) for k in range(dyn.num_routes)]))
    return torch.cat(preds), torch.cat(routes), torch.cat(statics, 1)


def _top1(p: Tensor, y: Tensor, hard: Tensor | None, avg_macs: float) -> dict[str, float]:
    """Top-1 of predictions ``p``, the MACs they cost, and the top-1 on the hard / easy halves
    when ``hard`` is given (the report's column order)."""
    ok = (p == y).double()
    out = {"top1": float(ok.mean()), "avg_macs": avg_macs}
    if hard is not None:
        out |= {"top1_hard": float(ok[hard].mean()), "top1_easy": float(ok[~hard].mean())}
    return out


def _throughput(
    run: Callable[[Tensor], Any], x: Tensor, batch_sizes: Sequence[int], repeats: int
) -> dict[str, float]:
    """``ms_b{B}`` and ``img_per_s_b{B}`` of ``run`` on batches of ``x`` (up to 64 images per
    timed call; fewer images than one batch are repeated)."""
    out = {}
    for b in batch_sizes:
        xs = x
        if len(xs) < b:
            xs = xs.repeat(-(-b // len(xs)), *([1] * (xs.dim() - 1)))
        chunks = [xs[i : i + b] for i in range(0, len(xs) - b + 1, b)][: max(1, 64 // b)]

        def go(chunks=chunks):
            for c in chunks:
                run(c)

        ms = time_ms(go, max(3, repeats // max(1, len(chunks)) + 1)) / len(chunks)
        out[f"ms_b{b}"] = ms
        out[f"img_per_s_b{b}"] = b / ms * 1e3
    return out


def evaluate_dynamic_vs_static(
    dyn: DynamicNet,
    x: Tensor,
    y: Tensor,
    *,
    difficulty: Tensor | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 20,
    timing_samples: int = 256,
) -> DynamicReport:
    """Compare ``dyn`` with each of its routes run statically on ``(x, y)``.

    Note the static routes share the gate's attended prefix features here, exactly what the
    dynamic net computes, so the comparison isolates the routing decision.
    """
    dyn.eval()
    macs = [float(dyn.supernet.macs(c)) for c in dyn.route_space]
    preds, routes, statics = _predict_all(dyn, x)
    hist = torch.bincount(routes, minlength=dyn.num_routes)
    share = hist.double() / len(y)
    hard = None if difficulty is None else difficulty > difficulty.median()
    xs = x[:timing_samples]
    with torch.inference_mode():
        dynamic = {
            "route": -1,
            **_top1(preds, y, hard, float(share @ torch.tensor(macs, dtype=torch.float64))),
            **_throughput(lambda c: dyn(c), xs, batch_sizes, repeats),
        }
        static = [
            {
                "route": k,
                **_top1(statics[k], y, hard, macs[k]),
                **_throughput(lambda c, cfg=cfg: dyn.supernet(c, cfg), xs, batch_sizes, repeats),
                "share": float(share[k]),
            }
            for k, cfg in enumerate(dyn.route_space)
        ]
        xb = x[:1]
        h = dyn.features(xb)
        gate_ms = time_ms(lambda: dyn.gate(h), repeats * 5)
        small_ms = time_ms(lambda: dyn.supernet(xb, dyn.route_space[0]), repeats * 2)
    return DynamicReport(
        dynamic=dynamic,
        static=static,
        route_hist=hist.tolist(),
        gate_ms=gate_ms,
        smallest_route_ms=small_ms,
        gate_overhead=gate_ms / small_ms,
    )


def plot_accuracy_vs_macs(report: DynamicReport, path: str | Path, title: str = "") -> Path:
    """PNG: static routes as a curve, the dynamic net as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    s = report["static"]
    ax.plot(
        [r["avg_macs"] / 1e6 for r in s], [100 * r["top1"] for r in s], "o-", label="static routes"
    )
    d = report["dynamic"]
    ax.plot([d["avg_macs"] / 1e6], [100 * d["top1"]], "r*", ms=14, label="dynamic (gate)")
    ax.set_xlabel("MACs per image (M)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title or "accuracy vs MACs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
