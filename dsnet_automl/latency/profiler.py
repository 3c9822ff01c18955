"""Measure block latencies of a slice grid on the device this process runs on.

Every distinct block signature of the grid (see :mod:`.grid`) is run as the static module the
sub-net would extract (``net.units[i].extract(**active)``), eval mode, under
``torch.inference_mode``, on a random input of shape ``(batch, *in_shape)``: ``warmup`` untimed
calls, then ``repeats`` timed calls (``time.perf_counter``; CUDA synchronises after each call),
stored as median / p10 / p90 milliseconds (``statistic="min"``: the fastest timed call in place
of the median). Torch threads are pinned to the profile's count.
Each measurement is committed as it is taken and already measured signatures are skipped, so an
interrupted run (Ctrl-C) resumes where it stopped. A sample of whole sub-nets is also measured
end to end (``net.extract(cfg)``) to fit and check the predictor.

On a shared machine, other processes only ever *add* time, in bursts from milliseconds to
seconds. ``rounds=N, statistic="min"`` with few repeats per round measures every item once per
round, round-robin, keeps each round's fastest call and stores the median over rounds: a
burst spoils one round, not the row: two halves of the rounds agree far more closely than two
medians of consecutive calls do (the predictor's accuracy on tables timed this way, measured:
docs/results/predictor.md).

Backends: ``torch-eager`` (CPU or CUDA) and ``onnxruntime`` (each module exported by
:func:`dsnet_automl.exporters.onnx_bytes`: the ``torch.export``-based exporter deployment files
come from, at the row's exact shape).
"""

from __future__ import annotations

import gc
import platform
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._malloc import keep_freed_memory
from ..config import SliceSpace, SubnetConfig
from ..errors import LatencyTableError
from ..exporters import onnx_bytes
from ..factory import create_supernet
from ..progress import Task, reporter
from ..supernets.base import Supernet
from .device_timer import combine_rounds, summarize, time_calls
from .grid import covering_configs, grid_signatures
from .models import PREDICTIONS
from .profiles import BACKEND_ALIASES, DeviceProfile
from .store import LatencyStore, Timing

__all__ = [
    "BACKENDS",
    "ProfileReport",
    "Profiler",
    "measure",
    "measure_chain",
    "normalize_backend",
    "validation_configs",
    "pending_work",
    "pinned_threads",
]

BACKENDS = ("torch-eager", "onnxruntime")
STATISTICS = ("median", "min")
TIMINGS = ("isolated", "chain")


def normalize_backend(name: str) -> str:
    b = BACKEND_ALIASES.get(name, name)
    if b not in BACKENDS:
        raise LatencyTableError(
            f"backend {name!r} cannot be profiled here; choose one of: torch, onnxruntime"
        )
    return b


