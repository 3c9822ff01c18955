"""Supernet registry: a decorator fills a dict; lookups list what exists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import SliceSpace
from ..errors import SearchSpaceError
from .base import Supernet

__all__ = [
    "create_supernet",
    "default_space",
    "list_supernets",
    "register_supernet",
]

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


def list_supernets() -> list[str]:
    _ensure_builtins()
    return sorted(_SUPERNETS)


def _ensure_builtins() -> None:
    from . import mobilenet, resnet, vit  # noqa: F401  (registration side effect, once)


def _lookup(name: str) -> SupernetFactory:
    _ensure_builtins()
    try:
        return _SUPERNETS[name]
    except KeyError:
        raise SearchSpaceError(
            f"unknown supernet {name!r}; known: {', '.join(sorted(_SUPERNETS))} "
            "(or pass a search_spaces/*.yaml path)"
        ) from None


def default_space(name: str) -> SliceSpace:
    """The built-in slice grid of supernet ``name`` (``timm:<arch>``: the grid ``slicify``
    derives for that timm architecture)."""
    if name.startswith("timm:"):
        return _timm_space(name)
    _lookup(name)
    return _DEFAULT_SPACES[name]()


def create_supernet(
    name: str | Path | SliceSpace,
    *,
    num_classes: int | None = None,
    space: str | Path | SliceSpace | None = None,
    init: str | Path | None = None,
    **kwargs,
) -> Supernet:
    """Build a supernet, randomly initialised or from local weights (no downloads).

    Args:
        name: a registered name (``ds_mobilenet_v1``, ``ds_resnet50``, ``ds_deit_small`` and
            their ``_tiny`` variants), a slice-space YAML path, or a :class:`SliceSpace`.
        num_classes: classifier outputs (default: 1000 for full-size, 10 for ``_tiny``).
        space: a slice grid overriding the default (YAML path or object); its largest values
            set the stored capacity, so it may narrow or widen the built-in grid.
        init: a local state dict / timm checkpoint (see :mod:`.pretrained`): for ``timm:``
            names loaded into the timm model before slicing, else into the supernet.
    """
    from ..config import load_space

    if isinstance(name, SliceSpace) or str(name).endswith((".yaml", ".yml")):
        space = load_space(name)
        name = space.supernet
    if str(name).startswith("timm:"):
        return _timm_supernet(str(name), num_classes, space, init)
    factory = _lookup(str(name))
    sp = load_space(space) if space is not None else default_space(str(name))
    if sp.supernet != name:
        raise SearchSpaceError(f"slice space is for supernet {sp.supernet!r}, not {name!r}")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    net = factory(space=sp, **kwargs)
    if init is not None:
        from .pretrained import load_into, read_state_dict

        head = f"units.{len(net.units) - 1}"  # the classifier unit (class count may differ)
        load_into(net, read_state_dict(init), source=str(init), target=net.name, classifier=head)
    return net


def _timm_space(name: str) -> SliceSpace:
    import timm

    from ..slicify import derive_space

    arch = name.removeprefix("timm:")
    if not timm.is_model(arch):
        raise SearchSpaceError(f"{name!r}: {arch!r} is not a timm model name")
    return derive_space(arch)


def _timm_supernet(name: str, num_classes: int | None, space, init=None) -> Supernet:
    """A slicified timm architecture (``timm:<arch>``), randomly initialised (e.g. to load a
    checkpoint of a supernet made with :func:`dsnet_automl.slicify.slicify`) or, with ``init``,
    from local pretrained weights loaded into the timm model before slicing."""
    import timm

    from ..config import load_space
    from ..slicify import slicify

    arch = name.removeprefix("timm:")
    if not timm.is_model(arch):
        raise SearchSpaceError(f"{name!r}: {arch!r} is not a timm model name")
    kw = {} if num_classes is None else {"num_classes": num_classes}
    model = timm.create_model(arch, pretrained=False, **kw)
    if init is not None:
        from .pretrained import load_into, read_state_dict

        classifier = model.pretrained_cfg.get("classifier")
        sd = read_state_dict(init)
        load_into(model, sd, source=str(init), target=name, classifier=classifier)
    return slicify(model, load_space(space) if space is not None else None, verify=False)
