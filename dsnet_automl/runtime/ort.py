"""Run an exported dynamic net with ONNX Runtime only: numpy + onnxruntime, no torch.

An export (``dsnet-automl export-dynamic BUNDLE``, or a search export's ``trial_*/export``)
holds ``prefix.onnx``, ``gate.onnx``, ``route_<k>.onnx`` and ``runtime.json``. This module runs
them as one dynamic network: prefix -> gate (attended features, route logits) -> argmax ->
group the batch by route -> one session call per route present -> scatter back in input order.
The routing policy and its budget knob are those of :mod:`dsnet_automl.policies` (the gate's
argmax after a cost bias, or a confidence cascade), re-written here in numpy so the device
needs no torch; ``set_budget(ms)`` picks the knob from the val curve stored in the export.

It imports nothing from torch or the rest of dsnet_automl beyond its error class, and the
export copies this file next to the ONNX files as ``dsnet_runtime.py``, so a device needs only
``pip install numpy onnxruntime`` (or ``onnxruntime-gpu``) and the bundle directory::

    from dsnet_runtime import OrtDynamicNet       # or: from dsnet_automl.runtime import ...
    net = OrtDynamicNet("export/", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    logits, routes = net.run(images)               # float32 (B, C, H, W)

    python dsnet_runtime.py export/ --input images.npy   # predictions as CSV on stdout
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:  # inside the package: the CLI prints these as one line
    from ..errors import CheckpointError as BundleError
except ImportError:  # the standalone copy (dsnet_runtime.py) on a device

    class BundleError(ValueError):  # type: ignore[no-redef]
        """The export directory or an input is not what the runtime expects."""


__all__ = ["MANIFEST", "BundleError", "OrtDynamicNet", "find_export_dir", "session_options"]

MANIFEST = "runtime.json"
FORMAT = "dsnet_automl.runtime"
_OPT_LEVELS = ("disable", "basic", "extended", "all")


def find_export_dir(path: str | os.PathLike) -> Path:
    """The directory holding ``runtime.json``: ``path`` itself or ``path/export``."""
    p = Path(path)
    for d in (p.absolute(), *p.absolute().parents):  # dsnet_automl._staging's names
        if re.match(r"^.+\.(partial|old)-\d+$", d.name) and (d / ".dsnet-output").is_file():
            raise BundleError(
                f"{str(p)!r} is not a complete export: {d.name!r} is the staging directory of an "
                "export that did not finish (or an earlier one set aside); use "
                f"{str(d.with_name(d.name.rsplit('.', 1)[0]))!r}, or re-run the export"
            )
    for d in (p, p / "export"):
        if (d / MANIFEST).is_file():
            return d
    hint = (
        f"run 'dsnet-automl export-dynamic {p}' first"
        if (p / "dynamic.yaml").is_file()
        else "it must be written by 'dsnet-automl export-dynamic' or 'dsnet-automl export'"
    )
    raise BundleError(f"{str(p)!r} holds no ONNX export ({MANIFEST} not found); {hint}")


def session_options(
    threads: int | None = None, graph_optimization: str = "all", spin: bool = False
) -> Any:
    """``onnxruntime.SessionOptions`` as the runtime uses them (see :class:`OrtDynamicNet`)."""
    import onnxruntime as ort

    if graph_optimization not in _OPT_LEVELS:
        raise BundleError(
            f"graph_optimization={graph_optimization!r}; allowed: {', '.join(_OPT_LEVELS)}"
        )
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    # K + 2 sessions run one after another: idle spinning threads of the session that just
    # finished would compete with the next one for the same cores
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return so


class OrtDynamicNet:
    """An exported dynamic net on ONNX Runtime.

    Args:
        path: the export directory (or its parent bundle) holding ``runtime.json``.
        providers: execution providers, in priority order, passed to onnxruntime as they are
            (names or ``(name, options)`` pairs), e.g. ``["TensorrtExecutionProvider",
            "CUDAExecutionProvider", "CPUExecutionProvider"]``. Default: CPU.
        threads: intra-op threads per session (default: onnxruntime's, one per core).
        graph_optimization: ``disable | basic | extended | all`` (default ``all``).
        spin: let idle intra-op threads spin (lower latency when one session runs alone,
            but the K + 2 sessions here run in turn, so default off).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        spin: bool = False,
    ) -> None:
        import onnxruntime as ort

        self._read_manifest(path)
        files = self.meta.get("files")
        if not files:
            raise BundleError(
                f"{str(self.dir)!r} holds no ONNX files (exported without the onnx format); "
                "re-export with 'dsnet-automl export-dynamic BUNDLE --formats pt2,onnx'"
            )
        available = ort.get_available_providers()
        providers = list(providers or ["CPUExecutionProvider"])
        names = [p if isinstance(p, str) else p[0] for p in providers]
        if not any(n in available for n in names):
            raise BundleError(
                f"none of the execution providers {names} is available in this onnxruntime "
                f"(available: {', '.join(available)}); for CUDA/TensorRT install onnxruntime-gpu"
            )
        so = session_options(threads, graph_optimization, spin)
        self._open_parts(
            files,
            lambda f: ort.InferenceSession(str(f), sess_options=so, providers=providers),
        )
        self.providers = self.prefix.get_providers()

    def _read_manifest(self, path: str | os.PathLike) -> None:
        """``runtime.json``: routes, input shape, costs, policy (what every runtime needs)."""
        self.dir = find_export_dir(path)
        meta_path = self.dir / MANIFEST
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise BundleError(f"{str(meta_path)!r} is not readable JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise BundleError(f"{str(meta_path)!r} is not a dsnet_automl runtime manifest")
        self.meta = meta
        self.num_routes = int(meta["num_routes"])
        self.input_shape = tuple(int(v) for v in meta["input_shape"])
        self.precision = (meta.get("precision") or {}).get("name", "fp32")
        self.costs = np.asarray(meta.get("route_costs") or meta["route_macs"], dtype=np.float64)
        pol = meta.get("policy") or {}
        self.set_policy(pol.get("name", "gate"), pol.get("knob", 0.0), pol.get("chain"))

    def _open_parts(self, files: dict[str, Any], open_file: Any) -> None:
        """``self.prefix``, ``self.gate``, ``self.routes`` from the manifest's file names,
        each opened by ``open_file(path)``."""

        def part(name: str) -> Any:
            f = self.dir / name
            if not f.is_file():
                raise BundleError(f"{str(f)!r} is missing from the export (listed in {MANIFEST})")
            return open_file(f)

        self.prefix = part(files["prefix"])
        self.gate = part(files["gate"])
        self.routes = [part(f) for f in files["routes"]]
        if len(self.routes) != self.num_routes:
            raise BundleError(
                f"{str(self.dir / MANIFEST)!r}: {len(self.routes)} route files for "
                f"{self.num_routes} routes"
            )

    # -- routing policy --------------------------------------------------------------------
    def set_policy(self, policy: str = "gate", knob: float = 0.0, chain: Any = None) -> None:
        """``gate`` with cost bias ``knob`` (0: as trained) or ``cascade`` with confidence
        threshold ``knob`` along ``chain`` (route indices; default all routes)."""
        if policy not in ("gate", "cascade"):
            raise BundleError(f"routing policy {policy!r}; allowed: gate, cascade")
        self.policy, self.knob = policy, float(knob)
        k = self.num_routes
        self.chain = tuple(int(c) for c in chain) if chain else tuple(range(k))
        if any(not 0 <= c < k for c in self.chain):
            raise BundleError(f"cascade chain {list(self.chain)} outside routes 0..{k - 1}")

    def set_budget(self, budget: float, policy: str | None = None) -> dict[str, Any]:
        """Set the knob of ``policy`` (default: the current one) from the export's val curve:
        the setting with the largest expected cost not above ``budget`` (the route costs'
        unit, e.g. ms). -> ``{"knob", "expected_cost", "reachable"}``."""
        policy = policy or self.policy
        curve = (self.meta.get("calibration") or {}).get(policy)
        if not curve:
            raise BundleError(
                f"this export has no val calibration for the {policy!r} policy; re-export it "
                "with 'dsnet-automl export-dynamic' from a bundle trained by this version"
            )
        fit = [r for r in curve if r[1] <= budget * (1 + 1e-9)]
        row = max(fit, key=lambda r: (r[1], r[2])) if fit else min(curve, key=lambda r: r[1])
        chain = (self.meta.get("calibration") or {}).get("chain") if policy == "cascade" else None
        self.set_policy(policy, row[0], chain or self.chain)
        return {"knob": float(row[0]), "expected_cost": float(row[1]), "reachable": bool(fit)}

    # -- the parts -------------------------------------------------------------------------
    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise BundleError(
                f"input of shape {tuple(x.shape)}; this net takes (batch, "
                f"{', '.join(map(str, self.input_shape))})"
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    @staticmethod
    def _run(sess: Any, x: np.ndarray) -> list[np.ndarray]:
        return sess.run(None, {sess.get_inputs()[0].name: x})

    def features(self, x: np.ndarray) -> np.ndarray:
        """The shared prefix: images -> prefix features."""
        return self._run(self.prefix, self._check(x))[0]

    def route_logits(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The gate: prefix features -> (attended features, route logits (B, K))."""
        h_att, logits = self._run(self.gate, h)
        return h_att, logits

    def run_route(self, k: int, h_att: np.ndarray) -> np.ndarray:
        """Route ``k``'s sub-net on attended features -> class logits."""
        return self._run(self.routes[k], h_att)[0]

    # -- whole network ---------------------------------------------------------------------
    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (B, C, H, W) -> (class logits (B, classes), routes (B,) int64)."""
        h_att, logits = self.route_logits(self.features(x))
        if self.policy == "cascade":
            return self._cascade(h_att)
        if self.knob:
            logits = logits - (self.knob * self.costs / self.costs.max()).astype(np.float32)
        routes = logits.argmax(1).astype(np.int64)
        if (routes == routes[0]).all():  # one route (or batch 1): no gather / scatter copies
            return self.run_route(int(routes[0]), h_att), routes
        order = np.argsort(routes, kind="stable")
        counts = np.bincount(routes, minlength=self.num_routes)
        bounds = np.cumsum(counts)[:-1]
        groups = np.split(h_att[order], bounds)
        outs = [self.run_route(k, g) for k, g in enumerate(groups) if len(g)]
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        result = np.empty_like(out)
        result[order] = out
        return result, routes

    __call__ = run

    def _cascade(self, h_att: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Confidence escalation along the chain (as ``DynamicNet.forward_cascade``)."""
        chain = self.chain
        out = self.run_route(chain[0], h_att)
        routes = np.full(len(h_att), chain[0], dtype=np.int64)
        idx = np.arange(len(h_att))
        conf = _confidence(out)
        for r in chain[1:]:
            keep = conf < self.knob
            if not keep.any():
                break
            idx = idx[keep]
            o = self.run_route(r, h_att[idx])
            out[idx] = o
            routes[idx] = r
            conf = _confidence(o)
        return out, routes

    def run_static(self, k: int, x: np.ndarray) -> np.ndarray:
        """Every input through route ``k`` (prefix -> gate attention -> route k): the static
        sub-net of that route, for comparisons."""
        if not 0 <= k < self.num_routes:
            raise BundleError(f"route {k} out of range: this net has {self.num_routes} routes")
        h_att, _ = self.route_logits(self.features(x))
        return self.run_route(k, h_att)


def _confidence(logits: np.ndarray) -> np.ndarray:
    """Top softmax probability per row."""
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return (e.max(1) / e.sum(1)).astype(np.float32)


def _main(argv: list[str] | None = None) -> None:
    """``python dsnet_runtime.py EXPORT_DIR --input X.npy``: predictions as CSV on stdout."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("export_dir")
    ap.add_argument("--input", required=True, help=".npy float32 array (N, C, H, W)")
    ap.add_argument("--providers", default="CPUExecutionProvider", help="comma-separated")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    try:
        net = OrtDynamicNet(
            args.export_dir, providers=args.providers.split(","), threads=args.threads
        )
        x = np.load(args.input)
        print("index,prediction,route")
        for i in range(0, len(x), args.batch_size):
            logits, routes = net.run(x[i : i + args.batch_size])
            for j, (c, r) in enumerate(zip(logits.argmax(1), routes, strict=True)):
                print(f"{i + j},{int(c)},{int(r)}")
    except (BundleError, OSError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    _main()
