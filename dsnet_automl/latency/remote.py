"""Profile a slice grid on a remote device over ssh: export here, time there, store here.

The device needs python3 >= 3.8, numpy and onnxruntime (``trtexec`` too for
``engine="trtexec"``); nothing of ours is installed on it. A run:

1. prepares a work directory on the device (``$TMPDIR/dsnet-automl-profile-<user>``; a timer
   left running by a killed earlier run is stopped first) and copies
   :mod:`.device_timer` there (one standalone file);
2. probes the device (``device_timer.py probe``): a missing python, numpy, onnxruntime,
   provider or trtexec is one :class:`~.ssh.RemoteError` line saying how to install it;
3. in batches of ``batch_items``: exports each block signature (and each whole sub-net the
   predictor's correction is fitted on) still lacking evidence in the table to ONNX here
   (:func:`dsnet_automl.exporters.onnx_bytes`, the same file the local onnxruntime backend
   times), copies the batch with ``scp``, runs ``device_timer.py time`` and commits each
   result line as it arrives, as a ``measured`` row stamped with what measured it
   (``versions``: the ssh target, the device's uname and model, python, onnxruntime and
   provider or trtexec, power mode);
4. removes the work directory.

A dropped connection or a killed run loses at most the item being timed; a re-run skips every
row already measured for the device, backend and batch size.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._malloc import MMAP_THRESHOLD, TRIM_THRESHOLD, keep_freed_memory
from ..config import SliceSpace
from ..exporters import onnx_bytes
from ..factory import create_supernet
from ..progress import reporter
from ..supernets.base import Supernet
from . import device_timer
from .grid import grid_signatures
from .profiler import ProfileReport, pending_work, validation_configs
from .profiles import DeviceProfile
from .roofline import table_backend
from .ssh import RemoteError, SshTarget
from .store import LatencyStore, Timing

__all__ = ["ENGINES", "RemoteProfiler", "RemoteReport", "setup_workdir"]

ENGINES = ("onnxruntime", "trtexec")
# where the timer lives on the device; a pid file lets the next run stop a timer that a
# killed run left behind (it would otherwise compete with the new measurements)
_SETUP = """
import getpass, json, os, shutil, signal, tempfile
d = os.path.join(tempfile.gettempdir(), "dsnet-automl-profile-" + getpass.getuser())
try:
    pid = int(open(os.path.join(d, "pid")).read())
    cmd = open("/proc/%d/cmdline" % pid, "rb").read()
    if b"device_timer" in cmd:
        os.kill(pid, signal.SIGKILL)
except Exception:
    pass
shutil.rmtree(d, ignore_errors=True)
os.makedirs(d)
print(json.dumps({"workdir": d}))
"""
_CLEANUP = "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)"


def setup_workdir(target: SshTarget) -> str:
    """Create the device's work directory (stopping a stale timer) and copy the timer there."""
    out = target.run(target.python_cmd("-c", _SETUP), what="preparing a work directory")
    try:
        workdir = json.loads(out.strip().splitlines()[-1])["workdir"]
    except (ValueError, KeyError, IndexError):
        raise RemoteError(
            f"{target.label}: {target.python!r} printed {out[-200:]!r} instead of a work "
            "directory; is it python3 >= 3.8?"
        ) from None
    target.put([device_timer.__file__], workdir)
    return workdir


@dataclass
class RemoteReport(ProfileReport):
    """A :class:`ProfileReport` plus what the device said about itself."""

    remote: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    device_seconds: float = 0.0  # time the device spent timing (export and copy excluded)


@dataclass(frozen=True)
class _Item:
    key: str  # "b<i>" (a block) or "n<i>" (a whole sub-net)
    batch_size: int
    shape: tuple[int, ...]
    module: Any
    what: Any  # the BlockSignature or SubnetConfig
    macs: int | None = None  # per sample (blocks)

    @property
    def name(self) -> str:
        """Unique within a run (a key is per batch size): the manifest key and file stem."""
        return f"{self.key}-{self.batch_size}"