@contextmanager
def pinned_threads(n: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n)`` and restore the previous count afterwards."""
    prev = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A garbage collection inside a timed call is noise, not latency."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _timing(seconds: np.ndarray | list[float], statistic: str) -> Timing:
    """Median (``min``: the fastest call) and 10th/90th percentiles in milliseconds."""
    return Timing(*summarize(seconds, statistic))


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise LatencyTableError(f"statistic {statistic!r} is not one of: {', '.join(STATISTICS)}")


def measure(
    fn: Callable[[], object],
    *,
    warmup: int = 5,
    repeats: int = 30,
    sync: Callable[[], None] | None = None,
    statistic: str = "median",
) -> Timing:
    """Time ``fn`` after ``warmup`` calls; median (``statistic="min"``: the fastest call) and
    10th/90th percentiles in milliseconds."""
    _check_statistic(statistic)
    return _timing(time_calls(fn, warmup, repeats, sync), statistic)


@torch.inference_mode()
def measure_chain(
    modules: list[nn.Module],
    x: torch.Tensor,
    *,
    warmup: int = 5,
    repeats: int = 30,
    sync: Callable[[], None] | None = None,
    statistic: str = "median",
) -> list[Timing]:
    """Time every module of a chain where it really runs: inside whole passes
    ``x -> m1 -> m2 -> ...``, so each module gets its real neighbour's fresh output and finds
    the caches as the previous module left them (isolated repeats of one block run with its
    weights hot and under-predict a whole net). One :class:`Timing` per module."""
    _check_statistic(statistic)

    def run() -> None:
        y = x
        for m in modules:
            y = m(y)

    for _ in range(warmup):
        run()
    if sync:
        sync()
    times = np.empty((repeats, len(modules)))
    with _gc_paused():
        for r in range(repeats):
            y = x
            for i, m in enumerate(modules):
                t0 = time.perf_counter()
                y = m(y)
                if sync:
                    sync()
                times[r, i] = time.perf_counter() - t0
    return [_timing(times[:, i], statistic) for i in range(len(modules))]


def validation_configs(space: SliceSpace, n: int, seed: int = 0) -> list[SubnetConfig]:
    """Smallest, largest and ``n - 2`` random configs (deterministic for a seed): the whole
    sub-nets measured end to end to fit and check the predictor."""
    rng = random.Random(seed)
    cfgs = [space.smallest(), space.largest()][: max(n, 0)]
    tries = 0
    while len(cfgs) < min(n, space.size) and tries < 100 * n:
        cfg, tries = space.sample(rng), tries + 1
        if cfg not in cfgs:
            cfgs.append(cfg)
    return cfgs


def pending_work(
    store: LatencyStore,
    device: str,
    supernet: str,
    batch_size: int,
    backend: str,
    sigs: dict[Any, Any],
    cfgs: list[SubnetConfig],
) -> tuple[list[Any], list[SubnetConfig]]:
    """The signatures and whole sub-nets of one batch size that have no evidence yet (a
    measured or imported row) on ``device``/``backend``: what a resumed run still measures."""
    table = store.block_table(device, batch_size, backend)
    done = {s for s, (_, src) in table.items() if src not in PREDICTIONS}
    nets = store.network_table(device, supernet, batch_size, backend)
    have = {c for c, _, src in nets if src not in PREDICTIONS}
    return [s for s in sigs if s not in done], [c for c in cfgs if c.to_json() not in have]


def combine(timings: list[Timing]) -> Timing:
    """Several measurements of one thing: median of each statistic, repeats summed."""
    if len(timings) == 1:
        return timings[0]
    med, p10, p90, n = combine_rounds(
        [(t.median_ms, t.p10_ms, t.p90_ms, t.repeats) for t in timings]
    )
    t0 = timings[0]
    return Timing(med, p10, p90, n, t0.threads, t0.versions)


@dataclass
class ProfileReport:
    """What one profiling run did."""

    device: str
    backend: str
    signatures: int = 0
    measured: int = 0
    skipped: int = 0
    networks_measured: int = 0
    networks_skipped: int = 0
    seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


class Profiler:
    """Profiles slice grids on the running machine into a :class:`LatencyStore`.

    Args:
        store: where measurements go.
        profile: the device profile (its name labels the rows; its ``threads`` pin torch).
        backend: ``torch-eager``/``torch`` or ``onnxruntime`` (default: the profile's).
        warmup, repeats: untimed and timed calls per measurement.
        threads: override the profile's thread count.
        rounds: measure everything this many times, round-robin, and keep the median of the
            per-round values (robust to a busy machine's slow drift).
        statistic: each round's value: ``median`` (of its ``repeats`` calls) or ``min`` (its
            fastest call; with several rounds, robust to bursts of other processes).
        timing: ``isolated`` (each block alone, repeated) or ``chain`` (each block inside whole
            passes of a few covering sub-nets, :func:`measure_chain`; torch-eager only). Rows
            record it in their ``versions`` (``"timing": "chain"``).
    """

    def __init__(
        self,
        store: LatencyStore,
        profile: DeviceProfile,
        *,
        backend: str | None = None,
        warmup: int = 5,
        repeats: int = 30,
        threads: int | None = None,
        rounds: int = 1,
        statistic: str = "median",
        timing: str = "isolated",
    ) -> None:
        if rounds < 1:
            raise LatencyTableError(f"rounds={rounds} must be >= 1")
        if statistic not in STATISTICS:
            raise LatencyTableError(
                f"statistic {statistic!r} is not one of: {', '.join(STATISTICS)}"
            )
        self.rounds, self.statistic = rounds, statistic
        self.store, self.profile = store, profile
        self.backend = normalize_backend(backend or profile.backend)
        if timing not in TIMINGS:
            raise LatencyTableError(f"timing {timing!r} is not one of: {', '.join(TIMINGS)}")
        if timing == "chain" and self.backend != "torch-eager":
            raise LatencyTableError(
                f"timing 'chain' needs backend torch-eager, not {self.backend!r}"
            )
        self.timing = timing
        self.warmup, self.repeats = warmup, repeats
        self.threads = threads or profile.threads
        self.device = torch.device(profile.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise LatencyTableError(
                f"profile {profile.name!r} is a GPU device but CUDA is not available here; "
                f"time it on the device: 'dsnet-automl profile --hw {profile.name} --space "
                "SPACE --remote [user@]host' (python3, numpy and onnxruntime there)"
            )
        self.versions = {"torch": torch.__version__, "python": platform.python_version()}
        if self.backend == "onnxruntime":
            import onnxruntime

            self.versions["onnxruntime"] = onnxruntime.__version__
        if timing == "chain":
            self.versions["timing"] = "chain"
        # CPU tables describe a process that keeps freed activation memory (see _malloc): a
        # whole net otherwise page-faults trimmed heap back in on every forward
        if self.device.type == "cpu" and keep_freed_memory():
            self.versions["malloc"] = "kept"

    # ---------------------------------------------------------------- runners
    def _sync(self) -> Callable[[], None] | None:
        return torch.cuda.synchronize if self.device.type == "cuda" else None

    def _runner(self, module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
        module = module.eval().to(self.device)
        if self.backend == "torch-eager":
            x = x.to(self.device)

            def run() -> object:
                with torch.inference_mode():
                    return module(x)

            return run
        import onnxruntime as ort

        onnx = onnx_bytes(module, x)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads or 0
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if self.device.type == "cuda"
            else ["CPUExecutionProvider"]
        )
        sess = ort.InferenceSession(onnx, opts, providers=providers)
        feed = {"x": x.cpu().numpy()}
        return lambda: sess.run(None, feed)

    def time_module(self, module: nn.Module, x: torch.Tensor) -> Timing:
        """Latency of ``module(x)`` on this device and backend, threads pinned."""
        with pinned_threads(self.threads):
            t = measure(
                self._runner(module, x), warmup=self.warmup, repeats=self.repeats,
                sync=self._sync(), statistic=self.statistic,
            )  # fmt: skip
        return self._stamp(t)

    def _stamp(self, t: Timing) -> Timing:
        return Timing(t.median_ms, t.p10_ms, t.p90_ms, t.repeats, self.threads, self.versions)

    def _chain_rounds(
        self,
        net: Supernet,
        cover: list[tuple[SubnetConfig, list[Any]]],
        todo: list[Any],
        batch_size: int,
        task: Task,
    ) -> Iterator[tuple[Any, Timing]]:
        """``timing="chain"``: each signature still to measure is timed inside the first
        covering sub-net that makes it (several occurrences in one pass: their median), once per
        round; yields ``(signature, timing so far)`` after every sub-net (committed at once)."""
        left = set(todo)
        plan: list[tuple[SubnetConfig, dict[Any, list[int]]]] = []
        for cfg, sigs in cover:
            mine: dict[Any, list[int]] = {}
            for i, sig in enumerate(sigs):
                if sig in left:
                    mine.setdefault(sig, []).append(i)
            if mine:
                plan.append((cfg, mine))
                left -= set(mine)
        seen: dict[Any, list[Timing]] = {}
        for _ in range(self.rounds):
            for cfg, mine in plan:
                mods = [m.eval().to(self.device) for m in net.extract(cfg)]
                x = torch.randn(batch_size, *net.input_size, device=self.device)
                with pinned_threads(self.threads):
                    ts = measure_chain(
                        mods, x, warmup=self.warmup, repeats=self.repeats,
                        sync=self._sync(), statistic=self.statistic,
                    )  # fmt: skip
                for sig, where in mine.items():
                    seen.setdefault(sig, []).append(combine([ts[i] for i in where]))
                    task.update(advance=1)
                    yield sig, self._stamp(combine(seen[sig]))

    def _rounds(
        self,
        items: list[tuple[Any, Any]],
        build: Callable[[Any], nn.Module],
        shape: Callable[[Any], tuple[int, ...]],
        task: Task,
    ) -> Iterator[tuple[Any, Any, Timing]]:
        """Measure every ``(key, item)`` once per round, round-robin, so that slow drift of a
        busy machine spreads over all items; yields ``(key, item, timing so far)`` after every
        single measurement (the caller commits it: an interrupted run keeps what it has)."""
        seen: dict[Any, list[Timing]] = {}
        for _ in range(self.rounds):
            for key, item in items:
                t = self.time_module(build(item), torch.randn(*shape(item)))
                seen.setdefault(key, []).append(t)
                task.update(advance=1)
                yield key, item, combine(seen[key])

    # ---------------------------------------------------------------- profiling
    def validation_configs(self, space: SliceSpace, n: int, seed: int = 0) -> list[SubnetConfig]:
        """See :func:`validation_configs`."""
        return validation_configs(space, n, seed)

    def profile_space(
        self,
        space: SliceSpace,
        *,
        batch_sizes: tuple[int, ...] | None = None,
        validate: int = 8,
        net: Supernet | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> ProfileReport:
        """Measure every distinct block of ``space`` (and ``validate`` whole sub-nets) per batch
        size; already measured rows are skipped. Safe to interrupt and re-run."""
        t_start = time.perf_counter()
        torch.manual_seed(seed)
        net = net or create_supernet(space.supernet, space=space)
        net = net.eval()
        sigs = grid_signatures(net, space)
        batch_sizes = tuple(batch_sizes or self.profile.batch_sizes)
        dev = (self.profile.name, self.profile.kind)
        rep = ProfileReport(
            self.profile.name, self.backend, len(sigs), batch_sizes=list(batch_sizes)
        )
        cfgs = self.validation_configs(space, validate, seed)
        cover = None  # covering sub-nets (timing="chain"), built on first need
        total = (len(sigs) + len(cfgs)) * len(batch_sizes) * self.rounds
        label = f"profiling {space.supernet} on {self.profile.name}"
        with reporter(progress).task(label, total) as task:
            for bs in batch_sizes:
                todo_s, todo_c = pending_work(
                    self.store, dev[0], space.supernet, bs, self.backend, sigs, cfgs
                )
                todo = [(s, sigs[s]) for s in todo_s]
                rep.skipped += len(sigs) - len(todo)
                task.update(advance=(len(sigs) - len(todo)) * self.rounds)
                if self.timing == "chain":
                    cover = cover or covering_configs(net, space)
                    timed = self._chain_rounds(net, cover, [s for s, _ in todo], bs, task)
                else:
                    timed = (
                        (sig, t)
                        for sig, _, t in self._rounds(
                            todo,
                            lambda c: net.units[c.index].extract(**dict(c.active)),
                            lambda c, bs=bs: (bs, *c.in_shape),
                            task,
                        )  # fmt: skip
                    )
                for sig, timing in timed:
                    self.store.put_block(dev, sig, bs, self.backend, timing, macs=sigs[sig].macs)
                rep.measured += len(todo)
                todo_n = [(c.to_json(), c) for c in todo_c]
                rep.networks_skipped += len(cfgs) - len(todo_n)
                task.update(advance=(len(cfgs) - len(todo_n)) * self.rounds)
                for key, _, timing in self._rounds(
                    todo_n, net.extract, lambda _, bs=bs: (bs, *space.input_size), task
                ):
                    self.store.put_network(dev, space.supernet, key, bs, self.backend, timing)
                rep.networks_measured += len(todo_n)
        rep.seconds = time.perf_counter() - t_start
        return rep
