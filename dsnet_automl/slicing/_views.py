"""Memo of an op's prefix views per active size, for forwards without autograd.

Taking ``weight[:k, :c]`` costs a few microseconds of Python and dispatcher time per tensor;
a batch-1 forward of a slicified MobileNetV3 takes ~200 of them. Outside autograd (``no_grad``
/ ``inference_mode``) an op reuses the views it made for the same active sizes before.

This is a memo, not state: a view shares storage with its parameter, so in-place updates
(optimizer steps, ``load_state_dict``, BN running statistics) show through it, and an entry is
used only while every base tensor still has the storage the view was taken from (its
``data_ptr``; ``module.to(...)``, ``param.data = ...`` or a new ``Parameter`` change it, and the
view keeps the old storage alive, so its address cannot be reused). What a forward computes
never depends on which configs ran before. With autograd on, views are taken fresh (a view
made under ``no_grad`` carries no graph).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ViewMemo"]

_MAX_ENTRIES = 64  # active-size pairs per op (width grids are small; a sweep clears it)


# Each op inlines its own lookup (grad check, data_ptr token, hit test, _memo_put) rather than
# calling one shared helper taking a closure: the helper was measured 6% slower on a batch-1
# forward of ds_mobilenet_v1_tiny (1.06 -> 1.12 ms), the very overhead this memo exists to cut.


class ViewMemo:
    """Mixin for ``nn.Module`` ops: ``self._views`` maps an active-size key to
    ``(token, *views)`` where ``token`` is the tuple of the base tensors' ``data_ptr``."""

    _views: dict[Any, tuple[Any, ...]]

    def _init_views(self) -> None:
        # in __dict__ (not a buffer or submodule): plain attribute lookup, not in state_dict
        self.__dict__["_views"] = {}

    def _memo_put(self, key: Any, entry: tuple[Any, ...]) -> None:
        views = self.__dict__.setdefault("_views", {})
        if len(views) >= _MAX_ENTRIES:
            views.clear()
        views[key] = entry

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state = dict(state)
        state["_views"] = {}
        return state
