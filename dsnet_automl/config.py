"""Slice configuration: the grid (:class:`SliceSpace`), one point (:class:`SubnetConfig`) and
the ordered list of points a gate routes between (:class:`RouteSpace`).

All three are frozen, hashable and round-trip through plain dicts, YAML and JSON. The same
``SubnetConfig`` object is what the supernet runs, what SQLite/Optuna store and what export
bundles contain.

Dimension names are ``"<unit>.<what>"`` strings, e.g. ``"stage4.width"``, ``"stage2.heads"``,
``"stage3.mlp_ratio"``, ``"stage1.depth"``. Values are ints, or floats for ratios.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._io import read_yaml
from .errors import SearchSpaceError

__all__ = ["RouteSpace", "SliceSpace", "SubnetConfig", "Value"]

Value = int | float


def _fmt_choices(choices: Sequence[Value]) -> str:
    return "[" + ", ".join(str(c) for c in choices) + "]"


def _check_value(where: str, value: Any) -> Value:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SearchSpaceError(f"{where}: value {value!r} is not a finite number")
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(frozen=True)
class SubnetConfig:
    """One sub-net: a value for every slice dimension of one supernet.

    Args:
        supernet: name of the supernet architecture the config belongs to.
        values: ``(dim, value)`` pairs; stored sorted by dimension name so equal configs compare
            and hash equal however they were built.
    """

    supernet: str
    values: tuple[tuple[str, Value], ...]
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = tuple(
            sorted((str(k), _check_value(f"config dim {k!r}", v)) for k, v in self.values)
        )
        object.__setattr__(self, "values", items)
        object.__setattr__(self, "_hash", hash((self.supernet, items)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def of(cls, supernet: str, values: Mapping[str, Value]) -> SubnetConfig:
        """Build from a mapping ``{dim: value}`` (not validated against a space)."""
        return cls(supernet, tuple(values.items()))

    def __getitem__(self, dim: str) -> Value:
        for k, v in self.values:
            if k == dim:
                return v
        raise KeyError(f"{dim!r} is not a dimension of this config; it has {list(self.as_dict())}")

    def get(self, dim: str, default: Value | None = None) -> Value | None:
        try:
            return self[dim]
        except KeyError:
            return default

    def as_dict(self) -> dict[str, Value]:
        return dict(self.values)

    def replace(self, **changes: Value) -> SubnetConfig:
        """A copy with some dims changed; dims with dots are passed as ``**{"stage1.width": 8}``."""
        d = self.as_dict()
        d.update(changes)
        return SubnetConfig.of(self.supernet, d)

    def to_dict(self) -> dict[str, Any]:
        return {"supernet": self.supernet, "values": self.as_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> SubnetConfig:
        if not isinstance(data, Mapping) or "supernet" not in data or "values" not in data:
            raise SearchSpaceError(
                f"{source}: a sub-net config needs the fields 'supernet' and 'values', got {data!r}"
            )
        vals = data["values"]
        if not isinstance(vals, Mapping):
            raise SearchSpaceError(f"{source}: field 'values' must be a mapping dim -> value")
        return cls.of(str(data["supernet"]), vals)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SubnetConfig:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> SubnetConfig:
        return cls.from_dict(yaml.safe_load(text))

    def short(self) -> str:
        """Compact one-line label, e.g. ``stage1.width=32 stage2.width=48``."""
        return " ".join(f"{k}={v}" for k, v in self.values)


@dataclass(frozen=True)
class SliceSpace:
    """The grid of allowed values of every slice dimension of one supernet.

    Args:
        supernet: registered supernet name (``create_supernet`` key).
        dims: ordered ``(dim, choices)`` pairs; choices strictly increasing. The largest
            choice of every dimension is the supernet's capacity.
        input_size: ``(C, H, W)`` the supernet is built for (used for MACs and profiling).
    """

    supernet: str
    dims: tuple[tuple[str, tuple[Value, ...]], ...]
    input_size: tuple[int, int, int] = (3, 224, 224)
    _index: dict[str, tuple[Value, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.supernet:
            raise SearchSpaceError("slice space: field 'supernet' must be a non-empty name")
        dims = []
        for name, choices in self.dims:
            where = f"slice space {self.supernet!r}: dims.{name}"
            if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
                raise SearchSpaceError(f"{where}: must be a non-empty list of numbers")
            vals = tuple(_check_value(where, c) for c in choices)
            if any(b <= a for a, b in itertools.pairwise(vals)):
                raise SearchSpaceError(
                    f"{where}: choices {_fmt_choices(vals)} must be strictly increasing"
                )
            if any(v <= 0 for v in vals):
                raise SearchSpaceError(f"{where}: choices {_fmt_choices(vals)} must be > 0")
            dims.append((str(name), vals))
        object.__setattr__(self, "dims", tuple(dims))
        index = dict(dims)
        if len(index) != len(dims):
            raise SearchSpaceError(f"slice space {self.supernet!r}: duplicate dimension names")
        object.__setattr__(self, "_index", index)
        size = tuple(int(s) for s in self.input_size)
        if len(size) != 3 or any(s <= 0 for s in size):
            raise SearchSpaceError(
                f"slice space {self.supernet!r}: input_size {list(self.input_size)} must be "
                "[C, H, W] with positive ints"
            )
        object.__setattr__(self, "input_size", size)

    # ------------------------------------------------------------------ queries
    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dims)

    def choices(self, dim: str) -> tuple[Value, ...]:
        try:
            return self._index[dim]
        except KeyError:
            raise SearchSpaceError(
                f"{dim!r} is not a dimension of {self.supernet!r}; allowed: {list(self._index)}"
            ) from None

    def capacity(self, dim: str) -> Value:
        """The largest choice of ``dim`` (what the supernet stores weights for)."""
        return self.choices(dim)[-1]

    def __contains__(self, cfg: object) -> bool:
        if not isinstance(cfg, SubnetConfig):
            return False
        try:
            self.validate(cfg)
        except SearchSpaceError:
            return False
        return True

    @property
    def size(self) -> int:
        """Number of distinct configs in the grid."""
        return math.prod(len(c) for _, c in self.dims)

    # ------------------------------------------------------------------ configs
    def config(self, values: Mapping[str, Value] | None = None, **kw: Value) -> SubnetConfig:
        """A validated config; dims not given take their largest value."""
        d = {name: c[-1] for name, c in self.dims}
        d.update(values or {})
        d.update(kw)
        cfg = SubnetConfig.of(self.supernet, d)
        self.validate(cfg)
        return cfg

    def largest(self) -> SubnetConfig:
        return SubnetConfig.of(self.supernet, {n: c[-1] for n, c in self.dims})

    def smallest(self) -> SubnetConfig:
        return SubnetConfig.of(self.supernet, {n: c[0] for n, c in self.dims})

    def at_fraction(self, frac: float) -> SubnetConfig:
        """Config taking, in every dimension, the choice at ``frac`` of its range of indices.

        ``at_fraction(0)`` is the smallest, ``at_fraction(1)`` the largest, ``0.5`` the middle.
        """
        if not 0.0 <= frac <= 1.0:
            raise SearchSpaceError(f"fraction {frac} must be in [0, 1]")
        return SubnetConfig.of(
            self.supernet, {n: c[round(frac * (len(c) - 1))] for n, c in self.dims}
        )

    def sample(self, rng: random.Random | None = None) -> SubnetConfig:
        """Uniformly random config (each dimension independently)."""
        rng = rng or random.Random()
        return SubnetConfig.of(self.supernet, {n: rng.choice(c) for n, c in self.dims})

    def __iter__(self) -> Iterator[SubnetConfig]:
        """Every config of the grid (mind :attr:`size`)."""
        names = self.dim_names
        for combo in itertools.product(*(c for _, c in self.dims)):
            yield SubnetConfig.of(self.supernet, dict(zip(names, combo, strict=True)))

    def validate(self, cfg: SubnetConfig) -> SubnetConfig:
        """Raise :class:`SearchSpaceError` (a ``ValueError``) unless ``cfg`` is in the grid."""
        if not isinstance(cfg, SubnetConfig):
            raise SearchSpaceError(
                f"expected a SubnetConfig for {self.supernet!r}, got {type(cfg).__name__}"
            )
        if cfg.supernet != self.supernet:
            raise SearchSpaceError(
                f"config belongs to supernet {cfg.supernet!r}, not {self.supernet!r}; "
                f"build configs with this supernet's space (net.space.config(...))"
            )
        given = cfg.as_dict()
        for name in given:
            if name not in self._index:
                raise SearchSpaceError(
                    f"unknown dimension {name!r} for {self.supernet!r}; "
                    f"allowed: {list(self._index)}"
                )
        for name, choices in self.dims:
            if name not in given:
                raise SearchSpaceError(
                    f"config for {self.supernet!r} lacks dimension {name!r} "
                    f"(allowed values {_fmt_choices(choices)})"
                )
            if given[name] not in choices:
                raise SearchSpaceError(
                    f"{self.supernet}: {name}={given[name]!r} is not in the grid; "
                    f"allowed: {_fmt_choices(choices)}"
                )
        return cfg

    def restrict(self, dims: Mapping[str, Sequence[Value]]) -> SliceSpace:
        """A sub-grid: the given dims take (a subset of) their choices; capacities must stay."""
        out = []
        for name, choices in self.dims:
            new = tuple(dims.get(name, choices))
            bad = [v for v in new if v not in choices]
            if bad:
                raise SearchSpaceError(
                    f"restrict {self.supernet}: {name} values {bad} not in {_fmt_choices(choices)}"
                )
            out.append((name, tuple(sorted(new))))
        return SliceSpace(self.supernet, tuple(out), self.input_size)

    def with_input_size(self, input_size: Sequence[int]) -> SliceSpace:
        """The same grid at another input size ``(C, H, W)``."""
        return SliceSpace(self.supernet, self.dims, tuple(int(v) for v in input_size))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.supernet,
            "input_size": list(self.input_size),
            "dims": {name: list(choices) for name, choices in self.dims},
        }

    def to_yaml(self, header: str | None = None) -> str:
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)
        return (f"# {header}\n" if header else "") + body

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "slice space") -> SliceSpace:
        """Validate and build; errors name ``source``, the field, the value and what is allowed."""
        if not isinstance(data, Mapping):
            raise SearchSpaceError(
                f"{source}: expected a mapping with fields supernet, dims[, input_size], "
                f"got {type(data).__name__}"
            )
        unknown = set(data) - {"supernet", "dims", "input_size"}
        if unknown:
            raise SearchSpaceError(
                f"{source}: unknown field(s) {sorted(unknown)}; allowed: supernet, dims, input_size"
            )
        if not isinstance(data.get("supernet"), str) or not data.get("supernet"):
            raise SearchSpaceError(f"{source}: field 'supernet' must be a supernet name")
        dims = data.get("dims")
        if not isinstance(dims, Mapping) or not dims:
            raise SearchSpaceError(
                f"{source}: field 'dims' must be a non-empty mapping dim -> list of values"
            )
        pairs = []
        for name, choices in dims.items():
            if not isinstance(choices, list) or not choices:
                raise SearchSpaceError(
                    f"{source}: dims.{name} = {choices!r}; allowed: a non-empty list of numbers"
                )
            pairs.append((str(name), tuple(choices)))
        size = data.get("input_size", [3, 224, 224])
        if (
            not isinstance(size, list)
            or len(size) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        ):
            raise SearchSpaceError(
                f"{source}: input_size = {size!r}; allowed: [C, H, W] with positive ints"
            )
        try:
            return cls(data["supernet"], tuple(pairs), tuple(size))
        except SearchSpaceError as e:
            raise SearchSpaceError(f"{source}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SliceSpace:
        path = Path(path)
        if not path.is_file():
            raise SearchSpaceError(f"slice space file {str(path)!r} does not exist")
        data = read_yaml(path, SearchSpaceError, "slice space file")
        return cls.from_dict(data, source=str(path))


@dataclass(frozen=True)
class RouteSpace:
    """The K sub-net configs a gate chooses between, ordered smallest cost first.

    Args:
        configs: the routes, distinct, all of one supernet.
        costs: optional cost of each route (MACs or latency); when given they must be
            non-decreasing, which is how "smallest first" is checked.
        prefix_cost: optional cost of the shared prefix in the same unit (what a confidence
            cascade pays once; each further route it runs costs ``cost_k - prefix_cost``).
    """

    configs: tuple[SubnetConfig, ...]
    costs: tuple[float, ...] | None = None
    prefix_cost: float | None = None

    def __post_init__(self) -> None:
        configs = tuple(self.configs)
        if not configs:
            raise SearchSpaceError("route space: needs at least one config")
        if len({c.supernet for c in configs}) != 1:
            raise SearchSpaceError(
                f"route space: configs of several supernets {sorted({c.supernet for c in configs})}"
            )
        if len(set(configs)) != len(configs):
            raise SearchSpaceError("route space: configs must be distinct")
        object.__setattr__(self, "configs", configs)
        if self.costs is not None:
            costs = tuple(float(c) for c in self.costs)
            if len(costs) != len(configs):
                raise SearchSpaceError(
                    f"route space: {len(costs)} costs for {len(configs)} configs"
                )
            if any(b < a for a, b in itertools.pairwise(costs)):
                raise SearchSpaceError(
                    f"route space: costs {list(costs)} must be sorted smallest first"
                )
            object.__setattr__(self, "costs", costs)

    @classmethod
    def by_cost(
        cls,
        configs: Iterable[SubnetConfig],
        cost: Callable[[SubnetConfig], float],
        prefix_cost: float | None = None,
    ) -> RouteSpace:
        """Sort ``configs`` by ``cost`` (ascending) and keep the costs."""
        pairs = sorted(((float(cost(c)), c) for c in dict.fromkeys(configs)), key=lambda p: p[0])
        return cls(tuple(c for _, c in pairs), tuple(k for k, _ in pairs), prefix_cost)

    @property
    def supernet(self) -> str:
        return self.configs[0].supernet

    def __len__(self) -> int:
        return len(self.configs)

    def __getitem__(self, k: int) -> SubnetConfig:
        return self.configs[k]

    def __iter__(self) -> Iterator[SubnetConfig]:
        return iter(self.configs)

    def index(self, cfg: SubnetConfig) -> int:
        return self.configs.index(cfg)

    def validate_for(self, space: SliceSpace) -> RouteSpace:
        for c in self.configs:
            space.validate(c)
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "supernet": self.supernet,
            "routes": [c.as_dict() for c in self.configs],
        }
        if self.costs is not None:
            out["costs"] = list(self.costs)
        if self.prefix_cost is not None:
            out["prefix_cost"] = float(self.prefix_cost)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "route space") -> RouteSpace:
        if not isinstance(data, Mapping) or "routes" not in data or "supernet" not in data:
            raise SearchSpaceError(f"{source}: needs fields 'supernet' and 'routes'")
        routes = data["routes"]
        if not isinstance(routes, list):
            raise SearchSpaceError(f"{source}: 'routes' must be a list of dim -> value mappings")
        try:
            return cls(
                tuple(SubnetConfig.of(str(data["supernet"]), r) for r in routes),
                tuple(data["costs"]) if data.get("costs") is not None else None,
                float(data["prefix_cost"]) if data.get("prefix_cost") is not None else None,
            )
        except (SearchSpaceError, AttributeError, TypeError) as e:
            raise SearchSpaceError(f"{source}: {e}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> RouteSpace:
        return cls.from_dict(yaml.safe_load(text))
