"""``dsnet-automl train-gate | eval-dynamic | export-dynamic``: Stage II and dynamic inference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._io import atomic_write_text, check_writable_dir, read_yaml
from ..defaults import DEFAULT_DATA
from ..errors import SearchSpaceError
from ._app import (
    BAD_IMAGES_CHOICES,
    BAD_IMAGES_HELP,
    CALIB_HELP,
    DEFAULT_CALIB_IMAGES,
    EVAL_SPLITS,
    FORMATS_HELP,
    PRECISION_HELP,
    app,
    batch_sizes_option,
    choice_option,
    console,
    export_options,
    handle_errors,
    reports_bad_images,
)


def _route_space(net, routes: str, gate_stage: str | None):
    from ..config import RouteSpace
    from ..dynamic.routing import default_route_space

    if routes.isdigit():
        k = int(routes)
        if k < 2:
            raise SearchSpaceError(f"--routes {routes}: a gate needs at least 2 routes")
        return default_route_space(net, k, gate_stage=gate_stage)
    path = Path(routes)
    if not path.is_file():
        raise SearchSpaceError(
            f"--routes {routes!r}: give a number of routes (e.g. 4) or a route-space YAML file"
        )

    data = read_yaml(path, SearchSpaceError, "--routes")
    rs = RouteSpace.from_dict(data, source=str(path))
    return RouteSpace.by_cost(rs.configs, net.macs) if rs.costs is None else rs


@app.command("train-gate")
@handle_errors
def train_gate_cmd(
    checkpoint: Annotated[
        Path, typer.Argument(help="Stage I checkpoint (train-supernet --out DIR/checkpoint.pt).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output directory (the dynamic-net bundle).")
    ] = Path("runs/gate"),
    routes: Annotated[
        str,
        typer.Option(
            help="Number of routes K (spread over the routed stages) or a route-space YAML."
        ),
    ] = "4",
    lam: Annotated[
        float,
        typer.Option("--lambda", help="Weight of the cost penalty lambda*(E[cost]/target)^2."),
    ] = 1.0,
    target_cost: Annotated[
        float | None, typer.Option(help="Cost normaliser (default: the largest route's MACs).")
    ] = None,
    gate_stage: Annotated[
        str | None, typer.Option(help="First stage the gate routes (default: the supernet's).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 6,
    lr: Annotated[float, typer.Option()] = 3e-3,
    tau: Annotated[float, typer.Option(help="Gumbel-softmax temperature.")] = 1.0,
    data: Annotated[
        str | None, typer.Option(help="Dataset spec (default: the checkpoint's).")
    ] = None,
    sgs_balance: Annotated[
        bool, typer.Option(help="Class-balance the SGS targets (keeps the gate from collapsing).")
    ] = True,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/gate_train.ckpt.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    bad_images: Annotated[str, typer.Option(help=BAD_IMAGES_HELP)] = "skip",
) -> None:
    """Stage II: train the gate with sandwich gate sparsification; writes a DynamicNet bundle."""
    from ..training.checkpoint import load_checkpoint, load_supernet
    from ..training.gate import fit_gate

    choice_option(bad_images, "--bad-images", BAD_IMAGES_CHOICES)
    check_writable_dir(out)  # a read-only --out fails here, before any training
    net = load_supernet(checkpoint)
    spec = data or load_checkpoint(checkpoint).get("data") or DEFAULT_DATA
    gate_stage = gate_stage or net.default_gate_stage
    _, res = fit_gate(
        net, _route_space(net, routes, gate_stage), out, data=spec, gate_stage=gate_stage,
        mode="sliced", resume=resume, epochs=epochs, lr=lr, tau=tau, lam=lam,
        target_cost=target_cost, sgs_balance=sgs_balance, seed=seed, device=device,
        bad_images=bad_images,
    )  # fmt: skip
    table = Table(title="gate training (done)")
    for col in ("epoch", "loss", "val top-1", "val avg MACs (M)", "routes"):
        table.add_column(col)
    for r in res.history:
        table.add_row(
            str(r["epoch"]),
            f"{r['loss']:.3f}",
            f"{100 * r['val_top1']:.2f}",
            f"{r['val_avg_cost'] / 1e6:.2f}",
            str(r["route_hist"]),
        )
    console.print(table)
    console.print(f"dynamic net written to {out} (load with DynamicNet.load({str(out)!r}))")


@app.command("eval-dynamic")
@handle_errors
@reports_bad_images
def eval_dynamic_cmd(
    bundle: Annotated[Path, typer.Argument(help="Directory written by train-gate.")],
    data: Annotated[str | None, typer.Option(help="Dataset spec (default: the bundle's).")] = None,
    split: Annotated[str, typer.Option(help="val | test.")] = "test",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes to time.")] = "1,32",
    repeats: Annotated[int, typer.Option(min=1, help="Timing repeats per measurement.")] = 20,
    mode: Annotated[
        str, typer.Option(help="sliced | extracted (routes as static sub-nets).")
    ] = "sliced",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write report.json, report.csv and accuracy_vs_macs.png here "
            "(default: BUNDLE/eval)."
        ),
    ] = None,
) -> None:
    """Accuracy, route histogram, average MACs and measured latency vs every static route."""

    from ..data import load_dataset, split_tensors
    from ..dynamic.evaluation import evaluate_dynamic_vs_static, plot_accuracy_vs_macs
    from ..dynamic.routing import DynamicNet

    choice_option(split, "--split", EVAL_SPLITS)
    sizes = batch_sizes_option(batch_sizes)
    dyn = DynamicNet.load(bundle, mode=mode)  # type: ignore[arg-type]
    spec = data or (dyn.metadata.get("data") or DEFAULT_DATA)
    net = dyn.supernet
    ds = getattr(load_dataset(spec, net.input_size, model=net.space.supernet), split)
    x, y = split_tensors(ds)
    diff = getattr(ds, "difficulty", None)
    rep = evaluate_dynamic_vs_static(
        dyn,
        x,
        y,
        difficulty=diff,
        batch_sizes=sizes,
        repeats=repeats,
    )
    df = rep.table()
    out = out or bundle / "eval"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.csv", df.to_csv(index=False))
    atomic_write_text(out / "report.json", json.dumps(rep, indent=1, default=float))
    plot_accuracy_vs_macs(rep, out / "accuracy_vs_macs.png", title=f"{dyn.supernet.name} on {spec}")
    # the columns that matter, fitting 80 columns; every column is in report.csv
    table = Table(title=f"dynamic vs static routes ({spec} {split}, {len(y)} images)")
    cols = {"model": "model", "top1": "top-1 %", "avg_macs": "MMACs", "share": "share"}
    cols.update({f"ms_b{b}": f"ms b{b}" for b in sizes})
    for key, label in cols.items():
        table.add_column(label, justify="left" if key == "model" else "right", no_wrap=True)
    fmt = {"top1": lambda v: f"{100 * v:.2f}", "avg_macs": lambda v: f"{v / 1e6:.3g}"}
    for _, row in df.iterrows():
        cells = [str(row["model"]).replace("static route", "route")]
        for key in list(cols)[1:]:
            v = row.get(key)
            missing = v is None or v != v  # NaN: the dynamic row has no share
            cells.append("" if missing else fmt.get(key, lambda v: f"{v:.3g}")(float(v)))
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"gate: {rep['gate_ms']:.3f} ms = {100 * rep['gate_overhead']:.1f}% of the smallest "
        f"route; routes {rep['route_hist']}; report in {out}"
    )


@app.command("export-dynamic")
@handle_errors
def export_dynamic_cmd(
    bundle: Annotated[Path, typer.Argument(help="Directory written by train-gate.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (default: BUNDLE/export, or BUNDLE/export_PRECISION)."),
    ] = None,
    formats: Annotated[str | None, typer.Option(help=FORMATS_HELP)] = None,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
    calib_images: Annotated[int, typer.Option(min=1, help=CALIB_HELP)] = DEFAULT_CALIB_IMAGES,
    data: Annotated[
        str | None,
        typer.Option(help="int8: dataset spec to calibrate on (default: the bundle's own data)."),
    ] = None,
) -> None:
    """Export prefix, gate and each route's sub-net as torch.export programs (.pt2) and ONNX.

    Every file is loaded back and checked against the sliced net (ONNX in onnxruntime). With
    onnx, the export also holds runtime.json and dsnet_runtime.py: copy the directory to a
    device with numpy + onnxruntime and run it there without torch (see 'dsnet-automl run').
    --precision fp16|int8 converts the ONNX files for targets that run them (Jetson, Pi).
    """
    from ..dynamic.export import calibration_images, export_dynamic
    from ..dynamic.routing import DynamicNet

    fmts, precision = export_options(formats, precision)
    dyn = DynamicNet.load(bundle)
    dest = out or bundle / ("export" if precision == "fp32" else f"export_{precision}")
    check_writable_dir(dest.parent, "--out")  # the export is staged next to it
    calib = calibration_images(dyn, calib_images, data) if precision == "int8" else None
    res = export_dynamic(dyn, dest, formats=fmts, precision=precision, calibration=calib)
    worst = max(res["max_abs_diff"].values(), default=0.0)
    console.print(f"wrote {len(res['files'])} files to {dest}; max |diff| vs PyTorch {worst:.2e}")
    if "converted_abs_diff" in res:
        conv = max(res["converted_abs_diff"].values(), default=0.0)
        what = f"{calib[1]['images']} {calib[1]['data']} val images" if calib else "no data"
        console.print(
            f"{precision}: max |diff| vs fp32 PyTorch {conv:.3g} (calibrated on {what}); "
            "check accuracy with: dsnet-automl run "
            f"{dest} --backend onnxruntime --split test",
            soft_wrap=True,
        )
    if "dsnet_runtime.py" in res["files"]:
        console.print(
            f"run it: dsnet-automl run {dest} --backend onnxruntime   (on a device without "
            f"torch: python {dest / 'dsnet_runtime.py'} {dest} --input x.npy)",
            soft_wrap=True,
        )
    elif "pt2" in fmts:
        console.print(f"run it: dsnet-automl run {dest} --backend torch", soft_wrap=True)
