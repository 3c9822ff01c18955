"""Supernet registry: a decorator fills a dict; lookups list what exists."""

from __future__ import annotations

from collections.abc import Callable

from ..config import SliceSpace
from ..errors import SearchSpaceError
from .base import Supernet

__all__ = ["build_builtin", "builtin_names", "builtin_space", "register_supernet"]

SupernetFactory = Callable[..., Supernet]
_SUPERNETS: dict[str, SupernetFactory] = {}
_DEFAULT_SPACES: dict[str, Callable[[], SliceSpace]] = {}


def register_supernet(
    space_fn: Callable[[], SliceSpace],
) -> Callable[[SupernetFactory], SupernetFactory]:
    """Register a factory ``fn(*, num_classes, space, **kw) -> Supernet`` under its name,
    together with the function giving its default slice space."""

    def deco(fn: SupernetFactory) -> SupernetFactory:
        name = fn.__name__
        if name in _SUPERNETS:
            raise ValueError(f"supernet {name!r} is already registered")
        _SUPERNETS[name] = fn
        _DEFAULT_SPACES[name] = space_fn
        return fn

    return deco


def builtin_names() -> list[str]:
    """Registered names (the package's __init__ imports the built-in supernet modules, whose
    decorators register them, before anyone can reach this function)."""
    return sorted(_SUPERNETS)


def _lookup(name: str) -> SupernetFactory:
    try:
        return _SUPERNETS[name]
    except KeyError:
        raise SearchSpaceError(
            f"unknown supernet {name!r}; known: {', '.join(sorted(_SUPERNETS))} "
            "(or pass a search_spaces/*.yaml path)"
        ) from None


def builtin_space(name: str) -> SliceSpace:
    """The built-in slice grid of registered supernet ``name``."""
    _lookup(name)
    return _DEFAULT_SPACES[name]()


def build_builtin(
    name: str,
    *,
    num_classes: int | None = None,
    space: SliceSpace | None = None,
    **kwargs,
) -> Supernet:
    """Build a registered supernet, randomly initialised (no downloads).

    Names, YAML paths, ``timm:<arch>`` and pretrained weights are resolved one level up, by
    :func:`dsnet_automl.factory.create_supernet` (what users and the CLI call).

    Args:
        name: a registered name (``ds_mobilenet_v1``, ``ds_resnet50``, ``ds_deit_small`` and
            their ``_tiny`` variants).
        num_classes: classifier outputs (default: 1000 for full-size, 10 for ``_tiny``).
        space: a slice grid overriding the default; its largest values set the stored
            capacity, so it may narrow or widen the built-in grid.
    """
    if not isinstance(name, str) or name.startswith("timm:"):
        raise SearchSpaceError(
            f"supernets.build_builtin builds registered supernets only ({name!r}); use "
            "dsnet_automl.create_supernet for YAML paths and timm:<arch> names"
        )
    factory = _lookup(name)
    sp = space if space is not None else builtin_space(name)
    if sp.supernet != name:
        raise SearchSpaceError(f"slice space is for supernet {sp.supernet!r}, not {name!r}")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return factory(space=sp, **kwargs)