class RemoteProfiler:
    """Profiles slice grids on a remote device reached with :class:`SshTarget`.

    Args:
        store: where the measured rows go (here, not on the device).
        profile: the device's profile (its name labels the rows).
        target: the ssh target (host, python, ssh config).
        engine: ``onnxruntime`` (rows under backend ``onnxruntime``) or ``trtexec`` (TensorRT,
            rows under ``tensorrt``/``tensorrt/fp16``/``tensorrt/int8`` by ``precision``).
        provider: onnxruntime execution provider by name (``CPUExecutionProvider``,
            ``CUDAExecutionProvider``, ``TensorrtExecutionProvider``).
        precision: trtexec's ``--fp16``/``--int8`` (onnxruntime: fp32 only).
        threads: onnxruntime intra-op threads (default: the profile's).
        warmup, repeats, rounds, statistic: the timing protocol (as :class:`.Profiler`).
        batch_items: files per copy-and-time batch.
    """

    def __init__(
        self,
        store: LatencyStore,
        profile: DeviceProfile,
        target: SshTarget,
        *,
        engine: str = "onnxruntime",
        provider: str = "CPUExecutionProvider",
        precision: str = "fp32",
        threads: int | None = None,
        warmup: int = 5,
        repeats: int = 30,
        rounds: int = 1,
        statistic: str = "median",
        batch_items: int = 16,
    ) -> None:
        if engine not in ENGINES:
            raise RemoteError(f"engine {engine!r} is not one of: {', '.join(ENGINES)}")
        if engine == "onnxruntime" and precision != "fp32":
            raise RemoteError(
                f"precision {precision!r} needs --backend tensorrt (trtexec); onnxruntime "
                "profiles fp32"
            )
        if statistic not in device_timer.STATISTICS:
            raise RemoteError(
                f"statistic {statistic!r} is not one of: {', '.join(device_timer.STATISTICS)}"
            )
        if batch_items < 1 or rounds < 1 or repeats < 3:
            raise RemoteError("batch_items and rounds must be >= 1 and repeats >= 3")
        self.store, self.profile, self.target = store, profile, target
        self.engine, self.provider, self.precision = engine, provider, precision
        self.backend = table_backend("tensorrt" if engine == "trtexec" else "onnxruntime",
                                     precision)  # fmt: skip
        self.threads = threads or profile.threads
        self.warmup, self.repeats, self.rounds = warmup, repeats, rounds
        self.statistic, self.batch_items = statistic, batch_items
        # the device's timer keeps freed memory as a CPU table's process does here (see
        # _malloc: glibc reads these two variables at start; other C libraries ignore them)
        self._env: list[str] = []
        if keep_freed_memory():
            self._env = ["env", f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}",
                         f"MALLOC_TRIM_THRESHOLD_={TRIM_THRESHOLD}"]  # fmt: skip

    # ------------------------------------------------------------------ the device
    def check(self, info: dict[str, Any]) -> dict[str, str]:
        """Raise a one-line RemoteError when the probed device cannot time; else the stamp
        every row gets (``versions``)."""
        who = f"{self.target.label} ({info.get('executable', self.target.python)})"
        if not info.get("python_ok", False):
            raise RemoteError(f"{who}: python {info.get('python')} is older than 3.8")
        if info.get("missing"):
            raise RemoteError(
                f"{who} lacks {' and '.join(info['missing'])}: install it there with "
                f"{info.get('install_hint', device_timer.INSTALL_HINT)}"
            )
        stamp = {
            "remote": self.target.label,
            "uname": info.get("uname", ""),
            "python": info.get("python", ""),
            "numpy": info.get("numpy", ""),
        }
        for key in ("model", "nvpmodel"):
            if info.get(key):
                stamp[key] = info[key]
        if self.engine == "trtexec":
            if not info.get("trtexec"):
                raise RemoteError(
                    f"{who}: no trtexec on PATH or in /usr/src/tensorrt/bin: install TensorRT "
                    "(JetPack ships it) or profile with --backend onnxruntime"
                )
            stamp.update(trtexec=info["trtexec"], precision=self.precision)
        else:
            have = info.get("providers", [])
            if self.provider not in have:
                raise RemoteError(
                    f"{who}: onnxruntime {info.get('onnxruntime')} has no {self.provider}; "
                    f"it has: {', '.join(have)}"
                )
            stamp.update(onnxruntime=info.get("onnxruntime", ""), provider=self.provider)
        if self._env:
            stamp["malloc"] = "kept"
        if self.statistic != "median" or self.rounds > 1:
            stamp["timing"] = f"{self.rounds} rounds x {self.statistic}"
        return stamp

    # ------------------------------------------------------------------ profiling
    def _items(
        self, net: Supernet, space: SliceSpace, sigs: dict, cfgs: list, bs: int, rep: RemoteReport
    ) -> list[_Item]:
        todo_s, todo_c = pending_work(
            self.store, self.profile.name, space.supernet, bs, self.backend, sigs, cfgs
        )
        rep.skipped += len(sigs) - len(todo_s)
        rep.networks_skipped += len(cfgs) - len(todo_c)
        items = [
            _Item(f"b{i}", bs, (bs, *sigs[s].in_shape),
                  (lambda c=sigs[s]: net.units[c.index].extract(**dict(c.active))), s,
                  sigs[s].macs)
            for i, s in enumerate(todo_s)
        ]  # fmt: skip
        items += [
            _Item(f"n{i}", bs, (bs, *space.input_size), (lambda c=c: net.extract(c)), c)
            for i, c in enumerate(todo_c)
        ]
        return items

    def _manifest(self, batch: list[_Item], info: dict[str, Any]) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "provider": self.provider,
            "precision": self.precision,
            "trtexec": info.get("trtexec"),
            "threads": self.threads,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "rounds": self.rounds,
            "statistic": self.statistic,
            "items": [
                {
                    "key": it.name,
                    "file": f"{it.name}.onnx",
                    "shape": list(it.shape),
                }
                for it in batch
            ],  # fmt: skip
        }

    def _export(self, batch: list[_Item], local: Path) -> list[Path]:
        files = []
        for it in batch:
            path = local / f"{it.name}.onnx"
            path.write_bytes(onnx_bytes(it.module(), torch.randn(*it.shape)))
            files.append(path)
        return files

    def profile_space(
        self,
        space: SliceSpace,
        *,
        batch_sizes: tuple[int, ...] | None = None,
        validate: int = 8,
        net: Supernet | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> RemoteReport:
        """Measure on the device every block of ``space`` and ``validate`` whole sub-nets per
        batch size that the table lacks; safe to interrupt and re-run."""
        t_start = time.perf_counter()
        torch.manual_seed(seed)
        net = (net or create_supernet(space.supernet, space=space)).eval()
        sigs = grid_signatures(net, space)
        batch_sizes = tuple(batch_sizes or self.profile.batch_sizes)
        rep = RemoteReport(self.profile.name, self.backend, len(sigs),
                           batch_sizes=list(batch_sizes), remote=self.target.label)  # fmt: skip
        cfgs = validation_configs(space, validate, seed)
        items = [it for bs in batch_sizes for it in self._items(net, space, sigs, cfgs, bs, rep)]
        if items:
            self._run(items, space, rep, progress)
        rep.seconds = time.perf_counter() - t_start
        return rep

    def _run(self, items: list[_Item], space: SliceSpace, rep: RemoteReport, progress: bool):
        dev = (self.profile.name, self.profile.kind)
        workdir = setup_workdir(self.target)
        try:
            probe = self.target.run(
                self.target.python_cmd(f"{workdir}/device_timer.py", "probe"), what="probe"
            )
            rep.identity = json.loads(probe.strip().splitlines()[-1])
            stamp = self.check(rep.identity)
            label = f"profiling {space.supernet} on {self.target.label}"
            with (
                reporter(progress).task(label, len(items)) as task,
                tempfile.TemporaryDirectory(prefix="dsnet-remote-") as tmp,
            ):
                for i in range(0, len(items), self.batch_items):
                    batch = items[i : i + self.batch_items]
                    self._batch(batch, workdir, Path(tmp), stamp, rep, dev, space, task)
        finally:
            # the device went away: the next run clears the directory
            with contextlib.suppress(RemoteError):
                self.target.run(self.target.python_cmd("-c", _CLEANUP, workdir), timeout_s=60)
            self.target.close()

    def _batch(self, batch, workdir, tmp, stamp, rep, dev, space, task) -> None:
        by_key = {it.name: it for it in batch}
        files = self._export(batch, tmp)
        man = tmp / "manifest.json"
        man.write_text(json.dumps(self._manifest(batch, rep.identity)))
        self.target.put([*files, man], workdir)
        for f in files:
            f.unlink()
        cmd = [*self._env, *self.target.python_cmd(
            f"{workdir}/device_timer.py", "time", f"{workdir}/manifest.json"
        )]  # fmt: skip
        for line in self.target.stream(cmd, what="timing"):
            try:
                res = json.loads(line)
                it = by_key[res["key"]]
            except (ValueError, KeyError):
                continue  # not one of ours (a library's print on stdout)
            t = Timing(res["median_ms"], res["p10_ms"], res["p90_ms"], res["repeats"],
                       self.threads if self.engine == "onnxruntime" else None, stamp)  # fmt: skip
            if it.key.startswith("b"):
                self.store.put_block(dev, it.what, it.batch_size, self.backend, t, macs=it.macs)
                rep.measured += 1
            else:
                self.store.put_network(
                    dev, space.supernet, it.what.to_json(), it.batch_size, self.backend, t
                )
                rep.networks_measured += 1
            rep.device_seconds += res["seconds"]
            done = rep.measured + rep.networks_measured
            task.update(advance=1, text=f"{rep.device_seconds / done:.2f} s/item on device")
