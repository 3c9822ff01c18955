"""Canonical block signatures: what a latency table is keyed by.

A signature is everything that determines how long one unit call takes, and nothing about where
it sits in the network: unit kind, static hyperparameters (plus the activation, which
``Unit.hparams()`` does not report), active sizes and the per-sample input shape. Identical
blocks at different positions (the 2nd..6th blocks of a MobileNet stage) share one signature,
and so one measurement. Batch size, backend and device are columns of the measurement, not
part of the signature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import LatencyTableError
from ..supernets.base import BlockCall, Supernet

__all__ = ["BlockSignature", "format_shape", "parse_shape", "signature_of"]

Shape = tuple[int, ...]


def _canon_json(items: tuple[tuple[str, Any], ...] | dict[str, Any]) -> str:
    d = dict(items)
    return json.dumps({k: _plain(v) for k, v in sorted(d.items())}, separators=(",", ":"))


def _plain(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return int(v) if float(v).is_integer() else float(v)
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return str(v)


def format_shape(shape: Shape) -> str:
    """``(3, 32, 32)`` -> ``"3x32x32"``."""
    return "x".join(str(int(s)) for s in shape)


def parse_shape(text: str) -> Shape:
    """``"3x32x32"`` -> ``(3, 32, 32)``; raises :class:`LatencyTableError` when malformed."""
    try:
        shape = tuple(int(p) for p in str(text).split("x"))
    except ValueError:
        raise LatencyTableError(
            f"in_shape {text!r} is not of the form 'CxHxW' (positive integers joined by 'x')"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise LatencyTableError(f"in_shape {text!r} must hold positive integers")
    return shape


@dataclass(frozen=True, order=True)
class BlockSignature:
    """Canonical, hashable key of one block call.

    Attributes:
        kind: unit kind (``dw_separable``, ``vit_block``, ...).
        hparams: canonical JSON of the static hyperparameters (sorted keys).
        active: canonical JSON of the active sizes (sorted keys).
        in_shape: per-sample input shape as ``"CxHxW"`` / ``"NxE"`` (no batch dimension).
    """

    kind: str
    hparams: str
    active: str
    in_shape: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.hparams, self.active, self.in_shape)

    @property
    def active_kwargs(self) -> dict[str, Any]:
        return json.loads(self.active)

    @property
    def hparams_dict(self) -> dict[str, Any]:
        return json.loads(self.hparams)

    @property
    def shape(self) -> Shape:
        return parse_shape(self.in_shape)

    def label(self) -> str:
        """Short human label, e.g. ``dw_separable k=3 stride=2 in_ch=32 out_ch=48 @32x16x16``."""
        hp = " ".join(f"{k}={v}" for k, v in self.hparams_dict.items())
        act = " ".join(f"{k}={v}" for k, v in self.active_kwargs.items())
        return " ".join(p for p in (self.kind, hp, act, f"@{self.in_shape}") if p)

    @classmethod
    def make(
        cls,
        kind: str,
        hparams: dict[str, Any] | tuple[tuple[str, Any], ...],
        active: dict[str, Any] | tuple[tuple[str, Any], ...],
        in_shape: Shape | str,
    ) -> BlockSignature:
        shape = in_shape if isinstance(in_shape, str) else format_shape(in_shape)
        return cls(str(kind), _canon_json(hparams), _canon_json(active), shape)

    @classmethod
    def from_strings(cls, kind: str, hparams: str, active: str, in_shape: str) -> BlockSignature:
        """Re-canonicalise strings read from a file; raises on malformed JSON or shape."""
        out = []
        for name, text in (("hparams", hparams), ("active", active)):
            try:
                d = json.loads(text)
            except (TypeError, json.JSONDecodeError) as e:
                raise LatencyTableError(f"{name} {text!r} is not valid JSON ({e})") from None
            if not isinstance(d, dict):
                raise LatencyTableError(f"{name} {text!r} must be a JSON object")
            out.append(d)
        return cls.make(kind, out[0], out[1], format_shape(parse_shape(in_shape)))


def _unit_extras(net: Supernet, index: int) -> dict[str, Any]:
    unit = net.units[index]
    act = getattr(unit, "act_layer", None)
    return {"act": act.__name__} if isinstance(act, type) else {}


def signature_of(net: Supernet, call: BlockCall) -> BlockSignature:
    """The signature of one :class:`BlockCall` of ``net``."""
    hp = dict(call.hparams)
    hp.update(_unit_extras(net, call.index))
    return BlockSignature.make(call.kind, hp, call.active, call.in_shape)
