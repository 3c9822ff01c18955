"""``dsnet-automl run | bench``: run an exported dynamic net in PyTorch or ONNX Runtime."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from .._io import atomic_write_text
from ..errors import CheckpointError, DataError
from ._app import (
    BAD_IMAGES_HELP,
    EVAL_SPLITS,
    app,
    bad_images_option,
    batch_sizes_option,
    choice_option,
    console,
    handle_errors,
    reports_bad_images,
)

_BACKENDS = ("torch", "onnxruntime")

BundleArg = Annotated[
    Path,
    typer.Argument(
        help="A dynamic net: a train-gate bundle (dynamic.yaml), a search export's trial_* "
        "directory, or an export directory (runtime.json)."
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        help="torch (a bundle's weights, sliced; an export directory's torch.export .pt2 "
        "programs) or onnxruntime (the ONNX export, torch-free runtime)."
    ),
]
InputOpt = Annotated[
    Path | None,
    typer.Option(
        "--input",
        help=".npy float32 array (N, C, H, W), or .npz with 'x' (and optional labels 'y').",
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(help="Dataset spec instead of --input (default: the bundle's own data)."),
]
SplitOpt = Annotated[str, typer.Option(help="Split of --data: val or test.")]
ProvidersOpt = Annotated[
    str,
    typer.Option(
        help="onnxruntime execution providers, comma-separated, in priority order "
        "(e.g. CUDAExecutionProvider,CPUExecutionProvider)."
    ),
]
ThreadsOpt = Annotated[int | None, typer.Option(help="Threads (torch and onnxruntime).")]
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        help="Routing policy: gate (the trained gate; its cost bias is the knob) or cascade "
        "(run the cheapest route, escalate images whose confidence is below the knob). "
        "Default: the bundle's."
    ),
]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-ms",
        min=0,
        help="Target expected latency per batch, in the route costs' unit (ms on the study's "
        "device and latency batch): the knob is set from the val curve stored at training.",
    ),
]


class _Net:
    """One backend's dynamic net as numpy in -> numpy out: ``run(x)`` and ``static(k, x)``."""

    def __init__(
        self,
        bundle: Path,
        backend: str,
        providers: str,
        threads: int | None,
        policy: str | None = None,
        budget: float | None = None,
    ) -> None:
        choice_option(backend, "--backend", _BACKENDS)
        from ..policies import DEFAULT_KNOBS, POLICIES

        if policy is not None:
            choice_option(policy, "--policy", POLICIES)
        self.knob_note = self.note = ""
        if backend == "onnxruntime" or (
            not (bundle / "dynamic.yaml").is_file() and (bundle / "runtime.json").is_file()
        ):
            if backend == "onnxruntime":
                from ..runtime import OrtDynamicNet

                ort = OrtDynamicNet(bundle, providers=providers.split(","), threads=threads)
                self.label = f"onnxruntime ({ort.providers[0]}, {ort.precision})"
            else:  # an export directory: its torch.export programs
                from ..program_runtime import ProgramDynamicNet

                ort = ProgramDynamicNet(bundle, threads=threads)
                self.label, self.note = f"torch ({ort.providers[0]})", ort.note
            if budget is not None:
                self.knob_note = _knob_note(ort.set_budget(budget, policy), budget, ort.policy)
            elif policy is not None:
                ort.set_policy(policy, DEFAULT_KNOBS[policy])
            self.num_routes, self.input_shape = ort.num_routes, ort.input_shape
            self.data = ort.meta.get("data")
            self.supernet = ort.meta.get("supernet")
            self.route_macs = [float(m) for m in ort.meta["route_macs"]]
            self.run, self.static = ort.run, ort.run_static
            self.policy = ort.policy
            return
        import torch

        from ..dynamic.routing import DynamicNet

        if threads:
            torch.set_num_threads(threads)
        dyn = DynamicNet.load(_torch_bundle(bundle))
        if budget is not None:
            c = dyn.set_budget(budget, policy)
            res = {"knob": c.knob, "expected_cost": c.expected_cost, "reachable": c.reachable}
            self.knob_note = _knob_note(res, budget, dyn.policy)
        elif policy is not None:
            dyn.set_policy(policy, DEFAULT_KNOBS[policy])
        self.num_routes, self.input_shape = dyn.num_routes, tuple(dyn.supernet.input_size)
        self.data, self.label = dyn.metadata.get("data"), "torch (sliced)"
        self.supernet = dyn.supernet.space.supernet
        self.route_macs = [float(dyn.supernet.macs(c)) for c in dyn.route_space]

        @torch.inference_mode()
        def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logits, routes = dyn(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            return logits.numpy(), routes.numpy()

        @torch.inference_mode()
        def static(k: int, x: np.ndarray) -> np.ndarray:
            h, _ = dyn.gated(dyn.features(torch.from_numpy(np.asarray(x, dtype=np.float32))))
            return dyn.run_route(k, h).numpy()

        self.run, self.static = run, static
        self.policy = dyn.policy


def _knob_note(res: dict, budget: float, policy: str) -> str:
    note = (
        f"{policy} knob {res['knob']:.4g}: expected {res['expected_cost']:.4g} on val for "
        f"budget {budget:.4g}"
    )
    if not res["reachable"]:
        note += " [yellow](not reachable: the cheapest setting is used)[/yellow]"
    return note


def _torch_bundle(path: Path) -> Path:
    for d in (path, path.parent):
        if (d / "dynamic.yaml").is_file():
            return d
    raise CheckpointError(
        f"{str(path)!r} has no dynamic.yaml (nor has its parent): --backend torch needs the "
        "bundle written by 'dsnet-automl train-gate --out DIR' or a search export's trial_*"
    )


def _inputs(
    net: _Net,
    input_path: Path | None,
    data: str | None,
    split: str,
    limit: int | None = None,
    bad_images: str = "skip",
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(x, labels or None, description) from --input, --data or the bundle's own data."""
    if input_path is not None:
        if not input_path.is_file():
            raise DataError(f"--input {str(input_path)!r} does not exist")
        try:
            arr = np.load(input_path)
        except (OSError, ValueError) as e:
            raise DataError(f"--input {str(input_path)!r}: not a .npy/.npz file ({e})") from None
        if isinstance(arr, np.lib.npyio.NpzFile):
            if "x" not in arr.files:
                raise DataError(f"--input {str(input_path)!r}: the .npz has no array 'x'")
            x, y = arr["x"], (arr["y"] if "y" in arr.files else None)
        else:
            x, y = arr, None
        if x.ndim != 4 or tuple(x.shape[1:]) != net.input_shape:
            raise DataError(
                f"--input {str(input_path)!r}: shape {tuple(x.shape)}; this net takes "
                f"(N, {', '.join(map(str, net.input_shape))})"
            )
        x = x[:limit]
        return x.astype(np.float32), (None if y is None else y[: len(x)]), str(input_path)
    spec = data or net.data
    if not spec:
        raise DataError("no input: give --input FILE.npy or --data SPEC (the bundle names none)")
    choice_option(split, "--split", EVAL_SPLITS)
    from torch.utils.data import Subset

    from ..data import load_dataset, split_tensors

    splits = load_dataset(spec, net.input_shape, model=net.supernet, bad_images=bad_images)
    ds = getattr(splits, split)
    if limit is not None and limit < len(ds):  # decode only what is used
        ds = Subset(ds, range(limit))
    xt, yt = split_tensors(ds)
    x, y = xt.numpy(), yt.numpy()
    return x.astype(np.float32), y, f"{spec} {split}"


@app.command("run")
@handle_errors
@reports_bad_images
def run_cmd(
    bundle: BundleArg,
    backend: BackendOpt = "torch",
    input_path: InputOpt = None,
    data: DataOpt = None,
    split: SplitOpt = "test",
    out: Annotated[
        Path | None, typer.Option(help="CSV of predictions: index, prediction, route[, label].")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per call.")] = 32,
    providers: ProvidersOpt = "CPUExecutionProvider",
    threads: ThreadsOpt = None,
    policy: PolicyOpt = None,
    budget_ms: BudgetOpt = None,
    bad_images: Annotated[str, typer.Option(help=BAD_IMAGES_HELP)] = "skip",
) -> None:
    """Run a dynamic net on images: predictions, routes, accuracy (if labelled), throughput.

    --backend onnxruntime uses only the ONNX export and the torch-free runtime
    (dsnet_automl.runtime), exactly what a device with onnxruntime runs. --budget-ms sets the
    routing knob so the expected latency on val meets the budget (one gate, many budgets).
    """
    bad_images_option(bad_images)
    net = _Net(bundle, backend, providers, threads, policy, budget_ms)
    for note in (net.note, net.knob_note):
        if note:
            console.print(note, soft_wrap=True)
    x, y, what = _inputs(net, input_path, data, split, bad_images=bad_images)
    preds, routes = [], []
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        logits, r = net.run(x[i : i + batch_size])
        preds.append(logits.argmax(1))
        routes.append(r)
    secs = time.perf_counter() - t0
    pred, route = np.concatenate(preds), np.concatenate(routes)
    hist = np.bincount(route, minlength=net.num_routes)
    avg_macs = float(hist @ np.asarray(net.route_macs)) / max(1, len(x))
    msg = f"{net.label}: {len(x)} images of {what}"
    if y is not None:
        msg += f"; {'' if input_path else split + ' '}top-1 {float((pred == y).mean()):.4f}"
    console.print(
        f"{msg}; routes {hist.tolist()}; average {avg_macs / 1e6:.2f} MMACs; "
        f"{len(x) / secs:.1f} img/s (batch {batch_size})"
    )
    if out is not None:
        import pandas as pd

        cols = {"index": np.arange(len(x)), "prediction": pred, "route": route}
        if y is not None:
            cols["label"] = y
        atomic_write_text(out, pd.DataFrame(cols).to_csv(index=False))
        console.print(f"predictions in {out}")


def _seconds(fn: Callable[[np.ndarray], object], chunks: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for c in chunks:
        fn(c)
    return time.perf_counter() - t0


@app.command("bench")
@handle_errors
@reports_bad_images
def bench_cmd(
    bundle: BundleArg,
    backend: BackendOpt = "torch",
    input_path: InputOpt = None,
    data: DataOpt = None,
    split: SplitOpt = "test",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32",
    samples: Annotated[int, typer.Option(min=1, help="Images timed per pass.")] = 128,
    repeats: Annotated[int, typer.Option(min=1, help="Timed passes (median).")] = 5,
    providers: ProvidersOpt = "CPUExecutionProvider",
    threads: ThreadsOpt = None,
    policy: PolicyOpt = None,
    budget_ms: BudgetOpt = None,
) -> None:
    """Latency and throughput of the dynamic net vs each static route, in one backend.

    Each pass runs SAMPLES images in batches; the dynamic net and every static route (all
    inputs through route k) are timed interleaved, REPEATS passes, medians. 'ideal' is the
    speed-up the route mix allows: T(largest) / sum_k share_k T(route k); 'efficiency' =
    measured / ideal (what grouping and the gate cost). Under the cascade policy no ideal is
    shown: an escalated image runs several suffixes.
    """
    sizes = batch_sizes_option(batch_sizes)
    net = _Net(bundle, backend, providers, threads, policy, budget_ms)
    for note in (net.note, net.knob_note):
        if note:
            console.print(note, soft_wrap=True)
    x, _, what = _inputs(net, input_path, data, split, limit=samples)
    k_all = net.num_routes
    _, routes = net.run(x)
    share = np.bincount(routes, minlength=k_all) / len(x)
    table = Table(title=f"{net.label} on {len(x)} images of {what}; routes {share.round(3)}")
    for col in ("batch", "model", "ms / batch", "img/s", "vs largest"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for b in sizes:
        chunks = [x[i : i + b] for i in range(0, len(x) - b + 1, b)] or [x]
        models: dict[str, Callable[[np.ndarray], object]] = {"dynamic": net.run}
        for k in range(k_all):
            models[f"route {k}"] = lambda c, k=k: net.static(k, c)
        for fn in models.values():  # warm-up
            fn(chunks[0])
        secs: dict[str, list[float]] = {m: [] for m in models}
        for _ in range(repeats):  # interleaved: drift hits every model alike
            for m, fn in models.items():
                secs[m].append(_seconds(fn, chunks))
        t = {m: statistics.median(v) / len(chunks) for m, v in secs.items()}
        largest = t[f"route {k_all - 1}"]
        for m in models:
            table.add_row(
                str(b), m, f"{1e3 * t[m]:.3f}", f"{b / t[m]:.1f}", f"{largest / t[m]:.2f}x"
            )
        if net.policy == "cascade":  # escalated images run several suffixes: no share ideal
            table.add_row(str(b), "[bold]dynamic (cascade)[/bold]", "", "", "ideal n/a")
            continue
        ideal = largest / sum(share[k] * t[f"route {k}"] for k in range(k_all))
        measured = largest / t["dynamic"]
        table.add_row(
            str(b), "[bold]dynamic: ideal / efficiency[/bold]", "", "",
            f"{ideal:.2f}x / {measured / ideal:.2f}",
        )  # fmt: skip
    console.print(table)
